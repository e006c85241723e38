// The process's runtime object and the core's fork handler.
#include "src/core/runtime.hpp"

#include <pthread.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "src/core/forwarding.hpp"
#include "src/core/outgoing.hpp"
#include "src/security/log.hpp"

namespace mqsec::core {
namespace {

// How long exit waits for a background forwarder (Forwarder::run returns within about one
// operation after a stop request: an aborted connection closes in 0.5 s at most).
constexpr std::chrono::milliseconds kForwarderExitBound{2000};

// A remote destination's transport: its outgoing queue in the local store; the first send
// starts the process's background forwarder for the store.
class OutgoingQueueTransport final : public transport::QueueTransport {
 public:
  OutgoingQueueTransport(std::shared_ptr<transport::local::LocalQueue> queue,
                         security::SystemConfig cfg)
      : queue_(std::move(queue)), cfg_(std::move(cfg)) {}

  void send(int priority, transport::Bytes envelope, transport::Delivery delivery) override {
    queue_->send(priority, std::move(envelope), delivery);
    if (!started_.exchange(true, std::memory_order_relaxed)) {
      runtime().start_background_forwarder(cfg_);
    }
  }
  void flush() override { queue_->flush(); }
  std::optional<transport::StoredMessage> first() override { return queue_->first(); }
  std::optional<transport::StoredMessage> next_after(int priority, int64_t seq) override {
    return queue_->next_after(priority, seq);
  }
  std::optional<transport::StoredMessage> get(int64_t seq) override { return queue_->get(seq); }
  bool remove(int64_t seq) override { return queue_->remove(seq); }
  transport::Removal remove_delivered(int64_t seq, std::span<const uint8_t> msg_id,
                                      int64_t sent_time, int64_t window_seconds) override {
    return queue_->remove_delivered(seq, msg_id, sent_time, window_seconds);
  }
  bool was_delivered(std::span<const uint8_t> msg_id) override {
    return queue_->was_delivered(msg_id);
  }
  size_t count() override { return queue_->count(); }
  uint64_t version() override { return queue_->version(); }
  bool wait_for_change(uint64_t seen, std::chrono::milliseconds timeout) override {
    return queue_->wait_for_change(seen, timeout);
  }
  void record_rejection(std::string_view kind, std::string_view reason,
                        std::span<const uint8_t> envelope,
                        const transport::RejectionBounds& bounds) override {
    queue_->record_rejection(kind, reason, envelope, bounds);
  }

 private:
  const std::shared_ptr<transport::local::LocalQueue> queue_;
  const security::SystemConfig cfg_;
  std::atomic<bool> started_{false};
};

}  // namespace

Runtime& runtime() {
  static Runtime* r = new Runtime();  // immortal (see ~Runtime)
  return *r;
}

Runtime::Runtime()
    : fork_adopted_((pkcs11::adopt_fork_handlers(), true)),
      stores_([](const std::string& why) { log(LogLevel::Error, why); }) {
  pkcs11::register_fork_mutex(registry_cache_mu_);     // a forked child may receive too
  pkcs11::register_fork_mutex(system_registries_mu_);  // (and registers, and sends)
  pkcs11::register_fork_mutex(forwarders_mu_);
  pkcs11::register_fork_mutex(forwarding_active_mutex());
  renew_message_ids();
  pthread_atfork(prepare_fork, parent_after_fork, child_after_fork);
  std::atexit([] {
    runtime().stores().flush_express();  // express messages for other machines: into their
    runtime().stop_background_forwarders(kForwarderExitBound);  // outgoing queues, then stop
  });
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
  forwarding_child_after_fork();  // the parent's forwarder threads and lock files are not ours
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
  if (d.remote()) {
    security::SystemConfig cfg = config();
    if (!cfg.broker) {
      throw Error(
          MQ_ERROR_SERVICE_NOT_AVAILABLE,
          "queue '" + format_name_of(d) +
              "' is on another machine, and no [broker] is "
              "configured" +
              (cfg.source.empty() ? std::string() : " in " + cfg.source.string()) +
              ": messages for other machines travel through an AMQP 1.0 broker (docs/remote.md)");
    }
    cfg.store_path = store_dir;
    transport::QueueInfo info = ensure_outgoing_queue(stores_.store_at(store_dir), d);
    auto local =
        std::make_shared<transport::local::LocalQueue>(stores_, store_dir, info.name, info.id);
    auto transport = std::make_shared<OutgoingQueueTransport>(std::move(local), std::move(cfg));
    return Resolved{std::move(info), std::move(transport)};
  }
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
    if (auto d = registry_cache_.find(store_dir.native()); d != registry_cache_.end()) {
      auto it = d->second.find(cert_sha256);
      if (it != d->second.end() && now - it->second.at < std::chrono::seconds(2)) {
        return it->second.sid;
      }
    }
  }
  std::optional<security::Bytes> sid = stores_.store_at(store_dir).certificate_sid(cert_sha256);
  std::lock_guard lock(registry_cache_mu_);
  auto& entries = registry_cache_[store_dir.native()];
  if (entries.size() >= 4096) entries.clear();
  entries.insert_or_assign(cert_sha256, RegisteredSid{sid, now});
  return sid;
}

