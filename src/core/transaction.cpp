// MSMQ internal transactions of this process (transaction.hpp).
#include "src/core/transaction.hpp"

#include <unistd.h>

#include <cstdlib>
#include <random>
#include <span>
#include <set>
#include <string>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "src/core/holding.hpp"
#include "src/core/verification.hpp"
#include "src/security/envelope.hpp"
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
  static Registry* r = [] {
    auto* made = new Registry();
    // Held briefly (insert, erase), and at exit around the aborts: a fork while another
    // thread holds it must not leave the child's next transaction waiting for ever.
    pkcs11::register_fork_mutex(made->mu);
    return made;
  }();
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

void Transaction::bind_store_locked(transport::local::Store& store) {
  if (store_ == nullptr) store_ = &store;
  if (store_ != &store) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                "a transaction spans the queues of one store: this queue is in another (the "
                "configuration's [store] path changed since the transaction's first queue)");
  }
}

void Transaction::add_send(std::shared_ptr<transport::local::LocalQueue> queue, int priority,
                           transport::Bytes envelope) {
  check_usable();
  std::lock_guard lock(mu_);
  if (state_ != State::Active) throw Error(MQ_ERROR_TRANSACTION_USAGE, "the transaction ended");
  bind_store_locked(queue->store());
  sends_.push_back(Send{std::move(queue), priority, std::move(envelope)});
}

int64_t Transaction::holding_for(transport::local::LocalQueue& source, bool move) {
  check_usable();
  std::lock_guard lock(mu_);
  if (state_ != State::Active) throw Error(MQ_ERROR_TRANSACTION_USAGE, "the transaction ended");
  bind_store_locked(source.store());
  return holding_queue_id(source.store(), source.id(), move);
}

void Transaction::add_receive(std::shared_ptr<transport::local::LocalQueue> queue,
                              transport::StoredMessage m, transport::Bytes msg_id, int64_t holding,
                              int64_t journal) {
  std::unique_lock lock(mu_);
  if (state_ == State::Active && ours() && store_ == &queue->store()) {
    Received r;
    r.queue = std::move(queue);
    r.message = std::move(m);
    r.msg_id = std::move(msg_id);
    r.holding = holding;
    r.journal = journal;
    received_.push_back(std::move(r));
    return;
  }
  // Ended (by another thread) between holding_for and this receive: put the message back (the
  // holding queue stays, empty, until recovery drops it with this process).
  const transport::local::Store::Settle back{holding, m.seq, queue->id(), msg_id};
  try {
    queue->store().settle({}, std::span(&back, 1), {});
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("a message received in a transaction could not be put "
                                     "back in its queue: ") +
                             e.what());
  }
  throw Error(MQ_ERROR_TRANSACTION_USAGE, "the transaction ended during the receive");
}

void Transaction::add_move(std::shared_ptr<transport::local::LocalQueue> from,
                           std::shared_ptr<transport::local::LocalQueue> to,
                           transport::StoredMessage m, int64_t holding) {
  std::unique_lock lock(mu_);
  if (state_ == State::Active && ours() && store_ == &from->store()) {
    Received r;
    r.queue = std::move(from);
    r.message = std::move(m);
    r.move_to = std::move(to);
    r.holding = holding;
    received_.push_back(std::move(r));
    return;
  }
  const transport::local::Store::Settle back{holding, m.seq, from->id(), {}};
  try {
    from->store().settle({}, std::span(&back, 1), {});
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("a message moved in a transaction could not be put "
                                     "back in its queue: ") +
                             e.what());
  }
  throw Error(MQ_ERROR_TRANSACTION_USAGE, "the transaction ended during the move");
}

