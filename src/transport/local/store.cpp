// The local transport's embedded message store on SQLite 3 in WAL mode. See store.hpp for the
// contract.
//
// Concurrency design:
// - Within a process, one mutex guards the connection and its cached prepared statements.
// - Across processes, every write runs in BEGIN IMMEDIATE, which takes SQLite's single writer
//   lock up front. That makes take_first()'s select+delete atomic against every other
//   connection, and it avoids SQLITE_BUSY_SNAPSHOT (a deferred read transaction that later
//   tries to write cannot be retried by the busy handler). Lock waits go through the busy
//   timeout; readers never block in WAL mode.
// - seq and queue ids come from AUTOINCREMENT, so they are never reused: a stale cursor or a
//   cached id of a deleted queue can never address a newer message or queue.
#include "src/transport/local/store.hpp"

#include "pkcs11/fork_leftovers.hpp"
#include "src/transport/local/real_ids.hpp"
#include "src/transport/local/wal_vfs.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace mqsec::transport::local {

namespace {

// v1: queues, messages, rejections, certificates. v2 (issue 9): queues.trust, queue_signers,
// delivered (replay protection), rejections.kind and original_size, and receive order on a
// sanitized priority. v3 (issue 10): arrived (message ids that arrived from other machines, per
// queue, for removing the broker's duplicates). v4 (issue 13): MSMQ's other queue properties
// (journal, quotas, base priority, privacy level, type, multicast address, modify time).
// v5 (issue 13): queue_security. v6 (issue 14): claims (claimed receives, delivery_log.hpp),
// with flock delivery logs; stores migrated from 1-5 stop here. v7 (issue 14): the same tables
// with shared delivery logs (shared_delivery_log.hpp): only stores created at 7 are, so that no
// process of a store ever meets the other kind's protocol, and a v6 binary refuses a v7 store.
constexpr int kSchemaVersion = 7;
constexpr int kFlockLogSchema = 6;

// The CPUs the calling thread may run on (its affinity mask; all of them if it cannot be read).
cpu_set_t usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) {
    CPU_ZERO(&set);
    CPU_SET(0, &set);
  }
  return set;
}

// Milliseconds since the epoch: claim leases (compared between processes).
int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The priority receive order and cursors use: the column when it is an integer 0..7, else
// kMalformedPriority (-1). One expression everywhere (and in the index), so that (priority,
// seq) is a strict total order a cursor walks without ever coming back.
#define MQSEC_PRIO                                                                              \
  "(CASE WHEN typeof(priority) = 'integer' AND priority BETWEEN 0 AND 7 THEN priority ELSE -1 " \
  "END)"
// Receive order of claimed messages: whether queue Q has an unclaimed message of higher
// priority than P (a sanitized priority), i.e. one that arrived after the claim (SQL
// expressions); MQSEC_OVERTAKEN with P the priority of message S.
#define MQSEC_OVERTAKEN_AT(Q, P)                                                     \
  "EXISTS(SELECT 1 FROM messages h WHERE h.queue_id = " Q " AND " MQSEC_PRIO " > " P \
  " AND"                                                                             \
  " NOT EXISTS (SELECT 1 FROM claims c WHERE c.seq = h.seq))"
#define MQSEC_OVERTAKEN(Q, S) \
  MQSEC_OVERTAKEN_AT(Q, "(SELECT " MQSEC_PRIO " FROM messages WHERE seq = " S ")")
// deliver_claimed's validation read (validate_locked): how many claimed messages it answers
// for at first, and at most (Store::Window).
constexpr size_t kFirstWindow = 16;
constexpr size_t kMaxWindow = 64;
// The WAL frame count at which a commit checkpoints (Store::wal_committed, as PRAGMA
// wal_autocheckpoint would).
constexpr int kAutoCheckpointFrames = 10000;
// The most envelope bytes one claim transaction takes (claim_batch_locked): with 1 KiB bodies
// a whole batch of 64, with large messages fewer (at least one).
constexpr size_t kClaimMaxBytes = size_t{1} << 20;
// Long enough to ride out another process's group commit or checkpoint, short enough that a
// wedged peer turns into an error instead of a hang.
constexpr auto kBusyTimeout = std::chrono::milliseconds(10000);

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

int64_t now_seconds() { return static_cast<int64_t>(std::time(nullptr)); }

// Resets a cached statement when the scope ends, so it holds no read snapshot and no pointers
// to the caller's buffers (bindings use SQLITE_STATIC).
struct StmtScope {
  sqlite3_stmt* st;
  explicit StmtScope(sqlite3_stmt* s) : st(s) {}
  ~StmtScope() {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
  StmtScope(const StmtScope&) = delete;
  StmtScope& operator=(const StmtScope&) = delete;
};

void check_bind(int rc, const char* what) {
  if (rc != SQLITE_OK) {
    throw Error(MQ_ERROR_MESSAGE_STORAGE_FAILED,
                std::string(what) + " failed: " + sqlite3_errstr(rc));
  }
}

void bind_int(sqlite3_stmt* st, int idx, int64_t v, const char* what) {
  check_bind(sqlite3_bind_int64(st, idx, v), what);
}

// sqlite3_bind_blob with a null pointer binds SQL NULL, which an empty std::span may have:
// bind an explicit zero-length blob instead.
void bind_blob(sqlite3_stmt* st, int idx, std::span<const uint8_t> b, const char* what) {
  if (b.empty()) {
    check_bind(sqlite3_bind_zeroblob(st, idx, 0), what);
  } else {
    check_bind(sqlite3_bind_blob64(st, idx, b.data(), b.size(), SQLITE_STATIC), what);
  }
}

void bind_text(sqlite3_stmt* st, int idx, std::string_view s, const char* what) {
  check_bind(
      sqlite3_bind_text64(st, idx, s.empty() ? "" : s.data(), s.size(), SQLITE_STATIC, SQLITE_UTF8),
      what);
}

Bytes column_bytes(sqlite3_stmt* st, int col) {
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, col));
  const int n = sqlite3_column_bytes(st, col);
  if (p == nullptr || n <= 0) return {};
  return Bytes(p, p + n);
}

std::string column_text(sqlite3_stmt* st, int col) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, col));
  const int n = sqlite3_column_bytes(st, col);
  if (p == nullptr || n <= 0) return {};
  return std::string(p, static_cast<size_t>(n));
}

QueueInfo read_queue(sqlite3_stmt* st) {
  QueueInfo q;
  q.id = sqlite3_column_int64(st, 0);
  q.name = column_text(st, 1);
  q.label = column_text(st, 2);
  q.authenticate = sqlite3_column_int(st, 3) != 0;
  q.transactional = sqlite3_column_int(st, 4) != 0;
  q.created = sqlite3_column_int64(st, 5);
  q.trust = column_text(st, 6);
  q.journal = sqlite3_column_int(st, 7) != 0;
  q.quota = static_cast<uint32_t>(sqlite3_column_int64(st, 8));
  q.journal_quota = static_cast<uint32_t>(sqlite3_column_int64(st, 9));
  q.base_priority = static_cast<int16_t>(sqlite3_column_int(st, 10));
  q.privacy = static_cast<uint32_t>(sqlite3_column_int64(st, 11));
  const auto* type = static_cast<const uint8_t*>(sqlite3_column_blob(st, 12));
  if (type != nullptr && sqlite3_column_bytes(st, 12) == 16)
    std::copy(type, type + 16, q.type.begin());
  q.multicast_address = column_text(st, 13);
  q.modified = sqlite3_column_int64(st, 14);
  if (q.modified == 0) q.modified = q.created;
  return q;
}

[[noreturn]] void unavailable(const std::string& reason) {
  throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, reason);
}

// The delivery log kind of a store created now: shared, or flock with MQSEC_STORE_CLAIM_LOG=flock
// (a test and measurement switch; a store keeps the kind it was created with).
DeliveryLogKind new_store_log_kind() {
  const char* v = secure_getenv("MQSEC_STORE_CLAIM_LOG");
  const std::string_view kind = v != nullptr ? v : "";
  if (kind.empty() || kind == "shared") return DeliveryLogKind::Shared;
  if (kind == "flock") return DeliveryLogKind::Flock;
  unavailable("MQSEC_STORE_CLAIM_LOG is \"" + std::string(kind) +
              "\": it must be \"shared\" (the default) or \"flock\"");
}

std::string user_of(uid_t uid) {
  std::string out = "uid " + std::to_string(uid);
  std::vector<char> buf(16384);
  struct passwd pw {};
  struct passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    out += " (" + std::string(found->pw_name) + ")";
  }
  return out;
}

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

constexpr const char* kShareHint =
    "a store belongs to one user; to share queues between users, send through a message "
    "broker (see docs/security.md)";

// A store belongs to one user: the calling thread's real uid (an impersonating service thread
// keeps its own real uid), and nobody else may write into it.
void check_owner(const struct stat& sb, const std::filesystem::path& path, const char* what) {
  const uid_t me = ::getuid();
  if (sb.st_uid != me) {
    throw Error(MQ_ERROR_ACCESS_DENIED, std::string(what) + " " + path.string() + " is owned by " +
                                            user_of(sb.st_uid) + ", not by this process's user " +
                                            user_of(me) + ": " + kShareHint);
  }
  if ((sb.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw Error(MQ_ERROR_ACCESS_DENIED,
                std::string(what) + " " + path.string() + " is writable by group or others (mode " +
                    octal_mode(sb.st_mode) + "); make it private with chmod go-w: " + kShareHint);
  }
}

// Every directory above the store must belong to root or to the process's user and must not be
// writable by group or others unless it is sticky (like /tmp, where nobody else may rename our
// entries): whoever can write one of them could replace the store between our checks and
// SQLite's own open. Both the path as given and the path with
// symbolic links resolved are checked.
void check_ancestors(const std::filesystem::path& dir) {
  const uid_t me = ::getuid();
  auto check_chain = [&](std::filesystem::path p) {
    for (p = p.parent_path(); !p.empty(); p = p.parent_path()) {
      struct stat sb {};
      if (::lstat(p.c_str(), &sb) != 0) {
        unavailable("stat of " + p.string() + " (above the store) failed: " + std::strerror(errno));
      }
      if (sb.st_uid != 0 && sb.st_uid != me) {
        throw Error(MQ_ERROR_ACCESS_DENIED,
                    p.string() + " (above the store " + dir.string() + ") is owned by " +
                        user_of(sb.st_uid) + ", who could replace the store; use a store path " +
                        "whose directories belong to root or to " + user_of(me));
      }
      if (!S_ISLNK(sb.st_mode) && (sb.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
          !(sb.st_mode & S_ISVTX)) {
        throw Error(MQ_ERROR_ACCESS_DENIED,
                    p.string() + " (above the store " + dir.string() +
                        ") is writable by group or others (mode " + octal_mode(sb.st_mode) +
                        "), who could replace the store; chmod go-w it or use another store path");
      }
      if (p == p.root_path()) break;
    }
  };
  const std::filesystem::path absolute = std::filesystem::absolute(dir);
  check_chain(absolute);
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::canonical(absolute.parent_path(), ec);
  if (!ec) check_chain(parent / absolute.filename());
}

// Creates the directory and the database file ourselves, so their modes do not depend on the
// umask and the file is never briefly readable by others; checks who owns them. Runs with the
// thread's real ids as file-system ids (RealFsIds in the caller).
void prepare_files(const std::filesystem::path& dir, const std::filesystem::path& db) {
  check_ancestors(dir);
  if (::mkdir(dir.c_str(), 0700) == 0) {
    if (::chmod(dir.c_str(), 0700) != 0) {
      unavailable("chmod of store directory " + dir.string() + " failed: " + std::strerror(errno));
    }
  } else if (errno != EEXIST) {
    unavailable("creating store directory " + dir.string() + " failed: " + std::strerror(errno));
  }
  {
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
      if (errno == ENOTDIR || errno == ELOOP) {
        unavailable("store path " + dir.string() + " is not a directory");
      }
      unavailable("opening store directory " + dir.string() + " failed: " + std::strerror(errno));
    }
    struct stat sb {};
    const int rc = ::fstat(dfd, &sb);
    const int saved = errno;
    ::close(dfd);
    if (rc != 0) {
      unavailable("stat of store directory " + dir.string() + " failed: " + std::strerror(saved));
    }
    if (!S_ISDIR(sb.st_mode)) unavailable("store path " + dir.string() + " is not a directory");
    check_owner(sb, dir, "store directory");
  }
  int fd = ::open(db.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd >= 0) {
    const int rc = ::fchmod(fd, 0600);
    const int saved = errno;
    ::close(fd);
    if (rc != 0) {
      unavailable("chmod of " + db.string() + " failed: " + std::strerror(saved));
    }
    return;
  }
  if (errno != EEXIST) unavailable("creating " + db.string() + " failed: " + std::strerror(errno));
  // Not opened for reading: closing a descriptor of the database would drop every POSIX lock
  // this process holds on it, SQLite's own among them (the shared lock of another Store's
  // connection: another process's last close would then take the database for unused and
  // remove the WAL under that connection, with what it commits next). An O_PATH descriptor's
  // close drops none.
  fd = ::open(db.c_str(), O_PATH | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) unavailable("opening " + db.string() + " failed: " + std::strerror(errno));
  struct stat sb {};
  const int rc = ::fstat(fd, &sb);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) unavailable("stat of " + db.string() + " failed: " + std::strerror(saved));
  if (S_ISLNK(sb.st_mode)) unavailable(db.string() + " is a symbolic link");
  if (!S_ISREG(sb.st_mode)) unavailable(db.string() + " is not a regular file");
  check_owner(sb, db, "store database");
}

}  // namespace

// The busy handler (instead of sqlite3_busy_timeout). SQLite's writer lock is not fair: a
// waiter polls, and the built-in handler's sleeps grow to 100 ms, so against a sender that
// commits back to back (the group-commit writer takes the lock again within microseconds) a
// receiver could miss every free window for the whole timeout; a TSan run saw exactly that
// (one MQ_ERROR_SERVICE_NOT_AVAILABLE among 40,000 receives). Polling every 0.2-1 ms, with
// jitter so that two waiters do not keep colliding, makes winning a window likely while
// costing little CPU.
// A transaction that must not wait (an inline claim ahead) gives up at once.
int Store::busy_handler(void* arg, int count) {
  auto& wait = *static_cast<Store::BusyWait*>(arg);
  if (wait.no_wait) return 0;
  auto& since = wait.since;
  const auto now = std::chrono::steady_clock::now();
  if (count == 0) since = now;  // a new wait begins
  if (now - since >= kBusyTimeout) return 0;
  thread_local std::minstd_rand jitter(static_cast<unsigned>(
      std::chrono::steady_clock::now().time_since_epoch().count() ^ ::getpid()));
  const auto us = count < 50 ? 200 + jitter() % 300 : 500 + jitter() % 500;
  std::this_thread::sleep_for(std::chrono::microseconds(us));
  return 1;
}

// Column lists of the message and queue readers (read_message, find_queue and list_queues).
constexpr const char* kMsgCols =
    "SELECT queue_id, seq, " MQSEC_PRIO ", arrived, envelope FROM messages ";
constexpr const char* kQueueCols =
    "SELECT id, name, label, authenticate, transactional, created, trust, journal, quota,"
    " journal_quota, base_priority, priv_level, type, multicast, modified FROM queues ";