void Runtime::forget_registrations() {
  implicit_contexts_.clear();  // a new registration may change the internal certificate
  std::lock_guard lock(registry_cache_mu_);
  registry_cache_.clear();
}

std::optional<security::Bytes> Runtime::system_registered_sid(const std::filesystem::path& dir,
                                                              const security::Bytes& cert_sha256) {
  if (dir.empty()) return std::nullopt;
  security::SystemRegistry* reg = nullptr;
  {
    std::lock_guard lock(system_registries_mu_);
    if (auto it = system_registries_.find(dir.native()); it != system_registries_.end()) {
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
      auto& slot = system_registries_[dir.native()];
      if (!slot) slot = std::move(fresh);
      reg = slot.get();
    }
  }
  return reg->lookup(cert_sha256);
}

void Runtime::start_background_forwarder(const security::SystemConfig& cfg) noexcept {
  try {
    if (forwarding_here(cfg.store_path)) return;  // mqsec agent, or a caller's own forwarder
    const auto key = std::make_pair(::getpid(), cfg.store_path);
    std::lock_guard lock(forwarders_mu_);
    if (forwarders_.count(key) != 0) return;
    auto f = std::make_shared<BackgroundForwarder>();
    f->thread = std::jthread([f, cfg](std::stop_token stop) {
      try {
        forward_outgoing(cfg, stop);
      } catch (const std::exception& e) {
        log(LogLevel::Error,
            std::string("background forwarder stopped; messages for other machines wait in the "
                        "outgoing queues (mqsec agent forwards them): ") +
                e.what());
      }
      std::lock_guard done_lock(f->mu);
      f->done = true;
      f->cv.notify_all();
    });
    forwarders_[key] = std::move(f);
    static std::once_flag at_exit;
    // Registered after the thread's first statics: runs before their destructors.
    std::call_once(at_exit, [] {
      std::atexit([] { runtime().stop_background_forwarders(kForwarderExitBound); });
    });
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("cannot start the background forwarder: ") + e.what());
  }
}

void Runtime::stop_background_forwarders(std::chrono::milliseconds bound) noexcept {
  std::vector<std::shared_ptr<BackgroundForwarder>> mine;
  {
    std::lock_guard lock(forwarders_mu_);
    const pid_t pid = ::getpid();
    for (auto it = forwarders_.begin(); it != forwarders_.end();) {
      if (it->first.first == pid) {
        mine.push_back(std::move(it->second));
        it = forwarders_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& f : mine) f->thread.request_stop();
  const auto deadline = std::chrono::steady_clock::now() + bound;
  for (auto& f : mine) {
    bool done = false;
    {
      std::unique_lock lock(f->mu);
      done = f->cv.wait_until(lock, deadline, [&] { return f->done; });
    }
    if (done) {
      f->thread.join();
    } else {
      log(LogLevel::Warning, "background forwarder did not stop in time; leaving it at exit");
      f->thread.detach();
    }
  }
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
