// The core's open queue: opening (policy, share locks), the send pipeline (sign, then hand to
// the transport) and the receive loop (verify, reject and NACK, deliver).
#include "src/core/queue.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <set>
#include <span>

#include "mqsec/error.hpp"
#include "src/core/dead_letter.hpp"
#include "src/core/expiry.hpp"
#include "src/core/holding.hpp"
#include "src/core/journal.hpp"
#include "src/core/queue_security.hpp"
#include "src/core/remote_read.hpp"
#include "src/core/runtime.hpp"
#include "src/core/subqueue.hpp"
#include "src/core/text.hpp"
#include "src/core/transaction.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/security/log.hpp"
#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"
#include "src/transport/local/real_ids.hpp"

namespace mqsec::core {
namespace {

// Claimed receives (docs/performance.md, "Claimed receives"): how many messages one write
// transaction claims, and how long another process leaves them alone while this one lives.
// 64 rather than 16 (session 11): the claim transaction's commit is then about 2 us per
// received message instead of about 7, and a receive of RSA-2048 messages about 10 % cheaper.
// It is also how many returned messages a power failure can bring back per receiver process
// and queue, and how many one process can hold while another waits for its lease to end.
constexpr size_t kClaimBatch = 64;
constexpr std::chrono::milliseconds kClaimLease{2000};

// Opens (creating it with mode 0600) <store>/locks/<id>.lock without following links, as the
// process's user (store files never belong to an impersonated user).
int open_lock_file(const std::filesystem::path& store_dir, int64_t queue_id) {
  transport::local::RealFsIds real_ids;
  const std::filesystem::path dir = store_dir / "locks";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                "cannot create " + dir.string() + ": " + std::strerror(errno));
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) {
    throw Error(
        MQ_ERROR_SERVICE_NOT_AVAILABLE,
        "cannot open " + dir.string() + " (a directory, not a link): " + std::strerror(errno));
  }
  const std::string name = std::to_string(queue_id) + ".lock";
  const int fd = ::openat(dfd, name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  const int saved = errno;
  ::close(dfd);
  if (fd < 0) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                "cannot open " + (dir / name).string() + ": " + std::strerror(saved));
  }
  return fd;
}

[[noreturn]] void bad_context() {
  throw Error(MQ_ERROR_BAD_SECURITY_CONTEXT,
              "PROPID_M_SECURITY_CONTEXT is not a live security context");
}

// The security context a send uses: the caller's, unless the message names another
// certificate (MSMQ then ignores the context), else the implicit one of the calling thread's
// identity and that certificate (implicit_contexts.hpp; *implicit is set then).
std::shared_ptr<security::SecurityContext> context_for(const Outgoing& m, bool* implicit) {
  *implicit = false;
  if (m.signer && (m.sender_cert.empty() || m.sender_cert == m.signer->certificate())) {
    return m.signer;
  }
  if (m.context) {
    auto ctx = runtime().contexts().get(*m.context);
    if (!ctx) bad_context();
    if (m.sender_cert.empty() || m.sender_cert == ctx->certificate()) return ctx;
  }
  *implicit = true;
  return runtime().implicit_contexts().get(m.sender_cert);
}

// A signed envelope, encoded when the local store's writer stores it (transport.hpp).
class SignedEnvelope final : public transport::DeferredEnvelope {
 public:
  // A copy of `e` (which has no body) with `body`.
  SignedEnvelope(const security::Envelope& e, security::Bytes&& body) : e_(e) {
    e_.body = std::move(body);
  }
  transport::Bytes bytes() override { return security::encode(e_); }

 private:
  security::Envelope e_;
};

// Hashes a batch statement may name (docs/signature-format.md, 10.1).
bool batchable_hash(uint32_t calg) {
  return calg == CALG_SHA_256 || calg == CALG_SHA_384 || calg == CALG_SHA_512;
}

}  // namespace

bool receive_share_denied(const std::filesystem::path& store_dir, int64_t queue_id) {
  const int fd = open_lock_file(store_dir, queue_id);
  const bool denied = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // releases the shared lock taken, if any
  return denied;
}

