// Claimed receives of the store (issue 14; src/transport/local/delivery_log.hpp, Store::
// claim_next/deliver_claimed): another process's claims are skipped and cannot be taken, a dead
// owner's or a lapsed lease's claims come back after its delivery log was applied (what it
// returned is never returned again), a purge takes claimed messages away, and this process
// never sees a message it already returned. Each receiver "process" is a forked child with its
// own Store (a claim owner is a Store: claim_owner.hpp).
#include "src/transport/local/flock_delivery_log.hpp"
#include "src/transport/local/store.hpp"
#include "src/transport/local/wal_vfs.hpp"
#include "tests/support/store_queue.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "tests/support/scoped_env.hpp"
#include "tests/support/store_invariants.hpp"

namespace mqsec::transport::local {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

Bytes bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }
std::string text(const Bytes& b) { return std::string(b.begin(), b.end()); }
Bytes id_of(const std::string& body) {
  Bytes id(20, 0);
  std::memcpy(id.data(), body.data(), std::min<size_t>(body.size(), 20));
  return id;
}
// The claim's id peek (Store::claim_next) for these envelopes, which are not MQEV: the same id
// as id_of(text(envelope)), the verified id deliver() passes.
bool peek(std::span<const uint8_t> envelope, std::array<uint8_t, 20>& id) noexcept {
  id.fill(0);
  std::copy_n(envelope.begin(), std::min<size_t>(envelope.size(), id.size()), id.begin());
  return true;
}

// MQSEC_CLAIM_AHEAD set to `value` while a Store is opened (the Store reads it then).
struct ClaimAheadMode : testing::ScopedEnv {
  explicit ClaimAheadMode(const char* value) : ScopedEnv("MQSEC_CLAIM_AHEAD", value) {}
};

// A connection of its own (the stand-in for an older mqsec, a test's raw SQL or an admin's
// sqlite3): its commits run no code of the store.
class RawDb {
 public:
  explicit RawDb(const fs::path& dir, int busy_ms = 10000) {
    if (sqlite3_open_v2((dir / "mqsec.db").c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) !=
        SQLITE_OK) {
      ADD_FAILURE() << "opening the store's database failed";
    }
    sqlite3_busy_timeout(db_, busy_ms);
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << (err ? err : "?");
    }
    sqlite3_free(err);
  }
  // A commit that touches no queue: it only rewrites the WAL-index header.
  void commit_unrelated(int n = 1) {
    exec(
        "INSERT INTO rejections(queue, time, kind, reason, envelope, original_size)"
        " VALUES('other', " +
        std::to_string(n) + ", 'test', 'unrelated', x'00', 1)");
  }
  // A commit that may be refused (SQLITE_BUSY) while someone else writes.
  bool try_exec(const std::string& sql) {
    return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
  }

 private:
  sqlite3* db_ = nullptr;
};

