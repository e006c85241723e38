// The machine's dead-letter queues: MSMQ's DIRECT=OS:.\SYSTEM$;DEADLETTER (non-transactional
// messages) and DIRECT=OS:.\SYSTEM$;DEADXACT (transactional ones). A message that expires
// (expiry.hpp) with MQMSG_DEADLETTER in PROPID_M_JOURNAL is moved there, envelope unchanged (a
// signed message still verifies there), in one store transaction. They are store queues with
// reserved names that no path name can make (a '\' in the name), created on first use, read-only
// for applications (receive, peek, purge).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "src/security/envelope.hpp"
#include "src/transport/local/local_transport.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

inline constexpr std::string_view kDeadLetterQueueName = "system$\\deadletter";
inline constexpr std::string_view kDeadXactQueueName = "system$\\deadxact";

inline bool is_dead_letter_queue_name(std::string_view store_queue_name) {
  return store_queue_name == kDeadLetterQueueName || store_queue_name == kDeadXactQueueName;
}

// The format name suffix after "<machine>\": "SYSTEM$;DEADLETTER" or "SYSTEM$;DEADXACT"; the
// store name for such a suffix (any case), or "" when `suffix` is neither.
std::string dead_letter_format_suffix(std::string_view store_queue_name);
std::string dead_letter_queue_of_suffix(std::string_view suffix);

// The dead-letter queue (DEADXACT when `transactional`) in `store`, created when missing
// (race-safe). Throws what the store throws.
transport::QueueInfo ensure_dead_letter_queue(transport::local::Store& store, bool transactional);

// Moves message `seq` of `from` into the dead-letter queue for its kind, in one durable store
// transaction. False when another receiver took it first.
bool move_to_dead_letter(transport::local::LocalQueue& from, int64_t seq, bool transactional);

// PROPID_M_CLASS of a message read from a dead-letter queue: why it is there, as MSMQ reports it
// (MQMSG_CLASS_NACK_RECEIVE_TIMEOUT: its time to be received had passed at `now`; otherwise
// MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT). mqsec dead-letters only expired messages, so the class
// is derived from the envelope rather than stored.
uint16_t dead_letter_class(const security::Envelope& e, int64_t now);

}  // namespace mqsec::core