// MQOpenQueue's rights (docs/security.md, "Queue permissions"): on the queue itself, a
// subqueue's queue (`named` is already that one) or a journal's queue.
static void require_open_rights(const std::filesystem::path& store_dir, const std::string& name,
                                const transport::QueueInfo& named, Access access) {
  const std::optional<std::string> secured = secured_queue_of(name);
  if (!secured) return;  // dead-letter queues and the machine journal: the queue manager's
  const bool journal = queue_of_journal(name).has_value();
  uint32_t rights = 0;
  if (access.send) rights |= MQSEC_WRITE_MESSAGE;
  if (access.peek) rights |= MQSEC_PEEK_MESSAGE;
  if (access.receive || access.move) {
    rights |= journal ? MQSEC_RECEIVE_JOURNAL_MESSAGE : MQSEC_RECEIVE_MESSAGE;
  }
  if (!journal) {
    require_queue_rights(store_dir, named, rights, "MQOpenQueue");
    return;
  }
  const std::optional<transport::QueueInfo> owner =
      runtime().stores().store_at(store_dir).find_queue(*secured);
  if (!owner) throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue '" + *secured + "' does not exist");
  require_queue_rights(store_dir, *owner, rights, "MQOpenQueue");
}

std::shared_ptr<Queue> Queue::open(const Destination& d, Access access, bool deny_receive_share) {
  const bool system = is_dead_letter_queue_name(d.queue) || is_journal_queue_name(d.queue);
  if (d.remote() && system) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "another machine's dead-letter queues and journals cannot be opened from here");
  }
  const bool remote_read =
      d.transport != Destination::Transport::Local && (access.receive || access.peek);
  if (remote_read && deny_receive_share) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "MQ_DENY_RECEIVE_SHARE is not supported for a queue of another machine ('" +
                    d.queue + "' on '" + d.machine + "', remote read); open it with MQ_DENY_NONE");
  }
  const bool sub = is_subqueue(d.queue);
  if (sub) {
    check_subqueue_name(d.queue);
    if (d.remote() || access.send) {
      throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                  "subqueue '" + d.queue + "': " +
                      (d.remote() ? "only subqueues of this machine's queues can be opened"
                                  : "a subqueue cannot be opened for sending (messages get "
                                    "there only through MQMoveMessage)"));
    }
  }
  if (access.move && d.remote()) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "MQ_MOVE_ACCESS: queue '" + d.queue + "' is on another machine");
  }
  Runtime& rt = runtime();
  auto cfg = rt.config();
  std::shared_ptr<Queue> q(new Queue());
  transport::QueueInfo named;
  int64_t own_id = 0;  // the store row the handle reads (a subqueue's own)
  // The caller's rights, checked before any row is made for the handle (a subqueue's or a
  // journal's, created on first open): no right, no row (review 4, finding 7).
  bool rights_checked = false;
  auto check_rights = [&](const transport::QueueInfo& info) {
    if (!d.remote() && !access.queue_manager) {
      require_open_rights(cfg.store_path, d.queue, info, access);
    }
    rights_checked = true;
  };
  if (sub) {
    Destination main = d;
    main.queue = main_queue_of(d.queue);
    auto resolved = rt.resolve(main, cfg.store_path);
    if (!resolved) {
      throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue '" + main.queue + "' does not exist");
    }
    named = std::move(resolved->info);
    check_rights(named);  // a subqueue's rights are its queue's
    const transport::QueueInfo row =
        ensure_subqueue(rt.stores().store_at(cfg.store_path), named, d.queue);
    own_id = row.id;
    q->transport_ = std::make_shared<transport::local::LocalQueue>(rt.stores(), cfg.store_path,
                                                                   row.name, row.id);
  } else if (remote_read) {
    RemoteRead r = open_remote_read(cfg, d, access.receive);
    named = std::move(r.info);
    q->transport_ = std::move(r.transport);
    q->remote_machine_ = d.machine;
  } else {
    if (system) {
      // Read-only for applications, and always there (created on first use), as in MSMQ.
      if (access.send) {
        throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                    "a dead-letter queue or journal cannot be opened for sending");
      }
      transport::local::Store& store = rt.stores().store_at(cfg.store_path);
      check_rights(transport::QueueInfo{});  // a journal's are its queue's (found by name)
      if (is_dead_letter_queue_name(d.queue)) {
        ensure_dead_letter_queue(store, d.queue == kDeadXactQueueName);
        q->dead_letter_ = true;
      } else {
        ensure_journal_queue(store, d.queue);
      }
      q->system_ = true;
    }
    auto resolved = rt.resolve(d, cfg.store_path);
    if (!resolved) throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue '" + d.queue + "' does not exist");
    named = std::move(resolved->info);
    q->transport_ = std::move(resolved->transport);
  }
  const int64_t id = sub ? own_id : named.id;
  if (!remote_read && !rights_checked) check_rights(named);
  q->transactional_ = !d.remote() && named.transactional;
  q->remote_dest_ = d.remote();
  if (!remote_read && !d.remote()) {
    q->local_ = std::dynamic_pointer_cast<transport::local::LocalQueue>(q->transport_);
    // Messages of transactions whose process died go back before this handle reads.
    if (q->local_ && (access.receive || access.peek)) {
      recover_orphaned_holdings(q->local_->store());
    }
  }
  q->name_ = d.queue;
  q->verify_name_ = main_queue_of(d.queue);
  q->dest_queue_ = utf8_to_utf16(format_name_of(d));
  q->access_ = access;
  // Only receivers verify: a sender needs no anchors (and must not fail when they are missing).
  named.name = q->verify_name_;
  q->policy_ = queue_policy(cfg, named, access.receive || access.peek);
  q->policy_.any_destination = q->system_;
  q->queue_journal_ = named.journal && !q->system_;
  q->source_machine_ = utf8_to_utf16(q->policy_.machine);
  if (access.send) {
    q->signing_ = cfg.signing;
    q->batch_policy_ = std::make_shared<const QueuePolicy>(q->policy_);
  }
  if (access.receive && !remote_read) {
    // Receivers hold a shared lock on the queue's lock file; MQ_DENY_RECEIVE_SHARE an
    // exclusive one. flock() works across processes and between handles of one process.
    q->offer_key_ = cfg.store_path.string() + '\n' + std::to_string(id);
    q->lock_fd_ = open_lock_file(cfg.store_path, id);
    int how = (deny_receive_share ? LOCK_EX : LOCK_SH) | LOCK_NB;
    if (flock(q->lock_fd_, how) != 0) {
      throw Error(MQ_ERROR_SHARING_VIOLATION,
                  "queue '" + d.queue + "' is opened with MQ_DENY_RECEIVE_SHARE elsewhere");
    }
  }
  return q;
}

