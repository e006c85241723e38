// The per-message checks of receive and arrival, and rejection (record + NACK).
#include "src/core/verification.hpp"

#include <algorithm>
#include <climits>
#include <ctime>

#include "mqsec/error.hpp"
#include "src/core/admin.hpp"
#include "src/core/destination.hpp"
#include "src/core/locate.hpp"
#include "src/core/queue_security.hpp"
#include "src/core/runtime.hpp"
#include "src/core/text.hpp"
#include "src/security/log.hpp"

namespace mqsec::core {
namespace {

// The message's signed destination ("DIRECT=OS:<host>\private$\<name>") names queue `name`.
// Only the queue part counts: the host is the sender's view and differs for remote queues.
// A receiving thread meets the same destination message after message: the last pair this
// thread found to match is kept, so that a repeat costs one comparison of each string instead of
// a conversion from UTF-16, a parse and two lowercasings (docs/performance.md, session 28).
bool destined_for(const security::Envelope& e, const std::string& name) {
  struct Match {
    std::u16string dest;
    std::string name;
  };
  thread_local Match last;
  if (!last.name.empty() && e.dest_queue == last.dest && name == last.name) return true;
  std::string dest;
  try {
    dest = queue_part_of_format(utf16_to_utf8(e.dest_queue));
  } catch (const std::exception&) {
    return false;
  }
  if (dest.empty() || dest != name) return false;
  try {
    last.dest = e.dest_queue;
    last.name = name;
  } catch (const std::bad_alloc&) {
    last.name.clear();  // nothing kept; the answer stands
  }
  return true;
}

}  // namespace

std::string too_large(size_t size, uint64_t limit) {
  return "message body of " + std::to_string(size) + " bytes is larger than the limit of " +
         std::to_string(limit) + " bytes ([limits] max-message-body)";
}

transport::RejectionBounds rejection_bounds_of(const security::LimitsConfig& l) {
  transport::RejectionBounds b;
  b.max_count = l.rejected_max_count;
  b.max_bytes = l.rejected_max_bytes;
  b.max_age_seconds = l.rejected_max_age_seconds;
  b.body_prefix = l.rejected_body_prefix;
  return b;
}

QueuePolicy queue_policy(const security::SystemConfig& cfg, const transport::QueueInfo& info,
                         bool load_trust) {
  QueuePolicy p;
  p.allow_weak_hash = cfg.allow_weak_hash;
  p.require = cfg.trust.effective_require();
  if (!info.trust.empty()) {
    auto own = security::parse_trust_require(info.trust);
    if (!own) {
      throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                  "queue '" + info.name + "' has an unknown trust setting '" + info.trust + "'");
    }
    p.require = std::max(p.require, *own);
  }
  if (!cfg.trust.anchors.empty() && load_trust) p.trust = security::trust_store_for(cfg.trust);
  p.system_registry = cfg.trust.registry;
  p.store_dir = cfg.store_path;
  p.machine = cfg.machine.name.empty() ? local_host() : cfg.machine.name;
  for (const std::string& s : info.signer_subjects) p.signers.push_back({s, {}});
  for (const std::string& s : info.signer_sids) p.signers.push_back({{}, s});
  p.max_clock_skew_seconds = cfg.trust.max_clock_skew_seconds;
  p.replay_window_seconds = cfg.trust.replay_window_seconds;
  p.require_signed = info.authenticate || !info.trust.empty() || !p.signers.empty();
  p.max_message_body = cfg.limits.max_message_body;
  p.rejection_bounds = rejection_bounds_of(cfg.limits);
  return p;
}

