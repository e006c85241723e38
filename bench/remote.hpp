// The remote cases' plumbing in mqsec-bench (issue 10): a private RabbitMQ node run by
// scripts/broker.sh for the length of the bench, with a watchdog so that it never outlives the
// bench, and child processes (`mqsec agent` per machine, this program re-executed as the
// receiver on machine B). See docs/performance.md, "Remote queues".
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/broker_node.hpp"

namespace mqsec::bench {

// The mqsec command (for `mqsec agent`): $MQSEC_BENCH_CLI, else the path compiled in
// (MQSEC_BENCH_CLI), else `mqsec` next to this program.
std::filesystem::path mqsec_cli();
// This program's own path (/proc/self/exe, for the processes of its roles); empty if it cannot
// be read (a child started from it then fails to start, and says so).
std::filesystem::path self_exe();
// Empty when a broker can be started (broker.sh, rabbitmq-server and the mqsec command are
// there), else why not.
std::string remote_unavailable();

// The private broker node (support/broker_node.hpp, shared with the tests): started in a fresh
// $TMPDIR/mqsec-bench-broker-XXXXXX (Broker::start(kBrokerDirPrefix)). Its destructor stops it and
// removes the directory; if the bench dies without running it, the detached `broker.sh watch`
// sees EOF on its pipe and does the same. Broker::script(): $MQSEC_BROKER_SCRIPT, else the path
// compiled in.
using Broker = support::BrokerNode;
constexpr const char* kBrokerDirPrefix = "mqsec-bench-broker";

// A child process: argv[0] an absolute path, the bench's environment with `env` replacing
// variables of the same name; stderr to `log`, stdout to a pipe the bench reads lines from
// (or to `log` too). SIGKILLed when the bench dies (PR_SET_PDEATHSIG) and by the destructor.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
        const std::filesystem::path& log, bool pipe_stdout);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool running();
  // Waits up to `limit` for it to exit; true if it exited 0.
  bool wait_exit(std::chrono::milliseconds limit);
  // SIGTERM (or `sig`), then SIGKILL after `limit`; true if it exited 0 by itself.
  bool stop(int sig, std::chrono::milliseconds limit);
  // The next line of its stdout, nullopt on timeout or EOF.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  std::string log_tail(size_t max = 3000) const;
  std::string describe_status() const;

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::optional<int> status_;
  std::filesystem::path log_;
  std::string pending_;
};

}  // namespace mqsec::bench
