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

void free_context(uint32_t handle) { runtime().contexts().erase(handle); }

}  // namespace mqsec::core
