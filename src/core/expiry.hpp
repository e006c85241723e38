// Message expiry: PROPID_M_TIME_TO_BE_RECEIVED. A message whose time to be received has run out
// is never delivered (receive, peek, cursor, lookup): the receive path that meets it takes it
// out of its queue and, when the sender asked for negative receive acknowledgments
// (MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE) and named an admin queue, sends a NACK of class
// MQMSG_CLASS_NACK_RECEIVE_TIMEOUT there. (PROPID_M_TIME_TO_REACH_QUEUE is enforced where a
// message travels: core/outgoing.cpp and core/arrival.cpp.)
#pragma once

#include <cstdint>
#include <string>

#include "src/core/verification.hpp"
#include "src/security/envelope.hpp"
#include "src/transport/local/local_transport.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

// Whether `e` cannot be received any more at Unix time `now`: its time to be received, counted
// from its sent time (whole seconds), has passed. `skew_seconds` is added for a message sent by
// another machine (its clock, not ours, set the sent time).
bool expired(const security::Envelope& e, int64_t now, int64_t skew_seconds = 0);

// PROPID_M_TIME_TO_BE_RECEIVED on receive, as MSMQ returns it: the seconds left to receive `e`
// at `now` (0 once expired), INFINITE when it has no limit.
uint32_t seconds_left_to_receive(const security::Envelope& e, int64_t now);

// Takes the expired message `seq` out of `from`: into the machine's dead-letter queue
// (dead_letter.hpp; DEADXACT when `transactional`) when `e` has MQMSG_DEADLETTER in its journal
// flags and `local` (from's local-store view, null for a queue read remotely) is given, else
// deleted. Then NACKs it (MQMSG_CLASS_NACK_RECEIVE_TIMEOUT) when `e` asks for negative receive
// acknowledgments. Returns false, doing nothing, when another receiver (any process) took it
// first. A NACK that cannot be sent is logged, not thrown; store errors are thrown.
bool expire_message(transport::QueueTransport& from, transport::local::LocalQueue* local,
                    bool transactional, int64_t seq, const security::Envelope& e,
                    const QueuePolicy& policy, const std::string& what);

}  // namespace mqsec::core
