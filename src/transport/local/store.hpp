// The local transport's embedded message store (transport/local): queues, messages, rejection
// audit records and the certificate registry (MQRegisterCertificate) in one SQLite 3 database
// (WAL mode) under the configured store directory. Several sender and receiver processes open the
// same directory at once; take_first() hands each message to exactly one receiver across all of
// them. The store knows nothing of cryptography: envelopes are opaque blobs.
#pragma once

#include <mqsec/error.hpp>

#include "src/transport/local/delivery_log.hpp"
#include "src/transport/local/settings_signal.hpp"
#include "src/transport/local/wal_signal.hpp"
#include "src/transport/transport.hpp"

#include <sched.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace mqsec::transport::local {

// The message id of an envelope the store holds, read without verifying it (claimed receives,
// Store::claim_next): true and `id` set when the envelope has one where it belongs. The store
// knows no envelope format; the caller (core) passes security::peek_msg_id. It must be O(1),
// never allocate and never throw: it runs under the store's mutex.
using IdPeek = bool (*)(std::span<const uint8_t> envelope, std::array<uint8_t, 20>& id) noexcept;

// Every method may throw mqsec::Error(MQ_ERROR_MESSAGE_STORAGE_FAILED, "<what> failed: <sqlite
// message>") on a database error, or MQ_ERROR_SERVICE_NOT_AVAILABLE when the database stays
// locked by other processes beyond the busy timeout. Methods are safe to call from many threads
// of one process. A Store must not be used across fork(): open a new one in the child.
class Store {
 public:
  // Creates `dir` (mode 0700) if missing and opens or creates dir/"mqsec.db" (mode 0600
  // regardless of umask; SQLite gives the -wal and -shm files the same mode). A store belongs
  // to one user: the directory (and the database file) must be owned by the calling thread's
  // REAL uid and not be writable by group or others, else Error(MQ_ERROR_ACCESS_DENIED, text
  // naming the owner and how to share queues between users). Files are opened and created
  // with the thread's real uid/gid as file-system ids (an impersonating thread's effective
  // ids are not used), without following symbolic links. A schema v1 to v5 store is migrated to
  // v6 (flock delivery logs); a new store is created at v7 (shared delivery logs; v6 with
  // MQSEC_STORE_CLAIM_LOG=flock), and keeps its version. Throws
  // Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, reason) when the store can't be opened, or its schema is
  // newer than this code understands.
  explicit Store(const std::filesystem::path& dir);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  // What take_over_earlier_holder calls, with the Store, when it took its process's first owner
  // slot (claim_owner.hpp): core/holding.cpp gives back the holding queues an earlier holder of
  // the process's name left.
  // Set once, before any Store opens; must not throw.
  using TakeOverHook = void (*)(Store&) noexcept;
  static void set_take_over_hook(TakeOverHook hook) noexcept;
  // The highest queue id just before this Store took its process's first owner slot
  // (take_over_earlier_holder); 0 when another Store of this process holds that slot or no
  // slot's lock could be taken. Queues named after this process (transactions' holding
  // queues, core/holding.cpp) with an id up to it were made by an earlier holder of the name.
  int64_t queues_before_owner() const noexcept { return queues_before_owner_; }
  // How many delivery records of an earlier holder the constructor applied.
  size_t took_over_for_test() const noexcept { return took_over_; }

  // fork() safety (pthread_atfork handlers of the runtime): hold the connection's lock across
  // the fork so no SQLite call, and none of SQLite's global mutexes, is mid-way in another
  // thread at that moment. The child must still open its own Store.
  // The claimer thread (claim_next) is held too, between claims; the child abandons it (a
  // thread of the parent does not exist there).
  void prepare_fork();
  void parent_after_fork();
  void child_after_fork();
  // In a child of fork(), before it opens another Store of the same database: closes the child's
  // copy of this Store's connection (the parent's stays open). SQLite keeps one record per open
  // database file per process, with the locks its connections hold, and a child inherits the
  // parent's: a connection the child opened on top of it would count the parent's lock as its
  // own and take none, and a process that then closed its last connection (the parent at exit)
  // would checkpoint and delete the WAL under the child, losing what the child committed after
  // that. Not in child_after_fork: that runs inside fork(), where another thread of the parent
  // may have held one of SQLite's global mutexes (the application's own SQLite use), and a
  // child that only execs needs none of it. Stores::store_locked calls it for every Store of
  // an earlier process before it opens the child's. It neither checkpoints nor removes the
  // WAL; it leaves the connection open (leaked) if a transaction was open at the fork. This
  // Store must not be used afterwards; it may only be destroyed.
  void close_in_child() noexcept;

