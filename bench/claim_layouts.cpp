// mqsec-claim-layouts: measurement M1 of docs/design/segment-store.md (§10.6, stage 0). It
// asks what the claim transaction of a claimed receive would cost per message if the messages'
// bytes lived in append-only segment files instead of SQLite rows, before anyone builds that.
//
// Five ways to drain the same N messages (one queue, one priority, batches of 64 or --batch),
// each on one thread, each timed in process CPU time:
//
//   store     the real Store: claim_next + deliver_claimed, claiming ahead off (every claim
//             transaction runs on this thread), the delivery log and the claim checks included.
//   rows      today's claim transaction as SQL, with the store's schema (v7) and statements: apply
//             the last batch's deliveries (delete the row and its claim, record the id), look
//             for other owners, select the next 64 unclaimed rows with their envelopes, insert
//             64 claims, look up the 64 ids in `delivered`, commit.
//   pointers  "bodies out, rows kept": the same transaction over rows of about 50 bytes naming
//             (file, position, length); the bytes come from one pread per run of adjacent
//             records, each checked against its CRC32C.
//   spans     rows kept (envelopes in them), claims per batch: one `spans` row (queue, owner,
//             first and last seq, lease) per claim instead of a `claims` row per message; the
//             next batch starts after the queue's last span (one priority here). An upper bound
//             of what per-batch claims alone would save: no done bits, no released spans, no
//             per-message claim check (segment-store.md's R5-R8 are not in it).
//   segments  B-min (segment-store.md §1-§2): no row per message. The deliveries set done bits
//             in one `spans` row, a fully done span is retired (the chain's `consumed` moves),
//             the next 64 records from the chain's `claimed_to` become one new span, read with
//             one pread (their end found in an in-memory copy of the segment's index), ids
//             recorded and looked up as today, commit.
//
// What is not in the prototypes: the delivery log and the claim checks' fast path (the same
// code in every layout; they are in `store`), the power-loss recovery, punching, file security.
// Appending (the fill) is not timed. Every variant must return each message exactly once, or
// the program exits 1: a quick run is a ctest (claim_layouts_quick).
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <array>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "src/transport/local/store.hpp"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

constexpr int64_t kPriority = 3;
constexpr int64_t kLeaseMs = 60000;
constexpr int64_t kWindowSeconds = 7 * 86400;
constexpr size_t kIdSize = 20;
constexpr size_t kFileBytes = size_t{4} << 20;  // a segment file holds about 4 MiB
constexpr uint32_t kRecordMagic = 0x5253514d;   // "MQSR"
constexpr size_t kRecordHeader = 32;  // magic, length, crc32c, flags, seq (i64), arrived (i64)
constexpr const char* kOwner = "4242:123456789";

// The store's priority expression (store.cpp, MQSEC_PRIO): the index and the order use it.
#define PRIO                                                                                    \
  "(CASE WHEN typeof(priority) = 'integer' AND priority BETWEEN 0 AND 7 THEN priority ELSE -1 " \
  "END)"

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

uint32_t load32(const uint8_t* p) {
  uint32_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

int64_t load64(const uint8_t* p) {
  int64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// CRC32C (Castagnoli), with SSE 4.2's instruction where the CPU has it (what a segment reader
// would use), else bit by bit.
__attribute__((target("sse4.2"))) uint32_t crc32c_hw(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = ~crc;
  while (n >= 8) {
    uint64_t v = 0;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<uint32_t>(c);
  while (n-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return ~c32;
}

uint32_t crc32c_sw(uint32_t crc, const uint8_t* p, size_t n) {
  uint32_t c = ~crc;
  while (n-- > 0) {
    c ^= *p++;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}

uint32_t crc32c(const uint8_t* p, size_t n) {
  static const bool hw = __builtin_cpu_supports("sse4.2");
  return hw ? crc32c_hw(0, p, n) : crc32c_sw(0, p, n);
}

// A record's bytes in its file: header and envelope, 8-byte aligned.
size_t record_size(size_t len) { return (kRecordHeader + len + 7) & ~size_t{7}; }

struct Message {
  int64_t seq = 0;
  Bytes envelope;
};

// The messages every variant drains: an id (16 bytes per run and a 4-byte counter, like the
// runtime's) and the sent time in the first 28 bytes, the rest random.
struct Workload {
  std::vector<Bytes> envelopes;
  int64_t sent_time = 0;
};

Workload make_workload(size_t count, size_t bytes) {
  std::mt19937_64 rng(20261202);
  Workload w;
  w.sent_time = static_cast<int64_t>(::time(nullptr));
  std::array<uint8_t, 16> guid{};
  for (auto& b : guid) b = static_cast<uint8_t>(rng());
  w.envelopes.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    Bytes e(bytes);
    for (size_t k = 0; k + 8 <= bytes; k += 8) {
      const uint64_t r = rng();
      std::memcpy(e.data() + k, &r, 8);
    }
    std::memcpy(e.data(), guid.data(), guid.size());
    const auto n = static_cast<uint32_t>(i);
    std::memcpy(e.data() + 16, &n, 4);
    std::memcpy(e.data() + kIdSize, &w.sent_time, 8);
    w.envelopes.push_back(std::move(e));
  }
  return w;
}

std::span<const uint8_t> id_of(const Bytes& envelope) { return {envelope.data(), kIdSize}; }

// Every message exactly once, or the variant's result is worthless.
class Tally {
 public:
  explicit Tally(size_t expected) : expected_(expected) {}
  void add(const Bytes& envelope) {
    if (envelope.size() < kIdSize) throw std::runtime_error("a message without an id");
    if (!ids_.emplace(envelope.begin(), envelope.begin() + kIdSize).second) {
      throw std::runtime_error("a message was returned twice");
    }
  }
  void check(const char* variant) const {
    if (ids_.size() != expected_) {
      throw std::runtime_error(std::string(variant) + ": " + std::to_string(ids_.size()) +
                               " messages returned, " + std::to_string(expected_) + " sent");
    }
  }

 private:
  size_t expected_;
  std::set<Bytes> ids_;
};

class Db {
 public:
  explicit Db(const fs::path& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) fail("open");
    sqlite3_busy_timeout(db_, 10000);
    // The store's settings (store.cpp): WAL, NORMAL, secure_delete=FAST, a checkpoint every
    // 10,000 frames (the store's own hook does what this pragma does).
    exec(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA secure_delete=FAST;"
        "PRAGMA wal_autocheckpoint=10000;");
  }
  ~Db() {
    for (sqlite3_stmt* st : statements_) sqlite3_finalize(st);
    sqlite3_close(db_);
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string what = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error(std::string("sqlite: ") + what + " in " + sql);
    }
  }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK) {
      fail(sql);
    }
    statements_.push_back(st);
    return st;
  }
  // Steps a statement that returns no row (or whose rows are not wanted) and resets it.
  int run(sqlite3_stmt* st) {
    int rc = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) fail(sqlite3_sql(st));
    sqlite3_reset(st);
    return sqlite3_changes(db_);
  }
  bool row(sqlite3_stmt* st) {
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) fail(sqlite3_sql(st));
    return false;
  }
  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("sqlite: ") + sqlite3_errmsg(db_) + " (" + what + ")");
  }

 private:
  sqlite3* db_ = nullptr;
  std::vector<sqlite3_stmt*> statements_;
};

