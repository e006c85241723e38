// An open queue of the application core: what MQOpenQueue returns a handle to, and what the
// mqsec command's verbs use. Sending signs the envelope on the token (when asked), then hands
// its bytes to the queue's transport; receiving takes envelopes from the transport, verifies
// each one against the queue's policy, rejects what fails (out of the queue, into the
// rejected-messages record, a NACK to the sender's admin queue when asked) and delivers the
// rest. Plain C++ types only: the C API's property arrays stay in src/abi.
#pragma once

#include <mq.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "src/core/destination.hpp"
#include "src/core/verification.hpp"
#include "src/security/config.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/security/message_auth.hpp"
#include "src/security/trust.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::transport::local {
class LocalQueue;
}

namespace mqsec::core {

// What a queue is opened for (MQ_SEND_ACCESS, MQ_PEEK_ACCESS, MQ_RECEIVE_ACCESS,
// MQ_MOVE_ACCESS: the target of MQMoveMessage, subqueue.hpp).
struct Access {
  bool send = false;
  bool peek = false;
  bool receive = false;
  bool move = false;
  // Opened by the queue manager itself (the expiry sweep, expiry_sweep.hpp), not for a caller:
  // no queue security check, as MSMQ's queue manager is not subject to queues' DACLs.
  bool queue_manager = false;
};

// MQ_ACTION_RECEIVE, MQ_ACTION_PEEK_CURRENT, MQ_ACTION_PEEK_NEXT.
enum class Action { Receive, PeekCurrent, PeekNext };

// MQReceiveMessageByLookupId: which message, relative to a lookup id (CURRENT, NEXT, PREV) or
// at an end of the queue (FIRST, LAST), and whether it is taken (receive) or only peeked at.
enum class LookupWhere { Current, Next, Prev, First, Last };
struct Lookup {
  LookupWhere where = LookupWhere::Current;
  bool take = false;
  uint64_t id = 0;  // the lookup id (PROPID_M_LOOKUPID); 0 for First and Last
};

// A message to send: the envelope's application fields, and how to sign it.
struct Outgoing {
  security::Envelope envelope;
  std::optional<uint32_t> context;  // a security context handle (PROPID_M_SECURITY_CONTEXT)
  std::shared_ptr<security::SecurityContext> signer;  // or the context itself (C++ callers)
  security::Bytes sender_cert;                        // PROPID_M_SENDER_CERT
  uint32_t hash_alg = CALG_SHA_256;
  bool attach_sid = true;  // SENDERID_TYPE != NONE
};

// A message that passed every check, offered to the receiver.
struct Delivered {
  const security::Envelope* envelope = nullptr;
  const security::Verdict* verdict = nullptr;
  int64_t arrived = 0;     // Unix seconds
  uint64_t lookup_id = 0;  // PROPID_M_LOOKUPID: the message's position in its queue (the seq)
  int msg_class = -1;      // >= 0: PROPID_M_CLASS instead of the envelope's (dead-letter queues)
};

class Queue;
class Transaction;  // transaction.hpp

// A position in a queue for peeking through it (MQCreateCursor).
struct Cursor {
  explicit Cursor(std::shared_ptr<Queue> q) : queue(std::move(q)) {}
  const std::shared_ptr<Queue> queue;
  std::mutex mu;
  bool positioned = false;
  int priority = 0;
  int64_t seq = 0;
};

// Whether a receiver (any process) holds queue `queue_id` of the store under `store_dir` with
// MQ_DENY_RECEIVE_SHARE now (remote reads that would receive are refused then).
bool receive_share_denied(const std::filesystem::path& store_dir, int64_t queue_id);

class Queue {
 public:
  // Opens the queue `d` names in the configured store, with the system's and the queue's
  // policy as they are now. deny_receive_share: MQ_DENY_RECEIVE_SHARE (needs access.receive).
  // A queue of another machine opened for receiving or peeking is read remotely through that
  // machine's agent (remote_read.hpp): its settings come from there, the policy (trust, limits)
  // is this machine's, and every message is verified here. Throws mqsec::Error:
  // MQ_ERROR_QUEUE_NOT_FOUND, MQ_ERROR_SHARING_VIOLATION, MQ_ERROR_SERVICE_NOT_AVAILABLE,
  // MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE and MQ_ERROR_ACCESS_DENIED (remote read),
  // MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION (MQ_DENY_RECEIVE_SHARE on a queue of another
  // machine), ...
  static std::shared_ptr<Queue> open(const Destination& d, Access access, bool deny_receive_share);
  ~Queue();
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  const std::string& name() const noexcept { return name_; }
  // The queue's format name (MQHandleToFormatName), UTF-8.
  std::string format_name() const;

