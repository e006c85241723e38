// The batch-signing pipeline: background signers per (process, context, hash algorithm).
#include "src/core/batch_signing.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "src/core/runtime.hpp"
#include "src/security/log.hpp"
#include "src/security/message_auth.hpp"

namespace mqsec::core {
namespace {

// A signer thread with nothing to do for this long ends (the next send starts it again).
constexpr std::chrono::seconds kIdleExit{5};

std::string failure_text(const std::exception_ptr& ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const Error& e) {
    char code[16];
    std::snprintf(code, sizeof code, "0x%08X", static_cast<unsigned>(e.code()));
    return std::string(e.what()) + " (" + code + ")";
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

}  // namespace

BatchSigner::~BatchSigner() {
  std::unique_lock lock(mu_);
  stop_ = true;
  work_cv_.notify_all();
  lock.unlock();
  if (thread_.joinable()) thread_.join();
}

void BatchSigner::submit(PendingSend m, const BatchSettings& settings, bool wait) {
  std::unique_lock lock(mu_);
  settings_ = settings;
  const size_t cap = 2 * static_cast<size_t>(settings.max_messages) + 1024;
  done_cv_.wait(lock, [&] { return pending_.size() < cap; });
  auto waiter = wait ? std::make_shared<Waiter>() : nullptr;
  pending_.push_back(Item{std::move(m), waiter, std::chrono::steady_clock::now()});
  ++queued_;
  if (!running_) {
    // The previous thread (if any) set running_ = false under mu_ and then only returns.
    if (thread_.joinable()) thread_.join();
    stop_ = false;
    running_ = true;
    thread_ = std::thread([this] { run(); });
  }
  work_cv_.notify_one();
  if (!waiter) return;
  done_cv_.wait(lock, [&] { return waiter->done; });
  if (waiter->error) std::rethrow_exception(waiter->error);
}

bool BatchSigner::flush(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  const uint64_t target = queued_;
  if (completed_ >= target) return true;
  flush_to_ = std::max(flush_to_, target);
  work_cv_.notify_one();
  return done_cv_.wait_until(lock, deadline, [&] { return completed_ >= target; });
}

uint64_t BatchSigner::signatures() const {
  std::lock_guard lock(mu_);
  return signatures_;
}

uint64_t BatchSigner::messages() const {
  std::lock_guard lock(mu_);
  return messages_;
}

void BatchSigner::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (pending_.empty()) {
      if (stop_ ||
          !work_cv_.wait_for(lock, kIdleExit, [&] { return stop_ || !pending_.empty(); })) {
        running_ = false;  // idle (or stopped): submit starts a new thread when needed
        return;
      }
      if (pending_.empty()) continue;
    }
    // The window: from the oldest queued message, unless the batch is full or a flush asks.
    const auto deadline = pending_.front().queued + settings_.max_delay;
    work_cv_.wait_until(lock, deadline, [&] {
      return stop_ || pending_.size() >= settings_.max_messages || flush_to_ > completed_;
    });
    const size_t n =
        std::min<size_t>(pending_.size(), std::max<uint32_t>(settings_.max_messages, 1));
    std::deque<Item> batch;
    for (size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    lock.unlock();
    sign_and_hand_over(batch);
    lock.lock();
    completed_ += n;
    for (Item& it : batch) {
      if (it.waiter) it.waiter->done = true;
    }
    done_cv_.notify_all();
  }
}

void BatchSigner::sign_and_hand_over(std::deque<Item>& batch) {
  // One context per signer key: every item holds the same live context.
  const std::shared_ptr<security::SecurityContext> ctx = batch.front().send.context;
  std::vector<security::Envelope*> envelopes;
  envelopes.reserve(batch.size());
  for (Item& it : batch) envelopes.push_back(&it.send.envelope);
  std::exception_ptr failure;
  try {
    security::sign_batch(envelopes, *ctx, allow_weak_);
  } catch (...) {
    failure = std::current_exception();
  }
  if (!failure) {
    std::lock_guard lock(mu_);
    ++signatures_;
    messages_ += batch.size();
  }
  const std::string why = failure ? failure_text(failure) : std::string();
  if (failure) {
    for (Item& it : batch) {
      PendingSend& s = it.send;
      if (it.waiter) {
        it.waiter->error = failure;  // the caller gets the error, as for a single signature
        continue;
      }
      try {
        reject_message(*s.transport,
                       "message " + security::hex(s.envelope.msg_id) + " for queue '" +
                           s.queue_name + "' (deferred signing)",
                       *s.policy, security::encode(s.envelope), &s.envelope,
                       {"signing-failed",
                        "the batch signature could not be made; the message was not sent: " + why});
      } catch (const std::exception& e) {
        log(LogLevel::Error, "message " + security::hex(s.envelope.msg_id) + " for queue '" +
                                 s.queue_name + "' could not be signed (" + why +
                                 ") and its rejection could not be recorded: " + e.what());
      }
    }
    return;
  }
  // Signed: hand the messages over in runs of one transport and delivery mode, in queue order,
  // each run in one call (the local store writes it in one transaction).
  auto store_failed = [](Item& it, const std::exception_ptr& error) {
    PendingSend& s = it.send;
    if (it.waiter) {
      it.waiter->error = error;
      return;
    }
    const std::string store_why = failure_text(error);
    log(LogLevel::Error, "signed message " + security::hex(s.envelope.msg_id) +
                             " could not be stored in queue '" + s.queue_name + "': " + store_why);
    try {
      reject_message(*s.transport,
                     "message " + security::hex(s.envelope.msg_id) + " for queue '" + s.queue_name +
                         "' (deferred signing)",
                     *s.policy, {}, &s.envelope,
                     {"store-failed", "signed, but it could not be stored: " + store_why});
    } catch (const std::exception&) {
      // logged above; the store is failing
    }
  };
  std::vector<transport::Outbound> run;
  std::vector<Item*> owners;  // the item of each entry of `run`
  for (size_t i = 0; i < batch.size();) {
    transport::QueueTransport* const to = batch[i].send.transport.get();
    const transport::Delivery delivery = batch[i].send.delivery;
    run.clear();
    owners.clear();
    size_t j = i;
    for (; j < batch.size() && batch[j].send.transport.get() == to &&
           batch[j].send.delivery == delivery;
         ++j) {
      Item& it = batch[j];
      try {
        run.push_back({it.send.priority, security::encode(it.send.envelope)});
        owners.push_back(&it);
      } catch (...) {
        store_failed(it, std::current_exception());
      }
    }
    i = j;
    if (run.empty()) continue;
    std::vector<std::exception_ptr> errors;
    try {
      errors = to->send_batch(run, delivery);
    } catch (...) {
      errors.assign(run.size(), std::current_exception());  // nothing of the run was accepted
    }
    for (size_t k = 0; k < owners.size(); ++k) {
      if (k < errors.size() && errors[k]) store_failed(*owners[k], errors[k]);
    }
  }
}

BatchSigners::BatchSigners() { pkcs11::register_fork_mutex(mu_); }

std::shared_ptr<BatchSigner> BatchSigners::get(const security::SecurityContext* ctx,
                                               uint32_t hash_alg, bool allow_weak,
                                               uint32_t max_messages) {
  const Key key{::getpid(), ctx, hash_alg, allow_weak, max_messages};
  bool first = false;
  std::shared_ptr<BatchSigner> s;
  {
    std::lock_guard lock(mu_);
    first = signers_.empty();
    auto& slot = signers_[key];
    if (!slot) slot = std::make_shared<BatchSigner>(hash_alg, allow_weak);
    s = slot;
  }
  if (first) {
    static std::once_flag at_exit;
    // Runs before the runtime's own exit handler (registered earlier): signed messages reach
    // their stores before the express writers are flushed and the forwarders stopped.
    std::call_once(at_exit, [] {
      std::atexit([] {
        if (!runtime().batch_signers().flush(nullptr,
                                             std::chrono::steady_clock::now() + kBatchFlushBound)) {
          log(LogLevel::Error,
              "exit: messages queued for batch signing were not signed in time; they are lost "
              "(never stored, never delivered)");
        }
      });
    });
  }
  return s;
}

bool BatchSigners::flush(const security::SecurityContext* ctx,
                         std::chrono::steady_clock::time_point deadline) {
  std::vector<std::shared_ptr<BatchSigner>> mine;
  {
    std::lock_guard lock(mu_);
    const pid_t pid = ::getpid();
    for (const auto& [key, s] : signers_) {
      if (std::get<0>(key) == pid && (ctx == nullptr || std::get<1>(key) == ctx)) {
        mine.push_back(s);
      }
    }
  }
  bool ok = true;
  for (auto& s : mine) ok = s->flush(deadline) && ok;
  return ok;
}

uint64_t BatchSigners::signatures() const {
  std::vector<std::shared_ptr<BatchSigner>> mine;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, s] : signers_) {
      if (std::get<0>(key) == ::getpid()) mine.push_back(s);
    }
  }
  uint64_t n = 0;
  for (auto& s : mine) n += s->signatures();
  return n;
}

uint64_t BatchSigners::messages() const {
  std::vector<std::shared_ptr<BatchSigner>> mine;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, s] : signers_) {
      if (std::get<0>(key) == ::getpid()) mine.push_back(s);
    }
  }
  uint64_t n = 0;
  for (auto& s : mine) n += s->messages();
  return n;
}

}  // namespace mqsec::core
