// The local transport: every queue of this machine is a queue of the SQLite store under the
// configured store directory (store.hpp), written through batch writers (batch_writer.hpp).
//
// Stores is the per-process set of open stores and their writers, owned by the core's runtime
// (one per process). LocalQueue is one queue of one store, seen through the transport
// interface; a LocalQueue inherited across fork() binds itself to the child's own store and
// writers on its next use (SQLite forbids using a parent's connection in the child).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include "src/transport/local/batch_writer.hpp"
#include "src/transport/local/store.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::transport::local {

// Stores and their writers, per process and directory: a forked child must not use the
// parent's SQLite connection nor wait on locks a parent thread held at the fork, so the child
// opens its own and leaves the parent's alone (never destroyed: the owner is immortal).
class Stores {
 public:
  // `on_error` reports messages a writer could not commit (their senders have returned).
  explicit Stores(std::function<void(const std::string&)> on_error)
      : on_error_(std::move(on_error)) {}
  Stores(const Stores&) = delete;
  Stores& operator=(const Stores&) = delete;

  // The store under `dir`, opened once per process and shared by all threads.
  // Throws mqsec::Error(MQ_ERROR_SERVICE_NOT_AVAILABLE) when it cannot be opened.
  Store& store_at(const std::filesystem::path& dir);
  // The express writer of that store (durable = false) or the group-commit writer for
  // recoverable messages (durable = true; push_and_wait is fsynced before it returns), one
  // each per store, started on first use.
  BatchWriter& writer_at(const std::filesystem::path& dir, bool durable);
  // Flushes every express writer of this process (before exit, before a queue is deleted).
  void flush_express() noexcept;

  // fork() safety, called by the owner's fork handler, in this order: prepare_fork() takes
  // this set's lock, then every writer's, then every store's; the parent and the child
  // release them (the child's writers forget the parent's thread and pending messages).
  void prepare_fork() noexcept;
  void parent_after_fork() noexcept;
  void child_after_fork() noexcept;

 private:
  Store& store_locked(const std::filesystem::path& dir);

  std::function<void(const std::string&)> on_error_;
  std::mutex mu_;
  std::map<std::pair<pid_t, std::filesystem::path>, std::unique_ptr<Store>> stores_;
  std::map<std::tuple<pid_t, std::filesystem::path, bool>, std::unique_ptr<BatchWriter>> writers_;
};

// One queue of the local store, through the transport interface.
class LocalQueue final : public QueueTransport {
 public:
  LocalQueue(Stores& stores, std::filesystem::path dir, std::string name, int64_t id)
      : stores_(stores), dir_(std::move(dir)), name_(std::move(name)), id_(id) {}

  void send(int priority, Bytes envelope, Delivery delivery) override;
  // Encoded by the writer thread that stores it (express: after the call returns; recoverable:
  // before it returns, the sender waiting for the durable commit as with send()).
  void send_deferred(int priority, std::unique_ptr<DeferredEnvelope> envelope,
                     Delivery delivery) override;
  // Express: all of them to the express writer at once (one transaction, unless it holds more
  // than BatchWriter::kMaxPending). Recoverable: after this process's express messages, one
  // durable transaction (group commit), on disk on return.
  std::vector<std::exception_ptr> send_batch(std::span<Outbound> messages,
                                             Delivery delivery) override;
  void flush() override;
  std::optional<StoredMessage> first() override;
  std::optional<StoredMessage> next_after(int priority, int64_t seq) override;
  std::optional<StoredMessage> last() override;
  std::optional<StoredMessage> prev_before(int priority, int64_t seq) override;
  std::optional<StoredMessage> get(int64_t seq) override;
  bool remove(int64_t seq) override;
  Removal remove_delivered(int64_t seq, std::span<const uint8_t> msg_id, int64_t sent_time,
                           int64_t window_seconds) override;
  // The same, keeping the message in journal queue `journal_queue_id` (Store::remove_delivered).
  Removal remove_delivered_to_journal(int64_t seq, std::span<const uint8_t> msg_id,
                                      int64_t sent_time, int64_t window_seconds,
                                      int64_t journal_queue_id);
  bool was_delivered(std::span<const uint8_t> msg_id) override;
  size_t count() override;
  uint64_t version() override;
  bool wait_for_change(uint64_t seen, std::chrono::milliseconds timeout) override;
  void record_rejection(std::string_view kind, std::string_view reason,
                        std::span<const uint8_t> envelope, const RejectionBounds& bounds) override;

  // Arrival from another machine (not part of QueueTransport: arrivals always land in the
  // local store): Store::append_unique on this queue, durable on return.
  Arrival append_unique(int priority, std::span<const uint8_t> envelope,
                        std::span<const uint8_t> msg_id, int64_t sent_time, int64_t window_seconds);
  int64_t id() const noexcept { return id_; }
  const std::string& name() const noexcept { return name_; }
  // This process's store of this queue (transactions, core/transaction.hpp: their holding
  // queues and Store::settle).
  Store& store() { return *bound().store; }
  // MQPurgeQueue: Store::purge on this queue.
  size_t purge();
  // Claimed receives (Store::claim_next and the rest, docs/performance.md "Claimed receives"),
  // claiming ahead on the store's thread.
  std::optional<StoredMessage> claim_next(size_t batch, std::chrono::milliseconds lease,
                                          IdPeek peek = nullptr);
  void unclaim(StoredMessage m);
  bool overtaken(int64_t seq);
  Removal deliver_claimed(int64_t seq, std::span<const uint8_t> msg_id, int64_t sent_time,
                          int64_t window_seconds);
  void release_claims();

 private:
  struct Bound {
    Store* store;
    BatchWriter* express;
    BatchWriter* recoverable;
  };
  // This process's store and writers (looked up again after a fork).
  Bound bound();

  Stores& stores_;
  const std::filesystem::path dir_;
  const std::string name_;
  const int64_t id_;
  std::mutex refresh_mu_;
  std::atomic<pid_t> pid_{0};  // the process the pointers below belong to
  Store* store_ = nullptr;
  BatchWriter* express_ = nullptr;
  BatchWriter* recoverable_ = nullptr;
};

}  // namespace mqsec::transport::local
