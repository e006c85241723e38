// RFC 7512 PKCS#11 URIs, parsed by p11-kit. Tokens and objects are always selected by URI
// attributes (token label, serial, CKA_ID, ...), never by slot index: slot ids change, e.g.
// SoftHSM gives a token a new slot after C_InitToken, and a smartcard may move readers.
#pragma once

#include "pkcs11/cryptoki.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct p11_kit_uri;

namespace mqsec::pkcs11 {

class Uri {
 public:
  // Throws pkcs11::Error for text that is not a PKCS#11 URI, and for a URI carrying
  // pin-value (PINs do not belong in configuration text: use pin-source=file:... or env:).
  static Uri parse(const std::string& text);

  Uri(Uri&&) noexcept;
  Uri& operator=(Uri&&) noexcept;
  ~Uri();

  const std::string& text() const noexcept { return text_; }
  // Query attributes. Empty when absent.
  const std::string& module_path() const noexcept { return module_path_; }
  const std::string& module_name() const noexcept { return module_name_; }
  const std::string& pin_source() const noexcept { return pin_source_; }
  // Path attributes describing the token (empty when absent).
  std::string token_label() const;
  std::string token_serial() const;
  // Object attributes (absent -> nullopt / empty).
  std::optional<std::vector<uint8_t>> object_id() const;
  std::string object_label() const;
  std::optional<CK_OBJECT_CLASS> object_class() const;

  // True when every token attribute the URI names equals the token's. A token label that OpenSC
  // cut to 29 bytes and "..." (labels longer than CK_TOKEN_INFO's 32 bytes) matches a URI label
  // that begins with those 29 bytes (truncated_label_matches); a URI label longer than 32 bytes
  // is taken in that cut form (p11-kit alone would match no token with it).
  bool matches_token(const CK_TOKEN_INFO& info) const;
  // True when the URI names no object attributes (id, object, type).
  bool names_object() const;

 private:
  Uri() = default;
  struct Free {
    void operator()(p11_kit_uri* u) const noexcept;
  };
  std::string text_;
  std::unique_ptr<p11_kit_uri, Free> uri_;
  std::string module_path_, module_name_, pin_source_;
};

// Whether `label`, a token label as C_GetTokenInfo gives it, is OpenSC's truncated form (32
// bytes: the first 29 of the real label and a literal "...") of a label beginning like `wanted`.
bool truncated_label_matches(const std::string& wanted, const std::string& label);

// Formats an object URI for a token, e.g. "pkcs11:token=mqsec;serial=...;id=%01;type=cert".
std::string object_uri(const std::string& token_label, const std::string& token_serial,
                       const std::vector<uint8_t>& id, const char* type);

}  // namespace mqsec::pkcs11
