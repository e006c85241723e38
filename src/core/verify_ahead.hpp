// Verifying ahead (issue 14, design (c); docs/performance.md "Verifying ahead"): while a
// receiving thread returns message N of a claimed batch (the store's work: delivery log,
// priority check, replay lookup), one worker thread of the process verifies the next messages
// this process has already claimed (Store::claimed_ahead, in memory), so that the receive of
// N+1 finds its verification done.
//
// What a cached result is: exactly check_message(policy, queue, priority, bytes, {}) for the same
// policy object, the same stored priority and the same envelope bytes (compared when it is
// taken), computed less than max_age() (1 s) ago: the certificate's validity, the clock skew,
// trust and registrations are judged at that time, so a verdict is at most that much older
// than an inline one would be. The replay check and expiry stay with the receive, at delivery
// (the replay check of a claimed message is Store::deliver_claimed's). A message the worker is verifying is waited for, never
// verified twice; one it has not started is withdrawn and verified inline by the receiving
// thread.
//
// Memory: at most kDepth entries per queue are scheduled; entries of a queue whose seq is no
// longer among the next claimed ones (delivered by another thread, unclaimed, purged, released,
// lost with the lease) are dropped at that queue's next schedule(), and all of a handle's at its
// close (forget()). Results are keyed by (queue key, store seq); seqs are never reused.
//
// Owner: core::Runtime (one per process). The worker is started on first use. fork(): the lock
// is a leaf lock registered with the fork locks, never held while verifying or waiting for
// another lock; a forked child has no worker: it abandons the parent's thread and condition
// variables (pkcs11::abandon_after_fork), forgets every entry and starts its own worker on its
// first schedule(). Exit: an atexit handler stops the worker after the verification it is
// running (so that none runs while OpenSSL's own atexit cleanup does).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "src/core/verification.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

class VerifyAhead {
 public:
  // How many claimed messages after the one being returned are verified ahead.
  static constexpr size_t kDepth = 4;

  // When scheduling is on. Auto: only while fewer threads of this process are inside a claimed
  // receive than the process may run on CPUs (one core is left idle by the receivers); at two
  // receiving threads on two cores the worker would only take CPU from them (measured,
  // docs/performance.md). MQSEC_VERIFY_AHEAD=0 / 1 in the environment (read once) forces Off /
  // On, for measurements.
  enum class Mode { Auto, Off, On };

  struct Counters {
    uint64_t ahead = 0;      // verifications the worker completed
    uint64_t used = 0;       // of them, taken by a receive (its verdict used)
    uint64_t waited = 0;     // receives that waited for the worker to finish their message
    uint64_t inline_ = 0;    // receives that verified inline (nothing usable ahead)
    uint64_t stale = 0;      // of the inline ones: a result was there but too old or not the same
    uint64_t withdrawn = 0;  // scheduled, not started, verified inline or dropped instead
    uint64_t discarded = 0;  // completed by the worker, never used (dropped, stale, closed)
  };

  VerifyAhead();
  VerifyAhead(const VerifyAhead&) = delete;
  VerifyAhead& operator=(const VerifyAhead&) = delete;

  // Whether a receive now should schedule (Mode, and in Auto the number of receivers).
  bool wanted() const noexcept;
  // A claimed receive is running on this thread while the object lives (for Mode::Auto).
  class Receiving {
   public:
    explicit Receiving(VerifyAhead& v) : v_(v) { v_.receivers_.fetch_add(1); }
    ~Receiving() { v_.receivers_.fetch_sub(1); }
    Receiving(const Receiving&) = delete;
    Receiving& operator=(const Receiving&) = delete;

   private:
    VerifyAhead& v_;
  };

  // The seqs of queue `key` scheduled or verified now (for Store::claimed_ahead's `known`).
  std::vector<int64_t> known(const std::string& key);
  // `next`: the next claimed messages of queue `key` in receive order (claimed_ahead). Drops
  // the queue's entries not among them (unless being verified: those are dropped when done),
  // and schedules those that are new (their envelope is not empty) under `policy` for queue
  // name `queue` (verify_name). Starts the worker when needed. Never throws (on failure
  // nothing is scheduled: the receives verify inline).
  void schedule(const std::string& key, const std::shared_ptr<const QueuePolicy>& policy,
                const std::string& queue, std::vector<transport::StoredMessage> next) noexcept;
  // The result for message m of queue `key` verified under `policy`: waits while the worker
  // verifies it; nullopt when the caller must verify inline (nothing scheduled, not started yet
  // (withdrawn), too old, or not for these bytes and this policy). The entry is gone after.
  std::optional<Checked> take(const std::string& key, const QueuePolicy* policy,
                              const transport::StoredMessage& m);
  // A handle of queue `key` with `policy` is closed: its entries go (a result being computed
  // is dropped when done; the close does not wait for it).
  void forget(const std::string& key, const QueuePolicy* policy) noexcept;

  // Every result goes (one being computed is dropped when done): a certificate was
  // registered by this process (Runtime::forget_registrations), so a verdict computed before
  // may name the wrong sender.
  void invalidate() noexcept;

  Counters counters();
  // Tests: the bound on a result's age, the mode, and a function the worker calls before each
  // verification (outside the lock).
  void set_max_age(std::chrono::milliseconds age);
  std::chrono::milliseconds max_age();
  void set_mode(Mode m) noexcept { mode_.store(m); }
  void set_before_verify(std::function<void()> f);
  // Stops the worker (atexit): waits for the verification it runs, then joins it.
  void stop() noexcept;

 private:
  enum class State { Queued, Running, Done, Withdrawn };
  struct Entry {
    std::string key;
    int64_t seq = 0;
    State state = State::Queued;
    bool dropped = false;  // no longer in the map: the worker discards its result
    std::shared_ptr<const QueuePolicy> policy;
    std::string queue;
    int priority = 0;
    transport::Bytes bytes;
    std::optional<Checked> result;  // nullopt when the check threw (verified inline then)
    std::chrono::steady_clock::time_point done_at;
  };
  using Key = std::pair<std::string, int64_t>;

  // Under mu_: a forked child forgets the parent's worker and entries.
  void adopt_after_fork();
  void start_locked();
  void run();
  using Entries = std::map<Key, std::shared_ptr<Entry>>;
  Entries::iterator drop_locked(Entries::iterator it);

  std::atomic<Mode> mode_{Mode::Auto};
  std::atomic<int> receivers_{0};
  unsigned cpus_ = 1;

  std::mutex mu_;  // leaf lock, registered with the fork locks
  pid_t pid_;
  std::condition_variable* work_cv_;  // pointers: a forked child abandons the parent's
  std::condition_variable* done_cv_;
  std::thread* thread_ = nullptr;
  bool running_ = false;   // the worker thread is in its loop
  bool stopping_ = false;  // stop() was called: nothing more is scheduled
  Entries entries_;
  std::deque<std::shared_ptr<Entry>> jobs_;  // FIFO (receive order); Withdrawn ones skipped
  Counters counters_;
  std::chrono::milliseconds max_age_{1000};
  std::function<void()> before_verify_;
};

}  // namespace mqsec::core
