// Claimed receives of the store (issue 14; src/transport/local/delivery_log.hpp, Store::
// claim_next/deliver_claimed): another process's claims are skipped and cannot be taken, a dead
// owner's or a lapsed lease's claims come back after its delivery log was applied (what it
// returned is never returned again), a purge takes claimed messages away, and this process
// never sees a message it already returned. Each receiver "process" is a forked child with its
// own Store (a claim owner is a process).
#include "src/transport/local/store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>
#include <thread>

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
  // A child process that claims (batch 16, lease `lease`), delivers its first message, tells
  // the parent on `ready`, then waits for a byte on `go`: 'k' kills itself (SIGKILL), 'd' tries
  // to deliver its second claimed message and exits 0 if that was refused (Gone), 1 if not.
  pid_t claiming_child(std::chrono::milliseconds lease, int ready, int go) {
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    int rc = 2;
    try {
      Store s(dir_);  // its own connection: a claim owner is a process
      auto first = s.claim_next(q_, 16, lease);
      auto second = s.claim_next(q_, 16, lease);
      if (first && second && text(first->envelope) == "m0" &&
          deliver(s, *first) == Removal::Removed) {
        (void)!::write(ready, "r", 1);
        char c = 0;
        if (::read(go, &c, 1) == 1) {
          if (c == 'k') ::raise(SIGKILL);
          rc = deliver(s, *second) == Removal::Gone ? 0 : 1;
        }
      }
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  }
  // Receives everything this process can claim now: the bodies.
  std::vector<std::string> drain(Store& s) {
    std::vector<std::string> got;
    while (auto m = s.claim_next(q_, 16, 60s)) {
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

  // Rows of the claims table (read with a separate connection).
  int sql_count() {
    sqlite3* db = nullptr;
    int n = -1;
    if (sqlite3_open_v2((dir_ / "mqsec.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
        SQLITE_OK) {
      sqlite3_stmt* st = nullptr;
      if (sqlite3_prepare_v2(db, "SELECT count(*) FROM claims", -1, &st, nullptr) == SQLITE_OK &&
          sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int(st, 0);
      }
      sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
  }

  static constexpr int kMessages = 20;
  fs::path root_, dir_;
  int64_t q_ = 0;
};

TEST_F(Claims, ASigkilledOwnersClaimsComeBackAndWhatItReturnedDoesNot) {
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t child = claiming_child(60s, ready[1], go[0]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the child did not claim";
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
  EXPECT_TRUE(fs::exists(DeliveryLog::path_of(dir_, claim_owner_of(child))));
  // SIGKILL while it holds 15 claims and one returned message in its log.
  ASSERT_EQ(::write(go[1], "k", 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  got = drain(s);
  std::vector<std::string> want;
  for (int i = 1; i < 16; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(got, want) << "its claims came back, exactly once, in order; m0 never";
  EXPECT_TRUE(s.was_delivered(q_, id_of("m0")));
  EXPECT_EQ(s.message_count(q_), 0u);
  EXPECT_FALSE(fs::exists(DeliveryLog::path_of(dir_, claim_owner_of(child))))
      << "a dead owner's log is removed once applied";
}

TEST_F(Claims, ALapsedLeaseIsTakenOverAndTheOwnerCannotDeliverAnyMore) {
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  // 1 s: the first drain must come within the lease even on a loaded machine (with 100 ms it
  // came after it in an ASan run at load average 12, and took all 19).
  const pid_t child = claiming_child(1s, ready[1], go[0]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the child did not claim";
  Store s(dir_);
  EXPECT_EQ(drain(s).size(), 4u) << "within its lease, its claims are its own";
  std::this_thread::sleep_for(1200ms);
  std::vector<std::string> got = drain(s);  // alive, but its lease ran out
  std::vector<std::string> want;
  for (int i = 1; i < 16; ++i) want.push_back("m" + std::to_string(i));
  EXPECT_EQ(got, want) << "m0, which it returned, is not taken over";
  ASSERT_EQ(::write(go[1], "d", 1), 1);
  EXPECT_EQ(exit_status(child), 0) << "the owner delivered a message whose claim was taken over";
  EXPECT_EQ(s.message_count(q_), 0u);
}

// An owner whose lease ran out still has the messages it claimed in memory. When it then lets
// them go (its queue is closed, or a higher-priority arrival makes it claim again), it must
// drop only claims that are still its own: the process that took them over may have returned
// one already, and that one must then be deleted by its next claim transaction, not received a
// second time.
TEST_F(Claims, AStaleOwnerReleasingItsClaimsDoesNotDropTheirNewOwners) {
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    int rc = 2;
    try {
      Store s(dir_);
      auto first = s.claim_next(q_, 16, 100ms);   // claims m0..m15 for 100 ms
      auto second = s.claim_next(q_, 16, 100ms);  // m1, taken and never delivered
      if (first && second && deliver(s, *first) == Removal::Removed) {
        (void)!::write(ready[1], "r", 1);
        char c = 0;
        if (::read(go[0], &c, 1) == 1) {
          s.release_claims(q_);  // m2..m15 were still in its memory
          rc = 0;
        }
      }
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the child did not claim";
  std::this_thread::sleep_for(200ms);  // its lease runs out
  Store s(dir_);
  std::vector<std::string> got;
  for (int i = 0; i < 2; ++i) {  // takes its claims over and returns m1 and m2
    auto m = s.claim_next(q_, 16, 60s);
    ASSERT_TRUE(m);
    ASSERT_EQ(deliver(s, *m), Removal::Removed) << text(m->envelope);
    got.push_back(text(m->envelope));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"m1", "m2"}));
  ASSERT_EQ(::write(go[1], "x", 1), 1);
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
  auto m0 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(m0);
  ASSERT_EQ(deliver(s, *m0), Removal::Removed);
  // Peeks, counts and lookups of this process come after the deletion of what it returned.
  EXPECT_EQ(text(s.first(q_)->envelope), "m1");
  EXPECT_FALSE(s.get(q_, m0->seq));
  EXPECT_EQ(s.message_count(q_), static_cast<size_t>(kMessages - 1));
  EXPECT_TRUE(s.was_delivered(q_, id_of("m0")));
  // A second copy of m0's id: a replay, deleted, not delivered.
  const int64_t copy = s.append(q_, 3, bytes("m0"), false);
  auto m1 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(m1);
  EXPECT_EQ(text(m1->envelope), "m1");
  ASSERT_EQ(deliver(s, *m1), Removal::Removed);
  EXPECT_EQ(s.deliver_claimed(q_, copy, id_of("m0"), 1, 0), Removal::Gone)
      << "not claimed by this process";
  // A purge while this process holds claims: what it claimed is gone, not delivered.
  auto m2 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(m2);
  EXPECT_EQ(s.purge(q_), static_cast<size_t>(kMessages - 2 + 1));
  EXPECT_EQ(deliver(s, *m2), Removal::Gone);
  EXPECT_FALSE(s.claim_next(q_, 16, 60s));
  // A higher-priority message that arrives after the claim is received first.
  for (int i = 0; i < 3; ++i) s.append(q_, 1, bytes("low" + std::to_string(i)), false);
  auto low = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(low);
  EXPECT_EQ(text(low->envelope), "low0");
  ASSERT_EQ(deliver(s, *low), Removal::Removed);
  // One of the same priority does not overtake: low1 is delivered.
  s.append(q_, 1, bytes("same"), false);
  auto low1 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(low1);
  EXPECT_EQ(text(low1->envelope), "low1");
  ASSERT_EQ(deliver(s, *low1), Removal::Removed);
  // A higher one does: the claimed low2 is not delivered (its claim is released, the caller
  // goes on to the next), and the next claim starts with the urgent one.
  s.append(q_, 6, bytes("urgent"), false);
  auto low2 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(low2);
  EXPECT_EQ(text(low2->envelope), "low2");
  EXPECT_EQ(deliver(s, *low2), Removal::Gone);
  auto next = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(next);
  EXPECT_EQ(text(next->envelope), "urgent");
  ASSERT_EQ(deliver(s, *next), Removal::Removed);
  auto again = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(again);
  EXPECT_EQ(text(again->envelope), "low2") << "still there, claimed again";
  ASSERT_EQ(deliver(s, *again), Removal::Removed);
  auto last = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(last);
  EXPECT_EQ(text(last->envelope), "same");
  ASSERT_EQ(deliver(s, *last), Removal::Removed);
  EXPECT_FALSE(s.claim_next(q_, 16, 60s));
}

// A message id too long for the delivery log is removed the old way, after the same receive
// order check.
TEST_F(Claims, AMessageWithALongIdIsOvertakenToo) {
  Store s(dir_);
  auto m0 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(m0);
  s.append(q_, 6, bytes("urgent"), false);
  const Bytes long_id(kMaxLoggedIdSize + 1, 7);
  EXPECT_EQ(s.deliver_claimed(q_, m0->seq, long_id, 1, 0), Removal::Gone);
  auto next = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(next);
  EXPECT_EQ(text(next->envelope), "urgent");
  ASSERT_EQ(deliver(s, *next), Removal::Removed);
  auto again = s.claim_next(q_, 16, 60s);
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
  auto first = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(first);
  EXPECT_EQ(sql_count(), 3) << "400 KiB each: three reach 1 MiB, the fourth is not claimed";
  ASSERT_EQ(deliver(s, *first), Removal::Removed);
  s.release_claims(q_);  // deletes it, and lets the other two go
  EXPECT_EQ(sql_count(), 0);
  const Bytes huge(3 * 1024 * 1024, 'y');
  QueueInfo q;
  q.name = "huge";
  s.create_queue(q);
  const int64_t h = s.find_queue("huge")->id;
  s.append(h, 3, huge, false);
  s.append(h, 3, huge, false);
  auto one = s.claim_next(h, 16, 60s);
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
      DeliveryLog log(dir_, "1:2", /*create=*/true);
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

TEST_F(Claims, ReleasedClaimsAreTakenByAnotherProcessAtOnce) {
  Store s(dir_);
  auto m0 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(m0);
  ASSERT_EQ(deliver(s, *m0), Removal::Removed);
  s.release_claims(q_);  // the queue was closed
  const pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 1;
    try {
      Store other(dir_);
      size_t n = 0;
      while (auto m = other.claim_next(q_, 16, 60s)) {
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
  auto m0 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(m0);
  auto m1 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(m1);
  ASSERT_EQ(deliver(s, *m0), Removal::Removed);
  s.delete_queue("claimed");
  EXPECT_EQ(deliver(s, *m1), Removal::Gone);
  EXPECT_FALSE(s.claim_next(q_, 16, 60s));
  EXPECT_EQ(sql_count(), 0) << "no claim outlives its queue";
}

// A claimed copy of a message whose id the store recorded as delivered (by any process) is
// refused by deliver_claimed itself (the claimed receive's replay check, in the same read as
// its claim check) and deleted; the next message is delivered as usual.
TEST_F(Claims, ACopyOfARecordedDeliveryIsARefusedReplay) {
  Store s(dir_);
  auto m0 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(m0 && text(m0->envelope) == "m0");
  ASSERT_EQ(deliver(s, *m0), Removal::Removed);
  s.release_claims(q_);                 // m0's id is recorded in the store now
  s.append(q_, 5, bytes("m0"), false);  // a copy, ahead of the rest by its priority
  const size_t before = s.message_count(q_);
  auto copy = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(copy && copy->priority == 5);
  EXPECT_EQ(deliver(s, *copy), Removal::Replay);
  EXPECT_EQ(s.message_count(q_), before - 1);
  auto m1 = s.claim_next(q_, 16, 60s);
  ASSERT_TRUE(m1 && text(m1->envelope) == "m1");
  EXPECT_EQ(deliver(s, *m1), Removal::Removed);
}
}  // namespace
}  // namespace mqsec::transport::local
