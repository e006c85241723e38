// Holding queues of transactions (core/transaction.hpp): a message received or moved in an
// ITransaction leaves its queue at once, but not the store: its row moves (same seq, priority,
// arrival time, so its old place) into a hidden store queue that the transaction owns until it
// ends. Commit deletes it from there (or moves it into a journal or a move's target), Abort moves
// it back. A holding queue is named after its owner process (pid and start time, from
// /proc/<pid>/stat), the transaction and the source queue, so that when the owner dies without
// ending it (SIGKILL, a crash) any process of the store moves its messages back into their
// queues: when it opens a queue for reading, and now and then while a receive waits.
// Names: "xact$\<pid>.<start>\<uow hex>\<source queue id>.<r|m>" ('\' in it: no path name can
// make it, and core::is_application_queue leaves it out, as it leaves out journals).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "src/transport/local/store.hpp"

namespace mqsec::core {

inline constexpr std::string_view kHoldingPrefix = "xact$\\";

// The holding queue's name for this process, transaction `uow` and source queue `source_id`;
// `move`: it holds the messages moved in the transaction (MQMoveMessage, no delivered-id record
// to forget when they go back), else those received in it.
std::string holding_queue_name(const std::array<uint8_t, 16>& uow, int64_t source_id, bool move);

// Moves the messages of every holding queue whose owner process is gone (its pid is dead or
// now another process's) back into their source queues, forgetting their delivered-id records
// (so they are delivered again without counting as replays), and deletes those holding queues.
// A message whose source queue was deleted meanwhile is dropped with its holding queue. Never
// throws (failures are logged); returns how many messages went back.
size_t recover_orphaned_holdings(transport::local::Store& store) noexcept;
// The same, at most once a second per store in this process (called on receive misses).
void recover_orphaned_holdings_now_and_then(transport::local::Store& store) noexcept;

}  // namespace mqsec::core
