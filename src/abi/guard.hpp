// The wall between MSMQ's C API and our C++: every exported function checks its arguments
// and runs its body through guard(), which turns our exceptions into HRESULTs. Nothing C++
// (exceptions, std::string, objects) crosses mq.h.
#pragma once

#include <mq.h>

#include <new>
#include <string>

#include "mqsec/error.hpp"
#include "src/security/log.hpp"

#define MQSEC_EXPORT extern "C" __attribute__((visibility("default")))

namespace mqsec::abi {

template <typename F>
HRESULT guard(const char* function, F&& body) noexcept {
  try {
    return body();
  } catch (const Error& e) {
    set_last_error(e.what());
    log(LogLevel::Debug, std::string(function) + ": " + e.what());
    return e.code();
  } catch (const std::bad_alloc&) {
    log(LogLevel::Error, std::string(function) + ": out of memory");
    return MQ_ERROR_INSUFFICIENT_RESOURCES;
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string(function) + ": unexpected error: " + e.what());
    return MQ_ERROR;
  } catch (...) {
    log(LogLevel::Error, std::string(function) + ": unexpected error");
    return MQ_ERROR;
  }
}

}  // namespace mqsec::abi
