// Holding queues of transactions (core/transaction.hpp): a message received or moved in an
// ITransaction leaves its queue at once, but not the store: its row moves (same seq, priority,
// arrival time, so its old place) into a hidden store queue of the process until the transaction
// ends. Commit deletes it from there (or moves it into a journal or a move's target), Abort moves
// it back (each by its seq: the transactions of a process share its holding queues). A holding
// queue is named after its owner process (pid and start time, from /proc/<pid>/stat) and the
// source queue, so that when the owner dies with transactions open (SIGKILL, a crash) any
// process of the store moves the messages back into their queues: when it opens a queue for
// reading, and now and then while a receive waits. A process's holding queues live as long as
// it does (made on first use, one store write; dropped by the recovery after its end).
// Names: "xact$\<pid>.<start>\<source queue id>.<r|m>" ('\' in it: no path name can make it,
// and core::is_application_queue leaves it out, as it leaves out journals).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "src/transport/local/store.hpp"

namespace mqsec::core {

inline constexpr std::string_view kHoldingPrefix = "xact$\\";

// The id of this process's holding queue in `store` for messages taken from queue `source_id`
// in transactions, made on first use; `move`: the one for messages moved
// (MQMoveMessage, no delivered-id record to forget when they go back), else for received ones.
// Throws what the store throws.
int64_t holding_queue_id(transport::local::Store& store, int64_t source_id, bool move);

// Moves the messages of every holding queue whose owner process is gone (its pid is dead or
// now another process's) back into their source queues, forgetting their delivered-id records
// (so they are delivered again without counting as replays), and deletes those holding queues.
// A message whose source queue was deleted meanwhile is dropped with its holding queue. Never
// throws (failures are logged); returns how many messages went back.
size_t recover_orphaned_holdings(transport::local::Store& store) noexcept;
// The same, at most once a second per store in this process (called on receive misses).
void recover_orphaned_holdings_now_and_then(transport::local::Store& store) noexcept;

}  // namespace mqsec::core