void bind(sqlite3_stmt* st, int i, int64_t v) { sqlite3_bind_int64(st, i, v); }
void bind(sqlite3_stmt* st, int i, std::span<const uint8_t> v) {
  sqlite3_bind_blob(st, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}
void bind(sqlite3_stmt* st, int i, const char* v) {
  sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}
template <typename... A>
sqlite3_stmt* with(sqlite3_stmt* st, const A&... args) {
  int i = 0;
  (bind(st, ++i, args), ...);
  return st;
}

// The store's schema v7 tables this transaction touches (store.cpp: migrate_locked and the
// creation), with `envelope` or the pointer columns.
void create_v7_tables(Db& db, bool pointers) {
  db.exec("CREATE TABLE queues(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);");
  db.exec(pointers ? "CREATE TABLE messages(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                     " queue_id INTEGER NOT NULL, priority INTEGER NOT NULL,"
                     " arrived INTEGER NOT NULL, file_no INTEGER NOT NULL, pos INTEGER NOT NULL,"
                     " len INTEGER NOT NULL);"
                   : "CREATE TABLE messages(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                     " queue_id INTEGER NOT NULL, priority INTEGER NOT NULL,"
                     " arrived INTEGER NOT NULL, envelope BLOB NOT NULL);");
  db.exec("CREATE INDEX messages_order ON messages(queue_id, " PRIO
          " DESC, seq);"
          "CREATE TABLE delivered(queue_id INTEGER NOT NULL, msg_id BLOB NOT NULL,"
          " sent_time INTEGER NOT NULL, PRIMARY KEY(queue_id, msg_id)) WITHOUT ROWID;"
          "CREATE INDEX delivered_time ON delivered(sent_time);"
          "CREATE TABLE claims(seq INTEGER PRIMARY KEY, queue_id INTEGER NOT NULL,"
          " owner TEXT NOT NULL, until INTEGER NOT NULL);"
          "CREATE INDEX claims_queue ON claims(queue_id, owner);"
          "CREATE INDEX claims_owner ON claims(owner);"
          "INSERT INTO queues(name) VALUES('bench');");
}

// Ids of earlier deliveries (--delivered): production keeps 7 days of them, a deeper B-tree.
void prefill_delivered(Db& db, size_t count) {
  if (count == 0) return;
  std::mt19937_64 rng(7);
  sqlite3_stmt* ins =
      db.prepare("INSERT INTO delivered(queue_id, msg_id, sent_time) VALUES(?,?,?)");
  db.exec("BEGIN");
  const auto now = static_cast<int64_t>(::time(nullptr));
  for (size_t i = 0; i < count; ++i) {
    std::array<uint8_t, kIdSize> id{};
    for (auto& b : id) b = static_cast<uint8_t>(rng());
    db.run(with(ins, int64_t{1}, std::span<const uint8_t>(id), now));
  }
  db.exec("COMMIT");
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The statements the store's claim transaction runs that every layout keeps: record a delivered
// id, look one up, find other owners (the recovery's first step).
struct IdStatements {
  explicit IdStatements(Db& db)
      : insert_delivered(
            db.prepare("INSERT INTO delivered(queue_id, msg_id, sent_time) VALUES(?1, ?2, ?3)"
                       " ON CONFLICT(queue_id, msg_id) DO NOTHING")),
        was_delivered(db.prepare("SELECT 1 FROM delivered WHERE queue_id = ?1 AND msg_id = ?2")) {}
  // The end of every claim transaction: each claimed id looked up (the claim check's
  // `delivered`, answered by the claim), then the commit.
  void look_up_and_commit(Db& db, const std::vector<Message>& claimed, sqlite3_stmt* commit) const {
    for (const Message& m : claimed) {
      db.row(with(was_delivered, int64_t{1}, id_of(m.envelope)));
      sqlite3_reset(was_delivered);
    }
    db.run(commit);
  }
  sqlite3_stmt* insert_delivered;
  sqlite3_stmt* was_delivered;
};

// Segment files of one chain (queue 1, priority 3), written by the fill, read by `pointers` and
// `segments`. Positions are chain-wide; a record never crosses a file.
class Chain {
 public:
  struct Record {
    int64_t seq;
    int64_t pos;
    size_t len;  // envelope bytes
    int file_no;
  };

  Chain(fs::path dir, const Workload& w) : dir_(std::move(dir)) {
    fs::create_directories(dir_);
    Bytes file;
    int64_t file_start = 0;
    int file_no = 0;
    int64_t seq = 0;
    for (const Bytes& e : w.envelopes) {
      const size_t size = record_size(e.size());
      if (!file.empty() && file.size() + size > kFileBytes) {
        write_file(file_no, file, file_start);
        file_start += static_cast<int64_t>(file.size());
        file.clear();
        ++file_no;
      }
      const size_t at = file.size();
      file.resize(at + size);
      uint8_t* r = file.data() + at;
      const auto len = static_cast<uint32_t>(e.size());
      const uint32_t flags = 0;
      ++seq;
      std::memcpy(r, &kRecordMagic, 4);
      std::memcpy(r + 4, &len, 4);
      std::memcpy(r + 12, &flags, 4);
      std::memcpy(r + 16, &seq, 8);
      std::memcpy(r + 24, &w.sent_time, 8);
      std::memcpy(r + kRecordHeader, e.data(), e.size());
      const uint32_t crc = crc32c(r + 12, kRecordHeader - 12 + e.size());
      std::memcpy(r + 8, &crc, 4);
      records_.push_back({seq, file_start + static_cast<int64_t>(at), e.size(), file_no});
    }
    if (!file.empty()) write_file(file_no, file, file_start);
  }
  ~Chain() {
    for (const File& f : files_) ::close(f.fd);
  }
  Chain(const Chain&) = delete;
  Chain& operator=(const Chain&) = delete;

  const std::vector<Record>& records() const { return records_; }
  struct File {
    int fd;
    int64_t start;
    int64_t end;
  };
  const std::vector<File>& files() const { return files_; }
  int64_t tail() const { return files_.empty() ? 0 : files_.back().end; }
  // The record at or after chain position `pos` (the segment's index: an array of (seq, pos)
  // a reader maps read-only; here the fill's copy of it).
  size_t index_at(int64_t pos) const {
    auto it = std::lower_bound(records_.begin(), records_.end(), pos,
                               [](const Record& r, int64_t p) { return r.pos < p; });
    return static_cast<size_t>(it - records_.begin());
  }

  // Reads [pos, end) of file `file_no` with one pread.
  void read(int file_no, int64_t pos, int64_t end, Bytes& buf) const {
    const File& f = files_.at(static_cast<size_t>(file_no));
    buf.resize(static_cast<size_t>(end - pos));
    const ssize_t n = ::pread(f.fd, buf.data(), buf.size(), pos - f.start);
    if (n != static_cast<ssize_t>(buf.size())) throw std::runtime_error("short segment read");
  }

 private:
  void write_file(int file_no, const Bytes& bytes, int64_t start) {
    const fs::path p = dir_ / ("3-" + std::to_string(file_no) + ".seg");
    const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot create " + p.string());
    if (::pwrite(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size())) {
      ::close(fd);
      throw std::runtime_error("cannot write " + p.string());
    }
    files_.push_back({fd, start, start + static_cast<int64_t>(bytes.size())});
  }

  fs::path dir_;
  std::vector<Record> records_;
  std::vector<File> files_;
};

// One record of a buffer read from a segment: its envelope copied out (as the store copies a
// row's), the CRC checked when asked.
Message take_record(const uint8_t* r, bool check_crc) {
  if (load32(r) != kRecordMagic) throw std::runtime_error("not a record");
  const uint32_t len = load32(r + 4);
  if (check_crc && crc32c(r + 12, kRecordHeader - 12 + len) != load32(r + 8)) {
    throw std::runtime_error("record CRC mismatch");
  }
  Message m;
  m.seq = load64(r + 16);
  m.envelope.assign(r + kRecordHeader, r + kRecordHeader + len);
  return m;
}

// `rows` and `pointers`: today's claim transaction (store.cpp claim_batch_locked,
// apply_delivery_locked, recover_owners_locked's first query), statement for statement.
class RowsLayout {
 public:
  RowsLayout(const fs::path& dir, const Workload& w, size_t delivered, bool pointers,
             bool spans = false)
      : db_(dir / "rows.db"),
        ids_(init(db_, delivered, pointers)),
        pointers_(pointers),
        spans_(spans) {
    if (pointers_) chain_.emplace(dir / "seg", w);
    sqlite3_stmt* ins =
        pointers_ ? db_.prepare(
                        "INSERT INTO messages(queue_id, priority, arrived, file_no, pos, len)"
                        " SELECT id, ?2, ?3, ?4, ?5, ?6 FROM queues WHERE id = ?1")
                  : db_.prepare(
                        "INSERT INTO messages(queue_id, priority, arrived, envelope)"
                        " SELECT id, ?2, ?3, ?4 FROM queues WHERE id = ?1");
    db_.exec("BEGIN");
    for (size_t i = 0; i < w.envelopes.size(); ++i) {
      if (pointers_) {
        const Chain::Record& r = chain_->records()[i];
        db_.run(with(ins, int64_t{1}, kPriority, w.sent_time, int64_t{r.file_no}, r.pos,
                     static_cast<int64_t>(r.len)));
      } else {
        db_.run(with(ins, int64_t{1}, kPriority, w.sent_time,
                     std::span<const uint8_t>(w.envelopes[i])));
      }
    }
    db_.exec("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);");
    delete_claimed_ = db_.prepare(
        "DELETE FROM messages WHERE seq = ?1 AND EXISTS (SELECT 1 FROM claims WHERE seq = ?1"
        " AND owner = ?2)");
    drop_claim_ = db_.prepare("DELETE FROM claims WHERE seq = ?1");
    claim_owners_ = db_.prepare(
        "SELECT owner, min(until) FROM claims WHERE queue_id = ?1 AND owner <> ?2 GROUP BY owner");
    candidates_ = db_.prepare(
        pointers_ ? "SELECT queue_id, seq, " PRIO
                    ", arrived, file_no, pos, len FROM messages WHERE queue_id = ?1 AND NOT"
                    " EXISTS (SELECT 1 FROM claims c WHERE c.seq = messages.seq) ORDER BY " PRIO
                    " DESC, seq LIMIT ?2"
                  : "SELECT queue_id, seq, " PRIO
                    ", arrived, envelope FROM messages WHERE queue_id = ?1 AND NOT"
                    " EXISTS (SELECT 1 FROM claims c WHERE c.seq = messages.seq) ORDER BY " PRIO
                    " DESC, seq LIMIT ?2");
    insert_claim_ =
        db_.prepare("INSERT INTO claims(seq, queue_id, owner, until) VALUES(?1, ?2, ?3, ?4)");
    if (spans_) {
      db_.exec(
          "CREATE TABLE spans(queue_id INTEGER NOT NULL, lo INTEGER NOT NULL,"
          " hi INTEGER NOT NULL, owner TEXT NOT NULL, until INTEGER NOT NULL,"
          " PRIMARY KEY(queue_id, lo)) WITHOUT ROWID;");
      span_held_ =
          db_.prepare("SELECT 1 FROM spans WHERE queue_id = ?1 AND lo = ?2 AND owner = ?3");
      delete_row_ = db_.prepare("DELETE FROM messages WHERE seq = ?1");
      drop_span_ = db_.prepare("DELETE FROM spans WHERE queue_id = ?1 AND lo = ?2");
      claim_owners_ = db_.prepare(
          "SELECT owner, min(until) FROM spans WHERE queue_id = ?1 AND owner <> ?2 GROUP BY owner");
      candidates_ = db_.prepare("SELECT queue_id, seq, " PRIO
                                ", arrived, envelope FROM messages WHERE queue_id = ?1 AND seq > ?3"
                                " ORDER BY " PRIO " DESC, seq LIMIT ?2");
      insert_span_ = db_.prepare(
          "INSERT INTO spans(queue_id, lo, hi, owner, until) VALUES(?1, ?2, ?3, ?4, ?5)");
    }
    begin_ = db_.prepare("BEGIN IMMEDIATE");
    commit_ = db_.prepare("COMMIT");
  }

  // One claim transaction: applies `delivered` (the last batch), claims the next `batch`.
  std::vector<Message> claim(const std::vector<Message>& delivered, size_t batch,
                             int64_t sent_time) {
    db_.run(begin_);
    if (spans_) return claim_spans(delivered, batch, sent_time);
    for (const Message& m : delivered) {
      if (db_.run(with(delete_claimed_, m.seq, kOwner)) == 0) continue;
      db_.run(with(drop_claim_, m.seq));
      db_.run(with(ids_.insert_delivered, int64_t{1}, id_of(m.envelope), sent_time));
    }
    db_.run(with(claim_owners_, int64_t{1}, kOwner));
    std::vector<Message> claimed;
    claimed.reserve(batch);
    std::vector<Chain::Record> where;
    with(candidates_, int64_t{1}, static_cast<int64_t>(batch));
    while (db_.row(candidates_)) {
      Message m;
      m.seq = sqlite3_column_int64(candidates_, 1);
      if (pointers_) {
        where.push_back({m.seq, sqlite3_column_int64(candidates_, 5),
                         static_cast<size_t>(sqlite3_column_int64(candidates_, 6)),
                         sqlite3_column_int(candidates_, 4)});
      } else {
        const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(candidates_, 4));
        m.envelope.assign(p, p + sqlite3_column_bytes(candidates_, 4));
      }
      claimed.push_back(std::move(m));
    }
    sqlite3_reset(candidates_);
    if (pointers_) read_bodies(where, claimed);
    const int64_t until = now_ms() + kLeaseMs;
    for (const Message& m : claimed) {
      db_.run(with(insert_claim_, m.seq, int64_t{1}, kOwner, until));
    }
    ids_.look_up_and_commit(db_, claimed, commit_);
    return claimed;
  }

 private:
  // `spans`: the batch's span checked once and dropped, its rows deleted and ids recorded, the
  // next batch after the last span, one span row for it.
  std::vector<Message> claim_spans(const std::vector<Message>& delivered, size_t batch,
                                   int64_t sent_time) {
    if (!delivered.empty()) {
      const int64_t lo = delivered.front().seq;
      const bool held = db_.row(with(span_held_, int64_t{1}, lo, kOwner));
      sqlite3_reset(span_held_);
      if (held) {
        for (const Message& m : delivered) {
          if (db_.run(with(delete_row_, m.seq)) == 0) continue;
          db_.run(with(ids_.insert_delivered, int64_t{1}, id_of(m.envelope), sent_time));
        }
        db_.run(with(drop_span_, int64_t{1}, lo));
      }
    }
    db_.run(with(claim_owners_, int64_t{1}, kOwner));
    std::vector<Message> claimed;
    claimed.reserve(batch);
    with(candidates_, int64_t{1}, static_cast<int64_t>(batch), last_hi_);
    while (db_.row(candidates_)) {
      Message m;
      m.seq = sqlite3_column_int64(candidates_, 1);
      const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(candidates_, 4));
      m.envelope.assign(p, p + sqlite3_column_bytes(candidates_, 4));
      claimed.push_back(std::move(m));
    }
    sqlite3_reset(candidates_);
    if (!claimed.empty()) {
      last_hi_ = claimed.back().seq;
      db_.run(with(insert_span_, int64_t{1}, claimed.front().seq, last_hi_, kOwner,
                   now_ms() + kLeaseMs));
    }
    ids_.look_up_and_commit(db_, claimed, commit_);
    return claimed;
  }
  static IdStatements init(Db& db, size_t delivered, bool pointers) {
    create_v7_tables(db, pointers);
    prefill_delivered(db, delivered);
    return IdStatements(db);
  }
  // One pread per run of adjacent records in one file, each record's CRC checked.
  void read_bodies(const std::vector<Chain::Record>& where, std::vector<Message>& claimed) {
    size_t i = 0;
    while (i < where.size()) {
      size_t j = i + 1;
      int64_t end = where[i].pos + static_cast<int64_t>(record_size(where[i].len));
      while (j < where.size() && where[j].file_no == where[i].file_no && where[j].pos == end) {
        end += static_cast<int64_t>(record_size(where[j].len));
        ++j;
      }
      chain_->read(where[i].file_no, where[i].pos, end, buf_);
      for (size_t k = i; k < j; ++k) {
        Message m = take_record(buf_.data() + (where[k].pos - where[i].pos), /*check_crc=*/true);
        claimed[k].envelope = std::move(m.envelope);
      }
      i = j;
    }
  }

  Db db_;
  IdStatements ids_;
  bool pointers_;
  bool spans_;
  int64_t last_hi_ = 0;  // spans: the last claimed seq
  sqlite3_stmt* span_held_ = nullptr;
  sqlite3_stmt* delete_row_ = nullptr;
  sqlite3_stmt* drop_span_ = nullptr;
  sqlite3_stmt* insert_span_ = nullptr;
  std::optional<Chain> chain_;
  Bytes buf_;
  sqlite3_stmt* delete_claimed_ = nullptr;
  sqlite3_stmt* drop_claim_ = nullptr;
  sqlite3_stmt* claim_owners_ = nullptr;
  sqlite3_stmt* candidates_ = nullptr;
  sqlite3_stmt* insert_claim_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
};