Queue::~Queue() {
  if (local_ && !offer_key_.empty()) {
    try {
      local_->release_claims();  // what this process claimed goes back to the queue now
    } catch (const Error&) {
      // Released when the lease runs out (docs/performance.md, "Claimed receives").
    }
  }
  if (lock_fd_ >= 0) close(lock_fd_);
}

void Queue::check_send_access() const {
  if (!access_.send) throw Error(MQ_ERROR_ACCESS_DENIED, "queue not opened for sending");
}

void Queue::check_receive_access(Action action) const {
  if (action == Action::Receive ? !access_.receive : !(access_.peek || access_.receive)) {
    throw Error(MQ_ERROR_ACCESS_DENIED, "queue not opened for this kind of receive");
  }
}

std::string Queue::format_name() const { return utf16_to_utf8(dest_queue_); }

size_t Queue::purge() {
  check_receive_access(Action::Receive);
  auto* local = dynamic_cast<transport::local::LocalQueue*>(transport_.get());
  if (local == nullptr || !remote_machine_.empty()) {
    throw Error(MQ_ERROR_UNSUPPORTED_OPERATION,
                "purging queue '" + name_ + "' of another machine is not supported");
  }
  // What this process sent before, on any handle (queued for batch signing, or express in the
  // writer), is stored first, so it is purged too.
  store_pending(true);
  return local->purge();
}

void Queue::flush() { store_pending(batched_.load(std::memory_order_acquire)); }