  // Throws MQ_ERROR_QUEUE_EXISTS if a queue of that (case-insensitive) name exists,
  // MQ_ERROR_INVALID_PARAMETER for an empty name or an unknown trust value. Persists every
  // QueueInfo field (trust and signers too), and `security` (when not empty) as its security
  // descriptor, in the same transaction.
  // `owner` non-empty: created only if queue `owner` exists, checked in the same write
  // transaction (a journal never outlives a concurrent delete of its queue), else
  // MQ_ERROR_QUEUE_NOT_FOUND.
  void create_queue(QueueInfo q, std::string_view owner = {},
                    std::span<const uint8_t> security = {});
  // A queue's security descriptor (self-relative bytes, src/security/security_descriptor.hpp):
  // nullopt when none is stored (queues created before schema version 5, the queue manager's
  // own queues). set_ replaces it, in one transaction with a check that the stored descriptor
  // is still `expected` (what the caller read and checked its rights on): false, nothing
  // written, when another change came in between. Throws MQ_ERROR_QUEUE_NOT_FOUND when the
  // queue is gone.
  std::optional<Bytes> queue_security(int64_t queue_id);
  bool set_queue_security(int64_t queue_id, std::span<const uint8_t> security,
                          const std::optional<Bytes>& expected);
  // The queue named q.name, created from `q` when missing; race-safe between processes (a
  // queue another process created meanwhile is returned). For queues the runtime makes on
  // first use (dead-letter queues, journals; `owner` as for create_queue).
  QueueInfo ensure_queue(const QueueInfo& q, std::string_view owner = {});
  // Removes the queue, its messages and its delivered-id records, and its subqueues
  // ("<name>;<sub>") with theirs; and queue `companion` (its journal) with its subqueues, when
  // it exists, in the same transaction. Throws MQ_ERROR_QUEUE_NOT_FOUND (nothing deleted).
  void delete_queue(std::string_view name, std::string_view companion = {});
  std::optional<QueueInfo> find_queue(std::string_view name);
  // Writes what MQSetQueueProperties may change (label, authenticate, journal, quotas, base
  // priority, privacy level, type, multicast address) where q differs from before, the snapshot
  // the caller changed, into queue before.id, and sets its modify time (now when q.modified is
  // 0). Properties q leaves as they were in before keep their current values. Throws
  // MQ_ERROR_QUEUE_NOT_FOUND when queue before.id is gone (even if a queue of that name exists).
  void update_queue(const QueueInfo& before, const QueueInfo& q);
  // PROPID_Q_QUOTA (kilobytes): how many more bytes of envelopes the queue takes now; nullopt
  // when its quota is INFINITE (or the queue is gone). One indexed read, plus a sum over the
  // queue's messages only when the quota is finite.
  std::optional<uint64_t> quota_room(int64_t queue_id);
  // Whether the queue has a finite PROPID_Q_QUOTA (what every send asks first). Remembered per
  // queue and read again only when some process may have changed queue settings since
  // (settings_signal.hpp): a quota another process set is seen by the next call that starts
  // after that process's update_queue returned.
  bool has_quota(int64_t queue_id);
  // How many times has_quota read the store (for tests).
  uint64_t quota_reads() const noexcept { return quota_reads_.load(std::memory_order_relaxed); }
  // MQPurgeQueue: removes every message of the queue (durable on return); their number.
  size_t purge(int64_t queue_id);
  std::vector<QueueInfo> list_queues();  // ordered by name

  // Returns the new message's seq. durable=true: the row is fsynced when this returns;
  // durable=false: it survives a process crash but may be lost on power failure (express).
  // Throws MQ_ERROR_QUEUE_NOT_FOUND if the queue does not exist (any more).
  int64_t append(int64_t queue_id, int priority, std::span<const uint8_t> envelope, bool durable);
  // All or nothing in one transaction (group commit): if one queue is missing, nothing is
  // appended and MQ_ERROR_QUEUE_NOT_FOUND is thrown. Returns the seqs in batch order.
  std::vector<int64_t> append_batch(std::span<const Append> batch, bool durable);

  // Arrival of a message from another machine (the broker delivers at least once): appends it
  // and records msg_id as arrived in queue_id, in one transaction, unless that id already
  // arrived in that queue or was delivered from it: then nothing changes and the result is
  // Duplicate. Arrived ids are kept until their sent_time is more than window_seconds in the
  // past (<= 0: forever), pruned here at most once a minute. durable as for append(). Throws
  // MQ_ERROR_QUEUE_NOT_FOUND (nothing recorded) if the queue does not exist.
  Arrival append_unique(int64_t queue_id, int priority, std::span<const uint8_t> envelope,
                        std::span<const uint8_t> msg_id, int64_t sent_time, int64_t window_seconds,
                        bool durable);
  // The same for many messages in one transaction (one fsync): all or nothing (a missing queue
  // throws and nothing is appended); results in batch order. A message id twice in one batch:
  // the second is a Duplicate.
  std::vector<Arrival> append_unique_batch(std::span<const UniqueAppend> batch,
                                           int64_t window_seconds, bool durable);