// `segments`: B-min's claim transaction (segment-store.md §1.3, §2.2), one chain.
class SegmentLayout {
 public:
  SegmentLayout(const fs::path& dir, const Workload& w, size_t delivered)
      : db_(dir / "segments.db"), ids_(init(db_, delivered)), chain_(dir / "seg", w) {
    sqlite3_stmt* seg = db_.prepare(
        "INSERT INTO segments(queue_id, prio, file_no, start, \"end\", first_seq, last_seq)"
        " VALUES(1, ?1, ?2, ?3, ?4, ?5, ?6)");
    db_.exec("BEGIN");
    for (size_t f = 0; f < chain_.files().size(); ++f) {
      const Chain::File& file = chain_.files()[f];
      const size_t first = chain_.index_at(file.start);
      const size_t last = chain_.index_at(file.end) - 1;
      db_.run(with(seg, kPriority, static_cast<int64_t>(f), file.start, file.end,
                   chain_.records()[first].seq, chain_.records()[last].seq));
    }
    sqlite3_stmt* chain = db_.prepare(
        "INSERT INTO chains(queue_id, prio, tail, claimed_to, consumed, next_file, live_count,"
        " live_bytes, unclaimed_count) VALUES(1, ?1, ?2, 0, 0, ?3, ?4, ?2, ?4)");
    db_.run(with(chain, kPriority, chain_.tail(), static_cast<int64_t>(chain_.files().size()),
                 static_cast<int64_t>(w.envelopes.size())));
    db_.exec("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);");
    mark_done_ = db_.prepare(
        "UPDATE spans SET done = done | ?4 WHERE queue_id = ?1 AND prio = ?2 AND start = ?3");
    spans_of_chain_ = db_.prepare(
        "SELECT start, \"end\", n, done FROM spans WHERE queue_id = ?1 AND prio = ?2"
        " ORDER BY start");
    drop_span_ = db_.prepare("DELETE FROM spans WHERE queue_id = ?1 AND prio = ?2 AND start = ?3");
    consume_ = db_.prepare(
        "UPDATE chains SET consumed = ?3, live_count = live_count - ?4, live_bytes = live_bytes -"
        " ?5 WHERE queue_id = ?1 AND prio = ?2");
    drop_segments_ =
        db_.prepare("DELETE FROM segments WHERE queue_id = ?1 AND prio = ?2 AND \"end\" <= ?3");
    span_owners_ = db_.prepare(
        "SELECT owner, min(until) FROM spans WHERE queue_id = ?1 AND owner IS NOT NULL AND"
        " owner <> ?2 GROUP BY owner");
    released_ = db_.prepare(
        "SELECT prio, start, \"end\", n, done FROM spans WHERE queue_id = ?1 AND owner IS NULL"
        " ORDER BY prio DESC, start LIMIT 1");
    overlay_ = db_.prepare(
        "SELECT queue_id, seq, " PRIO
        ", arrived, envelope FROM messages WHERE queue_id = ?1 AND NOT EXISTS (SELECT 1 FROM"
        " claims c WHERE c.seq = messages.seq) ORDER BY " PRIO " DESC, seq LIMIT ?2");
    chains_ = db_.prepare(
        "SELECT prio, claimed_to, tail FROM chains WHERE queue_id = ?1 AND claimed_to < tail"
        " ORDER BY prio DESC");
    gone_ = db_.prepare(
        "SELECT pos FROM gone WHERE queue_id = ?1 AND prio = ?2 AND pos >= ?3 ORDER BY pos"
        " LIMIT ?4");
    segment_at_ = db_.prepare(
        "SELECT file_no, start, \"end\" FROM segments WHERE queue_id = ?1 AND prio = ?2 AND"
        " start <= ?3 ORDER BY start DESC LIMIT 1");
    insert_span_ = db_.prepare(
        "INSERT INTO spans(queue_id, prio, start, \"end\", n, owner, until, done)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)");
    advance_ = db_.prepare(
        "UPDATE chains SET claimed_to = ?3, unclaimed_count = unclaimed_count - ?4"
        " WHERE queue_id = ?1 AND prio = ?2");
    begin_ = db_.prepare("BEGIN IMMEDIATE");
    commit_ = db_.prepare("COMMIT");
  }