void Queue::store_pending(bool batches) {
  if (batches && !runtime().batch_signers().flush(
                     nullptr, std::chrono::steady_clock::now() + kBatchFlushBound)) {
    log(LogLevel::Warning, "queue '" + name_ +
                               "': messages queued for batch signing are not signed yet; they "
                               "are stored once signed");
  }
  transport_->flush();
}

void Queue::set_batching(const security::SigningConfig& signing) {
  const uint32_t limit = std::min(signing_.batch_limit, signing.batch_limit);
  signing_ = signing;
  signing_.batch_limit = limit;  // the system's ceiling, read when the queue was opened
  signing_set_ = true;
  if (!batch_policy_) batch_policy_ = std::make_shared<const QueuePolicy>(policy_);
}

void Queue::send(Outgoing& m, bool in_transaction, Transaction* tx) {
  check_send_access();
  in_transaction = in_transaction || tx != nullptr;
  if (tx != nullptr && (remote_dest_ || !local_)) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                "queue '" + name_ +
                    "' is on another machine: sends in a transaction (MQBeginTransaction) go "
                    "only to queues of this machine; use MQ_SINGLE_MESSAGE");
  }
  if (!remote_dest_ && in_transaction != transactional_) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                transactional_ ? "queue '" + name_ +
                                     "' is transactional: send in a transaction "
                                     "(MQ_SINGLE_MESSAGE or MQBeginTransaction)"
                               : "queue '" + name_ +
                                     "' is not transactional: send without a transaction "
                                     "(MQ_NO_TRANSACTION)");
  }
  if (tx != nullptr) tx->check_usable();
  security::Envelope& e = m.envelope;
  if (in_transaction) {
    // MSMQ gives every transactional message priority 0 and recoverable delivery.
    e.priority = 0;
    e.delivery = MQMSG_DELIVERY_RECOVERABLE;
  }
  if (e.body.size() > policy_.max_message_body) {
    // MSMQ answers a message over its 4 MB limit with MQ_ERROR_INSUFFICIENT_RESOURCES.
    throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES,
                too_large(e.body.size(), policy_.max_message_body));
  }
  e.msg_id = runtime().new_message_id();
  e.sent_time = static_cast<uint64_t>(std::time(nullptr));
  e.source_machine = source_machine_;
  e.dest_queue = dest_queue_;
  const bool express = e.delivery == MQMSG_DELIVERY_EXPRESS && !in_transaction;
  if (local_ && !remote_dest_ && over_quota(e)) return;
  if (e.auth_level != MQMSG_AUTH_LEVEL_NONE) {
    bool implicit = false;
    auto ctx = context_for(m, &implicit);
    // Batch signing (batch_signing.hpp): sends with a security context the caller keeps, with
    // a hash a batch statement may name. An implicit context signs alone, and so does a send in
    // a transaction (signed before MQSendMessage returns, written at commit). The settings:
    // set_batching's, else [signing] with the context's profile [signing] applied; capped by
    // the system's batch-limit.
    security::SigningConfig signing = signing_set_ ? signing_ : ctx->signing().applied_to(signing_);
    signing.batch_max_messages = std::min(signing.batch_max_messages, signing.batch_limit);
    if (tx == nullptr && signing.batching() && batch_policy_ && !implicit &&
        batchable_hash(m.hash_alg)) {
      security::prepare_envelope(e, *ctx, m.hash_alg, policy_.allow_weak_hash, m.attach_sid);
      Runtime& rt = runtime();
      auto signer = rt.batch_signers().get(ctx.get(), m.hash_alg, policy_.allow_weak_hash,
                                           signing.batch_max_messages);
      PendingSend p{e,
                    std::move(ctx),
                    transport_,
                    batch_policy_,
                    name_,
                    e.priority,
                    express ? transport::Delivery::Express : transport::Delivery::Recoverable};
      batched_.store(true, std::memory_order_release);
      signer->submit(std::move(p),
                     BatchSettings{signing.batch_max_messages,
                                   std::chrono::milliseconds(signing.batch_max_delay_ms)},
                     /*wait=*/signing.batch_wait || in_transaction);
      return;
    }
    try {
      security::sign_envelope(e, *ctx, m.hash_alg, policy_.allow_weak_hash, m.attach_sid);
    } catch (...) {
      if (implicit) runtime().implicit_contexts().forget(ctx.get());  // the next send rebuilds
      throw;
    }
  } else if (m.context && !runtime().contexts().get(*m.context)) {
    bad_context();
  }
  if (tx != nullptr) {
    tx->add_send(local_, e.priority, security::encode(e));
    return;
  }
  const auto delivery = express ? transport::Delivery::Express : transport::Delivery::Recoverable;
  if (e.auth_level != MQMSG_AUTH_LEVEL_NONE) {
    // Signed: every field was validated when TBS was hashed, so encoding cannot refuse it; the
    // store's writer thread encodes it (on the other core, while this thread waits for the
    // token's next signature). The body is moved, not copied; the rest of m.envelope stays as
    // sent (callers read its msg_id and signature).
    security::Bytes body = std::move(e.body);  // e is copied without it
    auto deferred = std::make_unique<SignedEnvelope>(e, std::move(body));
    transport_->send_deferred(e.priority, std::move(deferred), delivery);
    return;
  }
  transport_->send(e.priority, security::encode(e), delivery);
}