struct Store::Statements {
  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* read_begin = nullptr;  // a deferred BEGIN: deliver_claimed's validation read
  sqlite3_stmt* commit = nullptr;
  sqlite3_stmt* rollback = nullptr;
  sqlite3_stmt* data_version = nullptr;
  sqlite3_stmt* insert_queue = nullptr;
  sqlite3_stmt* update_queue = nullptr;
  sqlite3_stmt* find_queue = nullptr;
  sqlite3_stmt* list_queues = nullptr;
  sqlite3_stmt* delete_queue_messages = nullptr;
  sqlite3_stmt* delete_queue = nullptr;
  sqlite3_stmt* insert_message = nullptr;
  sqlite3_stmt* first = nullptr;
  sqlite3_stmt* next_after = nullptr;
  sqlite3_stmt* last = nullptr;
  sqlite3_stmt* prev_before = nullptr;
  sqlite3_stmt* get = nullptr;
  sqlite3_stmt* get_any = nullptr;     // the expiry sweep: a message by seq, in any queue
  sqlite3_stmt* scan_after = nullptr;  // the expiry sweep: every message, in seq order
  sqlite3_stmt* queue_name = nullptr;  // the expiry sweep: a queue's name by id, any queue
  sqlite3_stmt* remove = nullptr;
  sqlite3_stmt* move_message = nullptr;  // MQMoveMessage, dead letters, journal copies
  sqlite3_stmt* count = nullptr;
  sqlite3_stmt* any = nullptr;
  sqlite3_stmt* bytes = nullptr;
  sqlite3_stmt* quota = nullptr;
  sqlite3_stmt* insert_rejection = nullptr;
  sqlite3_stmt* rejections = nullptr;
  sqlite3_stmt* bind_cert = nullptr;
  sqlite3_stmt* cert_sid = nullptr;
  sqlite3_stmt* cert_owner = nullptr;
  sqlite3_stmt* insert_signer = nullptr;
  sqlite3_stmt* signers = nullptr;
  sqlite3_stmt* delete_queue_signers = nullptr;
  sqlite3_stmt* delete_queue_delivered = nullptr;
  sqlite3_stmt* insert_delivered = nullptr;
  sqlite3_stmt* was_delivered = nullptr;
  sqlite3_stmt* prune_delivered = nullptr;
  sqlite3_stmt* delete_queue_arrived = nullptr;
  sqlite3_stmt* insert_arrived = nullptr;
  sqlite3_stmt* prune_arrived = nullptr;
  sqlite3_stmt* prune_rejections_age = nullptr;
  sqlite3_stmt* prune_rejections_count = nullptr;
  sqlite3_stmt* prune_rejections_bytes = nullptr;
  // Claimed receives (claim_next, deliver_claimed).
  sqlite3_stmt* claim_candidates = nullptr;
  sqlite3_stmt* any_unclaimed = nullptr;  // claiming ahead: whether claim_candidates finds one
  sqlite3_stmt* insert_claim = nullptr;
  sqlite3_stmt* claim_held = nullptr;
  sqlite3_stmt* claim_held_at = nullptr;  // prepared apart: see kClaimHeldAt
  sqlite3_stmt* overtaken = nullptr;
  sqlite3_stmt* claim_owners = nullptr;
  sqlite3_stmt* max_queue_id = nullptr;
  sqlite3_stmt* delete_claimed = nullptr;
  sqlite3_stmt* drop_claim = nullptr;
  sqlite3_stmt* release_claim = nullptr;
  sqlite3_stmt* release_owner = nullptr;
  sqlite3_stmt* delete_queue_claims = nullptr;
  sqlite3_stmt* owner_has_claims = nullptr;

  using Member = sqlite3_stmt* Statements::*;
  // Every statement but the transaction ones, with its SQL: prepared together once the schema
  // is current, finalized together.
  static const std::vector<std::pair<Member, std::string>>& queries() {
    static const auto* all = new std::vector<std::pair<Member, std::string>>{
        {&Statements::data_version, "PRAGMA data_version"},
        {&Statements::insert_queue,
         "INSERT INTO queues(name, label, authenticate, transactional, created, trust, journal,"
         " quota, journal_quota, base_priority, priv_level, type, multicast, modified)"
         " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?5)"
         " ON CONFLICT(name) DO NOTHING"},
        // ?12: a bit per column that differs from the caller's snapshot (Store::update_queue).
        {&Statements::update_queue,
         "UPDATE queues SET"
         " label = CASE WHEN ?12 & 1 THEN ?2 ELSE label END,"
         " authenticate = CASE WHEN ?12 & 2 THEN ?3 ELSE authenticate END,"
         " journal = CASE WHEN ?12 & 4 THEN ?4 ELSE journal END,"
         " quota = CASE WHEN ?12 & 8 THEN ?5 ELSE quota END,"
         " journal_quota = CASE WHEN ?12 & 16 THEN ?6 ELSE journal_quota END,"
         " base_priority = CASE WHEN ?12 & 32 THEN ?7 ELSE base_priority END,"
         " priv_level = CASE WHEN ?12 & 64 THEN ?8 ELSE priv_level END,"
         " type = CASE WHEN ?12 & 128 THEN ?9 ELSE type END,"
         " multicast = CASE WHEN ?12 & 256 THEN ?10 ELSE multicast END,"
         " modified = ?11 WHERE id = ?1"},
        {&Statements::insert_signer,
         "INSERT INTO queue_signers(queue_id, pos, kind, value) VALUES(?1, ?2, ?3, ?4)"},
        {&Statements::signers,
         "SELECT kind, value FROM queue_signers WHERE queue_id = ?1 ORDER BY pos"},
        {&Statements::delete_queue_signers, "DELETE FROM queue_signers WHERE queue_id = ?1"},
        {&Statements::delete_queue_delivered, "DELETE FROM delivered WHERE queue_id = ?1"},
        {&Statements::insert_delivered,
         "INSERT INTO delivered(queue_id, msg_id, sent_time) VALUES(?1, ?2, ?3)"
         " ON CONFLICT(queue_id, msg_id) DO NOTHING"},
        {&Statements::was_delivered, "SELECT 1 FROM delivered WHERE queue_id = ?1 AND msg_id = ?2"},
        {&Statements::prune_delivered, "DELETE FROM delivered WHERE sent_time < ?1"},
        {&Statements::delete_queue_arrived, "DELETE FROM arrived WHERE queue_id = ?1"},
        // Nothing when the id already arrived in this queue, or was delivered from it (a
        // duplicate that comes after the receiver took the first copy).
        {&Statements::insert_arrived,
         "INSERT INTO arrived(queue_id, msg_id, sent_time) SELECT ?1, ?2, ?3"
         " WHERE NOT EXISTS (SELECT 1 FROM delivered WHERE queue_id = ?1 AND msg_id = ?2)"
         " ON CONFLICT(queue_id, msg_id) DO NOTHING"},
        {&Statements::prune_arrived, "DELETE FROM arrived WHERE sent_time < ?1"},
        {&Statements::find_queue, std::string(kQueueCols) + "WHERE name = ?1"},
        // Subqueues ("<queue>;<name>", core/subqueue.hpp) are not queues of their own: unlisted.
        {&Statements::list_queues,
         std::string(kQueueCols) + "WHERE instr(name, ';') = 0 ORDER BY name"},
        {&Statements::delete_queue_messages, "DELETE FROM messages WHERE queue_id = ?1"},
        {&Statements::delete_queue, "DELETE FROM queues WHERE id = ?1"},
        // INSERT ... SELECT: the queue's existence is checked inside the same write
        // transaction, so a concurrent delete_queue cannot leave orphaned messages behind.
        {&Statements::insert_message,
         "INSERT INTO messages(queue_id, priority, arrived, envelope)"
         " SELECT id, ?2, ?3, ?4 FROM queues WHERE id = ?1"},
        {&Statements::first,
         std::string(kMsgCols) + "WHERE queue_id = ?1 ORDER BY " MQSEC_PRIO " DESC, seq LIMIT 1"},
        {&Statements::next_after,
         std::string(kMsgCols) + "WHERE queue_id = ?1 AND (" MQSEC_PRIO " < ?2 OR (" MQSEC_PRIO
                                 " = ?2 AND seq > ?3)) ORDER BY " MQSEC_PRIO " DESC, seq LIMIT 1"},
        // The same order backwards (the index is scanned the other way).
        {&Statements::last, std::string(kMsgCols) + "WHERE queue_id = ?1 ORDER BY " MQSEC_PRIO
                                                    " ASC, seq DESC LIMIT 1"},
        {&Statements::prev_before,
         std::string(kMsgCols) + "WHERE queue_id = ?1 AND (" MQSEC_PRIO " > ?2 OR (" MQSEC_PRIO
                                 " = ?2 AND seq < ?3)) ORDER BY " MQSEC_PRIO
                                 " ASC, seq DESC LIMIT 1"},
        {&Statements::get, std::string(kMsgCols) + "WHERE queue_id = ?1 AND seq = ?2"},
        {&Statements::get_any, std::string(kMsgCols) + "WHERE seq = ?1"},
        {&Statements::scan_after, std::string(kMsgCols) + "WHERE seq > ?1 ORDER BY seq LIMIT ?2"},
        {&Statements::queue_name, "SELECT name FROM queues WHERE id = ?1"},
        // A message another process claimed is not this process's to take (?3: this owner).
        {&Statements::remove,
         "DELETE FROM messages WHERE queue_id = ?1 AND seq = ?2"
         " AND NOT EXISTS (SELECT 1 FROM claims WHERE seq = ?2 AND owner <> ?3)"},
        {&Statements::move_message,
         "UPDATE messages SET queue_id = ?3 WHERE queue_id = ?1 AND seq = ?2"
         " AND EXISTS (SELECT 1 FROM queues WHERE id = ?3)"
         " AND NOT EXISTS (SELECT 1 FROM claims WHERE seq = ?2 AND owner <> ?4)"},
        {&Statements::claim_candidates,
         std::string(kMsgCols) +
             "WHERE queue_id = ?1 AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.seq ="
             " messages.seq) ORDER BY " MQSEC_PRIO " DESC, seq LIMIT ?2"},
        {&Statements::any_unclaimed,
         "SELECT 1 FROM messages WHERE queue_id = ?1 AND NOT EXISTS (SELECT 1 FROM claims c"
         " WHERE c.seq = messages.seq) LIMIT 1"},
        {&Statements::insert_claim,
         "INSERT INTO claims(seq, queue_id, owner, until) VALUES(?1, ?2, ?3, ?4)"},
        // Whether this process still holds the claim, whether the id was delivered from the
        // queue already, and whether an unclaimed message of higher priority arrived since the
        // claim: one read transaction for the three (each costs two fcntl calls).
        {&Statements::claim_held,
         "SELECT EXISTS(SELECT 1 FROM claims c JOIN messages m ON m.seq = c.seq WHERE c.seq = ?1"
         " AND c.owner = ?2), EXISTS(SELECT 1 FROM delivered WHERE queue_id = ?3 AND"
         " msg_id = ?4), " MQSEC_OVERTAKEN("?3", "?1")},
        // The claim check's third column alone, for the ways out of a receive that do not
        // go through it (a short buffer, a journal, a long message id).
        {&Statements::overtaken, "SELECT " MQSEC_OVERTAKEN("?1", "?2")},
        {&Statements::claim_owners,
         "SELECT owner, min(until) FROM claims WHERE queue_id = ?1 AND owner <> ?2 GROUP BY owner"},
        {&Statements::delete_claimed,
         "DELETE FROM messages WHERE seq = ?1 AND EXISTS (SELECT 1 FROM claims WHERE seq = ?1"
         " AND owner = ?2)"},
        {&Statements::drop_claim, "DELETE FROM claims WHERE seq = ?1"},
        // Letting a claim go: only while it is still this owner's (after a lapsed lease the
        // message may be another owner's claim now, or already returned by it).
        {&Statements::release_claim, "DELETE FROM claims WHERE seq = ?1 AND owner = ?2"},
        {&Statements::release_owner, "DELETE FROM claims WHERE owner = ?1 AND until < ?2"},
        {&Statements::delete_queue_claims, "DELETE FROM claims WHERE queue_id = ?1"},
        {&Statements::owner_has_claims, "SELECT 1 FROM claims WHERE owner = ?1 LIMIT 1"},
        {&Statements::max_queue_id, "SELECT max(id) FROM queues"},
        {&Statements::count, "SELECT count(*) FROM messages WHERE queue_id = ?1"},
        {&Statements::bytes,
         "SELECT coalesce(sum(length(envelope)), 0) FROM messages WHERE queue_id = ?1"},
        {&Statements::quota, "SELECT quota FROM queues WHERE id = ?1"},
        {&Statements::any, "SELECT 1 FROM messages WHERE queue_id = ?1 LIMIT 1"},
        {&Statements::insert_rejection,
         "INSERT INTO rejections(queue, time, kind, reason, envelope, original_size)"
         " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
        {&Statements::rejections,
         "SELECT id, queue, time, kind, reason, envelope, original_size FROM rejections"
         " WHERE queue = ?1 ORDER BY id"},
        {&Statements::prune_rejections_age, "DELETE FROM rejections WHERE time < ?1"},
        // Keeps the newest ?1 records.
        {&Statements::prune_rejections_count,
         "DELETE FROM rejections WHERE id <= (SELECT id FROM rejections ORDER BY id DESC"
         " LIMIT 1 OFFSET ?1)"},
        // Keeps the newest records whose sizes add up to at most ?1 bytes.
        {&Statements::prune_rejections_bytes,
         "DELETE FROM rejections WHERE id IN (SELECT id FROM (SELECT id, sum(length(envelope) +"
         " length(reason) + length(kind)) OVER (ORDER BY id DESC) AS total FROM rejections)"
         " WHERE total > ?1)"},
        {&Statements::bind_cert,
         "INSERT INTO certificates(sha256, der, sid, registered_by, registered)"
         " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(sha256) DO UPDATE SET"
         " der = excluded.der, registered = excluded.registered WHERE sid = excluded.sid"},
        {&Statements::cert_owner, "SELECT sid, registered_by FROM certificates WHERE sha256 = ?1"},
        {&Statements::cert_sid, "SELECT sid FROM certificates WHERE sha256 = ?1"},
    };
    return *all;
  }

  ~Statements() {
    // sqlite3_finalize accepts nullptr (statements not prepared when opening failed).
    for (sqlite3_stmt* s : {begin, read_begin, commit, rollback}) sqlite3_finalize(s);
    for (const auto& [member, sql] : queries()) sqlite3_finalize(this->*member);
    sqlite3_finalize(claim_held_at);
  }
};

// claim_held for a message whose sanitized priority (?5) its claim read: whether it exists and
// whether it was overtaken are answered from messages_order alone, not from the message's row.
// A signed message fills a table page by itself, and after another connection's commit SQLite
// reads every page again: so a check reads the index's few pages instead of one page per
// message (docs/performance.md, session 30). Where it says "held", its other two answers are
// claim_held's (the row is in queue ?3 at priority ?5); where it says "not held",
// answer_claim_locked asks claim_held, so the answers are always claim_held's. INDEXED BY (the
// planner would take the row by its seq): prepared apart, so that a store whose index was
// dropped by hand still opens (its checks then use claim_held).
constexpr const char* kClaimHeldAt =
    "SELECT EXISTS(SELECT 1 FROM claims WHERE seq = ?1 AND owner = ?2) AND EXISTS(SELECT 1"
    " FROM messages INDEXED BY messages_order WHERE queue_id = ?3 AND " MQSEC_PRIO
    " = ?5 AND seq = ?1), EXISTS(SELECT 1 FROM delivered WHERE queue_id = ?3 AND msg_id = "
    "?4), " MQSEC_OVERTAKEN_AT("?3", "?5");

// A BEGIN IMMEDIATE transaction; rolls back unless commit() succeeded. durable=true switches the
// connection to synchronous=FULL for this transaction (SQLite refuses to change it inside one).
class Store::Tx {
 public:
  Tx(Store& s, bool durable) : s_(s), durable_(durable) {
    if (durable_) s_.set_durable(true);
    try {
      s_.step_done(s_.st_->begin, "begin transaction");
    } catch (...) {
      if (durable_) restore_sync();
      throw;
    }
  }
  void commit() {
    s_.step_done(s_.st_->commit, "commit");
    committed_ = true;
    ++s_.own_commits_;
  }
  // Errors are swallowed: this runs during unwinding, and a failed rollback leaves SQLite to
  // roll back the transaction itself (an I/O error already aborted it).
  ~Tx() {
    if (!committed_ && sqlite3_get_autocommit(s_.db_) == 0) {
      sqlite3_step(s_.st_->rollback);
      sqlite3_reset(s_.st_->rollback);
    }
    if (durable_) restore_sync();
  }
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;

