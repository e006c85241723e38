// The local transport: the per-process stores and writers, and one queue of a store.
#include "src/transport/local/local_transport.hpp"

#include <unistd.h>

#include <atomic>
#include <vector>

namespace mqsec::transport::local {

namespace {

// This process's id without a system call per send: getpid() is a real system call (glibc no
// longer caches it), about 1.2 us each on this project's VM, and bound() ran it on every send
// (twice per signed send: the quota check and the hand-over; docs/performance.md, issue 14).
// Forgotten in a child of fork() by Stores::child_after_fork (the runtime's pthread_atfork
// child handler, docs/architecture.md), so that a child binds its own store and writers.
std::atomic<pid_t> g_pid{0};

pid_t own_pid() noexcept {
  const pid_t cached = g_pid.load(std::memory_order_relaxed);
  if (cached != 0) return cached;
  const pid_t pid = ::getpid();
  g_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

}  // namespace

Store& Stores::store_locked(const std::filesystem::path& dir) {
  const pid_t me = getpid();
  auto& slot = stores_[{me, dir}];
  if (!slot) {
    // In a child of fork(): the parent's connections closed first (Store::close_in_child says
    // why), here rather than in the fork handler, and before the child's own opens (closing a
    // descriptor of the database later would drop the new connection's locks).
    for (auto& [key, st] : stores_) {
      if (std::get<0>(key) != me && st) st->close_in_child();
    }
    slot = std::make_unique<Store>(dir);
  }
  return *slot;
}

Store& Stores::store_at(const std::filesystem::path& dir) {
  std::lock_guard lock(mu_);
  return store_locked(dir);
}

BatchWriter& Stores::writer_at(const std::filesystem::path& dir, bool durable) {
  std::lock_guard lock(mu_);
  Store& store = store_locked(dir);
  auto& slot = writers_[{getpid(), dir, durable}];
  if (!slot) slot = std::make_unique<BatchWriter>(store, on_error_, durable);
  return *slot;
}

void Stores::flush_express() noexcept {
  std::vector<BatchWriter*> writers;
  {
    std::lock_guard lock(mu_);
    for (auto& [key, w] : writers_) {
      if (std::get<0>(key) == getpid()) writers.push_back(w.get());
    }
  }
  for (auto* w : writers) w->flush();
}

// A writer thread holds only a store's lock while it commits, never a writer's: writers'
// locks come before stores' locks.
void Stores::prepare_fork() noexcept {
  mu_.lock();
  for (auto& [key, w] : writers_) w->prepare_fork();
  for (auto& [key, st] : stores_) st->prepare_fork();
}

void Stores::parent_after_fork() noexcept {
  for (auto& [key, st] : stores_) st->parent_after_fork();
  for (auto& [key, w] : writers_) w->parent_after_fork();
  mu_.unlock();
}

void Stores::child_after_fork() noexcept {
  g_pid.store(0, std::memory_order_relaxed);  // bound() binds the child's own
  for (auto& [key, st] : stores_) st->child_after_fork();
  for (auto& [key, w] : writers_) w->child_after_fork();
  mu_.unlock();
}

LocalQueue::Bound LocalQueue::bound() {
  const pid_t me = own_pid();
  if (pid_.load(std::memory_order_acquire) != me) {
    std::lock_guard lock(refresh_mu_);
    if (pid_.load() != me) {
      store_ = &stores_.store_at(dir_);
      express_ = &stores_.writer_at(dir_, false);
      recoverable_ = &stores_.writer_at(dir_, true);
      pid_.store(me, std::memory_order_release);
    }
  }
  return {store_, express_, recoverable_};
}

void LocalQueue::send(int priority, Bytes envelope, Delivery delivery) {
  Bound b = bound();
  if (delivery == Delivery::Express) {
    b.express->push(id_, priority, std::move(envelope));  // group-committed in the background
  } else {
    b.express->flush();  // keep this sender's arrival order
    b.recoverable->push_and_wait(id_, priority, std::move(envelope));  // on disk on return
  }
}

void LocalQueue::send_deferred(int priority, std::unique_ptr<DeferredEnvelope> envelope,
                               Delivery delivery) {
  Bound b = bound();
  if (delivery == Delivery::Express) {
    b.express->push(id_, priority, std::move(envelope));
  } else {
    b.express->flush();  // keep this sender's arrival order
    b.recoverable->push_and_wait(id_, priority, std::move(envelope));
  }
}

std::vector<std::exception_ptr> LocalQueue::send_batch(std::span<Outbound> messages,
                                                       Delivery delivery) {
  Bound b = bound();
  if (delivery == Delivery::Express) {
    b.express->push_many(id_, messages);
    return std::vector<std::exception_ptr>(messages.size());
  }
  b.express->flush();  // keep this sender's arrival order
  return b.recoverable->push_many_and_wait(id_, messages);
}

void LocalQueue::flush() { bound().express->flush(); }

std::optional<StoredMessage> LocalQueue::first() { return bound().store->first(id_); }

std::optional<StoredMessage> LocalQueue::next_after(int priority, int64_t seq) {
  return bound().store->next_after(id_, priority, seq);
}

std::optional<StoredMessage> LocalQueue::last() { return bound().store->last(id_); }

std::optional<StoredMessage> LocalQueue::prev_before(int priority, int64_t seq) {
  return bound().store->prev_before(id_, priority, seq);
}

std::optional<StoredMessage> LocalQueue::get(int64_t seq) { return bound().store->get(id_, seq); }

size_t LocalQueue::purge() { return bound().store->purge(id_); }

std::optional<StoredMessage> LocalQueue::claim_next(size_t batch, std::chrono::milliseconds lease,
                                                    IdPeek peek) {
  return bound().store->claim_next(id_, batch, lease, peek, /*ahead=*/true);
}

void LocalQueue::unclaim(StoredMessage m) { bound().store->unclaim(std::move(m)); }

bool LocalQueue::overtaken(int64_t seq) { return bound().store->overtaken(id_, seq); }

Removal LocalQueue::deliver_claimed(int64_t seq, std::span<const uint8_t> msg_id, int64_t sent_time,
                                    int64_t window_seconds) {
  return bound().store->deliver_claimed(id_, seq, msg_id, sent_time, window_seconds);
}

void LocalQueue::release_claims() { bound().store->release_claims(id_); }

bool LocalQueue::remove(int64_t seq) { return bound().store->remove(id_, seq); }

Removal LocalQueue::remove_delivered(int64_t seq, std::span<const uint8_t> msg_id,
                                     int64_t sent_time, int64_t window_seconds) {
  return bound().store->remove_delivered(id_, seq, msg_id, sent_time, window_seconds);
}

Removal LocalQueue::remove_delivered_to_journal(int64_t seq, std::span<const uint8_t> msg_id,
                                                int64_t sent_time, int64_t window_seconds,
                                                int64_t journal_queue_id) {
  return bound().store->remove_delivered(id_, seq, msg_id, sent_time, window_seconds,
                                         journal_queue_id);
}

bool LocalQueue::was_delivered(std::span<const uint8_t> msg_id) {
  return bound().store->was_delivered(id_, msg_id);
}

size_t LocalQueue::count() { return bound().store->message_count(id_); }

uint64_t LocalQueue::version() { return bound().store->version(); }

bool LocalQueue::wait_for_change(uint64_t seen, std::chrono::milliseconds timeout) {
  return bound().store->wait_for_change(seen, timeout);
}

void LocalQueue::record_rejection(std::string_view kind, std::string_view reason,
                                  std::span<const uint8_t> envelope,
                                  const RejectionBounds& bounds) {
  bound().store->record_rejection(name_, kind, reason, envelope, bounds);
}

Arrival LocalQueue::append_unique(int priority, std::span<const uint8_t> envelope,
                                  std::span<const uint8_t> msg_id, int64_t sent_time,
                                  int64_t window_seconds) {
  Bound b = bound();
  return b.store->append_unique(id_, priority, envelope, msg_id, sent_time, window_seconds,
                                /*durable=*/true);
}

}  // namespace mqsec::transport::local