// PROPID_Q_QUOTA, as MSMQ enforces it on arrival: a message that would take the queue's stored
// bytes over its quota is not stored; the sender's MQSendMessage succeeds (the message was
// accepted for delivery) and, when it asked for negative arrival acknowledgments, its admin
// queue gets MQMSG_CLASS_NACK_Q_EXCEED_QUOTA. Measured with the envelope as it is before
// signing (the signature, certificate and audit path come on top). The quota is read at each
// send, so MQSetQueueProperties takes effect on open handles.
bool Queue::over_quota(const security::Envelope& e) {
  if (!local_->store().has_quota(local_->id())) return false;  // INFINITE: the usual case
  transport_->flush();  // this process's express messages count
  const std::optional<uint64_t> room = local_->store().quota_room(local_->id());
  if (!room) return false;
  const transport::Bytes bytes = security::encode(e);
  if (bytes.size() <= *room) return false;
  reject_message(*transport_, "message to queue '" + name_ + "'", policy_, bytes, &e,
                 {"quota", "queue '" + name_ + "' is over its quota (PROPID_Q_QUOTA)"},
                 MQMSG_CLASS_NACK_Q_EXCEED_QUOTA);
  return true;
}

// Rejects a message that failed the checks: out of the queue, into the audit record, and a NACK
// to the admin queue when the sender asked for one. `removed`: the caller already deleted the
// row.
void Queue::reject(const transport::StoredMessage& m, const security::Envelope* e,
                   const Refusal& refusal, bool removed) {
  if (!removed && !transport_->remove(m.seq)) return;  // another receiver dealt with it
  reject_message(*transport_, "message " + std::to_string(m.seq) + " of queue '" + name_ + "'",
                 policy_, m.envelope, e, refusal);
}

void Queue::check_transactional_receive(Transaction& tx) const {
  check_transactional_queue();
  tx.check_usable();
}

void Queue::check_transactional_queue() const {
  if (!remote_machine_.empty() || !local_) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE, "queue '" + name_ +
                                                "' is on another machine: a receive in a "
                                                "transaction needs a queue of this machine");
  }
  if (!transactional_) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                "queue '" + name_ + "' is not transactional: receive without a transaction");
  }
}

