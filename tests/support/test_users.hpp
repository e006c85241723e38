// Test support for multi-user tests (they need root): a temporary real local user that is
// removed again, and switching one thread's effective identity to that user, as a service
// impersonating a client does.
//
// The identity switch uses raw syscall(SYS_setresuid / SYS_setresgid): glibc's setresuid()
// would switch every thread of the process, the kernel's call switches only the caller.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace mqsec::testing {

// A throwaway system user (useradd --system, no home, nologin shell) named <prefix><random>,
// deleted with userdel when this goes out of scope (also when an assertion fails).
class TemporaryUser {
 public:
  // Throws std::runtime_error when useradd fails or makes no passwd entry.
  explicit TemporaryUser(const std::string& prefix = "mqtu");
  ~TemporaryUser();
  TemporaryUser(const TemporaryUser&) = delete;
  TemporaryUser& operator=(const TemporaryUser&) = delete;

  const std::string& name() const noexcept { return name_; }
  uid_t uid() const noexcept { return uid_; }
  gid_t gid() const noexcept { return gid_; }
  // The SID mqsec derives for this user with [identity] sid = "unix" ("S-1-22-1-<uid>").
  std::string unix_sid() const { return "S-1-22-1-" + std::to_string(uid_); }

 private:
  std::string name_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

// A TemporaryUser, or nullptr after a non-fatal test failure saying why it could not be made.
std::unique_ptr<TemporaryUser> make_temporary_user(const std::string& prefix = "mqtu");

// Switches the calling thread's effective gid and uid to `user`'s (group first: once the
// effective uid is not 0 the group may not change any more) and back to root when destroyed.
// The real ids stay root's.
class ThreadIdentity {
 public:
  explicit ThreadIdentity(const TemporaryUser& user);
  ~ThreadIdentity();
  ThreadIdentity(const ThreadIdentity&) = delete;
  ThreadIdentity& operator=(const ThreadIdentity&) = delete;
  // Empty when the switch worked.
  const std::string& error() const noexcept { return error_; }
  // Switches back now (the destructor then does nothing); empty when that worked.
  std::string restore();

 private:
  std::string error_;
  bool switched_ = false;
};

// Runs `fn` on a new thread whose effective identity is `user`'s (a ThreadIdentity), and waits
// for it. Returns an error text when switching there or back failed (then `fn` may not have run),
// or when the switch leaked out of that thread; empty otherwise.
std::string run_as_user(const TemporaryUser& user, const std::function<void()>& fn);

// Gives `gid` group read and write access to everything under `dir` (chgrp -R, chmod -R g+rwX)
// until destroyed, which hands it back to group 0 without group write.
class GroupAccess {
 public:
  GroupAccess(const std::filesystem::path& dir, gid_t gid);
  ~GroupAccess();
  GroupAccess(const GroupAccess&) = delete;
  GroupAccess& operator=(const GroupAccess&) = delete;
  bool ok() const noexcept { return ok_; }
  const std::string& output() const noexcept { return output_; }  // the commands' output

 private:
  std::string quoted_dir_;
  bool ok_ = false;
  std::string output_;
};

// chown(2) of `path` to `user` and the user's group. Throws std::runtime_error.
void give_to(const std::filesystem::path& path, const TemporaryUser& user);

}  // namespace mqsec::testing