bool Transaction::mark_rejected(transport::local::Store& store, int64_t queue_id, int64_t seq,
                                const std::filesystem::path& store_dir,
                                const std::string& machine) {
  Registry& reg = registry();
  std::lock_guard rlock(reg.mu);
  for (Transaction* t : reg.all) {
    if (!t->ours()) continue;
    std::lock_guard lock(t->mu_);
    if (t->state_ != State::Active || t->store_ != &store) continue;
    for (Received& r : t->received_) {
      if (r.move_to || r.queue->id() != queue_id || r.message.seq != seq) continue;
      r.rejected = true;
      r.nack_store = store_dir;
      r.nack_machine = machine;
      return true;
    }
  }
  return false;
}

void Transaction::send_rejection_nacks(const std::vector<Received>& done) noexcept {
  for (const Received& r : done) {
    if (!r.rejected) continue;
    try {
      const security::Envelope e = security::decode(r.message.envelope);
      if (!(e.acknowledge & MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE) || e.admin_queue.empty()) continue;
      send_nack(e, MQMSG_CLASS_NACK_RECEIVE_REJECTED, r.nack_store, r.nack_machine);
    } catch (const std::exception& ex) {
      log(LogLevel::Warning,
          std::string("could not send the NACK of a message marked rejected: ") + ex.what());
    }
  }
}

void Transaction::restore_locked() noexcept {
  if (received_.empty()) return;
  try {
    std::vector<transport::local::Store::Settle> back;
    for (const Received& r : received_) {
      // A move's message has no delivered-id record; a receive's is forgotten.
      back.push_back({r.holding, r.message.seq, r.queue->id(),
                      r.move_to ? std::span<const uint8_t>() : std::span(r.msg_id)});
      back.push_back({r.holding, r.message.seq, 0, {}});  // its queue is gone: dropped
    }
    const size_t moved = store_->settle({}, back, {});  // one store (bind_store_locked)
    if (moved != received_.size()) {
      log(LogLevel::Error, "transaction abort: " + std::to_string(received_.size() - moved) +
                               " of " + std::to_string(received_.size()) +
                               " messages received or moved in it could not be put back (their "
                               "queue was deleted meanwhile)");
    }
  } catch (const std::exception& e) {
    // They stay in the holding queues: recovered when this process has ended.
    log(LogLevel::Error, std::string("transaction abort: messages received in it could not all "
                                     "be put back in their queues yet: ") +
                             e.what());
  }
  received_.clear();
}

HRESULT Transaction::commit() {
  if (!ours()) return MQSEC_XACT_E_NOTRANSACTION;
  std::lock_guard lock(mu_);
  if (state_ != State::Active) return MQSEC_XACT_E_NOTRANSACTION;
  try {
    std::vector<transport::Append> batch;
    for (Send& s : sends_) {
      batch.push_back(transport::Append{s.queue->id(), s.priority, std::move(s.envelope)});
    }
    // Received messages leave their holding queues (into a journal, or deleted), moved ones
    // enter their targets (or, a target deleted meanwhile, go back where they came from).
    std::vector<transport::local::Store::Settle> settle;
    for (const Received& r : received_) {
      if (!r.move_to) {
        if (r.journal != 0) settle.push_back({r.holding, r.message.seq, r.journal, {}});
        settle.push_back({r.holding, r.message.seq, 0, {}});  // no journal (or it is gone)
        continue;
      }
      settle.push_back({r.holding, r.message.seq, r.move_to->id(), {}});
      settle.push_back({r.holding, r.message.seq, r.queue->id(), {}});
      settle.push_back({r.holding, r.message.seq, 0, {}});  // both queues gone
    }
    // One store (bind_store_locked): one durable SQLite transaction, all or none.
    if (store_ != nullptr) store_->settle(batch, settle, {});
  } catch (const std::exception& e) {
    log(LogLevel::Error,
        std::string("transaction commit failed, the transaction is aborted: ") + e.what());
    restore_locked();
    sends_.clear();
    state_ = State::Aborted;
    return MQSEC_XACT_E_ABORTED;
  }
  std::vector<Received> done = std::move(received_);
  sends_.clear();
  received_.clear();
  state_ = State::Committed;
  send_rejection_nacks(done);
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