HRESULT Queue::receive(Action action, std::optional<std::chrono::milliseconds> timeout,
                       Cursor* cursor, const Deliver& deliver, Transaction* tx,
                       std::stop_token stop) {
  check_receive_access(action);
  const bool take = action == Action::Receive;
  if (!take) tx = nullptr;  // a peek takes nothing: the transaction plays no part
  if (tx != nullptr) check_transactional_receive(*tx);
  transport_->flush();  // this process's express messages are visible to its own receivers
  const auto deadline =
      std::chrono::steady_clock::now() + timeout.value_or(std::chrono::milliseconds(0));
  std::unique_lock<std::mutex> cursor_lock;
  if (cursor) cursor_lock = std::unique_lock(cursor->mu);
  bool advance = action == Action::PeekNext;
  // Claimed receives (docs/performance.md, "Claimed receives"): the plain receive of a
  // non-transactional local queue without a journal takes the next message this process
  // claimed; every other receive reads the queue as before (and cannot take what another
  // process claimed).
  const bool claims = take && !cursor && tx == nullptr && local_ && remote_machine_.empty() &&
                      !transactional_ && !system_ && !queue_journal_ && !offer_key_.empty();
  // A receive without a cursor skips what another thread of this process is offering now
  // (offering.hpp); `offered` holds the mark of the message this thread offers.
  Offering* const offering =
      take && !cursor && !offer_key_.empty() && !claims ? &runtime().offering() : nullptr;
  Offering::Guard offered;
  bool skipped = false;
  // Messages this receive (without a cursor, not claiming) found not deliverable: another
  // process claimed them (they stay in the queue until it deletes them) or they were refused
  // and could not be taken out. It looks past them until its next wait, instead of verifying
  // the first of them again and again without reaching the timeout check.
  std::set<int64_t> passed;
  auto not_passed = [&](std::optional<transport::StoredMessage> m) {
    while (m && passed.count(m->seq) != 0) m = transport_->next_after(m->priority, m->seq);
    return m;
  };
  auto candidate = [&]() -> std::optional<transport::StoredMessage> {
    offered.release();
    // The ids of the claimed messages, unverified, let the store check several at once
    // (Store::deliver_claimed); each is compared with the verified one before it counts.
    if (claims) return local_->claim_next(kClaimBatch, kClaimLease, &security::peek_msg_id);
    if (offering) {
      auto m = not_passed(transport_->first());
      while (m && !offering->begin(offer_key_, m->seq)) {
        skipped = true;
        m = not_passed(transport_->next_after(m->priority, m->seq));
      }
      if (m) offered = Offering::Guard(offering, &offer_key_, m->seq);
      return m;
    }
    if (cursor && cursor->positioned) {
      auto m = advance ? transport_->next_after(cursor->priority, cursor->seq)
                       : transport_->get(cursor->seq);
      if (!m && !advance) m = transport_->next_after(cursor->priority, cursor->seq);
      return m;
    }
    return not_passed(transport_->first());
  };
  for (;;) {
    std::optional<transport::StoredMessage> m = candidate();
    uint64_t seen = 0;
    if (!m) {
      // Read the change counter, then look once more: a message committed in between is
      // either seen now or changes the counter we wait on.
      if (local_) recover_orphaned_holdings_now_and_then(local_->store());
      seen = transport_->version();
      m = candidate();
    }
    if (m) {
      if (cursor) {
        cursor->positioned = true;
        cursor->priority = m->priority;
        cursor->seq = m->seq;
        advance = false;
      }
      std::optional<HRESULT> hr = offer(*m, take, deliver, tx, claims);
      if (!hr) {
        // Not deliverable any more: a cursor moves past it (a message another process claimed
        // stays in the queue until that process deletes it), a receive without one too, until
        // its next wait.
        advance = cursor != nullptr;
        if (cursor == nullptr && !claims) passed.insert(m->seq);
        continue;
      }
      return *hr;
    }
    if (stop.stop_requested()) {
      throw Error(MQ_ERROR_OPERATION_CANCELLED, "the receive was cancelled (its queue was closed)");
    }
    auto now = std::chrono::steady_clock::now();
    if (timeout && now >= deadline) {
      throw Error(MQ_ERROR_IO_TIMEOUT, "no message arrived within the timeout");
    }
    auto wait = !timeout ? std::chrono::milliseconds(1000)
                         : std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    // A message skipped because another thread offered it may stay (that thread's buffer was
    // too small): look again soon, its staying changes no version.
    if (skipped) wait = std::min(wait, std::chrono::milliseconds(2));
    // Messages another process claimed come back without a commit when its lease runs out.
    if (claims || !passed.empty()) wait = std::min(wait, std::chrono::milliseconds(250));
    skipped = false;
    if (stop.stop_possible()) wait = std::min(wait, kCancelLatency);
    transport_->wait_for_change(seen, wait);
    passed.clear();  // look at them again: released, deleted or still held
  }
}

