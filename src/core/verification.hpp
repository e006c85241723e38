// The checks every message passes before an application sees it, in one place for both paths
// that run them: the receive loop (Queue::receive, on messages taken from the local store) and
// arrival (core/arrival.hpp, on messages coming from another machine through the broker, before
// they are stored). And what happens to a message that fails: the rejected-messages record, a
// NACK to its admin queue when the sender asked for one.
#pragma once

#include <mq.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "src/security/config.hpp"
#include "src/security/envelope.hpp"
#include "src/security/message_auth.hpp"
#include "src/security/trust.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

// What receiving from (or arriving in) one queue demands: the system configuration and the
// queue's own settings, as they were when the policy was built.
struct QueuePolicy {
  bool allow_weak_hash = false;
  security::TrustRequire require = security::TrustRequire::Signature;
  std::shared_ptr<const security::TrustStore> trust;  // null: no [trust] anchors (or not loaded)
  std::filesystem::path system_registry;              // [trust] registry
  std::filesystem::path store_dir;                    // the user registry's store
  std::string machine;  // this machine: [machine] name, else the host name (NACKs are from it)
  std::vector<security::AuthorizedSigner> signers;
  int64_t max_clock_skew_seconds = 300;
  int64_t replay_window_seconds = 0;
  // Only signed messages are accepted: PROPID_Q_AUTHENTICATE, or the queue's own trust demand
  // or authorized signers.
  bool require_signed = false;
  uint64_t max_message_body = 4 * 1024 * 1024;  // [limits] max-message-body
  transport::RejectionBounds rejection_bounds;  // [limits] rejected-*
  // A dead-letter queue (dead_letter.hpp): it holds messages signed for other queues, so the
  // signed destination is not compared with it.
  bool any_destination = false;
};

// The bounds of the rejection records ([limits] rejected-*).
transport::RejectionBounds rejection_bounds_of(const security::LimitsConfig& l);

// The policy of queue `info` under `cfg`. load_trust: load the [trust] anchors (verifiers only:
// a sender needs none, and must not fail when they are missing). Throws
// mqsec::Error(MQ_ERROR_SERVICE_NOT_AVAILABLE) for a queue trust setting it does not know, and
// whatever loading the trust store throws.
QueuePolicy queue_policy(const security::SystemConfig& cfg, const transport::QueueInfo& info,
                         bool load_trust);

// Why a body of `size` bytes is over the limit ([limits] max-message-body), for people.
std::string too_large(size_t size, uint64_t limit);

// Why a message is refused: `kind` for machines (Verdict::kind, or "malformed", "unsigned",
// "replay", "wrong-queue", "too-large", "no-such-queue"), `reason` for people.
struct Refusal {
  std::string kind;
  std::string reason;
};

struct Checked {
  std::optional<security::Envelope> envelope;  // decoded (nullopt: not an envelope)
  security::Verdict verdict;                   // when verified
  std::optional<Refusal> refusal;              // set: the message fails
  bool ok() const noexcept { return !refusal.has_value(); }
};

// Runs the checks of a message for queue `queue` (its lower-cased name) in order: the stored
// priority (`priority`: kMalformedPriority -> "malformed"), decoding ("malformed"), body size
// ("too-large"), the Verifier with the policy (signature, certificate, trust, signers, clock,
// replay window), "unsigned" on a queue that requires signed messages, "wrong-queue" when the
// signed destination names another queue, and "replay" when was_delivered (may be empty: no
// check) says the id was delivered from this queue already.
Checked check_message(const QueuePolicy& policy, const std::string& queue, int priority,
                      std::span<const uint8_t> bytes,
                      const std::function<bool(std::span<const uint8_t>)>& was_delivered);

// A refused message: logged (`what` names it, e.g. "message 12 of queue 'inbox'"), recorded in
// the rejected-messages record through `record_in` (its queue's transport), and NACKed with
// `nack_class` to its admin queue when `e` asked for a negative arrival acknowledgement (a NACK
// that cannot be sent is logged, not thrown). Throws what recording throws (then no NACK).
void reject_message(transport::QueueTransport& record_in, const std::string& what,
                    const QueuePolicy& policy, std::span<const uint8_t> bytes,
                    const security::Envelope* e, const Refusal& refusal,
                    uint32_t nack_class = MQMSG_CLASS_NACK_BAD_SIGNATURE);

// Sends a NACK of class `nack_class` for `e` from `machine` (this machine's name) to e's admin
// queue (any destination the runtime resolves: local, or another machine's through the outgoing
// queue), unless that names no application queue (core/admin.hpp is_application_queue: a
// subqueue, journal or dead-letter queue), or a queue of this machine whose security descriptor
// does not let an anonymous sender write (the NACK carries what the original sender chose): then
// logs it and sends nothing. Throws on failure.
void send_nack(const security::Envelope& e, uint32_t nack_class,
               const std::filesystem::path& store_dir, const std::string& machine);

}  // namespace mqsec::core
