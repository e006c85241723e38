// Subqueues, MQMoveMessage and MQMarkMessageRejected (subqueue.hpp).
#include "src/core/subqueue.hpp"

#include <climits>

#include "mqsec/error.hpp"
#include "src/core/queue.hpp"
#include "src/core/transaction.hpp"

namespace mqsec::core {

bool is_subqueue(std::string_view queue) noexcept {
  return queue.find(';') != std::string_view::npos;
}

std::string main_queue_of(std::string_view queue) {
  return std::string(queue.substr(0, queue.find(';')));
}

void check_subqueue_name(std::string_view queue) {
  const size_t semi = queue.find(';');
  if (semi == std::string_view::npos) return;
  if (semi == 0 || semi + 1 == queue.size() ||
      queue.find(';', semi + 1) != std::string_view::npos) {
    throw Error(MQ_ERROR_ILLEGAL_FORMATNAME,
                "'" + std::string(queue) + "' is not QUEUE;SUBQUEUE (both parts non-empty)");
  }
}

transport::QueueInfo ensure_subqueue(transport::local::Store& store,
                                     const transport::QueueInfo& main, const std::string& name) {
  transport::QueueInfo row;
  row.name = name;
  row.label = main.label;
  row.transactional = main.transactional;
  return store.ensure_queue(row, main.name);  // never for a queue deleted meanwhile
}

namespace {

int64_t seq_of(uint64_t lookup_id, const std::string& queue) {
  if (lookup_id == 0 || lookup_id > static_cast<uint64_t>(INT64_MAX)) {
    throw Error(
        MQ_ERROR_MESSAGE_NOT_FOUND,
        "no message with lookup id " + std::to_string(lookup_id) + " in queue '" + queue + "'");
  }
  return static_cast<int64_t>(lookup_id);
}

}  // namespace

void move_message(Queue& from, Queue& to, uint64_t lookup_id, bool single, Transaction* tx) {
  if (!from.access().receive) {
    throw Error(MQ_ERROR_ACCESS_DENIED,
                "MQMoveMessage: the source queue was not opened with MQ_RECEIVE_ACCESS");
  }
  if (!to.access().move) {
    throw Error(MQ_ERROR_ACCESS_DENIED,
                "MQMoveMessage: the target queue was not opened with MQ_MOVE_ACCESS");
  }
  const auto& src = from.local();
  const auto& dst = to.local();
  if (!src || !dst) {
    throw Error(MQ_ERROR_UNSUPPORTED_OPERATION,
                "MQMoveMessage moves messages between queues of this machine only");
  }
  if (main_queue_of(from.name()) != main_queue_of(to.name()) || from.name() == to.name() ||
      &src->store() != &dst->store()) {
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "MQMoveMessage: '" + from.name() + "' and '" + to.name() +
                    "' are not a queue and its subqueue, nor two subqueues of one queue");
  }
  if ((single || tx != nullptr) && !from.transactional()) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                "queue '" + main_queue_of(from.name()) +
                    "' is not transactional: move without a transaction");
  }
  const int64_t seq = seq_of(lookup_id, from.name());
  src->flush();  // this process's express messages are visible first
  transport::local::Store& store = src->store();
  if (tx == nullptr) {
    if (!store.move_message(src->id(), seq, dst->id())) {
      throw Error(MQ_ERROR_MESSAGE_NOT_FOUND, "no message with lookup id " +
                                                  std::to_string(lookup_id) + " in queue '" +
                                                  from.name() + "'");
    }
    return;
  }
  // It waits in the transaction's holding queue (holding.hpp) until the commit or abort.
  const int64_t holding = tx->holding_for(*src, /*move=*/true);
  std::optional<transport::StoredMessage> m = store.get(src->id(), seq);
  if (!m || !store.move_message(src->id(), seq, holding)) {
    throw Error(MQ_ERROR_MESSAGE_NOT_FOUND, "no message with lookup id " +
                                                std::to_string(lookup_id) + " in queue '" +
                                                from.name() + "'");
  }
  tx->add_move(src, dst, std::move(*m), holding);
}

void mark_message_rejected(Queue& q, uint64_t lookup_id) {
  if (!q.access().receive) {
    throw Error(MQ_ERROR_ACCESS_DENIED, "MQMarkMessageRejected: queue '" + q.name() +
                                            "' was not opened with MQ_RECEIVE_ACCESS");
  }
  const auto& local = q.local();
  if (!local || !q.transactional()) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE, "MQMarkMessageRejected: queue '" + q.name() +
                                                "' is not a transactional queue of this machine");
  }
  const int64_t seq = seq_of(lookup_id, q.name());
  const QueuePolicy& p = q.policy();
  if (Transaction::mark_rejected(local->store(), local->id(), seq, p.store_dir, p.machine)) return;
  if (local->store().get(local->id(), seq)) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                "MQMarkMessageRejected: message " + std::to_string(lookup_id) + " is in queue '" +
                    q.name() +
                    "', not received in a transaction of this process that is still open");
  }
  throw Error(MQ_ERROR_MESSAGE_NOT_FOUND, "no message with lookup id " + std::to_string(lookup_id) +
                                              " in queue '" + q.name() +
                                              "' or received from it in an open transaction");
}

}  // namespace mqsec::core
