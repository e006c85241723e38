// Failure reporting and text helpers of the `mqsec` command (see output.hpp).
#include "src/cli/output.hpp"

#include <openssl/pem.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <utility>

#include "mqsec/error.hpp"
#include "src/core/text.hpp"
#include "src/core/destination.hpp"
#include "src/security/identity.hpp"
#include "src/security/log.hpp"

namespace mqsec::cli {

Failure::Failure(std::string what, std::string reason, HRESULT code, std::string hint,
                 int exit_code)
    : std::runtime_error(what + ": " + reason),
      what_(std::move(what)),
      reason_(std::move(reason)),
      code_(code),
      hint_(std::move(hint)),
      exit_code_(exit_code) {}

std::string hresult_name(HRESULT hr) {
  struct Entry {
    HRESULT code;
    const char* name;
  };
  // Every result code of mq.h. Aliases do not occur: each value has one name.
  static constexpr Entry kNames[] = {
      {MQ_OK, "MQ_OK"},
      {MQ_ERROR, "MQ_ERROR"},
      {MQ_ERROR_PROPERTY, "MQ_ERROR_PROPERTY"},
      {MQ_ERROR_QUEUE_NOT_FOUND, "MQ_ERROR_QUEUE_NOT_FOUND"},
      {MQ_ERROR_QUEUE_EXISTS, "MQ_ERROR_QUEUE_EXISTS"},
      {MQ_ERROR_INVALID_PARAMETER, "MQ_ERROR_INVALID_PARAMETER"},
      {MQ_ERROR_INVALID_HANDLE, "MQ_ERROR_INVALID_HANDLE"},
      {MQ_ERROR_OPERATION_CANCELLED, "MQ_ERROR_OPERATION_CANCELLED"},
      {MQ_ERROR_SHARING_VIOLATION, "MQ_ERROR_SHARING_VIOLATION"},
      {MQ_ERROR_SERVICE_NOT_AVAILABLE, "MQ_ERROR_SERVICE_NOT_AVAILABLE"},
      {MQ_ERROR_ILLEGAL_USER, "MQ_ERROR_ILLEGAL_USER"},
      {MQ_ERROR_NO_DS, "MQ_ERROR_NO_DS"},
      {MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, "MQ_ERROR_ILLEGAL_QUEUE_PATHNAME"},
      {MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "MQ_ERROR_ILLEGAL_PROPERTY_VALUE"},
      {MQ_ERROR_ILLEGAL_PROPERTY_VT, "MQ_ERROR_ILLEGAL_PROPERTY_VT"},
      {MQ_ERROR_BUFFER_OVERFLOW, "MQ_ERROR_BUFFER_OVERFLOW"},
      {MQ_ERROR_IO_TIMEOUT, "MQ_ERROR_IO_TIMEOUT"},
      {MQ_ERROR_ILLEGAL_CURSOR_ACTION, "MQ_ERROR_ILLEGAL_CURSOR_ACTION"},
      {MQ_ERROR_MESSAGE_ALREADY_RECEIVED, "MQ_ERROR_MESSAGE_ALREADY_RECEIVED"},
      {MQ_ERROR_ILLEGAL_FORMATNAME, "MQ_ERROR_ILLEGAL_FORMATNAME"},
      {MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL, "MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL"},
      {MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION, "MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION"},
      {MQ_ERROR_SENDERID_BUFFER_TOO_SMALL, "MQ_ERROR_SENDERID_BUFFER_TOO_SMALL"},
      {MQ_ERROR_ACCESS_DENIED, "MQ_ERROR_ACCESS_DENIED"},
      {MQ_ERROR_PRIVILEGE_NOT_HELD, "MQ_ERROR_PRIVILEGE_NOT_HELD"},
      {MQ_ERROR_INSUFFICIENT_RESOURCES, "MQ_ERROR_INSUFFICIENT_RESOURCES"},
      {MQ_ERROR_USER_BUFFER_TOO_SMALL, "MQ_ERROR_USER_BUFFER_TOO_SMALL"},
      {MQ_ERROR_MESSAGE_STORAGE_FAILED, "MQ_ERROR_MESSAGE_STORAGE_FAILED"},
      {MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL, "MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL"},
      {MQ_ERROR_INVALID_CERTIFICATE, "MQ_ERROR_INVALID_CERTIFICATE"},
      {MQ_ERROR_CORRUPTED_INTERNAL_CERTIFICATE, "MQ_ERROR_CORRUPTED_INTERNAL_CERTIFICATE"},
      {MQ_ERROR_INTERNAL_USER_CERT_EXIST, "MQ_ERROR_INTERNAL_USER_CERT_EXIST"},
      {MQ_ERROR_NO_INTERNAL_USER_CERT, "MQ_ERROR_NO_INTERNAL_USER_CERT"},
      {MQ_ERROR_CORRUPTED_SECURITY_DATA, "MQ_ERROR_CORRUPTED_SECURITY_DATA"},
      {MQ_ERROR_CORRUPTED_PERSONAL_CERT_STORE, "MQ_ERROR_CORRUPTED_PERSONAL_CERT_STORE"},
      {MQ_ERROR_BAD_SECURITY_CONTEXT, "MQ_ERROR_BAD_SECURITY_CONTEXT"},
      {MQ_ERROR_COULD_NOT_GET_USER_SID, "MQ_ERROR_COULD_NOT_GET_USER_SID"},
      {MQ_ERROR_COULD_NOT_GET_ACCOUNT_INFO, "MQ_ERROR_COULD_NOT_GET_ACCOUNT_INFO"},
      {MQ_ERROR_ILLEGAL_PROPID, "MQ_ERROR_ILLEGAL_PROPID"},
      {MQ_ERROR_ILLEGAL_PROPERTY_SIZE, "MQ_ERROR_ILLEGAL_PROPERTY_SIZE"},
      {MQ_ERROR_TRANSACTION_USAGE, "MQ_ERROR_TRANSACTION_USAGE"},
      {MQ_ERROR_STALE_HANDLE, "MQ_ERROR_STALE_HANDLE"},
      {MQ_ERROR_QUEUE_DELETED, "MQ_ERROR_QUEUE_DELETED"},
      {MQ_ERROR_LABEL_TOO_LONG, "MQ_ERROR_LABEL_TOO_LONG"},
      {MQ_ERROR_LABEL_BUFFER_TOO_SMALL, "MQ_ERROR_LABEL_BUFFER_TOO_SMALL"},
      {MQ_ERROR_SIGNATURE_BUFFER_TOO_SMALL, "MQ_ERROR_SIGNATURE_BUFFER_TOO_SMALL"},
      {MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE, "MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE"},
      {MQ_ERROR_CERTIFICATE_NOT_PROVIDED, "MQ_ERROR_CERTIFICATE_NOT_PROVIDED"},
      {MQ_ERROR_CANNOT_CREATE_CERT_STORE, "MQ_ERROR_CANNOT_CREATE_CERT_STORE"},
      {MQ_ERROR_CANNOT_OPEN_CERT_STORE, "MQ_ERROR_CANNOT_OPEN_CERT_STORE"},
      {MQ_ERROR_CANNOT_SIGN_DATA_EX, "MQ_ERROR_CANNOT_SIGN_DATA_EX"},
      {MQ_ERROR_FAIL_VERIFY_SIGNATURE_EX, "MQ_ERROR_FAIL_VERIFY_SIGNATURE_EX"},
      {MQ_INFORMATION_PROPERTY, "MQ_INFORMATION_PROPERTY"},
      {MQ_INFORMATION_ILLEGAL_PROPERTY, "MQ_INFORMATION_ILLEGAL_PROPERTY"},
      {MQ_INFORMATION_PROPERTY_IGNORED, "MQ_INFORMATION_PROPERTY_IGNORED"},
      {MQ_INFORMATION_UNSUPPORTED_PROPERTY, "MQ_INFORMATION_UNSUPPORTED_PROPERTY"},
      {MQ_INFORMATION_DUPLICATE_PROPERTY, "MQ_INFORMATION_DUPLICATE_PROPERTY"},
      {MQ_INFORMATION_OPERATION_PENDING, "MQ_INFORMATION_OPERATION_PENDING"},
      {MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL, "MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL"},
      {MQ_INFORMATION_INTERNAL_USER_CERT_EXIST, "MQ_INFORMATION_INTERNAL_USER_CERT_EXIST"},
  };
  for (const Entry& e : kNames) {
    if (e.code == hr) return e.name;
  }
  return "HRESULT";
}

std::string hresult_hex(HRESULT hr) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(static_cast<uint32_t>(hr)));
  return buf;
}

