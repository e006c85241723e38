// mqsec-with-softhsm: runs a command inside a throwaway SoftHSM test environment
// (tests/support/softhsm_env): SOFTHSM2_CONF, MQSEC_CONFIG and MQSEC_LOG point into a temporary
// directory with initialised tokens, which is removed when the command has finished. Used by
// the ABI tests, which are C programs that must not link any of our C++.
//
//   mqsec-with-softhsm PROGRAM [ARGS...]    exit status: the program's (128+signal if killed)
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

#include "tests/support/softhsm_env.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: mqsec-with-softhsm PROGRAM [ARGS...]\n");
    return 2;
  }
  try {
    mqsec::testing::SoftHsmEnv::instance();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mqsec-with-softhsm: %s\n", e.what());
    return 1;
  }
  // fork + wait rather than exec, so the environment's directory is removed afterwards.
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("mqsec-with-softhsm: fork");
    return 1;
  }
  if (pid == 0) {
    execvp(argv[1], argv + 1);
    std::fprintf(stderr, "mqsec-with-softhsm: cannot run %s: %s\n", argv[1], std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      std::perror("mqsec-with-softhsm: waitpid");
      return 1;
    }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
