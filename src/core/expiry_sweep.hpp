// The expiry sweep: messages whose PROPID_M_TIME_TO_BE_RECEIVED has run out are taken out of
// their queues (into the dead-letter queue when they ask for it, NACKed when they ask for it)
// even when no receiver looks at them, as MSMQ's queue manager does. Without a sweep that only
// happens when a receive, peek or lookup meets the message (expiry.hpp).
//
// One ExpirySweeper per sweeping thread (the agent's expiry thread, `mqsec queue expire`). It
// reads every message of the configured store once, in seq order (seqs only grow), and keeps in
// memory the seq and deadline of each one that has a time limit and is not expired yet; a pass
// reads only the messages that arrived since the last one, then expires those whose deadline
// has passed. An expiry goes through the receive path's own code (Queue::receive_by_lookup_id,
// as a peek): the message is verified first (one that fails is rejected, as a receive would),
// and exactly one process wins it, whoever else sweeps or receives at the same time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "src/security/config.hpp"

namespace mqsec::core {

class Queue;

// What one pass did.
struct SweepCounts {
  size_t scanned = 0;  // messages read for the first time
  size_t expired = 0;  // taken out by this pass (deleted or moved to a dead-letter queue)
  size_t pending = 0;  // messages with a time limit still waiting, after the pass
};

class ExpirySweeper {
 public:
  explicit ExpirySweeper(security::SystemConfig cfg);
  ~ExpirySweeper();
  ExpirySweeper(const ExpirySweeper&) = delete;
  ExpirySweeper& operator=(const ExpirySweeper&) = delete;

  // One pass at Unix time `now`. Throws mqsec::Error when the store cannot be read; a message
  // that cannot be expired now (its queue busy, deleted meanwhile) is logged and tried again by
  // a later pass.
  SweepCounts sweep(int64_t now);
  // Forgets what was read: the next pass reads the whole store again (the agent does this now
  // and then, for messages that came back into a queue under an old seq, such as a transaction's
  // receive put back by its abort).
  void rescan() noexcept;

 private:
  // Queues opened (for peeking) by this sweeper, by store queue id; closed at each rescan.
  std::shared_ptr<Queue> queue_for(int64_t queue_id, const std::string& name);
  // Expires message `seq` if its deadline has passed; else the deadline to try it again at.
  // 0: nothing more to do for it (expired, received, or in a queue that keeps expired messages).
  int64_t try_expire(int64_t seq, int64_t now, size_t& expired);

  security::SystemConfig cfg_;
  int64_t scanned_to_ = 0;                   // every seq up to this one has been read
  std::multimap<int64_t, int64_t> pending_;  // deadline (Unix seconds) -> seq
  std::map<int64_t, std::shared_ptr<Queue>> queues_;
};

// Whether the sweep expires messages of store queue `name`: application queues and their
// subqueues; not dead-letter queues and journals (they keep expired messages), outgoing queues
// (their messages are expired where they arrive) or the queue manager's other rows.
bool sweeps_queue(const std::string& name);

}  // namespace mqsec::core
