// The shared delivery log (src/transport/local/shared_delivery_log.hpp) on its own: records
// whole and in order, growth past the preallocated slots, keep_only's two placements and slot
// reuse, a SIGKILL inside keep_only or while holding the lock (robust mutex), try_lock against a
// live holder, other processes' records, two objects of one file in one process (one mapping,
// one lock), files that are not logs (always an error, never "no log", but for a header page of
// zeros: a power loss's remnant, no records), logs of an earlier boot (read without their lock,
// torn records skipped), the file's mode, a forged window past the end of the file, a failed
// growth, and threads appending at once. Each
// "process" is a forked child; each test works in a temporary directory of its own.
#include "src/transport/local/shared_delivery_log.hpp"

#include <mqsec/error.hpp>

#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace mqsec::transport::local {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr size_t kHeader = 4096;            // the header page (shared_delivery_log.cpp)
constexpr size_t kPreallocatedSlots = 256;  // slots a new log has
const std::string kOwner = "4242:777";

// A directory of the test's own under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/shm-log-test.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

DeliveryRecord rec(int64_t queue_id, int64_t seq, int64_t sent_time = 0, std::string id = {}) {
  DeliveryRecord r;
  r.queue_id = queue_id;
  r.seq = seq;
  r.sent_time = sent_time == 0 ? seq * 1000 + queue_id : sent_time;
  r.msg_id.assign(id.begin(), id.end());
  if (id.empty()) {
    const std::string d = "id-" + std::to_string(queue_id) + "-" + std::to_string(seq);
    r.msg_id.assign(d.begin(), d.end());
  }
  return r;
}

bool same(const DeliveryRecord& a, const DeliveryRecord& b) {
  return a.queue_id == b.queue_id && a.seq == b.seq && a.sent_time == b.sent_time &&
         a.msg_id == b.msg_id;
}

std::string show(const std::vector<DeliveryRecord>& rs) {
  std::string s;
  for (const DeliveryRecord& r : rs) {
    s += "(" + std::to_string(r.queue_id) + "," + std::to_string(r.seq) + "," +
         std::to_string(r.sent_time) + ",";
    for (const uint8_t c : r.msg_id) {
      if (c >= 0x20 && c < 0x7f) {
        s += static_cast<char>(c);
      } else {
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", c);
        s += hex;
      }
    }
    s += ") ";
  }
  return s;
}

// Exactly `want`, in order, every field.
::testing::AssertionResult records_are(const std::vector<DeliveryRecord>& got,
                                       const std::vector<DeliveryRecord>& want) {
  bool ok = got.size() == want.size();
  for (size_t i = 0; ok && i < got.size(); ++i) ok = same(got[i], want[i]);
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got.size() << " records: " << show(got)
                                       << "\nwant " << want.size() << ": " << show(want);
}

// Under the lock, taken with try_lock (5 s at most): a test whose child died in a way that left
// the lock held fails instead of hanging.
std::vector<DeliveryRecord> locked_read(DeliveryLog& log) {
  if (!log.try_lock(25'000)) throw std::runtime_error("the log's lock was not taken in 5 s");
  std::vector<DeliveryRecord> out;
  try {
    out = log.read_all();
  } catch (...) {
    log.unlock();
    throw;
  }
  log.unlock();
  return out;
}

uintmax_t size_of(const fs::path& p) { return fs::file_size(p); }

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The record in slot `i` of the file, read with pread (not through the log).
bool slot_record(const fs::path& p, size_t i, DeliveryRecord& r) {
  std::array<uint8_t, kDeliveryRecordSize> buf{};
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n =
      ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(kHeader + i * kDeliveryRecordSize));
  ::close(fd);
  return n == static_cast<ssize_t>(buf.size()) && decode_delivery_record(buf.data(), r);
}

// The offset of the window word in the header page: the only 8-aligned word holding `value`.
// -1 when none or several do.
off_t find_header_word(const fs::path& p, uint64_t value) {
  const std::string bytes = file_bytes(p);
  off_t found = -1;
  for (size_t off = 0; off + 8 <= kHeader && off + 8 <= bytes.size(); off += 8) {
    uint64_t w = 0;
    std::memcpy(&w, bytes.data() + off, 8);
    if (w == value) {
      if (found >= 0) return -1;
      found = static_cast<off_t>(off);
    }
  }
  return found;
}

bool write_word(const fs::path& p, off_t off, uint64_t value) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = ::pwrite(fd, &value, 8, off);
  ::close(fd);
  return n == 8;
}

// Runs `body` in a forked child; its return value (or 100 for an exception) is the exit code.
pid_t fork_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 100;
    try {
      code = body();
    } catch (...) {
      code = 100;
    }
    ::_exit(code);
  }
  return pid;
}

// How the child ended: its exit code, or 1000 + the signal that killed it.
int wait_child(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 1000 + WTERMSIG(status);
  return -2;
}

template <typename F>
::testing::AssertionResult storage_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    if (e.code() == MQ_ERROR_MESSAGE_STORAGE_FAILED) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "Error with another code: " << e.what();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "not an mqsec::Error: " << e.what();
  }
  return ::testing::AssertionFailure() << "no exception";
}

bool wait_byte(int fd, int timeout_ms, char& c) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return false;
  return ::read(fd, &c, 1) == 1;
}

void send_byte(int fd, char c) { ASSERT_EQ(::write(fd, &c, 1), 1); }

// ---------------------------------------------------------------------------------------------

