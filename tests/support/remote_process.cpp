#include "tests/support/remote_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace mqsec::testing {

Subprocess::Subprocess(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
                       const std::filesystem::path& output, int fd3)
    : output_(output) {
  // Everything the child needs is built before fork: the parent has threads, so the child may
  // only make async-signal-safe calls until exec.
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    if (!env.count(entry.substr(0, entry.find('=')))) envs.push_back(std::move(entry));
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : envs) envp.push_back(s.data());
  envp.push_back(nullptr);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) throw std::runtime_error("cannot create " + output.string());
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) {
    ::close(out);
    throw std::runtime_error("fork failed");
  }
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) ::_exit(126);
    // dup2 onto itself keeps O_CLOEXEC: a pipe end that already is fd 3 is made inheritable.
    if (fd3 >= 0 && (fd3 == 3 ? ::fcntl(3, F_SETFD, 0) : ::dup2(fd3, 3)) < 0) ::_exit(126);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(out);
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !status_) kill_and_reap();
}

void Subprocess::kill_and_reap() {
  ::kill(pid_, SIGKILL);
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  status_ = st;
}

std::string Subprocess::output_tail(size_t max) const {
  std::ifstream in(output_, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  return text.size() > max ? "..." + text.substr(text.size() - max) : text;
}

bool Subprocess::running() {
  if (status_) return false;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
  return !status_;
}

bool Subprocess::wait_for_output(const std::string& text, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const bool alive = running();  // before the read: output written before an exit counts
    if (output_tail(std::string::npos).find(text) != std::string::npos) return true;
    if (!alive || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::optional<int> Subprocess::wait(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

std::optional<int> Subprocess::stop(int sig, std::chrono::milliseconds limit) {
  if (!running()) return status_;
  ::kill(pid_, sig);
  if (auto st = wait(limit)) return st;
  kill_and_reap();
  return std::nullopt;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + ::strsignal(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

namespace {
char g_deadline_text[512];
size_t g_deadline_len = 0;

extern "C" void on_deadline(int) {
  // Async-signal-safe: write and abort only.
  [[maybe_unused]] ssize_t w = ::write(2, g_deadline_text, g_deadline_len);
  std::abort();
}
}  // namespace

void arm_deadline(std::chrono::seconds limit, const std::string& what) {
  std::string text = "DEADLINE: '" + what + "' did not finish within " +
                     std::to_string(limit.count()) + " s (a hang); aborting\n";
  g_deadline_len = std::min(text.size(), sizeof g_deadline_text);
  std::memcpy(g_deadline_text, text.data(), g_deadline_len);
  struct sigaction sa = {};
  sa.sa_handler = on_deadline;
  ::sigaction(SIGALRM, &sa, nullptr);
  ::alarm(static_cast<unsigned>(limit.count()));
}

void disarm_deadline() { ::alarm(0); }

}  // namespace mqsec::testing
