// MSMQ internal transactions of this process (transaction.hpp).
#include "src/core/transaction.hpp"

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>

#include "mqsec/error.hpp"
#include "src/security/log.hpp"

// winerror.h values (include/transact.h has them for applications).
#define MQSEC_XACT_E_NOTRANSACTION static_cast<HRESULT>(0x8004D00E)
#define MQSEC_XACT_E_ABORTED static_cast<HRESULT>(0x8004D019)

namespace mqsec::core {
namespace {

// Every Transaction object of this process, for abort_all_at_exit (immortal: exit handlers
// may run after static destructors began).
struct Registry {
  std::mutex mu;
  std::set<Transaction*> all;
};
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

}  // namespace

Transaction::Transaction() : pid_(::getpid()) {
  std::random_device rd;
  for (size_t i = 0; i < uow_.size(); i += 4) {
    const unsigned v = rd();
    for (size_t j = 0; j < 4; ++j) uow_[i + j] = static_cast<uint8_t>(v >> (8 * j));
  }
  static const bool registered = [] { return std::atexit(&Transaction::abort_all_at_exit) == 0; }();
  (void)registered;
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.all.insert(this);
}

Transaction::~Transaction() {
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    r.all.erase(this);
  }
  if (ours()) abort();
}

Transaction::State Transaction::state() {
  std::lock_guard lock(mu_);
  return state_;
}

bool Transaction::ours() const noexcept { return pid_ == ::getpid(); }

void Transaction::check_usable() {
  if (!ours()) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                "the transaction belongs to another process (a transaction is not shared across "
                "fork)");
  }
  std::lock_guard lock(mu_);
  if (state_ != State::Active) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                std::string("the transaction was already ") +
                    (state_ == State::Committed ? "committed" : "aborted"));
  }
}

void Transaction::add_send(std::shared_ptr<transport::local::LocalQueue> queue, int priority,
                           transport::Bytes envelope) {
  check_usable();
  std::lock_guard lock(mu_);
  if (state_ != State::Active) throw Error(MQ_ERROR_TRANSACTION_USAGE, "the transaction ended");
  sends_.push_back(Send{std::move(queue), priority, std::move(envelope)});
}

void Transaction::add_receive(std::shared_ptr<transport::local::LocalQueue> queue,
                              transport::StoredMessage m, transport::Bytes msg_id) {
  std::unique_lock lock(mu_);
  received_.push_back(Received{std::move(queue), std::move(m), std::move(msg_id)});
  if (state_ == State::Active && ours()) return;
  // Ended (by another thread) between the caller's check and this receive: put it back.
  restore_locked();
  throw Error(MQ_ERROR_TRANSACTION_USAGE, "the transaction ended during the receive");
}

void Transaction::restore_locked() noexcept {
  // One store transaction per store (every queue of a process is normally in one store).
  std::map<transport::local::Store*, std::vector<transport::local::Store::Restore>> by_store;
  try {
    for (const Received& r : received_) {
      by_store[&r.queue->store()].push_back(
          transport::local::Store::Restore{r.queue->id(), r.message.seq, r.message.priority,
                                           r.message.arrived, r.message.envelope, r.msg_id});
    }
    for (auto& [store, batch] : by_store) store->restore_received(batch);
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("transaction abort: messages received in it could not all "
                                     "be put back in their queues: ") +
                             e.what());
  }
  received_.clear();
}

HRESULT Transaction::commit() {
  if (!ours()) return MQSEC_XACT_E_NOTRANSACTION;
  std::lock_guard lock(mu_);
  if (state_ != State::Active) return MQSEC_XACT_E_NOTRANSACTION;
  try {
    std::map<transport::local::Store*, std::vector<transport::Append>> by_store;
    for (Send& s : sends_) {
      by_store[&s.queue->store()].push_back(
          transport::Append{s.queue->id(), s.priority, std::move(s.envelope)});
    }
    // Every local queue of a process lives in the configured store: one store, one durable
    // SQLite transaction, all or none.
    for (auto& [store, batch] : by_store) store->append_batch(batch, /*durable=*/true);
  } catch (const std::exception& e) {
    log(LogLevel::Error,
        std::string("transaction commit failed, the transaction is aborted: ") + e.what());
    restore_locked();
    sends_.clear();
    state_ = State::Aborted;
    return MQSEC_XACT_E_ABORTED;
  }
  sends_.clear();
  received_.clear();
  state_ = State::Committed;
  return MQ_OK;
}

HRESULT Transaction::abort() {
  if (!ours()) return MQSEC_XACT_E_NOTRANSACTION;
  std::lock_guard lock(mu_);
  if (state_ != State::Active) return MQSEC_XACT_E_NOTRANSACTION;
  restore_locked();
  sends_.clear();
  state_ = State::Aborted;
  return MQ_OK;
}

void Transaction::abort_all_at_exit() noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  for (Transaction* t : r.all) {
    if (t->ours()) t->abort();
  }
}

}  // namespace mqsec::core
