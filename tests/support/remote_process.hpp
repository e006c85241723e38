// Test support for the remote-queue end-to-end tests: processes a test starts and stops (an
// agent, this executable re-executed in a role), and a whole-test deadline.
//
// Subprocess: fork + execve of an absolute path with the parent's environment, in which the
// given variables replace any of the same name; stdout and stderr go to a file (for diagnostics),
// and one pipe end may be handed down as fd 3. The child gets SIGKILL when the test process dies
// (PR_SET_PDEATHSIG), and the destructor kills and reaps it if it is still running, so no child
// outlives a failed test.
//
// arm_deadline: a SIGALRM-based watchdog for a whole test. When it fires it writes the
// message to stderr and aborts the process (children die with it; a BrokerNode's own watchdog
// stops the broker).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mqsec::testing {

class Subprocess {
 public:
  // Starts `argv` (argv[0]: an absolute path). Throws std::runtime_error if fork fails.
  Subprocess(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
             const std::filesystem::path& output, int fd3 = -1);
  ~Subprocess();  // SIGKILL and reap if still running
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  const std::filesystem::path& output() const noexcept { return output_; }
  // What it wrote so far (stdout and stderr), at most the last `max` bytes.
  std::string output_tail(size_t max = 4000) const;
  // True while it has not exited (reaps it when it has).
  bool running();
  // Waits up to `limit` for `text` to appear in its output; false if it exited first or the
  // time ran out.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds limit);
  // Its wait status once it has exited.
  std::optional<int> status() const noexcept { return status_; }
  // Waits up to `limit` for it to exit; its wait status, or nullopt if still running.
  std::optional<int> wait(std::chrono::milliseconds limit);
  // Sends `sig` and waits up to `limit`; its wait status, or nullopt (then it is SIGKILLed and
  // reaped, and status() says so).
  std::optional<int> stop(int sig, std::chrono::milliseconds limit);

 private:
  void kill_and_reap();  // SIGKILL, wait, status_

  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path output_;
};

// "exit 3", "killed by Killed", ...
std::string describe_wait_status(int status);

// Aborts the process with `what` on stderr unless disarm_deadline() is called within `limit`.
void arm_deadline(std::chrono::seconds limit, const std::string& what);
void disarm_deadline();

}  // namespace mqsec::testing