class Claims : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "mqsec-claims-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    root_ = tmpl;
    dir_ = root_ / "store";
    Store s(dir_);
    QueueInfo q;
    q.name = "claimed";
    s.create_queue(q);
    q_ = s.find_queue("claimed")->id;
    for (int i = 0; i < kMessages; ++i) s.append(q_, 3, bytes("m" + std::to_string(i)), false);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  // Delivers a claimed message as the receive path does.
  Removal deliver(Store& s, const StoredMessage& m) {
    return s.deliver_claimed(q_, m.seq, id_of(text(m.envelope)), 1, 0);
  }
  // The next claimed message (a long lease). There must be one: the test fails (an exception
  // gtest reports) when there is none.
  StoredMessage claim(Store& s, int batch = 16) {
    auto m = s.claim_next(q_, batch, 60s, peek);
    if (!m) throw std::runtime_error("no message to claim");
    return std::move(*m);
  }
  // Delivers m0 (its claim anchors the answers of m1..m15) and claims m1: nullopt (and a failed
  // expectation) when either goes otherwise.
  std::optional<StoredMessage> anchored_m1(Store& s) {
    EXPECT_EQ(deliver(s, claim(s)), Removal::Removed);
    auto m1 = s.claim_next(q_, 16, 60s, peek);
    EXPECT_TRUE(m1 && text(m1->envelope) == "m1");
    if (!m1 || text(m1->envelope) != "m1") return std::nullopt;
    return m1;
  }
  // Claims and delivers every message left (batches of 64): the outcomes in receive order.
  std::vector<Removal> deliver_all(Store& s) {
    std::vector<Removal> got;
    while (auto m = s.claim_next(q_, 64, 60s, peek)) got.push_back(deliver(s, *m));
    return got;
  }
  // All kMessages delivered but the last, a copy of m0, refused as a replay.
  static void expect_only_the_copy_refused(const std::vector<Removal>& got) {
    ASSERT_EQ(got.size(), static_cast<size_t>(kMessages));
    EXPECT_EQ(got.back(), Removal::Replay) << "the copy of m0";
    EXPECT_EQ(std::count(got.begin(), got.end(), Removal::Removed), kMessages - 1);
  }
  // A parent and its forked child, a pipe each way: the child tells the parent it reached a
  // point (reached(), one byte the parent's wait_reached() reads), the parent sends the child
  // one byte (send(), read by the child's received(); 0 when the parent is gone).
  struct Handshake {
    int up[2] = {-1, -1};
    int down[2] = {-1, -1};
    Handshake() {
      if (::pipe(up) != 0 || ::pipe(down) != 0) throw std::runtime_error("pipe failed");
    }
    ~Handshake() {
      for (int fd : {up[0], up[1], down[0], down[1]}) {
        if (fd >= 0) ::close(fd);
      }
    }
    Handshake(const Handshake&) = delete;
    Handshake& operator=(const Handshake&) = delete;
    void reached(char c = 'r') { (void)!::write(up[1], &c, 1); }
    // Each side closes its copy of the other side's write end before it first waits: a child
    // whose parent failed (returned, closing its ends) reads the end of the pipe and exits
    // instead of waiting for good, and a parent whose child died early fails instead of
    // hanging. (One child per Handshake.)
    char received() {
      close_once(down[1]);
      char c = 0;
      return ::read(down[0], &c, 1) == 1 ? c : 0;
    }
    bool wait_reached() {
      close_once(up[1]);
      char c = 0;
      return ::read(up[0], &c, 1) == 1;
    }
    static void close_once(int& fd) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
    bool send(char c) { return ::write(down[1], &c, 1) == 1; }
  };
  // A child process that claims (batch 16, lease `lease`), delivers its first message, tells
  // the parent (h.reached()), then waits for a byte: 'k' kills itself (SIGKILL), 'd' tries to
  // deliver its second claimed message and exits 0 if that was refused (Gone), 1 if not.
  pid_t claiming_child(std::chrono::milliseconds lease, Handshake& h) {
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    int rc = 2;
    try {
      Store s(dir_);  // its own connection: another owner
      auto first = s.claim_next(q_, 16, lease, peek);
      auto second = s.claim_next(q_, 16, lease, peek);
      if (first && second && text(first->envelope) == "m0" &&
          deliver(s, *first) == Removal::Removed) {
        h.reached();
        const char c = h.received();
        if (c == 'k') ::raise(SIGKILL);
        if (c != 0) rc = deliver(s, *second) == Removal::Gone ? 0 : 1;
      }
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  }
  void expect_power_loss_log_salvaged(bool looks_alive);
  // "m<from>" .. "m<to - 1>": the bodies of messages in receive order.
  static std::vector<std::string> bodies(int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i < to; ++i) out.push_back("m" + std::to_string(i));
    return out;
  }
  // Delivers `held` (claimed already) and then everything this process can claim: the bodies.
  std::vector<std::string> deliver_then_drain(Store& s, const std::vector<StoredMessage>& held) {
    std::vector<std::string> got;
    for (const StoredMessage& m : held) {
      EXPECT_EQ(deliver(s, m), Removal::Removed) << text(m.envelope);
      got.push_back(text(m.envelope));
    }
    for (std::string& body : drain(s)) got.push_back(std::move(body));
    return got;
  }
  // Receives everything this process can claim now: the bodies.
  std::vector<std::string> drain(Store& s) {
    std::vector<std::string> got;
    while (auto m = s.claim_next(q_, 16, 60s, peek)) {
      EXPECT_EQ(deliver(s, *m), Removal::Removed) << text(m->envelope);
      got.push_back(text(m->envelope));
    }
    return got;
  }

  // Waits for a child process: its exit status, or -1 when it did not exit (a signal).
  static int exit_status(pid_t pid) {
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
  }
  // A Store that claims ahead only while several threads receive (unless the run sets
  // MQSEC_CLAIM_AHEAD itself).
  std::unique_ptr<Store> open_claiming_ahead_for_several() {
    std::optional<ClaimAheadMode> several;
    if (std::getenv("MQSEC_CLAIM_AHEAD") == nullptr) several.emplace("several");
    return std::make_unique<Store>(dir_);
  }
  // Such a Store whose receiving threads claim ahead themselves; nullptr when the run switches
  // claiming ahead or inline claims off (the test skips).
  std::unique_ptr<Store> open_claiming_ahead_inline() {
    if (std::getenv("MQSEC_CLAIM_INLINE") != nullptr) return nullptr;
    auto s = open_claiming_ahead_for_several();
    return s->claim_ahead() ? std::move(s) : nullptr;
  }
  // The next message claimed (batches of 16) by a thread of its own: the caller's next
  // claim_next is then another receiving thread's.
  StoredMessage claim_in_another_thread(Store& s) {
    StoredMessage m;
    std::thread([&] { m = *s.claim_next(q_, 16, 60s, peek, true); }).join();
    return m;
  }
  // With 32 messages in the queue, m0 taken by a thread of its own (m0..m15 claimed): the
  // caller's next claim_next is a second receiving thread's.
  StoredMessage first_of_32_in_another_thread(Store& s) {
    for (int i = kMessages; i < 32; ++i) s.append(q_, 3, bytes("m" + std::to_string(i)), false);
    return claim_in_another_thread(s);
  }
  // With 32 messages in the queue: m0..m15 claimed by one thread, then `foreign` (another
  // connection's change, given m0), then m1 taken by a second thread, which asks for a claim
  // ahead, waited for. m0 and m1, not delivered.
  std::pair<StoredMessage, StoredMessage> claim_ahead_after(
      Store& s, const std::function<void(const StoredMessage& m0)>& foreign) {
    StoredMessage m0 = first_of_32_in_another_thread(s);
    foreign(m0);
    StoredMessage m1 = *s.claim_next(q_, 16, 60s, peek, true);
    wait_for_claims_ahead(s);
    return {std::move(m0), std::move(m1)};
  }
  // Waits (5 s at most) until the store's thread filed `n` claims ahead.
  static void wait_for_claims_ahead(const Store& s, uint64_t n = 1) {
    for (int i = 0; i < 500 && s.claims_ahead() < n; ++i) std::this_thread::sleep_for(10ms);
  }
  // Child processes that never outlive the test, also when an assertion ends it early.
  struct Reaper {
    std::vector<pid_t> live;
    ~Reaper() {
      for (pid_t p : live) {
        ::kill(p, SIGKILL);
        (void)::waitpid(p, nullptr, 0);
      }
    }
  };
  // Waits for a child process: whether SIGKILL ended it.
  static bool killed(pid_t pid) {
    int status = 0;
    return ::waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }

  // A count read with a separate connection (default: the rows of the claims table).
  int sql_count(const char* sql = "SELECT count(*) FROM claims") {
    sqlite3* db = nullptr;
    int n = -1;
    if (sqlite3_open_v2((dir_ / "mqsec.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
        SQLITE_OK) {
      sqlite3_stmt* st = nullptr;
      if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK &&
          sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int(st, 0);
      }
      sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
  }

  // How many reads deliver_claimed makes in this Store's mode: `answered` when the claim answers
  // its own batch (the default), `validated` when only validation reads answer
  // (MQSEC_CLAIM_ANSWERS=0, the suite's "ValidateOnly." run), `always` when every delivery reads
  // (MQSEC_CLAIM_FASTPATH=0, "ReadAlways."). The outcomes must be the same in all three.
  static uint64_t reads(const Store& s, uint64_t answered, uint64_t validated, uint64_t always) {
    return s.claim_answers() ? answered : s.claim_fast_path() ? validated : always;
  }

  static constexpr int kMessages = 20;
  fs::path root_, dir_;
  int64_t q_ = 0;
};

// An owner string is a pid and its start tick since boot: it stays the same across an exec, and
// a process of a later boot can have the very string of one that died (a service started in
// the same order at each boot); so does a Store that replaces an earlier one in a process. The
// new holder finds the earlier one's claims and log as its own, which recover_owners_locked
// skips. The first live Store of the string in a process takes them over when it opens, as from
// a dead owner: its claims come back, the message it returned does not. (Before: they stayed
// claimed while it ran.) The end-to-end case, across an exec: test_transactions.cpp.
TEST_F(Claims, WhatAnEarlierHolderOfTheOwnerStringLeftIsTakenOverNotWaitedFor) {
  {
    Store earlier(dir_);
    StoredMessage m0 = claim(earlier);  // m0..m15 claimed, a 60 s lease
    ASSERT_EQ(text(m0.envelope), "m0");
    ASSERT_EQ(deliver(earlier, m0), Removal::Removed);  // logged, not applied
    // Gone without releasing or applying anything, like a killed process.
  }
  ASSERT_EQ(sql_count("SELECT count(*) FROM claims"), 16);
  Store s(dir_);  // takes over here, before it claims
  EXPECT_EQ(s.took_over_for_test(), 1u) << "m0's record applied";
  EXPECT_EQ(sql_count("SELECT count(*) FROM claims"), 0) << "the earlier holder's claims released";
  EXPECT_TRUE(s.was_delivered(q_, id_of("m0")));
  // Its log is empty before this Store claims anything.
  const auto log = DeliveryLog::open(s.delivery_log_kind(), dir_, claim_owner_of(::getpid()),
                                     /*create=*/false);
  ASSERT_TRUE(log->is_open());
  EXPECT_TRUE(log->read_all().empty());
  std::vector<std::string> want;
  for (int i = 1; i < kMessages; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(drain(s), want) << "its claims came back, exactly once, in order; m0 never";
  EXPECT_EQ(s.message_count(q_), 0u);
}

// The same after a power loss (the string recurs in the next boot): the earlier holder's log
// may have its lock taken on disk for good and records that never reached the disk. It is read
// without its lock, what decodes applied (m0; m1's record was lost, so m1 comes back), then
// removed: this Store's first claim makes a new log, of this boot. Fails without the boot check:
// the log cannot be locked and is moved aside unapplied, the claims stay held (m16.. only).
TEST_F(Claims, WhatAnEarlierHolderOfTheOwnerStringLeftBeforeAPowerLossIsTakenOver) {
  if (Store(dir_).delivery_log_kind() != DeliveryLogKind::Shared) GTEST_SKIP() << "flock logs";
  const BootIdForTest boot("the boot before");
  const fs::path path =
      DeliveryLog::path_of(DeliveryLogKind::Shared, dir_, claim_owner_of(::getpid()));
  std::string image;
  {
    Store earlier(dir_);
    const StoredMessage m0 = claim(earlier);  // m0..m15 claimed
    const StoredMessage m1 = claim(earlier);
    ASSERT_EQ(deliver(earlier, m0), Removal::Removed);
    ASSERT_EQ(deliver(earlier, m1), Removal::Removed);
    const auto log = DeliveryLog::open(DeliveryLogKind::Shared, dir_, earlier.claim_owner(), false);
    log->lock();  // the disk at the power loss: the lock taken
    fs::copy_file(path, root_ / "image");
    log->unlock();
  }
  fs::copy_file(root_ / "image", path, fs::copy_options::overwrite_existing);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 + static_cast<std::streamoff>(kDeliveryRecordSize));  // m1's record: lost
    const std::string zeros(kDeliveryRecordSize, '\0');
    f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    ASSERT_TRUE(f.good());
  }
  set_boot_id_for_test("this boot");
  Store s(dir_);
  EXPECT_EQ(s.took_over_for_test(), 1u) << "m0's record applied";
  EXPECT_EQ(sql_count("SELECT count(*) FROM claims"), 0) << "the earlier holder's claims released";
  EXPECT_FALSE(fs::exists(path)) << "the salvaged log is removed";
  std::vector<std::string> want;
  for (int i = 1; i < kMessages; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(drain(s), want) << "m0 never, m1 again, the rest once, in order";
  const auto log = DeliveryLog::open(DeliveryLogKind::Shared, dir_, s.claim_owner(), false);
  ASSERT_TRUE(log->is_open()) << "a new log, made by the first claim";
  EXPECT_FALSE(log->from_earlier_boot());
  EXPECT_TRUE(log->try_lock(50));
  log->unlock();
}

// An earlier holder's log of this boot that cannot be locked within a second (here another
// process holds its lock) or whose records cannot be read (a live slot that is not a record) is
// moved aside as <log>.unusable, unapplied: the earlier holder's claims stay held while this
// process runs (they are its own string's), the rest of the queue is received, and the Store's
// first claim makes a new log. (docs/operations.md; this path had no test.)
TEST_F(Claims, AnEarlierHoldersLogThatCannotBeUsedIsMovedAsideUnapplied) {
  if (Store(dir_).delivery_log_kind() != DeliveryLogKind::Shared) GTEST_SKIP() << "flock logs";
  for (const bool locked : {true, false}) {
    SCOPED_TRACE(locked ? "its lock held by another process" : "a live slot not a record");
    if (!locked) {
      TearDown();  // a store of its own for the second case
      SetUp();
    }
    const fs::path path =
        DeliveryLog::path_of(DeliveryLogKind::Shared, dir_, claim_owner_of(::getpid()));
    fs::path aside = path;
    aside += ".unusable";
    {
      Store earlier(dir_);
      const StoredMessage m0 = claim(earlier);  // m0..m15
      ASSERT_EQ(deliver(earlier, m0), Removal::Removed);
    }
    Handshake h;
    pid_t holder = -1;
    if (locked) {
      holder = ::fork();
      ASSERT_NE(holder, -1);
      if (holder == 0) {
        int rc = 10;
        try {
          const auto log =
              DeliveryLog::open(DeliveryLogKind::Shared, dir_, claim_owner_of(::getppid()), false);
          log->lock();
          h.reached();
          (void)h.received();
          log->unlock();
          rc = 0;
        } catch (...) {
        }
        ::_exit(rc);
      }
      ASSERT_TRUE(h.wait_reached());
    } else {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(4096);  // m0's record, the first slot
      const std::string junk(8, 'x');
      f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
      ASSERT_TRUE(f.good());
    }
    Store s(dir_);
    if (locked) {
      ASSERT_TRUE(h.send('g'));
      EXPECT_EQ(exit_status(holder), 0);
    }
    EXPECT_EQ(s.took_over_for_test(), 0u);
    EXPECT_TRUE(fs::exists(aside)) << "moved aside";
    EXPECT_EQ(sql_count("SELECT count(*) FROM claims"), 16) << "the earlier claims, unapplied";
    EXPECT_EQ(drain(s), (std::vector<std::string>{"m16", "m17", "m18", "m19"}));
    const auto log = DeliveryLog::open(DeliveryLogKind::Shared, dir_, s.claim_owner(), false);
    ASSERT_TRUE(log->is_open()) << "a new log, made by the first claim";
    ASSERT_TRUE(log->try_lock(50));
    log->unlock();
  }
}

// A second live Store of one process (another copy of the library, another spelling of the
// store's path) is another owner (claim_owner.hpp): it takes the next slot, and nothing over;
// the first keeps its claims and its log.
TEST_F(Claims, ASecondLiveStoreOfTheProcessTakesNothingFromTheFirst) {
  Store first(dir_);
  StoredMessage m0 = claim(first);  // m0..m15
  ASSERT_EQ(deliver(first, m0), Removal::Removed);
  Store second(dir_);
  EXPECT_EQ(first.claim_owner(), claim_owner_of(::getpid()));
  EXPECT_EQ(second.claim_owner(), claim_owner_of(::getpid(), 1));
  EXPECT_EQ(second.took_over_for_test(), 0u);
  EXPECT_EQ(second.queues_before_owner(), 0) << "not its process's first holder";
  EXPECT_EQ(sql_count("SELECT count(*) FROM claims"), 16) << "the first's claims kept";
  EXPECT_EQ(drain(second), (std::vector<std::string>{"m16", "m17", "m18", "m19"}));
  std::vector<std::string> rest;
  for (int i = 1; i < 16; ++i) rest.push_back("m" + std::to_string(i));
  EXPECT_EQ(drain(first), rest) << "the first delivers what it claimed, once";
  first.message_count(q_);  // each applies its own deliveries first
  EXPECT_EQ(second.message_count(q_), 0u);
}

// The second review's S2 (docs/design/segment-store-review-s24.md): two Stores of one process
// that shared an owner string could both return one message. Each is its own owner now.

// (a) The first's lease lapsed and the second claims its messages again: the first's copy is
// refused, m0 (which it returned) is not claimed again.
TEST_F(Claims, AnotherStoreOfTheProcessTakesALapsedLeaseAndTheFirstCannotDeliverAnyMore) {
  Store first(dir_);
  Store second(dir_);
  auto m0 = first.claim_next(q_, 16, 50ms, peek);  // m0..m15
  auto m1 = first.claim_next(q_, 16, 50ms, peek);
  ASSERT_TRUE(m0 && m1);
  ASSERT_EQ(deliver(first, *m0), Removal::Removed);
  std::this_thread::sleep_for(200ms);  // the lease lapses; the first still runs
  auto again = second.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(again);
  EXPECT_EQ(text(again->envelope), "m1") << "the first's lapsed claims came back, m0 did not";
  EXPECT_EQ(deliver(second, *again), Removal::Removed);
  EXPECT_EQ(deliver(first, *m1), Removal::Gone) << "its claim went with its lease";
}

// (b) A cursor or lookup-id receive of one Store removes nothing another Store of the process
// claimed, delivered (logged, not applied) or not.
TEST_F(Claims, AStoreCannotRemoveWhatAnotherStoreOfTheProcessClaimed) {
  Store first(dir_);
  Store second(dir_);
  StoredMessage m0 = claim(second);  // m0..m15
  StoredMessage m1 = claim(second);
  ASSERT_EQ(deliver(second, m0), Removal::Removed);
  EXPECT_EQ(first.remove_delivered(q_, m0.seq, id_of("m0"), 1, 0), Removal::Gone);
  EXPECT_EQ(first.remove_delivered(q_, m1.seq, id_of("m1"), 1, 0), Removal::Gone);
  EXPECT_EQ(deliver(second, m1), Removal::Removed) << "still the second's";
}

// (c) A Store that takes the first slot again (the first closed while the second lives) takes
// over what the first left, and nothing of the second's.
TEST_F(Claims, AStoreReopenedInTheFirstSlotTakesNothingFromAnotherStoreOfTheProcess) {
  auto first = std::make_unique<Store>(dir_);
  Store second(dir_);
  StoredMessage m0 = claim(second);  // m0..m15
  ASSERT_EQ(deliver(second, m0), Removal::Removed);
  first.reset();
  Store third(dir_);
  EXPECT_EQ(third.claim_owner(), claim_owner_of(::getpid()));
  EXPECT_EQ(third.took_over_for_test(), 0u);
  EXPECT_EQ(sql_count(), 16) << "the second's claims kept";
  EXPECT_EQ(drain(third), bodies(16, kMessages));
  EXPECT_EQ(drain(second), bodies(1, 16)) << "the second delivers what it claimed, once";
  EXPECT_EQ(third.message_count(q_), 0u);
}

// A closed Store's slot is free at once: its claims come back to another Store of the process
// without waiting for their lease (60 s here), after its log was applied.
TEST_F(Claims, AClosedStoresClaimsComeBackAtOnceWhileItsProcessRuns) {
  Store first(dir_);
  {
    Store second(dir_);
    StoredMessage m0 = claim(second);  // m0..m15
    ASSERT_EQ(deliver(second, m0), Removal::Removed);
  }  // closed without releasing its claims
  EXPECT_EQ(drain(first), bodies(1, kMessages)) << "m0, which it returned, is not";
}

// What an older mqsec does with a slotted owner's claims (it reads "<pid>:<start>:<slot>" as a
// dead owner's): under the owner's log lock, applies its records, releases its claims,
// commits, and removes the log. Here by hand (RawDb).
void recover_as_an_older_mqsec(const fs::path& dir, DeliveryLogKind kind,
                               const std::string& owner) {
  auto log = DeliveryLog::open(kind, dir, owner, /*create=*/false);
  ASSERT_TRUE(log->is_open());
  log->lock();
  RawDb db(dir);
  db.exec("BEGIN IMMEDIATE");
  for (const DeliveryRecord& r : log->read_all()) {
    db.exec("DELETE FROM messages WHERE seq = " + std::to_string(r.seq) +
            " AND EXISTS (SELECT 1 FROM claims WHERE seq = " + std::to_string(r.seq) +
            " AND owner = '" + owner + "')");
  }
  db.exec("DELETE FROM claims WHERE owner = '" + owner + "'");
  db.exec("COMMIT");
  log->remove_file();
  log->unlock();
}

// An older mqsec next to a live Store of slot 1 (review of session 25, blocker 1): it applies
// the Store's log, releases its claims and removes the log. The Store's next claim must not
// record its deliveries in the removed file, where the older mqsec's next recovery would not
// find them (and would release the claims unapplied: a message returned twice).
TEST_F(Claims, AStoreWhoseLogAnOlderMqsecRemovedMakesItAgainBeforeItClaims) {
  Store first(dir_);
  Store second(dir_);
  ASSERT_EQ(second.claim_owner(), claim_owner_of(::getpid(), 1));
  StoredMessage m0 = claim(second, 4);  // m0..m3
  ASSERT_EQ(deliver(second, m0), Removal::Removed);
  recover_as_an_older_mqsec(dir_, second.delivery_log_kind(), second.claim_owner());
  // Its other claimed copies are refused (their claims went), then it claims again.
  std::vector<std::string> returned;
  for (int i = 0; i < 8 && returned.size() < 2; ++i) {
    StoredMessage m = claim(second, 4);
    if (deliver(second, m) == Removal::Removed) returned.push_back(text(m.envelope));
  }
  ASSERT_EQ(returned, (std::vector<std::string>{"m1", "m2"}));
  EXPECT_TRUE(
      fs::exists(DeliveryLog::path_of(second.delivery_log_kind(), dir_, second.claim_owner())))
      << "a new log before the claim";
  recover_as_an_older_mqsec(dir_, second.delivery_log_kind(), second.claim_owner());
  EXPECT_EQ(drain(first), bodies(3, kMessages)) << "m1 and m2 were returned already";
}

// A log removed under its live Store for any reason (a sweep that judged its slot free just
// before the Store took it) is made again at the Store's next claim: what the Store returns is
// found by whoever recovers its claims.
TEST_F(Claims, AStoresLogRemovedUnderItIsMadeAgainBeforeItClaims) {
  Store first(dir_);
  std::optional<Store> second(std::in_place, dir_);
  StoredMessage m0 = claim(*second, 4);  // m0..m3: its log exists
  ASSERT_EQ(deliver(*second, m0), Removal::Removed);
  const fs::path log =
      DeliveryLog::path_of(second->delivery_log_kind(), dir_, second->claim_owner());
  ASSERT_TRUE(fs::remove(log));
  for (int i = 1; i < 4; ++i) ASSERT_EQ(deliver(*second, claim(*second, 4)), Removal::Removed);
  StoredMessage m4 = claim(*second, 4);  // a claim transaction: m4..m7
  ASSERT_EQ(deliver(*second, m4), Removal::Removed);
  EXPECT_TRUE(fs::exists(log));
  second.reset();  // closed, its claims held: its slot is free, its log is read
  EXPECT_EQ(drain(first), bodies(5, kMessages)) << "m0..m4 were returned already";
}

TEST(ClaimOwner, StringsParseOnlyAsMqsecWritesThem) {
  const auto o = parse_claim_owner("12:345:7");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->pid, 12);
  EXPECT_EQ(o->start, 345u);
  EXPECT_EQ(o->slot, 7);
  EXPECT_EQ(claim_owner_string(*o), "12:345:7");
  ASSERT_TRUE(parse_claim_owner("12:345"));
  EXPECT_EQ(parse_claim_owner("12:345")->slot, 0);
  for (const char* bad : {"12:345:0", "12:345:64", "12:345:", "12:345:1:2", "-12:345", "0:345",
                          "12", "12:", ":345", "12:x", "12:345:-1", "12:345 "}) {
    EXPECT_FALSE(parse_claim_owner(bad)) << bad;
  }
  EXPECT_EQ(delivery_log_owner("12-345-7.shm"), "12:345:7");
  EXPECT_EQ(delivery_log_owner(".12-345-7.shm.new"), "12:345:7");
  EXPECT_EQ(delivery_log_owner("12-345.log"), "12:345");
  for (const char* bad : {"12-345-0.shm", "12-0345.shm", "12-345-07.shm", "12-345-64.log",
                          "12-345-1-2.shm", "owners.lock", "12-345.shm.unusable"}) {
    EXPECT_FALSE(delivery_log_owner(bad)) << bad;
  }
  EXPECT_EQ(claim_owner_lock_byte(12, 0), 12) << "slot 0: the pid's byte, as earlier versions";
  EXPECT_GT(claim_owner_lock_byte(4194304, 1), claim_owner_lock_byte(4194304, 0));
  EXPECT_NE(claim_owner_lock_byte(12, 1), claim_owner_lock_byte(13, 1));
}

