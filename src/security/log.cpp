// Log destinations.
#include "src/security/log.hpp"

#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <mutex>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"

namespace mqsec {
namespace {

thread_local std::string t_last_error;
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

}  // namespace

void log(LogLevel level, const std::string& message) noexcept {
  try {
    if (level == LogLevel::Error || level == LogLevel::Warning) t_last_error = message;
    const char* dest = std::getenv("MQSEC_LOG");
    std::string d = dest ? dest : "syslog";
    if (d == "off") return;
    if (level == LogLevel::Debug && !std::getenv("MQSEC_DEBUG")) return;
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
      int fd = open(d.c_str() + 5, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
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

void set_last_error(const std::string& message) noexcept {
  try {
    t_last_error = message;
  } catch (...) {
    // out of memory: keep the previous message
  }
}

}  // namespace mqsec

namespace mqsec {

void fail(HRESULT code, const std::string& reason) {
  log(LogLevel::Error, reason);
  throw Error(code, reason);
}

}  // namespace mqsec