TEST(SharedDeliveryLog, AppendedRecordsComeBackWholeAndInOrder) {
  TempDir dir;
  SharedDeliveryLog log(dir.path(), kOwner, /*create=*/true);
  ASSERT_TRUE(log.is_open());
  const std::string id48(kMaxLoggedIdSize, 'x');
  std::string binary_id(kMaxLoggedIdSize, '\0');
  for (size_t i = 0; i < binary_id.size(); ++i) binary_id[i] = static_cast<char>(255 - i);
  DeliveryRecord empty_id = rec(7, 1);
  empty_id.msg_id.clear();
  const std::vector<DeliveryRecord> want = {
      rec(1, 10, 123456789, "abc"),
      rec(-5, INT64_MAX, INT64_MIN, id48),
      empty_id,
      rec(INT64_MIN, -1, 42, binary_id),
      rec(3, 0, -7, "z"),
  };
  log.lock();
  EXPECT_TRUE(records_are(log.read_all(), {}));
  for (const DeliveryRecord& r : want) log.append(r);
  EXPECT_TRUE(records_are(log.read_all(), want));

  // An id longer than a record holds is refused and leaves the log as it was.
  EXPECT_TRUE(storage_error([&] { log.append(rec(9, 9, 9, std::string(49, 'y'))); }));
  EXPECT_TRUE(records_are(log.read_all(), want));
  // And the next append lands right after the last record.
  log.append(rec(8, 8));
  std::vector<DeliveryRecord> more = want;
  more.push_back(rec(8, 8));
  EXPECT_TRUE(records_are(log.read_all(), more));
  log.unlock();

  // A new object of the file (DeliveryLog::open, the kind's way) reads the same.
  auto again = DeliveryLog::open(DeliveryLogKind::Shared, dir.path(), kOwner, false);
  ASSERT_TRUE(again->is_open());
  EXPECT_TRUE(records_are(locked_read(*again), more));
  EXPECT_EQ(DeliveryLog::path_of(DeliveryLogKind::Shared, dir.path(), kOwner),
            dir.path() / "claims" / "4242-777.shm");
}