  // Receive order: highest priority first, then lowest seq (arrival); rows with a malformed
  // priority column come last (as kMalformedPriority).
  std::optional<StoredMessage> first(int64_t queue_id);
  // The message after (priority, seq) in receive order, for cursors; (priority, seq) need not
  // exist any more.
  std::optional<StoredMessage> next_after(int64_t queue_id, int priority, int64_t seq);
  // The same order backwards (MQReceiveMessageByLookupId's LAST and PREV), one indexed query each.
  std::optional<StoredMessage> last(int64_t queue_id);
  std::optional<StoredMessage> prev_before(int64_t queue_id, int priority, int64_t seq);
  std::optional<StoredMessage> get(int64_t queue_id, int64_t seq);
  // The expiry sweep (core/expiry_sweep.hpp): message `seq` in whatever queue holds it now (a
  // move keeps the seq), and up to `limit` messages of every queue with a seq above `after_seq`,
  // in seq order (seqs are never reused).
  std::optional<StoredMessage> get_any(int64_t seq);
  std::vector<StoredMessage> scan_after(int64_t after_seq, size_t limit);
  // The name of queue `queue_id`, whatever its kind (list_queues leaves subqueues out).
  std::optional<std::string> queue_name(int64_t queue_id);
  // True only for the one caller (in any process) that actually deleted the message.
  bool remove(int64_t queue_id, int64_t seq);
  // Moves message `seq` of queue queue_id into queue to_queue_id (MQMoveMessage between a queue
  // and its subqueues; an expired message into a dead-letter queue), keeping its seq (its
  // lookup id), priority, arrival time and envelope: one durable transaction, so it is in
  // exactly one of the two queues whatever happens. True only for the one caller that moved
  // it; false (nothing changed) when queue_id holds no such message or to_queue_id is gone.
  bool move_message(int64_t queue_id, int64_t seq, int64_t to_queue_id);
  // Deletes several messages of one queue in one transaction (the forwarder, after the broker
  // accepted them); seqs already gone are skipped. Returns how many this caller deleted.
  size_t remove_many(int64_t queue_id, std::span<const int64_t> seqs);
  // Delivery of a message: deletes it and records msg_id as delivered from queue_id in one
  // transaction (exactly one caller across all processes gets Removed or Replay for a row).
  // Replay: the id was already delivered from this queue (the row is deleted all the same).
  // Delivered ids are kept until their sent_time is more than window_seconds in the past
  // (window_seconds <= 0: kept forever); older ones are pruned here.
  // journal_queue_id != 0: the row is moved into that queue (a journal) instead of deleted, in
  // the same transaction.
  Removal remove_delivered(int64_t queue_id, int64_t seq, std::span<const uint8_t> msg_id,
                           int64_t sent_time, int64_t window_seconds, int64_t journal_queue_id = 0);
  // Transactions' holding queues (core/holding.hpp): a message a transaction received or moved
  // waits in one (moved there with remove_delivered or move_message) until settle() ends it.
  struct Settle {
    int64_t from_queue_id = 0;  // the holding queue
    int64_t seq = 0;
    int64_t to_queue_id = 0;  // where it goes (its queue, a journal, a target); 0: deleted
    std::span<const uint8_t> forget_id;  // non-empty: forget its delivered-id record in to_queue_id
  };
  // In one durable transaction: appends `sends` (a missing queue throws
  // MQ_ERROR_QUEUE_NOT_FOUND and nothing changes), applies each Settle whose message is still in
  // its from_queue_id and whose to_queue_id exists (so a later Settle of the same message is a
  // fallback), then deletes those of the queues `drop` that are empty by then. Returns how many
  // messages it moved (deletions not counted).
  size_t settle(std::span<const Append> sends, std::span<const Settle> moves,
                std::span<const int64_t> drop);
  // The queues whose names start with `prefix` (an indexed range read): (id, name).
  std::vector<std::pair<int64_t, std::string>> queues_with_prefix(std::string_view prefix);
  // Whether msg_id was delivered from queue_id (and not pruned yet): for peeks.
  bool was_delivered(int64_t queue_id, std::span<const uint8_t> msg_id);
  // Atomic select + delete of the first message: exactly one caller across all processes gets
  // each message. The delete is committed with synchronous=NORMAL: it survives a process crash;
  // after a power failure the message may reappear (it is never lost).
  std::optional<StoredMessage> take_first(int64_t queue_id);
  size_t message_count(int64_t queue_id);
  // The stored size of the queue's messages (their envelopes), in bytes.
  uint64_t message_bytes(int64_t queue_id);

  // A number that changes whenever any connection (this one or another process's) commits.
  uint64_t version();
  // Polls version() with short sleeps (1..20 ms backoff) until it differs from `seen`.
  // Returns false on timeout.
  bool wait_for_change(uint64_t seen, std::chrono::milliseconds timeout);

  // Audit record of a message that failed verification; durable when this returns. Keeps at
  // most bounds.body_prefix bytes of the envelope (and its original size), and prunes the
  // oldest records of the store beyond bounds' count, bytes and age in the same transaction.
  void record_rejection(std::string_view queue, std::string_view kind, std::string_view reason,
                        std::span<const uint8_t> envelope, const RejectionBounds& bounds = {});
  std::vector<Rejection> rejections(std::string_view queue);  // oldest first