TEST_F(Claims, ASigkilledOwnersClaimsComeBackAndWhatItReturnedDoesNot) {
  Handshake h;
  const pid_t child = claiming_child(60s, h);
  ASSERT_TRUE(h.wait_reached()) << "the child did not claim";
  Store s(dir_);
  // While it lives: its 16 claims (m0..m15) are skipped, and not takeable another way.
  std::vector<std::string> got = drain(s);
  EXPECT_EQ(got, (std::vector<std::string>{"m16", "m17", "m18", "m19"}));
  auto m1 = s.get(q_, s.first(q_)->seq + 1);  // a peek shows them (m0: returned, not deleted)
  ASSERT_TRUE(m1);
  EXPECT_EQ(text(m1->envelope), "m1");
  EXPECT_EQ(s.remove_delivered(q_, m1->seq, id_of("m1"), 1, 0), Removal::Gone);
  EXPECT_FALSE(s.remove(q_, m1->seq));
  EXPECT_EQ(s.message_count(q_), 16u);
  const fs::path log = DeliveryLog::path_of(s.delivery_log_kind(), dir_, claim_owner_of(child));
  EXPECT_TRUE(fs::exists(log));
  // SIGKILL while it holds 15 claims and one returned message in its log.
  ASSERT_TRUE(h.send('k'));
  ASSERT_TRUE(killed(child));
  got = drain(s);
  std::vector<std::string> want;
  for (int i = 1; i < 16; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(got, want) << "its claims came back, exactly once, in order; m0 never";
  EXPECT_TRUE(s.was_delivered(q_, id_of("m0")));
  EXPECT_EQ(s.message_count(q_), 0u);
  EXPECT_FALSE(fs::exists(log)) << "a dead owner's log is removed once applied";
}

// A recovery that fails after it took a dead owner's log lock (here applying its log: the
// store refuses the delivered id once) lets the lock go: the next claim of the same process
// recovers that owner. (A shared log's lock is not released by closing the log: kept, the owner
// was skipped as stopped for as long as the recovering process lived, and its claims never came
// back.)
TEST_F(Claims, ARecoveryThatFailsLetsTheDeadOwnersLogGo) {
  Handshake h;
  const pid_t child = claiming_child(60s, h);
  ASSERT_TRUE(h.wait_reached()) << "the child did not claim";
  ASSERT_TRUE(h.send('k'));
  ASSERT_TRUE(killed(child));
  RawDb raw(dir_);
  raw.exec("CREATE TRIGGER refuse BEFORE INSERT ON delivered BEGIN SELECT RAISE(ABORT, 'no'); END");
  Store s(dir_);
  EXPECT_THROW(s.claim_next(q_, 16, 60s, peek), Error) << "the recovery did not apply the log";
  raw.exec("DROP TRIGGER refuse");
  std::vector<std::string> want;
  for (int i = 1; i < kMessages; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(drain(s), want) << "the dead owner's claims came back, m0 (returned) not";
  EXPECT_TRUE(s.was_delivered(q_, id_of("m0")));
}

// docs/operations.md: a dead owner's shared log that is not one fails the claim with
// MQ_ERROR_MESSAGE_STORAGE_FAILED naming the file, and its claims are not released unapplied;
// once the file is moved away they come back, the message it had returned among them (a
// duplicate, as documented). (A flock log's torn tail is read as its end: shared logs only.)
TEST_F(Claims, ADeadOwnersLogThatIsNotOneIsAnErrorUntilItIsMovedAway) {
  if (Store(dir_).delivery_log_kind() != DeliveryLogKind::Shared) GTEST_SKIP() << "flock logs";
  Handshake h;
  const pid_t child = claiming_child(60s, h);
  ASSERT_TRUE(h.wait_reached()) << "the child did not claim";
  const fs::path log = DeliveryLog::path_of(DeliveryLogKind::Shared, dir_, claim_owner_of(child));
  ASSERT_TRUE(h.send('k'));
  ASSERT_TRUE(killed(child));
  fs::resize_file(log, 100);  // cut
  Store s(dir_);
  try {
    (void)s.claim_next(q_, 16, 60s, peek);
    ADD_FAILURE() << "a cut log was taken for a log";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_MESSAGE_STORAGE_FAILED);
    EXPECT_NE(std::string(e.what()).find(log.string()), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.message_count(q_), static_cast<size_t>(kMessages)) << "nothing was taken";
  EXPECT_EQ(sql_count(), 16) << "the dead owner's claims were released unapplied";
  fs::rename(log, dir_ / "moved-away");
  std::vector<std::string> want;
  for (int i = 0; i < kMessages; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(drain(s), want) << "its claims came back once the file was moved away";
}

// What a power loss leaves of a dead owner's shared log (review S3): its lock taken by a holder
// of the boot before (the kernel marks a dead holder only in the boot it died in, so nobody will
// ever release it) and a record in the window that never reached the disk. After the reboot the
// log is read without its lock: what it returned and logged is never returned again (m0), what
// the power loss took comes back (m1: a duplicate, as documented), and the owner's other claims
// come back in order. Fails without the boot check: the claims stay held for good (the
// recoverer's try_lock fails each time), and the receiver gets m16.. only.
TEST_F(Claims, ADeadOwnersLogFromBeforeAPowerLossIsAppliedWithoutItsLock) {
  if (Store(dir_).delivery_log_kind() != DeliveryLogKind::Shared) GTEST_SKIP() << "flock logs";
  for (const bool looks_alive : {false, true}) {
    SCOPED_TRACE(looks_alive ? "its string held by a live process now" : "its string dead");
    if (looks_alive) {
      TearDown();  // a store of its own for the second case
      SetUp();
    }
    expect_power_loss_log_salvaged(looks_alive);
  }
}

// ADeadOwnersLogFromBeforeAPowerLossIsAppliedWithoutItsLock, once: `looks_alive` gives the dead
// owner's claims and log (their leases lapsed) to a live process of this boot, as when another
// process has the same pid and start tick (review R1: the log must be salvaged all the same).
void Claims::expect_power_loss_log_salvaged(bool looks_alive) {
  const BootIdForTest boot("the boot before");
  const fs::path image = root_ / "image";
  const fs::path named = root_ / "log-path";
  const pid_t child = ::fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    int rc = 10;
    try {
      Store c(dir_);
      const StoredMessage m0 = claim(c);  // claims m0..m15
      const StoredMessage m1 = claim(c);
      if (deliver(c, m0) == Removal::Removed && deliver(c, m1) == Removal::Removed) {
        // The log as the disk has it at the power loss: taken by this thread.
        const fs::path path = DeliveryLog::path_of(DeliveryLogKind::Shared, dir_, c.claim_owner());
        std::ofstream(named) << path.string();
        const auto log = DeliveryLog::open(DeliveryLogKind::Shared, dir_, c.claim_owner(), false);
        log->lock();
        fs::copy_file(path, image);
        ::raise(SIGKILL);
      }
      rc = 11;
    } catch (...) {
    }
    ::_exit(rc);
  }
  ASSERT_TRUE(killed(child));
  std::string path_text;
  std::getline(std::ifstream(named), path_text);
  fs::path log = path_text;
  ASSERT_TRUE(fs::exists(log)) << log;
  Handshake h;
  pid_t alive = -1;
  if (looks_alive) {
    alive = ::fork();
    ASSERT_NE(alive, -1);
    if (alive == 0) {
      (void)h.received();  // lives until told
      ::_exit(0);
    }
    const std::string owner = claim_owner_of(alive);
    RawDb(dir_).exec("UPDATE claims SET owner = '" + owner + "', until = 1");
    const fs::path moved = DeliveryLog::path_of(DeliveryLogKind::Shared, dir_, owner);
    fs::rename(log, moved);
    log = moved;
  }
  fs::copy_file(image, log, fs::copy_options::overwrite_existing);
  {
    // m1's record (the second slot after the 4 KiB header) never reached the disk.
    std::fstream f(log, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 + static_cast<std::streamoff>(kDeliveryRecordSize));
    const std::string zeros(kDeliveryRecordSize, '\0');
    f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    ASSERT_TRUE(f.good());
  }
  set_boot_id_for_test("this boot");
  Store s(dir_);
  std::vector<std::string> want;
  for (int i = 1; i < kMessages; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(drain(s), want) << "m0 applied, m1 back, the other claims released";
  EXPECT_TRUE(s.was_delivered(q_, id_of("m0")));
  if (looks_alive) {
    EXPECT_TRUE(fs::exists(log)) << "a live owner's log is emptied, not removed";
    ASSERT_TRUE(h.send('x'));
    EXPECT_EQ(exit_status(alive), 0);
  } else {
    EXPECT_FALSE(fs::exists(log)) << "the dead owner's log, applied, is removed";
  }
  EXPECT_EQ(s.message_count(q_), 0u);
}

// A receiver process that exited after applying its log and releasing its claims leaves its log
// behind; the next Store's first claim removes it, and the temporary file of a log a dead owner
// was creating. It leaves a live owner's log, a dead owner's log that still has claims (the
// recovery's: ASigkilledOwnersClaimsComeBackAndWhatItReturnedDoesNot) and any other file.
TEST_F(Claims, TheLogsOfDeadOwnersWithoutClaimsAreSwept) {
  const fs::path claims = dir_ / "claims";
  const pid_t child = ::fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    int rc = 10;
    try {
      Store c(dir_);
      const StoredMessage m0 = claim(c);
      rc = deliver(c, m0) == Removal::Removed ? 0 : 11;
      c.release_claims(q_);  // applies m0, empties the log, releases the other claims
    } catch (...) {
    }
    ::_exit(rc);
  }
  ASSERT_EQ(exit_status(child), 0);
  const std::string prefix = std::to_string(child) + "-";
  auto childs_logs = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(claims)) {
      if (e.path().filename().string().starts_with(prefix)) ++n;
    }
    return n;
  };
  ASSERT_EQ(childs_logs(), 1) << "the exited receiver's log is not there to sweep";
  Handshake h;
  const pid_t alive = ::fork();
  ASSERT_NE(alive, -1);
  if (alive == 0) {
    h.reached();
    ::_exit(h.received() == 'x' ? 0 : 1);
  }
  ASSERT_TRUE(h.wait_reached());
  Store s(dir_);
  const DeliveryLogKind kind = s.delivery_log_kind();
  const fs::path live = DeliveryLog::path_of(kind, dir_, claim_owner_of(alive));
  const fs::path with_claims = DeliveryLog::path_of(kind, dir_, "1:1");  // pid 1 started at 1
  const fs::path creating = claims / ".2-1.shm.new";
  const fs::path other = claims / "notes.txt";
  for (const fs::path& p : {live, with_claims, creating, other}) std::ofstream(p) << "x";
  RawDb(dir_).exec("INSERT INTO claims(seq, queue_id, owner, until) VALUES(999999, 999, '1:1', 0)");
  ASSERT_EQ(text(claim(s).envelope), "m1");
  EXPECT_EQ(childs_logs(), 0) << "the exited receiver's log was not removed";
  EXPECT_FALSE(fs::exists(creating)) << "a dead owner's unfinished log was not removed";
  EXPECT_TRUE(fs::exists(live)) << "a live owner's log was removed";
  EXPECT_TRUE(fs::exists(with_claims)) << "the log of a dead owner with claims was removed";
  EXPECT_TRUE(fs::exists(other));
  ASSERT_TRUE(h.send('x'));
  EXPECT_EQ(exit_status(alive), 0);
}

// Applying a delivery log's records again changes nothing (docs/design/receive-store.md §7: what
// lets a claim transaction run next to deliveries without rewriting the log). The owner applies
// its two records and empties its log, then the log gets the same two records back (as if the
// emptying had not happened) and one new one, and the owner dies: the recoverer applies all
// three. The two already applied must delete nothing (not the copy of m1 sent since, which has a
// new seq) and record nothing (not m0's id, forgotten meanwhile as a pruning would).
TEST_F(Claims, ALogAppliedTwiceChangesNothing) {
  const pid_t child = ::fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    int rc = 10;
    try {
      Store c(dir_);
      const StoredMessage m0 = claim(c), m1 = claim(c);  // claims m0..m15
      // The log as the owner sees it, through a second object of it (what a recoverer in this
      // process would open; with shared logs it shares the owner's mapping and lock).
      const auto log = DeliveryLog::open(c.delivery_log_kind(), dir_, c.claim_owner(), false);
      auto records = [&log] {
        log->lock();
        auto all = log->read_all();
        log->unlock();
        return all;
      };
      if (deliver(c, m0) == Removal::Removed && deliver(c, m1) == Removal::Removed) {
        const std::vector<DeliveryRecord> saved = records();
        c.release_claims(q_);  // applies m0 and m1, empties the log, releases m2..m15
        rc = saved.size() != 2 ? 11 : !records().empty() ? 12 : 0;
        if (rc == 0) {
          log->lock();
          for (const DeliveryRecord& r : saved) log->append(r);
          log->unlock();
          const StoredMessage m2 = claim(c);  // claims m2..m17
          rc = text(m2.envelope) != "m2" ? 13 : deliver(c, m2) != Removal::Removed ? 14 : 0;
          if (rc == 0 && records().size() != 3) rc = 15;
        }
      }
    } catch (...) {
      rc = 16;
    }
    if (rc == 0) ::raise(SIGKILL);  // dies holding m3..m17, its log holding m0, m1 and m2
    ::_exit(rc);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child failed with " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  RawDb raw(dir_);
  raw.exec("DELETE FROM delivered WHERE msg_id = x'6d30" + std::string(36, '0') + "'");  // m0's
  Store s(dir_);
  s.append(q_, 5, bytes("m1"), false);  // a copy of m1, first in receive order
  std::vector<std::pair<std::string, Removal>> got;
  while (auto m = s.claim_next(q_, 16, 60s, peek))
    got.emplace_back(text(m->envelope), deliver(s, *m));
  std::vector<std::pair<std::string, Removal>> want{{"m1", Removal::Replay}};
  for (int i = 3; i < kMessages; ++i) want.emplace_back("m" + std::to_string(i), Removal::Removed);
  EXPECT_EQ(got, want) << "the copy of m1 is a replay; m0, m1 and m2 are never received again";
  EXPECT_FALSE(s.was_delivered(q_, id_of("m0"))) << "an applied record recorded its id again";
  EXPECT_TRUE(s.was_delivered(q_, id_of("m2")));
  // message_count first: it deletes (and records) what the loop delivered after its last claim
  // transaction (the loop's last claim_next found the queue drained, with no transaction).
  EXPECT_EQ(s.message_count(q_), 0u);
  EXPECT_EQ(sql_count("SELECT count(*) FROM delivered"), kMessages - 1);
  EXPECT_EQ(sql_count(), 0);
}