std::string hresult_text(HRESULT hr) {
  switch (hr) {
    case MQ_ERROR_QUEUE_NOT_FOUND:
      return "the queue does not exist";
    case MQ_ERROR_QUEUE_EXISTS:
      return "a queue of that name exists already";
    case MQ_ERROR_ILLEGAL_QUEUE_PATHNAME:
      return "not a valid private queue name";
    case MQ_ERROR_IO_TIMEOUT:
      return "no message arrived within the timeout";
    case MQ_ERROR_SHARING_VIOLATION:
      return "the queue is opened exclusively (MQ_DENY_RECEIVE_SHARE) by another receiver";
    case MQ_ERROR_SERVICE_NOT_AVAILABLE:
      return "the message store cannot be opened";
    case MQ_ERROR_MESSAGE_STORAGE_FAILED:
      return "the message store failed";
    case MQ_ERROR_NO_INTERNAL_USER_CERT:
      return "the user has no internal certificate";
    case MQ_ERROR_INVALID_CERTIFICATE:
      return "the certificate cannot be used (not a certificate, or its key is not on the token)";
    case MQ_ERROR_CORRUPTED_SECURITY_DATA:
      return "the token or the security configuration cannot be used";
    case MQ_ERROR_COULD_NOT_GET_USER_SID:
      return "the user's SID cannot be determined";
    case MQ_ERROR_BAD_SECURITY_CONTEXT:
      return "the security context is not valid";
    case MQ_ERROR_INSUFFICIENT_RESOURCES:
      return "out of resources (memory, token sessions or handles)";
    case MQ_ERROR_ACCESS_DENIED:
      return "access denied";
    case MQ_ERROR_LABEL_TOO_LONG:
      return "the label is longer than 250 characters";
    case MQ_ERROR_ILLEGAL_PROPERTY_VALUE:
      return "a property value is not allowed";
    case MQ_ERROR_INVALID_PARAMETER:
      return "invalid parameter";
    default:
      return "the call failed";
  }
}

