// Security contexts by handle.
#include "src/core/contexts.hpp"

#include "mqsec/error.hpp"
#include "src/core/runtime.hpp"

namespace mqsec::core {

uint32_t open_context(std::span<const uint8_t> der) {
  auto ctx = security::acquire_context(der);
  uint32_t handle = runtime().contexts().insert(std::move(ctx));
  if (handle == 0) {
    throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES, "all 65535 security context slots are in use");
  }
  return handle;
}

void free_context(uint32_t handle) {
  Runtime& rt = runtime();
  // MQFreeSecurityContext: the messages this context queued for batch signing are signed and
  // stored first (bounded wait; the signer keeps the context alive for what is still queued).
  if (auto ctx = rt.contexts().get(handle)) {
    rt.batch_signers().flush(ctx.get(), std::chrono::steady_clock::now() + kBatchFlushBound);
  }
  rt.contexts().erase(handle);
}

}  // namespace mqsec::core