  std::vector<Message> claim(const std::vector<Message>& delivered, size_t batch,
                             int64_t sent_time) {
    db_.run(begin_);
    if (!delivered.empty()) apply(delivered, sent_time);
    db_.run(with(span_owners_, int64_t{1}, kOwner));
    db_.run(with(released_, int64_t{1}));
    db_.run(with(overlay_, int64_t{1}, static_cast<int64_t>(batch)));
    std::vector<Message> claimed;
    with(chains_, int64_t{1});
    const bool have = db_.row(chains_);
    const int64_t claimed_to = have ? sqlite3_column_int64(chains_, 1) : 0;
    const int64_t tail = have ? sqlite3_column_int64(chains_, 2) : 0;
    sqlite3_reset(chains_);
    if (have) {
      db_.run(with(gone_, int64_t{1}, kPriority, claimed_to, static_cast<int64_t>(batch)));
      with(segment_at_, int64_t{1}, kPriority, claimed_to);
      if (!db_.row(segment_at_)) throw std::runtime_error("no segment holds the claim position");
      const int file_no = sqlite3_column_int(segment_at_, 0);
      const int64_t file_end = std::min<int64_t>(sqlite3_column_int64(segment_at_, 2), tail);
      sqlite3_reset(segment_at_);
      // The span: up to `batch` records from claimed_to, in this file; its end from the index.
      const size_t first = chain_.index_at(claimed_to);
      const size_t stop = std::min(first + batch, chain_.index_at(file_end));
      const int64_t end = stop < chain_.records().size() ? chain_.records()[stop].pos : file_end;
      chain_.read(file_no, claimed_to, end, buf_);
      claimed.reserve(stop - first);
      for (size_t k = first; k < stop; ++k) {
        claimed.push_back(take_record(buf_.data() + (chain_.records()[k].pos - claimed_to),
                                      /*check_crc=*/false));
      }
      const auto n = static_cast<int64_t>(claimed.size());
      db_.run(with(insert_span_, int64_t{1}, kPriority, claimed_to, end, n, kOwner,
                   now_ms() + kLeaseMs));
      db_.run(with(advance_, int64_t{1}, kPriority, end, n));
      span_ = {claimed_to, claimed.front().seq};
    }
    ids_.look_up_and_commit(db_, claimed, commit_);
    return claimed;
  }

