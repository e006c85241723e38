// Temporary users and per-thread identity switches for multi-user tests (test_users.hpp).
#include "tests/support/test_users.hpp"

#include <pwd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tests/support/softhsm_env.hpp"

namespace mqsec::testing {

TemporaryUser::TemporaryUser(const std::string& prefix) {
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", rd());
  name_ = prefix + suffix;
  auto r = run_command("useradd --system --no-create-home -s /usr/sbin/nologin -c 'mqsec test' " +
                       name_);
  if (!r.ok()) throw std::runtime_error("useradd " + name_ + " failed: " + r.output);
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> pwbuf(16384);
  if (getpwnam_r(name_.c_str(), &pw, pwbuf.data(), pwbuf.size(), &found) != 0 || !found) {
    run_command("userdel " + name_);
    throw std::runtime_error("useradd made no passwd entry for " + name_);
  }
  uid_ = pw.pw_uid;
  gid_ = pw.pw_gid;
}

TemporaryUser::~TemporaryUser() { run_command("userdel " + name_); }

std::unique_ptr<TemporaryUser> make_temporary_user(const std::string& prefix) {
  try {
    return std::make_unique<TemporaryUser>(prefix);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
    return nullptr;
  }
}

ThreadIdentity::ThreadIdentity(const TemporaryUser& user) {
  if (syscall(SYS_setresgid, -1, user.gid(), -1) != 0 ||
      syscall(SYS_setresuid, -1, user.uid(), -1) != 0) {
    error_ = std::string("cannot switch credentials: ") + std::strerror(errno);
    syscall(SYS_setresgid, -1, 0, -1);  // undo a group switch that did happen
    return;
  }
  switched_ = true;
}

std::string ThreadIdentity::restore() {
  if (!switched_) return {};
  switched_ = false;
  if (syscall(SYS_setresuid, -1, 0, -1) != 0 || syscall(SYS_setresgid, -1, 0, -1) != 0) {
    return std::string("cannot switch back: ") + std::strerror(errno);
  }
  return {};
}

ThreadIdentity::~ThreadIdentity() { restore(); }

std::string run_as_user(const TemporaryUser& user, const std::function<void()>& fn) {
  std::string error;
  std::thread t([&] {
    ThreadIdentity as(user);
    if (!as.error().empty()) {
      error = as.error();
      return;
    }
    fn();
    error = as.restore();
  });
  t.join();
  if (error.empty() && geteuid() != 0) error = "the credential switch leaked out of the thread";
  return error;
}

GroupAccess::GroupAccess(const std::filesystem::path& dir, gid_t gid)
    : quoted_dir_(shell_quote(dir.string())) {
  auto r = run_command("chgrp -R " + std::to_string(gid) + " " + quoted_dir_ +
                       " && chmod -R g+rwX " + quoted_dir_);
  ok_ = r.ok();
  output_ = r.output;
}

GroupAccess::~GroupAccess() {
  run_command("chgrp -R 0 " + quoted_dir_ + " && chmod -R g-w " + quoted_dir_);
}

void give_to(const std::filesystem::path& path, const TemporaryUser& user) {
  if (chown(path.c_str(), user.uid(), user.gid()) != 0) {
    throw std::runtime_error("chown " + path.string() + ": " + std::strerror(errno));
  }
}

}  // namespace mqsec::testing
