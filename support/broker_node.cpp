// A private RabbitMQ node per process (see broker_node.hpp): scripts/broker.sh does the work; this
// runs it with bounded waits and keeps a watchdog that stops the node if the process dies.
#include "support/broker_node.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#ifndef MQSEC_BROKER_SCRIPT
#error "MQSEC_BROKER_SCRIPT must name scripts/broker.sh"
#endif

extern char** environ;

namespace mqsec::support {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// Longer than the script's own limits (120 s to ready, 60 s per CLI call), so that its own
// message, with the node's log, is what a test sees.
constexpr std::chrono::seconds kStartLimit{300};
constexpr std::chrono::seconds kCommandLimit{150};

struct Result {
  int exit_code = -1;  // -1: killed by a signal or timed out
  bool timed_out = false;
  std::string output;  // stdout and stderr together (never contains the password)
};

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), "BrokerNode: " + what);
}

class SpawnSetup {
 public:
  SpawnSetup() {
    if (posix_spawn_file_actions_init(&actions_) != 0) throw_errno("posix_spawn_file_actions_init");
    if (posix_spawnattr_init(&attr_) != 0) {
      posix_spawn_file_actions_destroy(&actions_);
      throw_errno("posix_spawnattr_init");
    }
  }
  ~SpawnSetup() {
    posix_spawnattr_destroy(&attr_);
    posix_spawn_file_actions_destroy(&actions_);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;

  // stdin from `in_fd` (or /dev/null), stdout and stderr to `out_fd` (or /dev/null), nothing
  // else inherited; default signal dispositions and an empty mask; its own process group.
  void prepare(int in_fd, int out_fd) {
    check(in_fd >= 0 ? posix_spawn_file_actions_adddup2(&actions_, in_fd, 0)
                     : posix_spawn_file_actions_addopen(&actions_, 0, "/dev/null", O_RDONLY, 0));
    if (out_fd >= 0) {
      check(posix_spawn_file_actions_adddup2(&actions_, out_fd, 1));
    } else {
      check(posix_spawn_file_actions_addopen(&actions_, 1, "/dev/null", O_WRONLY, 0));
    }
    check(posix_spawn_file_actions_adddup2(&actions_, 1, 2));
    check(posix_spawn_file_actions_addclosefrom_np(&actions_, 3));
    sigset_t none;
    sigset_t defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGCHLD, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGALRM, SIGUSR1, SIGUSR2})
      sigaddset(&defaults, sig);
    check(posix_spawnattr_setsigmask(&attr_, &none));
    check(posix_spawnattr_setsigdefault(&attr_, &defaults));
    check(posix_spawnattr_setpgroup(&attr_, 0));
    check(posix_spawnattr_setflags(
        &attr_, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP));
  }

  pid_t spawn(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawnp(&pid, argv[0], &actions_, &attr_, argv.data(), environ);
    if (rc != 0) {
      errno = rc;
      throw_errno("cannot run " + args[0]);
    }
    return pid;
  }

 private:
  static void check(int rc) {
    if (rc != 0) {
      errno = rc;
      throw_errno("posix_spawn setup");
    }
  }
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
};

