// Test support: a GoogleTest environment that creates the process's SoftHSM installation
// (SoftHsmEnv::instance()) before any test runs and before anything loads the module, and fails
// the run with the reason when it cannot. Register it once per test program:
//   ::testing::Environment* const g_env =
//       ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);
#pragma once

#include <gtest/gtest.h>

#include <exception>

#include "tests/support/softhsm_env.hpp"

namespace mqsec::testing {

class SoftHsmTestEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    try {
      SoftHsmEnv::instance();
    } catch (const std::exception& e) {
      FAIL() << "cannot set up the SoftHSM test environment: " << e.what();
    }
  }
};

}  // namespace mqsec::testing