 private:
  void restore_sync() noexcept {
    try {
      s_.set_durable(false);
    } catch (...) {
      // Leaving the connection at FULL is safe, only slower.
    }
  }
  Store& s_;
  bool durable_;
  bool committed_ = false;
};

Store::Store(const std::filesystem::path& dir) : dir_(dir), owner_(claim_owner_of(::getpid())) {
  const std::filesystem::path db_path = dir / "mqsec.db";
  // The files (database, -wal, -shm) are opened here, as the process's user; the connection
  // keeps them open afterwards.
  RealFsIds real_ids;
  prepare_files(dir, db_path);

  // NOMUTEX: mu_ already serialises every use of this connection. The VFS gathers each
  // commit's WAL writes and maps the WAL for reads (wal_vfs.hpp); MQSEC_WAL_VFS=0 keeps the
  // default one.
  const char* no_vfs = secure_getenv("MQSEC_WAL_VFS");
  const char* vfs = no_vfs != nullptr && std::string_view(no_vfs) == "0" ? nullptr : wal_vfs_name();
  int rc = sqlite3_open_v2(db_path.c_str(), &db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, vfs);
  if (rc != SQLITE_OK) {
    std::string reason = "opening " + db_path.string() +
                         " failed: " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
    sqlite3_close_v2(db_);
    db_ = nullptr;
    unavailable(reason);
  }
  try {
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_handler(db_, busy_handler, &busy_);

    // journal_mode answers with the mode actually in force; a file system without shared memory
    // support would silently leave us in rollback mode, where readers block writers.
    {
      // Switching a new database to WAL needs an exclusive lock, and SQLite does not call the
      // busy handler for it: when several processes create the store at once, retry here.
      int src = SQLITE_BUSY;
      std::string mode;
      for (int attempt = 0; attempt < kBusyTimeout.count() / 5; ++attempt) {
        sqlite3_stmt* st = prepare("PRAGMA journal_mode=WAL", "setting WAL journal mode");
        src = sqlite3_step(st);
        mode = src == SQLITE_ROW ? column_text(st, 0) : std::string();
        sqlite3_finalize(st);
        if ((src & 0xff) != SQLITE_BUSY && (src & 0xff) != SQLITE_LOCKED) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (src != SQLITE_ROW) fail(src, "setting WAL journal mode");
      if (lower_ascii(mode) != "wal") unavailable("store cannot use WAL mode (got " + mode + ")");
    }
    exec("PRAGMA synchronous=NORMAL", "setting synchronous mode");
    // Checkpoint every 10,000 WAL pages (about 40 MB) instead of SQLite's 1,000: a signed
    // message of about 2.2 KB (a batch-signed one with its certificate and audit path) fills a
    // 4 KiB page by itself, so at 1,000 pages a stream of batches checkpointed (and fsynced the
    // WAL and the database) about once per batch. Measured in docs/performance.md (batch).
    // Done by our own WAL hook (in place of PRAGMA wal_autocheckpoint, whose hook does the same),
    // which also keeps each commit's frame count for claim_batch_locked's anchor.
    sqlite3_wal_hook(db_, &Store::wal_committed, this);
    // Debian's SQLite is built with SQLITE_SECURE_DELETE: every freed page (a signed message
    // fills one by itself) was zeroed and written to the WAL, 2.4 x the frames of a claim
    // transaction. FAST zeroes deleted content only in pages written anyway (docs/security.md,
    // "What we do not defend against"; docs/performance.md).
    exec("PRAGMA secure_delete=FAST", "setting secure delete");

    st_ = std::make_unique<Statements>();
    st_->begin = prepare("BEGIN IMMEDIATE");
    st_->read_begin = prepare("BEGIN");
    st_->commit = prepare("COMMIT");
    st_->rollback = prepare("ROLLBACK");

    {
      Tx tx(*this, true);
      exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)",
           "creating schema");
      sqlite3_stmt* st = prepare("SELECT max(version) FROM schema_version");
      const int src = sqlite3_step(st);
      const bool have = src == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
      const int64_t version = have ? sqlite3_column_int64(st, 0) : 0;
      sqlite3_finalize(st);
      if (src != SQLITE_ROW) fail(src, "reading schema version");
      if (version > kSchemaVersion) {
        unavailable("store schema version " + std::to_string(version) +
                    " is newer than this mqsec supports (" + std::to_string(kSchemaVersion) + ")");
      }
      if (!have) {
        exec(
            "CREATE TABLE queues("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " name TEXT NOT NULL UNIQUE,"
            " label TEXT NOT NULL,"
            " authenticate INTEGER NOT NULL,"
            " transactional INTEGER NOT NULL,"
            " created INTEGER NOT NULL);"
            "CREATE TABLE messages("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " queue_id INTEGER NOT NULL,"
            " priority INTEGER NOT NULL,"
            " arrived INTEGER NOT NULL,"
            " envelope BLOB NOT NULL);"
            "CREATE TABLE rejections("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " queue TEXT NOT NULL,"
            " time INTEGER NOT NULL,"
            " reason TEXT NOT NULL,"
            " envelope BLOB NOT NULL);"
            "CREATE INDEX rejections_queue ON rejections(queue, id);"
            "CREATE TABLE certificates("
            " sha256 BLOB PRIMARY KEY,"
            " der BLOB NOT NULL,"
            " sid BLOB NOT NULL,"
            " registered_by INTEGER NOT NULL,"
            " registered INTEGER NOT NULL);",
            "creating schema");
        migrate_locked(1);
        if (new_store_log_kind() == DeliveryLogKind::Shared) {
          exec(
              "DELETE FROM schema_version;"
              "INSERT INTO schema_version(version) VALUES(7);",
              "creating schema");
        }
      } else if (version < kFlockLogSchema) {
        migrate_locked(version);
      }
      tx.commit();
      log_kind_ = have && version <= kFlockLogSchema ? DeliveryLogKind::Flock
                  : have                             ? DeliveryLogKind::Shared
                                                     : new_store_log_kind();
    }

    for (const auto& [member, sql] : Statements::queries()) {
      st_.get()->*member = prepare(sql.c_str());
    }
    if (sqlite3_prepare_v3(db_, kClaimHeldAt, -1, SQLITE_PREPARE_PERSISTENT, &st_->claim_held_at,
                           nullptr) != SQLITE_OK) {
      sqlite3_finalize(st_->claim_held_at);  // no messages_order: claim_held serves
      st_->claim_held_at = nullptr;
    }
    settings_ = std::make_unique<SettingsSignal>(dir);
    // After the schema transaction: the connection has mapped the wal-index by now.
    // MQSEC_CLAIM_FASTPATH=0 leaves the signal off (every claimed delivery reads), for tests and
    // A/B measurements with one binary.
    const char* fast = secure_getenv("MQSEC_CLAIM_FASTPATH");
    wal_ = fast != nullptr && std::string_view(fast) == "0" ? std::make_unique<WalSignal>()
                                                            : std::make_unique<WalSignal>(db_);
    // MQSEC_CLAIM_ANSWERS=0: claims answer nothing, every answer comes from a validation read
    // (for tests of the validation windows and A/B measurements).
    const char* answers = secure_getenv("MQSEC_CLAIM_ANSWERS");
    claim_answers_ = answers == nullptr || std::string_view(answers) != "0";
    // Claiming ahead (claim_next): by default also for one receiving thread when the process
    // may run on two CPUs or more (the claim runs on another one; measured: docs/performance.md,
    // "The log rewrite without a read"), else only while several threads receive. For tests and
    // A/B measurements, MQSEC_CLAIM_AHEAD=0: every claim in the receiving thread; =1: claims
    // ahead for one thread too; =several: only for several.
    const char* ahead = secure_getenv("MQSEC_CLAIM_AHEAD");
    const std::string_view mode = ahead != nullptr ? ahead : "";
    claim_ahead_ = mode != "0";
    open_cpus_ = usable_cpus();
    claim_ahead_one_ = mode == "1" || (mode != "several" && CPU_COUNT(&open_cpus_) > 1);
    // A receiving thread claims ahead itself while several receive (claim_next); =0: the
    // claimer thread does (for tests and A/B measurements).
    const char* inline_claims = secure_getenv("MQSEC_CLAIM_INLINE");
    claim_inline_ = inline_claims == nullptr || std::string_view(inline_claims) != "0";
    take_over_earlier_holder();
  } catch (const Error& e) {
    if (owner_fd_ >= 0) ::close(owner_fd_);
    st_.reset();
    sqlite3_close_v2(db_);
    db_ = nullptr;
    if (e.code() == MQ_ERROR_SERVICE_NOT_AVAILABLE) throw;
    unavailable("opening store " + db_path.string() + ": " + e.what());
  } catch (...) {
    if (owner_fd_ >= 0) ::close(owner_fd_);
    st_.reset();
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw;
  }
}

struct Store::Claimer {
  std::mutex mu;  // amu_: taken last
  std::condition_variable wake;
  std::deque<AheadRequest> asked;
  bool stop = false;
  std::thread* thread = nullptr;
  // Steering (wake_claimer): the CPUs it started with, and the one of them its affinity leaves
  // out, -1 for none (under dmu_).
  bool steer = false;
  cpu_set_t cpus;
  int kept_off = -1;
};

Store::~Store() {
  if (claimer_ != nullptr) {
    {
      std::lock_guard lock(claimer_->mu);
      claimer_->stop = true;
    }
    claimer_->wake.notify_all();
    if (claimer_->thread != nullptr && claimer_->thread->joinable()) claimer_->thread->join();
    delete claimer_->thread;
    delete claimer_;
  }
  if (owner_fd_ >= 0) ::close(owner_fd_);  // its lock goes: a later Store may take over
  close_connection();  // the last connection's close checkpoints and removes the -wal file
}

void Store::close_connection() noexcept {
  RealFsIds real_ids;
  wal_.reset();  // a pointer into SQLite's mapping, unmapped by the close
  st_.reset();   // statements must be finalized before the connection closes
  sqlite3_close_v2(db_);
  db_ = nullptr;
}

sqlite3_stmt* Store::prepare(const char* sql, const char* what) {
  sqlite3_stmt* st = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(st);
    fail(rc, what);
  }
  return st;
}

void Store::exec(const char* sql, const char* what) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(rc, what);
}

void Store::step_done(sqlite3_stmt* st, const char* what) {
  const int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    sqlite3_reset(st);
    fail(rc, what);
  }
  sqlite3_reset(st);
}

bool Store::step_row(sqlite3_stmt* st, const char* what) {
  const int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return false;
  if (rc != SQLITE_ROW) fail(rc, what);
  return true;
}

// SQLITE_BUSY/LOCKED only reach us after the busy timeout expired: other processes hold the
// store, which to the caller is a temporarily unavailable service, not a broken one.
void Store::fail(int rc, const char* what) {
  const int primary = rc & 0xff;
  std::string msg = (db_ != nullptr && sqlite3_extended_errcode(db_) == rc) ? sqlite3_errmsg(db_)
                                                                            : sqlite3_errstr(rc);
  const HRESULT code = (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
                           ? MQ_ERROR_SERVICE_NOT_AVAILABLE
                           : MQ_ERROR_MESSAGE_STORAGE_FAILED;
  throw Error(code, std::string(what) + " failed: " + msg);
}

// In WAL mode synchronous=FULL fsyncs the WAL at every commit; NORMAL only at checkpoints
// (a commit survives a process crash but not a power failure). The pragma takes effect at
// prepare time, so it is executed afresh rather than cached.
void Store::set_durable(bool durable) {
  exec(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
       "setting synchronous mode");
}

// Runs inside the schema transaction of the constructor (BEGIN IMMEDIATE: one process
// migrates, the others then see the new version).
void Store::migrate_locked(int64_t from_version) {
  if (from_version < 2) {
    exec(
        "ALTER TABLE queues ADD COLUMN trust TEXT NOT NULL DEFAULT '';"
        "CREATE TABLE queue_signers("
        " queue_id INTEGER NOT NULL,"
        " pos INTEGER NOT NULL,"
        " kind TEXT NOT NULL,"  // 'subject' or 'sid'
        " value TEXT NOT NULL,"
        " PRIMARY KEY(queue_id, pos)) WITHOUT ROWID;"
        "CREATE TABLE delivered("
        " queue_id INTEGER NOT NULL,"
        " msg_id BLOB NOT NULL,"
        " sent_time INTEGER NOT NULL,"
        " PRIMARY KEY(queue_id, msg_id)) WITHOUT ROWID;"
        "CREATE INDEX delivered_time ON delivered(sent_time);"
        "ALTER TABLE rejections ADD COLUMN kind TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE rejections ADD COLUMN original_size INTEGER NOT NULL DEFAULT 0;"
        "UPDATE rejections SET original_size = length(envelope);"
        "DROP INDEX IF EXISTS messages_order;"
        "CREATE INDEX messages_order ON messages(queue_id, " MQSEC_PRIO
        " DESC, seq);"
        "DELETE FROM schema_version;"
        "INSERT INTO schema_version(version) VALUES(2);",
        "migrating the store to schema version 2");
  }
  if (from_version < 3) {
    exec(
        "CREATE TABLE arrived("
        " queue_id INTEGER NOT NULL,"
        " msg_id BLOB NOT NULL,"
        " sent_time INTEGER NOT NULL,"
        " PRIMARY KEY(queue_id, msg_id)) WITHOUT ROWID;"
        "CREATE INDEX arrived_time ON arrived(sent_time);"
        "DELETE FROM schema_version;"
        "INSERT INTO schema_version(version) VALUES(3);",
        "migrating the store to schema version 3");
  }
  if (from_version < 4) {
    exec(
        "ALTER TABLE queues ADD COLUMN journal INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE queues ADD COLUMN quota INTEGER NOT NULL DEFAULT 4294967295;"
        "ALTER TABLE queues ADD COLUMN journal_quota INTEGER NOT NULL DEFAULT 4294967295;"
        "ALTER TABLE queues ADD COLUMN base_priority INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE queues ADD COLUMN priv_level INTEGER NOT NULL DEFAULT 1;"
        "ALTER TABLE queues ADD COLUMN type BLOB NOT NULL DEFAULT x'';"
        "ALTER TABLE queues ADD COLUMN multicast TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE queues ADD COLUMN modified INTEGER NOT NULL DEFAULT 0;"
        "DELETE FROM schema_version;"
        "INSERT INTO schema_version(version) VALUES(4);",
        "migrating the store to schema version 4");
  }
  if (from_version < 5) {
    // Queue security descriptors (MQSetQueueSecurity); a queue without a row has MSMQ's default
    // one with the store's owner as its owner (core/queue_security.hpp).
    exec(
        "CREATE TABLE queue_security("
        " queue_id INTEGER PRIMARY KEY,"
        " descriptor BLOB NOT NULL);"
        "DELETE FROM schema_version;"
        "INSERT INTO schema_version(version) VALUES(5);",
        "migrating the store to schema version 5");
  }
  if (from_version < 6) {
    exec(
        // Claimed receives (delivery_log.hpp): seq is claimed by owner (claim_owner.hpp)
        // until `until` (ms since the epoch, the lease).
        "CREATE TABLE IF NOT EXISTS claims("
        " seq INTEGER PRIMARY KEY,"
        " queue_id INTEGER NOT NULL,"
        " owner TEXT NOT NULL,"
        " until INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS claims_queue ON claims(queue_id, owner);"
        "CREATE INDEX IF NOT EXISTS claims_owner ON claims(owner);"
        "DELETE FROM schema_version;"
        "INSERT INTO schema_version(version) VALUES(6);",
        "migrating the store to schema version 6");
  }
}

void Store::read_signers(QueueInfo& q) {
  sqlite3_stmt* st = st_->signers;
  StmtScope scope(st);
  bind_int(st, 1, q.id, "read queue signers");
  while (step_row(st, "read queue signers")) {
    const std::string kind = column_text(st, 0);
    if (kind == "subject") {
      q.signer_subjects.push_back(column_text(st, 1));
    } else if (kind == "sid") {
      q.signer_sids.push_back(column_text(st, 1));
    } else {
      // Never written by mqsec: refuse rather than silently accept anyone.
      throw Error(MQ_ERROR_MESSAGE_STORAGE_FAILED,
                  "queue '" + q.name + "' has a signer of unknown kind '" + kind + "'");
    }
  }
}

std::optional<StoredMessage> Store::read_message(sqlite3_stmt* st, const char* what) {
  if (!step_row(st, what)) return std::nullopt;
  StoredMessage m;
  m.queue_id = sqlite3_column_int64(st, 0);
  m.seq = sqlite3_column_int64(st, 1);
  const int64_t p = sqlite3_column_int64(st, 2);  // sanitized by MQSEC_PRIO: -1..7
  m.priority = p >= 0 && p <= 7 ? static_cast<int>(p) : kMalformedPriority;
  m.arrived = sqlite3_column_int64(st, 3);
  m.envelope = column_bytes(st, 4);
  return m;
}

QueueInfo Store::ensure_queue(const QueueInfo& q, std::string_view owner) {
  if (auto found = find_queue(q.name)) return *found;
  try {
    create_queue(q, owner);
  } catch (const Error& e) {
    if (e.code() != MQ_ERROR_QUEUE_EXISTS) throw;  // another process created it meanwhile
  }
  auto found = find_queue(q.name);
  if (!found) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                "queue '" + q.name + "' vanished while it was being created");
  }
  return *found;
}

