// A private RabbitMQ node (AMQP 1.0) for one process: the broker of the remote-queue tests
// (tests/support/broker_node.hpp) and of mqsec-bench's remote cases (bench/remote.hpp).
//
//   auto broker = mqsec::support::BrokerNode::start();   // ~10-20 s on 2 cores; throws on failure
//   proton::connection_options opts;                  // AMQP 1.0, SASL PLAIN over plain TCP:
//   opts.user(broker->user()).password(broker->password()).sasl_allow_insecure_mechs(true);
//   container.open_sender(broker->url() + "/queue/inbox", opts);
//   broker->stop(); broker->start_again();            // durable queues and messages survive
//   EXPECT_EQ(broker->queue_depth("inbox"), 1u);
//
// Each node runs scripts/broker.sh (MQSEC_BROKER_SCRIPT, overridable by the environment variable
// of the same name) in a fresh directory under $TMPDIR: 127.0.0.1 only, free ports, its own epmd,
// Erlang cookie and data; run as root, the node runs as the user `rabbitmq`. User `mqsec` with a
// random password in password_file() (0600, the caller's); the password is never printed.
//
// Cleanup: the destructor stops the node and removes its directory (also when a test fails or
// throws). If the test process dies without it (SIGKILL, ctest's timeout, abort), a detached
// watchdog (`broker.sh watch`, outside the test's process tree) sees EOF on a pipe whose only
// write end the test process held, and stops the node and removes its directory within seconds.
// Processes forked from the test process without exec keep the pipe open until they exit too.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mqsec::support {

class BrokerNode {
 public:
  // Starts a private node via scripts/broker.sh start in a fresh temporary directory
  // ($TMPDIR/<dir_prefix>-XXXXXX); throws std::runtime_error with the script's message and the
  // tail of the node's log on failure.
  static std::unique_ptr<BrokerNode> start(const std::string& dir_prefix = "mqsec-broker");
  ~BrokerNode();  // stops the node and removes its directory, always
  BrokerNode(const BrokerNode&) = delete;
  BrokerNode& operator=(const BrokerNode&) = delete;

  std::string url() const;  // "amqp://127.0.0.1:<port>"
  uint16_t port() const;
  std::string user() const;                     // "mqsec"
  std::filesystem::path password_file() const;  // 0600, owned by the caller's real uid
  std::string password() const;                 // for tests that need it in memory
  void stop();                                  // clean shutdown, data kept
  void start_again();                           // same ports and data dir; waits until ready
  void kill_hard();                             // SIGKILL the node (crash), data kept
  // Messages ready in a broker queue (rabbitmqctl list_queues), nullopt if no such queue. Takes
  // the queue's name; an AMQP address "/queue/<name>" is accepted too.
  std::optional<uint64_t> queue_depth(const std::string& queue) const;
  // The names of every queue of the node (rabbitmqctl list_queues).
  std::vector<std::string> queue_names() const;
  std::filesystem::path dir() const;

  // Extras.
  bool running() const;                   // the node answers (broker.sh status)
  std::string node_name() const;          // Erlang node name, e.g. "mqsec-23131@localhost"
  static std::filesystem::path script();  // scripts/broker.sh used by every node

 private:
  BrokerNode(std::filesystem::path dir, int watchdog_fd);
  void load_env();

  std::filesystem::path dir_;
  int watchdog_fd_ = -1;  // the write end of the watchdog's pipe (O_CLOEXEC)
  std::string url_;
  uint16_t port_ = 0;
  std::string user_;
  std::filesystem::path password_file_;
  std::string node_name_;
};

}  // namespace mqsec::support
