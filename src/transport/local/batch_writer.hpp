// Express delivery off the sender's critical path (the local transport's writers).
//
// MQMSG_DELIVERY_EXPRESS lets MSMQ keep messages in memory; we use that to take the store's
// commit off the thread that signs: senders hand encoded messages to a BatchWriter and return,
// and one background thread commits whatever has accumulated in a single transaction (group
// commit, no fsync). Messages are committed in the order they were pushed. Memory is bounded:
// push() waits when kMaxPending messages are queued.
//
// flush() returns once everything pushed before it is committed; it is called before a
// receive in the same process, before a recoverable send (to keep arrival order), by
// MQCloseQueue and at exit. A process killed before its writer ran loses those express
// messages, as MSMQ loses express messages when its service stops; recoverable messages are
// never batched this way.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "src/transport/local/store.hpp"

namespace mqsec::transport::local {

class BatchWriter {
 public:
  static constexpr size_t kMaxPending = 4096;
  static constexpr size_t kBatchTarget = 256;  // express: commit at this size or after 1 ms

  // `on_error` reports messages that could not be committed (their senders have returned).
  // `durable`: batches are committed with fsync (recoverable messages; see push_and_wait).
  BatchWriter(Store& store, std::function<void(const std::string&)> on_error, bool durable = false)
      : store_(store), on_error_(std::move(on_error)), durable_(durable) {}
  ~BatchWriter();
  BatchWriter(const BatchWriter&) = delete;
  BatchWriter& operator=(const BatchWriter&) = delete;

  void push(int64_t queue_id, int priority, Bytes envelope);
  // Pushes and waits until the message is committed (group commit: senders that arrive while
  // a batch is being written share the next fsync). Throws mqsec::Error
  // (MQ_ERROR_MESSAGE_STORAGE_FAILED, MQ_ERROR_QUEUE_NOT_FOUND, ...) when it was not stored.
  void push_and_wait(int64_t queue_id, int priority, Bytes envelope);
  // The same for an envelope the writer thread encodes (DeferredEnvelope::bytes(), called
  // unlocked just before the commit). One that fails to encode is not stored and counts as a
  // failed message (push: on_error; push_and_wait: thrown, MQ_ERROR_MESSAGE_STORAGE_FAILED).
  void push(int64_t queue_id, int priority, std::unique_ptr<DeferredEnvelope> envelope);
  void push_and_wait(int64_t queue_id, int priority, std::unique_ptr<DeferredEnvelope> envelope);
  // push() and push_and_wait() for several messages of one queue, in order, with one lock and
  // one wake-up: the writer finds them together and commits them in one transaction (unless
  // more than kMaxPending are queued; then they are committed in several). The envelopes are
  // moved from. push_many_and_wait returns one entry per message: null when it was committed,
  // else the mqsec::Error push_and_wait would have thrown for it.
  void push_many(int64_t queue_id, std::span<Outbound> messages);
  std::vector<std::exception_ptr> push_many_and_wait(int64_t queue_id,
                                                     std::span<Outbound> messages);
  // Waits until every message pushed before this call is committed (or failed and logged).
  void flush();
  // fork() safety, from pthread_atfork handlers: prepare_fork() takes the lock so the child
  // never inherits it held; parent_after_fork() releases it; child_after_fork() releases it
  // and forgets the parent's pending messages and thread (the parent commits those).
  void prepare_fork() noexcept { mu_.lock(); }
  void parent_after_fork() noexcept { mu_.unlock(); }
  void child_after_fork() noexcept;
  // Messages the writer could not commit (queue deleted meanwhile, store error).
  uint64_t failed() const;
  // How often the writer thread looked for work (for tests: an idle flush() must not wake it).
  uint64_t wakeups() const;

 private:
  void run();
  void start_locked();
  // Queues `messages` (lock held; waits for room); the ticket of the last one.
  uint64_t enqueue_locked(std::unique_lock<std::mutex>& lock, int64_t queue_id,
                          std::span<Outbound> messages);
  // Queues one message (lock held; waits for room); its ticket.
  uint64_t enqueue_one_locked(std::unique_lock<std::mutex>& lock, int64_t queue_id, int priority,
                              Bytes envelope, std::unique_ptr<DeferredEnvelope> deferred);
  // Waits for `ticket` (lock held) and throws its failure, if any.
  void wait_for_locked(std::unique_lock<std::mutex>& lock, uint64_t ticket);

  Store& store_;
  mutable std::mutex mu_;
  std::condition_variable wake_, progress_;
  std::vector<Append> pending_;
  uint64_t pushed_ = 0, done_ = 0, failed_ = 0, wakeups_ = 0;
  int waiters_ = 0;  // threads in flush()/push_and_wait(): commit at once
  bool stop_ = false;
  bool running_ = false;
  bool asleep_ = false;            // the writer waits untimed: a push must wake it
  std::thread* thread_ = nullptr;  // a pointer so a forked child can drop the parent's thread
  std::function<void(const std::string&)> on_error_;
  bool durable_;
  std::vector<uint64_t> tickets_;  // ticket of each pending_ entry
  // Entries of pending_ still to be encoded: (index in pending_, its envelope).
  std::vector<std::pair<size_t, std::unique_ptr<DeferredEnvelope>>> deferred_;
  // Deferred envelopes already encoded, handed back so that deferred pushes free them (two per
  // push) on a sending thread: freed here, their many small blocks landed in the senders'
  // malloc arena's fast bins, which the next 1 KiB body allocation then consolidated
  // (profiled: malloc_consolidate under parse_send).
  std::vector<std::unique_ptr<DeferredEnvelope>> encoded_;
  std::map<uint64_t, std::pair<int32_t, std::string>> failures_;  // ticket -> HRESULT, reason
};

}  // namespace mqsec::transport::local
