// Process identity of store owners (process_identity.hpp).
#include "src/transport/local/process_identity.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>

#include "mqsec/error.hpp"

namespace mqsec::transport::local {

std::optional<uint64_t> process_start_time(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buf[1024];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || text.size() > 64 * 1024) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  // Fields 3 (state) .. 22 (starttime), separated by single spaces.
  size_t pos = paren + 1;
  std::string_view field;
  for (int i = 3; i <= 22; ++i) {
    while (pos < text.size() && text[pos] == ' ') ++pos;
    const size_t end = text.find_first_of(" \n", pos);
    if (pos >= text.size() || end == pos) return std::nullopt;
    field =
        std::string_view(text).substr(pos, (end == std::string::npos ? text.size() : end) - pos);
    pos = end == std::string::npos ? text.size() : end;
  }
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
  if (ec != std::errc() || end != field.data() + field.size()) return std::nullopt;
  return v;
}

uint64_t own_start_time() {
  const std::optional<uint64_t> start = process_start_time(::getpid());
  if (!start) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                "cannot read this process's start time from /proc/self/stat (is /proc mounted?)");
  }
  return *start;
}

bool process_may_run(pid_t pid, uint64_t start) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  const std::optional<uint64_t> now = process_start_time(pid);
  return !now || *now == start;
}

}  // namespace mqsec::transport::local
