// The seam between the application core and where a queue's messages live. The core signs,
// verifies, rejects and NACKs; a transport only moves opaque envelope bytes (it never sees a
// key, a certificate or a verdict). The local SQLite store (transport/local) is one
// implementation; a broker-backed one (remote queues: sends land in a local outgoing queue,
// remote reads take from the broker) is another. Which transport serves a queue is decided by
// the destination (core/destination.hpp), not here.
//
// Nothing here names SQLite or AMQP: the types below are plain data.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mqsec::transport {

using Bytes = std::vector<uint8_t>;

struct QueueInfo {
  int64_t id = 0;              // assigned by the store (never reused, even after delete_queue)
  std::string name;            // private queue name, stored lower-cased (ASCII), e.g. "orders"
  std::string label;           // UTF-8
  bool authenticate = false;   // PROPID_Q_AUTHENTICATE
  bool transactional = false;  // PROPID_Q_TRANSACTION
  int64_t created = 0;         // Unix seconds; 0 on create_queue means "now"
  // The queue's own trust demand, stronger than or equal to the system's: "" (the system's
  // [trust] require), "signature", "chain" or "chain+revocation".
  std::string trust;
  // Authorized signers (IBM MQ AMS's SIGNER policy); both empty: anyone. A message must match
  // one subject ("CN=alice,O=Payroll", as subject_string prints it) or one confirmed SID.
  std::vector<std::string> signer_subjects;
  std::vector<std::string> signer_sids;
  // MSMQ's other queue properties (MQCreateQueue, MQSetQueueProperties): kept and returned by
  // MQGetQueueProperties; docs/msmq-api.md says which are enforced.
  bool journal = false;                 // PROPID_Q_JOURNAL
  uint32_t quota = 0xFFFFFFFF;          // PROPID_Q_QUOTA, kilobytes (INFINITE: none)
  uint32_t journal_quota = 0xFFFFFFFF;  // PROPID_Q_JOURNAL_QUOTA, kilobytes
  int16_t base_priority = 0;            // PROPID_Q_BASEPRIORITY
  uint32_t privacy = 1;                 // PROPID_Q_PRIV_LEVEL (MQ_PRIV_LEVEL_OPTIONAL)
  std::array<uint8_t, 16> type{};       // PROPID_Q_TYPE, a GUID in its memory layout
  std::string multicast_address;        // PROPID_Q_MULTICAST_ADDRESS, "" when none
  int64_t modified = 0;                 // Unix seconds; 0 on create_queue means "created"
};

struct StoredMessage {
  int64_t queue_id = 0;
  int64_t seq = 0;  // unique across the store, increasing, never reused
  // 0..7, or kMalformedPriority when the row's priority column is not an integer in 0..7 (only
  // a direct write to the database makes such a row; the receive path rejects it). Receive
  // order and cursors use this sanitized value, so (priority, seq) is a strict total order.
  int priority = 0;
  int64_t arrived = 0;  // Unix seconds
  Bytes envelope;
};

inline constexpr int kMalformedPriority = -1;

struct Rejection {
  int64_t id = 0;
  std::string queue;  // lower-cased like queue names
  int64_t time = 0;   // Unix seconds
  std::string kind;   // machine-readable ("malformed", "signature", "replay", ...); "" before v2
  std::string reason;
  Bytes envelope;              // at most RejectionBounds::body_prefix bytes of the envelope
  uint64_t original_size = 0;  // the whole envelope's size
  bool truncated() const noexcept { return envelope.size() < original_size; }
};

// How much of the rejected-message record is kept (store-wide, all queues together); the
// oldest records beyond any bound are pruned when a new one is written. 0 for max_count,
// max_bytes or max_age_seconds: that bound is off.
struct RejectionBounds {
  uint64_t max_count = 10000;
  uint64_t max_bytes = 64 * 1024 * 1024;  // sum of the kept envelope prefixes and reasons
  int64_t max_age_seconds = 30 * 24 * 3600;
  uint64_t body_prefix = 4096;  // bytes of a rejected envelope kept (0: none)
};

// What remove_delivered() did.
enum class Removal {
  Removed,  // deleted by this caller, and its message id recorded as delivered
  Gone,     // another receiver (any process) removed it first; nothing changed
  Replay,   // deleted by this caller, but its id had already been delivered from this queue
};

struct Append {
  int64_t queue_id;
  int priority;
  Bytes envelope;
};

// A message arriving from another machine (Store::append_unique): removed as a duplicate when
// its id already arrived in (or was delivered from) the queue.
struct UniqueAppend {
  int64_t queue_id;
  int priority;
  std::span<const uint8_t> envelope;
  std::span<const uint8_t> msg_id;
  int64_t sent_time;  // Unix seconds (the envelope's signed sent time)
};

enum class ArrivalResult { Appended, Duplicate };
struct Arrival {
  ArrivalResult result = ArrivalResult::Appended;
  int64_t seq = 0;  // the new message's seq (Appended)
};

