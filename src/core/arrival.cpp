// Arrival of messages from other machines: check, dedupe, store or reject.
#include "src/core/arrival.hpp"

#include <algorithm>
#include <cctype>
#include <climits>
#include <ctime>
#include <span>
#include <stdexcept>

#include "mqsec/error.hpp"
#include "src/core/destination.hpp"
#include "src/core/queue_security.hpp"
#include "src/core/runtime.hpp"
#include "src/core/subqueue.hpp"
#include "src/core/text.hpp"
#include "src/security/openssl.hpp"
#include "src/security/log.hpp"
#include "src/transport/printable.hpp"

namespace mqsec::core {
namespace amqp = transport::amqp;
using transport::printable;
namespace {

// Transient: the store is busy (another process holds it beyond the busy timeout) or failing
// (disk full, I/O error); anything else that is not an mqsec::Error is treated the same.
bool transient(HRESULT code) {
  return code == MQ_ERROR_SERVICE_NOT_AVAILABLE || code == MQ_ERROR_MESSAGE_STORAGE_FAILED ||
         code == MQ_ERROR_INSUFFICIENT_RESOURCES;
}

}  // namespace

std::string arrival_queue_name(std::string_view property) {
  std::string s(property);
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(c < 0x80 ? std::tolower(c) : c); });
  constexpr std::string_view kPrivate = "private$\\";
  if (s.starts_with(kPrivate)) s.erase(0, kPrivate.size());
  if (s.empty() || s.size() > 124 || s.find('\\') != std::string::npos) return {};
  return s;
}

Arrivals::Arrivals(security::SystemConfig cfg)
    : cfg_(std::move(cfg)), default_policy_(queue_policy(cfg_, transport::QueueInfo{}, false)) {}

ArrivalCounts Arrivals::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

std::shared_ptr<const Arrivals::Target> Arrivals::target(const std::string& name) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    auto it = targets_.find(name);
    if (it != targets_.end() && now - it->second->loaded < kPolicyTtl) return it->second;
  }
  Runtime& rt = runtime();
  auto info = rt.stores().store_at(cfg_.store_path).find_queue(name);
  if (!info) {
    forget(name);
    return nullptr;
  }
  auto t = std::make_shared<Target>();
  t->queue = std::make_shared<transport::local::LocalQueue>(rt.stores(), cfg_.store_path,
                                                            info->name, info->id);
  t->policy = queue_policy(cfg_, *info, /*load_trust=*/true);
  t->security = queue_descriptor(cfg_.store_path, *info);
  t->loaded = now;
  std::lock_guard lock(mu_);
  targets_[name] = t;
  return t;
}

void Arrivals::forget(const std::string& name) {
  std::lock_guard lock(mu_);
  targets_.erase(name);
}

amqp::Disposition Arrivals::reject(transport::QueueTransport& record_in, const std::string& what,
                                   const QueuePolicy& policy, const amqp::InboundMessage& m,
                                   const security::Envelope* e, const Refusal& refusal,
                                   uint32_t nack_class) {
  reject_message(record_in, what, policy, m.body, e, refusal, nack_class);
  std::lock_guard lock(mu_);
  counts_.rejected++;
  return amqp::Disposition::reject;
}

