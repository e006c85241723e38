// Takes every message of a local queue now through the core's verify loop (core::Queue), as an
// application's receive would, and expects each to be signed and to verify on its own.
#pragma once

#include <gtest/gtest.h>
#include <mq.h>

#include <chrono>
#include <string>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/queue.hpp"
#include "src/security/envelope.hpp"

namespace mqsec::testing {

inline std::vector<security::Envelope> receive_all(const std::string& queue) {
  using namespace mqsec::core;
  auto q = Queue::open(Destination{queue, {}, {}}, Access{false, true, true}, false);
  std::vector<security::Envelope> out;
  for (;;) {
    try {
      q->receive(Action::Receive, std::chrono::milliseconds(0), nullptr, [&](const Delivered& d) {
        EXPECT_TRUE(d.verdict->signed_message && d.verdict->ok) << d.verdict->reason;
        out.push_back(*d.envelope);
        return MQ_OK;
      });
    } catch (const Error& e) {
      if (e.code() == MQ_ERROR_IO_TIMEOUT) break;
      throw;
    }
  }
  return out;
}

}  // namespace mqsec::testing
