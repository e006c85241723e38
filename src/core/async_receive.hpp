// Asynchronous receives (MQReceiveMessage and MQReceiveMessageByLookupId with a callback or an
// OVERLAPPED): each pending receive runs on a runtime thread of its own, and the events an
// OVERLAPPED's hEvent names (Linux has no Win32 events: libmqrt's MQSecCreateEvent family,
// docs/msmq-api.md). Plain C++ here: what a receive fills and how its completion is reported
// (callback, OVERLAPPED) are the C API's, given as functions.
//
// Threads: a receive's work runs on its own thread (std::thread, detached); closing its queue
// asks it to stop (the receive loop sees the stop within kCancelLatency and ends with
// MQ_ERROR_OPERATION_CANCELLED). At process exit every pending receive is asked to stop and
// waited for (at most kExitBound); none completes then (no callback, no event). fork(): a child
// has none of its parent's pending receives (they are not completed there); the bookkeeping
// is this process's only (by pid), and the child's condition variable is a fresh one.
#pragma once

#include <sys/types.h>

#include <mq.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>

#include "src/security/handle_table.hpp"

namespace mqsec::core {

class Queue;

// How long a stop request may take to end a receive that is waiting for a message.
inline constexpr std::chrono::milliseconds kCancelLatency{50};
// At exit: how long pending receives are waited for.
inline constexpr std::chrono::milliseconds kAsyncExitBound{2000};
// At most this many pending asynchronous receives per process (each has a thread).
inline constexpr size_t kMaxPendingReceives = 1024;

// A Win32-style event object: manual-reset (stays signalled until reset) or auto-reset (one
// waiter's successful wait resets it). Its state lives in AsyncReceives (one lock for all).
struct Event {
  Event(bool manual, bool initial) : manual_reset(manual), signalled(initial) {}
  const bool manual_reset;
  bool signalled;  // guarded by AsyncReceives' lock
};

class AsyncReceives {
 public:
  AsyncReceives();
  AsyncReceives(const AsyncReceives&) = delete;
  AsyncReceives& operator=(const AsyncReceives&) = delete;

  // One asynchronous receive. `receive` does the work (it sees `stop` and throws
  // mqsec::Error(MQ_ERROR_OPERATION_CANCELLED) when asked to stop; any exception becomes its
  // HRESULT). `release` then reports the result where the caller's memory is (an OVERLAPPED),
  // without calling the application; `notify` last calls the application (its callback). The
  // receive is over for MQCloseQueue once `release` returned.
  struct Work {
    std::function<HRESULT(std::stop_token)> receive;
    std::function<void(HRESULT)> release;
    std::function<void(HRESULT)> notify;
  };
  // Starts `w` for `queue` on a new thread. Throws mqsec::Error(MQ_ERROR_INSUFFICIENT_RESOURCES)
  // when kMaxPendingReceives are pending or no thread can be started (then nothing runs).
  void start(const std::shared_ptr<Queue>& queue, Work w);

  // MQCloseQueue: asks every pending receive of `queue` to stop and waits until each has
  // released the caller's memory (not for callbacks to return). A receive whose callback runs
  // on the calling thread is not waited for.
  void cancel(const Queue* queue);

  // Events (MQSecCreateEvent ...). Handles are the table's.
  security::HandleTable<Event>& events() noexcept { return events_; }
  void set(Event& e);
  void reset(Event& e);
  // false on timeout (nullopt: no timeout).
  bool wait(Event& e, std::optional<std::chrono::milliseconds> timeout);

  // At exit (registered with atexit on the first start): stops every pending receive and
  // waits at most `bound`; nothing completes afterwards.
  void stop_all(std::chrono::milliseconds bound) noexcept;

 private:
  struct Op {
    const Queue* queue = nullptr;
    std::stop_source stop;
    bool released = false;
    std::thread::id thread;
  };
  // Under mu_: forgets a parent's state in a forked child (its threads are not here).
  void adopt_after_fork();
  void run(std::shared_ptr<Op> op, Work w);

  mutable std::mutex mu_;        // leaf lock, registered with the fork locks
  std::condition_variable* cv_;  // replaced (the old one abandoned) in a forked child
  pid_t pid_;
  std::list<std::shared_ptr<Op>> ops_;
  bool exiting_ = false;
  security::HandleTable<Event> events_;
};

}  // namespace mqsec::core
