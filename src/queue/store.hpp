// The embedded message store: queues, messages, rejection audit records and the certificate
// registry (MQRegisterCertificate) in one SQLite 3 database (WAL mode) under the configured
// store directory. Several sender and receiver processes open the same directory at once;
// take_first() hands each message to exactly one receiver across all of them.
// The store knows nothing of cryptography: envelopes are opaque blobs.
#pragma once

#include <mqsec/error.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace mqsec::queue {

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
};

struct StoredMessage {
  int64_t queue_id = 0;
  int64_t seq = 0;  // unique across the store, increasing, never reused
  int priority = 0;
  int64_t arrived = 0;  // Unix seconds
  Bytes envelope;
};

struct Rejection {
  int64_t id = 0;
  std::string queue;  // lower-cased like queue names
  int64_t time = 0;   // Unix seconds
  std::string reason;
  Bytes envelope;
};

struct Append {
  int64_t queue_id;
  int priority;
  Bytes envelope;
};

// Every method may throw mqsec::Error(MQ_ERROR_MESSAGE_STORAGE_FAILED, "<what> failed: <sqlite
// message>") on a database error, or MQ_ERROR_SERVICE_NOT_AVAILABLE when the database stays
// locked by other processes beyond the busy timeout. Methods are safe to call from many threads
// of one process. A Store must not be used across fork(): open a new one in the child.
class Store {
 public:
  // Creates `dir` (mode 0700) if missing and opens or creates dir/"mqsec.db" (mode 0600
  // regardless of umask; SQLite gives the -wal and -shm files the same mode).
  // Throws Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, reason) when the store can't be opened, or its
  // schema is newer than this code understands.
  explicit Store(const std::filesystem::path& dir);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Throws MQ_ERROR_QUEUE_EXISTS if a queue of that (case-insensitive) name exists,
  // MQ_ERROR_INVALID_PARAMETER for an empty name.
  // fork() safety (pthread_atfork handlers of the runtime): hold the connection's lock across
  // the fork so no SQLite call, and none of SQLite's global mutexes, is mid-way in another
  // thread at that moment. The child must still open its own Store.
  void prepare_fork() { mu_.lock(); }
  void after_fork() { mu_.unlock(); }

  void create_queue(QueueInfo q);
  // Removes the queue and its messages. Throws MQ_ERROR_QUEUE_NOT_FOUND.
  void delete_queue(std::string_view name);
  std::optional<QueueInfo> find_queue(std::string_view name);
  std::vector<QueueInfo> list_queues();  // ordered by name

  // Returns the new message's seq. durable=true: the row is fsynced when this returns;
  // durable=false: it survives a process crash but may be lost on power failure (express).
  // Throws MQ_ERROR_QUEUE_NOT_FOUND if the queue does not exist (any more).
  int64_t append(int64_t queue_id, int priority, std::span<const uint8_t> envelope, bool durable);
  // All or nothing in one transaction (group commit): if one queue is missing, nothing is
  // appended and MQ_ERROR_QUEUE_NOT_FOUND is thrown. Returns the seqs in batch order.
  std::vector<int64_t> append_batch(std::span<const Append> batch, bool durable);

  // Receive order: highest priority first, then lowest seq (arrival).
  std::optional<StoredMessage> first(int64_t queue_id);
  // The message after (priority, seq) in receive order, for cursors; (priority, seq) need not
  // exist any more.
  std::optional<StoredMessage> next_after(int64_t queue_id, int priority, int64_t seq);
  std::optional<StoredMessage> get(int64_t queue_id, int64_t seq);
  // True only for the one caller (in any process) that actually deleted the message.
  bool remove(int64_t queue_id, int64_t seq);
  // Atomic select + delete of the first message: exactly one caller across all processes gets
  // each message. The delete is committed with synchronous=NORMAL: it survives a process crash;
  // after a power failure the message may reappear (it is never lost).
  std::optional<StoredMessage> take_first(int64_t queue_id);
  size_t message_count(int64_t queue_id);

  // A number that changes whenever any connection (this one or another process's) commits.
  uint64_t version();
  // Polls version() with short sleeps (1..20 ms backoff) until it differs from `seen`.
  // Returns false on timeout.
  bool wait_for_change(uint64_t seen, std::chrono::milliseconds timeout);

  // Audit record of a message that failed verification; durable when this returns.
  void record_rejection(std::string_view queue, std::string_view reason,
                        std::span<const uint8_t> envelope);
  std::vector<Rejection> rejections(std::string_view queue);  // oldest first

  // Certificate registry: binds a certificate (by the SHA-256 of its DER) to a SID, replacing
  // an existing binding of the same certificate. Durable when this returns.
  // Throws MQ_ERROR_INVALID_PARAMETER unless cert_sha256 is 32 bytes.
  void bind_certificate(std::span<const uint8_t> cert_sha256, std::span<const uint8_t> cert_der,
                        std::span<const uint8_t> sid, uint32_t registered_by_uid);
  std::optional<Bytes> certificate_sid(std::span<const uint8_t> cert_sha256);

 private:
  struct Statements;
  class Tx;

  sqlite3_stmt* prepare(const char* sql, const char* what = "preparing statement");
  void exec(const char* sql, const char* what);
  void step_done(sqlite3_stmt* st, const char* what);
  [[noreturn]] void fail(int rc, const char* what);
  void set_durable(bool durable);
  int64_t append_locked(int64_t queue_id, int priority, std::span<const uint8_t> envelope,
                        int64_t now);
  std::optional<StoredMessage> read_message(sqlite3_stmt* st, const char* what);

  std::mutex mu_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Statements> st_;
  uint64_t own_commits_ = 0;  // data_version does not count this connection's own commits
};

}  // namespace mqsec::queue