 private:
  static IdStatements init(Db& db, size_t delivered) {
    create_v7_tables(db, /*pointers=*/false);  // the overlay's rows, claims and delivered
    db.exec(
        "CREATE TABLE chains(queue_id INTEGER NOT NULL, prio INTEGER NOT NULL, tail INTEGER"
        " NOT NULL, claimed_to INTEGER NOT NULL, consumed INTEGER NOT NULL, next_file INTEGER"
        " NOT NULL, live_count INTEGER NOT NULL, live_bytes INTEGER NOT NULL, unclaimed_count"
        " INTEGER NOT NULL, PRIMARY KEY(queue_id, prio)) WITHOUT ROWID;"
        "CREATE TABLE segments(queue_id INTEGER NOT NULL, prio INTEGER NOT NULL, file_no INTEGER"
        " NOT NULL, start INTEGER NOT NULL, \"end\" INTEGER NOT NULL, first_seq INTEGER NOT"
        " NULL, last_seq INTEGER NOT NULL, PRIMARY KEY(queue_id, prio, start)) WITHOUT ROWID;"
        "CREATE INDEX segments_seq ON segments(first_seq);"
        "CREATE TABLE spans(queue_id INTEGER NOT NULL, prio INTEGER NOT NULL, start INTEGER NOT"
        " NULL, \"end\" INTEGER NOT NULL, n INTEGER NOT NULL, owner TEXT, until INTEGER NOT"
        " NULL, done INTEGER NOT NULL, PRIMARY KEY(queue_id, prio, start)) WITHOUT ROWID;"
        "CREATE TABLE gone(queue_id INTEGER NOT NULL, prio INTEGER NOT NULL, pos INTEGER NOT"
        " NULL, PRIMARY KEY(queue_id, prio, pos)) WITHOUT ROWID;");
    prefill_delivered(db, delivered);
    return IdStatements(db);
  }
  // The last batch's deliveries: one done-bit update for the span, each id recorded, the span
  // retired when all its bits are set (and with it any segment wholly consumed).
  void apply(const std::vector<Message>& delivered, int64_t sent_time) {
    uint64_t mask = 0;
    for (const Message& m : delivered) mask |= uint64_t{1} << (m.seq - span_.first_seq);
    db_.run(with(mark_done_, int64_t{1}, kPriority, span_.start, static_cast<int64_t>(mask)));
    for (const Message& m : delivered) {
      db_.run(with(ids_.insert_delivered, int64_t{1}, id_of(m.envelope), sent_time));
    }
    int64_t consumed = -1;
    int64_t count = 0;
    int64_t bytes = 0;
    std::vector<int64_t> retired;
    with(spans_of_chain_, int64_t{1}, kPriority);
    while (db_.row(spans_of_chain_)) {
      const int64_t n = sqlite3_column_int64(spans_of_chain_, 2);
      const auto done = static_cast<uint64_t>(sqlite3_column_int64(spans_of_chain_, 3));
      const uint64_t all = n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
      if ((done & all) != all) break;
      retired.push_back(sqlite3_column_int64(spans_of_chain_, 0));
      consumed = sqlite3_column_int64(spans_of_chain_, 1);
      count += n;
      bytes += consumed - retired.back();
    }
    sqlite3_reset(spans_of_chain_);
    for (int64_t start : retired) db_.run(with(drop_span_, int64_t{1}, kPriority, start));
    if (consumed >= 0) {
      db_.run(with(consume_, int64_t{1}, kPriority, consumed, count, bytes));
      db_.run(with(drop_segments_, int64_t{1}, kPriority, consumed));
    }
  }