  // Certificate registry: binds a certificate (by the SHA-256 of its DER) to a SID. Durable
  // when this returns. Binding it again to the same SID is idempotent; a certificate bound to
  // another SID is never rebound: Error(MQ_ERROR_INVALID_CERTIFICATE, "... is already
  // registered to another SID ...") and nothing changes.
  // Throws MQ_ERROR_INVALID_PARAMETER unless cert_sha256 is 32 bytes.
  void bind_certificate(std::span<const uint8_t> cert_sha256, std::span<const uint8_t> cert_der,
                        std::span<const uint8_t> sid, uint32_t registered_by_uid);
  std::optional<Bytes> certificate_sid(std::span<const uint8_t> cert_sha256);

  // Claimed receives (issue 14; delivery_log.hpp, docs/performance.md "Claimed receives"): the
  // plain receive path of a non-transactional local queue. claim_next() returns the next
  // message this process claimed (claiming up to `batch` more, for `lease`, in one write
  // transaction when it holds none: that transaction also deletes what this process delivered
  // since the last one, and releases the claims of dead owners and of owners whose lease ran
  // out, after applying their delivery logs). nullopt: no unclaimed message.
  // `peek` (may be null) reads the ids of the claimed messages: with them the claim transaction
  // answers each one's claim check itself (claim_answers()), and deliver_claimed can check
  // several claimed messages in one read transaction, and deliver without reading while nothing
  // is committed (docs/design/claim-check.md, receive-store.md §2.1 A1). Without it every
  // delivery reads.
  // `ahead`: claim ahead (below) for this queue; the runtime's receive path asks for it.
  // A queue drained by its last claim (it found fewer unclaimed messages than its batch) is not
  // claimed again while nothing was committed since (the WAL-index header it published is still
  // the current one) and for at most 50 ms: nullopt at once, no transaction. Every commit ends
  // that: a message sent, claims released or overtaken. What comes back without a commit (the
  // claims of an owner that died or whose lease ran out) is claimed at most 50 ms later than
  // it would be otherwise. This process's deliveries made until then are deleted in the
  // background by the store's claimer thread (the transaction the caller skipped would have
  // deleted them); without that thread (MQSEC_CLAIM_AHEAD=0), or when it cannot start, the
  // caller claims (and deletes them) as before.
  std::optional<StoredMessage> claim_next(int64_t queue_id, size_t batch,
                                          std::chrono::milliseconds lease, IdPeek peek = nullptr,
                                          bool ahead = false);
  // Claiming ahead (claim_next with `ahead`): when a handed-out message leaves a batch or less
  // of the queue's claimed messages, and the queue's last claim filled its batch, and there are
  // unclaimed messages, the next batch is claimed by a thread of the store's own (started on
  // first use) while the caller goes on, so that a receiving thread seldom waits for a claim
  // transaction. It is done when the process may run on two CPUs or more (the claim runs on
  // another one), and on one CPU only while several threads of this process receive from the
  // queue (two of them took messages since its last claim). release_claims() cancels a claim
  // ahead not yet begun. MQSEC_CLAIM_AHEAD, read when the Store is opened: 0 switches it off
  // (every claim in the caller's thread, when its claimed messages ran out), 1 claims ahead for
  // one thread whatever the CPUs, `several` only for several threads.
  bool claim_ahead() const noexcept { return claim_ahead_; }
  // How many claims the claimer thread made, counted once each batch is filed (for tests).
  uint64_t claims_ahead() const noexcept { return claims_ahead_.load(std::memory_order_acquire); }
  // How many of them a receiving thread made itself (several receiving threads; for tests).
  uint64_t claims_inline() const noexcept { return claims_inline_.load(std::memory_order_acquire); }
  // How many claim checks a claim transaction kept from the answers before it rather than read
  // again (claim_batch_locked; for tests).
  uint64_t answers_carried() const noexcept {
    return answers_carried_.load(std::memory_order_relaxed);
  }
  // How many claim_next calls answered "no unclaimed message" from the queue's last claim,
  // without a transaction (for tests; claim_next).
  uint64_t drained_answers() const noexcept {
    return drained_answers_.load(std::memory_order_relaxed);
  }
  // For tests: how long that answer holds (50 ms). Not thread-safe: set it while no claim runs.
  void set_drained_for_for_test(std::chrono::milliseconds d) { drained_for_ = d; }
  // A claimed message claim_next() returned that was not delivered (the caller's buffers were
  // too small): the next claim_next() returns it again.
  void unclaim(StoredMessage m);
  // For a claimed message that leaves the receive another way than deliver_claimed (the
  // caller's buffers are too small, it goes to a journal): true when an unclaimed message of
  // higher priority arrived after the claim; then, as in deliver_claimed, this process's claims
  // on the queue are released, this one's too, and the next claim_next() claims again.
  bool overtaken(int64_t queue_id, int64_t seq);
  // Delivery of a claimed message: Removed when this process still holds its claim (then it is
  // recorded in the delivery log, and deleted with its id recorded as delivered in a later
  // batch); Gone when the claim was lost (the message was purged, deleted, or its claim
  // released after the lease); Replay (the row deleted now) when its id was already delivered
  // from this queue: recorded in the store, or by this process and not yet recorded. (The
  // claimed receive's only replay check: one read transaction with the claim check.) Gone too,
  // nothing delivered, when an unclaimed message of higher priority than this one arrived
  // after the claim: then this process's claims on the queue are released, this one's too, and
  // the next claim_next() claims again, the higher one first (receive order, checked in the
  // same read transaction).
  // That read transaction is skipped when its three answers for this message (and for
  // msg_id, which must be the id claim_next's peek read) were given by the claim transaction or
  // read in an earlier one, and no connection of any process committed anything since: the
  // store's WAL-index header (wal_signal.hpp) is unchanged, compared under the delivery log's
  // lock. The answers are then what the read would give. MQSEC_CLAIM_FASTPATH=0 in the environment
  // when the Store is opened switches that off (a test and diagnostic switch: every delivery
  // reads).
  Removal deliver_claimed(int64_t queue_id, int64_t seq, std::span<const uint8_t> msg_id,
                          int64_t sent_time, int64_t window_seconds);
  // Deletes what this process delivered and releases its other claims on the queue (the
  // queue is closed). Every other method on a queue first does the deleting part, so that
  // this process never sees a message it already returned.
  void release_claims(int64_t queue_id);
  const std::string& claim_owner() const noexcept { return owner_; }
  // The kind of this store's delivery logs (fixed by its schema version).
  DeliveryLogKind delivery_log_kind() const noexcept { return log_kind_; }
  // How many read transactions deliver_claimed made (for tests).
  uint64_t deliver_reads() const noexcept { return deliver_reads_.load(std::memory_order_relaxed); }
  // How many claim checks (claim_held statements) those reads ran, for this message and the
  // next ones (for tests).
  uint64_t deliver_checks() const noexcept {
    return deliver_checks_.load(std::memory_order_relaxed);
  }
  // Whether deliver_claimed may skip its read (the WAL-index header is mapped, and the switch
  // is not off).
  bool claim_fast_path() const noexcept { return wal_ && wal_->on(); }
  // Whether a claim transaction answers the claim checks of the messages it claims (and whose
  // ids it peeked), anchored by its own commit: then a quiet store's deliveries make no read at
  // all. MQSEC_CLAIM_ANSWERS=0 when the Store is opened switches that part off (deliveries are
  // answered by validation reads only, as before); MQSEC_CLAIM_FASTPATH=0 switches both off.
  bool claim_answers() const noexcept { return claim_fast_path() && claim_answers_; }
  // For tests: runs in claim_batch_locked right after its commit, before the header that
  // anchors the claim's answers is read, to commit something exactly then. Not thread-safe:
  // set it while no claim runs.
  void set_claim_commit_hook_for_test(std::function<void()> hook) {
    claim_commit_hook_ = std::move(hook);
  }
  // For tests: runs inside deliver_claimed's validation read, once its snapshot is taken
  // (after this message's claim check, before the next ones'), to commit something exactly
  // then. Not thread-safe: set it while no delivery runs.
  void set_validation_hook_for_test(std::function<void()> hook) {
    validation_hook_ = std::move(hook);
  }

