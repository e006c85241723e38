// The store's VFS (src/transport/local/wal_vfs.hpp): a commit's WAL frames, gathered in memory,
// are in the file before any reader can look for them, and a failed write fails the commit;
// what a rolled-back transaction gathered is never written afterwards (another connection's
// frames may be at those offsets by then); reads of other connections' commits come from the
// mapping; the store uses the VFS unless MQSEC_WAL_VFS=0.
#include "src/transport/local/wal_vfs.hpp"

#include "src/transport/local/store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/support/scoped_env.hpp"
#include "tests/support/sqlite_query.hpp"
#include "tests/support/store_queue.hpp"

namespace mqsec::transport::local {
namespace {

namespace fs = std::filesystem;
using mqsec::testing::query_int64;
using mqsec::testing::ScopedEnv;

class WalVfs : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(wal_vfs_name(), nullptr);
    std::string tmpl = (fs::temp_directory_path() / "mqsec-walvfs-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    root_ = tmpl;
    path_ = root_ / "test.db";
  }
  void TearDown() override {
    for (sqlite3* db : open_) sqlite3_close_v2(db);
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  // A connection through the store's VFS (ours) or the default one.
  sqlite3* open(bool ours) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                              ours ? wal_vfs_name() : nullptr),
              SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    // As the store: no sync at a commit (FULL would sync the WAL, and so write what was
    // gathered, at every commit).
    EXPECT_EQ(exec(db, "PRAGMA synchronous=NORMAL"), SQLITE_OK);
    open_.push_back(db);
    return db;
  }
  // A connection through the store's VFS that creates the test's table (WAL mode); `cache`
  // pages of cache when not 0 (small: the transaction's pages spill into the WAL).
  sqlite3* create_table(int cache = 0) {
    sqlite3* db = open(true);
    std::string sql =
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB, tag TEXT);";
    if (cache != 0) sql += "PRAGMA cache_size=" + std::to_string(cache);
    EXPECT_EQ(exec(db, sql), SQLITE_OK);
    return db;
  }
  static int exec(sqlite3* db, const std::string& sql) {
    return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  }
  // The statements that insert rows (id, 3,000 bytes, `fill`) from `first`: about one WAL
  // frame each.
  static std::string rows(int first, int count, char fill) {
    std::string sql;
    for (int i = first; i < first + count; ++i) {
      sql += "INSERT INTO t(id, v, tag) VALUES(" + std::to_string(i) + ", zeroblob(3000), '" +
             std::string(1, fill) + "');";
    }
    return sql;
  }
  // Those rows, in one transaction.
  static int insert_rows(sqlite3* db, int first, int count, char fill) {
    return exec(db, "BEGIN;" + rows(first, count, fill) + "COMMIT;");
  }
  // What another connection (the default VFS: pread of the WAL) sees: rows, and whether the
  // database is intact.
  int64_t rows_seen_by_another_connection(const std::string& where = "1") {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    std::string ok;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      ok = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    EXPECT_EQ(ok, "ok") << "integrity_check of the database";
    const int64_t n = query_int64(db, "SELECT count(*) FROM t WHERE " + where);
    sqlite3_close_v2(db);
    return n;
  }
  fs::path root_, path_;
  std::vector<sqlite3*> open_;
};

TEST_F(WalVfs, ACommitsFramesAreGatheredAndInTheFileWhenItIsPublished) {
  sqlite3* a = create_table();
  const WalVfsCounts before = wal_vfs_counts();
  ASSERT_EQ(insert_rows(a, 0, 100, 'a'), SQLITE_OK);
  const WalVfsCounts after = wal_vfs_counts();
  // Two writes per frame, about 100 frames, written with one flush (the commit frame's page),
  // not by the barrier's safety net.
  EXPECT_GE(after.gathered - before.gathered, 200u);
  EXPECT_EQ(after.flushes - before.flushes, 1u);
  EXPECT_EQ(after.barrier_flushes, before.barrier_flushes);
  EXPECT_EQ(rows_seen_by_another_connection(), 100);
}

