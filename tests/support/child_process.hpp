// Runs a test's body in a forked child that ends with exit() (not _exit()), so the runtime's
// exit handlers run there: what the exit and fork tests check. The parent's test environment
// (its SoftHSM token directory) is left alone by the child.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>

namespace mqsec::testing {

// The child's exit status (128 + signal if a signal ended it), or -1 when it did not end
// within `bound` (it is then killed).
inline int exit_in_child(const std::function<int()>& body,
                         std::chrono::milliseconds bound = std::chrono::seconds(60)) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    int rc = 99;
    try {
      rc = body();
    } catch (...) {
    }
    setenv("MQSEC_IT_KEEP", "1", 1);  // the token directory is the parent's to remove
    std::exit(rc);
  }
  if (pid < 0) return -2;
  const auto deadline = std::chrono::steady_clock::now() + bound;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

}  // namespace mqsec::testing