void Store::create_queue(QueueInfo q, std::string_view owner, std::span<const uint8_t> security) {
  if (q.name.empty()) throw Error(MQ_ERROR_INVALID_PARAMETER, "queue name is empty");
  if (!q.trust.empty() && q.trust != "signature" && q.trust != "chain" &&
      q.trust != "chain+revocation") {
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "queue trust '" + q.trust + "' is not signature, chain or chain+revocation");
  }
  const std::string name = lower_ascii(q.name);
  std::lock_guard lock(mu_);
  Tx tx(*this, true);
  if (!owner.empty()) {
    sqlite3_stmt* st = st_->find_queue;
    StmtScope scope(st);
    const std::string owner_name = lower_ascii(owner);
    bind_text(st, 1, owner_name, "create queue");
    if (!step_row(st, "create queue")) {
      throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue " + owner_name + " not found");
    }
  }
  int64_t id = 0;
  {
    sqlite3_stmt* st = st_->insert_queue;
    StmtScope scope(st);
    bind_text(st, 1, name, "create queue");
    bind_text(st, 2, q.label, "create queue");
    bind_int(st, 3, q.authenticate ? 1 : 0, "create queue");
    bind_int(st, 4, q.transactional ? 1 : 0, "create queue");
    bind_int(st, 5, q.created != 0 ? q.created : now_seconds(), "create queue");
    bind_text(st, 6, q.trust, "create queue");
    bind_int(st, 7, q.journal ? 1 : 0, "create queue");
    bind_int(st, 8, q.quota, "create queue");
    bind_int(st, 9, q.journal_quota, "create queue");
    bind_int(st, 10, q.base_priority, "create queue");
    bind_int(st, 11, q.privacy, "create queue");
    bind_blob(st, 12, q.type, "create queue");
    bind_text(st, 13, q.multicast_address, "create queue");
    const int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) fail(rc, "create queue");
    if (sqlite3_changes(db_) == 0) throw Error(MQ_ERROR_QUEUE_EXISTS, "queue " + name + " exists");
    id = sqlite3_last_insert_rowid(db_);
  }
  int64_t pos = 0;
  auto add_signer = [&](const char* kind, const std::string& value) {
    sqlite3_stmt* st = st_->insert_signer;
    StmtScope scope(st);
    bind_int(st, 1, id, "create queue");
    bind_int(st, 2, pos++, "create queue");
    bind_text(st, 3, kind, "create queue");
    bind_text(st, 4, value, "create queue");
    const int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) fail(rc, "create queue");
  };
  for (const std::string& s : q.signer_subjects) add_signer("subject", s);
  for (const std::string& s : q.signer_sids) add_signer("sid", s);
  if (!security.empty()) write_security_locked(id, security);
  tx.commit();
}

// Queue security descriptors: statements prepared per call (a queue is opened far less often
// than a message moves), so they stay out of the shared statement table.
void Store::write_security_locked(int64_t queue_id, std::span<const uint8_t> security) {
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> st(
      prepare("INSERT OR REPLACE INTO queue_security(queue_id, descriptor) VALUES(?1, ?2)",
              "prepare write queue security"),
      sqlite3_finalize);
  bind_int(st.get(), 1, queue_id, "write queue security");
  bind_blob(st.get(), 2, security, "write queue security");
  step_done(st.get(), "write queue security");
}

std::optional<Bytes> Store::queue_security(int64_t queue_id) {
  std::lock_guard lock(mu_);
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> st(
      prepare("SELECT descriptor FROM queue_security WHERE queue_id = ?1",
              "prepare read queue security"),
      sqlite3_finalize);
  bind_int(st.get(), 1, queue_id, "read queue security");
  if (!step_row(st.get(), "read queue security")) return std::nullopt;
  return column_bytes(st.get(), 0);
}

bool Store::set_queue_security(int64_t queue_id, std::span<const uint8_t> security,
                               const std::optional<Bytes>& expected) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  Tx tx(*this, true);
  {
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> st(
        prepare("SELECT 1 FROM queues WHERE id = ?1", "prepare find queue"), sqlite3_finalize);
    bind_int(st.get(), 1, queue_id, "set queue security");
    if (!step_row(st.get(), "set queue security")) {
      throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue " + std::to_string(queue_id) + " is gone");
    }
  }
  {
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> st(
        prepare("SELECT descriptor FROM queue_security WHERE queue_id = ?1",
                "prepare read queue security"),
        sqlite3_finalize);
    bind_int(st.get(), 1, queue_id, "read queue security");
    std::optional<Bytes> now;
    if (step_row(st.get(), "read queue security")) now = column_bytes(st.get(), 0);
    if (now != expected) return false;  // changed since the caller read it; the Tx rolls back
  }
  write_security_locked(queue_id, security);
  tx.commit();
  return true;
}

void Store::delete_queue(std::string_view name_in, std::string_view companion) {
  std::lock_guard lock(mu_);
  Tx tx(*this, true);
  std::vector<int64_t> ids;
  // The queue named `name` and its subqueues ("<name>;<sub>"); false when there is no such queue.
  auto collect = [&](const std::string& name) {
    {
      sqlite3_stmt* st = st_->find_queue;
      StmtScope scope(st);
      bind_text(st, 1, name, "delete queue");
      if (!step_row(st, "delete queue")) return false;
      ids.push_back(sqlite3_column_int64(st, 0));
    }
    using Stmt = std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)>;
    Stmt subs(
        // Byte-exact prefix: substr() of TEXT counts characters, ?2 is a byte count.
        prepare("SELECT id FROM queues WHERE substr(CAST(name AS BLOB), 1, ?2) = CAST(?1 AS BLOB)",
                "prepare list subqueues"),
        sqlite3_finalize);
    StmtScope scope(subs.get());
    const std::string prefix = name + ";";  // bound without a copy: must outlive the step
    bind_text(subs.get(), 1, prefix, "list subqueues");
    bind_int(subs.get(), 2, static_cast<int64_t>(name.size() + 1), "list subqueues");
    while (step_row(subs.get(), "list subqueues"))
      ids.push_back(sqlite3_column_int64(subs.get(), 0));
    return true;
  };
  const std::string name = lower_ascii(name_in);
  if (!collect(name)) throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue " + name + " not found");
  if (!companion.empty()) collect(lower_ascii(companion));  // absent: nothing to delete
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> delete_security(
      prepare("DELETE FROM queue_security WHERE queue_id = ?1", "prepare delete queue security"),
      sqlite3_finalize);
  for (const int64_t each : ids) {
    for (sqlite3_stmt* st :
         {delete_security.get(), st_->delete_queue_messages, st_->delete_queue_claims,
          st_->delete_queue_signers, st_->delete_queue_delivered, st_->delete_queue_arrived,
          st_->delete_queue}) {
      StmtScope scope(st);
      bind_int(st, 1, each, "delete queue");
      const int rc = sqlite3_step(st);
      if (rc != SQLITE_DONE) fail(rc, "delete queue");
    }
  }
  {
    std::lock_guard d(dmu_);
    for (const int64_t each : ids) {
      ready_.erase(each);
      windows_.erase(each);
    }
    forget_claimed_locked(std::nullopt);
  }
  tx.commit();
}

namespace {

// A change of queue settings, for SettingsSignal: begun before the write transaction, ended
// after it. When the store's own mapping is off (it could not be opened with the store), the
// file is tried again here, so that a change is still signalled to the processes that have it.
class SettingsChange {
 public:
  SettingsChange(SettingsSignal* own, const std::filesystem::path& dir) : signal_(own) {
    if (signal_ == nullptr || !signal_->on()) {
      fresh_.emplace(dir);
      signal_ = &*fresh_;
    }
    if (!signal_->on()) {
      // Other processes may keep what they read under the signal: an uncounted change would
      // stay unseen by them (review 5, finding 3).
      throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                  "cannot signal a change of queue settings to the store's other processes: " +
                      (dir / SettingsSignal::kFileName).string() +
                      " must be a regular file of the store's owner with one link, not "
                      "writable by group or others, and the file system must have room for "
                      "4 KiB; stop the store's processes, then fix or remove that file");
    }
    signal_->begin();
  }
  ~SettingsChange() { signal_->end(); }
  SettingsChange(const SettingsChange&) = delete;
  SettingsChange& operator=(const SettingsChange&) = delete;

 private:
  std::optional<SettingsSignal> fresh_;
  SettingsSignal* signal_;
};

}  // namespace

std::optional<int64_t> Store::quota_locked(int64_t queue_id) {
  sqlite3_stmt* q = st_->quota;
  StmtScope scope(q);
  bind_int(q, 1, queue_id, "read quota");
  if (!step_row(q, "read quota")) return std::nullopt;  // gone: the append reports it
  const int64_t quota = sqlite3_column_int64(q, 0);
  if (quota < 0 || quota >= 0xFFFFFFFF) return std::nullopt;  // INFINITE
  return quota;
}

bool Store::has_quota(int64_t queue_id) {
  const std::optional<uint64_t> gen = settings_ ? settings_->stable() : std::nullopt;
  if (gen) {
    std::lock_guard lock(quota_mu_);
    if (quota_gen_ == *gen) {
      for (const auto& [id, has] : quota_known_) {
        if (id == queue_id) return has;
      }
    }
  }
  bool has = false;
  {
    std::lock_guard lock(mu_);
    quota_reads_.fetch_add(1, std::memory_order_relaxed);
    has = quota_locked(queue_id).has_value();
  }
  if (gen) {
    // Read after `gen` was loaded: valid for as long as the generation stays `gen`.
    std::lock_guard lock(quota_mu_);
    if (quota_gen_ != *gen) {
      quota_known_.clear();
      quota_gen_ = *gen;
    }
    auto it = std::find_if(quota_known_.begin(), quota_known_.end(),
                           [&](const auto& known) { return known.first == queue_id; });
    if (it != quota_known_.end()) {
      it->second = has;
    } else if (quota_known_.size() < 1024) {  // bounded: a process with more queues reads them
      quota_known_.emplace_back(queue_id, has);
    }
  }
  return has;
}

std::optional<uint64_t> Store::quota_room(int64_t queue_id) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  const std::optional<int64_t> quota = quota_locked(queue_id);
  if (!quota) return std::nullopt;
  sqlite3_stmt* st = st_->bytes;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, "sum message sizes");
  const int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) fail(rc, "sum message sizes");
  const auto stored = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  const uint64_t limit = static_cast<uint64_t>(*quota) * 1024;
  return stored >= limit ? 0 : limit - stored;
}

void Store::update_queue(const QueueInfo& before, const QueueInfo& q) {
  // Only what differs from the caller's snapshot is written, into the queue the snapshot was
  // read from (by id): a concurrent change of another property is kept, and a queue deleted and
  // re-created under the same name since is not given the old queue's settings.
  const int64_t changed =
      (q.label != before.label ? 1 : 0) | (q.authenticate != before.authenticate ? 2 : 0) |
      (q.journal != before.journal ? 4 : 0) | (q.quota != before.quota ? 8 : 0) |
      (q.journal_quota != before.journal_quota ? 16 : 0) |
      (q.base_priority != before.base_priority ? 32 : 0) | (q.privacy != before.privacy ? 64 : 0) |
      (q.type != before.type ? 128 : 0) |
      (q.multicast_address != before.multicast_address ? 256 : 0);
  std::lock_guard lock(mu_);
  // Other processes' has_quota read the quota again once this change ended (commit or not).
  SettingsChange change(settings_.get(), dir_);
  Tx tx(*this, true);
  sqlite3_stmt* st = st_->update_queue;
  StmtScope scope(st);
  bind_int(st, 1, before.id, "update queue");
  bind_text(st, 2, q.label, "update queue");
  bind_int(st, 3, q.authenticate ? 1 : 0, "update queue");
  bind_int(st, 4, q.journal ? 1 : 0, "update queue");
  bind_int(st, 5, q.quota, "update queue");
  bind_int(st, 6, q.journal_quota, "update queue");
  bind_int(st, 7, q.base_priority, "update queue");
  bind_int(st, 8, q.privacy, "update queue");
  bind_blob(st, 9, q.type, "update queue");
  bind_text(st, 10, q.multicast_address, "update queue");
  bind_int(st, 11, q.modified != 0 ? q.modified : now_seconds(), "update queue");
  bind_int(st, 12, changed, "update queue");
  if (step_changes(st, "update queue") == 0) {
    throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue " + q.name + " not found");
  }
  tx.commit();
}

size_t Store::purge(int64_t queue_id) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  Tx tx(*this, true);
  sqlite3_stmt* st = st_->delete_queue_messages;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, "purge queue");
  const int n = step_changes(st, "purge queue");
  {
    StmtScope claims(st_->delete_queue_claims);
    bind_int(st_->delete_queue_claims, 1, queue_id, "purge queue");
    step_changes(st_->delete_queue_claims, "purge queue");
  }
  {
    std::lock_guard d(dmu_);
    ready_.erase(queue_id);  // what this process claimed is gone
    forget_claimed_locked(queue_id);
  }
  tx.commit();
  return static_cast<size_t>(n);
}

std::optional<QueueInfo> Store::find_queue(std::string_view name_in) {
  const std::string name = lower_ascii(name_in);
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = st_->find_queue;
  StmtScope scope(st);
  bind_text(st, 1, name, "find queue");
  if (!step_row(st, "find queue")) return std::nullopt;
  QueueInfo q = read_queue(st);
  sqlite3_reset(st);
  read_signers(q);
  return q;
}

std::vector<QueueInfo> Store::list_queues() {
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = st_->list_queues;
  StmtScope scope(st);
  std::vector<QueueInfo> out;
  while (step_row(st, "list queues")) {
    out.push_back(read_queue(st));
  }
  sqlite3_reset(st);
  for (QueueInfo& q : out) read_signers(q);
  return out;
}

int Store::step_changes(sqlite3_stmt* st, const char* what) {
  const int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) fail(rc, what);
  return sqlite3_changes(db_);
}

int64_t Store::append_locked(int64_t queue_id, int priority, std::span<const uint8_t> envelope,
                             int64_t now) {
  sqlite3_stmt* st = st_->insert_message;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, "append message");
  bind_int(st, 2, priority, "append message");
  bind_int(st, 3, now, "append message");
  bind_blob(st, 4, envelope, "append message");
  if (step_changes(st, "append message") == 0) {
    throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue id " + std::to_string(queue_id) + " not found");
  }
  return sqlite3_last_insert_rowid(db_);
}

template <class In, class Each, class After>
auto Store::write_batch(std::span<const In> batch, bool durable, Each each, After after) {
  std::vector<decltype(each(batch.front(), int64_t{}))> out;
  if (batch.empty()) return out;
  out.reserve(batch.size());
  const int64_t now = now_seconds();
  std::lock_guard lock(mu_);
  Tx tx(*this, durable);
  for (const In& a : batch) out.push_back(each(a, now));
  after(now);
  tx.commit();
  return out;
}

int64_t Store::append(int64_t queue_id, int priority, std::span<const uint8_t> envelope,
                      bool durable) {
  return write_batch(
             std::span<const int64_t>(&queue_id, 1), durable,
             [&](int64_t q, int64_t now) { return append_locked(q, priority, envelope, now); },
             [](int64_t) {})
      .front();
}