std::string default_hint(HRESULT hr, std::string_view reason) {
  // The same code means a store problem or a broker problem (remote queues); the reason says which.
  if (hr == MQ_ERROR_SERVICE_NOT_AVAILABLE && reason.find("broker") != std::string_view::npos) {
    return "check that the broker runs and [broker] url, user and password-source in the system "
           "configuration (`mqsec doctor` checks them)";
  }
  switch (hr) {
    case MQ_ERROR_QUEUE_NOT_FOUND:
      return "list the queues with `mqsec queue list`, create one with `mqsec queue create NAME`";
    case MQ_ERROR_QUEUE_EXISTS:
      return "choose another name, or remove the queue with `mqsec queue delete NAME`";
    case MQ_ERROR_NO_INTERNAL_USER_CERT:
      return "create one with `mqsec enroll`";
    case MQ_ERROR_CORRUPTED_SECURITY_DATA:
    case MQ_ERROR_CORRUPTED_PERSONAL_CERT_STORE:
    case MQ_ERROR_INVALID_CERTIFICATE:
      return "`mqsec doctor` checks the configuration, the token and the certificate";
    case MQ_ERROR_COULD_NOT_GET_USER_SID:
      return "check [identity] sid in the system configuration (`mqsec doctor`)";
    case MQ_ERROR_CANNOT_CREATE_CERT_STORE:
    case MQ_ERROR_CANNOT_OPEN_CERT_STORE:
      return "check that your profile directory ([profiles] dir) is yours and writable";
    case MQ_ERROR_SERVICE_NOT_AVAILABLE:
    case MQ_ERROR_MESSAGE_STORAGE_FAILED:
      return "check [store] path in the system configuration and its permissions";
    case MQ_ERROR_IO_TIMEOUT:
      return "wait longer with --timeout MS";
    case MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE:
      return "start `mqsec agent` on that machine (it answers remote reads), or raise [broker] "
             "request-timeout-ms";
    default:
      return {};
  }
}

ReasonProbe::ReasonProbe() : before_(last_error_message()) {}

std::string ReasonProbe::reason(HRESULT hr) const {
  std::string now = last_error_message();
  return !now.empty() && now != before_ ? now : hresult_text(hr);
}

