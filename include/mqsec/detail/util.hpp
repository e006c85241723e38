// Internal helpers of mqsec's header-only C++ API (include/mqsec/*.hpp): HRESULT checks that
// turn a failed MQ* call into mqsec::Error naming the function, UTF-8 <-> wchar_t conversion
// (mq.h's strings are wchar_t, which is UTF-32 on Linux; the C++ API speaks UTF-8), and the
// timeout conversion. Not part of the public interface: names here may change.
//
// Uses only mq.h and error.hpp, so C++ programs link with -lmqrt and nothing else.
#pragma once

#include <mq.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "mqsec/error.hpp"

// mqsec's extension of libmqrt (not MSMQ's): the calling thread's last failure, in full. The
// reason (UTF-8, cut to fit, NUL-terminated; "" when the call left none) and the token error it
// was (mqsec::TokenError as a number; 0 for none). Valid right after a failed MQ* call.
extern "C" DWORD APIENTRY MQSecGetLastErrorInfo(LPSTR reason, DWORD reason_size);

namespace mqsec {

// "Wait as long as it takes" for receive and peek (MSMQ's INFINITE).
inline constexpr std::chrono::milliseconds kInfinite{INFINITE};

namespace detail {

static_assert(sizeof(wchar_t) == 4, "mq.h's WCHAR is UTF-32 on the platforms mqsec supports");

// The symbolic name of the MQ result codes a C++ caller is most likely to meet; empty if none.
inline const char* hresult_name(HRESULT hr) noexcept {
  switch (hr) {
    case MQ_ERROR:
      return "MQ_ERROR";
    case MQ_ERROR_QUEUE_NOT_FOUND:
      return "MQ_ERROR_QUEUE_NOT_FOUND";
    case MQ_ERROR_QUEUE_EXISTS:
      return "MQ_ERROR_QUEUE_EXISTS";
    case MQ_ERROR_INVALID_PARAMETER:
      return "MQ_ERROR_INVALID_PARAMETER";
    case MQ_ERROR_INVALID_HANDLE:
      return "MQ_ERROR_INVALID_HANDLE";
    case MQ_ERROR_SHARING_VIOLATION:
      return "MQ_ERROR_SHARING_VIOLATION";
    case MQ_ERROR_SERVICE_NOT_AVAILABLE:
      return "MQ_ERROR_SERVICE_NOT_AVAILABLE";
    case MQ_ERROR_ILLEGAL_QUEUE_PATHNAME:
      return "MQ_ERROR_ILLEGAL_QUEUE_PATHNAME";
    case MQ_ERROR_ILLEGAL_PROPERTY_VALUE:
      return "MQ_ERROR_ILLEGAL_PROPERTY_VALUE";
    case MQ_ERROR_ILLEGAL_PROPERTY_VT:
      return "MQ_ERROR_ILLEGAL_PROPERTY_VT";
    case MQ_ERROR_BUFFER_OVERFLOW:
      return "MQ_ERROR_BUFFER_OVERFLOW";
    case MQ_ERROR_IO_TIMEOUT:
      return "MQ_ERROR_IO_TIMEOUT";
    case MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE:
      return "MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE";
    case MQ_ERROR_ILLEGAL_CURSOR_ACTION:
      return "MQ_ERROR_ILLEGAL_CURSOR_ACTION";
    case MQ_ERROR_ILLEGAL_FORMATNAME:
      return "MQ_ERROR_ILLEGAL_FORMATNAME";
    case MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL:
      return "MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL";
    case MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION:
      return "MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION";
    case MQ_ERROR_SENDERID_BUFFER_TOO_SMALL:
      return "MQ_ERROR_SENDERID_BUFFER_TOO_SMALL";
    case MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL:
      return "MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL";
    case MQ_ERROR_LABEL_BUFFER_TOO_SMALL:
      return "MQ_ERROR_LABEL_BUFFER_TOO_SMALL";
    case MQ_ERROR_SIGNATURE_BUFFER_TOO_SMALL:
      return "MQ_ERROR_SIGNATURE_BUFFER_TOO_SMALL";
    case MQ_ERROR_QUEUE_DELETED:
      return "MQ_ERROR_QUEUE_DELETED";
    case MQ_ERROR_STALE_HANDLE:
      return "MQ_ERROR_STALE_HANDLE";
    case MQ_ERROR_INTERNAL_USER_CERT_EXIST:
      return "MQ_ERROR_INTERNAL_USER_CERT_EXIST";
    case MQ_ERROR_ACCESS_DENIED:
      return "MQ_ERROR_ACCESS_DENIED";
    case MQ_ERROR_INSUFFICIENT_RESOURCES:
      return "MQ_ERROR_INSUFFICIENT_RESOURCES";
    case MQ_ERROR_MESSAGE_STORAGE_FAILED:
      return "MQ_ERROR_MESSAGE_STORAGE_FAILED";
    case MQ_ERROR_INVALID_CERTIFICATE:
      return "MQ_ERROR_INVALID_CERTIFICATE";
    case MQ_ERROR_CORRUPTED_INTERNAL_CERTIFICATE:
      return "MQ_ERROR_CORRUPTED_INTERNAL_CERTIFICATE";
    case MQ_ERROR_NO_INTERNAL_USER_CERT:
      return "MQ_ERROR_NO_INTERNAL_USER_CERT";
    case MQ_ERROR_CORRUPTED_SECURITY_DATA:
      return "MQ_ERROR_CORRUPTED_SECURITY_DATA";
    case MQ_ERROR_CORRUPTED_PERSONAL_CERT_STORE:
      return "MQ_ERROR_CORRUPTED_PERSONAL_CERT_STORE";
    case MQ_ERROR_BAD_SECURITY_CONTEXT:
      return "MQ_ERROR_BAD_SECURITY_CONTEXT";
    case MQ_ERROR_COULD_NOT_GET_USER_SID:
      return "MQ_ERROR_COULD_NOT_GET_USER_SID";
    case MQ_ERROR_ILLEGAL_PROPID:
      return "MQ_ERROR_ILLEGAL_PROPID";
    case MQ_ERROR_ILLEGAL_PROPERTY_SIZE:
      return "MQ_ERROR_ILLEGAL_PROPERTY_SIZE";
    case MQ_ERROR_TRANSACTION_USAGE:
      return "MQ_ERROR_TRANSACTION_USAGE";
    case MQ_ERROR_LABEL_TOO_LONG:
      return "MQ_ERROR_LABEL_TOO_LONG";
    case MQ_ERROR_CERTIFICATE_NOT_PROVIDED:
      return "MQ_ERROR_CERTIFICATE_NOT_PROVIDED";
    case MQ_ERROR_CANNOT_OPEN_CERT_STORE:
      return "MQ_ERROR_CANNOT_OPEN_CERT_STORE";
    case MQ_ERROR_CANNOT_SIGN_DATA_EX:
      return "MQ_ERROR_CANNOT_SIGN_DATA_EX";
    default:
      return "";
  }
}

// "MQSendMessage failed: MQ_ERROR_BAD_SECURITY_CONTEXT (0xC00E0035)[: detail]".
inline std::string failure_text(const char* function, HRESULT hr, std::string_view detail = {}) {
  char code[16];
  std::snprintf(code, sizeof code, "0x%08X", static_cast<unsigned>(hr));
  std::string text = std::string(function) + " failed: ";
  const char* name = hresult_name(hr);
  text += *name ? std::string(name) + " (" + code + ")" : std::string(code);
  if (!detail.empty()) text.append(": ").append(detail);
  return text;
}

// Throws mqsec::Error when `hr` is an error (warnings, MQ_INFORMATION_*, are success). The
// runtime's reason for the failure follows the text, and a token failure (wrong or locked PIN,
// card absent or replaced, ...) is Error::token_error(): libmqrt's MQSecGetLastErrorInfo,
// valid right after the failed call, on the same thread.
inline void check(HRESULT hr, const char* function, std::string_view detail = {}) {
  if (!FAILED(hr)) return;
  char reason[1024] = {};
  const auto token_error = static_cast<TokenError>(MQSecGetLastErrorInfo(reason, sizeof reason));
  std::string text = failure_text(function, hr, detail);
  if (reason[0] != '\0') text.append(" (").append(reason).append(")");
  throw Error(hr, text, token_error);
}

// UTF-8 -> wchar_t (UTF-32). Throws Error(invalid_code) on malformed UTF-8, overlong forms,
// surrogates, code points above U+10FFFF and embedded NULs (they would truncate the C string).
inline std::wstring to_wide(std::string_view s, HRESULT invalid_code, const char* what) {
  auto bad = [&]() -> Error {
    return Error(invalid_code, std::string(what) + " is not valid UTF-8 text");
  };
  std::wstring out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    char32_t cp;
    size_t n;
    if (b0 < 0x80) {
      cp = b0;
      n = 1;
    } else if ((b0 & 0xE0) == 0xC0) {
      cp = b0 & 0x1Fu;
      n = 2;
    } else if ((b0 & 0xF0) == 0xE0) {
      cp = b0 & 0x0Fu;
      n = 3;
    } else if ((b0 & 0xF8) == 0xF0) {
      cp = b0 & 0x07u;
      n = 4;
    } else {
      throw bad();
    }
    if (i + n > s.size()) throw bad();
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) throw bad();
      cp = (cp << 6) | (b & 0x3Fu);
    }
    static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp == 0 || cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) throw bad();
    out.push_back(static_cast<wchar_t>(cp));
    i += n;
  }
  return out;
}

// wchar_t (UTF-32) -> UTF-8. Values that are not Unicode scalar values become U+FFFD (the
// runtime never produces them; this keeps the conversion total).
inline std::string to_utf8(std::wstring_view w) {
  std::string out;
  out.reserve(w.size());
  for (wchar_t wc : w) {
    auto cp = static_cast<char32_t>(wc);
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

// A timeout for MQReceiveMessage: milliseconds, kInfinite (or anything at least as long) for
// INFINITE. Throws Error(MQ_ERROR_INVALID_PARAMETER) for a negative timeout.
inline DWORD to_mq_timeout(std::chrono::milliseconds t) {
  if (t.count() < 0) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "a receive timeout cannot be negative");
  }
  if (t >= kInfinite) return INFINITE;
  return static_cast<DWORD>(t.count());
}

}  // namespace detail
}  // namespace mqsec