std::vector<int64_t> Store::append_batch(std::span<const Append> batch, bool durable) {
  return write_batch(
      batch, durable,
      [&](const Append& a, int64_t now) {
        return append_locked(a.queue_id, a.priority, a.envelope, now);
      },
      [](int64_t) {});
}

bool Store::record_id_locked(sqlite3_stmt* st, int64_t queue_id, std::span<const uint8_t> msg_id,
                             int64_t sent_time, const char* what) {
  StmtScope scope(st);
  bind_int(st, 1, queue_id, what);
  bind_blob(st, 2, msg_id, what);
  bind_int(st, 3, sent_time, what);
  return step_changes(st, what) != 0;
}

void Store::prune_ids_locked(sqlite3_stmt* st, int64_t window_seconds, int64_t now, int64_t& last,
                             const char* what) {
  if (window_seconds <= 0 || now - last < 60) return;
  StmtScope scope(st);
  bind_int(st, 1, now - window_seconds, what);
  step_changes(st, what);
  last = now;
}

Arrival Store::append_unique_locked(const UniqueAppend& a, int64_t now) {
  if (!record_id_locked(st_->insert_arrived, a.queue_id, a.msg_id, a.sent_time,
                        "record arrived message id")) {
    return {ArrivalResult::Duplicate, 0};
  }
  return {ArrivalResult::Appended, append_locked(a.queue_id, a.priority, a.envelope, now)};
}

Arrival Store::append_unique(int64_t queue_id, int priority, std::span<const uint8_t> envelope,
                             std::span<const uint8_t> msg_id, int64_t sent_time,
                             int64_t window_seconds, bool durable) {
  const UniqueAppend a{queue_id, priority, envelope, msg_id, sent_time};
  return append_unique_batch(std::span(&a, 1), window_seconds, durable).front();
}

std::vector<Arrival> Store::append_unique_batch(std::span<const UniqueAppend> batch,
                                                int64_t window_seconds, bool durable) {
  return write_batch(
      batch, durable,
      [&](const UniqueAppend& a, int64_t now) { return append_unique_locked(a, now); },
      [&](int64_t now) {
        prune_ids_locked(st_->prune_arrived, window_seconds, now, last_arrived_prune_,
                         "prune arrived message ids");
      });
}

std::optional<StoredMessage> Store::walk(sqlite3_stmt* Statements::*which, int64_t queue_id,
                                         std::optional<std::pair<int, int64_t>> from,
                                         const char* what) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  sqlite3_stmt* st = (*st_).*which;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, what);
  if (from) {
    bind_int(st, 2, from->first, what);
    bind_int(st, 3, from->second, what);
  }
  return read_message(st, what);
}

std::optional<StoredMessage> Store::first(int64_t queue_id) {
  return walk(&Statements::first, queue_id, std::nullopt, "read first message");
}

std::optional<StoredMessage> Store::next_after(int64_t queue_id, int priority, int64_t seq) {
  return walk(&Statements::next_after, queue_id, std::pair{priority, seq}, "read next message");
}

std::optional<StoredMessage> Store::last(int64_t queue_id) {
  return walk(&Statements::last, queue_id, std::nullopt, "read last message");
}

std::optional<StoredMessage> Store::prev_before(int64_t queue_id, int priority, int64_t seq) {
  return walk(&Statements::prev_before, queue_id, std::pair{priority, seq},
              "read previous message");
}

std::optional<StoredMessage> Store::get(int64_t queue_id, int64_t seq) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  sqlite3_stmt* st = st_->get;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, "read message");
  bind_int(st, 2, seq, "read message");
  return read_message(st, "read message");
}

std::optional<StoredMessage> Store::get_any(int64_t seq) {
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = st_->get_any;
  StmtScope scope(st);
  bind_int(st, 1, seq, "read message");
  return read_message(st, "read message");
}

std::optional<std::string> Store::queue_name(int64_t queue_id) {
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = st_->queue_name;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, "read queue name");
  if (!step_row(st, "read queue name")) return std::nullopt;
  return column_text(st, 0);
}

std::vector<StoredMessage> Store::scan_after(int64_t after_seq, size_t limit) {
  std::vector<StoredMessage> out;
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = st_->scan_after;
  StmtScope scope(st);
  bind_int(st, 1, after_seq, "scan messages");
  bind_int(st, 2, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)), "scan messages");
  while (auto m = read_message(st, "scan messages")) out.push_back(std::move(*m));
  return out;
}

bool Store::remove_locked(int64_t queue_id, int64_t seq, const char* what) {
  sqlite3_stmt* st = st_->remove;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, what);
  bind_int(st, 2, seq, what);
  bind_text(st, 3, owner_, what);
  if (step_changes(st, what) == 0) return false;
  StmtScope drop(st_->drop_claim);  // this process's claim of it, if any
  bind_int(st_->drop_claim, 1, seq, what);
  step_changes(st_->drop_claim, what);
  return true;
}

bool Store::remove(int64_t queue_id, int64_t seq) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  Tx tx(*this, false);
  // false: someone else got it first; the Tx rolls back (no-op)
  if (!remove_locked(queue_id, seq, "remove message")) return false;
  tx.commit();
  return true;
}

bool Store::move_message(int64_t queue_id, int64_t seq, int64_t to_queue_id) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  Tx tx(*this, true);
  sqlite3_stmt* st = st_->move_message;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, "move message");
  bind_int(st, 2, seq, "move message");
  bind_int(st, 3, to_queue_id, "move message");
  bind_text(st, 4, owner_, "move message");
  if (step_changes(st, "move message") == 0) return false;  // gone; the Tx rolls back
  {
    StmtScope drop(st_->drop_claim);  // a claim of it does not follow it into the other queue
    bind_int(st_->drop_claim, 1, seq, "move message");
    step_changes(st_->drop_claim, "move message");
  }
  tx.commit();
  return true;
}

size_t Store::remove_many(int64_t queue_id, std::span<const int64_t> seqs) {
  if (seqs.empty()) return 0;
  std::lock_guard lock(mu_);
  apply_pending_locked();
  Tx tx(*this, false);
  size_t removed = 0;
  for (int64_t seq : seqs) removed += remove_locked(queue_id, seq, "remove messages") ? 1 : 0;
  tx.commit();
  return removed;
}

std::optional<StoredMessage> Store::take_first(int64_t queue_id) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  // Peek without the writer lock first: receivers polling an empty queue must not serialise
  // every other process's writes behind them.
  {
    sqlite3_stmt* st = st_->any;
    StmtScope scope(st);
    bind_int(st, 1, queue_id, "take message");
    if (!step_row(st, "take message")) return std::nullopt;
  }
  Tx tx(*this, false);
  std::optional<StoredMessage> m;
  {
    sqlite3_stmt* st = st_->first;
    StmtScope scope(st);
    bind_int(st, 1, queue_id, "take message");
    m = read_message(st, "take message");
  }
  if (!m) return std::nullopt;  // another receiver emptied the queue in between
  if (!remove_locked(queue_id, m->seq, "take message")) {
    // Impossible while we hold the writer lock; refuse rather than hand out a duplicate.
    throw Error(MQ_ERROR_MESSAGE_STORAGE_FAILED, "take message failed: message vanished");
  }
  tx.commit();
  return m;
}

Removal Store::remove_delivered(int64_t queue_id, int64_t seq, std::span<const uint8_t> msg_id,
                                int64_t sent_time, int64_t window_seconds,
                                int64_t journal_queue_id) {
  const int64_t now = now_seconds();
  std::lock_guard lock(mu_);
  apply_pending_locked();
  Tx tx(*this, false);
  if (journal_queue_id != 0) {
    // Kept as the journal's copy: the same row, moved (journals, core/journal.hpp).
    sqlite3_stmt* st = st_->move_message;
    StmtScope scope(st);
    bind_int(st, 1, queue_id, "journal message");
    bind_int(st, 2, seq, "journal message");
    bind_int(st, 3, journal_queue_id, "journal message");
    bind_text(st, 4, owner_, "journal message");
    if (step_changes(st, "journal message") == 0) return Removal::Gone;  // Tx rolls back
    StmtScope drop(st_->drop_claim);
    bind_int(st_->drop_claim, 1, seq, "journal message");
    step_changes(st_->drop_claim, "journal message");
  } else if (!remove_locked(queue_id, seq, "remove message")) {
    return Removal::Gone;  // Tx rolls back
  }
  const bool replay = !record_id_locked(st_->insert_delivered, queue_id, msg_id, sent_time,
                                        "record delivered message id");
  if (replay && journal_queue_id != 0) {
    // A replay is rejected, never delivered: no journal copy of it (review 3, 11).
    sqlite3_stmt* st = st_->remove;
    StmtScope scope(st);
    bind_int(st, 1, journal_queue_id, "unjournal replayed message");
    bind_int(st, 2, seq, "unjournal replayed message");
    bind_text(st, 3, owner_, "unjournal replayed message");
    step_changes(st, "unjournal replayed message");
  }
  // Forget ids whose messages are older than the window (a signed message that old is
  // rejected as "too-old" anyway).
  prune_ids_locked(st_->prune_delivered, window_seconds, now, last_prune_,
                   "prune delivered message ids");
  tx.commit();
  return replay ? Removal::Replay : Removal::Removed;
}

// Transactions' holding queues (store.hpp). The statements are prepared here, not cached:
// transactions are rare, and the receive path's statements stay as they are.
size_t Store::settle(std::span<const Append> sends, std::span<const Settle> moves,
                     std::span<const int64_t> drop) {
  if (sends.empty() && moves.empty() && drop.empty()) return 0;
  const int64_t now = now_seconds();
  std::lock_guard lock(mu_);
  Tx tx(*this, true);
  for (const Append& a : sends) append_locked(a.queue_id, a.priority, a.envelope, now);
  using Stmt = std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)>;
  Stmt del(prepare("DELETE FROM messages WHERE queue_id = ?1 AND seq = ?2", "prepare settle"),
           sqlite3_finalize);
  Stmt forget(
      prepare("DELETE FROM delivered WHERE queue_id = ?1 AND msg_id = ?2", "prepare settle"),
      sqlite3_finalize);
  size_t applied = 0;
  for (const Settle& m : moves) {
    sqlite3_stmt* st = m.to_queue_id != 0 ? st_->move_message : del.get();
    StmtScope scope(st);
    bind_int(st, 1, m.from_queue_id, "settle message");
    bind_int(st, 2, m.seq, "settle message");
    if (m.to_queue_id != 0) {
      bind_int(st, 3, m.to_queue_id, "settle message");
      bind_text(st, 4, owner_, "settle message");  // a row another process claimed stays
    }
    if (step_changes(st, "settle message") == 0 || m.to_queue_id == 0) continue;
    ++applied;
    if (m.forget_id.empty()) continue;
    StmtScope fscope(forget.get());
    bind_int(forget.get(), 1, m.to_queue_id, "forget delivered id");
    bind_blob(forget.get(), 2, m.forget_id, "forget delivered id");
    step_changes(forget.get(), "forget delivered id");
  }
  for (const int64_t id : drop) {
    {
      sqlite3_stmt* st = st_->any;  // a message still there (another thread's, mid-way): kept
      StmtScope scope(st);
      bind_int(st, 1, id, "drop holding queue");
      if (step_row(st, "drop holding queue")) continue;
    }
    for (sqlite3_stmt* st :
         {st_->delete_queue_messages, st_->delete_queue_signers, st_->delete_queue_delivered,
          st_->delete_queue_arrived, st_->delete_queue}) {
      StmtScope scope(st);
      bind_int(st, 1, id, "drop holding queue");
      step_changes(st, "drop holding queue");
    }
  }
  tx.commit();
  return applied;
}

std::vector<std::pair<int64_t, std::string>> Store::queues_with_prefix(std::string_view prefix) {
  std::string end(prefix);  // the first name after every name with the prefix
  if (end.empty() || static_cast<unsigned char>(end.back()) == 0xff) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "queues_with_prefix: unsupported prefix");
  }
  end.back() = static_cast<char>(end.back() + 1);
  const std::string begin(prefix);
  std::lock_guard lock(mu_);
  using Stmt = std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)>;
  Stmt st(prepare("SELECT id, name FROM queues WHERE name >= ?1 AND name < ?2 ORDER BY name",
                  "prepare list queues by prefix"),
          sqlite3_finalize);
  StmtScope scope(st.get());
  bind_text(st.get(), 1, begin, "list queues by prefix");
  bind_text(st.get(), 2, end, "list queues by prefix");
  std::vector<std::pair<int64_t, std::string>> out;
  while (step_row(st.get(), "list queues by prefix")) {
    out.emplace_back(sqlite3_column_int64(st.get(), 0), column_text(st.get(), 1));
  }
  return out;
}

bool Store::was_delivered(int64_t queue_id, std::span<const uint8_t> msg_id) {
  std::lock_guard lock(mu_);
  {
    std::lock_guard d(dmu_);
    for (const PendingDelivery& p : pending_) {  // delivered by this process, not yet recorded
      if (p.queue_id == queue_id && std::ranges::equal(p.msg_id(), msg_id)) {
        return true;
      }
    }
  }
  return recorded_locked(queue_id, msg_id);
}

bool Store::recorded_locked(int64_t queue_id, std::span<const uint8_t> msg_id) {
  const char* what = "look up delivered message id";
  sqlite3_stmt* st = st_->was_delivered;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, what);
  bind_blob(st, 2, msg_id, what);
  return step_row(st, what);
}

size_t Store::message_count(int64_t queue_id) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  sqlite3_stmt* st = st_->count;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, "count messages");
  const int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) fail(rc, "count messages");
  return static_cast<size_t>(sqlite3_column_int64(st, 0));
}

uint64_t Store::message_bytes(int64_t queue_id) {
  std::lock_guard lock(mu_);
  apply_pending_locked();
  sqlite3_stmt* st = st_->bytes;
  StmtScope scope(st);
  bind_int(st, 1, queue_id, "sum message sizes");
  const int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) fail(rc, "sum message sizes");
  return static_cast<uint64_t>(sqlite3_column_int64(st, 0));
}

// PRAGMA data_version changes when another connection commits but not for this connection's own
// commits, so those are counted separately. Both only ever grow, so their sum changes whenever
// either does.
uint64_t Store::version() {
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = st_->data_version;
  StmtScope scope(st);
  const int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) fail(rc, "read data version");
  return static_cast<uint64_t>(sqlite3_column_int64(st, 0)) + own_commits_;
}

bool Store::wait_for_change(uint64_t seen, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::chrono::milliseconds pause{1};
  for (;;) {
    if (version() != seen) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    std::this_thread::sleep_for(std::min(pause, left + std::chrono::milliseconds(1)));
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

void Store::record_rejection(std::string_view queue, std::string_view kind, std::string_view reason,
                             std::span<const uint8_t> envelope, const RejectionBounds& bounds) {
  const std::string name = lower_ascii(queue);
  const int64_t now = now_seconds();
  const std::span<const uint8_t> kept =
      envelope.first(static_cast<size_t>(std::min<uint64_t>(envelope.size(), bounds.body_prefix)));
  auto clamp = [](uint64_t v) {
    return static_cast<int64_t>(std::min<uint64_t>(v, uint64_t{INT64_MAX}));
  };
  std::lock_guard lock(mu_);
  Tx tx(*this, true);
  {
    sqlite3_stmt* st = st_->insert_rejection;
    StmtScope scope(st);
    bind_text(st, 1, name, "record rejection");
    bind_int(st, 2, now, "record rejection");
    bind_text(st, 3, kind, "record rejection");
    bind_text(st, 4, reason, "record rejection");
    bind_blob(st, 5, kept, "record rejection");
    bind_int(st, 6, clamp(envelope.size()), "record rejection");
    const int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) fail(rc, "record rejection");
  }
  auto prune = [&](sqlite3_stmt* st, int64_t arg) {
    StmtScope scope(st);
    bind_int(st, 1, arg, "prune rejections");
    const int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) fail(rc, "prune rejections");
  };
  if (bounds.max_age_seconds > 0) prune(st_->prune_rejections_age, now - bounds.max_age_seconds);
  if (bounds.max_count > 0) prune(st_->prune_rejections_count, clamp(bounds.max_count));
  if (bounds.max_bytes > 0) prune(st_->prune_rejections_bytes, clamp(bounds.max_bytes));
  tx.commit();
}