  struct Span {
    int64_t start = 0;
    int64_t first_seq = 0;
  };
  Db db_;
  IdStatements ids_;
  Chain chain_;
  Bytes buf_;
  Span span_;
  sqlite3_stmt* mark_done_ = nullptr;
  sqlite3_stmt* spans_of_chain_ = nullptr;
  sqlite3_stmt* drop_span_ = nullptr;
  sqlite3_stmt* consume_ = nullptr;
  sqlite3_stmt* drop_segments_ = nullptr;
  sqlite3_stmt* span_owners_ = nullptr;
  sqlite3_stmt* released_ = nullptr;
  sqlite3_stmt* overlay_ = nullptr;
  sqlite3_stmt* chains_ = nullptr;
  sqlite3_stmt* gone_ = nullptr;
  sqlite3_stmt* segment_at_ = nullptr;
  sqlite3_stmt* insert_span_ = nullptr;
  sqlite3_stmt* advance_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
};

// Drains a prototype: claim, "deliver" every claimed message (the next claim applies them).
template <typename Layout>
double drain(Layout& layout, const Workload& w, size_t batch, const char* name) {
  Tally tally(w.envelopes.size());
  std::vector<Message> delivered;
  const double t0 = cpu_seconds();
  for (;;) {
    std::vector<Message> claimed = layout.claim(delivered, batch, w.sent_time);
    if (claimed.empty()) break;
    for (const Message& m : claimed) tally.add(m.envelope);
    delivered = std::move(claimed);
  }
  const double t = cpu_seconds() - t0;
  tally.check(name);
  return t;
}

