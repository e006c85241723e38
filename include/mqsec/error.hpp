// mqsec::Error: the one exception type of the mqsec runtime and its C++ API.
// It carries the MSMQ HRESULT that the C ABI returns for it, plus a human-readable
// reason for logs and the CLI. Reasons never contain PINs or key material.
#pragma once

#include <mq.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace mqsec {

// Which token failure an error is, where MSMQ's code cannot say: MSMQ reports a wrong PIN, a
// locked card and a pulled card alike (MQ_ERROR_CORRUPTED_SECURITY_DATA, "a cryptographic
// function failed"), and mqsec keeps MSMQ's codes. docs/security.md, "Token errors", has the
// table (HRESULT, what() text, what to do). None for every other failure.
enum class TokenError : uint32_t {
  None = 0,
  PinIncorrect = 1,               // the token refused the PIN in the PIN source
  PinRefusedBefore = 2,           // not presented: the token refused this PIN before
  PinFinalTry = 3,                // not presented: one PIN try is left (CKF_USER_PIN_FINAL_TRY)
  PinLocked = 4,                  // the user PIN is locked (CKF_USER_PIN_LOCKED)
  PinExpired = 5,                 // the user PIN has expired
  PinSource = 6,                  // no pin-source, or it cannot be read
  TokenAbsent = 7,                // the card is not inserted, or was pulled
  CardReplaced = 8,               // another card sits where the user's was; it is never used
  ReaderUnavailable = 9,          // no reader, or the reader or pcscd does not answer
  KeyGenerationUnsupported = 10,  // the token cannot generate key pairs (`mqsec enroll --adopt`)
};

class Error : public std::runtime_error {
 public:
  Error(HRESULT code, const std::string& reason, TokenError token_error = TokenError::None)
      : std::runtime_error(reason), code_(code), token_error_(token_error) {}
  HRESULT code() const noexcept { return code_; }
  // Which token failure this is (None when it is not one, or not known).
  TokenError token_error() const noexcept { return token_error_; }

 private:
  HRESULT code_;
  TokenError token_error_;
};

}  // namespace mqsec