 private:
  // Finalizes the statements and closes the connection (as the file system's real ids); db_ is
  // null after it. The destructor's and close_in_child's.
  void close_connection() noexcept;
  struct Statements;
  class Tx;

  sqlite3_stmt* prepare(const char* sql, const char* what = "preparing statement");
  void exec(const char* sql, const char* what);
  void step_done(sqlite3_stmt* st, const char* what);
  // Steps a read statement: true on a row, false at the end; fails on an error.
  bool step_row(sqlite3_stmt* st, const char* what);
  [[noreturn]] void fail(int rc, const char* what);
  void set_durable(bool durable);
  int64_t append_locked(int64_t queue_id, int priority, std::span<const uint8_t> envelope,
                        int64_t now);
  std::optional<StoredMessage> read_message(sqlite3_stmt* st, const char* what);
  // One step of a walk (first, next_after, last, prev_before): statement `which` takes the
  // queue id and, for a step from a message, its priority and seq.
  std::optional<StoredMessage> walk(sqlite3_stmt* Statements::*which, int64_t queue_id,
                                    std::optional<std::pair<int, int64_t>> from, const char* what);
  void read_signers(QueueInfo& q);
  void migrate_locked(int64_t from_version);
  void write_security_locked(int64_t queue_id, std::span<const uint8_t> security);
  Arrival append_unique_locked(const UniqueAppend& a, int64_t now);
  // Steps a write statement to its end; returns how many rows it changed.
  int step_changes(sqlite3_stmt* st, const char* what);
  bool remove_locked(int64_t queue_id, int64_t seq, const char* what);
  // PROPID_Q_QUOTA in kilobytes; nullopt when INFINITE or the queue is gone. Under mu_.
  std::optional<int64_t> quota_locked(int64_t queue_id);
  // Records (queue_id, msg_id, sent_time) with `st` (insert_delivered or insert_arrived); false
  // when the statement recorded nothing (the id is known).
  bool record_id_locked(sqlite3_stmt* st, int64_t queue_id, std::span<const uint8_t> msg_id,
                        int64_t sent_time, const char* what);
  // Forgets ids older than the window with `st` (prune_delivered or prune_arrived), at most once
  // a minute per connection (`last` is when it last did).
  void prune_ids_locked(sqlite3_stmt* st, int64_t window_seconds, int64_t now, int64_t& last,
                        const char* what);
  // Runs each(item, now) for every item of `batch` in one write transaction, then after(now);
  // their results in order.
  template <class In, class Each, class After>
  auto write_batch(std::span<const In> batch, bool durable, Each each, After after);