TEST_F(Claims, ALapsedLeaseIsTakenOverAndTheOwnerCannotDeliverAnyMore) {
  Handshake h;
  // 1 s: the first drain must come within the lease even on a loaded machine (with 100 ms it
  // came after it in an ASan run at load average 12, and took all 19). A machine that stalls
  // longer makes the test inconclusive, not failed.
  const auto before_claim = std::chrono::steady_clock::now();
  const pid_t child = claiming_child(1s, h);
  ASSERT_TRUE(h.wait_reached()) << "the child did not claim";
  Store s(dir_);
  const size_t first_drain = drain(s).size();
  if (std::chrono::steady_clock::now() - before_claim >= 1s) {
    ASSERT_TRUE(h.send('d'));
    exit_status(child);
    GTEST_SKIP() << "the first drain ended after the child's 1 s lease (a stalled machine)";
  }
  EXPECT_EQ(first_drain, 4u) << "within its lease, its claims are its own";
  std::this_thread::sleep_for(1200ms);
  std::vector<std::string> got = drain(s);  // alive, but its lease ran out
  std::vector<std::string> want;
  for (int i = 1; i < 16; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(got, want) << "m0, which it returned, is not taken over";
  ASSERT_TRUE(h.send('d'));
  EXPECT_EQ(exit_status(child), 0) << "the owner delivered a message whose claim was taken over";
  EXPECT_EQ(s.message_count(q_), 0u);
}

// A queue its last claim drained is answered "none" without a transaction until anything is
// committed, then claimed again at once; what the skipped transaction would have deleted, the
// store's claimer deletes in the background; past the answer's time (50 ms, here set) the claim
// runs again (what lets the claims of a dead owner or a lapsed lease, which come back without a
// commit, be claimed).
TEST_F(Claims, ADrainedQueueIsAnsweredWithoutATransactionUntilSomethingIsCommitted) {
  Store s(dir_);
  s.set_drained_for_for_test(1min);  // not 50 ms: a loaded machine may pause this test longer
  Store other(dir_);
  auto rows = [this] { return sql_count("SELECT count(*) FROM messages"); };
  ASSERT_EQ(drain(s).size(), static_cast<size_t>(kMessages));  // a batch of 16, then of 4
  // Anchored like the claim's answers: off in the modes without them (every call claims).
  const uint64_t once = s.claim_answers() ? 1 : 0;
  EXPECT_EQ(s.drained_answers(), once) << "drain's last claim_next";
  for (int i = 0; i < 500 && rows() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(rows(), 0) << "the last batch's deliveries, deleted by the claimer (or the claim)";
  // The claimer's commit ended the answer: one claim transaction, which writes nothing, gives
  // it again, at the header it began at.
  EXPECT_FALSE(s.claim_next(q_, 16, 60s, peek));
  EXPECT_FALSE(s.claim_next(q_, 16, 60s, peek));
  EXPECT_EQ(s.drained_answers(), 2 * once);
  other.append(q_, 3, bytes("late"), false);  // another connection's commit
  auto late = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(late) << "a message committed after the drain";
  EXPECT_EQ(text(late->envelope), "late");
  EXPECT_EQ(deliver(s, *late), Removal::Removed);
  EXPECT_EQ(s.drained_answers(), 2 * once);
  s.set_drained_for_for_test(0ms);
  EXPECT_FALSE(s.claim_next(q_, 16, 60s, peek));
  EXPECT_EQ(s.drained_answers(), 2 * once) << "past its time, the answer is a claim again";
  EXPECT_EQ(rows(), 0) << "which deleted the late message";
}

// An owner whose lease ran out still has the messages it claimed in memory. When it then lets
// them go (its queue is closed, or a higher-priority arrival makes it claim again), it must
// drop only claims that are still its own: the process that took them over may have returned
// one already, and that one must then be deleted by its next claim transaction, not received a
// second time.
TEST_F(Claims, AStaleOwnerReleasingItsClaimsDoesNotDropTheirNewOwners) {
  Handshake h;
  const pid_t child = ::fork();
  if (child == 0) {
    int rc = 2;
    try {
      Store s(dir_);
      auto first = s.claim_next(q_, 16, 100ms, peek);   // claims m0..m15 for 100 ms
      auto second = s.claim_next(q_, 16, 100ms, peek);  // m1, taken and never delivered
      if (first && second && deliver(s, *first) == Removal::Removed) {
        h.reached();
        if (h.received() != 0) {
          s.release_claims(q_);  // m2..m15 were still in its memory
          rc = 0;
        }
      }
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  }
  ASSERT_TRUE(h.wait_reached()) << "the child did not claim";
  std::this_thread::sleep_for(200ms);  // its lease runs out
  Store s(dir_);
  std::vector<std::string> got;
  for (int i = 0; i < 2; ++i) {  // takes its claims over and returns m1 and m2
    auto m = s.claim_next(q_, 16, 60s, peek);
    ASSERT_TRUE(m);
    ASSERT_EQ(deliver(s, *m), Removal::Removed) << text(m->envelope);
    got.push_back(text(m->envelope));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"m1", "m2"}));
  ASSERT_TRUE(h.send('x'));
  ASSERT_EQ(exit_status(child), 0);
  for (const std::string& body : drain(s)) got.push_back(body);
  std::vector<std::string> want;
  for (int i = 1; i < kMessages; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(got, want) << "each once, m2 too";
  EXPECT_TRUE(s.was_delivered(q_, id_of("m2")));
  EXPECT_EQ(s.message_count(q_), 0u);
}

TEST_F(Claims, ThisProcessNeverSeesWhatItReturnedAndAPurgeTakesClaimsAway) {
  Store s(dir_);
  auto m0 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m0);
  ASSERT_EQ(deliver(s, *m0), Removal::Removed);
  // Peeks, counts and lookups of this process come after the deletion of what it returned.
  EXPECT_EQ(text(s.first(q_)->envelope), "m1");
  EXPECT_FALSE(s.get(q_, m0->seq));
  EXPECT_EQ(s.message_count(q_), static_cast<size_t>(kMessages - 1));
  EXPECT_TRUE(s.was_delivered(q_, id_of("m0")));
  // A second copy of m0's id: a replay, deleted, not delivered.
  const int64_t copy = s.append(q_, 3, bytes("m0"), false);
  auto m1 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m1);
  EXPECT_EQ(text(m1->envelope), "m1");
  ASSERT_EQ(deliver(s, *m1), Removal::Removed);
  EXPECT_EQ(s.deliver_claimed(q_, copy, id_of("m0"), 1, 0), Removal::Gone)
      << "not claimed by this process";
  // A purge while this process holds claims: what it claimed is gone, not delivered.
  auto m2 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m2);
  EXPECT_EQ(s.purge(q_), static_cast<size_t>(kMessages - 2 + 1));
  EXPECT_EQ(deliver(s, *m2), Removal::Gone);
  EXPECT_FALSE(s.claim_next(q_, 16, 60s, peek));
  // A higher-priority message that arrives after the claim is received first.
  for (int i = 0; i < 3; ++i) s.append(q_, 1, bytes("low" + std::to_string(i)), false);
  auto low = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(low);
  EXPECT_EQ(text(low->envelope), "low0");
  ASSERT_EQ(deliver(s, *low), Removal::Removed);
  // One of the same priority does not overtake: low1 is delivered.
  s.append(q_, 1, bytes("same"), false);
  auto low1 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(low1);
  EXPECT_EQ(text(low1->envelope), "low1");
  ASSERT_EQ(deliver(s, *low1), Removal::Removed);
  // A higher one does: the claimed low2 is not delivered (its claim is released, the caller
  // goes on to the next), and the next claim starts with the urgent one.
  s.append(q_, 6, bytes("urgent"), false);
  auto low2 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(low2);
  EXPECT_EQ(text(low2->envelope), "low2");
  EXPECT_EQ(deliver(s, *low2), Removal::Gone);
  auto next = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(next);
  EXPECT_EQ(text(next->envelope), "urgent");
  ASSERT_EQ(deliver(s, *next), Removal::Removed);
  auto again = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(again);
  EXPECT_EQ(text(again->envelope), "low2") << "still there, claimed again";
  ASSERT_EQ(deliver(s, *again), Removal::Removed);
  auto last = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(last);
  EXPECT_EQ(text(last->envelope), "same");
  ASSERT_EQ(deliver(s, *last), Removal::Removed);
  EXPECT_FALSE(s.claim_next(q_, 16, 60s, peek));
}

// A message id too long for the delivery log is removed the old way, after the same receive
// order check.
TEST_F(Claims, AMessageWithALongIdIsOvertakenToo) {
  Store s(dir_);
  auto m0 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m0);
  s.append(q_, 6, bytes("urgent"), false);
  const Bytes long_id(kMaxLoggedIdSize + 1, 7);
  EXPECT_EQ(s.deliver_claimed(q_, m0->seq, long_id, 1, 0), Removal::Gone);
  auto next = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(next);
  EXPECT_EQ(text(next->envelope), "urgent");
  ASSERT_EQ(deliver(s, *next), Removal::Removed);
  auto again = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(again);
  EXPECT_EQ(text(again->envelope), "m0");
  EXPECT_EQ(s.deliver_claimed(q_, again->seq, long_id, 1, 0), Removal::Removed);
  EXPECT_TRUE(s.was_delivered(q_, long_id));
}

// A claim transaction takes at most 1 MiB of envelopes, and always at least one message.
TEST_F(Claims, ABatchOfLargeMessagesIsCappedByItsSize) {
  Store s(dir_);
  ASSERT_EQ(drain(s).size(), static_cast<size_t>(kMessages));
  const Bytes big(400 * 1024, 'x');
  for (int i = 0; i < 4; ++i) s.append(q_, 3, big, false);
  auto first = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(first);
  EXPECT_EQ(sql_count(), 3) << "400 KiB each: three reach 1 MiB, the fourth is not claimed";
  ASSERT_EQ(deliver(s, *first), Removal::Removed);
  s.release_claims(q_);  // deletes it, and lets the other two go
  EXPECT_EQ(sql_count(), 0);
  const Bytes huge(3 * 1024 * 1024, 'y');
  const int64_t h = testing::make_queue(s, "huge");
  s.append(h, 3, huge, false);
  s.append(h, 3, huge, false);
  auto one = s.claim_next(h, 16, 60s, peek);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->envelope.size(), huge.size());
  EXPECT_EQ(sql_count(), 1) << "one message bigger than the cap is still claimed, alone";
}

// A short write() of the delivery log (a full disk; here a file size limit) leaves no part of
// its record behind: a record appended after it is still read back, so a recoverer applies
// it (a torn record in the middle hid every later one, and their messages came back).
TEST_F(Claims, AShortLogWriteLeavesNoPartialRecord) {
  const pid_t pid = ::fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    int rc = 10;
    try {
      ::signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG or writes short
      FlockDeliveryLog log(dir_, "1:2", /*create=*/true);
      auto record = [](int64_t seq) {
        return DeliveryRecord{1, seq, 1, id_of("m" + std::to_string(seq))};
      };
      log.append(record(1));
      const rlimit small{80 + 10, RLIM_INFINITY};  // a record is 80 bytes
      ::setrlimit(RLIMIT_FSIZE, &small);
      bool threw = false;
      try {
        log.append(record(2));  // 10 bytes of it fit
      } catch (const Error&) {
        threw = true;
      }
      const rlimit big{RLIM_INFINITY, RLIM_INFINITY};
      ::setrlimit(RLIMIT_FSIZE, &big);
      log.append(record(3));
      const auto all = log.read_all();
      rc = !threw ? 1 : all.size() != 2 ? 2 : (all[0].seq != 1 || all[1].seq != 3) ? 3 : 0;
    } catch (...) {
      rc = 11;
    }
    ::_exit(rc);
  }
  EXPECT_EQ(exit_status(pid), 0) << "1: the short write was not reported, 2: not two records "
                                    "read back, 3: not records 1 and 3";
}

// keep_only (the claim transaction's log rewrite while deliveries go on) killed after writing
// the kept records and before making them the log's content (flock: the cut; shared: the
// window's publication): the log still holds every kept record, whole (with flock some twice,
// and applied ones, which applying again allows: ALogAppliedTwiceChangesNothing; shared: the old
// window). Without the kill, exactly the kept ones, in order. Both kinds of log.
TEST_F(Claims, ALogRewriteKilledBeforeItIsMadeTheContentKeepsEveryKeptRecord) {
  auto seqs = [](const std::vector<DeliveryRecord>& all) {
    std::vector<int64_t> out;
    for (const DeliveryRecord& r : all) out.push_back(r.seq);
    return out;
  };
  int n = 0;
  for (const DeliveryLogKind kind : {DeliveryLogKind::Flock, DeliveryLogKind::Shared}) {
    for (const bool kill : {true, false}) {
      SCOPED_TRACE(std::string(kind == DeliveryLogKind::Flock ? "flock" : "shared") +
                   (kill ? ", killed" : ""));
      const std::string owner = std::to_string(++n) + ":1";
      const pid_t pid = ::fork();
      ASSERT_NE(pid, -1);
      if (pid == 0) {
        int rc = 10;
        try {
          const auto log = DeliveryLog::open(kind, dir_, owner, /*create=*/true);
          auto record = [](int64_t seq) {
            return DeliveryRecord{1, seq, 1, id_of("m" + std::to_string(seq))};
          };
          log->lock();
          for (int64_t seq = 1; seq <= 6; ++seq) log->append(record(seq));
          if (kill) set_delivery_log_rewrite_hook_for_test([] { ::raise(SIGKILL); });
          const std::vector<DeliveryRecord> kept{record(1), record(3), record(5), record(6)};
          log->keep_only(kept);  // 2 and 4 were applied
          log->unlock();
          rc = 0;
        } catch (...) {
          rc = 11;
        }
        ::_exit(rc);
      }
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
      if (kill) {
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            << "the rewrite hook did not run";
      } else {
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      }
      const auto log = DeliveryLog::open(kind, dir_, owner, /*create=*/false);
      ASSERT_TRUE(log->is_open());
      if (kind == DeliveryLogKind::Flock) {
        EXPECT_EQ(fs::file_size(DeliveryLog::path_of(kind, dir_, owner)) % 80, 0u)
            << "a torn record";
      }
      // The killed owner held the lock: a robust mutex gives it to the next locker.
      ASSERT_TRUE(log->try_lock(50)) << "the dead owner's lock was not taken over";
      const std::vector<int64_t> got = seqs(log->read_all());
      log->unlock();
      if (kill) {
        const std::set<int64_t> held(got.begin(), got.end());
        for (const int64_t seq : {1, 3, 5, 6}) {
          EXPECT_EQ(held.count(seq), 1u) << "kept record " << seq << " lost by the kill";
        }
        for (const int64_t seq : got) EXPECT_TRUE(seq >= 1 && seq <= 6) << seq;
      } else {
        EXPECT_EQ(got, (std::vector<int64_t>{1, 3, 5, 6}));
      }
    }
  }
}

TEST_F(Claims, ReleasedClaimsAreTakenByAnotherProcessAtOnce) {
  Store s(dir_);
  auto m0 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m0);
  ASSERT_EQ(deliver(s, *m0), Removal::Removed);
  s.release_claims(q_);  // the queue was closed
  const pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 1;
    try {
      Store other(dir_);
      size_t n = 0;
      while (auto m = other.claim_next(q_, 16, 60s, peek)) {
        if (text(m->envelope) == "m0") ::_exit(2);
        ++n;
      }
      rc = n == kMessages - 1 ? 0 : 1;
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  }
  EXPECT_EQ(exit_status(pid), 0);
}

