// Child processes of mqsec-bench's remote cases (see remote.hpp).
#include "bench/remote.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

extern char** environ;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace mqsec::bench {
namespace {

constexpr const char* kRabbitmqServer = "/usr/lib/rabbitmq/bin/rabbitmq-server";

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), "mqsec-bench: " + what);
}

// argv and envp built before fork: the bench has threads, so a child may only make
// async-signal-safe calls until exec.
struct ExecArgs {
  std::vector<std::string> args, envs;
  std::vector<char*> argv, envp;
  ExecArgs(std::vector<std::string> a, const std::map<std::string, std::string>& env)
      : args(std::move(a)) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry = *e;
      if (!env.count(entry.substr(0, entry.find('=')))) envs.push_back(std::move(entry));
    }
    for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
    for (auto& s : envs) envp.push_back(s.data());
    envp.push_back(nullptr);
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
  }
};

// fork + execve: stdin from `in` (or /dev/null), stdout to `out`, stderr to `err`; nothing
// else inherited. `group`: its own process group (killed as a whole on timeout).
pid_t spawn(ExecArgs& x, int in, int out, int err, bool group, bool die_with_parent) {
  const int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) throw_errno("open /dev/null");
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(devnull);
    throw_errno("fork");
  }
  if (pid == 0) {
    if (die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
    }
    if (group) ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(in >= 0 ? in : devnull, 0) < 0 || ::dup2(out >= 0 ? out : devnull, 1) < 0 ||
        ::dup2(err >= 0 ? err : devnull, 2) < 0)
      ::_exit(126);
    ::closefrom(3);
    ::execve(x.argv[0], x.argv.data(), x.envp.data());
    ::_exit(127);
  }
  ::close(devnull);
  return pid;
}

}  // namespace

fs::path mqsec_cli() {
  if (const char* e = std::getenv("MQSEC_BENCH_CLI"); e != nullptr && *e != '\0') return e;
#ifdef MQSEC_BENCH_CLI
  if (fs::exists(MQSEC_BENCH_CLI)) return MQSEC_BENCH_CLI;
#endif
  const fs::path self = self_exe();
  if (!self.empty() && fs::exists(self.parent_path() / "mqsec"))
    return self.parent_path() / "mqsec";
  return {};
}

fs::path self_exe() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : self;
}

std::string remote_unavailable() {
  const fs::path script = Broker::script();
  if (script.empty() || !fs::exists(script)) return "no scripts/broker.sh (MQSEC_BROKER_SCRIPT)";
  if (::access(kRabbitmqServer, X_OK) != 0) return "rabbitmq-server is not installed";
  const fs::path cli = mqsec_cli();
  if (cli.empty() || ::access(cli.c_str(), X_OK) != 0)
    return "the mqsec command was not found (MQSEC_BENCH_CLI)";
  return {};
}

Child::Child(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
             const fs::path& log, bool pipe_stdout)
    : log_(log) {
  ExecArgs x(std::move(argv), env);
  const int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (err < 0) throw_errno("cannot create " + log.string());
  int fds[2] = {-1, -1};
  if (pipe_stdout && ::pipe2(fds, O_CLOEXEC) != 0) {
    ::close(err);
    throw_errno("pipe2");
  }
  try {
    pid_ = spawn(x, -1, pipe_stdout ? fds[1] : err, err, false, true);
  } catch (...) {
    ::close(err);
    if (pipe_stdout) {
      ::close(fds[0]);
      ::close(fds[1]);
    }
    throw;
  }
  ::close(err);
  if (pipe_stdout) {
    ::close(fds[1]);
    out_ = fds[0];
  }
}

Child::~Child() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
  if (out_ >= 0) ::close(out_);
}

bool Child::running() {
  if (status_) return false;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
  return !status_;
}

bool Child::wait_exit(std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (running() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return status_ && WIFEXITED(*status_) && WEXITSTATUS(*status_) == 0;
}

bool Child::stop(int sig, std::chrono::milliseconds limit) {
  if (running()) {
    ::kill(pid_, sig);
    const auto deadline = Clock::now() + limit;
    while (running() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (running()) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
      status_ = st;
      return false;
    }
  }
  return WIFEXITED(*status_) && WEXITSTATUS(*status_) == 0;
}

std::optional<std::string> Child::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto nl = pending_.find('\n'); nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    if (out_ < 0) return std::nullopt;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{out_, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t got = ::read(out_, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      ::close(out_);
      out_ = -1;
      continue;
    }
    pending_.append(buf, static_cast<size_t>(got));
  }
}

std::string Child::log_tail(size_t max) const {
  std::ifstream in(log_, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  return text.size() > max ? "..." + text.substr(text.size() - max) : text;
}

std::string Child::describe_status() const {
  if (!status_) return "running";
  if (WIFEXITED(*status_)) return "exit " + std::to_string(WEXITSTATUS(*status_));
  if (WIFSIGNALED(*status_)) return std::string("killed by ") + strsignal(WTERMSIG(*status_));
  return "status " + std::to_string(*status_);
}

}  // namespace mqsec::bench