  // Two locks, always taken in this order: mu_ for the connection (db_, st_ and every field up to
  // the claimed receives' state), dmu_ for the claimed receives' state in memory (ready_,
  // pending_, pending_window_, log_ and what is appended to it, claimed_ids_, windows_). A
  // delivery that needs no read and a claimed message handed out take dmu_ alone, so they go on
  // while another thread's claim transaction holds the connection.
  std::mutex mu_;
  std::mutex dmu_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Statements> st_;
  uint64_t own_commits_ = 0;        // data_version does not count this connection's own commits
  int64_t last_prune_ = 0;          // when remove_delivered last pruned old delivered ids
  int64_t last_arrived_prune_ = 0;  // when append_unique last pruned old arrived ids
  // The busy handler's state, under mu_: when its current wait began, and whether this
  // transaction gives up at once instead (an inline claim ahead, claim_ahead_now).
  struct BusyWait {
    std::chrono::steady_clock::time_point since;
    bool no_wait = false;
  };
  BusyWait busy_;
  static int busy_handler(void* arg, int count);  // arg: the BusyWait

  // Claimed receives (claim_next), under dmu_.
  // Held inline (an id the log can hold, kMaxLoggedIdSize at most): the claim transaction copies
  // pending_ under dmu_, which the receiving threads' deliveries wait for, and an entry that
  // owned heap bytes made that copy one allocation per entry (docs/performance.md, session 30).
  struct PendingDelivery {
    int64_t queue_id = 0;
    int64_t seq = 0;
    int64_t sent_time = 0;
    // A hash of the id: deliver_claimed's copy check compares it before the bytes (an MSMQ
    // id's first 16 bytes are the same for every message of a sender).
    uint64_t id_key = 0;
    uint8_t id_size = 0;
    static_assert(kMaxLoggedIdSize <= UINT8_MAX, "id_size holds an id's length");
    std::array<uint8_t, kMaxLoggedIdSize> id_bytes{};
    std::span<const uint8_t> msg_id() const noexcept { return {id_bytes.data(), id_size}; }
  };
  // Deletes the given deliveries (pending_ or a copy of it) inside the caller's write
  // transaction, and prunes delivered ids older than `window_seconds`.
  void apply_deliveries_locked(const std::vector<PendingDelivery>& deliveries,
                               int64_t window_seconds);
  // Under mu_, outside a transaction: applies the deliveries pending now (if any) in one
  // transaction and drops their records from the log, with dmu_ only around taking and dropping
  // them (deliveries go on meanwhile and stay pending, as in claim_batch_locked). Also the
  // claimer's work when a drained queue's receive skipped its claim transaction (claim_next).
  void apply_pending_locked();
  // Under dmu_, once what left pending_ was applied: this process's log keeps the records of
  // pending_ alone.
  void drop_applied_records_locked();
  // Inside the claim transaction, once per Store (its first claim): removes the delivery logs
  // of dead owners that hold no claim (processes that exited after applying their log and
  // releasing their claims leave it behind; nobody would read it again).
  void sweep_unused_logs_locked();
  // Inside the claim transaction, before anything else: our log must still be the file at its
  // path. A recoverer that took this Store for dead (an older mqsec reads a slotted owner
  // string as a dead owner's) applies the log, releases our claims, commits and then removes
  // the log, all under the log's lock; claims we committed after that would have their
  // deliveries recorded where no recoverer looks. Checked under the log's lock (a remover holds
  // it until its unlink) and inside our transaction (no recovery commits before ours): a log
  // gone is replaced by a new one.
  void keep_log_named_locked();
  // A log whose lock this thread holds, unlocked when it goes (whatever throws in between: a
  // shared log's lock is not released by closing it, and a lock kept would leave its owner's
  // claims unrecovered for as long as this process lives).
  struct HeldLog {
    std::unique_ptr<DeliveryLog> log;
    bool dead = false;
    bool locked = true;  // false: a log of an earlier boot, read without its lock
    HeldLog(std::unique_ptr<DeliveryLog> l, bool d, bool k) noexcept
        : log(std::move(l)), dead(d), locked(k) {}
    HeldLog(HeldLog&&) noexcept = default;
    HeldLog& operator=(HeldLog&&) = delete;
    ~HeldLog() {
      if (log && locked) log->unlock();
    }
  };
  // Inside the claim transaction: applies the logs of queue_id's claim owners that are dead
  // or whose lease ran out and drops their claims; the logs stay locked (in `held`) until the
  // caller committed. Returns whether it changed anything (applied a log or released a claim).
  bool recover_owners_locked(int64_t queue_id, int64_t now_ms, std::vector<HeldLog>& held);
  // At the end of the constructor: takes this Store's owner slot (claim_owner.hpp: the first
  // free one of this process, locked in <store>/claims/owners.lock for our life; another Store of
  // this process, another copy of the library or another spelling of the path, takes another
  // slot and so another string) and so its owner string. An owner string (pid, start tick since
  // boot, slot) recurs, in a later boot (a service started in the same order each boot), across
  // an exec (pid and start tick stay), in a later Store of this process. What an earlier holder
  // left under it (claims, delivery-log records; for slot 0 also transactions' holding queues,
  // core/holding.cpp) looks alive, since we are, and recover_owners_locked skips our own
  // string: it stayed held while we ran. So, before it claims anything, the Store applies the
  // earlier holder's log and releases its claims (durably), then empties the log; the hook
  // (set_take_over_hook) gives back holding queues (slot 0 only). A log
  // made in an earlier boot is read without its lock (DeliveryLog::read_salvage) and removed;
  // another it cannot lock within a second or read is moved aside (<log>.unusable) unapplied,
  // its claims held while we run, as before; one it can neither empty nor move makes the store
  // unavailable.
  void take_over_earlier_holder();
  // Under mu_ only: the claim transaction runs while other threads deliver (dmu_ is taken twice,
  // briefly: for a copy of pending_ before, to file the batch after). How many it claimed.
  size_t claim_batch_locked(int64_t queue_id, size_t batch, std::chrono::milliseconds lease,
                            IdPeek peek);
  // Under mu_ (takes dmu_): releases the claims of the queue's ready_ messages, and `also`.
  void release_ready_locked(int64_t queue_id, std::optional<int64_t> also = std::nullopt);
  // deliver_claimed's read, under mu_, dmu_ and the log's lock: the claim check of message `seq`
  // with the verified msg_id, and the same with the peeked ids of the next claimed messages of the
  // queue, in one read transaction; those are kept (claimed_ids_) with the header that anchors
  // them when no commit came in between. The claim check's outcome for `seq`.
  enum class ClaimCheck { Deliver, Lost, Replayed, Preempted };
  // Under mu_: one claim check (the claim_held statement) of message `seq` with id `id`: whether
  // this process holds its claim (and the row exists), whether `id` was delivered from the queue,
  // whether an unclaimed message of higher priority is there.
  struct ClaimedId;
  void answer_claim_locked(int64_t queue_id, int64_t seq, std::span<const uint8_t> id,
                           ClaimedId& out);
  // `priority`: the message's sanitized priority as its claim read it, when known (the check
  // then reads messages_order instead of the message's row: kClaimHeldAt in store.cpp).
  ClaimCheck validate_locked(int64_t queue_id, int64_t seq, std::span<const uint8_t> msg_id,
                             std::optional<int> priority);
  // Under dmu_: forgets the peeked ids and anchored answers of one queue's claimed messages (all
  // queues: nullopt). Memory only: a stale answer can never pass, its header is gone.
  void forget_claimed_locked(std::optional<int64_t> queue_id);
  // Whether msg_id is recorded as delivered from the queue (the `delivered` table only).
  bool recorded_locked(int64_t queue_id, std::span<const uint8_t> msg_id);
  // Deletes message `seq` (and its claim) when `owner` claims it, recording msg_id as delivered.
  void apply_delivery_locked(const std::string& owner, int64_t queue_id, int64_t seq,
                             std::span<const uint8_t> msg_id, int64_t sent_time);

