// Test support: HRESULTs compared as "0x%08X" text, so a failed expectation shows the MQ_ERROR_*
// code as it is documented instead of a negative decimal.
#pragma once

#include <mq.h>

#include <cstdio>
#include <string>

namespace mqsec::testing {

inline std::string hr_text(HRESULT hr) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(hr));
  return buf;
}

}  // namespace mqsec::testing

#define EXPECT_HR(expected, actual) \
  EXPECT_EQ(::mqsec::testing::hr_text(expected), ::mqsec::testing::hr_text(actual))
#define ASSERT_HR(expected, actual) \
  ASSERT_EQ(::mqsec::testing::hr_text(expected), ::mqsec::testing::hr_text(actual))
