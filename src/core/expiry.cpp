// Message expiry (expiry.hpp).
#include "src/core/expiry.hpp"

#include <algorithm>

#include "src/core/dead_letter.hpp"
#include "src/security/log.hpp"

namespace mqsec::core {
namespace {

// The Unix second after which `e` is expired, or nullopt-like INT64_MAX without a limit.
int64_t deadline_of(const security::Envelope& e, int64_t skew_seconds) {
  if (e.time_to_be_received == security::kNoTimeLimit) return INT64_MAX;
  const uint64_t sent = std::min<uint64_t>(e.sent_time, static_cast<uint64_t>(INT64_MAX) / 2);
  const uint64_t skew = static_cast<uint64_t>(std::max<int64_t>(0, skew_seconds));
  return static_cast<int64_t>(sent + e.time_to_be_received +
                              std::min<uint64_t>(skew, static_cast<uint64_t>(INT64_MAX) / 4));
}

}  // namespace

bool expired(const security::Envelope& e, int64_t now, int64_t skew_seconds) {
  return now > deadline_of(e, skew_seconds);
}

uint32_t seconds_left_to_receive(const security::Envelope& e, int64_t now) {
  if (e.time_to_be_received == security::kNoTimeLimit) return security::kNoTimeLimit;
  const int64_t deadline = deadline_of(e, 0);
  if (now >= deadline) return 0;
  return static_cast<uint32_t>(std::min<int64_t>(deadline - now, int64_t{e.time_to_be_received}));
}

bool expire_message(transport::QueueTransport& from, transport::local::LocalQueue* local,
                    bool transactional, int64_t seq, const security::Envelope& e,
                    const QueuePolicy& policy, const std::string& what) {
  const bool dead_letter = local != nullptr && (e.journal & MQMSG_DEADLETTER) != 0;
  // Either way exactly one caller (any process) wins the message.
  if (dead_letter ? !move_to_dead_letter(*local, seq, transactional) : !from.remove(seq)) {
    return false;
  }
  log(LogLevel::Info, "expired " + what + ": its time to be received (" +
                          std::to_string(e.time_to_be_received) + " s) has passed; " +
                          (dead_letter ? "moved to the dead-letter queue" : "removed"));
  if (!(e.acknowledge & MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE) || e.admin_queue.empty()) return true;
  try {
    send_nack(e, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT, policy.store_dir, policy.machine);
  } catch (const std::exception& ex) {
    log(LogLevel::Warning, std::string("could not send the receive-timeout NACK: ") + ex.what());
  }
  return true;
}

}  // namespace mqsec::core
