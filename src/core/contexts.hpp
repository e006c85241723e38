// Security contexts by handle (MQGetSecurityContextEx, MQFreeSecurityContext, `mqsec context`):
// the 32-bit values of PROPID_M_SECURITY_CONTEXT, in the runtime's table.
#pragma once

#include <cstdint>
#include <span>

namespace mqsec::core {

// Builds a context for the calling thread's user (`der` empty: the internal certificate) and
// returns its handle (never 0). Throws mqsec::Error with MQGetSecurityContextEx's codes
// (MQ_ERROR_INSUFFICIENT_RESOURCES when all 65535 slots are in use).
uint32_t open_context(std::span<const uint8_t> der);
// Frees a handle; unknown, stale and forged handles are a no-op.
void free_context(uint32_t handle);

}  // namespace mqsec::core
