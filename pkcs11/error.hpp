// The one checked path for Cryptoki results. Every C_* call in mqsec goes through
// check(): a failure becomes pkcs11::Error carrying the function name and the CK_RV,
// so logs and `mqsec doctor` can say exactly which call failed and why.
#pragma once

#include "pkcs11/cryptoki.hpp"

#include <stdexcept>
#include <string>

namespace mqsec::pkcs11 {

// What a failure means for the person at the card, beyond the Cryptoki code: the distinct token
// errors of docs/security.md ("Token errors"). Derived from the CK_RV when the thrower did not
// say (Error::problem()).
enum class Problem {
  Other,
  PinIncorrect,      // the token refused the PIN (CKR_PIN_INCORRECT)
  PinRefusedBefore,  // not presented: the token refused this PIN before (this or an earlier
                     // process)
  PinFinalTry,       // not presented: one try left (CKF_USER_PIN_FINAL_TRY)
  PinLocked,         // the user PIN is locked (CKF_USER_PIN_LOCKED, CKR_PIN_LOCKED)
  PinExpired,        // CKR_PIN_EXPIRED
  PinSource,     // no pin-source, or it cannot be read (missing file, wrong mode, unset variable)
  TokenAbsent,   // the card is not inserted or was pulled (CKR_TOKEN_NOT_PRESENT, ...)
  CardReplaced,  // another card (another serial) sits where ours was: never used, no PIN
  ReaderUnavailable,  // no reader, or the reader / its service (pcscd) fails (CKR_DEVICE_ERROR)
  KeyGenerationUnsupported,  // the token cannot generate key pairs (CKR_FUNCTION_NOT_SUPPORTED)
};

// "pin-incorrect", "token-absent", ... (stable names for logs and `mqsec doctor`); "" for Other.
const char* problem_name(Problem p) noexcept;

// Symbolic name of a CK_RV ("CKR_PIN_INCORRECT"), or "CKR_0x..." for unknown values.
std::string rv_name(CK_RV rv);

class Error : public std::runtime_error {
 public:
  // A failed Cryptoki call: what() is "<function> failed: <CKR_NAME>[ (<context>)]".
  Error(const char* function, CK_RV rv, const std::string& context = {},
        Problem problem = Problem::Other);
  // A failure of this layer that is not a Cryptoki result (module not loadable, no such
  // token, unreadable PIN source, ...). rv() is CKR_OK for these.
  explicit Error(const std::string& reason, Problem problem = Problem::Other);

  CK_RV rv() const noexcept { return rv_; }
  const std::string& function() const noexcept { return function_; }
  // The problem the thrower named, else the one the CK_RV (and function) means.
  Problem problem() const noexcept;

 private:
  std::string function_;
  CK_RV rv_ = CKR_OK;
  Problem problem_ = Problem::Other;
};

inline void check(CK_RV rv, const char* function) {
  if (rv != CKR_OK) throw Error(function, rv);
}

}  // namespace mqsec::pkcs11
