// Exceptions to HRESULTs, for the C API's entry points (abi::guard) and the mqsec command's
// calls into the core: an mqsec::Error becomes its code, and its text the calling thread's
// last error (mqsec::last_error_message); anything else is logged and becomes MQ_ERROR
// (MQ_ERROR_INSUFFICIENT_RESOURCES when out of memory).
#pragma once

#include <mq.h>

#include <new>
#include <string>

#include "mqsec/error.hpp"
#include "src/security/log.hpp"

namespace mqsec::core {

template <typename F>
HRESULT hresult_of(const char* function, F&& body) noexcept {
  try {
    return body();
  } catch (const Error& e) {
    set_last_error(e.what(), e.token_error());
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

}  // namespace mqsec::core
