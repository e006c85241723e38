// The process's runtime object and the core's fork handler.
#include "src/core/runtime.hpp"

#include <pthread.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "src/security/log.hpp"

namespace mqsec::core {

Runtime& runtime() {
  static Runtime* r = new Runtime();  // immortal (see ~Runtime)
  return *r;
}

Runtime::Runtime()
    : fork_adopted_((pkcs11::adopt_fork_handlers(), true)),
      stores_([](const std::string& why) { log(LogLevel::Error, why); }) {
  pkcs11::register_fork_mutex(registry_cache_mu_);     // a forked child may receive too
  pkcs11::register_fork_mutex(system_registries_mu_);  // (and registers, and sends)
  renew_message_ids();
  pthread_atfork(prepare_fork, parent_after_fork, child_after_fork);
  std::atexit([] { runtime().stores().flush_express(); });
}

// The lock order (docs/architecture.md): the Cryptoki call gate, then the leaf locks registered
// with it (handle tables, registry caches, the log, ...), then the stores' set, the writers,
// the stores. The gate comes first because a receiving thread inside a call scope (verifying)
// may wait for a store's lock: taking that lock first and then waiting for the scope to end
// would deadlock. Released in reverse order.
void Runtime::prepare_fork() noexcept {
  pkcs11::fork_prepare();
  runtime().stores_.prepare_fork();
}

void Runtime::parent_after_fork() noexcept {
  runtime().stores_.parent_after_fork();
  pkcs11::fork_parent();
}

void Runtime::child_after_fork() noexcept {
  Runtime& r = runtime();
  r.stores_.child_after_fork();
  r.renew_message_ids();
  pkcs11::fork_child();
}

security::SystemConfig Runtime::config() const {
  try {
    return security::load_system_config();
  } catch (const security::ConfigError& e) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, std::string("system configuration: ") + e.what());
  }
}

std::optional<Runtime::Resolved> Runtime::resolve(const Destination& d,
                                                  const std::filesystem::path& store_dir) {
  // Destination::Transport::Local, the only kind today.
  auto info = stores_.store_at(store_dir).find_queue(d.queue);
  if (!info) return std::nullopt;
  auto transport =
      std::make_shared<transport::local::LocalQueue>(stores_, store_dir, info->name, info->id);
  return Resolved{std::move(*info), std::move(transport)};
}

std::optional<security::Bytes> Runtime::registered_sid(const std::filesystem::path& store_dir,
                                                       const security::Bytes& cert_sha256) {
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(registry_cache_mu_);
    auto it = registry_cache_.find({store_dir, cert_sha256});
    if (it != registry_cache_.end() && now - it->second.second < std::chrono::seconds(2)) {
      return it->second.first;
    }
  }
  std::optional<security::Bytes> sid = stores_.store_at(store_dir).certificate_sid(cert_sha256);
  std::lock_guard lock(registry_cache_mu_);
  if (registry_cache_.size() >= 4096) registry_cache_.clear();
  registry_cache_[{store_dir, cert_sha256}] = {sid, now};
  return sid;
}

void Runtime::forget_registrations() {
  std::lock_guard lock(registry_cache_mu_);
  registry_cache_.clear();
}

std::optional<security::Bytes> Runtime::system_registered_sid(const std::filesystem::path& dir,
                                                              const security::Bytes& cert_sha256) {
  if (dir.empty()) return std::nullopt;
  security::SystemRegistry* reg = nullptr;
  {
    std::lock_guard lock(system_registries_mu_);
    if (auto it = system_registries_.find(dir); it != system_registries_.end()) {
      reg = it->second.get();
    }
  }
  if (reg == nullptr) {
    // Built (and, when another thread was first, destroyed) outside the map's lock: a
    // SystemRegistry registers its own fork lock, and the fork handlers take that registry's
    // lock before the map's.
    auto fresh = std::make_unique<security::SystemRegistry>(dir);
    {
      std::lock_guard lock(system_registries_mu_);
      auto& slot = system_registries_[dir];
      if (!slot) slot = std::move(fresh);
      reg = slot.get();
    }
  }
  return reg->lookup(cert_sha256);
}

void Runtime::renew_message_ids() {
  std::random_device rd;
  for (auto& b : message_guid_) b = static_cast<uint8_t>(rd());
  message_counter_ = 0;
}

std::array<uint8_t, 20> Runtime::new_message_id() {
  uint32_t n = ++message_counter_;
  std::array<uint8_t, 20> id{};
  std::memcpy(id.data(), message_guid_.data(), 16);
  std::memcpy(id.data() + 16, &n, 4);
  return id;
}

}  // namespace mqsec::core