  // MQ_ERROR_ACCESS_DENIED unless the queue was opened for this.
  void check_send_access() const;
  void check_receive_access(Action action) const;
  // MQ_ERROR_TRANSACTION_USAGE unless this is a transactional queue of this machine: what a
  // receive in a transaction, or with MQ_SINGLE_MESSAGE, needs.
  void check_transactional_queue() const;

  // Sets the envelope's message id, sent time, source machine and destination, signs it when
  // its auth level asks (with m.signer or m.context, unless m.sender_cert names another
  // certificate, else the certificate m.sender_cert names, or the caller's internal one) and hands
  // it to the transport: durable on return unless express outside a transaction. Throws
  // mqsec::Error (MQ_ERROR_INSUFFICIENT_RESOURCES for a body over [limits] max-message-body,
  // MQ_ERROR_BAD_SECURITY_CONTEXT, signing errors, storage errors).
  // Transactions: in_transaction (MQ_SINGLE_MESSAGE, or `tx`) is required by a transactional
  // queue of this machine and refused by a non-transactional one (MQ_ERROR_TRANSACTION_USAGE);
  // a transactional message has priority 0 and recoverable delivery (as MSMQ sets them). With
  // `tx` the message is signed now (never batched) and written when tx commits; a queue of
  // another machine is refused then (MQ_ERROR_TRANSACTION_USAGE).
  void send(Outgoing& m, bool in_transaction, Transaction* tx = nullptr);
  // PROPID_Q_TRANSACTION of the queue (false for a queue of another machine sent to).
  bool transactional() const noexcept { return transactional_; }
  // Subqueues (subqueue.hpp): what the queue was opened for, its queue of this machine's store
  // (null for a queue of another machine), and the policy its messages are checked with.
  const Access& access() const noexcept { return access_; }
  const std::shared_ptr<transport::local::LocalQueue>& local() const noexcept {
    return remote_machine_.empty() ? local_ : no_local_;
  }
  const QueuePolicy& policy() const noexcept { return policy_; }

  // Offered each message that passes verification; returns MQ_OK or MQ_INFORMATION_PROPERTY
  // to take it (or leave it, for peeks), or a failure (a buffer too small, say) to leave it in
  // the queue and return that code. May be called again with another message when another
  // receiver took the one offered.
  using Deliver = std::function<HRESULT(const Delivered&)>;
  // The receive loop: the next message in receive order (or at the cursor), verified; failing
  // ones are rejected and the loop goes on. timeout nullopt: wait forever. Throws
  // MQ_ERROR_IO_TIMEOUT when nothing arrived in time, MQ_ERROR_OPERATION_CANCELLED when `stop`
  // was requested while it waited (seen within kCancelLatency; an asynchronous receive).
  // A receive (not a peek) in transaction `tx` needs a transactional queue of this machine
  // (else MQ_ERROR_TRANSACTION_USAGE); the message is put back if tx aborts.
  HRESULT receive(Action action, std::optional<std::chrono::milliseconds> timeout, Cursor* cursor,
                  const Deliver& deliver, Transaction* tx = nullptr, std::stop_token stop = {});
  // MQReceiveMessageByLookupId: the message `l` names, verified like any receive (one that fails
  // is rejected; for NEXT, PREV, FIRST and LAST the walk goes on in the same direction). Never
  // waits. Throws MQ_ERROR_MESSAGE_NOT_FOUND when there is no such message (any more), and
  // MQ_ERROR_ACCESS_DENIED as receive() does.
  HRESULT receive_by_lookup_id(const Lookup& l, const Deliver& deliver, Transaction* tx = nullptr);

