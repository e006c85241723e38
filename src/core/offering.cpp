// Messages this process's receivers are offering now.
#include "src/core/offering.hpp"

#include <unistd.h>

#include "pkcs11/call_gate.hpp"

namespace mqsec::core {

Offering::Offering() : pid_(::getpid()) { pkcs11::register_fork_mutex(mu_); }

bool Offering::begin(const std::string& queue_key, int64_t seq) {
  std::lock_guard lock(mu_);
  if (pid_ != ::getpid()) {
    offered_.clear();
    pid_ = ::getpid();
  }
  return offered_.emplace(queue_key, seq).second;
}

void Offering::end(const std::string& queue_key, int64_t seq) noexcept {
  std::lock_guard lock(mu_);
  if (pid_ == ::getpid()) offered_.erase({queue_key, seq});
}

}  // namespace mqsec::core
