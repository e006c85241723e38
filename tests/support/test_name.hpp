// Test support: the running test's "<Suite>_<Name>" with every character that is not a letter
// or digit replaced by '_', for file, store and queue names of that test's own.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <string>

namespace mqsec::testing {

inline std::string current_test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "_" + info->name();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

}  // namespace mqsec::testing
