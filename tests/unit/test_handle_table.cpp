// 32-bit handles: stale, double-freed and forged handles are not found.
#include <gtest/gtest.h>

#include <set>
#include <thread>

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
