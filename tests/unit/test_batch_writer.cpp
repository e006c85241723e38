// The express group-commit writer: order, flush, failures reported, bounded memory, fork.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mqsec/error.hpp"
#include "src/transport/local/batch_writer.hpp"

using namespace mqsec::transport::local;
using namespace mqsec::transport;
namespace fs = std::filesystem;

namespace {

class BatchWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mqsec-bw-XXXXXX";
    dir_ = mkdtemp(tmpl);
    store_ = std::make_unique<Store>(dir_);
    QueueInfo q;
    q.name = "q";
    store_->create_queue(q);
    id_ = store_->find_queue("q")->id;
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  Bytes msg(int i) { return Bytes{static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)}; }
  fs::path dir_;
  std::unique_ptr<Store> store_;
  int64_t id_ = 0;
};

}  // namespace

TEST_F(BatchWriterTest, FlushMakesEverythingVisibleInPushOrder) {
  BatchWriter w(*store_, nullptr);
  for (int i = 0; i < 5000; ++i) w.push(id_, 3, msg(i));
  w.flush();
  EXPECT_EQ(store_->message_count(id_), 5000u);
  for (int i = 0; i < 5000; ++i) {
    auto m = store_->take_first(id_);
    ASSERT_TRUE(m);
    ASSERT_EQ(m->envelope, msg(i)) << "out of order at " << i;
  }
}

// Every receive flushes first; with nothing pushed since the last commit that must cost
// neither a wake-up of the writer thread nor a wait (issue 14's receive profile).
TEST_F(BatchWriterTest, FlushWithNothingPendingDoesNotWakeTheWriter) {
  BatchWriter w(*store_, nullptr);
  w.push(id_, 3, msg(1));
  w.flush();
  ASSERT_EQ(store_->message_count(id_), 1u);
  // Let the writer get back into its wait (it looks for work once more after the commit).
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const uint64_t before = w.wakeups();
  for (int i = 0; i < 200; ++i) w.flush();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a woken writer would count
  // At most the one look after the commit, if the writer was not back in its wait within the
  // 50 ms (a loaded machine); a flush that woke it would count about 200.
  EXPECT_LE(w.wakeups() - before, 1u);
  // A flush after a push still waits for the commit.
  w.push(id_, 3, msg(2));
  w.flush();
  EXPECT_EQ(store_->message_count(id_), 2u);
  EXPECT_GT(w.wakeups(), before);
}

TEST_F(BatchWriterTest, ConcurrentPushersLoseNothing) {
  BatchWriter w(*store_, nullptr);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) w.push(id_, 3, msg(t * 2000 + i));
    });
  }
  for (auto& th : ts) th.join();
  w.flush();
  EXPECT_EQ(store_->message_count(id_), 8000u);
}

TEST_F(BatchWriterTest, MessagesForAVanishedQueueAreReportedNotSilentlyDropped) {
  std::atomic<int> errors{0};
  BatchWriter w(*store_, [&](const std::string&) { ++errors; });
  w.push(id_, 3, msg(1));
  w.push(id_ + 1000, 3, msg(2));  // no such queue
  w.push(id_, 3, msg(3));
  w.flush();
  EXPECT_EQ(store_->message_count(id_), 2u);
  EXPECT_EQ(errors.load(), 1);
  EXPECT_EQ(w.failed(), 1u);
}

TEST_F(BatchWriterTest, ForkedChildNeitherHangsNorDuplicatesTheParentsMessages) {
  BatchWriter w(*store_, nullptr);
  for (int i = 0; i < 100; ++i) w.push(id_, 3, msg(i));
  // The runtime's fork handler's order (Stores::prepare_fork): the writer's lock, then the
  // store's. Without the store's lock the writer thread can be inside SQLite at the fork, and
  // the child then waits for a SQLite mutex or file lock that no thread of it will release.
  w.prepare_fork();
  store_->prepare_fork();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    store_->child_after_fork();
    w.child_after_fork();
    alarm(20);
    w.flush();  // nothing of the parent's to write here
    Store s(dir_);
    int64_t id = s.find_queue("q")->id;
    BatchWriter mine(s, nullptr);
    mine.push(id, 3, msg(9999));
    mine.flush();
    _exit(0);
  }
  store_->parent_after_fork();
  w.parent_after_fork();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  w.flush();
  EXPECT_EQ(store_->message_count(id_), 101u);
}

// The batch signer's hand-over (push_many): a signed batch is committed in one transaction, in
// order, whatever the writer was doing.
TEST_F(BatchWriterTest, PushManyCommitsABatchInOneTransactionInOrder) {
  BatchWriter w(*store_, nullptr);
  std::vector<Outbound> batch;
  for (int i = 0; i < 1000; ++i) batch.push_back({i % 8, msg(i)});
  const uint64_t v0 = store_->version();
  w.push_many(id_, batch);
  w.flush();
  EXPECT_EQ(store_->version() - v0, 1u) << "one commit for the whole batch";
  EXPECT_EQ(store_->message_count(id_), 1000u);
  // Receive order is priority first, then arrival: within each priority, push order.
  int last_prio = 8, last_i = -1;
  for (int n = 0; n < 1000; ++n) {
    auto m = store_->take_first(id_);
    ASSERT_TRUE(m);
    const int i = (m->envelope[0] << 8) | m->envelope[1];
    EXPECT_EQ(m->priority, i % 8);
    if (m->priority != last_prio) {
      ASSERT_LT(m->priority, last_prio);
      last_prio = m->priority;
      last_i = -1;
    }
    ASSERT_GT(i, last_i) << "out of order within priority " << m->priority;
    last_i = i;
  }
}