TEST(SharedDeliveryLog, GrowsPastThePreallocatedSlots) {
  TempDir dir;
  SharedDeliveryLog log(dir.path(), kOwner, true);
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  EXPECT_EQ(size_of(path), kHeader + kPreallocatedSlots * kDeliveryRecordSize);
  std::vector<DeliveryRecord> want;
  std::set<uintmax_t> sizes;  // the file's sizes seen after each append
  log.lock();
  for (int i = 0; i < 1000; ++i) {
    want.push_back(rec(i % 3, i));
    log.append(want.back());
    sizes.insert(size_of(path));
    if (i == 255 || i == 256 || i == 600) {
      EXPECT_TRUE(records_are(log.read_all(), want)) << "after " << i + 1 << " appends";
    }
  }
  EXPECT_TRUE(records_are(log.read_all(), want));
  log.unlock();
  const uintmax_t size = size_of(path);
  EXPECT_GE(size, kHeader + 1000 * kDeliveryRecordSize);
  EXPECT_EQ((size - kHeader) % kDeliveryRecordSize, 0U) << size;
  // Growth doubles (or so): not one system call per record (256 -> 512 -> 1024 slots), not
  // without bound either.
  EXPECT_LE(sizes.size(), 4U) << "the file grew " << sizes.size() - 1 << " times";
  EXPECT_LE(size, kHeader + 4096 * kDeliveryRecordSize);
  // A fresh process's view (a child opening it anew) sees all of them.
  const pid_t pid = fork_child([&] {
    SharedDeliveryLog other(dir.path(), kOwner, false);
    return records_are(locked_read(other), want) ? 0 : 1;
  });
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(SharedDeliveryLog, KeepOnlyKeepsExactlyTheGivenRecordsInBothPlacements) {
  TempDir dir;
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  SharedDeliveryLog log(dir.path(), kOwner, true);
  log.lock();
  std::vector<DeliveryRecord> all;
  for (int i = 0; i < 10; ++i) {
    all.push_back(rec(1, i));
    log.append(all.back());
  }
  // Window (0, 10): two kept records do not fit before it, so they go after it (slots 10, 11)
  // and the live records are never written over.
  std::vector<DeliveryRecord> kept = {all[3], all[7]};
  log.keep_only(kept);
  EXPECT_TRUE(records_are(log.read_all(), kept));
  DeliveryRecord at{};
  ASSERT_TRUE(slot_record(path, 10, at));
  EXPECT_TRUE(same(at, all[3]));
  ASSERT_TRUE(slot_record(path, 0, at));
  EXPECT_TRUE(same(at, all[0])) << "the old window was written over";
  // Appends continue after the kept ones.
  log.append(rec(2, 100));
  log.append(rec(2, 101));
  kept.push_back(rec(2, 100));
  kept.push_back(rec(2, 101));
  EXPECT_TRUE(records_are(log.read_all(), kept));
  // Window (10, 4): three kept records fit before it, at slot 0.
  const std::vector<DeliveryRecord> kept2 = {kept[1], kept[2], kept[3]};
  log.keep_only(kept2);
  EXPECT_TRUE(records_are(log.read_all(), kept2));
  ASSERT_TRUE(slot_record(path, 0, at));
  EXPECT_TRUE(same(at, kept2[0]));
  ASSERT_TRUE(slot_record(path, 2, at));
  EXPECT_TRUE(same(at, kept2[2]));
  log.append(rec(3, 1));
  std::vector<DeliveryRecord> now = kept2;
  now.push_back(rec(3, 1));
  EXPECT_TRUE(records_are(log.read_all(), now));
  ASSERT_TRUE(slot_record(path, 3, at));
  EXPECT_TRUE(same(at, rec(3, 1)));

  // keep_only of nothing empties; appends then start afresh.
  log.keep_only({});
  EXPECT_TRUE(records_are(log.read_all(), {}));
  log.append(rec(4, 1));
  EXPECT_TRUE(records_are(log.read_all(), {rec(4, 1)}));
  // truncate empties.
  log.truncate();
  EXPECT_TRUE(records_are(log.read_all(), {}));
  log.append(rec(5, 1));
  log.append(rec(5, 2));
  EXPECT_TRUE(records_are(log.read_all(), {rec(5, 1), rec(5, 2)}));
  // keep_only of every live record (the same ones, in their order).
  const std::vector<DeliveryRecord> same_ones = log.read_all();
  log.keep_only(same_ones);
  EXPECT_TRUE(records_are(log.read_all(), {rec(5, 1), rec(5, 2)}));
  log.unlock();
}

TEST(SharedDeliveryLog, RepeatedKeepOnlyCyclesReuseSlots) {
  TempDir dir;
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  SharedDeliveryLog log(dir.path(), kOwner, true);
  log.lock();
  std::vector<DeliveryRecord> live;
  int64_t seq = 0;
  for (int cycle = 0; cycle < 300; ++cycle) {
    for (int i = 0; i < 100; ++i) {
      live.push_back(rec(cycle, seq++));
      log.append(live.back());
    }
    // Keep the last three (what the owner has not applied yet).
    live.erase(live.begin(), live.end() - 3);
    log.keep_only(live);
    if (cycle % 37 == 0) {
      ASSERT_TRUE(records_are(log.read_all(), live)) << "cycle " << cycle;
    }
  }
  EXPECT_TRUE(records_are(log.read_all(), live));
  log.unlock();
  // 30,000 appends; the live records never exceed 103, so the file stays small.
  EXPECT_LE(size_of(path), kHeader + 4 * kPreallocatedSlots * kDeliveryRecordSize);
}

// keep_only killed after writing the kept records and before publishing them: the next locker
// takes the dead holder's lock and reads the old window exactly. Both placements.
TEST(SharedDeliveryLog, KilledInsideKeepOnlyLeavesTheOldWindow) {
  for (const bool before_window : {false, true}) {
    SCOPED_TRACE(before_window ? "kept records before the window" : "after the window");
    TempDir dir;
    std::vector<DeliveryRecord> all;
    for (int i = 0; i < 8; ++i) all.push_back(rec(6, i));
    // The window the child leaves: all[0..5) (start 0) or all[3..8) (start 3... after a
    // keep_only that moved it to slot 5).
    const std::vector<DeliveryRecord> old_window =
        before_window ? std::vector<DeliveryRecord>{all[3], all[4], all[5], all[6], all[7]}
                      : std::vector<DeliveryRecord>{all[0], all[1], all[2], all[3], all[4]};
    const pid_t pid = fork_child([&] {
      SharedDeliveryLog log(dir.path(), kOwner, true);
      log.lock();
      if (before_window) {
        for (int i = 0; i < 5; ++i) log.append(all[static_cast<size_t>(i)]);
        const std::vector<DeliveryRecord> k = {all[3], all[4]};
        log.keep_only(k);  // window (5, 2)
        log.append(all[5]);
        log.append(all[6]);
        log.append(all[7]);  // window (5, 5)
      } else {
        for (int i = 0; i < 5; ++i) log.append(all[static_cast<size_t>(i)]);  // window (0, 5)
      }
      if (!records_are(log.read_all(), old_window)) return 1;
      set_delivery_log_rewrite_hook_for_test([] { ::raise(SIGKILL); });
      // Before the window: 2 <= 5, at slot 0; after it: 2 > 0, at slot 5.
      const std::vector<DeliveryRecord> k = {old_window[4], old_window[2]};
      log.keep_only(k);
      return 2;  // not killed
    });
    ASSERT_EQ(wait_child(pid), 1000 + SIGKILL);
    SharedDeliveryLog log(dir.path(), kOwner, false);
    ASSERT_TRUE(log.is_open());
    ASSERT_TRUE(log.try_lock(50));
    EXPECT_TRUE(records_are(log.read_all(), old_window));
    log.unlock();
    // The lock was made consistent: it works again and again.
    for (int i = 0; i < 3; ++i) {
      log.lock();
      EXPECT_TRUE(records_are(log.read_all(), old_window));
      log.unlock();
    }
  }
}

TEST(SharedDeliveryLog, ALockWhoseHolderDiedIsTakenOverForGood) {
  for (const bool killed : {false, true}) {
    SCOPED_TRACE(killed ? "holder SIGKILLed" : "holder _exit()ed");
    TempDir dir;
    SharedDeliveryLog log(dir.path(), kOwner, true);  // opened before the fork
    const pid_t pid = fork_child([&] {
      SharedDeliveryLog own(dir.path(), kOwner, false);
      own.lock();
      own.append(rec(1, 1));
      if (killed) ::raise(SIGKILL);
      ::_exit(7);  // holding the lock
      return 0;
    });
    ASSERT_EQ(wait_child(pid), killed ? 1000 + SIGKILL : 7);
    if (killed) {
      ASSERT_TRUE(log.try_lock(50));
    } else {
      log.lock();
    }
    EXPECT_TRUE(records_are(log.read_all(), {rec(1, 1)}));
    log.append(rec(1, 2));
    log.unlock();
    for (int i = 0; i < 5; ++i) {
      log.lock();
      log.unlock();
      ASSERT_TRUE(log.try_lock(1)) << "round " << i;
      log.unlock();
    }
    // Another process also takes it (the mutex is consistent, not ENOTRECOVERABLE).
    const pid_t next = fork_child([&] {
      SharedDeliveryLog own(dir.path(), kOwner, false);
      if (!own.try_lock(50)) return 1;
      const bool ok = records_are(own.read_all(), {rec(1, 1), rec(1, 2)});
      own.unlock();
      return ok ? 0 : 2;
    });
    EXPECT_EQ(wait_child(next), 0);
  }
}

// A process that destroys its last object of a log while one of its threads holds the log's lock
// (exit() and static destructors while a thread delivers), and then dies, leaves the lock
// takeable: the mutex stays mapped while it is held, so at the holder's death the kernel marks it
// EOWNERDEAD (unmapped, it stayed held for good and the owner's claims were never recovered).
TEST(SharedDeliveryLog, AHolderThatDiesAfterItsLastObjectWentAwayLeavesTheLockTakeable) {
  TempDir dir;
  { SharedDeliveryLog create(dir.path(), kOwner, true); }
  const pid_t pid = fork_child([&] {
    {
      SharedDeliveryLog own(dir.path(), kOwner, false);
      own.lock();
      own.append(rec(1, 1));
    }  // destroyed holding the lock
    return 0;
  });
  ASSERT_EQ(wait_child(pid), 0);
  SharedDeliveryLog log(dir.path(), kOwner, false);
  ASSERT_TRUE(log.try_lock(50));
  EXPECT_TRUE(records_are(log.read_all(), {rec(1, 1)}));
  log.unlock();
}

TEST(SharedDeliveryLog, TryLockFailsWhileALiveProcessHoldsTheLock) {
  TempDir dir;
  SharedDeliveryLog log(dir.path(), kOwner, true);
  int to_child[2];
  int to_parent[2];
  ASSERT_EQ(::pipe(to_child), 0);
  ASSERT_EQ(::pipe(to_parent), 0);
  const pid_t pid = fork_child([&] {
    SharedDeliveryLog own(dir.path(), kOwner, false);
    own.lock();
    own.append(rec(2, 1));
    char c = 'L';
    if (::write(to_parent[1], &c, 1) != 1) return 1;
    // Holds the lock until told (or 10 s: a try_lock that waited would see it then).
    (void)wait_byte(to_child[0], 10'000, c);
    own.unlock();
    c = 'U';
    if (::write(to_parent[1], &c, 1) != 1) return 2;
    (void)wait_byte(to_child[0], 10'000, c);
    return 0;
  });
  char c = 0;
  ASSERT_TRUE(wait_byte(to_parent[0], 10'000, c));
  ASSERT_EQ(c, 'L');
  const auto t0 = std::chrono::steady_clock::now();
  const bool got = log.try_lock(50);
  const auto waited = std::chrono::steady_clock::now() - t0;
  if (got) log.unlock();
  EXPECT_FALSE(got);
  EXPECT_LT(waited, 3s);  // 50 polls 0.2 ms apart, with a wide margin for a loaded machine
  send_byte(to_child[1], 'u');
  ASSERT_TRUE(wait_byte(to_parent[0], 10'000, c));
  ASSERT_EQ(c, 'U');
  EXPECT_TRUE(log.try_lock(50));
  EXPECT_TRUE(records_are(log.read_all(), {rec(2, 1)}));
  log.unlock();
  send_byte(to_child[1], 'x');
  EXPECT_EQ(wait_child(pid), 0);
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) ::close(fd);
}

TEST(SharedDeliveryLog, AnotherProcesssRecordsAreSeen) {
  for (const bool opened_before : {true, false}) {
    SCOPED_TRACE(opened_before ? "parent opened the log before" : "parent opens it after");
    TempDir dir;
    std::unique_ptr<SharedDeliveryLog> log;
    std::vector<DeliveryRecord> want;
    if (opened_before) {
      log = std::make_unique<SharedDeliveryLog>(dir.path(), kOwner, true);
      log->lock();
      want.push_back(rec(0, 0));
      log->append(want.back());
      EXPECT_TRUE(records_are(log->read_all(), want));  // maps the records
      log->unlock();
    }
    std::vector<DeliveryRecord> child_records;
    for (int i = 1; i <= 400; ++i) child_records.push_back(rec(9, i));  // past 256: it grows
    const pid_t pid = fork_child([&] {
      SharedDeliveryLog own(dir.path(), kOwner, true);
      for (const DeliveryRecord& r : child_records) {
        own.lock();
        own.append(r);
        own.unlock();
      }
      return 0;
    });
    ASSERT_EQ(wait_child(pid), 0);
    want.insert(want.end(), child_records.begin(), child_records.end());
    if (!opened_before) log = std::make_unique<SharedDeliveryLog>(dir.path(), kOwner, false);
    ASSERT_TRUE(log->is_open());
    EXPECT_TRUE(records_are(locked_read(*log), want));
    // And the parent appends after them.
    log->lock();
    log->append(rec(0, 1));
    log->unlock();
    want.push_back(rec(0, 1));
    EXPECT_TRUE(records_are(locked_read(*log), want));
  }
}

// The entries of /proc/self/fd that are the file `path` names, and the lines of /proc/self/maps
// that map it; by device and inode (a log made by this process is open under the name it was
// created with, which it no longer has).
size_t open_descriptors_of(const fs::path& path) {
  struct stat want {};
  if (::stat(path.c_str(), &want) != 0) return 0;
  size_t n = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    struct stat st {};
    if (::stat(e.path().c_str(), &st) == 0 && st.st_dev == want.st_dev &&
        st.st_ino == want.st_ino) {
      ++n;
    }
  }
  return n;
}
size_t mappings_of(const fs::path& path) {
  struct stat want {};
  if (::stat(path.c_str(), &want) != 0) return 0;
  std::ifstream maps("/proc/self/maps");
  size_t n = 0;
  for (std::string line; std::getline(maps, line);) {
    // address perms offset major:minor inode [path]
    unsigned major = 0;
    unsigned minor = 0;
    unsigned long inode = 0;
    if (std::sscanf(line.c_str(), "%*s %*s %*s %x:%x %lu", &major, &minor, &inode) == 3 &&
        inode == want.st_ino && major == ::major(want.st_dev) && minor == ::minor(want.st_dev)) {
      ++n;
    }
  }
  return n;
}

TEST(SharedDeliveryLog, ObjectsOfOneFileInOneProcessShareTheLockAndTheMapping) {
  TempDir dir;
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  SharedDeliveryLog a(dir.path(), kOwner, true);
  SharedDeliveryLog b(dir.path(), kOwner, false);
  ASSERT_TRUE(b.is_open());

  a.lock();
  bool got = true;
  std::thread([&] {
    got = b.try_lock(3);
    if (got) b.unlock();
  }).join();
  EXPECT_FALSE(got) << "b took a lock a holds";
  a.unlock();
  std::thread([&] {
    got = b.try_lock(3);
    if (got) b.unlock();
  }).join();
  EXPECT_TRUE(got);

  std::vector<DeliveryRecord> want = {rec(1, 1)};
  a.lock();
  a.append(want[0]);
  a.unlock();
  EXPECT_TRUE(records_are(locked_read(b), want));
  // a grows the file past its 256 slots; b reads every record.
  a.lock();
  for (int i = 2; i <= 700; ++i) {
    want.push_back(rec(1, i));
    a.append(want.back());
  }
  a.unlock();
  EXPECT_TRUE(records_are(locked_read(b), want));
  b.lock();
  b.append(rec(2, 1));
  b.unlock();
  want.push_back(rec(2, 1));
  EXPECT_TRUE(records_are(locked_read(a), want));

  // One descriptor and one mapping of the header and of the records, whatever the number of
  // objects.
  std::vector<std::unique_ptr<SharedDeliveryLog>> more;
  for (int i = 0; i < 4; ++i) {
    more.push_back(std::make_unique<SharedDeliveryLog>(dir.path(), kOwner, i % 2 == 0));
    EXPECT_TRUE(records_are(locked_read(*more.back()), want));
  }
  EXPECT_EQ(open_descriptors_of(path), 1U);
  EXPECT_GE(mappings_of(path), 1U);
  EXPECT_LE(mappings_of(path), 2U);
}

TEST(SharedDeliveryLog, AFileThatIsNotALogIsAnError) {
  TempDir dir;
  // A real log's bytes (made elsewhere): its header is a log's.
  std::string good;
  {
    TempDir other;
    SharedDeliveryLog log(other.path(), kOwner, true);
    log.lock();
    for (int i = 0; i < 3; ++i) log.append(rec(1, i));
    log.unlock();
    good = file_bytes(SharedDeliveryLog::path_of(other.path(), kOwner));
  }
  ASSERT_EQ(good.size(), kHeader + kPreallocatedSlots * kDeliveryRecordSize);
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);

  // A missing log without create: no log, no error, nothing created.
  {
    SharedDeliveryLog log(dir.path(), kOwner, false);
    EXPECT_FALSE(log.is_open());
    EXPECT_FALSE(fs::exists(path));
  }
  fs::create_directory(path.parent_path());

  auto with = [&](size_t off, uint32_t v) {
    std::string s = good;
    std::memcpy(s.data() + off, &v, 4);
    return s;
  };
  const std::vector<std::pair<std::string, std::string>> not_logs = {
      {"empty", ""},
      {"100 bytes of a log's header", good.substr(0, 100)},
      {"4095 bytes", good.substr(0, kHeader - 1)},
      {"4096 + 40 bytes", good.substr(0, kHeader + 40)},
      {"a whole log but half a record", good + std::string(40, '\0')},
      {"wrong magic", with(0, 0x3153'4C45)},
      {"wrong record size", with(4, 81)},
      {"wrong header size", with(8, 8192)},
      {"another build's mutex layout", with(12, 24 | 4 << 16)},
  };
  for (const auto& [what, bytes] : not_logs) {
    for (const bool create : {false, true}) {
      SCOPED_TRACE(what + (create ? ", create" : ", no create"));
      write_file(path, bytes);
      EXPECT_TRUE(storage_error([&] { SharedDeliveryLog log(dir.path(), kOwner, create); }));
      EXPECT_TRUE(storage_error(
          [&] { (void)DeliveryLog::open(DeliveryLogKind::Shared, dir.path(), kOwner, create); }));
      // Left as it was (never taken for a new log and overwritten).
      EXPECT_EQ(file_bytes(path), bytes);
    }
  }
  // A header page of zeros (alone, or with zeroed slots) is what a power loss leaves of a log
  // whose header never reached the disk: a log of an earlier boot with no records, not an error
  // (ASalvagedLogSkipsRecordsThatCrossASectorAndABlankHeaderIsNoRecords).
  for (const std::string& bytes : {std::string(kHeader, '\0'), std::string(good.size(), '\0')}) {
    SCOPED_TRACE(bytes.size());
    write_file(path, bytes);
    SharedDeliveryLog log(dir.path(), kOwner, false);
    ASSERT_TRUE(log.is_open());
    EXPECT_TRUE(log.from_earlier_boot());
    EXPECT_TRUE(records_are(log.read_salvage(), {}));
    EXPECT_EQ(file_bytes(path), bytes);
  }
  // The header alone is a log with no slot? It is not one this code makes: a log always has
  // whole slots after its header. A real header with no slot after it:
  {
    write_file(path, good.substr(0, kHeader));
    // Zero slots is a whole number of slots: opening it is allowed, and it is empty.
    std::unique_ptr<SharedDeliveryLog> log;
    try {
      log = std::make_unique<SharedDeliveryLog>(dir.path(), kOwner, false);
    } catch (const Error&) {
    }
    if (log) {
      log->lock();
      EXPECT_TRUE(storage_error([&] { (void)log->read_all(); }))
          << "3 live records in a file with no slot";
      log->unlock();
    }
  }
  fs::remove(path);

  // A FIFO at the path: not a regular file.
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  for (const bool create : {false, true}) {
    EXPECT_TRUE(storage_error([&] { SharedDeliveryLog log(dir.path(), kOwner, create); }));
  }
  fs::remove(path);

  // A symbolic link at the path is refused, even to a real log, and a dangling one is not
  // followed to create its target.
  const fs::path elsewhere = dir.path() / "real.shm";
  write_file(elsewhere, good);
  fs::create_symlink(elsewhere, path);
  for (const bool create : {false, true}) {
    SCOPED_TRACE(create ? "link to a log, create" : "link to a log, no create");
    EXPECT_TRUE(storage_error([&] { SharedDeliveryLog log(dir.path(), kOwner, create); }));
  }
  fs::remove(path);
  const fs::path target = dir.path() / "target.shm";
  fs::create_symlink(target, path);
  for (const bool create : {false, true}) {
    SCOPED_TRACE(create ? "dangling link, create" : "dangling link, no create");
    EXPECT_TRUE(storage_error([&] { SharedDeliveryLog log(dir.path(), kOwner, create); }));
    EXPECT_FALSE(fs::exists(target));
  }
  fs::remove(path);

  // And the real log's bytes at the path are a log.
  write_file(path, good);
  SharedDeliveryLog log(dir.path(), kOwner, false);
  ASSERT_TRUE(log.is_open());
  EXPECT_TRUE(records_are(locked_read(log), {rec(1, 0), rec(1, 1), rec(1, 2)}));
}

TEST(SharedDeliveryLog, FileIsOwnerOnlyAndRemoveFileUnlinksIt) {
  TempDir dir;
  const mode_t old_umask = ::umask(0);  // the modes must not rely on the umask
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  {
    SharedDeliveryLog log(dir.path(), kOwner, true);
    ::umask(old_umask);
    struct stat st {};
    ASSERT_EQ(::lstat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600U);
    ASSERT_EQ(::lstat(path.parent_path().c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0700U);
    // No temporary file left behind: the claims directory holds the log alone.
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path.parent_path())) {
      names.push_back(e.path().filename().string());
    }
    EXPECT_EQ(names, std::vector<std::string>{"4242-777.shm"});
    log.remove_file();
    EXPECT_FALSE(fs::exists(fs::symlink_status(path)));
  }
  ::umask(old_umask);
  SharedDeliveryLog gone(dir.path(), kOwner, false);
  EXPECT_FALSE(gone.is_open());
}

// Whatever is at the temporary name a new log is written under (a file of the user's, a hard
// link to one, with any mode) is never written through: it is replaced, and the log is 0600.
TEST(SharedDeliveryLog, AFileAtTheTemporaryNameIsNeverWrittenThrough) {
  TempDir dir;
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  fs::create_directory(path.parent_path());
  const fs::path precious = dir.path() / "precious";
  write_file(precious, "keep me");
  ::chmod(precious.c_str(), 0644);
  const fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".new");
  ASSERT_EQ(::link(precious.c_str(), tmp.c_str()), 0);
  {
    SharedDeliveryLog log(dir.path(), kOwner, true);
    log.lock();
    log.append(rec(1, 1));
    EXPECT_TRUE(records_are(log.read_all(), {rec(1, 1)}));
    log.unlock();
  }
  EXPECT_EQ(file_bytes(precious), "keep me");
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600U);
  EXPECT_FALSE(fs::exists(fs::symlink_status(tmp)));
}

TEST(SharedDeliveryLog, AWindowPastTheEndOfTheFileIsAnError) {
  TempDir dir;
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  SharedDeliveryLog log(dir.path(), kOwner, true);
  log.lock();
  for (int i = 0; i < 3; ++i) log.append(rec(1, i));
  log.unlock();
  const off_t window = find_header_word(path, uint64_t{3} << 32);
  ASSERT_GE(window, 0) << "the window word (3 << 32 | 0) is not in the header page";
  const uintmax_t size = size_of(path);

  // count 1000 (the file has 256 slots), then start past the end.
  for (const uint64_t forged : {uint64_t{1000} << 32, uint64_t{3} << 32 | 100'000U,
                                uint64_t{0xffff'ffff} << 32 | 0xffff'ffffU}) {
    SCOPED_TRACE(forged);
    ASSERT_TRUE(write_word(path, window, forged));
    log.lock();
    EXPECT_TRUE(storage_error([&] { (void)log.read_all(); }));
    log.unlock();
    // Another object (and another process) says the same.
    const pid_t pid = fork_child([&] {
      SharedDeliveryLog other(dir.path(), kOwner, false);
      other.lock();
      const bool err = storage_error([&] { (void)other.read_all(); });
      other.unlock();
      return err ? 0 : 1;
    });
    EXPECT_EQ(wait_child(pid), 0);
    EXPECT_EQ(size_of(path), size) << "reading the log changed its size";
  }
  // A live slot that is not a record is an error too.
  ASSERT_TRUE(write_word(path, window, uint64_t{3} << 32));
  ASSERT_TRUE(write_word(path, static_cast<off_t>(kHeader + kDeliveryRecordSize), 0x1234));
  log.lock();
  EXPECT_TRUE(storage_error([&] { (void)log.read_all(); }));
  log.unlock();
  // The window put back over whole records reads again.
  ASSERT_TRUE(write_word(path, window, uint64_t{1} << 32 | 2U));
  EXPECT_TRUE(records_are(locked_read(log), {rec(1, 2)}));
}

// What a power loss leaves of a log made in an earlier boot: its lock taken by a holder of that
// boot (the kernel marks a dead holder only in the boot it died in: nobody will ever release
// it), a slot of the window that never reached the disk, a window past the file's end.
// from_earlier_boot() tells such a log; read_salvage() reads, without the lock, what decodes.
// A log of this boot, or one that does not record its boot, is not from an earlier one.
TEST(SharedDeliveryLog, ALogOfAnEarlierBootIsReadWithoutItsLockWhatDecodes) {
  const BootIdForTest boot("the boot before");
  TempDir dir;
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  const fs::path image = dir.path() / "image";
  {
    SharedDeliveryLog made(dir.path(), kOwner, true);
    EXPECT_FALSE(made.from_earlier_boot()) << "made in this boot";
  }
  const pid_t pid = fork_child([&] {
    SharedDeliveryLog own(dir.path(), kOwner, false);
    own.lock();
    for (int i = 1; i <= 3; ++i) own.append(rec(1, i));
    write_file(image, file_bytes(path));  // the disk at the power loss: the lock taken
    ::raise(SIGKILL);
    return 0;
  });
  ASSERT_EQ(wait_child(pid), 1000 + SIGKILL);
  write_file(path, file_bytes(image));
  ASSERT_TRUE(write_word(path, static_cast<off_t>(kHeader + kDeliveryRecordSize), 0));  // slot 1
  set_boot_id_for_test("this boot");
  SharedDeliveryLog log(dir.path(), kOwner, false);
  EXPECT_TRUE(log.from_earlier_boot());
  EXPECT_FALSE(log.try_lock(5)) << "the lock the power loss left taken";
  EXPECT_TRUE(records_are(log.read_salvage(), {rec(1, 1), rec(1, 3)}));
  const off_t window = find_header_word(path, uint64_t{3} << 32);
  ASSERT_GE(window, 0);
  ASSERT_TRUE(write_word(path, window, uint64_t{100'000} << 32));  // past the end: cut there
  EXPECT_TRUE(records_are(log.read_salvage(), {rec(1, 1), rec(1, 3)}));
  ASSERT_TRUE(write_word(path, window, uint64_t{3} << 32 | 100'000U));  // starts past the end
  EXPECT_TRUE(records_are(log.read_salvage(), {}));
  // The boot is what the log recorded, not the lock: a log of this boot is not salvaged.
  SharedDeliveryLog now(dir.path(), "4242:778", true);
  EXPECT_FALSE(now.from_earlier_boot());
  set_boot_id_for_test("");
  EXPECT_TRUE(log.from_earlier_boot()) << "against the machine's real boot id too";
}

// A log made by an mqsec that did not record its boot (its boot field all zeros) is read as
// before (docs/operations.md): never taken for one of an earlier boot, whatever boot this is.
TEST(SharedDeliveryLog, ALogThatRecordsNoBootIsNotFromAnEarlierOne) {
  const BootIdForTest boot("the boot it was made in");
  TempDir dir;
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  { SharedDeliveryLog made(dir.path(), kOwner, true); }
  std::string bytes = file_bytes(path);
  const size_t at = bytes.substr(0, kHeader).find("the boot it was made in");
  ASSERT_NE(at, std::string::npos) << "the boot is not recorded in the header page";
  std::fill_n(bytes.begin() + static_cast<std::ptrdiff_t>(at), 23, '\0');
  write_file(path, bytes);
  set_boot_id_for_test("a later boot");
  SharedDeliveryLog log(dir.path(), kOwner, false);
  EXPECT_FALSE(log.from_earlier_boot());
  set_boot_id_for_test("");
  EXPECT_FALSE(log.from_earlier_boot()) << "against the machine's real boot id too";
}

// A salvaged log does not apply a record that crosses a 512-byte sector of the file (a power
// loss can tear it: its halves may come from two records): slot 6 (bytes 4576-4655) of ten. And a
// log whose header page is all zeros (made by an mqsec that did not flush it before naming it,
// and cut short by a power loss) is a log of an earlier boot with no records, not "not a log".
TEST(SharedDeliveryLog, ASalvagedLogSkipsRecordsThatCrossASectorAndABlankHeaderIsNoRecords) {
  const BootIdForTest boot("the boot before");
  TempDir dir;
  std::vector<DeliveryRecord> want;
  {
    SharedDeliveryLog made(dir.path(), kOwner, true);
    made.lock();
    for (int i = 0; i < 10; ++i) {
      made.append(rec(1, i));
      if (i != 6) want.push_back(rec(1, i));
    }
    made.unlock();
  }
  set_boot_id_for_test("this boot");
  {
    SharedDeliveryLog log(dir.path(), kOwner, false);
    EXPECT_TRUE(records_are(locked_read(log),
                            [] {
                              std::vector<DeliveryRecord> all;
                              for (int i = 0; i < 10; ++i) all.push_back(rec(1, i));
                              return all;
                            }()))
        << "read with the lock: every record";
    EXPECT_TRUE(records_are(log.read_salvage(), want)) << "salvaged: all but slot 6";
  }
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  std::string bytes = file_bytes(path);
  std::fill(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(kHeader), '\0');
  write_file(path, bytes);
  {
    SharedDeliveryLog blank(dir.path(), kOwner, false);
    EXPECT_TRUE(blank.is_open());
    EXPECT_TRUE(blank.from_earlier_boot());
    EXPECT_TRUE(records_are(blank.read_salvage(), {}));
  }
  // One byte of the header page not zero: not a log, as before.
  bytes[100] = 1;
  write_file(path, bytes);
  EXPECT_TRUE(storage_error([&] { SharedDeliveryLog other(dir.path(), kOwner, false); }));
}

TEST(SharedDeliveryLog, AFailedGrowthIsAnErrorAndPublishesNothing) {
  TempDir dir;
  const fs::path path = SharedDeliveryLog::path_of(dir.path(), kOwner);
  // Exit codes: 0 all good, else the first check that failed.
  const pid_t pid = fork_child([&] {
    if (::signal(SIGXFSZ, SIG_IGN) == SIG_ERR) return 1;
    SharedDeliveryLog log(dir.path(), kOwner, true);
    std::vector<DeliveryRecord> want;
    rlimit old{};
    if (::getrlimit(RLIMIT_FSIZE, &old) != 0) return 3;
    uintmax_t size = 0;
    // Under the lock; released on every way out (a child that ends holding it would leave it
    // held: its mapping is gone by then).
    log.lock();
    const int checked = [&] {
      for (size_t i = 0; i < kPreallocatedSlots; ++i) {
        want.push_back(rec(4, static_cast<int64_t>(i)));
        log.append(want.back());
      }
      size = size_of(path);
      if (size != kHeader + kPreallocatedSlots * kDeliveryRecordSize) return 2;
      rlimit low = old;
      low.rlim_cur = static_cast<rlim_t>(size + 1);
      if (::setrlimit(RLIMIT_FSIZE, &low) != 0) return 4;
      if (!storage_error([&] { log.append(rec(5, 1)); })) return 5;
      if (!storage_error([&] { log.append(rec(5, 2)); })) return 6;
      if (!records_are(log.read_all(), want)) return 7;
      if (size_of(path) != size) return 8;
      // keep_only that needs to grow fails the same way and keeps the old window.
      const std::vector<DeliveryRecord> k(want.begin(), want.begin() + 10);
      if (!storage_error([&] { log.keep_only(k); })) return 9;
      if (!records_are(log.read_all(), want)) return 10;
      return 0;
    }();
    log.unlock();
    if (checked != 0) return checked;
    // Another process sees the 256 records too.
    const pid_t reader = fork_child([&] {
      SharedDeliveryLog other(dir.path(), kOwner, false);
      return records_are(locked_read(other), want) ? 0 : 1;
    });
    if (wait_child(reader) != 0) return 11;
    if (::setrlimit(RLIMIT_FSIZE, &old) != 0) return 12;
    log.lock();
    bool ok = false;
    try {
      log.append(rec(5, 3));
      want.push_back(rec(5, 3));
      ok = records_are(log.read_all(), want);
    } catch (...) {
    }
    log.unlock();
    if (!ok) return 13;
    if (size_of(path) <= size) return 14;
    return 0;
  });
  EXPECT_EQ(wait_child(pid), 0);
  SharedDeliveryLog log(dir.path(), kOwner, false);
  EXPECT_EQ(locked_read(log).size(), kPreallocatedSlots + 1);
}

TEST(SharedDeliveryLog, ConcurrentThreadsWithTheirOwnObjects) {
  TempDir dir;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  { SharedDeliveryLog create(dir.path(), kOwner, true); }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        SharedDeliveryLog log(dir.path(), kOwner, t % 2 == 0);
        for (int i = 0; i < kPerThread; ++i) {
          log.lock();
          log.append(rec(t, i));
          log.unlock();
        }
      } catch (...) {
        ++failures;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  SharedDeliveryLog log(dir.path(), kOwner, false);
  const std::vector<DeliveryRecord> all = locked_read(log);
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<std::pair<int64_t, int64_t>> seen;
  std::array<int64_t, kThreads> last{};
  last.fill(-1);
  for (const DeliveryRecord& r : all) {
    ASSERT_GE(r.queue_id, 0);
    ASSERT_LT(r.queue_id, kThreads);
    EXPECT_TRUE(same(r, rec(r.queue_id, r.seq)));
    EXPECT_TRUE(seen.emplace(r.queue_id, r.seq).second) << r.queue_id << "," << r.seq;
    auto& l = last[static_cast<size_t>(r.queue_id)];
    EXPECT_EQ(r.seq, l + 1) << "thread " << r.queue_id << "'s records out of order";
    l = r.seq;
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace mqsec::transport::local
