// Store I/O never runs with an impersonated user's credentials. Linux credentials are per
// thread: a service thread that impersonates a client (raw setresuid/setresgid on that thread)
// has the client's effective ids, and file access uses the file-system ids, which follow the
// effective ones. A store belongs to the process's user, so while the store's files and lock
// files are opened or created, the calling thread's file-system ids are switched to its real
// ids (setfsuid/setfsgid change only the calling thread) and restored afterwards.
#pragma once

#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

namespace mqsec::transport::local {

// RAII: file-system uid/gid = the thread's real uid/gid for the guard's lifetime. Switching to
// the real id is always permitted. A root process whose thread impersonates a user gets its
// file capabilities (CAP_DAC_OVERRIDE, ...) back for the guard's lifetime, as the kernel
// restores them when the file-system uid becomes 0 again.
class RealFsIds {
 public:
  RealFsIds() noexcept {
    old_gid_ = static_cast<gid_t>(::setfsgid(::getgid()));
    old_uid_ = static_cast<uid_t>(::setfsuid(::getuid()));
  }
  ~RealFsIds() {
    ::setfsuid(old_uid_);
    ::setfsgid(old_gid_);
  }
  RealFsIds(const RealFsIds&) = delete;
  RealFsIds& operator=(const RealFsIds&) = delete;

  // For a thread that only ever does store I/O (the batch writer): the real ids become its
  // effective and file-system ids for good (raw syscalls: glibc's wrappers would change every
  // thread of the process). Setting the effective id to the real one is always permitted.
  static void adopt_for_this_thread() noexcept {
    if (::getegid() != ::getgid()) (void)::syscall(SYS_setresgid, -1, ::getgid(), -1);
    if (::geteuid() != ::getuid()) (void)::syscall(SYS_setresuid, -1, ::getuid(), -1);
    ::setfsgid(::getgid());
    ::setfsuid(::getuid());
  }

 private:
  uid_t old_uid_;
  gid_t old_gid_;
};

}  // namespace mqsec::transport::local
