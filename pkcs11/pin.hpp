// PINs: where they come from and how they are held.
//
// A PIN lives only in a SecretString, which wipes its bytes when destroyed; it is read from
// its source just before C_Login and dropped right after. Sources are those of RFC 7512's
// pin-source attribute: "file:<path>" (the file must be owned by the calling thread's
// effective user and not accessible by group or others) or our "env:<NAME>".
#pragma once

#include <sys/types.h>

#include <string>

namespace mqsec::pkcs11 {

class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string s) : s_(std::move(s)) {}
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  SecretString(SecretString&& o) noexcept;
  SecretString& operator=(SecretString&& o) noexcept;
  ~SecretString();

  const std::string& str() const noexcept { return s_; }
  bool empty() const noexcept { return s_.empty(); }
  void wipe() noexcept;

 private:
  std::string s_;
};

// Reads the PIN named by `source`. Throws pkcs11::Error with a message that names the
// source and what to do, never the PIN: unknown scheme, unreadable file, file owned by
// another user or with group/other permission bits, unset environment variable.
//
// A file is opened with the calling thread's credentials and O_NOFOLLOW | O_NONBLOCK: a
// symbolic link, FIFO, device or socket is refused at once (never blocks). An environment
// variable is read with secure_getenv (ignored in setuid/setgid programs), and refused in a
// thread whose effective uid is not its real uid (a service impersonating a user: the
// environment is the service's, not the user's).
SecretString read_pin(const std::string& source);

// The calling thread's effective uid (Linux credentials are per thread; glibc's geteuid()
// may return a cached process-wide value in some configurations, the raw syscall never does).
uid_t thread_effective_uid() noexcept;
// The calling thread's real uid (raw getresuid: credentials are per thread).
uid_t thread_real_uid() noexcept;

}  // namespace mqsec::pkcs11
