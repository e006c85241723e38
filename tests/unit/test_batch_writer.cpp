// The express group-commit writer: order, flush, failures reported, bounded memory, fork.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

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
  w.prepare_fork();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
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
  w.parent_after_fork();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  w.flush();
  EXPECT_EQ(store_->message_count(id_), 101u);
}
