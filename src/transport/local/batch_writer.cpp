// The express group-commit writer.
#include "src/transport/local/batch_writer.hpp"

#include <chrono>
#include <exception>

#include "mqsec/error.hpp"
#include "pkcs11/fork_leftovers.hpp"
#include "src/transport/local/real_ids.hpp"

namespace mqsec::transport::local {

BatchWriter::~BatchWriter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_ != nullptr && thread_->joinable()) thread_->join();
  delete thread_;
}

void BatchWriter::start_locked() {
  if (running_) return;
  running_ = true;
  stop_ = false;
  thread_ = new std::thread([this] { run(); });
}

uint64_t BatchWriter::enqueue_one_locked(std::unique_lock<std::mutex>& lock, int64_t queue_id,
                                         int priority, Bytes envelope,
                                         std::unique_ptr<DeferredEnvelope> deferred) {
  start_locked();
  progress_.wait(lock, [&] { return pending_.size() < kMaxPending; });
  if (deferred) deferred_.emplace_back(pending_.size(), std::move(deferred));
  pending_.push_back(Append{queue_id, priority, std::move(envelope)});
  tickets_.push_back(++pushed_);
  // Only a sleeping writer needs waking: one that committed recently polls on its own timer.
  if ((pending_.size() == 1 && asleep_) || pending_.size() == kBatchTarget) wake_.notify_one();
  return pushed_;
}

void BatchWriter::wait_for_locked(std::unique_lock<std::mutex>& lock, uint64_t ticket) {
  ++waiters_;
  wake_.notify_one();  // someone waits: no lingering
  progress_.wait(lock, [&] { return done_ >= ticket; });
  --waiters_;
  if (auto it = failures_.find(ticket); it != failures_.end()) {
    auto [code, reason] = it->second;
    failures_.erase(it);
    throw Error(code, reason);
  }
}

void BatchWriter::push(int64_t queue_id, int priority, Bytes envelope) {
  std::unique_lock lock(mu_);
  enqueue_one_locked(lock, queue_id, priority, std::move(envelope), nullptr);
}

void BatchWriter::push(int64_t queue_id, int priority, std::unique_ptr<DeferredEnvelope> envelope) {
  std::unique_ptr<DeferredEnvelope> encoded[2];  // freed here, unlocked
  std::unique_lock lock(mu_);
  enqueue_one_locked(lock, queue_id, priority, Bytes{}, std::move(envelope));
  // Two per push, not all at once: a burst of frees overflows the thread's tcache into the
  // fast bins, which is what freeing them here avoids.
  for (auto& e : encoded) {
    if (encoded_.empty()) break;
    e = std::move(encoded_.back());
    encoded_.pop_back();
  }
  lock.unlock();
}

void BatchWriter::push_and_wait(int64_t queue_id, int priority, Bytes envelope) {
  std::unique_lock lock(mu_);
  wait_for_locked(lock, enqueue_one_locked(lock, queue_id, priority, std::move(envelope), nullptr));
}

void BatchWriter::push_and_wait(int64_t queue_id, int priority,
                                std::unique_ptr<DeferredEnvelope> envelope) {
  std::vector<std::unique_ptr<DeferredEnvelope>> encoded;  // freed on return, unlocked
  std::unique_lock lock(mu_);
  encoded.swap(encoded_);
  wait_for_locked(lock, enqueue_one_locked(lock, queue_id, priority, Bytes{}, std::move(envelope)));
}

uint64_t BatchWriter::enqueue_locked(std::unique_lock<std::mutex>& lock, int64_t queue_id,
                                     std::span<Outbound> messages) {
  start_locked();
  // Room for all of them at once (or an empty queue, for more than kMaxPending), so that they
  // are committed together.
  progress_.wait(
      lock, [&] { return pending_.empty() || pending_.size() + messages.size() <= kMaxPending; });
  const bool was_empty = pending_.empty() && asleep_;
  pending_.reserve(pending_.size() + messages.size());
  tickets_.reserve(tickets_.size() + messages.size());
  for (Outbound& m : messages) {
    pending_.push_back(Append{queue_id, m.priority, std::move(m.envelope)});
    tickets_.push_back(++pushed_);
  }
  if (was_empty || pending_.size() >= kBatchTarget) wake_.notify_one();
  return pushed_;
}

void BatchWriter::push_many(int64_t queue_id, std::span<Outbound> messages) {
  if (messages.empty()) return;
  std::unique_lock lock(mu_);
  enqueue_locked(lock, queue_id, messages);
}

std::vector<std::exception_ptr> BatchWriter::push_many_and_wait(int64_t queue_id,
                                                                std::span<Outbound> messages) {
  std::vector<std::exception_ptr> errors(messages.size());
  if (messages.empty()) return errors;
  std::unique_lock lock(mu_);
  const uint64_t last = enqueue_locked(lock, queue_id, messages);
  const uint64_t first = last - messages.size() + 1;
  ++waiters_;
  wake_.notify_one();  // someone waits: no lingering
  progress_.wait(lock, [&] { return done_ >= last; });
  --waiters_;
  for (auto it = failures_.lower_bound(first); it != failures_.end() && it->first <= last;) {
    errors[it->first - first] = std::make_exception_ptr(Error(it->second.first, it->second.second));
    it = failures_.erase(it);
  }
  return errors;
}