bool peek_id(std::span<const uint8_t> envelope, std::array<uint8_t, 20>& id) noexcept {
  if (envelope.size() < kIdSize) return false;
  std::memcpy(id.data(), envelope.data(), kIdSize);
  return true;
}

// The real store, as the receive path drives it with claiming ahead off.
double drain_store(const fs::path& dir, const Workload& w, size_t batch, size_t delivered) {
  namespace local = mqsec::transport::local;
  ::setenv("MQSEC_CLAIM_AHEAD", "0", 1);
  local::Store store(dir / "store");
  mqsec::transport::QueueInfo q;
  q.name = "bench";
  store.create_queue(q);
  const int64_t queue_id = store.find_queue("bench")->id;
  {
    Db raw(dir / "store" / "mqsec.db");
    prefill_delivered(raw, delivered);
  }
  for (const Bytes& e : w.envelopes) store.append(queue_id, static_cast<int>(kPriority), e, false);
  {
    Db raw(dir / "store" / "mqsec.db");
    raw.exec("PRAGMA wal_checkpoint(TRUNCATE);");
  }
  Tally tally(w.envelopes.size());
  const double t0 = cpu_seconds();
  while (auto m = store.claim_next(queue_id, batch, std::chrono::milliseconds(kLeaseMs), &peek_id,
                                   /*ahead=*/false)) {
    const auto r =
        store.deliver_claimed(queue_id, m->seq, id_of(m->envelope), w.sent_time, kWindowSeconds);
    if (r != mqsec::transport::Removal::Removed) throw std::runtime_error("store: not removed");
    tally.add(m->envelope);
  }
  const double t = cpu_seconds() - t0;
  tally.check("store");
  store.release_claims(queue_id);
  return t;
}