std::vector<Rejection> Store::rejections(std::string_view queue) {
  const std::string name = lower_ascii(queue);
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = st_->rejections;
  StmtScope scope(st);
  bind_text(st, 1, name, "list rejections");
  std::vector<Rejection> out;
  while (step_row(st, "list rejections")) {
    Rejection r;
    r.id = sqlite3_column_int64(st, 0);
    r.queue = column_text(st, 1);
    r.time = sqlite3_column_int64(st, 2);
    r.kind = column_text(st, 3);
    r.reason = column_text(st, 4);
    r.envelope = column_bytes(st, 5);
    const int64_t size = sqlite3_column_int64(st, 6);
    r.original_size =
        std::max<uint64_t>(size > 0 ? static_cast<uint64_t>(size) : 0, r.envelope.size());
    out.push_back(std::move(r));
  }
  return out;
}

void Store::bind_certificate(std::span<const uint8_t> cert_sha256,
                             std::span<const uint8_t> cert_der, std::span<const uint8_t> sid,
                             uint32_t registered_by_uid) {
  if (cert_sha256.size() != 32) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "certificate digest must be 32 bytes (SHA-256)");
  }
  const int64_t now = now_seconds();
  std::lock_guard lock(mu_);
  Tx tx(*this, true);
  {
    // Inside the write transaction: nobody can bind it between this check and the insert.
    sqlite3_stmt* st = st_->cert_owner;
    StmtScope scope(st);
    bind_blob(st, 1, cert_sha256, "register certificate");
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const Bytes bound = column_bytes(st, 0);
      if (!std::equal(bound.begin(), bound.end(), sid.begin(), sid.end())) {
        throw Error(MQ_ERROR_INVALID_CERTIFICATE,
                    "the certificate is already registered to another SID (registered by uid " +
                        std::to_string(sqlite3_column_int64(st, 1)) +
                        "); a certificate is bound to one SID only and is never rebound");
      }
    } else if (rc != SQLITE_DONE) {
      fail(rc, "register certificate");
    }
  }
  {
    sqlite3_stmt* st = st_->bind_cert;
    StmtScope scope(st);
    bind_blob(st, 1, cert_sha256, "register certificate");
    bind_blob(st, 2, cert_der, "register certificate");
    bind_blob(st, 3, sid, "register certificate");
    bind_int(st, 4, registered_by_uid, "register certificate");
    bind_int(st, 5, now, "register certificate");
    const int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) fail(rc, "register certificate");
  }
  tx.commit();
}

std::optional<Bytes> Store::certificate_sid(std::span<const uint8_t> cert_sha256) {
  std::lock_guard lock(mu_);
  sqlite3_stmt* st = st_->cert_sid;
  StmtScope scope(st);
  bind_blob(st, 1, cert_sha256, "look up certificate");
  if (!step_row(st, "look up certificate")) return std::nullopt;
  return column_bytes(st, 0);
}

// Claimed receives (store.hpp, delivery_log.hpp). Every SQLite write here runs in a BEGIN
// IMMEDIATE transaction of this connection; a log's flock is taken only inside one (by a
// recoverer) or around a read (by its owner), so no one waits for the writer lock while it
// holds a log's lock, and a recoverer polls a log's lock instead of waiting for it.

void Store::apply_delivery_locked(const std::string& owner, int64_t queue_id, int64_t seq,
                                  std::span<const uint8_t> msg_id, int64_t sent_time) {
  const char* what = "apply delivered messages";
  bool deleted = false;
  {
    sqlite3_stmt* st = st_->delete_claimed;
    StmtScope scope(st);
    bind_int(st, 1, seq, what);
    bind_text(st, 2, owner, what);
    deleted = step_changes(st, what) != 0;
  }
  if (!deleted) return;  // purged or already applied
  {
    StmtScope drop(st_->drop_claim);
    bind_int(st_->drop_claim, 1, seq, what);
    step_changes(st_->drop_claim, what);
  }
  record_id_locked(st_->insert_delivered, queue_id, msg_id, sent_time, what);
}

void Store::apply_deliveries_locked(const std::vector<PendingDelivery>& deliveries,
                                    int64_t window_seconds) {
  for (const PendingDelivery& p : deliveries) {
    apply_delivery_locked(owner_, p.queue_id, p.seq, p.msg_id(), p.sent_time);
  }
  prune_ids_locked(st_->prune_delivered, window_seconds, now_seconds(), last_prune_,
                   "prune delivered message ids");
}

void Store::drop_applied_records_locked() {
  if (!log_) return;
  // The log holds a record for each pending_ entry (appended together) and records already
  // applied: it is rewritten from pending_, not read.
  std::vector<DeliveryRecord> kept;
  kept.reserve(pending_.size());
  for (const PendingDelivery& p : pending_) {
    kept.push_back({p.queue_id, p.seq, p.sent_time, Bytes(p.msg_id().begin(), p.msg_id().end())});
  }
  log_->lock();
  try {
    log_->keep_only(kept);
  } catch (...) {
    log_->unlock();
    throw;
  }
  log_->unlock();
}

void Store::apply_pending_locked() {
  std::vector<PendingDelivery> applying;
  int64_t window_seconds = 0;
  {
    std::lock_guard d(dmu_);
    if (pending_.empty()) return;
    applying = pending_;
    window_seconds = pending_window_;
  }
  {
    Tx tx(*this, false);
    apply_deliveries_locked(applying, window_seconds);
    tx.commit();
  }
  std::lock_guard d(dmu_);
  // Only appended to meanwhile: everything else that takes entries holds mu_, as we do.
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(applying.size()));
  drop_applied_records_locked();
}

bool Store::recover_owners_locked(int64_t queue_id, int64_t now, std::vector<HeldLog>& held) {
  const char* what = "recover claims";
  bool changed = false;
  std::vector<std::pair<std::string, int64_t>> owners;
  {
    sqlite3_stmt* st = st_->claim_owners;
    StmtScope scope(st);
    bind_int(st, 1, queue_id, what);
    bind_text(st, 2, owner_, what);
    while (step_row(st, what)) owners.emplace_back(column_text(st, 0), sqlite3_column_int64(st, 1));
  }
  for (const auto& [owner, until] : owners) {
    const bool dead = !claim_owner_alive(owner, owner_fd_);
    if (!dead && until >= now) continue;  // a live owner within its lease
    auto log = DeliveryLog::open(log_kind_, dir_, owner, /*create=*/false);
    if (log->is_open()) {
      held.reserve(held.size() + 1);  // the push below cannot throw with the lock taken
      // A log made before the machine last booted: its owner died with that boot, even when its
      // string looks alive now (another process with the same pid and start tick, or one whose
      // /proc entry is hidden); all its claims date from then, their leases long past. A power
      // loss may have left its lock taken on disk (nobody will release it) and its window past
      // records that never reached the disk; nobody writes it (a holder of the string in this
      // boot replaces it before it claims, recoverers take SQLite's write lock first), so it is
      // read without the lock, what can be trusted applied.
      const bool salvage = log->from_earlier_boot();
      // The owner holds its lock only around a check and an append: microseconds, unless it is
      // stopped; then it is left for another time.
      if (!salvage && !log->try_lock(50)) continue;
      // Unlocked when `held` goes, however it goes.
      held.emplace_back(std::move(log), dead, /*locked=*/!salvage);
      DeliveryLog& l = *held.back().log;
      for (const DeliveryRecord& r : salvage ? l.read_salvage() : l.read_all()) {
        apply_delivery_locked(owner, r.queue_id, r.seq, r.msg_id, r.sent_time);
        changed = true;
      }
    } else if (!dead) {
      continue;  // a live owner creates its log before it claims: never released unapplied
    }
    StmtScope scope(st_->release_owner);
    bind_text(st_->release_owner, 1, owner, what);
    bind_int(st_->release_owner, 2, dead ? INT64_MAX : now, what);
    if (step_changes(st_->release_owner, what) != 0) changed = true;
  }
  return changed;
}

namespace {
std::atomic<Store::TakeOverHook> g_take_over_hook{nullptr};
}  // namespace

void Store::set_take_over_hook(TakeOverHook hook) noexcept { g_take_over_hook.store(hook); }

