// The wall between MSMQ's C API and our C++: every exported function checks its arguments
// and runs its body through guard(), which turns our exceptions into HRESULTs. Nothing C++
// (exceptions, std::string, objects) crosses mq.h.
#pragma once

#include <mq.h>

#include "src/core/hresult.hpp"
#include "src/core/runtime.hpp"

#define MQSEC_EXPORT extern "C" __attribute__((visibility("default")))

namespace mqsec::abi {

// Also starts the calling thread's last error afresh, so that MQSecGetLastErrorInfo after a
// failed call tells that call's reason, never an earlier one's.
template <typename F>
HRESULT guard(const char* function, F&& body) noexcept {
  set_last_error({});
  return core::hresult_of(function, [&]() -> HRESULT {
    core::runtime();  // first: it installs the core's fork handler
    return body();
  });
}

}  // namespace mqsec::abi