  // has_quota's memory (settings_signal.hpp): what it read under generation quota_gen_, per
  // queue. Under quota_mu_, never held while taking mu_.
  std::unique_ptr<SettingsSignal> settings_;
  std::mutex quota_mu_;
  uint64_t quota_gen_ = 0;
  std::vector<std::pair<int64_t, bool>> quota_known_;
  std::atomic<uint64_t> quota_reads_{0};

  std::filesystem::path dir_;
  std::string owner_;  // this Store as a claim owner (claim_owner.hpp; set by the constructor)
  DeliveryLogKind log_kind_ = DeliveryLogKind::Flock;  // set by the constructor
  std::unique_ptr<DeliveryLog> log_;
  bool sweep_logs_ = false;  // under mu_ and dmu_: the next claim transaction sweeps (log_ is new)
  int owner_fd_ = -1;        // owners.lock, our slot's lock held on it for our life; -1: none
  int64_t queues_before_owner_ = 0;                     // see queues_before_owner()
  size_t took_over_ = 0;                                // see took_over_for_test()
  std::map<int64_t, std::deque<StoredMessage>> ready_;  // claimed, not yet returned, per queue
  std::vector<PendingDelivery> pending_;                // returned, not yet deleted (all queues)
  int64_t pending_window_ = 0;

