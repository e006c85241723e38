// RFC 7512 URI parsing on top of p11-kit's parser.
#include "pkcs11/uri.hpp"

#include <p11-kit/uri.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string_view>

#include "pkcs11/error.hpp"

namespace mqsec::pkcs11 {
namespace {

// CK_TOKEN_INFO strings are blank-padded, fixed width.
std::string trim_padded(const CK_UTF8CHAR* p, size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

std::string pct_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

void Uri::Free::operator()(p11_kit_uri* u) const noexcept { p11_kit_uri_free(u); }

Uri::Uri(Uri&&) noexcept = default;
Uri& Uri::operator=(Uri&&) noexcept = default;
Uri::~Uri() = default;

namespace {

// True when `text`, read the way p11-kit reads it (white space skipped, %XX decoded, any case),
// contains "pin-value".
bool may_name_pin_value(const std::string& text) {
  std::string plain;
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (std::isspace(c)) continue;
    if (c == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      c = static_cast<unsigned char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
      i += 2;
    }
    plain += static_cast<char>(std::tolower(c));
  }
  return plain.find("pin-value") != std::string::npos;
}

std::string pct_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A token label longer than CK_TOKEN_INFO's 32 bytes can only show up cut: p11-kit would take
// such a URI for one that matches no token at all. Rewrites token=<long label> to the form
// OpenSC shows (the first 29 bytes and "..."), which matches the cut label exactly.
std::string with_long_label_cut(const std::string& text) {
  constexpr size_t kWidth = sizeof(CK_TOKEN_INFO{}.label);
  const size_t path_end = std::min(text.find('?'), text.size());
  size_t start = text.find(':');
  if (start == std::string::npos || start > path_end) return text;
  ++start;
  while (start < path_end) {
    size_t end = std::min(text.find(';', start), path_end);
    if (text.compare(start, 6, "token=") == 0) {
      std::string label = pct_decode(std::string_view(text).substr(start + 6, end - start - 6));
      if (label.size() <= kWidth) return text;
      std::string cut = pct_encode(label.substr(0, kWidth - 3)) + "...";
      return text.substr(0, start + 6) + cut + text.substr(end);
    }
    start = end + 1;
  }
  return text;
}

}  // namespace

Uri Uri::parse(const std::string& text) {
  Uri uri;
  uri.text_ = text;
  uri.uri_.reset(p11_kit_uri_new());
  if (!uri.uri_) throw Error("out of memory parsing a PKCS#11 URI");
  int rc =
      p11_kit_uri_parse(with_long_label_cut(text).c_str(), P11_KIT_URI_FOR_ANY, uri.uri_.get());
  if (rc != P11_KIT_URI_OK) {
    // Never echo a URI that may carry a PIN (even a malformed one), however it is spelled:
    // p11-kit skips white space anywhere in a URI, and names may be percent-encoded.
    const bool secret = may_name_pin_value(text);
    throw Error("invalid PKCS#11 URI" + (secret ? std::string() : " '" + text + "'") + ": " +
                p11_kit_uri_message(rc));
  }
  if (p11_kit_uri_get_pin_value(uri.uri_.get()) != nullptr) {
    // Do not echo the URI: it contains the PIN.
    throw Error(
        "a PKCS#11 URI in the configuration contains pin-value=; PINs do not belong in "
        "configuration: use pin-source=file:<path> (mode 0600) or pin-source=env:<NAME>");
  }
  if (const char* p = p11_kit_uri_get_module_path(uri.uri_.get())) uri.module_path_ = p;
  if (const char* p = p11_kit_uri_get_module_name(uri.uri_.get())) uri.module_name_ = p;
  if (const char* p = p11_kit_uri_get_pin_source(uri.uri_.get())) uri.pin_source_ = p;
  return uri;
}

std::string Uri::token_label() const {
  CK_TOKEN_INFO* info = p11_kit_uri_get_token_info(uri_.get());
  return trim_padded(info->label, sizeof info->label);
}

std::string Uri::token_serial() const {
  CK_TOKEN_INFO* info = p11_kit_uri_get_token_info(uri_.get());
  return trim_padded(info->serialNumber, sizeof info->serialNumber);
}

std::optional<std::vector<uint8_t>> Uri::object_id() const {
  CK_ATTRIBUTE* a = p11_kit_uri_get_attribute(uri_.get(), CKA_ID);
  if (a == nullptr) return std::nullopt;
  auto* p = static_cast<const uint8_t*>(a->pValue);
  return std::vector<uint8_t>(p, p + a->ulValueLen);
}

std::string Uri::object_label() const {
  CK_ATTRIBUTE* a = p11_kit_uri_get_attribute(uri_.get(), CKA_LABEL);
  if (a == nullptr) return {};
  return std::string(static_cast<const char*>(a->pValue), a->ulValueLen);
}

std::optional<CK_OBJECT_CLASS> Uri::object_class() const {
  CK_ATTRIBUTE* a = p11_kit_uri_get_attribute(uri_.get(), CKA_CLASS);
  if (a == nullptr || a->ulValueLen != sizeof(CK_OBJECT_CLASS)) return std::nullopt;
  CK_OBJECT_CLASS c;
  std::memcpy(&c, a->pValue, sizeof c);
  return c;
}

bool truncated_label_matches(const std::string& wanted, const std::string& label) {
  // OpenSC cuts a label longer than the 32 bytes of CK_TOKEN_INFO to its first 29 bytes and a
  // literal "...". Such a label stands for every label that begins with those 29 bytes.
  constexpr size_t kWidth = sizeof(CK_TOKEN_INFO{}.label);
  constexpr size_t kKept = kWidth - 3;
  if (label.size() != kWidth || label.compare(kKept, 3, "...") != 0) return false;
  return wanted.size() >= kKept && wanted.compare(0, kKept, label, 0, kKept) == 0;
}

bool Uri::matches_token(const CK_TOKEN_INFO& info) const {
  if (p11_kit_uri_match_token_info(uri_.get(), &info) == 1) return true;
  const std::string wanted = token_label();
  if (wanted.empty() ||
      !truncated_label_matches(wanted, trim_padded(info.label, sizeof info.label)))
    return false;
  // The label is a truncated form of the one the URI names: compare everything else as usual.
  CK_TOKEN_INFO same_label = info;
  std::memset(same_label.label, ' ', sizeof same_label.label);
  std::memcpy(same_label.label, wanted.data(), std::min(wanted.size(), sizeof same_label.label));
  return p11_kit_uri_match_token_info(uri_.get(), &same_label) == 1;
}

bool Uri::names_object() const {
  return object_id().has_value() || !object_label().empty() || object_class().has_value();
}

std::string object_uri(const std::string& token_label, const std::string& token_serial,
                       const std::vector<uint8_t>& id, const char* type) {
  static const char* hex = "0123456789ABCDEF";
  std::string s = "pkcs11:token=" + pct_encode(token_label);
  if (!token_serial.empty()) s += ";serial=" + pct_encode(token_serial);
  s += ";id=";
  for (uint8_t b : id) {
    s += '%';
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  s += ";type=";
  s += type;
  return s;
}

}  // namespace mqsec::pkcs11
