// Sets (or, with nullptr, unsets) an environment variable for the life of the object, and
// restores what it was afterwards. For tests of switches read when an object is made (a Store
// reads its MQSEC_* switches when it is opened).
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace mqsec::testing {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* was = std::getenv(name)) saved_ = was;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (saved_) {
      ::setenv(name_.c_str(), saved_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> saved_;
};

}  // namespace mqsec::testing