// How a sent message is kept: MQMSG_DELIVERY_EXPRESS may be batched in memory (accepted on
// return, committed shortly after; lost only if the process dies first); RECOVERABLE is durable
// when send() returns.
enum class Delivery { Express, Recoverable };

// An envelope whose bytes are made when it is stored, not when it is sent: the local
// transport's writer thread calls bytes() (once), so that encoding a signed message runs on the
// other core while the sending thread waits for the next signature. bytes() may throw; that
// message then fails as one the store could not write does (the sender's error when it waits,
// else a line in the runtime's log).
class DeferredEnvelope {
 public:
  virtual ~DeferredEnvelope() = default;
  virtual Bytes bytes() = 0;
};

// One message of QueueTransport::send_batch.
struct Outbound {
  int priority = 0;
  Bytes envelope;
};

// One queue's transport, as the core's send and receive paths use it. Every method may throw
// mqsec::Error (MQ_ERROR_MESSAGE_STORAGE_FAILED, MQ_ERROR_SERVICE_NOT_AVAILABLE,
// MQ_ERROR_QUEUE_NOT_FOUND, ...). Safe to call from many threads; an implementation that holds
// per-process resources (connections, writer threads) rebinds them itself after fork().
class QueueTransport {
 public:
  virtual ~QueueTransport() = default;

  // Appends an envelope (opaque bytes). Messages of one sender keep their order, express and
  // recoverable ones together.
  virtual void send(int priority, Bytes envelope, Delivery delivery) = 0;
  // Appends several envelopes, in this order, with one delivery mode: what send() does for each
  // of them, but a transport may store them together (the local store: in one transaction, the
  // batch signer's hand-over). The envelopes are moved from. Returns one entry per message:
  // null when it was accepted, else what send() would have thrown for it. By default, send()
  // for each message.
  virtual std::vector<std::exception_ptr> send_batch(std::span<Outbound> messages,
                                                     Delivery delivery) {
    std::vector<std::exception_ptr> errors(messages.size());
    for (size_t i = 0; i < messages.size(); ++i) {
      try {
        send(messages[i].priority, std::move(messages[i].envelope), delivery);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
    return errors;
  }
  // send() of an envelope encoded later (DeferredEnvelope), with send()'s guarantees: order,
  // a recoverable message durable on return, its failure thrown here. By default it is encoded
  // now.
  virtual void send_deferred(int priority, std::unique_ptr<DeferredEnvelope> envelope,
                             Delivery delivery) {
    send(priority, envelope->bytes(), delivery);
  }
  // Returns once this process's express sends so far are visible to receivers (before a
  // receive, and when the queue is closed).
  virtual void flush() = 0;

  // The cursor walk, in receive order (highest priority first, then arrival): the first
  // message, the one after (priority, seq) (which need not exist any more), one by seq.
  virtual std::optional<StoredMessage> first() = 0;
  virtual std::optional<StoredMessage> next_after(int priority, int64_t seq) = 0;
  virtual std::optional<StoredMessage> get(int64_t seq) = 0;
  // The walk backwards (MQReceiveMessageByLookupId's PREV and LAST): the last message in receive
  // order, the one before (priority, seq). By default a walk from first(): a transport with an
  // index for it should override them.
  virtual std::optional<StoredMessage> last() {
    std::optional<StoredMessage> m = first(), previous;
    while (m) {
      previous = std::move(m);
      m = next_after(previous->priority, previous->seq);
    }
    return previous;
  }
  virtual std::optional<StoredMessage> prev_before(int priority, int64_t seq) {
    std::optional<StoredMessage> m = first(), previous;
    while (m && (m->priority > priority || (m->priority == priority && m->seq < seq))) {
      previous = std::move(m);
      m = next_after(previous->priority, previous->seq);
    }
    return previous;
  }
  // Takes a message out without delivering it (a rejection). True only for the one caller, in
  // any process, that removed it.
  virtual bool remove(int64_t seq) = 0;
  // Delivers a message: removes it and records its message id as delivered, atomically; see
  // Removal. Delivered ids are kept until sent_time is window_seconds in the past (<= 0:
  // forever).
  virtual Removal remove_delivered(int64_t seq, std::span<const uint8_t> msg_id, int64_t sent_time,
                                   int64_t window_seconds) = 0;
  // Whether msg_id was delivered from this queue (and is still remembered): for peeks.
  virtual bool was_delivered(std::span<const uint8_t> msg_id) = 0;
  virtual size_t count() = 0;

  // A number that changes whenever the queue may have changed, and a wait for that change
  // (false on timeout). Read version(), look, then wait: nothing committed in between is missed.
  virtual uint64_t version() = 0;
  virtual bool wait_for_change(uint64_t seen, std::chrono::milliseconds timeout) = 0;

  // The audit record of a rejected message (durable on return), bounded by `bounds`.
  virtual void record_rejection(std::string_view kind, std::string_view reason,
                                std::span<const uint8_t> envelope,
                                const RejectionBounds& bounds) = 0;
};

}  // namespace mqsec::transport
