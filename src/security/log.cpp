// Log destinations.
#include "src/security/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"

namespace mqsec {
namespace {

thread_local std::string t_last_error;
thread_local TokenError t_last_token_error = TokenError::None;
std::mutex g_log_mutex;

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Error:
      return "error";
    case LogLevel::Warning:
      return "warning";
    case LogLevel::Info:
      return "info";
    case LogLevel::Debug:
      return "debug";
  }
  return "?";
}

// Opens the log file for appending without following a symbolic link in its place. A file we
// create gets mode 0600 whatever the umask (fchmod, only on a file we created: an existing
// log keeps the mode its owner gave it). -1 on failure.
int open_log_file(const char* path) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                  0600);
    if (fd >= 0) {
      if (fchmod(fd, 0600) != 0) {
        close(fd);
        return -1;
      }
      return fd;
    }
    if (errno != EEXIST) return -1;
    fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
      struct stat st {};
      if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);  // a FIFO or device put in the log's place: not ours to write to
        return -1;
      }
      return fd;
    }
    if (errno != ENOENT) return -1;  // ELOOP: a symbolic link; EACCES; ...
    // removed between the two opens: try again
  }
  return -1;
}

}  // namespace

void log(LogLevel level, const std::string& message) noexcept {
  try {
    if (level == LogLevel::Error || level == LogLevel::Warning) {
      t_last_error = message;
      t_last_token_error = TokenError::None;
    }
    // secure_getenv: a setuid or setgid program does not let its caller choose where it writes.
    const char* dest = secure_getenv("MQSEC_LOG");
    std::string d = dest ? dest : "syslog";
    if (d == "off") return;
    if (level == LogLevel::Debug && !secure_getenv("MQSEC_DEBUG")) return;
    std::string line = std::string("mqsec ") + level_name(level) + ": " + message + "\n";
    static const bool registered = [] {
      pkcs11::register_fork_mutex(g_log_mutex);  // a forked child may log too
      return true;
    }();
    (void)registered;
    std::lock_guard lock(g_log_mutex);
    if (d == "stderr") {
      ssize_t ignored = write(2, line.data(), line.size());
      (void)ignored;
    } else if (d.rfind("file:", 0) == 0) {
      int fd = open_log_file(d.c_str() + 5);
      if (fd >= 0) {
        ssize_t ignored = write(fd, line.data(), line.size());
        (void)ignored;
        close(fd);
      } else {
        // e.g. an impersonating thread that may not write the process owner's log file:
        // syslog rather than lose the reason.
        syslog(LOG_USER | LOG_WARNING, "%s", message.c_str());
      }
    } else {
      int prio = level == LogLevel::Error     ? LOG_ERR
                 : level == LogLevel::Warning ? LOG_WARNING
                 : level == LogLevel::Info    ? LOG_INFO
                                              : LOG_DEBUG;
      syslog(LOG_USER | prio, "%s", message.c_str());
    }
  } catch (...) {
    // Logging must never take the caller down (it runs inside noexcept ABI guards).
  }
}

std::string last_error_message() { return t_last_error; }
TokenError last_token_error() noexcept { return t_last_token_error; }

void set_last_error(const std::string& message, TokenError token_error) noexcept {
  try {
    t_last_error = message;
    t_last_token_error = token_error;
  } catch (...) {
    // out of memory: keep the previous message
  }
}

}  // namespace mqsec

namespace mqsec {

void fail(HRESULT code, const std::string& reason, TokenError token_error) {
  log(LogLevel::Error, reason);
  t_last_token_error = token_error;
  throw Error(code, reason, token_error);
}

}  // namespace mqsec
