// The store's commit signal (src/transport/local/wal_signal.hpp): SQLite's WAL-index header,
// read from the connection's own mapping, changes with every commit of any connection and with
// nothing else deliver_claimed's fast path would have to notice; anything unusual is no reading.
#include "src/transport/local/wal_signal.hpp"

#include "src/transport/local/store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/scoped_env.hpp"
#include "tests/support/store_queue.hpp"

namespace mqsec::transport::local {
namespace {

namespace fs = std::filesystem;
using mqsec::testing::ScopedEnv;

class WalSignalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "mqsec-walsig-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    root_ = tmpl;
    path_ = root_ / "test.db";
  }
  void TearDown() override {
    close_connections();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  sqlite3* open(const char* first_sql = nullptr) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    if (first_sql != nullptr) exec(db, first_sql);
    return db;
  }
  static void exec(sqlite3* db, const char* sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &err), SQLITE_OK) << sql << ": " << err;
    sqlite3_free(err);
  }
  // Two connections to one WAL database (a_ runs `schema`), a_'s signal and its first reading
  // h0_. TearDown closes them.
  void two_connections(const char* schema) {
    a_ = open(schema);
    b_ = open();
    sig_.emplace(a_);
    ASSERT_TRUE(sig_->on());
    h0_ = sig_->read();
    ASSERT_TRUE(h0_);
  }
  void close_connections() {
    sig_.reset();
    sqlite3_close(b_);
    sqlite3_close(a_);
    a_ = b_ = nullptr;
  }
  fs::path root_, path_;
  sqlite3* a_ = nullptr;
  sqlite3* b_ = nullptr;
  std::optional<WalSignal> sig_;
  std::optional<WalSignal::Header> h0_;
};

TEST_F(WalSignalTest, AnotherConnectionsCommitChangesIt) {
  two_connections("PRAGMA journal_mode=WAL; CREATE TABLE t(x); SELECT * FROM t;");
  exec(b_, "INSERT INTO t VALUES(1)");
  const auto h1 = sig_->read();
  ASSERT_TRUE(h1);
  EXPECT_NE(*h0_, *h1);
  EXPECT_EQ((*h1)[2], (*h0_)[2] + 1) << "iChange counts commits";
  exec(a_, "INSERT INTO t VALUES(2)");  // and the connection's own
  const auto h2 = sig_->read();
  ASSERT_TRUE(h2);
  EXPECT_NE(*h1, *h2);
}

TEST_F(WalSignalTest, APassiveCheckpointARollbackAndAReadDoNot) {
  two_connections("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES(1);");
  exec(b_, "SELECT count(*) FROM t");
  EXPECT_EQ(sig_->read(), h0_);
  int log = -1, done = -1;
  ASSERT_EQ(sqlite3_wal_checkpoint_v2(b_, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done),
            SQLITE_OK);
  EXPECT_GT(done, 0) << "the checkpoint copied frames";
  EXPECT_EQ(sig_->read(), h0_);
  exec(b_, "BEGIN IMMEDIATE; INSERT INTO t VALUES(2); ROLLBACK");
  EXPECT_EQ(sig_->read(), h0_);
  exec(b_, "BEGIN IMMEDIATE; COMMIT");  // a transaction that wrote nothing commits nothing
  EXPECT_EQ(sig_->read(), h0_);
}

// The claim's anchor rule (Store::claim_batch_locked): the frame count a connection's WAL hook
// is passed for its commit is the mxFrame of the header that commit published, and
// one_commit_between accepts that header and no other: not one after a second commit, not the
// same header, not one whose counter is right but whose frame count is another commit's (what
// WAL-index recovery, which restarts the counter, followed by more commits could publish).
TEST_F(WalSignalTest, TheWalHooksFrameCountIdentifiesTheCommitsHeader) {
  two_connections("PRAGMA journal_mode=WAL; CREATE TABLE t(x); SELECT * FROM t;");
  int frames = -1;
  sqlite3_wal_hook(
      b_,
      [](void* arg, sqlite3*, const char*, int n) {
        *static_cast<int*>(arg) = n;
        return SQLITE_OK;
      },
      &frames);
  exec(b_, "INSERT INTO t VALUES(1)");
  const auto h1 = sig_->read();
  ASSERT_TRUE(h1);
  ASSERT_GT(frames, 0);
  const auto n = static_cast<uint32_t>(frames);
  EXPECT_EQ(WalSignal::frame_count(*h1), n);
  EXPECT_TRUE(WalSignal::one_commit_between(*h0_, *h1, n));
  EXPECT_FALSE(WalSignal::one_commit_between(*h0_, *h0_, n)) << "no commit";
  WalSignal::Header recovered = *h1;
  recovered[4] += 3;
  EXPECT_FALSE(WalSignal::one_commit_between(*h0_, recovered, n)) << "another commit's frames";
  exec(a_, "INSERT INTO t VALUES(2)");
  const auto h2 = sig_->read();
  ASSERT_TRUE(h2);
  EXPECT_FALSE(WalSignal::one_commit_between(*h0_, *h2, n)) << "two commits";
}

// A header as walIndexWriteHdr writes it (both copies).
void craft(uint32_t* words) {
  std::memset(words, 0, 96);
  words[0] = WalSignal::kVersion;
  words[2] = 41;  // iChange
  const uint8_t init = 1;
  std::memcpy(reinterpret_cast<uint8_t*>(words) + 12, &init, 1);
  words[4] = 7;  // mxFrame
  uint32_t s1 = 0, s2 = 0;
  for (int i = 0; i < 10; i += 2) {
    s1 += words[i] + s2;
    s2 += words[i + 1] + s1;
  }
  words[10] = s1;
  words[11] = s2;
  std::memcpy(words + 12, words, 48);
}