TEST_F(Claims, AQueueDeletedWhileClaimedDeliversNothingMore) {
  Store s(dir_);
  auto m0 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m0);
  auto m1 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m1);
  ASSERT_EQ(deliver(s, *m0), Removal::Removed);
  s.delete_queue("claimed");
  EXPECT_EQ(deliver(s, *m1), Removal::Gone);
  EXPECT_FALSE(s.claim_next(q_, 16, 60s, peek));
  EXPECT_EQ(sql_count(), 0) << "no claim outlives its queue";
}

// A claimed copy of a message whose id the store recorded as delivered (by any process) is
// refused by deliver_claimed itself (the claimed receive's replay check, in the same read as
// its claim check) and deleted; the next message is delivered as usual.
TEST_F(Claims, ACopyOfARecordedDeliveryIsARefusedReplay) {
  Store s(dir_);
  auto m0 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m0 && text(m0->envelope) == "m0");
  ASSERT_EQ(deliver(s, *m0), Removal::Removed);
  s.release_claims(q_);                 // m0's id is recorded in the store now
  s.append(q_, 5, bytes("m0"), false);  // a copy, ahead of the rest by its priority
  const size_t before = s.message_count(q_);
  auto copy = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(copy && copy->priority == 5);
  EXPECT_EQ(deliver(s, *copy), Removal::Replay);
  EXPECT_EQ(s.message_count(q_), before - 1);
  auto m1 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m1 && text(m1->envelope) == "m1");
  EXPECT_EQ(deliver(s, *m1), Removal::Removed);
}

// Threads of one process (one Store, one claim owner): a delivery that needs no read takes the
// claimed receives' own lock, not the connection's, so it goes on while another thread's claim
// transaction waits for (or holds) SQLite's write lock. What that transaction applied leaves the
// delivery log; the deliveries made meanwhile stay in it (fails with the log emptied at the
// commit: a crash then would give those messages to another receiver again).
TEST_F(Claims, DeliveriesGoOnWhileAnotherThreadsClaimTransactionRuns) {
  Store s(dir_);
  const int64_t q2 = testing::make_queue(s, "other");
  s.append(q2, 3, bytes("o0"), false);
  const StoredMessage m0 = claim(s);  // claims m0..m15
  ASSERT_EQ(deliver(s, m0), Removal::Removed);
  RawDb raw(dir_);
  raw.exec("BEGIN IMMEDIATE");  // SQLite's write lock, held: the claim below waits for it
  std::atomic<bool> claimed{false}, done{false}, calling{false};
  std::thread claimer([&] {
    calling = true;
    try {
      claimed = s.claim_next(q2, 16, 60s, peek).has_value();
    } catch (...) {
    }
    done = true;
  });
  // The thread running (a loaded machine may start it late), then time to take what it applies
  // (m0) and wait for the write lock: the deliveries below must come after that.
  while (!calling) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(done) << "the claim did not wait for the write lock";
  std::atomic<int> delivered{0};
  std::thread deliverer([&] {
    try {
      for (int i = 1; i <= 3; ++i) {
        auto m = s.claim_next(q_, 16, 60s, peek);
        if (m && text(m->envelope) == "m" + std::to_string(i) &&
            deliver(s, *m) == Removal::Removed) {
          ++delivered;
        }
      }
    } catch (...) {
    }
  });
  for (int i = 0; i < 500 && delivered < 3; ++i) std::this_thread::sleep_for(10ms);
  const bool went_on = delivered == 3;
  raw.exec("ROLLBACK");
  claimer.join();
  deliverer.join();
  if (s.claim_answers()) {
    EXPECT_TRUE(went_on) << "the deliveries waited for the other thread's claim transaction";
  }
  EXPECT_TRUE(claimed);
  EXPECT_EQ(delivered, 3);
  // The claim applied m0 (delivered before it began): deleted, its record gone from the log.
  // m1..m3 are logged, still rows, applied by the next transaction.
  const auto log = DeliveryLog::open(s.delivery_log_kind(), dir_, s.claim_owner(), false);
  std::vector<std::string> logged;
  for (const DeliveryRecord& r : log->read_all()) logged.push_back(text(r.msg_id).substr(0, 2));
  EXPECT_EQ(logged, (std::vector<std::string>{"m1", "m2", "m3"}));
  const std::string rows = "SELECT count(*) FROM messages WHERE queue_id = " + std::to_string(q_);
  EXPECT_EQ(sql_count(rows.c_str()), kMessages - 1);
  std::vector<std::string> want;
  for (int i = 4; i < kMessages; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(drain(s), want);
  for (const char* id : {"m0", "m1", "m2", "m3"}) EXPECT_TRUE(s.was_delivered(q_, id_of(id)));
  EXPECT_EQ(s.message_count(q_), 0u);
}

// The claimer thread's CPUs (wake_claimer's steering), from /proc: nullopt when there is no
// "mqsec-claim" thread.
std::optional<cpu_set_t> claimer_cpus() {
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name != "mqsec-claim") continue;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(std::stoi(task.path().filename().string()), sizeof set, &set) != 0) {
      return std::nullopt;
    }
    return set;
  }
  return std::nullopt;
}
int claimer_cpu_count() {
  const std::optional<cpu_set_t> set = claimer_cpus();
  return set ? CPU_COUNT(&*set) : -1;
}

// With one receiving thread, the claimer is kept off that thread's CPU when woken (else the
// scheduler of a machine that reports no shared cache ran it there, ahead of the receiving
// thread, while the other CPU idled); with MQSEC_CLAIM_STEER=0 it may run on every CPU of the
// process. (With several receiving threads it may too; not tested: which thread asks last is
// timing.)
TEST_F(Claims, TheClaimerOfOneReceivingThreadIsKeptOffItsCpu) {
  cpu_set_t mine;
  CPU_ZERO(&mine);
  ASSERT_EQ(::sched_getaffinity(0, sizeof mine, &mine), 0);
  const int cpus = CPU_COUNT(&mine);
  if (cpus < 2) GTEST_SKIP() << "one CPU: no claiming ahead for one receiving thread";
  int n = 0;
  for (const char* steer : {static_cast<const char*>(nullptr), "0"}) {
    SCOPED_TRACE(steer == nullptr ? "steered" : "MQSEC_CLAIM_STEER=0");
    testing::ScopedEnv env("MQSEC_CLAIM_STEER", steer);
    ClaimAheadMode one("1");
    Store s(dir_);
    for (int i = 0; i < 100; ++i) {
      s.append(q_, 3, bytes("s" + std::to_string(n++)), false);
    }
    int got = 0;
    while (auto m = s.claim_next(q_, 16, 60s, peek, /*ahead=*/true)) {
      if (deliver(s, *m) == Removal::Removed) ++got;
    }
    EXPECT_GE(got, 100);
    // Set when the claimer is woken, by the waking thread (whether the claimer then claimed
    // anything before the queue was empty is timing).
    EXPECT_EQ(claimer_cpu_count(), steer == nullptr ? cpus - 1 : cpus);
  }
  // A receiving thread pinned to one CPU, in a store opened by a thread that may run on all:
  // the claimer is kept off that CPU, not kept on it (it would inherit the pinned thread's CPU).
  Store s(dir_);
  for (int i = 0; i < 100; ++i) s.append(q_, 3, bytes("p" + std::to_string(i)), false);
  int pinned = 0;
  while (!CPU_ISSET(pinned, &mine)) ++pinned;
  std::thread receiver([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(pinned, &one);
    ASSERT_EQ(::sched_setaffinity(0, sizeof one, &one), 0);
    while (auto m = s.claim_next(q_, 16, 60s, peek, /*ahead=*/true)) (void)deliver(s, *m);
  });
  receiver.join();
  const std::optional<cpu_set_t> set = claimer_cpus();
  ASSERT_TRUE(set.has_value()) << "no claimer thread";
  EXPECT_FALSE(CPU_ISSET(pinned, &*set)) << "the claimer runs on the pinned receiver's CPU";
  EXPECT_EQ(CPU_COUNT(&*set), cpus - 1);
}

// Two threads of one process drain a queue together, claiming in batches (and the store's
// thread claiming ahead) while the other delivers: every message once, none twice, none left
// claimed.
TEST_F(Claims, TwoThreadsDrainAQueueExactlyOnce) {
  Store s(dir_);
  constexpr int kMany = 3000;
  for (int i = kMessages; i < kMany; ++i) s.append(q_, 3, bytes("m" + std::to_string(i)), false);
  std::vector<std::string> got[2];
  std::atomic<int> failures{0};
  auto drainer = [&](std::vector<std::string>& out) {
    try {
      while (auto m = s.claim_next(q_, 64, 60s, peek, /*ahead=*/true)) {
        const Removal r = deliver(s, *m);
        if (r == Removal::Removed) {
          out.push_back(text(m->envelope));
        } else if (r != Removal::Gone) {
          ++failures;
        }
      }
    } catch (...) {
      ++failures;
    }
  };
  std::thread a(drainer, std::ref(got[0]));
  drainer(got[1]);
  a.join();
  EXPECT_EQ(failures, 0);
  std::multiset<std::string> all(got[0].begin(), got[0].end());
  all.insert(got[1].begin(), got[1].end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kMany));
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), static_cast<size_t>(kMany))
      << "a message delivered twice";
  EXPECT_EQ(s.message_count(q_), 0u);
  s.release_claims(q_);
  EXPECT_EQ(sql_count(), 0);
}

