// Arrival: a message from another machine, delivered by this machine's broker queue
// (transport::amqp::Inbound, run by `mqsec agent`), is checked as the receive loop checks
// messages (core/verification.hpp: the destination queue's policy, the signed destination
// queue, the replay window), then stored in the local queue exactly once (the broker delivers
// at least once; duplicates are removed by the signed message id, transport::local::Store::
// append_unique), or rejected: recorded in the rejected-messages record and NACKed to its admin
// queue when the sender asked. See docs/remote.md ("Arrival").
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "src/core/verification.hpp"
#include "src/security/security_descriptor.hpp"
#include "src/security/config.hpp"
#include "src/transport/local/local_transport.hpp"
#include "transport/amqp/inbound.hpp"

namespace mqsec::core {

struct ArrivalCounts {
  uint64_t stored = 0;
  uint64_t duplicates = 0;
  uint64_t rejected = 0;
  uint64_t retried = 0;
};

// The arrival side of one machine's queue manager (the store of cfg.store_path). Keeps each
// destination queue's policy for a short while (kPolicyTtl), so a stream of messages does not
// re-read the queue's settings per message and a changed queue applies within seconds. Safe to
// call from several threads.
class Arrivals {
 public:
  static constexpr std::chrono::seconds kPolicyTtl{2};

  explicit Arrivals(security::SystemConfig cfg);

  // Checks and stores one message (the Inbound callback):
  //   accept: stored durably, or a duplicate of a message that already arrived in (or was
  //           delivered from) that queue (nothing stored again);
  //   reject: refused and recorded (kind "no-such-queue", "malformed" (not an envelope, or its
  //           message id differs from the AMQP message-id), "access-denied" (the queue's
  //           security descriptor does not give the sender MQSEC_WRITE_MESSAGE: its SID when
  //           confirmed, else Anonymous Logon), or as the receive loop records it:
  //           "signature", "unsigned", "wrong-queue", "too-old", ...), NACKed to its admin queue
  //           when asked (MQMSG_CLASS_NACK_BAD_DST_Q for a missing queue,
  //           MQMSG_CLASS_NACK_ACCESS_DENIED for "access-denied",
  //           MQMSG_CLASS_NACK_BAD_SIGNATURE otherwise);
  //   retry:  the store is busy or failing (or recording the rejection failed): deliver again.
  transport::amqp::Disposition deliver(const transport::amqp::InboundMessage& m);

  ArrivalCounts counts() const;

 private:
  struct Target {
    std::shared_ptr<transport::local::LocalQueue> queue;
    QueuePolicy policy;
    security::SecurityDescriptor security;  // who may send to it (queue_security.hpp)
    std::chrono::steady_clock::time_point loaded;
  };
  // The queue `name` with its policy (cached); nullptr when there is no such queue.
  std::shared_ptr<const Target> target(const std::string& name);
  void forget(const std::string& name);
  transport::amqp::Disposition reject(transport::QueueTransport& record_in, const std::string& what,
                                      const QueuePolicy& policy,
                                      const transport::amqp::InboundMessage& m,
                                      const security::Envelope* e, const Refusal& refusal,
                                      uint32_t nack_class);

  const security::SystemConfig cfg_;
  const QueuePolicy default_policy_;  // for rejections outside any queue (no such queue)
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Target>> targets_;
  ArrivalCounts counts_;
};

// One message with a fresh Arrivals (no policy cache): for callers that handle a single message.
transport::amqp::Disposition arrive(const security::SystemConfig& cfg,
                                    const transport::amqp::InboundMessage& m);

// The local queue name an arriving message's mqsec-queue property names: "private$\<name>" or
// "<name>", lower-cased; "" when it is neither.
std::string arrival_queue_name(std::string_view property);

}  // namespace mqsec::core