namespace {
Refusal replay_refusal(const std::string& queue) {
  return {"replay",
          "replayed message: its message id was already delivered from queue '" + queue + "'"};
}
}  // namespace

std::optional<HRESULT> Queue::offer(const transport::StoredMessage& m, bool take,
                                    const Deliver& deliver, Transaction* tx, bool claimed) {
  // A claimed message's replay check is deliver_claimed's (one read transaction with its
  // claim check), below.
  std::function<bool(std::span<const uint8_t>)> was_delivered;
  if (!claimed) {
    was_delivered = [this](std::span<const uint8_t> id) { return transport_->was_delivered(id); };
  }
  Checked c = check_message(policy_, verify_name_, m.priority, m.envelope, was_delivered);
  if (!c.ok()) {
    reject(m, c.envelope ? &*c.envelope : nullptr, *c.refusal);
    return std::nullopt;
  }
  const security::Envelope& e = *c.envelope;
  const std::span<const uint8_t> msg_id(e.msg_id.data(), e.msg_id.size());
  // Before a claimed message leaves the receive by another way than its delivery (expired,
  // buffers too small), the replay check its delivery would have made: a replayed copy is
  // refused as a replay, never expired (NACK, dead-letter queue) or reported to the caller.
  auto refused_as_replay = [&]() {
    if (!claimed || !transport_->was_delivered(msg_id)) return false;
    reject(m, &e, replay_refusal(name_));
    return true;
  };
  // PROPID_M_TIME_TO_BE_RECEIVED: an expired message is taken out (and NACKed), never offered.
  // The clock skew is allowed for a message another machine sent (its clock set sent_time).
  // A dead-letter queue holds expired messages: they stay until received or purged.
  const auto now = static_cast<int64_t>(std::time(nullptr));
  const bool from_here = e.source_machine == source_machine_;
  if (!system_ && expired(e, now, from_here ? 0 : policy_.max_clock_skew_seconds)) {
    if (refused_as_replay()) return std::nullopt;
    expire_message(*transport_, local_.get(), transactional_, m.seq, e, policy_,
                   "message " + std::to_string(m.seq) + " of queue '" + name_ + "'");
    return std::nullopt;
  }
  const security::Verdict& vd = c.verdict;
  const HRESULT hr = deliver(Delivered{&e, &vd, m.arrived, static_cast<uint64_t>(m.seq),
                                       dead_letter_ ? int{dead_letter_class(e, now)} : -1});
  if (FAILED(hr)) {
    if (refused_as_replay()) return std::nullopt;
    if (claimed) {
      // Receive order: a message of higher priority that arrived after the claim is offered
      // instead (the caller is told its sizes).
      if (local_->overtaken(m.seq)) return std::nullopt;
      local_->unclaim(m);  // the next receive of this process returns it
    }
    return hr;  // buffers too small: the message stays
  }
  if (take) {
    const int64_t sent =
        static_cast<int64_t>(std::min<uint64_t>(e.sent_time, static_cast<uint64_t>(INT64_MAX)));
    transport::Removal removal = transport::Removal::Gone;
    int64_t journal = 0;
    int64_t holding = 0;
    // A claimed message whose removal fails is still this process's claim: it goes back to
    // the claimed messages (the next receive returns it) instead of staying claimed by nobody's
    // receive until the process ends.
    auto give_back = [&] {
      if (claimed) local_->unclaim(m);
    };
    try {
      journal = local_ ? journal_for(e, from_here) : 0;
      // In a transaction the row waits in its holding queue (holding.hpp), journaled at commit.
      holding = tx != nullptr ? tx->holding_for(*local_, /*move=*/false) : 0;
      const int64_t into = holding != 0 ? holding : journal;
      if (into != 0) {
        // Receive order, as deliver_claimed checks it for the others.
        if (claimed && local_->overtaken(m.seq)) return std::nullopt;
        removal = local_->remove_delivered_to_journal(m.seq, msg_id, sent,
                                                      policy_.replay_window_seconds, into);
      } else if (claimed) {
        removal = local_->deliver_claimed(m.seq, msg_id, sent, policy_.replay_window_seconds);
      } else {
        removal = transport_->remove_delivered(m.seq, msg_id, sent, policy_.replay_window_seconds);
      }
    } catch (const Error& ex) {
      give_back();
      if (remote_machine_.empty()) throw;
      // Remote read: the message is here, but the removal on its machine was not
      // confirmed. It is not delivered: if it was removed there it is lost to this reader
      // (a remote receive is at most once), if not a later receive takes it.
      throw Error(ex.code(), "message " + security::hex(e.msg_id) + " of queue '" + name_ +
                                 "' was read from machine '" + remote_machine_ +
                                 "', but its removal there was not confirmed; it is not "
                                 "delivered (lost if it was removed there, else still "
                                 "there): " +
                                 ex.what());
    } catch (...) {
      give_back();
      throw;
    }
    if (removal != transport::Removal::Removed) {
      // Gone: another receiver won it. Replay: a copy with this id was delivered meanwhile.
      if (removal == transport::Removal::Replay) {
        reject(m, &e, replay_refusal(name_), /*removed=*/true);
      }
      return std::nullopt;
    }
    // In a transaction: put back in its place if the transaction aborts.
    if (tx != nullptr) {
      tx->add_receive(local_, m, transport::Bytes(msg_id.begin(), msg_id.end()), holding, journal);
    }
  }
  return hr;
}

