// A queue made in a store for a test, by name: its id (0, and a failed expectation, when the
// store did not keep it).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "src/transport/local/store.hpp"

namespace mqsec::testing {

inline int64_t make_queue(transport::local::Store& s, const std::string& name) {
  transport::QueueInfo q;
  q.name = name;
  s.create_queue(q);
  auto found = s.find_queue(name);
  EXPECT_TRUE(found.has_value()) << name;
  return found ? found->id : 0;
}

}  // namespace mqsec::testing