void check_hr(HRESULT hr, const std::string& what, const ReasonProbe& probe,
              const std::string& hint) {
  if (!FAILED(hr)) return;
  // A token failure (wrong or locked PIN, card absent or replaced, ...) has advice of its own.
  const std::string reason = probe.reason(hr);
  std::string advice = reason == last_error_message()
                           ? security::token_error_advice(last_token_error())
                           : std::string();
  if (advice.empty()) advice = hint.empty() ? default_hint(hr, reason) : hint;
  throw Failure(what, reason, hr, advice);
}

security::SystemConfig load_config_or_fail() {
  try {
    return security::load_system_config();
  } catch (const security::ConfigError& e) {
    throw Failure("system configuration", e.what(), MQ_ERROR_CORRUPTED_SECURITY_DATA,
                  "fix the file, or point MQSEC_CONFIG at another one (docs/configuration.md)",
                  kExitConfig);
  }
}

security::UserSetup resolve_user_or_fail(bool need_profile) {
  load_config_or_fail();  // a malformed system config is exit 3, not an MQ failure
  std::string profile_error;
  security::UserSetup setup;
  try {
    setup = security::resolve_user(&profile_error);
  } catch (const Error& e) {
    throw Failure("identify the calling user", e.what(), e.code(), default_hint(e.code()));
  }
  if (need_profile && !profile_error.empty()) {
    throw Failure("user profile", profile_error, MQ_ERROR_CANNOT_OPEN_CERT_STORE,
                  "correct the file, or remove it and run `mqsec enroll` to write a new one",
                  kExitConfig);
  }
  return setup;
}

std::vector<uint8_t> read_file(const std::filesystem::path& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    std::string why = std::filesystem::exists(path, ec) ? "cannot be read" : "does not exist";
    throw Failure(what, path.string() + " " + why, MQ_ERROR_INVALID_PARAMETER);
  }
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad())
    throw Failure(what, "reading " + path.string() + " failed", MQ_ERROR_INVALID_PARAMETER);
  return data;
}

void write_file(const std::filesystem::path& path, std::span<const uint8_t> data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (out)
    out.write(reinterpret_cast<const char*>(data.data()),
              static_cast<std::streamsize>(data.size()));
  if (!out || !out.flush()) {
    throw Failure("export", "cannot write " + path.string(), MQ_ERROR_INVALID_PARAMETER);
  }
}

namespace {

struct BioFree {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};

}  // namespace

std::vector<uint8_t> read_certificate_file(const std::filesystem::path& path) {
  const std::string what = "certificate " + path.string();
  std::vector<uint8_t> data = read_file(path, what);
  static constexpr std::string_view kBegin = "-----BEGIN";
  std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  if (text.find(kBegin) != std::string_view::npos) {
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    security::X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!cert) {
      security::openssl_error();  // clear the queue
      throw Failure(what, "the PEM file holds no CERTIFICATE block", MQ_ERROR_INVALID_CERTIFICATE);
    }
    return security::to_der(cert.get());
  }
  if (!security::parse_der_strict(data)) {
    throw Failure(what, "not a DER or PEM X.509 certificate", MQ_ERROR_INVALID_CERTIFICATE);
  }
  return data;
}

std::string subject_of(std::span<const uint8_t> der) {
  security::X509Ptr cert = security::parse_der_strict(der);
  return cert ? security::subject_string(cert.get()) : std::string();
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string one_line(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

bool printable_utf8(std::span<const uint8_t> b) {
  size_t i = 0;
  while (i < b.size()) {
    uint8_t c = b[i];
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return false;
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= b.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      if ((b[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values beyond Unicode are not UTF-8.
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    if (cp >= 0x80 && cp < 0xA0) return false;  // C1 controls
    i += n + 1;
  }
  return true;
}

std::string iso_time(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string sid_string(std::span<const uint8_t> sid) {
  try {
    return security::Sid::from_bytes(sid).str();
  } catch (const std::invalid_argument&) {
    return "(malformed SID, " + std::to_string(sid.size()) + " bytes)";
  }
}

std::wstring queue_path(const std::string& name) { return core::from_utf8(".\\private$\\" + name); }

std::string store_queue_name(const std::string& name) {
  try {
    return core::queue_from_path(".\\private$\\" + name);
  } catch (const Error& e) {
    throw Failure("queue '" + name + "'", e.what(), e.code(),
                  "give the bare private queue name, e.g. `orders` for .\\private$\\orders");
  }
}

}  // namespace mqsec::cli
