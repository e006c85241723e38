// MQGetSecurityContextEx, MQGetSecurityContext, MQFreeSecurityContext, MQRegisterCertificate:
// argument checks over the core (src/core/contexts.hpp, registration.hpp).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "src/abi/guard.hpp"
#include "src/core/contexts.hpp"
#include "src/core/registration.hpp"
#include "src/core/runtime.hpp"
#include "src/security/context.hpp"
#include "src/security/enroll.hpp"
#include "src/security/log.hpp"
#include "src/security/personal_store.hpp"

namespace {

using namespace mqsec;

HRESULT get_context(LPVOID buffer, DWORD length, HANDLE* out) {
  if (out == nullptr || (buffer == nullptr) != (length == 0)) return MQ_ERROR_INVALID_PARAMETER;
  *out = nullptr;
  std::span<const uint8_t> der(static_cast<const uint8_t*>(buffer), length);
  uint32_t handle = core::open_context(der);
  *out = reinterpret_cast<HANDLE>(static_cast<uintptr_t>(handle));
  return MQ_OK;
}

}  // namespace

MQSEC_EXPORT HRESULT APIENTRY MQGetSecurityContextEx(LPVOID lpCertBuffer, DWORD dwCertBufferLength,
                                                     HANDLE* phSecurityContext) {
  return abi::guard("MQGetSecurityContextEx", [&] {
    return get_context(lpCertBuffer, dwCertBufferLength, phSecurityContext);
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQGetSecurityContext(LPVOID lpCertBuffer, DWORD dwCertBufferLength,
                                                   HANDLE* phSecurityContext) {
  return abi::guard("MQGetSecurityContext", [&] {
    return get_context(lpCertBuffer, dwCertBufferLength, phSecurityContext);
  });
}

MQSEC_EXPORT VOID APIENTRY MQFreeSecurityContext(HANDLE hSecurityContext) {
  // VOID in MSMQ: NULL, unknown, forged and already-freed handles are a silent no-op.
  uintptr_t value = reinterpret_cast<uintptr_t>(hSecurityContext);
  if (value == 0 || value > UINT32_MAX) return;
  abi::guard("MQFreeSecurityContext", [&] {
    core::free_context(static_cast<uint32_t>(value));
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQRegisterCertificate(DWORD dwFlags, LPVOID lpCertBuffer,
                                                    DWORD dwCertBufferLength) {
  return abi::guard("MQRegisterCertificate", [&]() -> HRESULT {
    if (dwFlags != MQCERT_REGISTER_ALWAYS && dwFlags != MQCERT_REGISTER_IF_NOT_EXIST) {
      return MQ_ERROR_INVALID_PARAMETER;
    }
    if ((lpCertBuffer == nullptr) != (dwCertBufferLength == 0)) return MQ_ERROR_INVALID_PARAMETER;
    std::span<const uint8_t> der(static_cast<const uint8_t*>(lpCertBuffer), dwCertBufferLength);
    if (!der.empty() && dwFlags != MQCERT_REGISTER_ALWAYS) return MQ_ERROR_INVALID_PARAMETER;
    return core::register_certificate(der, dwFlags == MQCERT_REGISTER_IF_NOT_EXIST, {}).code;
  });
}

// mqsec's extension for the C++ API (include/mqsec/detail/util.hpp): the reason of the calling
// thread's last failed MQ* call (UTF-8, cut to fit, NUL-terminated; "" when it left none) and
// which token error it was (mqsec::TokenError; 0 for none). Never contains a PIN.
MQSEC_EXPORT DWORD APIENTRY MQSecGetLastErrorInfo(LPSTR reason, DWORD reason_size) {
  try {
    if (reason != nullptr && reason_size > 0) {
      const std::string text = last_error_message();
      const size_t n = std::min<size_t>(text.size(), reason_size - 1);
      std::memcpy(reason, text.data(), n);
      reason[n] = '\0';
    }
    return static_cast<DWORD>(last_token_error());
  } catch (...) {
    if (reason != nullptr && reason_size > 0) reason[0] = '\0';
    return 0;
  }
}