Checked check_message(const QueuePolicy& policy, const std::string& queue, int priority,
                      std::span<const uint8_t> bytes,
                      const std::function<bool(std::span<const uint8_t>)>& was_delivered) {
  Checked c;
  auto refuse = [&](std::string kind, std::string reason) {
    c.refusal = Refusal{std::move(kind), std::move(reason)};
    return std::move(c);
  };
  if (priority == transport::kMalformedPriority) {
    // Only a direct write to the store makes such a row (senders store the envelope's
    // priority, 0..7).
    return refuse("malformed", "the stored priority is not an integer 0..7");
  }
  try {
    c.envelope = security::decode(bytes);
  } catch (const security::EnvelopeError& ex) {
    return refuse("malformed", std::string("malformed envelope: ") + ex.what());
  }
  const security::Envelope& e = *c.envelope;
  if (e.body.size() > policy.max_message_body) {
    return refuse("too-large", too_large(e.body.size(), policy.max_message_body));
  }
  Runtime& rt = runtime();
  security::VerifyPolicy vp;
  vp.now = std::time(nullptr);
  vp.allow_weak = policy.allow_weak_hash;
  vp.require = policy.require;
  vp.trust = policy.trust.get();
  vp.system_registry = [&](const security::Bytes& digest) {
    return rt.system_registered_sid(policy.system_registry, digest);
  };
  vp.user_registry = [&](const security::Bytes& digest) {
    return rt.registered_sid(policy.store_dir, digest);
  };
  vp.signers = policy.signers;
  vp.max_clock_skew_seconds = policy.max_clock_skew_seconds;
  vp.replay_window_seconds = policy.replay_window_seconds;
  c.verdict = rt.verifier().verify(e, vp);
  const security::Verdict& vd = c.verdict;
  if (!vd.ok) return refuse(vd.kind.empty() ? "signature" : vd.kind, vd.reason);
  if (policy.require_signed && !vd.signed_message) {
    return refuse("unsigned", "unauthenticated message on a queue that requires authentication");
  }
  // The signature covers the destination: a signed message copied into another queue (by
  // anyone who can write the store, or the broker) is not delivered from there.
  if (vd.signed_message && !policy.any_destination && !destined_for(e, queue)) {
    return refuse("wrong-queue", "replayed into another queue: signed for '" +
                                     utf16_to_utf8(e.dest_queue) + "', found in queue '" + queue +
                                     "'");
  }
  // The id comes from the decoded (for signed messages: verified) envelope, never from a store
  // column or a broker property.
  if (was_delivered && was_delivered(std::span<const uint8_t>(e.msg_id.data(), e.msg_id.size()))) {
    return refuse("replay", "replayed message: its message id was already delivered from queue '" +
                                queue + "'");
  }
  return c;
}

void reject_message(transport::QueueTransport& record_in, const std::string& what,
                    const QueuePolicy& policy, std::span<const uint8_t> bytes,
                    const security::Envelope* e, const Refusal& refusal, uint32_t nack_class) {
  log(LogLevel::Warning, "rejected " + what + ": " + refusal.reason + " [" + refusal.kind + "]");
  record_in.record_rejection(refusal.kind, refusal.reason, bytes, policy.rejection_bounds);
  if (e == nullptr || !(e->acknowledge & MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL) ||
      e->admin_queue.empty()) {
    return;
  }
  try {
    send_nack(*e, nack_class, policy.store_dir, policy.machine);
  } catch (const std::exception& ex) {
    log(LogLevel::Warning, std::string("could not send the NACK: ") + ex.what());
  }
}

void send_nack(const security::Envelope& e, uint32_t nack_class,
               const std::filesystem::path& store_dir, const std::string& machine) {
  Runtime& rt = runtime();
  // PUBLIC=<guid> names a queue of this store (a GUID of another machine's queue: not found).
  const Destination d = is_public_format(utf16_to_utf8(e.admin_queue))
                            ? destination_of_any_format(utf16_to_utf8(e.admin_queue), store_dir)
                            : destination_of_format(utf16_to_utf8(e.admin_queue), machine);
  // The admin queue is the sender's choice: it gets what MQ_SEND_ACCESS may open (Queue::open),
  // never a subqueue, journal or dead-letter queue, of this machine or another.
  if (!is_application_queue(d.queue)) {
    log(LogLevel::Warning, "NACK not sent: its admin queue '" + d.queue.substr(0, 256) +
                               (d.remote() ? "' on '" + d.machine.substr(0, 256) : "") +
                               "' is a subqueue, journal or dead-letter queue, which takes no "
                               "messages from senders");
    return;
  }
  auto admin = rt.resolve(d, store_dir);
  if (!admin) return;
  // A NACK carries the original message's body, label and application value, which its sender
  // chose, whoever that was: a queue of this machine takes it only if its security descriptor
  // lets an anonymous sender write (MSMQ's default descriptor does), so a NACK never brings a
  // sender's bytes into a queue that sender may not write to (review 4, finding 1).
  if (!d.remote() &&
      !security::access_allowed(queue_descriptor(store_dir, admin->info),
                                remote_sender_sids(std::nullopt), MQSEC_WRITE_MESSAGE)) {
    log(LogLevel::Warning, "NACK not sent: the security descriptor of its admin queue '" +
                               d.queue.substr(0, 256) +
                               "' does not let an anonymous sender write to it");
    return;
  }
  security::Envelope nack;
  nack.msg_class = static_cast<uint16_t>(nack_class);
  nack.msg_id = rt.new_message_id();
  nack.correlation_id = e.msg_id;
  nack.label = e.label;
  nack.body = e.body;
  nack.app_specific = e.app_specific;
  nack.dest_queue = e.dest_queue;
  nack.source_machine = utf8_to_utf16(machine);
  nack.sent_time = static_cast<uint64_t>(std::time(nullptr));
  admin->transport->send(e.priority, security::encode(nack), transport::Delivery::Recoverable);
}

}  // namespace mqsec::core
