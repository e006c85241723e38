// Broker settings of the configuration, and the store's forwarder loop (one per store across
// processes, by an flock on <store>/forwarder.lock).
#include "src/core/forwarding.hpp"

#include <fcntl.h>
#include <mq.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/outgoing.hpp"
#include "src/core/runtime.hpp"
#include "src/core/verification.hpp"
#include "src/security/log.hpp"
#include "src/security/secret_source.hpp"
#include "transport/amqp/forwarder.hpp"

namespace mqsec::core {
namespace {

// The forwarder lock files this process holds (fds), so that a forked child can close its
// copies: an flock belongs to the open file description, which the child shares; a child that
// outlived its parent would otherwise keep every other process from forwarding.
constexpr size_t kSlots = 16;
struct Slot {
  std::atomic<int> fd{-1};
};
std::array<Slot, kSlots> g_held_fds;

// Owns a lock file's fd; the slot is cleared before the fd is closed (a fork in between must
// not close a reused number in the child).
class HeldLock {
 public:
  explicit HeldLock(int fd) : fd_(fd) {
    for (auto& slot : g_held_fds) {
      int expected = -1;
      if (slot.fd.compare_exchange_strong(expected, fd)) {
        slot_ = &slot.fd;
        break;
      }
    }
  }
  ~HeldLock() {
    if (slot_) slot_->store(-1);
    ::close(fd_);
  }
  HeldLock(const HeldLock&) = delete;
  HeldLock& operator=(const HeldLock&) = delete;

 private:
  int fd_;
  std::atomic<int>* slot_ = nullptr;
};

// Opens (creating it, mode 0600) <store>/forwarder.lock without following links.
int open_forwarder_lock(const std::filesystem::path& store_dir) {
  const std::filesystem::path path = store_dir / "forwarder.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  return fd;
}

// Sleeps `d` or until stop is requested.
void pause(std::chrono::milliseconds d, const std::stop_token& stop) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  cv.wait_for(lock, stop, d, [] { return false; });
}

// Stores that a forward_outgoing of this process serves (or waits to serve).
std::mutex g_active_mu;  // leaf lock; registered with the fork locks (Runtime)
std::vector<std::filesystem::path> g_active;

class Active {
 public:
  explicit Active(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::lock_guard lock(g_active_mu);
    g_active.push_back(dir_);
  }
  ~Active() {
    std::lock_guard lock(g_active_mu);
    auto it = std::find(g_active.begin(), g_active.end(), dir_);
    if (it != g_active.end()) g_active.erase(it);
  }
  Active(const Active&) = delete;
  Active& operator=(const Active&) = delete;

 private:
  std::filesystem::path dir_;
};

}  // namespace

std::mutex& forwarding_active_mutex() noexcept { return g_active_mu; }

bool forwarding_here(const std::filesystem::path& store_dir) {
  std::lock_guard lock(g_active_mu);
  return std::find(g_active.begin(), g_active.end(), store_dir) != g_active.end();
}

void forwarding_child_after_fork() noexcept {
  for (auto& slot : g_held_fds) {
    const int fd = slot.fd.exchange(-1);
    if (fd >= 0) ::close(fd);
  }
  g_active.clear();  // the parent's forwarder threads do not exist here
}

bool forwarder_running(const std::filesystem::path& store_dir) {
  const std::filesystem::path path = store_dir / "forwarder.lock";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;  // no forwarder ever ran here
  // A probe: a forwarder that tries to take the lock in this instant retries 0.5 s later.
  const bool held = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // releases the probe's lock, if taken
  return held;
}

transport::amqp::BrokerSettings broker_settings(const security::SystemConfig& cfg) {
  if (!cfg.broker) {
    throw Error(
        MQ_ERROR_SERVICE_NOT_AVAILABLE,
        "no [broker] is configured: messages to queues of other machines travel through "
        "an AMQP 1.0 broker ([broker] url, user, password-source in " +
            (cfg.source.empty() ? std::string("the system configuration") : cfg.source.string()) +
            "; see docs/remote.md)");
  }
  const security::BrokerConfig& b = *cfg.broker;
  transport::amqp::BrokerSettings s;
  s.url = b.url;
  s.user = b.user;
  if (!b.user.empty()) {
    try {
      pkcs11::SecretString pw = security::read_secret_source(b.password_source, "broker password");
      s.password.assign(pw.str());
    } catch (const security::SecretSourceError& e) {
      throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, e.what());
    }
  }
  if (b.uses_tls()) {
    transport::amqp::TlsSettings tls;
    tls.ca_file = b.tls.ca.string();
    tls.cert_file = b.tls.cert.string();
    tls.key_file = b.tls.key.string();
    s.tls = std::move(tls);
  }
  s.connect_timeout = std::chrono::milliseconds(b.connect_timeout_ms);
  return s;
}

void forward_outgoing(const security::SystemConfig& cfg, std::stop_token stop) {
  transport::amqp::BrokerSettings settings = broker_settings(cfg);
  const std::string machine = cfg.machine.name.empty() ? this_machine() : cfg.machine.name;
  Active active(cfg.store_path);
  const int fd = open_forwarder_lock(cfg.store_path);
  HeldLock held(fd);  // registered before flock: a fork in between closes the child's copy
  bool said_waiting = false;
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      const int err = errno;
      throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, "cannot lock " +
                                                      (cfg.store_path / "forwarder.lock").string() +
                                                      ": " + std::strerror(err));
    }
    if (!said_waiting) {
      log(LogLevel::Debug, "forwarder: another process forwards the outgoing queues of " +
                               cfg.store_path.string() + "; waiting to take over");
      said_waiting = true;
    }
    pause(std::chrono::milliseconds(500), stop);
    if (stop.stop_requested()) return;
  }
  if (said_waiting) {
    log(LogLevel::Info, "forwarder: took over the outgoing queues of " + cfg.store_path.string());
  }
  StoreOutgoingSource source(runtime().stores(), cfg.store_path, rejection_bounds_of(cfg.limits),
                             machine);
  transport::amqp::ForwarderOptions options;
  options.source_machine = machine;
  options.log = [](std::string_view line) { log(LogLevel::Warning, std::string(line)); };
  transport::amqp::Forwarder forwarder(std::move(settings), source, std::move(options));
  forwarder.run(stop);
}

}  // namespace mqsec::core