void Store::take_over_earlier_holder() {
  const char* what = "take over an earlier holder's claims";
  // Read before the lock: a queue another Store of this process makes after it (one of another
  // slot) is above it, never taken.
  int64_t before = 0;
  {
    StmtScope scope(st_->max_queue_id);
    if (step_row(st_->max_queue_id, what)) before = sqlite3_column_int64(st_->max_queue_id, 0);
  }
  {
    // One slot per Store of this process in <store>/claims/owners.lock (one file for every
    // process: nothing to clean up), locked for this Store's life (claim_owner.hpp).
    RealFsIds real_ids;  // the store's files belong to the process's user
    const std::filesystem::path claims = dir_ / "claims";
    if (::mkdir(claims.c_str(), 0700) != 0 && errno != EEXIST) return;
    const int fd =
        ::open((claims / "owners.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    const int slot = take_claim_owner_slot(fd);
    if (slot == -1) {
      const int saved = errno;
      ::close(fd);
      unavailable("no free claim owner slot in " + (claims / "owners.lock").string() +
                  " for another open store of " + dir_.string() + " in this process (at most " +
                  std::to_string(kOwnerSlots) +
                  ": copies of the library, spellings of the path): " + std::strerror(saved));
    }
    if (slot < 0) {
      // No lock support: slot 0's string, nothing taken over (and a second Store of this
      // process would share the string, as before slots).
      ::close(fd);
      return;
    }
    owner_fd_ = fd;
    owner_ = claim_owner_of(::getpid(), slot);
    if (slot == 0) queues_before_owner_ = std::max<int64_t>(1, before);
  }
  // Transactions' holding queues named after this process (core/holding.cpp), given back here by
  // its first Store (slot 0): before this constructor returns, so before any other Store of this
  // process can use one.
  if (const TakeOverHook hook = g_take_over_hook.load();
      hook != nullptr && queues_before_owner_ != 0) {
    hook(*this);
  }
  // Its claims and the deliveries in its log: applied and released as for a dead owner, before
  // this Store claims anything. A log made in an earlier boot is read without its lock (a power
  // loss may have left it taken), what decodes applied, and removed. Another that cannot be
  // locked within a second (a recoverer stopped while holding it) or read (a torn record) is
  // moved aside unapplied, its claims left held until this process ends (as before): this
  // Store's own log starts empty either way.
  try {
    std::unique_ptr<DeliveryLog> log = DeliveryLog::open(log_kind_, dir_, owner_, false);
    bool has_claims = false;
    {
      StmtScope scope(st_->owner_has_claims);
      bind_text(st_->owner_has_claims, 1, owner_, what);
      has_claims = step_row(st_->owner_has_claims, what);
    }
    if (!log->is_open() && !has_claims) return;
    const std::filesystem::path path = DeliveryLog::path_of(log_kind_, dir_, owner_);
    auto set_aside = [&] {
      RealFsIds real_ids;
      std::filesystem::path aside = path;
      aside += ".unusable";
      if (::rename(path.c_str(), aside.c_str()) != 0) {
        unavailable("an earlier delivery log of this process's owner string, " + path.string() +
                    ", can be neither used nor moved aside: " + std::strerror(errno));
      }
    };
    // Made in an earlier boot (the string recurs after a reboot): read without its lock, which a
    // power loss may have left taken, and replaced by a new log (below), never used again.
    const bool salvage = log->is_open() && log->from_earlier_boot();
    if (log->is_open() && !salvage && !log->try_lock(5000)) {
      set_aside();
      return;
    }
    struct Unlock {
      DeliveryLog* log;
      bool locked;
      ~Unlock() {
        if (locked) log->unlock();
      }
    } unlock{log.get(), log->is_open() && !salvage};
    std::vector<DeliveryRecord> records;
    try {
      if (salvage) {
        records = log->read_salvage();
      } else if (log->is_open()) {
        records = log->read_all();
      }
    } catch (const Error& e) {
      if (e.code() == MQ_ERROR_SERVICE_NOT_AVAILABLE) throw;
      set_aside();
      return;
    }
    if (records.empty() && !has_claims) {
      if (salvage) log->remove_file();
      return;
    }
    try {
      // Durable: the log is emptied next, and a commit a power loss undid after that would
      // bring back the earlier holder's claims without the records of what it returned.
      Tx tx(*this, true);
      for (const DeliveryRecord& r : records) {
        apply_delivery_locked(owner_, r.queue_id, r.seq, r.msg_id, r.sent_time);
      }
      StmtScope scope(st_->release_owner);
      bind_text(st_->release_owner, 1, owner_, what);
      bind_int(st_->release_owner, 2, INT64_MAX, what);
      step_changes(st_->release_owner, what);
      tx.commit();
    } catch (const Error& e) {
      // A salvaged log is never used again (its lock may be taken for good): moved aside
      // unapplied, as one that cannot be read, unless the store is unavailable anyway.
      if (salvage && e.code() != MQ_ERROR_SERVICE_NOT_AVAILABLE) set_aside();
      throw;
    }
    // Emptied before this Store claims: an old record must never meet a claim of ours (after a
    // power loss a lost commit's seq is used again).
    if (salvage) {
      log->remove_file();  // this Store's first claim makes a new one
    } else if (log->is_open()) {
      try {
        log->truncate();
      } catch (const Error&) {
        set_aside();
      }
    }
    took_over_ = records.size();
  } catch (const Error& e) {
    // The transaction failed (the store busy past its timeout): left as it was. A store that
    // cannot be opened says so.
    if (e.code() == MQ_ERROR_SERVICE_NOT_AVAILABLE) throw;
  }
}

void Store::keep_log_named_locked() {
  std::lock_guard d(dmu_);
  log_->lock();
  const bool named = log_->still_named();
  log_->unlock();
  if (named) return;
  // Removed by a recoverer that applied it (its records are in the store or, with their
  // claims gone, refused): a new one, before this transaction commits a claim.
  log_ = DeliveryLog::open(log_kind_, dir_, owner_, /*create=*/true);
}

void Store::sweep_unused_logs_locked() {
  const char* what = "sweep delivery logs";
  std::error_code ec;
  std::filesystem::directory_iterator it(dir_ / "claims", ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::optional<std::string> owner = delivery_log_owner(it->path().filename().string());
    if (!owner || *owner == owner_ || claim_owner_alive(*owner, owner_fd_)) continue;
    {
      StmtScope scope(st_->owner_has_claims);
      bind_text(st_->owner_has_claims, 1, *owner, what);
      if (step_row(st_->owner_has_claims, what)) continue;  // recovered by recover_owners_locked
    }
    RealFsIds real_ids;
    (void)::unlink(it->path().c_str());
  }
}

int Store::wal_committed(void* self, sqlite3* db, const char* name, int frames) {
  static_cast<Store*>(self)->last_commit_frames_ = frames;
  // What SQLite's own hook (sqlite3WalDefaultHook) does at wal_autocheckpoint=10000: a passive
  // checkpoint, its result ignored (the next commit tries again).
  if (frames >= kAutoCheckpointFrames) {
    WalReadsFromFile from_file;  // not through the mapping (wal_vfs.hpp)
    sqlite3_wal_checkpoint(db, name);
  }
  return SQLITE_OK;
}

void Store::forget_claimed_locked(std::optional<int64_t> queue_id) {
  if (!queue_id) {
    claimed_ids_.clear();
    return;
  }
  for (auto it = claimed_ids_.begin(); it != claimed_ids_.end();) {
    it = it->second.queue_id == *queue_id ? claimed_ids_.erase(it) : std::next(it);
  }
}

size_t Store::claim_batch_locked(int64_t queue_id, size_t batch, std::chrono::milliseconds lease,
                                 IdPeek peek) {
  const char* what = "claim messages";
  // What this process delivered until now, applied in this transaction; deliveries made while it
  // runs (they need dmu_ only) stay in pending_ for the next one. The log exists before any
  // claim of ours is committed: a recoverer that sees our claims finds it, and takes its lock
  // before it drops them.
  std::vector<PendingDelivery> applying;
  int64_t window_seconds = 0;
  // The queue's claimed messages not delivered yet (a claim ahead runs while some are left, and
  // one may be on its way through the caller's verification) whose ids were peeked: this
  // transaction answers their claim checks again, so that its commit (which ends their answers'
  // anchor) leaves them answered under its own.
  std::vector<std::pair<int64_t, ClaimedId>> still;
  const bool peeking = peek != nullptr && wal_->on();
  const bool answer = peeking && claim_answers_;
  {
    std::lock_guard d(dmu_);
    if (!log_) {
      log_ = DeliveryLog::open(log_kind_, dir_, owner_, /*create=*/true);
      sweep_logs_ = true;
    }
    applying = pending_;
    window_seconds = pending_window_;
    if (answer) {
      for (const auto& [seq, c] : claimed_ids_) {
        if (c.queue_id == queue_id) still.emplace_back(seq, c);
      }
    }
  }
  const int64_t now = now_ms();
  std::vector<HeldLog> held;
  std::deque<StoredMessage> claimed;
  // The claimed messages' peeked ids (per seq), for deliver_claimed; with claim_answers(), also
  // the claim checks this transaction answers for them, and the WAL-index header just before its
  // commit: they hold as of the commit, so they are kept under the header it published if no
  // other commit came in between (below).
  std::vector<std::pair<int64_t, ClaimedId>> peeked;
  std::optional<WalSignal::Header> h0;
  bool drained = false;
  try {
    Tx tx(*this, false);
    // Before the recovery: it must not see the rows the recovery deletes (their logs are removed
    // after the commit).
    keep_log_named_locked();
    if (std::exchange(sweep_logs_, false)) sweep_unused_logs_locked();
    apply_deliveries_locked(applying, window_seconds);
    const bool recovered = recover_owners_locked(queue_id, now, held);
    {
      sqlite3_stmt* st = st_->claim_candidates;
      StmtScope scope(st);
      bind_int(st, 1, queue_id, what);
      bind_int(st, 2, static_cast<int64_t>(batch), what);
      // At most kClaimMaxBytes of envelopes (at least one message): a batch of large
      // messages would otherwise be held in memory, and read under the write lock, whole.
      size_t bytes = 0;
      while (bytes < kClaimMaxBytes) {
        auto m = read_message(st, what);
        if (!m) {
          drained = claimed.size() < batch;  // not the limit: no unclaimed message is left
          break;
        }
        bytes += m->envelope.size();
        claimed.push_back(std::move(*m));
      }
    }
    for (const StoredMessage& m : claimed) {
      sqlite3_stmt* st = st_->insert_claim;
      StmtScope scope(st);
      bind_int(st, 1, m.seq, what);
      bind_int(st, 2, queue_id, what);
      bind_text(st, 3, owner_, what);
      bind_int(st, 4, now + lease.count(), what);
      step_changes(st, what);
    }
    if (peeking) {
      // As of this transaction, each claimed message is held (claimed just now) and not
      // overtaken (the candidates were the first unclaimed messages in receive order, after
      // the recovery released what it released); whether its peeked id was delivered from the
      // queue is one lookup (after this process's deliveries until the copy above were
      // recorded; a later one is still in pending_, where deliver_claimed looks first).
      peeked.reserve(claimed.size());
      for (const StoredMessage& m : claimed) {
        ClaimedId c;
        c.queue_id = queue_id;
        c.priority = m.priority;
        if (!peek(m.envelope, c.id)) continue;
        if (answer) {
          c.held = true;
          c.overtaken = false;
          c.delivered = recorded_locked(queue_id, c.id);
        }
        peeked.emplace_back(m.seq, c);
      }
      // Stable here: this connection holds the WAL write lock, so no one else commits.
      if (answer) h0 = wal_->read();
      // An answer of a message still to be delivered that held (claimed, not overtaken) under
      // the header this transaction began at holds now too, but for `delivered`: nothing was
      // committed since, this transaction deletes only the rows of messages delivered (not
      // these), claims more (no message overtakes by that) and, unless the recovery changed
      // something, releases nothing; it records ids delivered, so that one part is read again
      // (one lookup instead of the claim check's three).
      uint64_t carried = 0;
      for (auto& [seq, c] : still) {
        if (h0 && !recovered && c.mark && *c.mark == *h0 && c.held && !c.overtaken) {
          c.delivered = recorded_locked(queue_id, c.id);
          ++carried;
        } else {
          answer_claim_locked(queue_id, seq, c.id, c);
        }
      }
      answers_carried_.fetch_add(carried, std::memory_order_relaxed);
    }
    last_commit_frames_ = -1;
    tx.commit();
  } catch (...) {
    held.clear();  // unlocked (rolled back already: their records apply again later)
    throw;
  }
  // The anchor: the header after the commit, if it is the one our commit published (its counter
  // exactly one more than before it, its frame count our commit's: any later commit changes
  // both). Then the answers are what a read at that header would give. Read before anything
  // else, to leave a foreign commit little room to end the anchor before it started.
  std::optional<WalSignal::Header> h1;
  if (h0 && last_commit_frames_ >= 0) {
    if (claim_commit_hook_) claim_commit_hook_();
    h1 = wal_->read();
    if (h1 &&
        !WalSignal::one_commit_between(*h0, *h1, static_cast<uint32_t>(last_commit_frames_))) {
      h1.reset();
    }
  } else if (h0) {
    // The transaction wrote nothing (no claim, nothing applied or recovered): what it answered
    // holds at the header it began at, if that is still the current one.
    h1 = wal_->read();
    if (h1 && *h1 != *h0) h1.reset();
  }
  const size_t count = claimed.size();
  {
    std::lock_guard d(dmu_);
    // The claimed messages first: the claims are committed, so nothing below (the logs' work
    // may throw) may leave them out of ready_ (they would stay claimed by this process, never
    // returned, until it exits). Messages another thread has not taken yet may still be there:
    // the batch joins them in receive order (highest priority first, then seq).
    std::deque<StoredMessage>& ready = ready_[queue_id];
    if (ready.empty()) {
      // The answers kept for this queue's earlier claims are dead (this commit changed the
      // header): forgotten.
      forget_claimed_locked(queue_id);
      ready = std::move(claimed);
    } else {
      // Theirs are dead too, but their peeked ids still serve validation reads: kept.
      std::deque<StoredMessage> merged;
      std::merge(std::make_move_iterator(ready.begin()), std::make_move_iterator(ready.end()),
                 std::make_move_iterator(claimed.begin()), std::make_move_iterator(claimed.end()),
                 std::back_inserter(merged), [](const StoredMessage& a, const StoredMessage& b) {
                   return a.priority != b.priority ? a.priority > b.priority : a.seq < b.seq;
                 });
      ready = std::move(merged);
    }
    AheadState& a = ahead_[queue_id];
    a.full = count >= batch;
    a.several = false;
    // Anchored like the answers: the header our commit published, if no other came after it.
    a.drained = drained ? h1 : std::nullopt;
    a.drained_at = std::chrono::steady_clock::now();
    // What the transaction applied leaves pending_: the first entries, still in order (entries
    // are only appended meanwhile; everything else that takes them holds mu_, as we do).
    pending_.erase(pending_.begin(),
                   pending_.begin() + static_cast<std::ptrdiff_t>(applying.size()));
    try {
      // Without an anchor the answers are not kept: the peeked ids serve the validation reads.
      for (auto& [seq, c] : peeked) {
        if (h1) c.mark = h1;
        claimed_ids_.insert_or_assign(seq, c);
      }
      // The earlier ones answered again, those still claimed and not delivered meanwhile (a
      // delivery forgets its entry).
      size_t renewed = 0;
      for (auto& [seq, c] : still) {
        auto it = claimed_ids_.find(seq);
        if (!h1 || it == claimed_ids_.end()) continue;
        c.mark = h1;
        it->second = c;
        ++renewed;
      }
      if (h1) {
        // Counted like a validation read's kept answers (validate_locked sizes its next window
        // from how many of them were used).
        Window& w = windows_[queue_id];
        w.made = peeked.size() + renewed;
        w.used = 0;
        w.lost = 0;
        w.last = h1;
      }
    } catch (...) {
      forget_claimed_locked(queue_id);  // out of memory: these deliveries read, as before
    }
  }
  // Committed: the logs applied are done with (a dead owner's goes, a live one's is emptied
  // while we still hold its lock: it appends only after it saw its claim still held). Our own
  // log's applied records are dropped (if that fails, applying them again changes nothing).
  for (HeldLog& h : held) {
    if (h.dead) {
      h.log->remove_file();
    } else {
      try {
        h.log->truncate();
      } catch (const Error&) {
        // Applying it again later changes nothing: its rows are gone.
      }
    }
  }
  held.clear();  // unlocked
  if (!applying.empty()) {
    std::lock_guard d(dmu_);
    drop_applied_records_locked();
  }
  return count;
}

void Store::release_ready_locked(int64_t queue_id, std::optional<int64_t> also) {
  // A claim ahead already asked for still runs after this (only release_claims moves the
  // generation on): it is the very claim the next claim_next would make, the higher message
  // first.
  std::lock_guard d(dmu_);
  auto it = ready_.find(queue_id);
  const bool none = it == ready_.end() || it->second.empty();
  if (none && !also) {
    forget_claimed_locked(queue_id);
    return;
  }
  auto drop = [this](int64_t seq) {
    sqlite3_stmt* st = st_->release_claim;
    StmtScope scope(st);
    bind_int(st, 1, seq, "release claims");
    bind_text(st, 2, owner_, "release claims");
    step_changes(st, "release claims");
  };
  Tx tx(*this, false);
  if (also) drop(*also);
  if (!none) {
    for (const StoredMessage& m : it->second) drop(m.seq);
  }
  tx.commit();
  if (!none) it->second.clear();
  forget_claimed_locked(queue_id);
}

std::optional<StoredMessage> Store::claim_next(int64_t queue_id, size_t batch,
                                               std::chrono::milliseconds lease, IdPeek peek,
                                               bool ahead) {
  // Receive order (a message of higher priority that arrived after the claim goes first) is
  // deliver_claimed's check, in the read transaction it makes anyway.
  batch = std::max<size_t>(batch, 1);
  bool wake = false;                 // a claim ahead was asked for: wake the claimer
  bool alone = false;                // and only this thread receives from the queue
  std::optional<AheadRequest> mine;  // a claim ahead this thread makes itself (claim_inline_)
  auto take = [&]() -> std::optional<StoredMessage> {
    std::lock_guard d(dmu_);
    std::deque<StoredMessage>& ready = ready_[queue_id];
    if (ready.empty()) return std::nullopt;
    StoredMessage m = std::move(ready.front());
    ready.pop_front();
    if (ahead && claim_ahead_) {
      // Several receiving threads gain (one of them no longer stops the others while it
      // claims); one gains when the claim has another CPU to run on (claim_ahead_one_).
      AheadState& a = ahead_[queue_id];
      const std::thread::id me = std::this_thread::get_id();
      if (a.last != me) {
        a.several = a.several || a.last != std::thread::id();
        a.last = me;
      }
      if ((a.several || claim_ahead_one_) && a.full && !a.asked && ready.size() <= batch) {
        const AheadRequest r{queue_id, batch, lease, peek, a.generation, false};
        if (a.several && claim_inline_) {
          a.asked = true;
          mine = r;
        } else {
          wake = ask_claim_ahead_locked(r);
          alone = !a.several;
        }
      }
    }
    return m;
  };
  // The claimer is woken once this thread holds neither lock: woken while it held mu_ (its own
  // claim, or a wait for the claimer's), the claimer blocked on mu_, and the unlock's wake-up
  // then ran it on this thread's CPU for its whole claim transaction while this thread waited,
  // runnable, with the other CPU idle (docs/performance.md, session 18).
  auto woken = [&](std::optional<StoredMessage> m) {
    if (wake) wake_claimer(alone);
    if (mine) claim_ahead_now(*mine, /*inline_claim=*/true);
    return m;
  };
  // Nothing claimed, and the queue's last claim (this thread's, another's or the claimer's)
  // drained it with nothing committed since: no transaction (a receive that finds the queue
  // empty would otherwise commit one each time, deleting what was delivered meanwhile).
  auto drained = [&] {
    std::lock_guard d(dmu_);
    if (!ready_[queue_id].empty() || !drained_locked(queue_id)) return false;
    if (!pending_.empty() && !apply_asked_) {
      // What it would have deleted is deleted by the claimer: a receiver that stops receiving
      // now would otherwise leave its last deliveries in the queue (counted, holding its
      // quota) until it closes it. No claimer: the transaction after all.
      AheadRequest r;
      r.queue_id = queue_id;
      r.apply_only = true;
      if (!claim_ahead_ || !ask_claimer_locked(r)) return false;
      apply_asked_ = true;
      wake = true;
      alone = !ahead_[queue_id].several;
    }
    drained_answers_.fetch_add(1, std::memory_order_relaxed);
    return true;
  };
  if (auto m = take()) return woken(std::move(m));
  if (drained()) return woken(std::nullopt);
  std::optional<StoredMessage> m;
  {
    std::lock_guard lock(mu_);
    // Another thread's claim may have filed a batch while this one waited; and another thread
    // may take this claim's whole batch before this one does: then claim again.
    for (;;) {
      if ((m = take()) || drained()) break;
      if (claim_batch_locked(queue_id, batch, lease, peek) == 0) {
        m = take();
        break;
      }
    }
  }
  return woken(std::move(m));
}

bool Store::drained_locked(int64_t queue_id) const noexcept {
  const auto it = ahead_.find(queue_id);
  if (it == ahead_.end() || !it->second.drained ||
      std::chrono::steady_clock::now() - it->second.drained_at >= drained_for_) {
    return false;
  }
  const std::optional<WalSignal::Header> now = wal_->read();
  return now && *now == *it->second.drained;
}

bool Store::overtaken(int64_t queue_id, int64_t seq) {
  std::lock_guard lock(mu_);
  bool higher = false;
  {
    sqlite3_stmt* st = st_->overtaken;
    StmtScope scope(st);
    bind_int(st, 1, queue_id, "check receive order");
    bind_int(st, 2, seq, "check receive order");
    if (!step_row(st, "check receive order")) fail(SQLITE_ERROR, "check receive order");
    higher = sqlite3_column_int(st, 0) != 0;
  }
  if (higher) release_ready_locked(queue_id, seq);
  return higher;
}

void Store::unclaim(StoredMessage m) {
  std::lock_guard d(dmu_);
  ready_[m.queue_id].push_front(std::move(m));
}

namespace {
// FNV-1a over the whole id: equal ids give equal keys, and ids that differ only in their last
// bytes (an MSMQ id's counter) give different ones almost always.
uint64_t pending_id_key(std::span<const uint8_t> id) noexcept {
  uint64_t h = 14695981039346656037ULL;
  for (uint8_t b : id) h = (h ^ b) * 1099511628211ULL;
  return h;
}
}  // namespace

Removal Store::deliver_claimed(int64_t queue_id, int64_t seq, std::span<const uint8_t> msg_id,
                               int64_t sent_time, int64_t window_seconds) {
  if (msg_id.size() > kMaxLoggedIdSize) {
    // Not representable in the log: delivered the old way, one transaction (the claim is
    // ours, so the removal is allowed), after the receive order check.
    {
      std::lock_guard d(dmu_);
      claimed_ids_.erase(seq);  // no peeked id matches a long one
    }
    if (overtaken(queue_id, seq)) return Removal::Gone;
    return remove_delivered(queue_id, seq, msg_id, sent_time, window_seconds);
  }
  // First under dmu_ alone: the fast path needs no read, so it goes on while another thread's
  // claim transaction holds the connection. When a read is needed, again under mu_ and dmu_.
  std::unique_lock db(mu_, std::defer_lock);
  std::unique_lock d(dmu_);
  if (!log_) return Removal::Gone;  // never claimed anything
  // What the claim or an earlier validation read answered for this message (its claim check,
  // with the id the claim peeked), forgotten now whatever happens: the message leaves the
  // receive.
  std::optional<ClaimedId> known;
  std::optional<int> priority;  // the message's, as its claim read it (for validate_locked)
  if (auto it = claimed_ids_.find(seq); it != claimed_ids_.end()) {
    if (it->second.queue_id == queue_id) {
      priority = it->second.priority;
      if (it->second.mark) known = it->second;
    }
    claimed_ids_.erase(it);
  }
  ClaimCheck outcome = ClaimCheck::Lost;
  const uint64_t key = pending_id_key(msg_id);
  for (;;) {
    bool copy = false;
    for (const PendingDelivery& p : pending_) {
      if (p.id_key == key && p.queue_id == queue_id && std::ranges::equal(p.msg_id(), msg_id)) {
        copy = true;  // a copy of a message this process delivered: rejected, never delivered
        break;
      }
    }
    if (copy) {
      d.unlock();
      if (db.owns_lock()) db.unlock();
      return remove(queue_id, seq) ? Removal::Replay : Removal::Gone;
    }
    // The log's lock covers the claim check and the append: a recoverer that takes it to apply
    // our log and drop our claims sees either both or neither.
    bool need_read = false;
    log_->lock();
    try {
      // The fast path: the answers hold if they were read for this very id and no connection
      // committed since they were (the header is compared under the log's lock: a recoverer
      // holds it from before it reads our log until after it committed, so either it sees our
      // record or we see its commit). Anything else reads, as before.
      std::optional<WalSignal::Header> now;
      if (known && std::equal(msg_id.begin(), msg_id.end(), known->id.begin(), known->id.end()) &&
          (now = wal_->read()) && *now == *known->mark) {
        outcome = !known->held       ? ClaimCheck::Lost
                  : known->delivered ? ClaimCheck::Replayed
                  : known->overtaken ? ClaimCheck::Preempted
                                     : ClaimCheck::Deliver;
        ++windows_[queue_id].used;
      } else if (db.owns_lock()) {
        outcome = validate_locked(queue_id, seq, msg_id, priority);
      } else {
        need_read = true;
      }
      if (outcome == ClaimCheck::Deliver && !need_read) {
        DeliveryRecord r{queue_id, seq, sent_time, Bytes(msg_id.begin(), msg_id.end())};
        // Nothing may throw after the append: a logged message is delivered (a caller that gets
        // an exception gives the message back to the claimed ones, to be returned again).
        if (pending_.size() == pending_.capacity()) {
          pending_.reserve(std::max<size_t>(16, 2 * pending_.size()));
        }
        log_->append(r);
        PendingDelivery& p = pending_.emplace_back();  // room reserved above: no throw
        p.queue_id = queue_id;
        p.seq = seq;
        p.sent_time = sent_time;
        p.id_key = key;
        p.id_size = static_cast<uint8_t>(msg_id.size());  // at most kMaxLoggedIdSize (above)
        std::copy(msg_id.begin(), msg_id.end(), p.id_bytes.begin());
        pending_window_ = window_seconds;
      }
    } catch (...) {
      log_->unlock();
      throw;
    }
    log_->unlock();
    if (!need_read) break;
    // The read needs the connection: mu_ first (the lock order), then dmu_ again, and everything
    // above once more (another thread may have delivered a copy meanwhile).
    d.unlock();
    db.lock();
    d.lock();
  }
  d.unlock();
  switch (outcome) {
    case ClaimCheck::Deliver:
      return Removal::Removed;
    case ClaimCheck::Lost:
      return Removal::Gone;
    case ClaimCheck::Replayed:
      // A copy of a message delivered from this queue (by any process, recorded): rejected,
      // never delivered.
      if (db.owns_lock()) db.unlock();
      return remove(queue_id, seq) ? Removal::Replay : Removal::Gone;
    case ClaimCheck::Preempted:
      // Receive order: this process's claims on the queue go back (this one's too), and the
      // next claim_next() claims again, the higher one first.
      if (!db.owns_lock()) db.lock();
      release_ready_locked(queue_id, seq);
      return Removal::Gone;
  }
  return Removal::Gone;
}

void Store::answer_claim_locked(int64_t queue_id, int64_t seq, std::span<const uint8_t> id,
                                ClaimedId& out) {
  const char* what = "check claimed message";
  auto ask = [&](sqlite3_stmt* st, bool at_priority) {
    StmtScope scope(st);
    bind_int(st, 1, seq, what);
    bind_text(st, 2, owner_, what);
    bind_int(st, 3, queue_id, what);
    bind_blob(st, 4, id, what);
    if (at_priority) bind_int(st, 5, *out.priority, what);
    if (!step_row(st, what)) fail(SQLITE_ERROR, what);
    out.held = sqlite3_column_int(st, 0) != 0;
    out.delivered = sqlite3_column_int(st, 1) != 0;
    out.overtaken = sqlite3_column_int(st, 2) != 0;
  };
  // Not held at the claim's queue and priority: rare (the message was taken, purged, or its row
  // changed by a writer outside mqsec), and then claim_held's answers are the ones that count.
  if (out.priority && st_->claim_held_at != nullptr) {
    ask(st_->claim_held_at, true);
    if (out.held) return;
  }
  ask(st_->claim_held, false);
}

Store::ClaimCheck Store::validate_locked(int64_t queue_id, int64_t seq,
                                         std::span<const uint8_t> msg_id,
                                         std::optional<int> priority) {
  deliver_reads_.fetch_add(1, std::memory_order_relaxed);
  const char* what = "deliver message";
  // One claim check (claim_held_at, or claim_held when the claim did not peek the message):
  // whether this process still holds the claim and the message exists, whether `id` was
  // delivered from the queue, whether an unclaimed message of higher priority is there.
  auto check = [&](int64_t s, std::span<const uint8_t> id, ClaimedId& out) {
    deliver_checks_.fetch_add(1, std::memory_order_relaxed);
    answer_claim_locked(queue_id, s, id, out);
  };
  Window& w = windows_[queue_id];
  // The header before the read: the answers are kept under it only if it is still the same
  // after the read (then no commit came in between, and the read's snapshot is the database
  // as of this header). The header after the read alone would not do: a commit that lands
  // after the snapshot was taken, before that header is read, would leave answers older than
  // their mark (Claims.ACommitDuringTheValidationReadGivesNoAnchor).
  const std::optional<WalSignal::Header> m0 = wal_->read();
  // The window: doubled when every kept answer of the last validation was used, down to 1
  // (this message alone, today's read) after two in a row of which none was, back to the start
  // when the last validation's header is still current (its answers would have served).
  if (w.size == 1 && m0 && w.last && *w.last == *m0) {
    w.size = kFirstWindow;
    w.lost = 0;
  } else if (w.made > 0) {
    if (w.used >= w.made) {
      w.size = std::min(2 * w.size, kMaxWindow);
      w.lost = 0;
    } else if (w.used == 0) {
      if (++w.lost >= 2) w.size = 1;
    } else {
      // Some used before a commit ended the anchor (a sender now and then): the next window
      // answers about as many as were used, not more, so that each delivery costs at most a
      // couple of claim checks however often others commit (review 7: at a fixed 64 a sender
      // committing every few deliveries made about 16 checks per delivery).
      w.size = std::clamp(std::bit_ceil(w.used + 1), size_t{2}, kMaxWindow);
      w.lost = 0;
    }
  }
  w.made = 0;
  w.used = 0;
  w.last.reset();
  // The next claimed messages whose ids the claim peeked, answered in the same snapshot: only
  // with a header to keep them under.
  std::vector<std::pair<int64_t, ClaimedId*>> next;
  if (m0 && w.size > 1) {
    const std::deque<StoredMessage>& ready = ready_[queue_id];
    next.reserve(std::min(w.size - 1, ready.size()));
    for (const StoredMessage& m : ready) {
      if (next.size() + 1 >= w.size) break;
      auto it = claimed_ids_.find(m.seq);
      if (it != claimed_ids_.end() && it->second.queue_id == queue_id) {
        next.emplace_back(m.seq, &it->second);
      }
    }
  }
  ClaimedId mine;
  mine.priority = priority;
  if (next.empty()) {
    check(seq, msg_id, mine);  // one statement, its own read transaction (as before)
    if (validation_hook_) validation_hook_();
  } else {
    step_done(st_->read_begin, what);
    try {
      check(seq, msg_id, mine);
      if (validation_hook_) validation_hook_();  // the snapshot is taken
      for (auto& [s, c] : next) {
        c->mark.reset();
        check(s, c->id, *c);
      }
      step_done(st_->commit, what);
    } catch (...) {
      if (sqlite3_get_autocommit(db_) == 0) {
        sqlite3_step(st_->rollback);
        sqlite3_reset(st_->rollback);
      }
      throw;
    }
  }
  const std::optional<WalSignal::Header> m1 = wal_->read();
  if (m0 && m1 && *m0 == *m1) {
    for (auto& [s, c] : next) c->mark = m0;
    w.made = next.size();
    w.last = m0;
  }
  return !mine.held       ? ClaimCheck::Lost       // purged, deleted, or released after the lease
         : mine.delivered ? ClaimCheck::Replayed   // delivered from this queue before (recorded)
         : mine.overtaken ? ClaimCheck::Preempted  // an unclaimed message of higher priority
                          : ClaimCheck::Deliver;
}

void Store::release_claims(int64_t queue_id) {
  std::lock_guard lock(mu_);
  {
    std::lock_guard d(dmu_);
    AheadState& a = ahead_[queue_id];
    ++a.generation;  // a claim ahead asked for before is not made
    a.full = false;  // nor asked for again before the next claim of the receiving thread
    a.drained.reset();
  }
  apply_pending_locked();
  release_ready_locked(queue_id);
}

bool Store::ask_claim_ahead_locked(const AheadRequest& r) noexcept {
  if (!ask_claimer_locked(r)) return false;
  ahead_[r.queue_id].asked = true;
  return true;
}

bool Store::ask_claimer_locked(const AheadRequest& r) noexcept {
  try {
    if (claimer_ == nullptr) claimer_ = new Claimer;
    {
      std::lock_guard lock(claimer_->mu);
      if (claimer_->thread == nullptr) {
        claimer_->thread = new std::thread([this] { run_claimer(); });
        // Its name in top -H, ps -L and /proc, set before it runs.
        (void)pthread_setname_np(claimer_->thread->native_handle(), "mqsec-claim");
        // Steered within the CPUs of the thread that opened the store (what claim_ahead_one_
        // was decided on), not those of the receiving thread that starts it (which it would
        // inherit: one pinned to one CPU would keep the claimer on that CPU), when there are two
        // or more.
        const char* steer = secure_getenv("MQSEC_CLAIM_STEER");
        claimer_->cpus = open_cpus_;
        claimer_->steer = (steer == nullptr || std::string_view(steer) != "0") &&
                          CPU_COUNT(&claimer_->cpus) > 1 &&
                          pthread_setaffinity_np(claimer_->thread->native_handle(),
                                                 sizeof claimer_->cpus, &claimer_->cpus) == 0;
      }
      claimer_->asked.push_back(r);
    }
    return true;
  } catch (...) {
    // No thread (out of resources): the receiving thread claims, when its claimed messages ran
    // out, as without claiming ahead.
    return false;
  }
}

void Store::wake_claimer(bool alone) noexcept {
  Claimer& c = *claimer_;
  if (c.steer) {
    // With one receiving thread, off its CPU: woken from here, the scheduler may run the
    // claimer on this CPU, ahead of this thread, for its whole claim transaction while another
    // CPU idles (a machine that reports no shared cache, such as this VM: docs/performance.md,
    // session 18). With several, every CPU again: they are all busy receiving.
    const int cpu = alone ? sched_getcpu() : -1;
    std::lock_guard d(dmu_);
    if (cpu != c.kept_off && (cpu < 0 || CPU_ISSET(cpu, &c.cpus))) {
      cpu_set_t set = c.cpus;
      if (cpu >= 0) CPU_CLR(cpu, &set);
      if (pthread_setaffinity_np(c.thread->native_handle(), sizeof set, &set) == 0) {
        c.kept_off = cpu;
      }
    }
  }
  c.wake.notify_one();
}

void Store::run_claimer() {
  // A new thread has its creator's credentials (an impersonating thread's): the store's files
  // are the process's user's.
  RealFsIds::adopt_for_this_thread();
  Claimer& c = *claimer_;
  std::unique_lock lock(c.mu);
  for (;;) {
    c.wake.wait(lock, [&c] { return c.stop || !c.asked.empty(); });
    if (c.stop) return;
    const AheadRequest r = c.asked.front();
    c.asked.pop_front();
    lock.unlock();
    if (r.apply_only) {
      try {
        std::lock_guard db(mu_);
        apply_pending_locked();
      } catch (...) {
        // Still pending: the next claim transaction, or release_claims, applies them.
      }
      {
        std::lock_guard d(dmu_);
        apply_asked_ = false;
      }
      lock.lock();
      continue;
    }
    claim_ahead_now(r, /*inline_claim=*/false);
    lock.lock();
  }
}

void Store::claim_ahead_now(const AheadRequest& r, bool inline_claim) noexcept {
  bool hand_over = false;  // inline: the claimer thread makes it after all
  try {
    std::unique_lock db(mu_, std::defer_lock);
    if (inline_claim) {
      hand_over = !db.try_lock();
    } else {
      db.lock();
    }
    bool go = !hand_over;
    if (go) {
      std::lock_guard d(dmu_);
      // Not after release_claims(), nor when the receiving thread claimed meanwhile.
      go = ahead_[r.queue_id].generation == r.generation && ready_[r.queue_id].size() <= r.batch;
    }
    if (go) {
      // Only when there is something to claim: an empty claim would still commit (the
      // deliveries it applies), ending the anchor of the answers still to be used.
      sqlite3_stmt* st = st_->any_unclaimed;  // no envelope read
      StmtScope scope(st);
      bind_int(st, 1, r.queue_id, "claim ahead");
      go = step_row(st, "claim ahead");
    }
    if (go) {
      // Inline, SQLite's write lock is taken only if free (another process may hold it for a
      // while): the receiving thread has its message and must not wait for it.
      busy_.no_wait = inline_claim;
      struct Reset {
        bool& flag;
        ~Reset() { flag = false; }  // however the claim ends
      } reset{busy_.no_wait};
      claim_batch_locked(r.queue_id, r.batch, r.lease, r.peek);
      claims_ahead_.fetch_add(1, std::memory_order_release);  // its batch is filed
      if (inline_claim) claims_inline_.fetch_add(1, std::memory_order_release);
    }
  } catch (...) {
    // The claimer thread tries again (inline); its failure is the receiving thread's own claim's,
    // when its claimed messages run out, which reports it.
    hand_over = inline_claim;
  }
  bool wake = false;
  {
    std::lock_guard d(dmu_);
    // Handed over, the request stays asked for until the claimer thread has made it.
    wake = hand_over && ask_claimer_locked(r);
    if (!wake) ahead_[r.queue_id].asked = false;
  }
  if (wake) wake_claimer(/*alone=*/false);
}

void Store::prepare_fork() {
  mu_.lock();
  dmu_.lock();
  if (claimer_ != nullptr) claimer_->mu.lock();
}

void Store::parent_after_fork() {
  if (claimer_ != nullptr) claimer_->mu.unlock();
  dmu_.unlock();
  mu_.unlock();
}

void Store::child_after_fork() {
  // The parent's claimer thread does not exist here, and its condition variable may have had a
  // waiter: both abandoned (a child opens a Store of its own).
  if (claimer_ != nullptr) {
    mqsec::pkcs11::abandon_after_fork(claimer_);
    mqsec::pkcs11::abandon_after_fork(claimer_->thread);
    claimer_->mu.unlock();
    claimer_ = nullptr;
  }
  dmu_.unlock();
  mu_.unlock();
  // The parent's lock of its owner string stays the parent's (the child has its own string).
  if (owner_fd_ >= 0) ::close(owner_fd_);
  owner_fd_ = -1;
}

void Store::close_in_child() noexcept {
  if (db_ == nullptr) return;
  // A transaction open at the fork (a ROLLBACK that failed): closing would roll it back into
  // the shared WAL-index. Left open instead (the child then runs without locks of its own, as
  // before this existed).
  if (sqlite3_get_autocommit(db_) == 0) return;
  // Never a checkpoint or the WAL's removal from here: this copy may win the exclusive lock when
  // no other process holds a lock (the parent gone, or its locks lost), and the child's own
  // Store does what a last close should.
  (void)sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  close_connection();
}

}  // namespace mqsec::transport::local
