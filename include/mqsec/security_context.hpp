// mqsec::SecurityContext: RAII owner of an MSMQ security context handle.
//
// Wraps MQGetSecurityContextEx (acquire) and MQFreeSecurityContext (destructor) of mq.h, and
// MQRegisterCertificate (register_certificate, which also enrolls the internal certificate). A
// security context holds the sender's certificate, the token session and private key that sign
// messages, and the sender's SID; attach it to messages (Message::attach) so that every
// authenticated send reuses it instead of opening the token again.
//
// Errors: the factory functions throw mqsec::Error carrying the HRESULT of
// MQGetSecurityContextEx (e.g. MQ_ERROR_NO_INTERNAL_USER_CERT when the user has not enrolled,
// MQ_ERROR_INVALID_CERTIFICATE when no key on the token matches the certificate,
// MQ_ERROR_SERVICE_NOT_AVAILABLE for a broken configuration) and a message naming the function.
// register_certificate throws mqsec::Error with MQRegisterCertificate's HRESULT
// (MQ_ERROR_INVALID_CERTIFICATE, MQ_ERROR_INTERNAL_USER_CERT_EXIST, ...). Nothing else throws.
//
// Header-only over the C ABI: link with -lmqrt only.
#pragma once

#include <mq.h>

#include <cstdint>
#include <span>
#include <utility>

#include "mqsec/detail/util.hpp"
#include "mqsec/error.hpp"

namespace mqsec {

class SecurityContext {
 public:
  // An empty object that owns no context (handle() == 0); what a moved-from object becomes.
  SecurityContext() noexcept = default;

  // The context of the calling thread's user and their internal certificate (the one
  // registered with MQRegisterCertificate / `mqsec enroll`). Throws mqsec::Error.
  static SecurityContext internal() { return acquire(nullptr, 0); }

  // The context of an external certificate (DER) whose private key is on the user's token.
  // An empty span means the internal certificate, as in MQGetSecurityContextEx. Throws
  // mqsec::Error.
  static SecurityContext from_certificate(std::span<const uint8_t> der) {
    if (der.size() > UINT32_MAX) {
      throw Error(MQ_ERROR_INVALID_PARAMETER, "the certificate is larger than 4 GiB");
    }
    return acquire(der.empty() ? nullptr : der.data(), static_cast<DWORD>(der.size()));
  }

  // Adopts a handle returned by MQGetSecurityContextEx; the object frees it.
  static SecurityContext adopt(HANDLE handle) noexcept { return SecurityContext(handle); }

  SecurityContext(const SecurityContext&) = delete;
  SecurityContext& operator=(const SecurityContext&) = delete;
  SecurityContext(SecurityContext&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  SecurityContext& operator=(SecurityContext&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~SecurityContext() { reset(); }

  // The 32-bit value for PROPID_M_SECURITY_CONTEXT (VT_UI4); 0 when empty.
  uint32_t handle() const noexcept {
    return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(handle_));
  }
  // The handle as mq.h's functions take it.
  HANDLE native_handle() const noexcept { return handle_; }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

  // Frees the context now (MQFreeSecurityContext); the object becomes empty. Messages that
  // borrowed the handle then fail to send with MQ_ERROR_BAD_SECURITY_CONTEXT.
  void reset() noexcept {
    if (handle_ != nullptr) MQFreeSecurityContext(std::exchange(handle_, nullptr));
  }
  // Gives up ownership: the caller must call MQFreeSecurityContext.
  [[nodiscard]] HANDLE release() noexcept { return std::exchange(handle_, nullptr); }

 private:
  explicit SecurityContext(HANDLE h) noexcept : handle_(h) {}

  static SecurityContext acquire(const uint8_t* der, DWORD length) {
    HANDLE h = nullptr;
    // MQGetSecurityContextEx does not write through the buffer; mq.h's LPVOID is MSMQ's.
    HRESULT hr = MQGetSecurityContextEx(const_cast<uint8_t*>(der), length, &h);
    detail::check(hr, "MQGetSecurityContextEx",
                  der == nullptr ? "internal certificate" : "external certificate");
    return SecurityContext(h);
  }

  HANDLE handle_ = nullptr;
};

// MQRegisterCertificate: registers `der` (or, when empty, enrolls the calling user's internal
// certificate, creating it on the token if needed) with the user's SID, so that receivers see
// ReceivedMessage::sender_confirmed(). flags: MQCERT_REGISTER_ALWAYS or
// MQCERT_REGISTER_IF_NOT_EXIST (internal certificate only). Returns the success code (MQ_OK or
// an MQ_INFORMATION_* value such as MQ_INFORMATION_INTERNAL_USER_CERT_EXIST). Throws
// mqsec::Error.
inline HRESULT register_certificate(DWORD flags, std::span<const uint8_t> der = {}) {
  if (der.size() > UINT32_MAX) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "the certificate is larger than 4 GiB");
  }
  // MQRegisterCertificate does not write through the buffer; LPVOID is MSMQ's signature.
  HRESULT hr =
      MQRegisterCertificate(flags, der.empty() ? nullptr : const_cast<uint8_t*>(der.data()),
                            static_cast<DWORD>(der.size()));
  detail::check(hr, "MQRegisterCertificate",
                der.empty() ? "internal certificate" : "external certificate");
  return hr;
}

}  // namespace mqsec
