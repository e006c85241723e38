// The one checked path for Cryptoki results. Every C_* call in mqsec goes through
// check(): a failure becomes pkcs11::Error carrying the function name and the CK_RV,
// so logs and `mqsec doctor` can say exactly which call failed and why.
#pragma once

#include "pkcs11/cryptoki.hpp"

#include <stdexcept>
#include <string>

namespace mqsec::pkcs11 {

// Symbolic name of a CK_RV ("CKR_PIN_INCORRECT"), or "CKR_0x..." for unknown values.
std::string rv_name(CK_RV rv);

class Error : public std::runtime_error {
 public:
  // A failed Cryptoki call: what() is "<function> failed: <CKR_NAME>[ (<context>)]".
  Error(const char* function, CK_RV rv, const std::string& context = {});
  // A failure of this layer that is not a Cryptoki result (module not loadable, no such
  // token, unreadable PIN source, ...). rv() is CKR_OK for these.
  explicit Error(const std::string& reason);

  CK_RV rv() const noexcept { return rv_; }
  const std::string& function() const noexcept { return function_; }

 private:
  std::string function_;
  CK_RV rv_ = CKR_OK;
};

inline void check(CK_RV rv, const char* function) {
  if (rv != CKR_OK) throw Error(function, rv);
}

}  // namespace mqsec::pkcs11
