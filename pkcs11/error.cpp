// CK_RV names and pkcs11::Error.
#include "pkcs11/error.hpp"

#include <cstdio>

namespace mqsec::pkcs11 {

std::string rv_name(CK_RV rv) {
  switch (rv) {
#define MQSEC_RV(x) \
  case x:           \
    return #x;
    MQSEC_RV(CKR_OK)
    MQSEC_RV(CKR_CANCEL)
    MQSEC_RV(CKR_HOST_MEMORY)
    MQSEC_RV(CKR_SLOT_ID_INVALID)
    MQSEC_RV(CKR_GENERAL_ERROR)
    MQSEC_RV(CKR_FUNCTION_FAILED)
    MQSEC_RV(CKR_ARGUMENTS_BAD)
    MQSEC_RV(CKR_NO_EVENT)
    MQSEC_RV(CKR_NEED_TO_CREATE_THREADS)
    MQSEC_RV(CKR_CANT_LOCK)
    MQSEC_RV(CKR_ATTRIBUTE_READ_ONLY)
    MQSEC_RV(CKR_ATTRIBUTE_SENSITIVE)
    MQSEC_RV(CKR_ATTRIBUTE_TYPE_INVALID)
    MQSEC_RV(CKR_ATTRIBUTE_VALUE_INVALID)
    MQSEC_RV(CKR_DATA_INVALID)
    MQSEC_RV(CKR_DATA_LEN_RANGE)
    MQSEC_RV(CKR_DEVICE_ERROR)
    MQSEC_RV(CKR_DEVICE_MEMORY)
    MQSEC_RV(CKR_DEVICE_REMOVED)
    MQSEC_RV(CKR_FUNCTION_CANCELED)
    MQSEC_RV(CKR_FUNCTION_NOT_PARALLEL)
    MQSEC_RV(CKR_FUNCTION_NOT_SUPPORTED)
    MQSEC_RV(CKR_FUNCTION_REJECTED)
    MQSEC_RV(CKR_KEY_HANDLE_INVALID)
    MQSEC_RV(CKR_KEY_SIZE_RANGE)
    MQSEC_RV(CKR_KEY_TYPE_INCONSISTENT)
    MQSEC_RV(CKR_KEY_FUNCTION_NOT_PERMITTED)
    MQSEC_RV(CKR_MECHANISM_INVALID)
    MQSEC_RV(CKR_MECHANISM_PARAM_INVALID)
    MQSEC_RV(CKR_OBJECT_HANDLE_INVALID)
    MQSEC_RV(CKR_OPERATION_ACTIVE)
    MQSEC_RV(CKR_OPERATION_NOT_INITIALIZED)
    MQSEC_RV(CKR_PIN_INCORRECT)
    MQSEC_RV(CKR_PIN_INVALID)
    MQSEC_RV(CKR_PIN_LEN_RANGE)
    MQSEC_RV(CKR_PIN_EXPIRED)
    MQSEC_RV(CKR_PIN_LOCKED)
    MQSEC_RV(CKR_SESSION_CLOSED)
    MQSEC_RV(CKR_SESSION_COUNT)
    MQSEC_RV(CKR_SESSION_HANDLE_INVALID)
    MQSEC_RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED)
    MQSEC_RV(CKR_SESSION_READ_ONLY)
    MQSEC_RV(CKR_SESSION_EXISTS)
    MQSEC_RV(CKR_SESSION_READ_ONLY_EXISTS)
    MQSEC_RV(CKR_SESSION_READ_WRITE_SO_EXISTS)
    MQSEC_RV(CKR_SIGNATURE_INVALID)
    MQSEC_RV(CKR_SIGNATURE_LEN_RANGE)
    MQSEC_RV(CKR_TEMPLATE_INCOMPLETE)
    MQSEC_RV(CKR_TEMPLATE_INCONSISTENT)
    MQSEC_RV(CKR_TOKEN_NOT_PRESENT)
    MQSEC_RV(CKR_TOKEN_NOT_RECOGNIZED)
    MQSEC_RV(CKR_TOKEN_WRITE_PROTECTED)
    MQSEC_RV(CKR_USER_ALREADY_LOGGED_IN)
    MQSEC_RV(CKR_USER_NOT_LOGGED_IN)
    MQSEC_RV(CKR_USER_PIN_NOT_INITIALIZED)
    MQSEC_RV(CKR_USER_TYPE_INVALID)
    MQSEC_RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    MQSEC_RV(CKR_USER_TOO_MANY_TYPES)
    MQSEC_RV(CKR_DOMAIN_PARAMS_INVALID)
    MQSEC_RV(CKR_CURVE_NOT_SUPPORTED)
    MQSEC_RV(CKR_BUFFER_TOO_SMALL)
    MQSEC_RV(CKR_SAVED_STATE_INVALID)
    MQSEC_RV(CKR_INFORMATION_SENSITIVE)
    MQSEC_RV(CKR_STATE_UNSAVEABLE)
    MQSEC_RV(CKR_CRYPTOKI_NOT_INITIALIZED)
    MQSEC_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    MQSEC_RV(CKR_MUTEX_BAD)
    MQSEC_RV(CKR_MUTEX_NOT_LOCKED)
#undef MQSEC_RV
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "CKR_0x%08lX", static_cast<unsigned long>(rv));
      return buf;
    }
  }
}

Error::Error(const char* function, CK_RV rv, const std::string& context, Problem problem)
    : std::runtime_error(std::string(function) + " failed: " + rv_name(rv) +
                         (context.empty() ? std::string() : " (" + context + ")")),
      function_(function),
      rv_(rv),
      problem_(problem) {}

Error::Error(const std::string& reason, Problem problem)
    : std::runtime_error(reason), problem_(problem) {}

Problem Error::problem() const noexcept {
  if (problem_ != Problem::Other) return problem_;
  switch (rv_) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
      return Problem::PinIncorrect;
    case CKR_PIN_LOCKED:
      return Problem::PinLocked;
    case CKR_PIN_EXPIRED:
      return Problem::PinExpired;
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_RECOGNIZED:
      return Problem::TokenAbsent;
    case CKR_DEVICE_ERROR:
      return Problem::ReaderUnavailable;
    case CKR_FUNCTION_NOT_SUPPORTED:
    case CKR_MECHANISM_INVALID:
    case CKR_TOKEN_WRITE_PROTECTED:
      return function_ == "C_GenerateKeyPair" ? Problem::KeyGenerationUnsupported : Problem::Other;
    default:
      return Problem::Other;
  }
}

const char* problem_name(Problem p) noexcept {
  switch (p) {
    case Problem::Other:
      return "";
    case Problem::PinIncorrect:
      return "pin-incorrect";
    case Problem::PinRefusedBefore:
      return "pin-refused-before";
    case Problem::PinFinalTry:
      return "pin-final-try";
    case Problem::PinLocked:
      return "pin-locked";
    case Problem::PinExpired:
      return "pin-expired";
    case Problem::PinSource:
      return "pin-source";
    case Problem::TokenAbsent:
      return "token-absent";
    case Problem::CardReplaced:
      return "card-replaced";
    case Problem::ReaderUnavailable:
      return "reader-unavailable";
    case Problem::KeyGenerationUnsupported:
      return "key-generation-unsupported";
  }
  return "";
}

}  // namespace mqsec::pkcs11