TEST_F(WalSignalTest, UnequalCopiesOrUnknownVersionAreNoReading) {
  alignas(8) uint32_t w[24];
  craft(w);
  ASSERT_TRUE(WalSignal::read_at(w)) << "a well-formed header reads";
  EXPECT_EQ((*WalSignal::read_at(w))[2], 41u);
  w[12 + 4] = 8;  // copy 1 is being written
  EXPECT_FALSE(WalSignal::read_at(w));
  craft(w);
  w[0] = w[12] = 3007001;  // another version
  EXPECT_FALSE(WalSignal::read_at(w));
  craft(w);
  std::memset(reinterpret_cast<uint8_t*>(w) + 12, 0, 1);  // not initialised
  std::memset(reinterpret_cast<uint8_t*>(w) + 48 + 12, 0, 1);
  EXPECT_FALSE(WalSignal::read_at(w));
  craft(w);
  w[4] = w[16] = 9;  // equal copies, wrong checksum (a torn word)
  EXPECT_FALSE(WalSignal::read_at(w));
  EXPECT_FALSE(WalSignal::read_at(nullptr));
}

// Under locking_mode=EXCLUSIVE SQLite keeps the wal-index in heap memory; the -shm file (left
// from before) is then not what the writers update. In rollback-journal mode there is none.
TEST_F(WalSignalTest, OffWhenTheWalIndexIsNotShared) {
  {
    sqlite3_close(open("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES(1);"));
    sqlite3* x = open("PRAGMA locking_mode=EXCLUSIVE; SELECT count(*) FROM t;");
    WalSignal sig(x);
    EXPECT_FALSE(sig.on());
    EXPECT_FALSE(sig.read());
    sqlite3_close(x);
  }
  {
    sqlite3* r = open("PRAGMA journal_mode=DELETE; SELECT count(*) FROM t;");
    WalSignal sig(r);
    EXPECT_FALSE(sig.on());
    sqlite3_close(r);
  }
  WalSignal off;
  EXPECT_FALSE(off.on());
  EXPECT_FALSE(off.read());
}

// The store's switches, read when it is opened: MQSEC_CLAIM_FASTPATH=0 (no fast path, so no
// claim answers either) and MQSEC_CLAIM_ANSWERS=0 (the fast path without the claim's answers).
TEST_F(WalSignalTest, TheStoresSwitches) {
  ScopedEnv answers("MQSEC_CLAIM_ANSWERS", nullptr);
  {
    ScopedEnv fast("MQSEC_CLAIM_FASTPATH", nullptr);
    Store s(root_ / "store");
    EXPECT_TRUE(s.claim_fast_path());
    EXPECT_TRUE(s.claim_answers());
  }
  {
    ScopedEnv fast("MQSEC_CLAIM_FASTPATH", "0");
    Store s(root_ / "store");
    EXPECT_FALSE(s.claim_fast_path());
    EXPECT_FALSE(s.claim_answers());
  }
  {
    ScopedEnv fast("MQSEC_CLAIM_FASTPATH", nullptr);
    ScopedEnv off("MQSEC_CLAIM_ANSWERS", "0");
    Store s(root_ / "store");
    EXPECT_TRUE(s.claim_fast_path());
    EXPECT_FALSE(s.claim_answers());
  }
}

// The store's WAL hook replaces the one PRAGMA wal_autocheckpoint installs (Store::
// wal_committed), so it must still checkpoint at 10,000 frames; after that the next commit
// starts the WAL over and the header's frame count falls. Commits of 50 messages of 4,000 bytes
// (one page each) until about 14,000 frames were written: the count must fall once and never
// pass 10,000 by more than one commit's frames. (Fails when the hook does not checkpoint: the
// count climbs past 14,000.)
TEST_F(WalSignalTest, TheStoresWalHookStillCheckpoints) {
  Store s(root_ / "store");
  const int64_t id = mqsec::testing::make_queue(s, "checkpointed");
  sqlite3* db = nullptr;
  const int opened =
      sqlite3_open_v2((root_ / "store" / "mqsec.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  // Closed on every way out of the test, an assertion's too.
  const std::unique_ptr<sqlite3, int (*)(sqlite3*)> close(db, sqlite3_close);
  ASSERT_EQ(opened, SQLITE_OK);
  exec(db, "SELECT count(*) FROM messages");  // maps the wal-index
  {
    WalSignal sig(db);
    ASSERT_TRUE(sig.on());
    std::vector<Append> batch(50, Append{id, 3, Bytes(4000, 0x5a)});
    uint32_t prev = 0, most = 0, written = 0;
    bool fell = false;
    while (written < 14000) {
      s.append_batch(batch, false);
      const auto h = sig.read();
      ASSERT_TRUE(h);
      const uint32_t frames = WalSignal::frame_count(*h);
      if (frames < prev) {
        fell = true;
        written += frames;
      } else {
        written += frames - prev;
      }
      most = std::max(most, frames);
      prev = frames;
    }
    EXPECT_TRUE(fell) << "the WAL was never started over: no checkpoint";
    EXPECT_LE(most, 10000u + 200u);
  }
}

}  // namespace
}  // namespace mqsec::transport::local
