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

// What a secret read from a source is called in messages: "PIN" / "pin-source", or e.g.
// "broker password" / "broker password source". percent_escapes: a file: path carries RFC 3986
// %XX escapes (a pin-source is an attribute of a PKCS#11 URI; a plain configuration value is not).
struct SecretKind {
  std::string noun;
  std::string setting;
  bool percent_escapes = false;
};

// A secret source split into what it names, or the reason it names nothing usable.
struct SecretSource {
  enum class Type { File, Env };
  Type type = Type::File;
  std::string name;     // the absolute file path, or the environment variable's name
  std::string problem;  // non-empty: not a valid source; says why, never repeating a value that
                        // could be the secret itself (a password written where its source goes)
};

// "file:<absolute path>" (also "file:///path") or "env:<NAME>"; checks the form only.
SecretSource parse_secret_source(const std::string& source, bool percent_escapes);

// Reads the secret named by `source` with the rules and errors of read_pin below, worded with
// `kind`. Throws pkcs11::Error naming the source and the rule broken, never the secret.
SecretString read_secret(const std::string& source, const SecretKind& kind);

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