// Waits for `pid` until `deadline`, then SIGKILLs its process group and reaps it. Returns the exit
// code, -1 if it was killed by a signal.
int reap(pid_t pid, Clock::time_point deadline, bool& timed_out) {
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (r < 0 && errno != EINTR) return -1;
    if (Clock::now() >= deadline) {
      timed_out = true;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result run_script(const std::vector<std::string>& args, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw_errno("pipe2");
  std::vector<std::string> argv{"bash", BrokerNode::script().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = -1;
  try {
    SpawnSetup setup;
    setup.prepare(-1, out[1]);
    pid = setup.spawn(argv);
  } catch (...) {
    close(out[0]);
    close(out[1]);
    throw;
  }
  close(out[1]);

  Result result;
  char buf[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      result.timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (n == 0) continue;
    const ssize_t got = read(out[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    result.output.append(buf, static_cast<size_t>(got));
  }
  close(out[0]);
  result.exit_code = reap(pid, result.timed_out ? Clock::now() : deadline, result.timed_out);
  return result;
}

std::string describe(const std::vector<std::string>& args, const Result& r) {
  std::ostringstream s;
  s << "BrokerNode: scripts/broker.sh";
  for (const auto& a : args) s << ' ' << a;
  if (r.timed_out) {
    s << ": timed out";
  } else {
    s << ": exit " << r.exit_code;
  }
  s << "\n" << r.output;
  return s.str();
}

Result run_checked(const std::vector<std::string>& args, std::chrono::seconds limit) {
  Result r = run_script(args, limit);
  if (r.exit_code != 0 || r.timed_out) throw std::runtime_error(describe(args, r));
  return r;
}

// A detached `broker.sh watch <dir>` whose stdin is the read end of a pipe; returns the write
// end. `setsid -f` forks, so the watchdog is no child of the test process: a kill of the test's
// process tree (ctest's timeout) does not reach it, and it sees EOF when the test process is gone.
int spawn_watchdog(const fs::path& dir) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
  pid_t pid = -1;
  try {
    SpawnSetup setup;
    setup.prepare(fds[0], -1);
    pid =
        setup.spawn({"setsid", "-f", "bash", BrokerNode::script().string(), "watch", dir.string()});
  } catch (...) {
    close(fds[0]);
    close(fds[1]);
    throw;
  }
  close(fds[0]);
  bool timed_out = false;
  if (reap(pid, Clock::now() + std::chrono::seconds(30), timed_out) != 0) {
    close(fds[1]);
    throw std::runtime_error("BrokerNode: cannot start the watchdog (setsid -f)");
  }
  return fds[1];
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

fs::path BrokerNode::script() {
  if (const char* env = std::getenv("MQSEC_BROKER_SCRIPT"); env != nullptr && *env != '\0')
    return env;
  return MQSEC_BROKER_SCRIPT;
}

std::unique_ptr<BrokerNode> BrokerNode::start(const std::string& dir_prefix) {
  std::string pattern = (fs::temp_directory_path() / (dir_prefix + "-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) throw_errno("mkdtemp");
  const fs::path dir = pattern;
  int watchdog_fd = -1;
  try {
    // First the watchdog, so that a test process dying during the start is covered too
    // (broker.sh serialises start, stop and watch on a lock in <dir>).
    watchdog_fd = spawn_watchdog(dir);
    const std::vector<std::string> args{"start", dir.string()};
    Result r = run_script(args, kStartLimit);
    if (r.exit_code != 0 || r.timed_out) throw std::runtime_error(describe(args, r));
  } catch (...) {
    run_script({"stop", dir.string()}, kCommandLimit);
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (watchdog_fd >= 0) close(watchdog_fd);
    throw;
  }
  std::unique_ptr<BrokerNode> node(new BrokerNode(dir, watchdog_fd));
  node->load_env();
  return node;
}

BrokerNode::BrokerNode(fs::path dir, int watchdog_fd)
    : dir_(std::move(dir)), watchdog_fd_(watchdog_fd) {}

BrokerNode::~BrokerNode() {
  try {
    run_script({"stop", dir_.string()}, kCommandLimit);
  } catch (...) {  // NOLINT(bugprone-empty-catch): the watchdog stops it then
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (watchdog_fd_ >= 0) close(watchdog_fd_);  // the watchdog wakes, finds nothing, exits
}

void BrokerNode::load_env() {
  std::ifstream in(dir_ / "broker.env");
  if (!in) throw std::runtime_error("BrokerNode: no " + (dir_ / "broker.env").string());
  std::string line;
  std::string port;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq);
    const std::string value = line.substr(eq + 1);
    if (key == "URL") url_ = value;
    if (key == "PORT") port = value;
    if (key == "USER") user_ = value;
    if (key == "PASSWORD_FILE") password_file_ = value;
    if (key == "NODE") node_name_ = value;
  }
  unsigned long p = 0;
  try {
    p = std::stoul(port);
  } catch (const std::exception&) {
    p = 0;
  }
  if (url_.empty() || user_.empty() || password_file_.empty() || p == 0 || p > 65535)
    throw std::runtime_error("BrokerNode: incomplete " + (dir_ / "broker.env").string());
  port_ = static_cast<uint16_t>(p);
}

std::string BrokerNode::url() const { return url_; }
uint16_t BrokerNode::port() const { return port_; }
std::string BrokerNode::user() const { return user_; }
fs::path BrokerNode::password_file() const { return password_file_; }
fs::path BrokerNode::dir() const { return dir_; }
std::string BrokerNode::node_name() const { return node_name_; }

std::string BrokerNode::password() const {
  std::ifstream in(password_file_, std::ios::binary);
  if (!in) throw std::runtime_error("BrokerNode: cannot read " + password_file_.string());
  std::ostringstream s;
  s << in.rdbuf();
  return trim(s.str());
}

void BrokerNode::stop() { run_checked({"stop", dir_.string()}, kCommandLimit); }

void BrokerNode::start_again() { run_checked({"start", dir_.string()}, kStartLimit); }

void BrokerNode::kill_hard() { run_checked({"kill", dir_.string()}, kCommandLimit); }

bool BrokerNode::running() const {
  const Result r = run_script({"status", dir_.string()}, kCommandLimit);
  return r.exit_code == 0 && !r.timed_out;
}

std::optional<uint64_t> BrokerNode::queue_depth(const std::string& queue) const {
  std::string name = queue;
  if (name.rfind("/queue/", 0) == 0) name = name.substr(7);
  const std::vector<std::string> args{"depth", dir_.string(), name};
  const Result r = run_script(args, kCommandLimit);
  if (r.exit_code == 4 && !r.timed_out) return std::nullopt;
  if (r.exit_code != 0 || r.timed_out) throw std::runtime_error(describe(args, r));
  const std::string text = trim(r.output);
  try {
    size_t used = 0;
    const unsigned long long n = std::stoull(text, &used);
    if (used == text.size()) return static_cast<uint64_t>(n);
  } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): reported below
  }
  throw std::runtime_error(describe(args, r) + "\n(not a number)");
}

std::vector<std::string> BrokerNode::queue_names() const {
  const std::vector<std::string> args{"queues", dir_.string()};
  const Result r = run_script(args, kCommandLimit);
  if (r.exit_code != 0 || r.timed_out) throw std::runtime_error(describe(args, r));
  std::vector<std::string> names;
  size_t start = 0;
  while (start < r.output.size()) {
    size_t end = r.output.find('\n', start);
    if (end == std::string::npos) end = r.output.size();
    const std::string line = r.output.substr(start, end - start);
    const std::string name = line.substr(0, line.find('\t'));
    if (!trim(name).empty()) names.push_back(trim(name));
    start = end + 1;
  }
  return names;
}

}  // namespace mqsec::support