// More than the writer holds at once: still every message, in order (several transactions).
TEST_F(BatchWriterTest, PushManyLargerThanThePendingBoundLosesNothing) {
  BatchWriter w(*store_, nullptr);
  std::vector<Outbound> batch;
  const int n = static_cast<int>(BatchWriter::kMaxPending) + 1000;
  for (int i = 0; i < n; ++i) batch.push_back({3, msg(i)});
  w.push(id_, 3, msg(0xFFFF));  // something pending already
  w.push_many(id_, batch);
  w.flush();
  ASSERT_EQ(store_->message_count(id_), static_cast<size_t>(n) + 1);
  EXPECT_EQ(store_->take_first(id_)->envelope, msg(0xFFFF));
  for (int i = 0; i < n; ++i) ASSERT_EQ(store_->take_first(id_)->envelope, msg(i)) << i;
}

// The durable form returns once committed, with a failure per message it could not store.
TEST_F(BatchWriterTest, PushManyAndWaitReportsEachMessagesOutcome) {
  BatchWriter w(*store_, nullptr, /*durable=*/true);
  std::vector<Outbound> good{{3, msg(1)}, {3, msg(2)}, {3, msg(3)}};
  auto errors = w.push_many_and_wait(id_, good);
  ASSERT_EQ(errors.size(), 3u);
  for (const auto& e : errors) EXPECT_FALSE(e);
  EXPECT_EQ(store_->message_count(id_), 3u);  // visible on return, no flush needed

  std::vector<Outbound> lost{{3, msg(4)}, {3, msg(5)}};
  errors = w.push_many_and_wait(id_ + 1000, lost);  // no such queue
  ASSERT_EQ(errors.size(), 2u);
  for (const auto& e : errors) {
    ASSERT_TRUE(e);
    try {
      std::rethrow_exception(e);
    } catch (const mqsec::Error& err) {
      EXPECT_EQ(err.code(), MQ_ERROR_QUEUE_NOT_FOUND);
    }
  }
  EXPECT_EQ(store_->message_count(id_), 3u);
}

namespace {

// An envelope the writer encodes: records the thread that did, and can fail to encode.
class Deferred final : public DeferredEnvelope {
 public:
  Deferred(Bytes b, std::atomic<int>* off_thread, bool fail = false)
      : b_(std::move(b)),
        off_thread_(off_thread),
        fail_(fail),
        sender_(std::this_thread::get_id()) {}
  Bytes bytes() override {
    if (std::this_thread::get_id() != sender_) ++*off_thread_;
    if (fail_) throw std::runtime_error("envelope: value out of range: priority");
    return b_;
  }

 private:
  Bytes b_;
  std::atomic<int>* off_thread_;
  bool fail_;
  std::thread::id sender_;
};

}  // namespace

// Deferred envelopes (the signed send path) are encoded by the writer thread, not the sender,
// and keep their place among plain ones; one that fails to encode is not stored, is counted and
// reported, and does not take its batch down.
TEST_F(BatchWriterTest, DeferredEnvelopesAreEncodedByTheWriterInOrder) {
  std::vector<std::string> errors;
  std::mutex mu;
  BatchWriter w(*store_, [&](const std::string& e) {
    std::lock_guard lock(mu);
    errors.push_back(e);
  });
  std::atomic<int> off_thread{0};
  for (int i = 0; i < 3000; ++i) {
    if (i % 3 == 0) {
      w.push(id_, 3, msg(i));
    } else {
      w.push(id_, 3, std::make_unique<Deferred>(msg(i), &off_thread, /*fail=*/i == 1000));
    }
  }
  w.flush();
  EXPECT_EQ(off_thread.load(), 2000);  // every deferred one, none on this thread
  EXPECT_EQ(w.failed(), 1u);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("encoding it failed"), std::string::npos) << errors[0];
  EXPECT_EQ(store_->message_count(id_), 2999u);
  for (int i = 0; i < 3000; ++i) {
    if (i == 1000) continue;
    auto m = store_->take_first(id_);
    ASSERT_TRUE(m);
    ASSERT_EQ(m->envelope, msg(i)) << "out of order at " << i;
  }
}

// The durable form: committed on return, an encoding failure thrown to that sender only.
TEST_F(BatchWriterTest, DeferredPushAndWaitIsDurableOnReturnAndThrowsItsFailure) {
  BatchWriter w(*store_, nullptr, /*durable=*/true);
  std::atomic<int> off_thread{0};
  w.push_and_wait(id_, 3, std::make_unique<Deferred>(msg(1), &off_thread));
  EXPECT_EQ(store_->message_count(id_), 1u);  // visible on return, no flush needed
  try {
    w.push_and_wait(id_, 3, std::make_unique<Deferred>(msg(2), &off_thread, /*fail=*/true));
    ADD_FAILURE() << "no error";
  } catch (const mqsec::Error& err) {
    EXPECT_EQ(err.code(), MQ_ERROR_MESSAGE_STORAGE_FAILED);
  }
  w.push_and_wait(id_, 3, std::make_unique<Deferred>(msg(3), &off_thread));
  EXPECT_EQ(off_thread.load(), 3);
  EXPECT_EQ(store_->message_count(id_), 2u);
  EXPECT_EQ(store_->take_first(id_)->envelope, msg(1));
  EXPECT_EQ(store_->take_first(id_)->envelope, msg(3));
}
