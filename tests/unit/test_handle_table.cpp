// 32-bit handles: stale, double-freed and forged handles are not found.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

#include "src/security/handle_table.hpp"

using mqsec::security::HandleTable;

TEST(HandleTable, HandlesAreNonZero32BitAndFindTheirObject) {
  HandleTable<int> t;
  uint32_t a = t.insert(std::make_shared<int>(1)), b = t.insert(std::make_shared<int>(2));
  EXPECT_NE(a, 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(*t.get(a), 1);
  EXPECT_EQ(*t.get(b), 2);
}

TEST(HandleTable, FreedHandlesAreStaleEvenWhenTheSlotIsReused) {
  HandleTable<int> t;
  uint32_t a = t.insert(std::make_shared<int>(1));
  EXPECT_TRUE(t.erase(a));
  EXPECT_FALSE(t.erase(a));  // double free is harmless
  EXPECT_EQ(t.get(a), nullptr);
  uint32_t c = t.insert(std::make_shared<int>(3));  // same slot, new generation
  EXPECT_EQ(c & 0xFFFF, a & 0xFFFF);
  EXPECT_NE(c, a);
  EXPECT_EQ(t.get(a), nullptr);
  EXPECT_EQ(*t.get(c), 3);
}

TEST(HandleTable, ForgedHandlesAreNotFound) {
  HandleTable<int> t;
  uint32_t a = t.insert(std::make_shared<int>(1));
  EXPECT_EQ(t.get(0), nullptr);
  EXPECT_EQ(t.get(a ^ 0x10000), nullptr);
  EXPECT_EQ(t.get(a + 1), nullptr);
  EXPECT_EQ(t.get(0xFFFFFFFF), nullptr);
}

TEST(HandleTable, ConcurrentInsertGetErase) {
  HandleTable<int> t;
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&, i] {
      for (int j = 0; j < 2000; ++j) {
        uint32_t h = t.insert(std::make_shared<int>(i * 10000 + j));
        auto p = t.get(h);
        if (!p || *p != i * 10000 + j) ++bad;
        if (!t.erase(h)) ++bad;
      }
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(t.size(), 0u);
}

// Threads look handles up and take and free them (shared and exclusive lock) while the main
// thread forks again and again: each child must be able to insert, i.e. it did not inherit the
// lock held by a parent thread (the fork handlers hold it across the fork).
TEST(HandleTable, ForkWhileOtherThreadsUseTheTableNeverHangsTheChild) {
  HandleTable<int> t;
  const uint32_t h = t.insert(std::make_shared<int>(7));
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&, i] {
      while (!stop) {
        if (i == 0) {
          t.erase(t.insert(std::make_shared<int>(1)));
        } else if (!t.get(h)) {
          std::abort();
        }
      }
    });
  }
  int hung = 0, failed = 0;
  for (int i = 0; i < 200 && hung == 0; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(30);
      _exit(t.insert(std::make_shared<int>(2)) != 0 && *t.get(h) == 7 ? 0 : 1);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ++hung;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (hung == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) ++failed;
  }
  stop = true;
  for (auto& th : ts) th.join();
  EXPECT_EQ(hung, 0) << "a child hung on the table's lock";
  EXPECT_EQ(failed, 0);
}