// Claiming ahead: while two threads receive from the queue, once a message of a full batch is
// handed out, the next batch is claimed (by the receiving thread that took it, or with
// MQSEC_CLAIM_INLINE=0 by the store's thread), and the claim checks of those not delivered yet
// are answered again; the receiving threads then get the messages in order without waiting for
// a claim. One receiving thread alone never gets a claim ahead (at one CPU).
TEST_F(Claims, AheadTheNextBatchIsClaimedWhileSeveralThreadsReceive) {
  {
    Store plain(dir_);
    if (!plain.claim_ahead()) GTEST_SKIP() << "MQSEC_CLAIM_AHEAD=0";
  }
  std::optional<ClaimAheadMode> several;
  several.emplace("several");  // what a 1-CPU process does
  Store s(dir_);
  several.reset();
  for (int i = kMessages; i < 40; ++i) s.append(q_, 3, bytes("m" + std::to_string(i)), false);
  std::vector<StoredMessage> held;
  held.push_back(*s.claim_next(q_, 16, 60s, peek, true));  // claims m0..m15
  held.push_back(*s.claim_next(q_, 16, 60s, peek, true));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(s.claims_ahead(), 0u) << "one receiving thread";
  EXPECT_EQ(sql_count(), 16);
  std::thread([&] { held.push_back(*s.claim_next(q_, 16, 60s, peek, true)); }).join();  // asks
  wait_for_claims_ahead(s);
  EXPECT_EQ(s.claims_ahead(), 1u);
  EXPECT_EQ(sql_count(), 32) << "the next 16 claimed ahead";
  std::vector<std::string> got;
  for (const StoredMessage& m : held) {
    EXPECT_EQ(deliver(s, m), Removal::Removed);
    got.push_back(text(m.envelope));
  }
  while (got.size() < 40) {
    auto m = s.claim_next(q_, 16, 60s, peek, true);
    ASSERT_TRUE(m);
    EXPECT_EQ(deliver(s, *m), Removal::Removed);
    got.push_back(text(m->envelope));
  }
  std::vector<std::string> want;
  for (int i = 0; i < 40; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(got, want) << "receive order across the batches";
  EXPECT_FALSE(s.claim_next(q_, 16, 60s, peek, true));
  s.release_claims(q_);
  EXPECT_EQ(sql_count(), 0);
  EXPECT_EQ(s.message_count(q_), 0u);
}

// While several threads receive, the one that takes the message leaving a batch or less makes
// the claim ahead itself, before its claim_next returns (no thread of the store's is woken: on
// two CPUs that thread queued behind the receiving ones while a CPU idled, docs/performance.md,
// M2). Fails when the claim is left to the store's thread (claims_inline() stays 0).
TEST_F(Claims, AheadSeveralReceivingThreadsClaimAheadThemselves) {
  const auto store = open_claiming_ahead_inline();
  if (!store) GTEST_SKIP() << "MQSEC_CLAIM_INLINE or MQSEC_CLAIM_AHEAD switches it off";
  Store& s = *store;
  const StoredMessage m0 = first_of_32_in_another_thread(s);        // claims m0..m15
  const StoredMessage m1 = *s.claim_next(q_, 16, 60s, peek, true);  // a second thread: claims
  EXPECT_EQ(s.claims_inline(), 1u) << "m16..m31, claimed by this thread before it returned m1";
  EXPECT_EQ(s.claims_ahead(), 1u);
  EXPECT_EQ(sql_count(), 32);
  EXPECT_EQ(deliver_then_drain(s, {m0, m1}), bodies(0, 32)) << "receive order, each message once";
  s.release_claims(q_);
  EXPECT_EQ(sql_count(), 0);
  EXPECT_EQ(s.message_count(q_), 0u);
}

// Claims ahead made by receiving threads follow one another (each lets the queue ask again),
// and a write after them still waits for SQLite's write lock (an inline claim's "do not wait"
// ends with it). Fails when the queue's request stays set after an inline claim (one claim
// ahead only) or when the busy handler keeps giving up at once (release_claims fails while
// another connection holds the write lock for 200 ms).
TEST_F(Claims, AheadInlineClaimsFollowOneAnotherAndLaterWritesStillWait) {
  const auto store = open_claiming_ahead_inline();
  if (!store) GTEST_SKIP() << "MQSEC_CLAIM_INLINE or MQSEC_CLAIM_AHEAD switches it off";
  Store& s = *store;
  std::vector<StoredMessage> held{first_of_32_in_another_thread(s)};  // m0..m15 claimed
  for (int i = 32; i < 48; ++i) s.append(q_, 3, bytes("m" + std::to_string(i)), false);
  held.push_back(*s.claim_next(q_, 16, 60s, peek, true));  // m16..m31 claimed ahead
  ASSERT_EQ(s.claims_inline(), 1u);
  // Two threads in turn, until a take leaves 16 or fewer claimed: m32..m47 claimed ahead.
  for (int i = 2; s.claims_inline() < 2 && i < 32; ++i) {
    held.push_back(i % 2 == 0 ? claim_in_another_thread(s)
                              : *s.claim_next(q_, 16, 60s, peek, true));
  }
  EXPECT_EQ(s.claims_inline(), 2u) << "the queue asked again after the first";
  EXPECT_EQ(sql_count(), 48);
  for (const StoredMessage& m : held) EXPECT_EQ(deliver(s, m), Removal::Removed);
  std::atomic<bool> locked{false};
  std::thread writer([&] {
    RawDb w(dir_);
    w.exec("BEGIN IMMEDIATE");
    locked = true;
    std::this_thread::sleep_for(200ms);
    w.exec("COMMIT");
  });
  while (!locked) std::this_thread::sleep_for(1ms);
  EXPECT_NO_THROW(s.release_claims(q_)) << "applying the deliveries waits for the writer";
  writer.join();
  EXPECT_EQ(s.message_count(q_), 48 - held.size());
  EXPECT_EQ(drain(s), bodies(static_cast<int>(held.size()), 48));
}

// A receiving thread that would claim ahead while another process holds SQLite's write lock
// does not wait for it (it has its message): the store's thread makes the claim once the lock
// is free. Fails when the inline claim waits: claim_next then returns only when the busy
// handler gives up, 10 s later (the bound below is half that, far above the expected
// microseconds).
TEST_F(Claims, AheadAReceivingThreadDoesNotWaitForTheWriteLockToClaimAhead) {
  const auto store = open_claiming_ahead_inline();
  if (!store) GTEST_SKIP() << "MQSEC_CLAIM_INLINE or MQSEC_CLAIM_AHEAD switches it off";
  Store& s = *store;
  const StoredMessage m0 = first_of_32_in_another_thread(s);
  RawDb writer(dir_);
  writer.exec("BEGIN IMMEDIATE");
  const auto began = std::chrono::steady_clock::now();
  const StoredMessage m1 = *s.claim_next(q_, 16, 60s, peek, true);
  EXPECT_LT(std::chrono::steady_clock::now() - began, 5s) << "waited for the write lock";
  EXPECT_EQ(text(m1.envelope), "m1");
  EXPECT_EQ(s.claims_inline(), 0u);
  EXPECT_EQ(s.claims_ahead(), 0u) << "the store's thread waits for the lock";
  writer.exec("ROLLBACK");
  wait_for_claims_ahead(s);
  EXPECT_EQ(s.claims_ahead(), 1u) << "made by the store's thread once the lock was free";
  EXPECT_EQ(s.claims_inline(), 0u);
  EXPECT_EQ(deliver_then_drain(s, {m0, m1}), bodies(0, 32)) << "receive order, each message once";
}

// One receiving thread gets claims ahead too, in receive order: with MQSEC_CLAIM_AHEAD=1, and
// by default when the process may run on two CPUs or more.
TEST_F(Claims, AheadForOneThreadOnSeveralCpusOrWithTheSwitch) {
  if (std::getenv("MQSEC_CLAIM_AHEAD") != nullptr) GTEST_SKIP() << "MQSEC_CLAIM_AHEAD is set";
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const bool several_cpus = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 1;
  std::optional<ClaimAheadMode> mode;
  if (!several_cpus) mode.emplace("1");  // else the default
  Store s(dir_);
  mode.reset();
  for (int i = kMessages; i < 40; ++i) s.append(q_, 3, bytes("m" + std::to_string(i)), false);
  std::vector<std::string> got;
  while (auto m = s.claim_next(q_, 16, 60s, peek, true)) {
    if (got.size() == 1) {
      wait_for_claims_ahead(s);
      EXPECT_EQ(s.claims_ahead(), 1u) << "the next batch, claimed while the first is handed out";
      // Two batches claimed, no more (m0's row may be applied already by the claim ahead).
      EXPECT_GE(sql_count(), 31);
      EXPECT_LE(sql_count(), 32);
    }
    EXPECT_EQ(deliver(s, *m), Removal::Removed);
    got.push_back(text(m->envelope));
  }
  std::vector<std::string> want;
  for (int i = 0; i < 40; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(got, want) << "receive order across the batches";
  EXPECT_GE(s.claims_ahead(), 1u);
  s.release_claims(q_);
  EXPECT_EQ(sql_count(), 0);
  EXPECT_EQ(s.message_count(q_), 0u);
}

// The claim ahead commits while messages of the last batch are still to be delivered (two of
// them handed out already): it answers their claim checks again under its own commit, so their
// deliveries make no read, and what changed since the first claim counts: here another process
// recorded m5's id as delivered (fails with the old answers kept: m5 would be delivered again).
TEST_F(Claims, AheadTheClaimAnswersTheMessagesStillToBeDeliveredAgain) {
  const auto store = open_claiming_ahead_for_several();  // asked by m1
  Store& s = *store;
  if (!s.claim_ahead() || !s.claim_answers()) GTEST_SKIP() << "no claim ahead or answers";
  const auto [m0, m1] = claim_ahead_after(s, [&](const StoredMessage&) {
    RawDb(dir_).exec("INSERT INTO delivered(queue_id, msg_id, sent_time) VALUES(" +
                     std::to_string(q_) + ", x'6d35" + std::string(36, '0') + "', 1)");  // m5's
  });
  ASSERT_EQ(sql_count(), 32);
  std::vector<Removal> got{deliver(s, m0), deliver(s, m1)};
  for (int i = 2; i < 16; ++i) {
    auto m = s.claim_next(q_, 16, 60s, peek, true);
    ASSERT_TRUE(m);
    ASSERT_EQ(text(m->envelope), "m" + std::to_string(i));
    // Until m5 (whose removal as a replay is a commit of its own, after which the next
    // delivery reads).
    if (i == 5) {
      EXPECT_EQ(s.deliver_reads(), 0u) << "read again after the claim ahead's commit";
    }
    got.push_back(deliver(s, *m));
  }
  std::vector<Removal> want(16, Removal::Removed);
  want[5] = Removal::Replay;
  EXPECT_EQ(got, want);
}

// The same without a foreign commit: the claim ahead keeps the answers of the messages still to
// be delivered (nothing was committed since they were given) but reads `delivered` again, which
// its own transaction changes: here it records m0's id (m0 was delivered before it), and a copy
// of m0 in the first batch must then be refused, with no read (fails when the answers are kept
// whole: the copy is delivered a second time).
TEST_F(Claims, AheadTheClaimKeepsTheAnswersStillToBeUsedButForTheIdsItRecords) {
  const auto store = open_claiming_ahead_for_several();  // asked by m1
  Store& s = *store;
  if (!s.claim_ahead() || !s.claim_answers()) GTEST_SKIP() << "no claim ahead or answers";
  s.purge(q_);
  for (int i = 0; i < 32; ++i) {
    s.append(q_, 3, bytes(i == 2 ? std::string("m0") : "m" + std::to_string(i)), false);
  }
  const StoredMessage m0 = claim_in_another_thread(s);  // m0, m1, copy...
  ASSERT_EQ(deliver(s, m0), Removal::Removed);          // recorded by the next claim transaction
  const uint64_t carried = s.answers_carried();
  const StoredMessage m1 = *s.claim_next(q_, 16, 60s, peek, true);  // a second thread: asks
  wait_for_claims_ahead(s);
  ASSERT_EQ(s.claims_ahead(), 1u);
  EXPECT_TRUE(s.was_delivered(q_, id_of("m0"))) << "the claim ahead applied m0";
  EXPECT_EQ(s.answers_carried() - carried, 15u) << "m1, the copy and m3..m15: kept";
  std::vector<Removal> got{deliver(s, m1)};
  for (int i = 2; i < 16; ++i) {
    auto m = s.claim_next(q_, 16, 60s, peek, true);
    ASSERT_TRUE(m);
    got.push_back(deliver(s, *m));
    if (i == 2) {
      EXPECT_EQ(text(m->envelope), "m0");
      EXPECT_EQ(s.deliver_reads(), 0u) << "the copy's answer was read again";
    }
  }
  std::vector<Removal> want(15, Removal::Removed);
  want[1] = Removal::Replay;
  EXPECT_EQ(got, want) << "the copy of m0, refused";
}

// Kept answers need the header they were given under: here another connection deletes m5 and
// its claim (as a process that took it over and returned it would) before the claim ahead, so
// m5's answer is read again and its delivery refused (fails when the answers are kept whatever
// was committed: m5 is returned a second time).
TEST_F(Claims, AheadAForeignCommitBeforeTheClaimEndsTheKeptAnswers) {
  const auto store = open_claiming_ahead_for_several();  // asked by m1
  Store& s = *store;
  if (!s.claim_ahead() || !s.claim_answers()) GTEST_SKIP() << "no claim ahead or answers";
  const auto [m0, m1] = claim_ahead_after(s, [&](const StoredMessage& first) {
    const std::string m5 = std::to_string(first.seq + 5);
    RawDb(dir_).exec("DELETE FROM messages WHERE seq = " + m5 +
                     "; DELETE FROM claims WHERE seq = " + m5);
  });
  ASSERT_EQ(s.claims_ahead(), 1u);
  std::vector<Removal> got{deliver(s, m0), deliver(s, m1)};
  for (int i = 2; i < 16; ++i) {
    auto m = s.claim_next(q_, 16, 60s, peek, true);
    ASSERT_TRUE(m);
    ASSERT_EQ(text(m->envelope), "m" + std::to_string(i));
    got.push_back(deliver(s, *m));
  }
  std::vector<Removal> want(16, Removal::Removed);
  want[5] = Removal::Gone;
  EXPECT_EQ(got, want) << "m5, taken by another connection, is not returned";
}

// A queue closed (release_claims) right after a claim ahead was asked for: whichever of the two
// takes the connection first, no claim outlives the close (fails without the generation check,
// when the store's thread comes second).
TEST_F(Claims, AheadNoClaimOutlivesReleaseClaims) {
  Store s(dir_);
  if (!s.claim_ahead()) GTEST_SKIP() << "MQSEC_CLAIM_AHEAD=0";
  for (int i = kMessages; i < 400; ++i) s.append(q_, 3, bytes("m" + std::to_string(i)), false);
  auto take_and_deliver = [&] {
    auto m = s.claim_next(q_, 4, 60s, peek, true);
    return m && deliver(s, *m) == Removal::Removed;
  };
  for (int round = 0; round < 20; ++round) {
    bool other = false;
    std::thread([&] { other = take_and_deliver(); }).join();
    ASSERT_TRUE(other);
    ASSERT_TRUE(take_and_deliver());  // the second thread: asks
    s.release_claims(q_);
    std::this_thread::sleep_for(20ms);
    ASSERT_EQ(sql_count(), 0) << "round " << round;
  }
}

// deliver_claimed's fast path (docs/design/claim-check.md). Each test names the part whose
// absence makes it fail.

// A quiet store: the claim transaction answers its whole batch, so 64 deliveries make no read
// and no claim check (fails without the claim's answers). With validation reads only, one
// answers for the next 16 claimed messages, then 32, then 64 while the answers get used: 3
// reads (without the fast path, 64).
TEST_F(Claims, DrainingABatchReadsOncePerWindow) {
  Store s(dir_);
  for (int i = kMessages; i < 64; ++i) s.append(q_, 3, bytes("m" + std::to_string(i)), false);
  for (int i = 0; i < 64; ++i) {
    auto m = s.claim_next(q_, 64, 60s, peek);
    ASSERT_TRUE(m);
    ASSERT_EQ(text(m->envelope), "m" + std::to_string(i));
    ASSERT_EQ(deliver(s, *m), Removal::Removed) << i;
  }
  EXPECT_EQ(s.deliver_reads(), reads(s, 0, 3, 64));
  if (s.claim_answers()) {
    EXPECT_EQ(s.deliver_checks(), 0u);
  }
  EXPECT_FALSE(s.claim_next(q_, 64, 60s, peek));
  EXPECT_EQ(s.message_count(q_), 0u);
}

// A sender that commits every few deliveries ends each anchor early: the window then answers
// about as many messages as were used, so a delivery costs at most a few claim checks (review
// 7: with the window kept at 64, about 16 per delivery). (Fails with the window not sized from
// what was used.)
TEST_F(Claims, ASenderCommittingEveryFewDeliveriesCostsAFewChecksPerDelivery) {
  Store s(dir_);
  RawDb raw(dir_);
  for (int i = kMessages; i < 64; ++i) s.append(q_, 3, bytes("m" + std::to_string(i)), false);
  for (int i = 0; i < 64; ++i) {
    auto m = s.claim_next(q_, 64, 60s, peek);
    ASSERT_TRUE(m);
    ASSERT_EQ(deliver(s, *m), Removal::Removed) << i;
    if (i % 3 == 2) {
      raw.commit_unrelated();
    }
  }
  if (s.claim_fast_path()) {
    EXPECT_LE(s.deliver_checks(), 3u * 64u) << "claim checks for 64 deliveries";
    EXPECT_LT(s.deliver_reads(), 64u) << "read transactions for 64 deliveries";
  } else {
    EXPECT_EQ(s.deliver_checks(), 64u);
  }
}

// A commit by a connection that runs none of the store's code (an older mqsec, raw SQL) ends
// the fast path: the next delivery reads, and sees its claims gone. (Fails with a counter in
// Store::Tx::commit, or without the header comparison.)
TEST_F(Claims, ACommitByAForeignConnectionEndsTheFastPath) {
  Store s(dir_);
  RawDb raw(dir_);
  ASSERT_EQ(deliver(s, claim(s)), Removal::Removed);  // the claim's answer or a validation read
  ASSERT_EQ(deliver(s, claim(s)), Removal::Removed);
  EXPECT_EQ(s.deliver_reads(), reads(s, 0, 1, 2)) << "m1 was answered by the claim or m0's read";
  raw.commit_unrelated();
  ASSERT_EQ(deliver(s, claim(s)), Removal::Removed);
  EXPECT_EQ(s.deliver_reads(), reads(s, 1, 2, 3)) << "any commit ends the anchor";
  raw.exec("DELETE FROM claims WHERE owner = '" + s.claim_owner() + "'");
  const StoredMessage m3 = claim(s);
  EXPECT_EQ(deliver(s, m3), Removal::Gone) << "its claim was dropped after the anchor";
}

// A recoverer holds the owner's log lock from before it reads the log until after it
// committed; an owner waiting for that lock must see the commit. Here this process takes the
// log's lock through a second object of the log (flock: a second open file, flock locks belong
// to open files; shared: the same mutex, taken by this thread), drops the claims with raw SQL
// and commits while a delivery waits for the lock. (Fails when the header is compared before
// log_->lock().)
TEST_F(Claims, ARecovererCommittingWhileTheOwnerWaitsForItsLogLockWins) {
  Store s(dir_);
  ASSERT_EQ(deliver(s, claim(s)), Removal::Removed);  // anchors m1..m15
  const StoredMessage m1 = claim(s);
  const auto recoverer = DeliveryLog::open(s.delivery_log_kind(), dir_, s.claim_owner(), false);
  ASSERT_TRUE(recoverer->is_open());
  recoverer->lock();
  Removal got = Removal::Removed;
  std::thread owner([&] { got = deliver(s, m1); });
  std::this_thread::sleep_for(100ms);  // the owner waits for the log's lock by now
  {
    RawDb raw(dir_);
    raw.exec("DELETE FROM claims WHERE owner = '" + s.claim_owner() + "'");
  }
  std::this_thread::sleep_for(100ms);
  recoverer->unlock();
  owner.join();
  EXPECT_EQ(got, Removal::Gone);
  EXPECT_EQ(recoverer->read_all().size(), 1u) << "only m0 is in the log";
}

// The claim never learns an id the store recorded as delivered: the validation read answers
// the `delivered` column for each peeked id. A child delivers m0 and records it; the parent
// claims the rest and a copy of m0, and the copy, answered by a validation read, is a refused
// replay. (Fails without the delivered answer in the kept entries.)
TEST_F(Claims, AnIdRecordedBeforeTheClaimIsARefusedReplay) {
  {
    Store s(dir_);
    s.append(q_, 3, bytes("m0"), false);  // a copy of m0, last in receive order
  }
  const pid_t child = ::fork();
  if (child == 0) {
    int rc = 1;
    try {
      Store c(dir_);
      auto m0 = c.claim_next(q_, 1, 60s, peek);
      if (m0 && text(m0->envelope) == "m0" && deliver(c, *m0) == Removal::Removed) {
        c.release_claims(q_);  // recorded: m0's id is in `delivered`
        rc = 0;
      }
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  }
  ASSERT_EQ(exit_status(child), 0);
  Store s(dir_);
  expect_only_the_copy_refused(deliver_all(s));
  // The claim answers all 20 (the copy's id was found delivered); with validation reads only,
  // m1 anchors m2..m16, m17 anchors m18, m19 and the copy. (Fails without the claim's lookup
  // of delivered ids: the copy is Removed.)
  EXPECT_EQ(s.deliver_reads(), reads(s, 0, 2, kMessages));
}

// The same when the original's record commits after the anchor that covers the copy: that
// commit ends the anchor. (Fails without the header comparison.)
TEST_F(Claims, AnIdRecordedAfterTheAnchorIsARefusedReplayToo) {
  {
    Store s(dir_);
    s.append(q_, 3, bytes("m0"), false);
  }
  Handshake h;
  const pid_t child = ::fork();
  if (child == 0) {
    int rc = 1;
    try {
      Store c(dir_);
      auto m0 = c.claim_next(q_, 1, 60s, peek);
      if (m0 && text(m0->envelope) == "m0" && deliver(c, *m0) == Removal::Removed) {
        h.reached('c');  // claimed and delivered, not recorded
        if (h.received() != 0) {
          c.release_claims(q_);  // recorded now
          h.reached('r');
          rc = 0;
        }
      }
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  }
  ASSERT_TRUE(h.wait_reached());
  Store s(dir_);
  std::vector<Removal> got;
  // m1..m17: the claim answered them all; with validation reads only, m17's anchors m18, m19,
  // the copy.
  for (int i = 1; i < 18; ++i) {
    auto m = s.claim_next(q_, 64, 60s, peek);
    ASSERT_TRUE(m);
    ASSERT_EQ(text(m->envelope), "m" + std::to_string(i));
    got.push_back(deliver(s, *m));
  }
  EXPECT_EQ(s.deliver_reads(), reads(s, 0, 2, 17));
  ASSERT_TRUE(h.send('g'));
  ASSERT_TRUE(h.wait_reached());
  EXPECT_EQ(exit_status(child), 0);
  for (Removal r : deliver_all(s)) got.push_back(r);
  expect_only_the_copy_refused(got);
  EXPECT_EQ(s.deliver_reads(), reads(s, 1, 3, kMessages)) << "m18 read again";
}

// The kept answers are for the id the claim peeked; a delivery with another verified id (a
// forged or unusual envelope) is read again, with its own id. (Fails without the id check.)
TEST_F(Claims, AVerifiedIdOtherThanThePeekedOneIsReadAgain) {
  Store s(dir_);
  s.append(q_, 7, bytes("x"), false);
  auto x = s.claim_next(q_, 1, 60s, peek);
  ASSERT_TRUE(x && text(x->envelope) == "x");
  ASSERT_EQ(deliver(s, *x), Removal::Removed);
  s.release_claims(q_);                               // x's id is recorded
  ASSERT_EQ(deliver(s, claim(s)), Removal::Removed);  // anchors m1 with the peeked id of "m1"
  auto m1 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m1 && text(m1->envelope) == "m1");
  const uint64_t before = s.deliver_reads();
  EXPECT_EQ(s.deliver_claimed(q_, m1->seq, id_of("x"), 1, 0), Removal::Replay);
  EXPECT_EQ(s.deliver_reads(), before + 1);
}

// A higher-priority message that a foreign connection appends after the anchor overtakes the
// claimed ones (receive order): the delivery is Gone, the claims go back, and the next claim
// returns it first. (Fails without the header comparison.)
TEST_F(Claims, AHigherPriorityArrivalAfterTheAnchorOvertakes) {
  Store s(dir_);
  const std::optional<StoredMessage> m1 = anchored_m1(s);
  ASSERT_TRUE(m1);
  {
    RawDb raw(dir_);
    raw.exec("INSERT INTO messages(queue_id, priority, arrived, envelope) VALUES(" +
             std::to_string(q_) + ", 7, 1, CAST('urgent' AS BLOB))");
  }
  EXPECT_EQ(deliver(s, *m1), Removal::Gone);
  const StoredMessage next = claim(s);
  EXPECT_EQ(text(next.envelope), "urgent");
  ASSERT_EQ(deliver(s, next), Removal::Removed);
  const StoredMessage again = claim(s);
  EXPECT_EQ(text(again.envelope), "m1") << "claimed again, after the urgent one";
  EXPECT_EQ(deliver(s, again), Removal::Removed);
}

// A claimed message that this process moved to another queue (MQMoveMessage on the same
// store) is no longer held for the queue it was claimed from: its delivery from there is Gone,
// the message stays where it was moved, and the same read answered the next one.
TEST_F(Claims, AClaimedMessageMovedToAnotherQueueIsNotDeliveredFromTheFirst) {
  Store s(dir_);
  const int64_t to = testing::make_queue(s, "claimed;moved");
  const std::optional<StoredMessage> m1 = anchored_m1(s);
  ASSERT_TRUE(m1);
  ASSERT_TRUE(s.move_message(q_, m1->seq, to));
  const uint64_t reads = s.deliver_reads();
  EXPECT_EQ(deliver(s, *m1), Removal::Gone);
  EXPECT_EQ(s.deliver_reads(), reads + 1) << "the move's commit ended the anchor";
  EXPECT_EQ(s.message_count(to), 1u);
  auto m2 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m2 && text(m2->envelope) == "m2");
  EXPECT_EQ(deliver(s, *m2), Removal::Removed);
  // (MQSEC_CLAIM_FASTPATH=0: every delivery reads.)
  EXPECT_EQ(s.deliver_reads(), reads + (s.claim_fast_path() ? 1 : 2)) << "answered by m1's read";
}

// A validation read answers its window from the claims, messages_order and delivered, not from
// the messages' rows: after another connection's commit (SQLite then reads every page again),
// answering 16 claimed messages of about 3 KB, each a table page of its own, reads a few pages,
// not one per message. (With the check by seq, claim_held, it read 20 pages here; now 3.)
TEST_F(Claims, AValidationReadDoesNotReadTheClaimedMessagesRows) {
  Store s(dir_);
  const int64_t q = testing::make_queue(s, "big");
  for (int i = 0; i < 20; ++i) {
    std::string body = "big-" + std::to_string(100 + i);
    body.resize(3000, 'x');
    s.append(q, 3, bytes(body), false);
  }
  if (!s.claim_fast_path()) GTEST_SKIP() << "MQSEC_CLAIM_FASTPATH=0: each read answers one";
  auto first = s.claim_next(q, 16, 60s, peek);
  ASSERT_TRUE(first);
  RawDb(dir_).commit_unrelated();  // ends the claim's anchor: the delivery reads
  const WalVfsCounts before = wal_vfs_counts();
  const uint64_t reads = s.deliver_reads();
  ASSERT_EQ(s.deliver_claimed(q, first->seq, id_of(text(first->envelope)), 1, 0), Removal::Removed);
  const WalVfsCounts after = wal_vfs_counts();
  ASSERT_EQ(s.deliver_reads(), reads + 1);
  EXPECT_EQ(s.deliver_checks(), 16u) << "one read answered the message and the 15 claimed after it";
  const uint64_t pages =
      after.mapped_reads + after.file_reads - before.mapped_reads - before.file_reads;
  EXPECT_LT(pages, 12u) << "pages read from the WAL by the validation read";
  for (int i = 1; i < 16; ++i) {
    auto m = s.claim_next(q, 16, 60s, peek);
    ASSERT_TRUE(m);
    ASSERT_EQ(s.deliver_claimed(q, m->seq, id_of(text(m->envelope)), 1, 0), Removal::Removed);
  }
  EXPECT_EQ(s.deliver_reads(), reads + 1) << "the 15 others were delivered on the read's answers";
}

// The claim check's answers are claim_held's whatever happened to the row: a writer outside
// mqsec that changes a claimed message's priority (an older version, an admin's sqlite3) leaves
// it held and delivered, as before the check read the index at the claim's priority (it would
// have been Gone, its claim kept until the process ends); a row whose priority is not an
// integer in 0..7 is found at -1 like its index entry; and a store whose messages_order index
// was dropped by hand opens and delivers (the checks then read the rows).
TEST_F(Claims, TheClaimCheckAnswersAsBeforeWhenARowsPriorityChangedOrIsMalformed) {
  Store s(dir_);
  const std::optional<StoredMessage> m1 = anchored_m1(s);
  ASSERT_TRUE(m1);
  RawDb raw(dir_);
  raw.exec("UPDATE messages SET priority = 5 WHERE seq = " + std::to_string(m1->seq));
  EXPECT_EQ(deliver(s, *m1), Removal::Removed);
  const int64_t odd = testing::make_queue(s, "odd");
  raw.exec("INSERT INTO messages(queue_id, priority, arrived, envelope) VALUES(" +
           std::to_string(odd) + ", 'x', 1, CAST('malformed' AS BLOB))");
  auto m = s.claim_next(odd, 16, 60s, peek);
  ASSERT_TRUE(m && text(m->envelope) == "malformed");
  EXPECT_EQ(m->priority, kMalformedPriority);
  raw.commit_unrelated();  // the delivery reads
  EXPECT_EQ(s.deliver_claimed(odd, m->seq, id_of("malformed"), 1, 0), Removal::Removed);
  EXPECT_EQ(s.message_count(odd), 0u);
}

TEST_F(Claims, AStoreWithoutItsMessagesOrderIndexOpensAndDelivers) {
  RawDb(dir_).exec("DROP INDEX messages_order");
  Store s(dir_);
  ASSERT_EQ(deliver(s, claim(s)), Removal::Removed);
  auto m1 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m1 && text(m1->envelope) == "m1");
  RawDb(dir_).commit_unrelated();
  EXPECT_EQ(deliver(s, *m1), Removal::Removed);
}

// Commits of this process's own connection end the anchor too: another thread's purge, and a
// transaction's settle (whose delete has no claims check) of a claimed message. (The purge
// also forgets the kept answers; the settle does not: it fails if own commits were not seen.)
TEST_F(Claims, AnotherThreadsPurgeOrSettleEndsTheFastPath) {
  Store s(dir_);
  ASSERT_EQ(deliver(s, claim(s)), Removal::Removed);  // anchors m1..m15
  auto m1 = s.claim_next(q_, 16, 60s, peek);
  auto m2 = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(m1 && m2);
  std::thread([&] {
    const Store::Settle del{q_, m1->seq, 0, {}};
    s.settle({}, std::span(&del, 1), {});
  }).join();
  EXPECT_EQ(deliver(s, *m1), Removal::Gone) << "settled away by this process's connection";
  std::thread([&] { s.purge(q_); }).join();
  EXPECT_EQ(deliver(s, *m2), Removal::Gone);
  EXPECT_FALSE(s.claim_next(q_, 16, 60s, peek));
}

// The answers are kept only if no commit came in between the header read before the
// validation read and the one after: here a foreign connection drops m1's claim inside the
// validation read, after its snapshot; m1 must be read again and found Gone. (Fails if the
// mark were taken from the header after the read alone.)
TEST_F(Claims, ACommitDuringTheValidationReadGivesNoAnchor) {
  Store s(dir_);
  const StoredMessage m0 = claim(s);
  const StoredMessage m1 = claim(s);
  s.unclaim(m1);  // back at the front of the claimed ones: m0's read answers for it
  RawDb raw(dir_);
  raw.commit_unrelated();  // ends the claim's own anchor: m0's delivery reads
  bool once = true;
  s.set_validation_hook_for_test([&] {
    if (std::exchange(once, false)) {
      raw.exec("DELETE FROM claims WHERE seq = " + std::to_string(m1.seq));
    }
  });
  ASSERT_EQ(deliver(s, m0), Removal::Removed);
  auto again = s.claim_next(q_, 16, 60s, peek);
  ASSERT_TRUE(again && again->seq == m1.seq);
  EXPECT_EQ(deliver(s, *again), Removal::Gone) << "answered before its claim was dropped";
  EXPECT_EQ(s.deliver_reads(), 2u);
  s.set_validation_hook_for_test(nullptr);
}

// The claim's answers hold under the header its own commit published, and only if no other
// commit came in between: here a foreign connection drops this owner's claims right after the
// claim's commit, before that header is read. The first delivery must read and find its claim
// gone. (Fails if the anchor were the header after the commit alone, without the commit
// counter's "exactly one more".) In the other modes the claims are dropped after claim_next.
TEST_F(Claims, ACommitBetweenTheClaimsCommitAndItsHeaderIsSeen) {
  Store s(dir_);
  RawDb raw(dir_);
  const std::string drop = "DELETE FROM claims WHERE owner = '" + s.claim_owner() + "'";
  bool dropped = false;
  s.set_claim_commit_hook_for_test([&] {
    if (!std::exchange(dropped, true)) raw.exec(drop);
  });
  const StoredMessage m0 = claim(s);
  s.set_claim_commit_hook_for_test(nullptr);
  EXPECT_EQ(dropped, s.claim_answers()) << "the hook runs where the claim answers";
  if (!dropped) raw.exec(drop);
  EXPECT_EQ(deliver(s, m0), Removal::Gone) << "answered before its claim was dropped";
  EXPECT_EQ(s.deliver_reads(), 1u);
  EXPECT_EQ(s.message_count(q_), static_cast<size_t>(kMessages)) << "nothing was delivered";
}

// Exactly once while anchors keep ending and leases lapse (design test 10, at the store's
// level): two receiver processes (100 ms leases, batches of 16, 0.3 ms of work per message)
// drain 3,000 messages while a foreign connection commits about every millisecond, and each
// receiver in turn is stopped for 300 ms (SIGSTOP: its claims are taken over and what it logged
// is applied; once continued it must deliver nothing it lost). Every message is received, none
// twice. (Without the header comparison, duplicates in most runs.)
TEST_F(Claims, ExactlyOnceWithAForeignWriterAndLapsedLeases) {
  constexpr int kMany = 3000;
  {
    Store s(dir_);
    s.purge(q_);
    std::vector<Append> batch;
    for (int i = 0; i < kMany; ++i) batch.push_back({q_, 3, bytes("r" + std::to_string(i))});
    s.append_batch(batch, false);
  }
  auto receiver = [&](int n) {
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    int rc = 0;
    try {
      Store s(dir_);
      FILE* out = std::fopen((root_ / ("got" + std::to_string(n))).c_str(), "w");
      for (;;) {
        auto m = s.claim_next(q_, 16, 100ms, peek);
        if (!m) {
          if (s.message_count(q_) == 0) break;
          std::this_thread::sleep_for(2ms);
          continue;
        }
        if (deliver(s, *m) == Removal::Removed)
          std::fprintf(out, "%s\n", text(m->envelope).c_str());
        std::this_thread::sleep_for(300us);  // a consumer's work: a stop lands mid-batch
      }
      std::fclose(out);
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  };
  const pid_t a = receiver(0);
  const pid_t b = receiver(1);
  Reaper reaper{{a, b}};
  // Never waiting long for the write lock: a receiver stopped inside its claim transaction
  // holds it until this loop continues it.
  RawDb raw(dir_, 1);
  const auto start = std::chrono::steady_clock::now();
  // Each receiver stopped in turn, three times, for 300 ms (three leases).
  struct Event {
    std::chrono::milliseconds at;
    pid_t pid;
    int sig;
  };
  const Event events[] = {{20ms, a, SIGSTOP},  {320ms, a, SIGCONT}, {340ms, b, SIGSTOP},
                          {640ms, b, SIGCONT}, {660ms, a, SIGSTOP}, {960ms, a, SIGCONT}};
  size_t next = 0;
  int running = 2;
  for (int i = 0; running > 0; ++i) {
    (void)raw.try_exec(
        "INSERT INTO rejections(queue, time, kind, reason, envelope, original_size)"
        " VALUES('other', " +
        std::to_string(i) + ", 'test', 'noise', x'00', 1)");
    const auto t = std::chrono::steady_clock::now() - start;
    if (next < std::size(events) && t > events[next].at) {
      ::kill(events[next].pid, events[next].sig);
      ++next;
    }
    for (pid_t p : {a, b}) {
      int status = 0;
      if (next == std::size(events) && ::waitpid(p, &status, WNOHANG) == p) {
        std::erase(reaper.live, p);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        --running;
      }
    }
    ASSERT_LT(t, 60s) << "the receivers did not finish";
    std::this_thread::sleep_for(1ms);
  }
  std::multiset<std::string> got;
  for (int n = 0; n < 2; ++n) {
    std::ifstream in(root_ / ("got" + std::to_string(n)));
    for (std::string line; std::getline(in, line);) got.insert(line);
  }
  EXPECT_EQ(got.size(), static_cast<size_t>(kMany));
  for (int i = 0; i < kMany; ++i) {
    EXPECT_EQ(got.count("r" + std::to_string(i)), 1u) << "r" << i;
  }
  EXPECT_EQ(testing::store_invariant_violations(dir_), std::vector<std::string>());
}

// The check the random test relies on finds what it names: rows written behind the store's back.
TEST_F(Claims, TheInvariantCheckFindsClaimsAndMessagesThatCannotBe) {
  EXPECT_EQ(testing::store_invariant_violations(dir_), std::vector<std::string>());
  RawDb raw(dir_);
  raw.exec("INSERT INTO claims(seq, queue_id, owner, until) VALUES(999999, 1, '1:2', 0)");
  raw.exec(
      "INSERT INTO claims(seq, queue_id, owner, until) SELECT seq, queue_id + 1, 'x', 0"
      " FROM messages LIMIT 1");
  raw.exec("INSERT INTO messages(queue_id, priority, arrived, envelope) VALUES(4242, 9, 0, x'00')");
  const std::vector<std::string> broken = testing::store_invariant_violations(dir_);
  const auto has = [&broken](const std::string& what) {
    return std::any_of(broken.begin(), broken.end(),
                       [&what](const std::string& line) { return line.starts_with(what); });
  };
  EXPECT_TRUE(has("a claim of a message that is not there: 1 row(s), e.g. seq 999999"));
  EXPECT_TRUE(has("a claim filed under another queue than its message's: 1 row(s)"));
  EXPECT_TRUE(has("a claim owner mqsec does not write: 'x'"));
  EXPECT_TRUE(has("a message of a queue that does not exist: 1 row(s)"));
  EXPECT_TRUE(has("a message whose priority is not an integer 0..7: 1 row(s)"));
  EXPECT_EQ(broken.size(), 5u) << ::testing::PrintToString(broken);
}

// Random operations, with fixed seeds (a failure replays this process's operations and each
// receiver's choices; the interleaving still varies): this process sends (single and batched,
// three priorities), receives by claim, by lookup id and from the end, moves messages into a
// subqueue and back, purges the subqueue and closes the queue, while two receiver processes
// claim and deliver (batches of 1-16, a 100 ms lease, with and without claiming ahead, now and
// then a message handed back or every claim released), and are SIGKILLed, stopped beyond their
// lease and replaced at random. Every 50 operations the store's invariants hold
// (tests/support/store_invariants.hpp). At the end, with everything drained: no message was
// returned twice, none that was not sent, no delivery was a replay (each body is sent once),
// some were refused as no longer claimed (Gone: the stops and overtaking did something), and
// every message missing is one a killed receiver was delivering when it died (a receiver
// writes down each message before and after its delivery). Purges of the claimed queue itself
// are left to ThisProcessNeverSeesWhatItReturnedAndAPurgeTakesClaimsAway (here they would
// remove messages nobody could name).
TEST_F(Claims, RandomOperationsWithKilledAndStoppedReceiverProcessesKeepTheInvariants) {
  constexpr int kOps = 2500;
  constexpr int kCheckEvery = 50;
  constexpr auto kLease = 100ms;
  std::mt19937 rng(20261203);
  auto pick = [&rng](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  // This process forks the receivers, so it runs no thread of its own: no claiming ahead here
  // (a claimer thread), the receivers claim ahead instead. (TSan does not follow a fork of a
  // process with threads into a child that starts threads: "dup thread with used id".)
  std::optional<ClaimAheadMode> no_thread;
  no_thread.emplace("0");
  Store s(dir_);
  no_thread.reset();
  QueueInfo sub_info;
  sub_info.name = "claimed;sub";
  s.create_queue(sub_info);
  const int64_t sub = s.find_queue("claimed;sub")->id;
  std::set<std::string> sent;
  for (const std::string& b : bodies(0, kMessages)) sent.insert(b);
  std::multiset<std::string> got;  // returned to this process
  std::set<std::string> purged;
  int replays = 0;
  int gone = 0;
  int next_body = 0;
  const fs::path stop = root_ / "stop";
  std::vector<std::string> files;  // one per receiver: "?body" before a delivery, then its outcome
  std::set<size_t> killed_files;
  auto receiver = [&]() -> pid_t {
    const std::string file = (root_ / ("got" + std::to_string(files.size()))).string();
    files.push_back(file);
    const unsigned seed = static_cast<unsigned>(rng());
    s.prepare_fork();
    const pid_t pid = ::fork();
    if (pid != 0) {
      s.parent_after_fork();
      return pid;
    }
    s.child_after_fork();
    s.close_in_child();  // before the child's own Store opens (store.hpp)
    int rc = 0;
    try {
      Store c(dir_);
      const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      auto note = [&](char what, const std::string& body) {
        const std::string line = what + body + "\n";
        if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) rc = 4;
      };
      std::mt19937 crng(seed);
      while (rc == 0 && !fs::exists(stop)) {
        auto m = c.claim_next(q_, 1 + crng() % 16, kLease, peek, crng() % 2 == 0);
        if (!m) {
          std::this_thread::sleep_for(1ms);
        } else if (crng() % 20 == 0) {
          c.unclaim(std::move(*m));  // a buffer too small: the next claim_next returns it again
        } else if (crng() % 50 == 0) {
          c.unclaim(std::move(*m));
          c.release_claims(q_);  // the queue closed: its claims, this one's too, go back
        } else {
          const std::string body = text(m->envelope);
          note('?', body);
          const Removal r = deliver(c, *m);
          note(r == Removal::Removed ? '+' : r == Removal::Gone ? '-' : '!', body);
        }
      }
      c.release_claims(q_);
      ::close(fd);
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  };
  Reaper reaper{{receiver(), receiver()}};
  std::vector<size_t> file_of = {0, 1};  // reaper.live[k]'s file
  auto count = [&](Removal r, const StoredMessage& m) {
    if (r == Removal::Removed) got.insert(text(m.envelope));
    replays += r == Removal::Replay ? 1 : 0;
    gone += r == Removal::Gone ? 1 : 0;
  };
  auto send = [&](int64_t queue) {
    const std::string b = "r" + std::to_string(next_body++);
    sent.insert(b);
    return Append{queue, 1 + 2 * pick(3), bytes(b)};
  };
  // A child's exit status, -1 when a signal ended it; -2 (and the child killed) after 60 s.
  auto wait_exit = [](pid_t pid, int& status) {
    for (int i = 0; i < 6000; ++i) {
      if (::waitpid(pid, &status, WNOHANG) == pid)
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      std::this_thread::sleep_for(10ms);
    }
    ::kill(pid, SIGKILL);
    (void)::waitpid(pid, &status, 0);
    return -2;
  };
  for (int i = 1; i <= kOps; ++i) {
    const int r = pick(100);
    if (r < 25) {
      const Append a = send(q_);
      s.append(a.queue_id, a.priority, a.envelope, pick(10) == 0);
    } else if (r < 32) {
      std::vector<Append> batch;
      for (int n = 1 + pick(8); n > 0; --n) batch.push_back(send(q_));
      s.append_batch(batch, false);
    } else if (r < 50) {
      if (auto m = s.claim_next(q_, 1 + pick(8), kLease, peek)) count(deliver(s, *m), *m);
    } else if (r < 57) {
      if (auto m = s.first(q_)) {  // by lookup id: only if nobody else holds its claim
        count(s.remove_delivered(q_, m->seq, id_of(text(m->envelope)), 1, 0), *m);
      }
    } else if (r < 62) {
      if (auto m = s.last(q_)) {
        if (s.remove(q_, m->seq)) got.insert(text(m->envelope));
      }
    } else if (r < 72) {
      // One of the first few in receive order: this process's own claims among them too.
      auto m = s.first(q_);
      for (int n = pick(8); m && n > 0; --n) m = s.next_after(q_, m->priority, m->seq);
      if (m) (void)s.move_message(q_, m->seq, sub);
    } else if (r < 80) {
      if (auto m = s.first(sub)) (void)s.move_message(sub, m->seq, q_);
    } else if (r < 82) {
      s.release_claims(q_);
    } else if (r < 83) {
      // Only this process touches the subqueue: what it holds now is what the purge removes.
      std::set<std::string> there;
      for (auto m = s.first(sub); m; m = s.next_after(sub, m->priority, m->seq))
        there.insert(text(m->envelope));
      EXPECT_EQ(s.purge(sub), there.size());
      purged.insert(there.begin(), there.end());
    } else if (r < 86) {
      const size_t k = static_cast<size_t>(pick(2));
      ::kill(reaper.live[k], SIGKILL);
      int status = 0;
      ASSERT_EQ(wait_exit(reaper.live[k], status), -1) << "wait status " << status;
      ASSERT_EQ(WTERMSIG(status), SIGKILL) << "wait status " << status;
      killed_files.insert(file_of[k]);
      file_of[k] = files.size();
      reaper.live[k] = receiver();
    } else if (r < 87) {
      const pid_t p = reaper.live[static_cast<size_t>(pick(2))];
      ::kill(p, SIGSTOP);
      std::this_thread::sleep_for(kLease + 20ms);  // its leases lapse: others take its claims
      ::kill(p, SIGCONT);
    } else {
      std::this_thread::sleep_for(1ms);  // the receivers' turn
    }
    if (i % kCheckEvery == 0) {
      const std::vector<std::string> broken = testing::store_invariant_violations(dir_);
      ASSERT_EQ(broken, std::vector<std::string>()) << "after operation " << i;
    }
  }
  { std::ofstream(stop) << "stop"; }
  for (pid_t p : reaper.live) {
    int status = 0;
    EXPECT_EQ(wait_exit(p, status), 0) << "a receiver failed, wait status " << status;
  }
  reaper.live.clear();
  // Whatever is left: the dead receivers' claims come back to this process's claims.
  for (int tries = 0; s.message_count(q_) > 0 && tries < 500; ++tries) {
    while (auto m = s.claim_next(q_, 64, 60s, peek)) count(deliver(s, *m), *m);
    std::this_thread::sleep_for(10ms);
  }
  while (auto m = s.first(sub)) {
    ASSERT_TRUE(s.remove(sub, m->seq));
    got.insert(text(m->envelope));
  }
  EXPECT_EQ(s.message_count(q_), 0u);
  EXPECT_EQ(sql_count(), 0) << "claims left";
  EXPECT_EQ(testing::store_invariant_violations(dir_), std::vector<std::string>());
  // The receivers' notes: what they got, what was refused, and what a killed one was delivering.
  size_t by_receivers = 0;
  std::set<std::string> in_flight;
  for (size_t n = 0; n < files.size(); ++n) {
    std::ifstream in(files[n]);
    std::string last;
    for (std::string line; std::getline(in, line); last = line) {
      const std::string body = line.substr(1);
      if (line[0] == '+') {
        got.insert(body);
        ++by_receivers;
      }
      replays += line[0] == '!' ? 1 : 0;
      gone += line[0] == '-' ? 1 : 0;
    }
    if (!last.empty() && last[0] == '?') {
      EXPECT_EQ(killed_files.count(n), 1u) << "a receiver that was not killed left " << last;
      in_flight.insert(last.substr(1));
    }
  }
  std::vector<std::string> twice, unknown, lost;
  for (auto it = got.begin(); it != got.end(); it = got.upper_bound(*it)) {
    if (got.count(*it) > 1) twice.push_back(*it);
    if (sent.count(*it) == 0 || purged.count(*it) != 0) unknown.push_back(*it);
  }
  for (const std::string& b : sent) {
    if (got.count(b) == 0 && purged.count(b) == 0 && in_flight.count(b) == 0) lost.push_back(b);
  }
  EXPECT_EQ(twice, std::vector<std::string>()) << "returned twice";
  EXPECT_EQ(unknown, std::vector<std::string>()) << "returned but never sent, or purged";
  EXPECT_EQ(lost, std::vector<std::string>()) << "lost (no receiver was delivering them)";
  EXPECT_EQ(replays, 0) << "each body is sent once: a replay means a row outlived its delivery";
  // The run did what it says: stale claims were refused, both sides received, purges purged.
  EXPECT_GT(gone, 0);
  EXPECT_GT(by_receivers, 0u);
  EXPECT_GT(got.size() - by_receivers, 0u);
  EXPECT_GT(purged.size(), 0u);
  EXPECT_GT(killed_files.size(), 0u);
}
}  // namespace
}  // namespace mqsec::transport::local