struct Options {
  size_t messages = 20000;
  size_t bytes = 2300;
  size_t batch = 64;
  size_t repeat = 3;
  size_t delivered = 0;
  std::vector<std::string> variants = {"store", "rows", "spans", "pointers", "segments"};
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(
      stderr,
      "mqsec-claim-layouts: %s\n"
      "usage: mqsec-claim-layouts [--messages N] [--bytes B] [--repeat R]"
      " [--batch N] [--delivered K] [--variants L]"
      " [--quick]\n"
      "  --messages N   messages drained per variant and round (default 20000)\n"
      "  --bytes B      envelope bytes per message (default 2300, an RSA-2048 signed"
      " message)\n"
      "  --repeat R     rounds, the variants in turn (default 3)\n"
      "  --batch N      messages per claim transaction, 1-64 (default 64)\n"
      "  --delivered K  ids already in `delivered` (production keeps 7 days; default"
      " 0)\n"
      "  --variants L   some of store,rows,spans,pointers,segments (default all; the ratios"
      " need rows)\n"
      "  --quick        500 messages, one round (the ctest)\n",
      why);
  std::exit(2);
}

size_t number(const char* flag, const char* v) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = v ? std::strtoull(v, &end, 10) : 0;
  if (!v || *v == '\0' || *end != '\0' || errno != 0 || n == 0 || n > 100000000) {
    usage((std::string(flag) + " needs a positive number").c_str());
  }
  return static_cast<size_t>(n);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--messages") {
      o.messages = number("--messages", v), ++i;
    } else if (a == "--bytes") {
      o.bytes = number("--bytes", v), ++i;
      if (o.bytes < 64) usage("--bytes must be at least 64");
    } else if (a == "--repeat") {
      o.repeat = number("--repeat", v), ++i;
    } else if (a == "--batch") {
      o.batch = number("--batch", v), ++i;
      if (o.batch > 64) usage("--batch is at most 64 (a span's done bits)");
    } else if (a == "--delivered") {
      o.delivered = number("--delivered", v), ++i;
    } else if (a == "--variants") {
      if (!v) usage("--variants needs a list");
      o.variants.clear();
      std::string list = v;
      ++i;
      for (size_t at = 0; at <= list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        const std::string name = list.substr(at, comma - at);
        if (name != "store" && name != "rows" && name != "spans" && name != "pointers" &&
            name != "segments") {
          usage(("unknown variant " + name).c_str());
        }
        o.variants.push_back(name);
        at = comma + 1;
      }
    } else if (a == "--quick") {
      o.messages = 500;
      o.repeat = 1;
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::string tmpl = (fs::temp_directory_path() / "mqsec-claim-layouts.XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mqsec-claim-layouts: mkdtemp");
    return 1;
  }
  const fs::path root = tmpl;
  int rc = 0;
  try {
    const Workload w = make_workload(o.messages, o.bytes);
    std::map<std::string, std::vector<double>> us;  // CPU us per message, per round
    for (size_t round = 0; round < o.repeat; ++round) {
      for (const std::string& name : o.variants) {
        const fs::path dir = root / (name + "-" + std::to_string(round));
        fs::create_directories(dir);
        double t = 0;
        const std::string& n = name;
        if (n == "store") {
          t = drain_store(dir, w, o.batch, o.delivered);
        } else if (n == "segments") {
          SegmentLayout l(dir, w, o.delivered);
          t = drain(l, w, o.batch, name.c_str());
        } else {
          RowsLayout l(dir, w, o.delivered, n == "pointers", n == "spans");
          t = drain(l, w, o.batch, name.c_str());
        }
        us[n].push_back(t * 1e6 / static_cast<double>(o.messages));
        fs::remove_all(dir);
      }
    }
    std::printf(
        "CPU us per message (%zu messages of %zu bytes, batches of %zu, %zu ids already"
        " delivered), per round:\n",
        o.messages, o.bytes, o.batch, o.delivered);
    for (const std::string& name : o.variants) {
      std::printf("  %-9s", name.c_str());
      for (double v : us[name]) std::printf(" %7.2f", v);
      std::vector<double> s = us[name];
      std::sort(s.begin(), s.end());
      std::printf("   median %7.2f\n", s[s.size() / 2]);
    }
    auto median = [&](const char* name) {
      std::vector<double> s = us[name];
      std::sort(s.begin(), s.end());
      return s[s.size() / 2];
    };
    if (us.count("rows") != 0) {
      const double rows = median("rows");
      for (const char* name : {"store", "spans", "pointers", "segments"}) {
        if (us.count(name) == 0) continue;
        const double d = median(name) - rows;
        // The store's figure is its claim and its delivery (log, checks), the others' a claim.
        std::printf("%s / rows (same run, medians): %.3f, %s %s by %.2f us per message\n", name,
                    median(name) / rows,
                    std::string(name) == "store" ? "claim and delivery" : "claim transaction",
                    d > 0 ? "longer" : "shorter", std::abs(d));
      }
    }
    std::printf("all variants returned every message exactly once\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mqsec-claim-layouts: %s\n", e.what());
    rc = 1;
  }
  std::error_code ec;
  fs::remove_all(root, ec);
  return rc;
}
