// mqsec::Error: the one exception type of the mqsec runtime and its C++ API.
// It carries the MSMQ HRESULT that the C ABI returns for it, plus a human-readable
// reason for logs and the CLI. Reasons never contain PINs or key material.
#pragma once

#include <mq.h>

#include <stdexcept>
#include <string>

namespace mqsec {

class Error : public std::runtime_error {
 public:
  Error(HRESULT code, const std::string& reason) : std::runtime_error(reason), code_(code) {}
  HRESULT code() const noexcept { return code_; }

 private:
  HRESULT code_;
};

}  // namespace mqsec