// Journals (journal.hpp): the queue's own when PROPID_Q_JOURNAL was set when it was opened,
// else the machine journal for a message sent from here with MQMSG_JOURNAL; 0: none.
int64_t Queue::journal_for(const security::Envelope& e, bool from_here) {
  if (system_) return 0;
  std::atomic<int64_t>* cached = nullptr;
  std::string name;
  if (queue_journal_) {
    cached = &queue_journal_id_;
    name = journal_queue_name(verify_name_);  // a subqueue's receives go to its queue's journal
  } else if ((e.journal & MQMSG_JOURNAL) && from_here) {
    cached = &machine_journal_id_;
    name = kMachineJournalName;
  } else {
    return 0;
  }
  int64_t id = cached->load();
  if (id == 0) {
    id = ensure_journal_queue(local_->store(), name).id;
    cached->store(id);
  }
  return id;
}

HRESULT Queue::receive_by_lookup_id(const Lookup& l, const Deliver& deliver, Transaction* tx) {
  check_receive_access(l.take ? Action::Receive : Action::PeekCurrent);
  if (!l.take) tx = nullptr;  // a peek takes nothing
  if (tx != nullptr) check_transactional_receive(*tx);
  transport_->flush();
  if (l.id > static_cast<uint64_t>(INT64_MAX)) {
    throw Error(MQ_ERROR_MESSAGE_NOT_FOUND, "no message with this lookup id");
  }
  const auto id = static_cast<int64_t>(l.id);
  std::optional<transport::StoredMessage> m;
  switch (l.where) {
    case LookupWhere::First:
      m = transport_->first();
      break;
    case LookupWhere::Last:
      m = transport_->last();
      break;
    case LookupWhere::Current:
    case LookupWhere::Next:
    case LookupWhere::Prev: {
      std::optional<transport::StoredMessage> at = transport_->get(id);
      if (!at) {
        throw Error(
            MQ_ERROR_MESSAGE_NOT_FOUND,
            "no message with lookup id " + std::to_string(l.id) + " in queue '" + name_ + "'");
      }
      if (l.where == LookupWhere::Current) {
        m = std::move(at);
      } else if (l.where == LookupWhere::Next) {
        m = transport_->next_after(at->priority, at->seq);
      } else {
        m = transport_->prev_before(at->priority, at->seq);
      }
      break;
    }
  }
  while (m) {
    std::optional<HRESULT> hr = offer(*m, l.take, deliver, tx);
    if (hr) return *hr;
    if (l.where == LookupWhere::Current) break;
    const bool backwards = l.where == LookupWhere::Prev || l.where == LookupWhere::Last;
    m = backwards ? transport_->prev_before(m->priority, m->seq)
                  : transport_->next_after(m->priority, m->seq);
  }
  throw Error(MQ_ERROR_MESSAGE_NOT_FOUND, "no such message in queue '" + name_ + "'");
}

}  // namespace mqsec::core