TEST_F(WalVfs, ReadsOfAnotherConnectionsCommitsComeFromTheMapping) {
  sqlite3* a = create_table();
  sqlite3* b = open(false);
  ASSERT_EQ(insert_rows(b, 0, 50, 'b'), SQLITE_OK);
  const WalVfsCounts before = wal_vfs_counts();
  EXPECT_EQ(query_int64(a, "SELECT count(*) FROM t WHERE tag = 'b'"), 50);
  const WalVfsCounts after = wal_vfs_counts();
  EXPECT_GE(after.mapped_reads - before.mapped_reads, 50u) << "b's pages, read by a";
  EXPECT_EQ(after.file_reads, before.file_reads);
}

// A transaction that outgrew its page cache wrote frames before its commit (a spill); rolled
// back, it leaves them gathered. Another connection then commits frames at the same offsets.
// Written afterwards, a's frames would overwrite b's committed ones, and read, they would be
// taken for b's.
TEST_F(WalVfs, WhatARolledBackTransactionGatheredIsNeverWritten) {
  sqlite3* a = create_table(20);
  ASSERT_EQ(exec(a, "INSERT INTO t(id, v, tag) VALUES(-1, x'00', 'z')"), SQLITE_OK);
  const WalVfsCounts before = wal_vfs_counts();
  ASSERT_EQ(exec(a, "BEGIN;" + rows(1000, 200, 'a')), SQLITE_OK);
  ASSERT_GT(wal_vfs_counts().gathered, before.gathered) << "the transaction spilled frames";
  ASSERT_EQ(exec(a, "ROLLBACK"), SQLITE_OK);
  ASSERT_GT(wal_vfs_counts().discarded, before.discarded) << "frames were left to drop";

  sqlite3* b = open(false);
  ASSERT_EQ(insert_rows(b, 0, 150, 'b'), SQLITE_OK);
  // a reads b's rows (their frames are where a's gathered ones would be), then commits.
  EXPECT_EQ(query_int64(a, "SELECT count(*) FROM t WHERE tag = 'b'"), 150);
  ASSERT_EQ(insert_rows(a, 500, 3, 'c'), SQLITE_OK);
  EXPECT_EQ(rows_seen_by_another_connection("tag = 'b'"), 150);
  EXPECT_EQ(rows_seen_by_another_connection("id >= 1000"), 0);
  EXPECT_EQ(rows_seen_by_another_connection(), 154);
}

// A transaction whose pages were spilled and changed again overwrites their frames in place, and
// after its commit frame SQLite rewrites those frames' checksums (wal.c walRewriteChecksums)
// before it publishes the commit: those writes go straight to the file, so the safety net at the
// barrier has nothing to write (an error there could not fail the commit).
TEST_F(WalVfs, ChecksumsRewrittenAfterTheCommitFrameGoStraightToTheFile) {
  sqlite3* a = create_table(20);
  const WalVfsCounts before = wal_vfs_counts();
  ASSERT_EQ(exec(a, "BEGIN;" + rows(0, 200, 'a') + "UPDATE t SET tag = 'b'; COMMIT;"), SQLITE_OK);
  const WalVfsCounts after = wal_vfs_counts();
  EXPECT_GT(after.gathered, before.gathered);
  EXPECT_EQ(after.barrier_flushes, before.barrier_flushes);
  EXPECT_EQ(rows_seen_by_another_connection("tag = 'b'"), 200);
}

// Two connections of one process through the VFS: the reader's barrier (at the start of each
// of its read transactions) leaves the writer's gathered frames alone; only the write lock's
// holder acts there.
TEST_F(WalVfs, AnotherConnectionsReadLeavesTheWritersGatheredFramesAlone) {
  sqlite3* a = create_table(20);
  sqlite3* b = open(true);
  const WalVfsCounts before = wal_vfs_counts();
  ASSERT_EQ(exec(a, "BEGIN;" + rows(0, 100, 'a')), SQLITE_OK);
  ASSERT_GT(wal_vfs_counts().gathered, before.gathered) << "a spilled";
  EXPECT_EQ(query_int64(b, "SELECT count(*) FROM t"), 0);
  EXPECT_EQ(wal_vfs_counts().barrier_flushes, before.barrier_flushes);
  ASSERT_EQ(exec(a, "COMMIT"), SQLITE_OK);
  EXPECT_EQ(query_int64(b, "SELECT count(*) FROM t WHERE tag = 'a'"), 100);
  EXPECT_EQ(wal_vfs_counts().barrier_flushes, before.barrier_flushes);
}