amqp::Disposition Arrivals::deliver(const amqp::InboundMessage& m) {
  const std::string name = arrival_queue_name(m.queue);
  const std::string what = "message " + printable(m.message_id_hex) + " from '" +
                           printable(m.source_machine) + "' for queue '" +
                           printable(name.empty() ? m.queue : name) + "'";
  try {
    // A subqueue takes messages only through MQMoveMessage (subqueue.hpp): none arrives there.
    std::shared_ptr<const Target> t = name.empty() || is_subqueue(name) ? nullptr : target(name);
    if (!t) {
      // No such queue here: recorded under the name the sender used, NACKed as MSMQ does.
      std::optional<security::Envelope> e;
      try {
        e = security::decode(m.body);
      } catch (const std::exception&) {
      }
      transport::local::LocalQueue record_in(runtime().stores(), cfg_.store_path,
                                             name.empty() ? printable(m.queue, 124) : name, 0);
      return reject(record_in, what, default_policy_, m, e ? &*e : nullptr,
                    {"no-such-queue",
                     "queue '" + printable(m.queue) + "' does not exist on " + "this machine"},
                    MQMSG_CLASS_NACK_BAD_DST_Q);
    }
    // The same checks as the receive loop; duplicates are told apart by append_unique below,
    // not as "replay" (the broker's redelivery of a stored message is not an attack).
    Checked c = check_message(t->policy, t->queue->name(), 0, m.body, {});
    const security::Envelope* e = c.envelope ? &*c.envelope : nullptr;
    if (!c.ok()) {
      return reject(*t->queue, what, t->policy, m, e, *c.refusal, MQMSG_CLASS_NACK_BAD_SIGNATURE);
    }
    const std::string id = security::hex(e->msg_id);
    if (id != m.message_id_hex) {
      return reject(
          *t->queue, what, t->policy, m, e,
          {"malformed", "the envelope's message id " + id + " differs from the broker message-id " +
                            printable(m.message_id_hex)},
          MQMSG_CLASS_NACK_BAD_SIGNATURE);
    }
    // The signed destination names the machine too: a message signed for a queue of the same
    // name on another machine (taken off the broker and published into this machine's broker
    // queue) is not stored here. check_message compared the queue part only. Like that check,
    // this one is for signed messages: the destination of an unsigned one proves nothing, and a
    // NACK (unsigned) carries the destination of the message it answers, another machine's.
    const std::string& here = t->policy.machine;
    const std::string signed_for = utf16_to_utf8(e->dest_queue);
    bool for_here = !c.verdict.signed_message;
    if (!for_here) {
      try {
        for_here = !destination_of_format(signed_for, here).remote();
      } catch (const Error&) {
        for_here = false;  // not a format name at all
      }
    }
    if (!for_here) {
      return reject(
          *t->queue, what, t->policy, m, e,
          {"wrong-machine", "replayed onto another machine: signed for '" + printable(signed_for) +
                                "', arrived at machine '" + here + "'"},
          MQMSG_CLASS_NACK_BAD_SIGNATURE);
    }
    // The queue's security descriptor: the sender needs MQSEC_WRITE_MESSAGE, as its SID only
    // when that is confirmed (docs/security.md), else as Anonymous Logon.
    std::optional<security::Sid> sender;
    if (c.verdict.sender_confirmed && !e->sender_id.empty()) {
      try {
        sender = security::Sid::from_bytes(e->sender_id);
      } catch (const std::invalid_argument&) {
      }
    }
    if (!security::access_allowed(t->security, remote_sender_sids(sender), MQSEC_WRITE_MESSAGE)) {
      return reject(
          *t->queue, what, t->policy, m, e,
          {"access-denied", "the queue's security descriptor does not let " +
                                (sender ? sender->str() : "an unconfirmed sender") + " send to it"},
          MQMSG_CLASS_NACK_ACCESS_DENIED);
    }
    const int64_t sent =
        static_cast<int64_t>(std::min<uint64_t>(e->sent_time, static_cast<uint64_t>(INT64_MAX)));
    // PROPID_M_TIME_TO_REACH_QUEUE: too late to reach the queue (counted from the signed sent
    // time, allowing the clock skew between the two machines) -> expired, NACKed as MSMQ does.
    if (e->time_to_reach_queue != security::kNoTimeLimit) {
      const int64_t now = static_cast<int64_t>(std::time(nullptr));
      const uint64_t allowed =
          uint64_t{e->time_to_reach_queue} +
          static_cast<uint64_t>(std::max<int64_t>(0, t->policy.max_clock_skew_seconds));
      if (now > sent && static_cast<uint64_t>(now - sent) > allowed) {
        return reject(*t->queue, what, t->policy, m, e,
                      {"expired", "arrived " + std::to_string(now - sent) +
                                      " s after it was sent; its time to reach queue is " +
                                      std::to_string(e->time_to_reach_queue) +
                                      " s (plus the allowed clock skew of " +
                                      std::to_string(allowed - e->time_to_reach_queue) + " s)"},
                      MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT);
      }
    }
    // PROPID_Q_QUOTA, as on a send from this machine (Queue::over_quota): a message that would
    // take the queue over its quota is not stored, and NACKed as MSMQ does.
    if (transport::local::Store& store = t->queue->store(); store.has_quota(t->queue->id())) {
      const std::optional<uint64_t> room = store.quota_room(t->queue->id());
      if (room && m.body.size() > *room) {
        return reject(*t->queue, what, t->policy, m, e,
                      {"quota", "queue '" + name + "' is over its quota (PROPID_Q_QUOTA)"},
                      MQMSG_CLASS_NACK_Q_EXCEED_QUOTA);
      }
    }
    const int priority = std::clamp<int>(e->priority, 0, 7);
    transport::Arrival a;
    try {
      a = t->queue->append_unique(priority, m.body,
                                  std::span<const uint8_t>(e->msg_id.data(), e->msg_id.size()),
                                  sent, t->policy.replay_window_seconds);
    } catch (const Error& ex) {
      if (ex.code() != MQ_ERROR_QUEUE_NOT_FOUND) throw;
      forget(name);  // deleted since we looked: the next delivery finds out and rejects
      throw;
    }
    std::lock_guard lock(mu_);
    if (a.result == transport::ArrivalResult::Duplicate) {
      counts_.duplicates++;
      log(LogLevel::Debug, "duplicate " + what + " (already arrived): dropped");
    } else {
      counts_.stored++;
    }
    return amqp::Disposition::accept;
  } catch (const Error& ex) {
    log(transient(ex.code()) ? LogLevel::Warning : LogLevel::Error,
        "arrival of " + what + " failed, to be delivered again: " + ex.what());
  } catch (const std::exception& ex) {
    log(LogLevel::Error, "arrival of " + what + " failed, to be delivered again: " + ex.what());
  }
  std::lock_guard lock(mu_);
  counts_.retried++;
  return amqp::Disposition::retry;
}

amqp::Disposition arrive(const security::SystemConfig& cfg, const amqp::InboundMessage& m) {
  Arrivals a(cfg);
  return a.deliver(m);
}

}  // namespace mqsec::core
