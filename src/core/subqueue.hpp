// Subqueues (MSMQ 4.0): "DIRECT=OS:.\private$\orders;poison" names subqueue "poison" of local
// queue "orders". In the store a subqueue is a row of its own named "<queue>;<sub>" (so
// receive, peek, cursors and lookup ids work on it as on any queue), never listed, created when
// first opened (MSMQ creates it on the first move; an empty subqueue is invisible either way)
// and deleted with its queue. It takes its queue's policy (trust, signers, authentication) and
// transactional kind; messages get there only through MQMoveMessage, which keeps each message's
// envelope (signature included), lookup id, priority and arrival time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "src/transport/local/store.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

class Queue;
class Transaction;

// Whether a (lower-cased) queue name names a subqueue ("<queue>;<sub>").
bool is_subqueue(std::string_view queue) noexcept;
// The queue a subqueue belongs to ("orders" for "orders;poison"); `queue` itself otherwise.
std::string main_queue_of(std::string_view queue);
// Throws mqsec::Error(MQ_ERROR_ILLEGAL_FORMATNAME) unless a subqueue name is "<queue>;<sub>"
// with both parts non-empty and one ';'.
void check_subqueue_name(std::string_view queue);

// The store row of subqueue `name` of queue `main` (created now, with main's settings, when it
// does not exist yet).
transport::QueueInfo ensure_subqueue(transport::local::Store& store,
                                     const transport::QueueInfo& main, const std::string& name);

// MQMoveMessage: moves message `lookup_id` from `from` (opened with MQ_RECEIVE_ACCESS) to `to`
// (opened with MQ_MOVE_ACCESS), a queue and one of its subqueues or two subqueues of one queue.
// Without a transaction (and with MQ_SINGLE_MESSAGE) the move is one durable store transaction;
// in transaction `tx` the message leaves `from` now and enters `to` at commit (back into `from`
// at abort). Throws mqsec::Error: MQ_ERROR_ACCESS_DENIED, MQ_ERROR_INVALID_PARAMETER (queues
// not related so), MQ_ERROR_UNSUPPORTED_OPERATION (a queue of another machine),
// MQ_ERROR_TRANSACTION_USAGE (a transaction on a non-transactional queue),
// MQ_ERROR_MESSAGE_NOT_FOUND.
void move_message(Queue& from, Queue& to, uint64_t lookup_id, bool single, Transaction* tx);

// MQMarkMessageRejected: message `lookup_id` of `q`, received in a transaction of this process
// still open, is marked: when that transaction commits its sender gets a NACK of class
// MQMSG_CLASS_NACK_RECEIVE_REJECTED (if it asked for negative receive acknowledgments and named
// an admin queue). Throws MQ_ERROR_ACCESS_DENIED (no receive access),
// MQ_ERROR_TRANSACTION_USAGE (not a transactional queue of this machine, or the message is in
// the queue, not received in a transaction), MQ_ERROR_MESSAGE_NOT_FOUND.
void mark_message_rejected(Queue& q, uint64_t lookup_id);

}  // namespace mqsec::core