  // deliver_claimed's fast path (docs/design/claim-check.md), under dmu_. Per claimed message
  // (seqs are unique across queues): its peeked id, and once a validation read answered the
  // claim check for it, the three answers and the header they hold under.
  struct ClaimedId {
    int64_t queue_id = 0;
    std::array<uint8_t, 20> id{};
    std::optional<int> priority;  // the message's sanitized priority, as its claim read it
    std::optional<WalSignal::Header> mark;  // set: held/delivered/overtaken answered under it
    bool held = false;
    bool delivered = false;
    bool overtaken = false;
  };
  std::unordered_map<int64_t, ClaimedId> claimed_ids_;
  // How many messages a validation read answers for (this one and size - 1 next ones), per
  // queue: it doubles while their answers get used and falls to 1 (today's single read) when
  // two in a row were not; back to the start when a header was seen to outlive a validation
  // at 1.
  struct Window {
    size_t size = 16;
    size_t made = 0;                        // answers the last validation kept for later deliveries
    size_t used = 0;                        // of those, how many a delivery used
    int lost = 0;                           // validations in a row whose kept answers none used
    std::optional<WalSignal::Header> last;  // the last validation's anchor
  };
  std::map<int64_t, Window> windows_;
  // Claiming ahead, per queue (under dmu_): whether its last claim filled its batch, whether a
  // claim ahead is asked for or running, and a generation that release_claims() moves on (a
  // claim ahead asked for before it is not made).
  struct AheadState {
    bool full = false;
    bool asked = false;
    uint64_t generation = 0;
    std::thread::id last;  // the thread the last message was handed to
    bool several = false;  // another thread took one since the queue's last claim
    // The WAL-index header a claim of the queue published when it found no unclaimed message
    // left (fewer than its batch, not for the bytes limit), and when (steady clock): until
    // another commit, or drained_for_, a claim_next that has nothing claimed answers "none"
    // without a transaction (claim_next).
    std::optional<WalSignal::Header> drained;
    std::chrono::steady_clock::time_point drained_at;
  };
  std::map<int64_t, AheadState> ahead_;
  struct AheadRequest {
    int64_t queue_id = 0;
    size_t batch = 0;
    std::chrono::milliseconds lease{0};
    IdPeek peek = nullptr;
    uint64_t generation = 0;
    // Not a claim: apply what this process delivered (apply_pending_locked).
    bool apply_only = false;
  };
  // The claimer thread and what it is asked (its own lock amu_, taken last: after mu_ and dmu_).
  // Allocated, so that a forked child can abandon it (fork_leftovers.hpp).
  struct Claimer;
  Claimer* claimer_ = nullptr;
  bool claim_ahead_ = true;
  bool claim_ahead_one_ = false;  // for one receiving thread too (several CPUs, or =1)
  // With several receiving threads, the one that finds a batch or less left claims ahead itself
  // (claim_next) instead of waking the claimer thread; MQSEC_CLAIM_INLINE=0 switches it off.
  bool claim_inline_ = true;
  std::atomic<uint64_t> claims_inline_{0};
  cpu_set_t open_cpus_{};  // the CPUs of the thread that opened the store
  std::atomic<uint64_t> claims_ahead_{0};
  std::atomic<uint64_t> answers_carried_{0};
  std::atomic<uint64_t> drained_answers_{0};
  // How long a claim that drained its queue answers "none" for it without a transaction while
  // nothing is committed (claim_next): the longest a dead or expired owner's claim waits longer
  // than it would for a transaction that recovers it.
  std::chrono::milliseconds drained_for_{50};
  // Under dmu_: whether the queue's last claim found it drained and nothing was committed since,
  // within drained_for_ of that claim (claim_next).
  bool drained_locked(int64_t queue_id) const noexcept;
  // Under dmu_: files a claim of the queue for the claimer thread (starting it if needed); true
  // when filed. The caller then wakes it with wake_claimer(), holding neither mu_ nor dmu_;
  // `alone`: only the calling thread receives from the queue (the claimer is kept off its CPU).
  // MQSEC_CLAIM_STEER=0 leaves the claimer's CPUs alone (for A/B measurements).
  bool ask_claim_ahead_locked(const AheadRequest& r) noexcept;
  // Under dmu_: files `r` for the claimer thread, starting it if needed; false when it cannot
  // (out of resources).
  bool ask_claimer_locked(const AheadRequest& r) noexcept;
  // Under dmu_: an apply_only request is filed and not done yet.
  bool apply_asked_ = false;
  void wake_claimer(bool alone) noexcept;
  void run_claimer();
  // Makes the claim ahead `r` asked for, unless release_claims() or a receiving thread's own
  // claim came first; then lets the queue ask again. Holds neither mu_ nor dmu_ when called.
  // The claimer thread waits for the connection and SQLite's write lock as any claim does;
  // a receiving thread (`inline_claim`, claim_inline_) does not: when either is taken, or the
  // claim fails, it files the claim for the claimer thread instead and goes on with its message.
  void claim_ahead_now(const AheadRequest& r, bool inline_claim) noexcept;
  std::unique_ptr<WalSignal> wal_;
  std::atomic<uint64_t> deliver_reads_{0};
  std::atomic<uint64_t> deliver_checks_{0};
  std::function<void()> validation_hook_;
  bool claim_answers_ = true;
  std::function<void()> claim_commit_hook_;
  // The WAL hook (sqlite3_wal_hook): records the frame count each commit of this connection
  // left (last_commit_frames_, under mu_; -1 before a claim's commit) and checkpoints like
  // PRAGMA wal_autocheckpoint.
  static int wal_committed(void* self, sqlite3* db, const char* name, int frames);
  int last_commit_frames_ = -1;
};

}  // namespace mqsec::transport::local
