// The store's commit signal (src/transport/local/wal_signal.hpp): SQLite's WAL-index header,
// read from the connection's own mapping, changes with every commit of any connection and with
// nothing else deliver_claimed's fast path would have to notice; anything unusual is no reading.
#include "src/transport/local/wal_signal.hpp"

#include "src/transport/local/store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

namespace mqsec::transport::local {
namespace {

namespace fs = std::filesystem;

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

// The store's switch: MQSEC_CLAIM_FASTPATH=0 when it is opened.
TEST_F(WalSignalTest, TheStoresSwitch) {
  const char* was = std::getenv("MQSEC_CLAIM_FASTPATH");
  const std::string saved = was ? was : "";
  ::unsetenv("MQSEC_CLAIM_FASTPATH");
  {
    Store s(root_ / "store");
    EXPECT_TRUE(s.claim_fast_path());
  }
  ::setenv("MQSEC_CLAIM_FASTPATH", "0", 1);
  {
    Store s(root_ / "store");
    EXPECT_FALSE(s.claim_fast_path());
  }
  if (was) {
    ::setenv("MQSEC_CLAIM_FASTPATH", saved.c_str(), 1);
  } else {
    ::unsetenv("MQSEC_CLAIM_FASTPATH");
  }
}

}  // namespace
}  // namespace mqsec::transport::local