// A full disk (here the file size limit) when the gathered frames are written fails the commit,
// as a failed write of a frame did without gathering; the database keeps what was committed
// before, and the connection commits again once there is room.
TEST_F(WalVfs, AFailedWriteOfTheGatheredFramesFailsTheCommit) {
  sqlite3* a = create_table();
  ASSERT_EQ(insert_rows(a, 0, 10, 'a'), SQLITE_OK);
  // Closed before the fork (a connection must not cross it): the WAL is checkpointed and gone.
  sqlite3_close_v2(a);
  open_.clear();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim {};
    ::getrlimit(RLIMIT_FSIZE, &lim);
    lim.rlim_cur = 64 * 1024;  // the new WAL's first 16 frames
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(10);
    // A connection of the child's own (a parent's connection must not be used across fork).
    sqlite3* c = nullptr;
    if (sqlite3_open_v2(path_.c_str(), &c, SQLITE_OPEN_READWRITE, wal_vfs_name()) != SQLITE_OK ||
        exec(c, "PRAGMA synchronous=NORMAL") != SQLITE_OK) {
      ::_exit(11);
    }
    if (insert_rows(c, 100, 100, 'x') == SQLITE_OK) ::_exit(12);  // 400 KiB: must fail
    lim.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(13);
    if (insert_rows(c, 300, 5, 'y') != SQLITE_OK) ::_exit(14);  // room again: commits
    sqlite3_close_v2(c);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  ASSERT_EQ(WEXITSTATUS(status), 0) << "10-11 setup, 12 the commit passed, 13-14 no recovery";
  EXPECT_EQ(rows_seen_by_another_connection("id >= 100 AND id < 200"), 0);
  EXPECT_EQ(rows_seen_by_another_connection(), 15);
}

// The process's file pages (RssFile in /proc/self/status), in KiB.
int64_t rss_file_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("RssFile:", 0) == 0) return std::stoll(line.substr(8));
  }
  return -1;
}

// Reading a WAL of about 20 MiB through the mapping keeps at most about 2 MiB of it resident
// (docs/operations.md): the mapping's pages are let go after each 2 MiB read through it.
TEST_F(WalVfs, TheMappingKeepsLittleOfTheWalResident) {
  sqlite3* a = create_table();
  sqlite3* b = open(false);
  ASSERT_EQ(exec(b, "PRAGMA wal_autocheckpoint=0"), SQLITE_OK);  // every frame stays in the WAL
  ASSERT_EQ(insert_rows(b, 0, 5000, 'b'), SQLITE_OK);
  const int64_t before_kib = rss_file_kib();
  ASSERT_GT(before_kib, 0);
  const WalVfsCounts before = wal_vfs_counts();
  EXPECT_EQ(query_int64(a, "SELECT count(*) FROM t WHERE tag = 'b'"), 5000);
  EXPECT_GE(wal_vfs_counts().mapped_reads - before.mapped_reads, 4000u) << "read through it";
  EXPECT_LT(rss_file_kib() - before_kib, 6 * 1024) << "KiB of file pages kept resident";
}