void BatchWriter::flush() {
  std::unique_lock lock(mu_);
  // Nothing outstanding (every receive flushes first): return without waking the writer
  // thread; that futex wake-up was about 5 % of a verified receive's CPU (issue 14's profile
  // in docs/performance.md).
  if (!running_ || done_ >= pushed_) return;
  uint64_t target = pushed_;
  ++waiters_;
  wake_.notify_one();
  progress_.wait(lock, [&] { return done_ >= target; });
  --waiters_;
}

uint64_t BatchWriter::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

uint64_t BatchWriter::wakeups() const {
  std::lock_guard lock(mu_);
  return wakeups_;
}

void BatchWriter::child_after_fork() noexcept {
  pending_.clear();
  tickets_.clear();
  deferred_.clear();
  encoded_.clear();
  failures_.clear();
  asleep_ = false;
  done_ = pushed_;
  running_ = false;
  // The parent's thread does not exist here: its std::thread is abandoned, not destroyed.
  mqsec::pkcs11::abandon_after_fork(thread_);
  thread_ = nullptr;
  mu_.unlock();
}

void BatchWriter::run() {
  // A new thread inherits its creator's credentials: started by an impersonating thread it
  // would write the store as that user. It only ever does store I/O, as the process's user.
  RealFsIds::adopt_for_this_thread();
  std::unique_lock lock(mu_);
  bool committed = false;
  for (;;) {
    // Express, after a commit: wait up to a millisecond for the next messages on a timer
    // rather than asleep, so that a steady stream of sends costs the senders no futex wake-up
    // (and no switch to this thread and back) per batch: they wake only a sleeping writer.
    bool lingered = false;
    if (!durable_ && committed && pending_.empty() && !stop_) {
      wake_.wait_for(lock, std::chrono::milliseconds(1),
                     [&] { return stop_ || waiters_ > 0 || pending_.size() >= kBatchTarget; });
      lingered = !pending_.empty();
    }
    committed = false;
    asleep_ = true;
    wake_.wait(lock, [&] {
      ++wakeups_;
      return stop_ || !pending_.empty();
    });
    asleep_ = false;
    // Express only, nobody waiting: linger up to a millisecond to gather a larger batch, so a
    // steady stream costs one commit per batch instead of one per message (the commit's CPU
    // would otherwise compete with signing).
    if (!durable_ && !lingered && waiters_ == 0 && !stop_ && pending_.size() < kBatchTarget) {
      wake_.wait_for(lock, std::chrono::milliseconds(1),
                     [&] { return stop_ || waiters_ > 0 || pending_.size() >= kBatchTarget; });
    }
    if (pending_.empty()) return;  // stop_ and nothing left
    std::vector<Append> batch;
    std::vector<uint64_t> tickets;
    std::vector<std::pair<size_t, std::unique_ptr<DeferredEnvelope>>> deferred;
    batch.swap(pending_);
    tickets.swap(tickets_);
    deferred.swap(deferred_);
    progress_.notify_all();  // room for blocked pushers
    lock.unlock();
    const size_t taken = batch.size();
    uint64_t lost = 0;
    std::vector<std::pair<uint64_t, std::pair<int32_t, std::string>>> failed;
    // Encode the deferred envelopes (off the senders' threads); one that fails is dropped from
    // the batch and reported like a message the store refused.
    if (!deferred.empty()) {
      std::vector<bool> drop;
      for (auto& [i, d] : deferred) {
        try {
          batch[i].envelope = d->bytes();
        } catch (const std::exception& e) {
          if (drop.empty()) drop.assign(batch.size(), false);
          drop[i] = true;
          ++lost;
          failed.push_back({tickets[i],
                            {MQ_ERROR_MESSAGE_STORAGE_FAILED,
                             std::string("encoding the message failed: ") + e.what()}});
          if (on_error_ && !durable_) {
            on_error_("express message for queue id " + std::to_string(batch[i].queue_id) +
                      " not stored: encoding it failed: " + e.what());
          }
        }
      }
      if (!drop.empty()) {
        size_t kept = 0;
        for (size_t i = 0; i < batch.size(); ++i) {
          if (drop[i]) continue;
          if (kept != i) {
            batch[kept] = std::move(batch[i]);
            tickets[kept] = tickets[i];
          }
          ++kept;
        }
        batch.resize(kept);
        tickets.resize(kept);
      }
    }
    try {
      if (!batch.empty()) store_.append_batch(batch, durable_);
    } catch (const std::exception&) {
      // One bad message (e.g. its queue was deleted) must not take the others down: retry
      // them one by one.
      for (size_t i = 0; i < batch.size(); ++i) {
        const Append& a = batch[i];
        try {
          store_.append(a.queue_id, a.priority, a.envelope, durable_);
        } catch (const std::exception& e) {
          ++lost;
          const auto* err = dynamic_cast<const Error*>(&e);
          failed.push_back(
              {tickets[i], {err ? err->code() : MQ_ERROR_MESSAGE_STORAGE_FAILED, e.what()}});
          if (on_error_ && !durable_) {
            on_error_("express message for queue id " + std::to_string(a.queue_id) +
                      " not stored: " + e.what());
          }
        }
      }
    }
    lock.lock();
    // Durable senders wait for their ticket and get the error themselves.
    if (durable_) failures_.insert(failed.begin(), failed.end());
    done_ += taken;
    committed = true;
    // Back to the senders to free (bounded: freed here when nobody sends deferred ones).
    if (encoded_.size() < kMaxPending) {
      for (auto& [i, d] : deferred) encoded_.push_back(std::move(d));
    }
    failed_ += lost;
    progress_.notify_all();
  }
}

}  // namespace mqsec::transport::local