  // MQPurgeQueue: removes every message now in the queue, unread (no NACKs), after this
  // process's express sends are committed. Needs receive access (MQ_ERROR_ACCESS_DENIED);
  // MQ_ERROR_UNSUPPORTED_OPERATION for a queue of another machine read remotely. Returns how
  // many messages were removed.
  size_t purge();

  // Makes this process's express messages visible (MQCloseQueue), after waiting (at most
  // kBatchFlushBound) for the messages this queue queued for batch signing.
  void flush();

  // Batch signing for this queue's sends (batch_signing.hpp), instead of [signing] as it was
  // when the queue was opened and the sending context's profile settings: max_messages 1 turns
  // it off (`mqsec send --batch`). The system's [signing] batch-limit still caps it.
  void set_batching(const security::SigningConfig& signing);

 private:
  // flush()'s work: waits (at most kBatchFlushBound) for this process's messages queued for
  // batch signing when `batches`, then commits its express messages.
  void store_pending(bool batches);
  Queue() = default;
  // PROPID_Q_QUOTA on send (queue.cpp): true when `e` was refused (recorded, NACKed).
  bool over_quota(const security::Envelope& e);
  void reject(const transport::StoredMessage& m, const security::Envelope* e,
              const Refusal& refusal, bool removed = false);
  // Verifies `m` and offers it to `deliver`, taking it when `take`. nullopt: the message is
  // not deliverable any more (rejected, or another receiver took it); else deliver's result.
  // `claimed`: m came from LocalQueue::claim_next (a claimed receive).
  std::optional<HRESULT> offer(const transport::StoredMessage& m, bool take, const Deliver& deliver,
                               Transaction* tx = nullptr, bool claimed = false);
  // The journal queue a receive of `e` keeps it in (journal.hpp); 0: none.
  int64_t journal_for(const security::Envelope& e, bool from_here);
  // MQ_ERROR_TRANSACTION_USAGE unless a receive in a transaction may take from this queue.
  void check_transactional_receive(Transaction& tx) const;

  std::string name_;
  std::u16string dest_queue_;      // the signed destination: format_name_of(the destination)
  std::u16string source_machine_;  // PROPID_M_SRC_MACHINE_ID's name: [machine] name or host
  std::string remote_machine_;     // a remote read: the machine read from; else empty
  Access access_;
  std::shared_ptr<transport::QueueTransport> transport_;
  // Transactions: the queue's PROPID_Q_TRANSACTION, whether it is on another machine (sent to
  // through its outgoing queue), and transport_ when it is a queue of the local store.
  bool transactional_ = false;
  bool remote_dest_ = false;
  bool dead_letter_ = false;    // SYSTEM$;DEADLETTER or ;DEADXACT (dead_letter.hpp)
  bool system_ = false;         // a dead-letter queue or a journal (journal.hpp): read-only
  bool queue_journal_ = false;  // PROPID_Q_JOURNAL when opened: receives keep a journal copy
  std::atomic<int64_t> queue_journal_id_{0}, machine_journal_id_{0};  // store ids, once known
  std::shared_ptr<transport::local::LocalQueue> local_;
  std::shared_ptr<transport::local::LocalQueue> no_local_;  // local() of a remote queue
  // The queue a message's signed destination must name: name_, or a subqueue's main queue.
  std::string verify_name_;
  // What receives from this queue demand (system config and the queue's own settings, read
  // when the queue was opened).
  QueuePolicy policy_;
  int lock_fd_ = -1;       // flock()ed for share modes
  std::string offer_key_;  // a local queue opened to receive: its key in runtime().offering()
  // [signing] when the queue was opened (or set_batching: signing_set_), and the policy a
  // deferred send's failure is recorded and NACKed with (set for senders). Without
  // set_batching, a send's settings are these with its context's profile [signing] applied.
  security::SigningConfig signing_;
  bool signing_set_ = false;
  std::shared_ptr<const QueuePolicy> batch_policy_;
  std::atomic<bool> batched_{false};  // a send of this handle went through a batch signer
};

}  // namespace mqsec::core