// A checkpoint reads every frame once: through the mapping it would put the whole WAL (about
// 40 MiB at the store's 10,000 frames) in the process's resident set.
TEST_F(WalVfs, TheStoresCheckpointReadsTheFileNotTheMapping) {
  Store s(root_ / "store");
  const int64_t id = mqsec::testing::make_queue(s, "q");
  const WalVfsCounts before = wal_vfs_counts();
  for (int i = 0; i < 10'500; ++i) s.append(id, 3, Bytes(3000, 'm'), false);  // a frame each
  const WalVfsCounts after = wal_vfs_counts();
  EXPECT_GE(after.file_reads - before.file_reads, 5'000u) << "the checkpoint's reads";
  EXPECT_LT(after.mapped_reads - before.mapped_reads, 100u);
}

TEST_F(WalVfs, ReadsInsideWalReadsFromFileGoToTheFile) {
  sqlite3* a = create_table();
  sqlite3* b = open(false);
  ASSERT_EQ(insert_rows(b, 0, 20, 'b'), SQLITE_OK);
  const WalVfsCounts before = wal_vfs_counts();
  {
    WalReadsFromFile from_file;
    EXPECT_EQ(query_int64(a, "SELECT count(*) FROM t WHERE tag = 'b'"), 20);
  }
  const WalVfsCounts after = wal_vfs_counts();
  EXPECT_GE(after.file_reads - before.file_reads, 20u);
  EXPECT_EQ(after.mapped_reads, before.mapped_reads);
}

// The VFS's WAL file driven directly, with writes SQLite does not make in this order: gathered
// bytes stay one run at the offsets they were written for, whatever comes in between.
TEST_F(WalVfs, GatheredBytesLandWhereTheyWereWrittenWhateverTheOrder) {
  sqlite3_vfs* vfs = sqlite3_vfs_find(wal_vfs_name());
  ASSERT_NE(vfs, nullptr);
  std::ofstream(root_ / "direct.db").put('\0');  // a WAL's mode is taken from its database
  const std::string name = (root_ / "direct.db-wal").string();
  std::vector<char> storage(static_cast<size_t>(vfs->szOsFile) + 16);
  auto* f = reinterpret_cast<sqlite3_file*>(storage.data());
  int out = 0;
  ASSERT_EQ(vfs->xOpen(vfs, name.c_str(), f,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_WAL, &out),
            SQLITE_OK);
  const auto write = [&](const std::vector<uint8_t>& bytes, sqlite3_int64 off) {
    return f->pMethods->xWrite(f, bytes.data(), static_cast<int>(bytes.size()), off);
  };
  std::vector<uint8_t> header(32, 0);
  header[10] = 0x02;  // page size 512 (big-endian at bytes 8..11)
  std::vector<uint8_t> second_header = header;
  second_header[31] = 0x77;
  const std::vector<uint8_t> frame_header(24, 0);  // not a commit frame (bytes 4..7 zero)
  const std::vector<uint8_t> page(512, 0x5a);
  ASSERT_EQ(write(header, 0), SQLITE_OK);
  ASSERT_EQ(write(frame_header, 32), SQLITE_OK);
  ASSERT_EQ(write(page, 56), SQLITE_OK);
  const WalVfsCounts gathered = wal_vfs_counts();
  ASSERT_EQ(write(second_header, 0), SQLITE_OK);  // not after the run: the run goes first
  ASSERT_EQ(f->pMethods->xSync(f, SQLITE_SYNC_NORMAL), SQLITE_OK);
  EXPECT_GE(wal_vfs_counts().flushes - gathered.flushes, 2u);
  ASSERT_EQ(f->pMethods->xClose(f), SQLITE_OK);
  std::ifstream in(name, std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  ASSERT_EQ(bytes.size(), 56u + 512u);
  EXPECT_TRUE(std::equal(second_header.begin(), second_header.end(), bytes.begin()));
  EXPECT_TRUE(std::equal(page.begin(), page.end(), bytes.begin() + 56));
}

TEST_F(WalVfs, TheStoreUsesItUnlessSwitchedOff) {
  for (const char* setting : {"1", "0"}) {
    ScopedEnv env("MQSEC_WAL_VFS", setting);
    const fs::path dir = root_ / (std::string("store-") + setting);
    const WalVfsCounts before = wal_vfs_counts();
    {
      Store s(dir);
      s.append(mqsec::testing::make_queue(s, "q"), 3, Bytes(100, 'm'), false);
    }
    const WalVfsCounts after = wal_vfs_counts();
    if (std::string(setting) == "1") {
      EXPECT_GT(after.flushes, before.flushes);
    } else {
      EXPECT_EQ(after.flushes, before.flushes);
      EXPECT_EQ(after.gathered, before.gathered);
    }
  }
}

}  // namespace
}  // namespace mqsec::transport::local
