// Acceptance test of issue 10 ("Done when", first bullet): two machines on this host, one
// RabbitMQ node started by the test, messages signed on A, forwarded through the broker and
// verified on B.
//
// - Machines: two system configurations (MQSEC_CONFIG) with [machine] name = "hosta" / "hostb",
//   a store each (0700), the same SoftHSM token, and a [broker] section naming the test's node
//   (password-source = file:<the node's password file>). B has the authenticating queue
//   .\private$\inbox, A the queue .\private$\admin.
// - Agents: `mqsec agent` per machine (MQSEC_CLI), output in files printed on failure, stopped
//   with SIGTERM at the end of each test (they must exit 0).
// - Stream: a sender child (this executable re-executed, MQSEC_E2E_ROLE=sender, MQSEC_CONFIG =
//   A) sends RECOVERABLE messages signed through PROPID_M_SECURITY_CONTEXT to
//   DIRECT=OS:hostb\private$\inbox and writes "<i>\n" to a pipe after each MQ_OK. After 30 % of
//   the messages the broker is stopped (and started again 3 s after it is down) while the
//   sender goes on; after 60 % the sender is SIGKILLed and a new sender (the next generation)
//   resumes at the last acknowledged index + 1. Bodies carry the generation and the index, so
//   the message in flight at the SIGKILL (sent again by the next generation under the same
//   index, but as a new message) is told apart. A receiver child on B (MQSEC_CONFIG = B) takes
//   every message from inbox and reports "<gen> <i> OK|BAD <why>"; OK means
//   PROPID_M_AUTHENTICATED = 1, PROPID_M_SENDERID = the sender's SID (read once up front by a
//   signed local round trip on A) and the body is exactly the one sent. Every acknowledged
//   message must arrive exactly once and OK, the one in flight at the SIGKILL at most once,
//   nothing else. MQSEC_REMOTE_MESSAGES (default 10000) sets the number of messages.
// - Tamper: with B's agent stopped, A sends one signed message with PROPID_M_ADMIN_QUEUE =
//   DIRECT=OS:hosta\private$\admin and PROPID_M_ACKNOWLEDGE = MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE;
//   when it is on the broker (queue mqsec.in.hostb), the test takes it off with the AMQP
//   transport's Connection, flips one byte of the body inside the envelope and publishes it
//   again with the same message id and properties; B's agent is started again. The message
//   must be listed by `mqsec rejected --json` on B with kind "signature", never reach inbox,
//   and a NACK of class MQMSG_CLASS_NACK_BAD_SIGNATURE correlated with it must arrive in A's
//   admin queue.
//
// Every wait is bounded (a SIGALRM deadline per test, alarm() in children, deadlines on every
// poll); children are killed and the broker stopped when a test fails (RAII). The parent never
// calls mq.h itself: a process's runtime reads one configuration, and there are two machines.
#include <mqsec/mqsec.hpp>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/broker_node.hpp"
#include "tests/support/remote_process.hpp"
#include "tests/support/softhsm_env.hpp"
#include "transport/amqp/address.hpp"
#include "transport/amqp/connection.hpp"
#include "transport/amqp/settings.hpp"

#ifndef MQSEC_CLI
#error "MQSEC_CLI must name the mqsec command ($<TARGET_FILE:mqsec>)"
#endif

namespace {

namespace fs = std::filesystem;
namespace amqp = mqsec::transport::amqp;
using mqsec::testing::SoftHsmEnv;
using mqsec::testing::Subprocess;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kRole = "MQSEC_E2E_ROLE";
constexpr const char* kRemoteInbox = "DIRECT=OS:hostb\\private$\\inbox";
constexpr const char* kRemoteAdmin = "DIRECT=OS:hosta\\private$\\admin";
constexpr const char* kLocalInbox = "DIRECT=OS:.\\private$\\inbox";
constexpr const char* kLocalAdmin = "DIRECT=OS:.\\private$\\admin";

std::string env_or(const char* name, const std::string& fallback = {}) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

std::string to_hex(const uint8_t* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 15]);
  }
  return out;
}
template <typename C>
std::string to_hex(const C& c) {
  return to_hex(c.data(), c.size());
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

mqsec::Bytes bytes_of_file(const fs::path& p) {
  std::string s = slurp(p);
  return mqsec::Bytes(s.begin(), s.end());
}

// The body of stream message `i` of sender generation `gen`: "e2e <gen> <i> " and 64..1087
// bytes derived from both, so that a truncated or mixed-up body cannot pass for the right one.
std::string e2e_body(int gen, long i) {
  std::string b = "e2e " + std::to_string(gen) + " " + std::to_string(i) + " ";
  const long n = 64 + (i * 613 + gen * 97) % 1024;
  for (long k = 0; k < n; ++k) b.push_back(static_cast<char>('A' + (k * 7 + i + gen) % 58));
  return b;
}

void write_line(int fd, const std::string& line) {
  std::string s = line + "\n";
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw std::runtime_error("write to fd " + std::to_string(fd) + " failed");
    off += static_cast<size_t>(w);
  }
}

// =============================================================================================
// Roles: this executable re-executed with MQSEC_E2E_ROLE=<role> and MQSEC_CONFIG=<a machine>.
// Each writes its results as lines on stdout (a file the parent reads) and exits.

mqsec::Message signed_message(const mqsec::SecurityContext& ctx, const std::string& body) {
  mqsec::Message m;
  m.set_body(body)
      .set_delivery(mqsec::Delivery::Recoverable)
      .set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS)
      .attach(ctx);
  return m;
}

// MQCreateQueue of MQSEC_E2E_PATH (authenticating if MQSEC_E2E_AUTH=1).
int role_make_queue() {
  std::string format =
      mqsec::Queue::create(env_or("MQSEC_E2E_PATH"), "", env_or("MQSEC_E2E_AUTH") == "1");
  write_line(1, "FORMAT " + format);
  return 0;
}

// A signed local round trip: prints "SID <hex>" of PROPID_M_SENDERID as a receiver sees it.
int role_probe_sid() {
  std::string format = mqsec::Queue::create(".\\private$\\e2e-probe", "", true);
  auto ctx = mqsec::SecurityContext::from_certificate(bytes_of_file(env_or("MQSEC_E2E_CERT")));
  mqsec::Queue::open(format, MQ_SEND_ACCESS).send(signed_message(ctx, "probe"));
  auto m = mqsec::Queue::open(format, MQ_RECEIVE_ACCESS).receive(10s);
  if (!m) throw std::runtime_error("the probe message did not arrive in the local queue");
  if (!m->authenticated()) throw std::runtime_error("the probe message is not authenticated");
  write_line(1, "SID " + to_hex(m->sender_id()) + " " + m->sender_sid_string());
  mqsec::Queue::remove(format);
  return 0;
}

// Sends stream messages MQSEC_E2E_FIRST .. MQSEC_E2E_END-1 of generation MQSEC_E2E_GEN to B's
// inbox; "<i>\n" to fd 3 after each MQ_OK.
int role_sender() {
  ::alarm(1500);
  const int gen = std::stoi(env_or("MQSEC_E2E_GEN", "0"));
  const long first = std::stol(env_or("MQSEC_E2E_FIRST", "0"));
  const long end = std::stol(env_or("MQSEC_E2E_END", "0"));
  auto ctx = mqsec::SecurityContext::from_certificate(bytes_of_file(env_or("MQSEC_E2E_CERT")));
  mqsec::Queue q = mqsec::Queue::open(kRemoteInbox, MQ_SEND_ACCESS);
  for (long i = first; i < end; ++i) {
    q.send(signed_message(ctx, e2e_body(gen, i)));
    write_line(3, std::to_string(i));
  }
  return 0;
}

// Takes every message from B's inbox until MQSEC_E2E_DONE exists and the queue is empty; one
// line per message: "<gen> <i> OK" or "<gen> <i> BAD <why>" ("- - BAD ..." if not a stream
// message), "ERR <what>" for a failed receive.
int role_receiver() {
  ::alarm(1500);
  const std::string sid = env_or("MQSEC_E2E_SID");
  const fs::path done = env_or("MQSEC_E2E_DONE");
  mqsec::Queue q = mqsec::Queue::open(kLocalInbox, MQ_RECEIVE_ACCESS);
  int errors = 0;
  for (;;) {
    std::optional<mqsec::ReceivedMessage> m;
    try {
      m = q.receive(200ms);
      if (!m && fs::exists(done) && !q.peek(0ms)) return 0;
    } catch (const mqsec::Error& e) {
      write_line(1, std::string("ERR ") + e.what());
      if (++errors > 20) return 4;
      std::this_thread::sleep_for(100ms);
      continue;
    }
    if (!m) continue;
    const std::string body = m->body_string();
    std::istringstream in(body);
    std::string tag;
    int gen = -1;
    long i = -1;
    if (!(in >> tag >> gen >> i) || tag != "e2e" || gen < 0 || i < 0) {
      write_line(1, "- - BAD not a stream message: '" + body.substr(0, 60) + "'");
      continue;
    }
    std::string why;
    if (body != e2e_body(gen, i)) why += " body-differs";
    if (!m->authenticated()) why += " not-authenticated";
    if (to_hex(m->sender_id()) != sid) why += " senderid=" + m->sender_sid_string();
    write_line(
        1, std::to_string(gen) + " " + std::to_string(i) + (why.empty() ? " OK" : " BAD" + why));
  }
}

// One signed message with an admin queue and a NACK request: prints "MSGID <hex>".
int role_send_tamper() {
  auto ctx = mqsec::SecurityContext::from_certificate(bytes_of_file(env_or("MQSEC_E2E_CERT")));
  mqsec::Message m = signed_message(ctx, env_or("MQSEC_E2E_BODY"));
  m.set_label(env_or("MQSEC_E2E_LABEL"))
      .set_admin_queue(kRemoteAdmin)
      .set_acknowledge(MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE);
  mqsec::MessageId id = mqsec::Queue::open(kRemoteInbox, MQ_SEND_ACCESS).send(m);
  write_line(1, "MSGID " + to_hex(id));
  return 0;
}

// Takes the messages of MQSEC_E2E_QUEUE: waits up to MQSEC_E2E_WAIT_MS for the first, then
// until none comes for 500 ms. One line each: "MSG class=<hex> corr=<hex> label=<l> body=<b>".
int role_take() {
  ::alarm(600);
  mqsec::Queue q = mqsec::Queue::open(env_or("MQSEC_E2E_QUEUE"), MQ_RECEIVE_ACCESS);
  auto wait = std::chrono::milliseconds(std::stol(env_or("MQSEC_E2E_WAIT_MS", "0")));
  while (auto m = q.receive(wait)) {
    char cls[8];
    std::snprintf(cls, sizeof cls, "%04x", m->message_class());
    std::string body = m->body_string().substr(0, 200);
    std::replace(body.begin(), body.end(), '\n', ' ');
    write_line(1, std::string("MSG class=") + cls + " corr=" + to_hex(m->correlation_id()) +
                      " label=" + m->label() + " body=" + body);
    wait = 500ms;
  }
  return 0;
}

int run_role(const std::string& role) {
  static const std::map<std::string, int (*)()> roles = {
      {"make-queue", role_make_queue}, {"probe-sid", role_probe_sid},     {"sender", role_sender},
      {"receiver", role_receiver},     {"send-tamper", role_send_tamper}, {"take", role_take}};
  auto it = roles.find(role);
  if (it == roles.end()) {
    std::fprintf(stderr, "unknown role '%s'\n", role.c_str());
    return 2;
  }
  try {
    return it->second();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "role %s failed: %s\n", role.c_str(), e.what());
    return 6;
  }
}

// Before GoogleTest sees the process: a child runs its role and exits.
[[maybe_unused]] const bool g_is_child = [] {
  const std::string role = env_or(kRole);
  if (role.empty()) return false;
  ::setvbuf(stdout, nullptr, _IOLBF, 0);
  const int rc = run_role(role);
  std::fflush(nullptr);
  ::_exit(rc);
}();

// =============================================================================================
// The parent: machines, broker, agents

struct Machine {
  std::string name;  // hosta, hostb
  fs::path dir, config, store;
};

struct Suite {
  std::unique_ptr<mqsec::test::BrokerNode> broker;
  Machine a, b;
  fs::path dir, cert_file, self;
  std::string sid_hex, sid_text;
  std::string setup_error;  // non-empty: every test fails with it
};
Suite* g_suite = nullptr;

// A process that runs to completion: `role` of this executable on `m`. Returns its output;
// fails the test (throws) if it does not exit 0 within `limit`.
std::string run_child(const Machine& m, const std::string& role,
                      std::map<std::string, std::string> env, std::chrono::seconds limit) {
  static int serial = 0;
  env[kRole] = role;
  env["MQSEC_CONFIG"] = m.config.string();
  env["MQSEC_LOG"] = "stderr";
  const fs::path out =
      g_suite->dir / (m.name + "-" + role + "-" + std::to_string(++serial) + ".out");
  Subprocess p({g_suite->self.string()}, env, out);
  auto st = p.wait(limit);
  if (!st) {
    p.stop(SIGKILL, 5s);
    throw std::runtime_error(role + " on " + m.name + " did not finish within " +
                             std::to_string(limit.count()) + " s; its output:\n" + p.output_tail());
  }
  if (!WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
    throw std::runtime_error(role + " on " + m.name + " failed (" +
                             mqsec::testing::describe_wait_status(*st) + "); its output:\n" +
                             p.output_tail());
  }
  return slurp(out);
}

// The value after "<key> " on the first line that starts with it.
std::string field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + " ", 0) == 0) return line.substr(key.size() + 1);
  }
  return {};
}

void write_machine(Machine& m, const std::string& name, const fs::path& root,
                   const mqsec::test::BrokerNode& broker) {
  SoftHsmEnv& env = SoftHsmEnv::instance();
  m.name = name;
  m.dir = root / name;
  m.store = m.dir / "store";
  m.config = m.dir / "mqsec.toml";
  fs::create_directories(m.store);
  fs::permissions(m.dir, fs::perms::owner_all, fs::perm_options::replace);
  fs::permissions(m.store, fs::perms::owner_all, fs::perm_options::replace);
  mqsec::testing::ConfigOptions o;
  o.store_path = m.store;
  env.write_config(o);  // the token, profile and identity sections every machine shares
  std::string text = slurp(env.config_path());
  text += "[machine]\nname = \"" + name + "\"\n";
  text += "[broker]\nurl = \"" + broker.url() + "\"\nuser = \"" + broker.user() +
          "\"\npassword-source = \"file:" + broker.password_file().string() + "\"\n";
  mqsec::testing::write_file(m.config, text, 0600);
}

class RemoteEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    g_suite = new Suite;
    try {
      setup();
    } catch (const std::exception& e) {
      g_suite->setup_error = e.what();
    }
  }
  void TearDown() override {
    delete g_suite;  // stops the broker
    g_suite = nullptr;
  }

 private:
  static void setup() {
    Suite& s = *g_suite;
    mqsec::testing::arm_deadline(300s, "remote e2e setup");
    SoftHsmEnv& env = SoftHsmEnv::instance();
    s.self = fs::read_symlink("/proc/self/exe");
    s.dir = env.dir() / "remote-e2e";
    fs::create_directories(s.dir);
    // The sender's key (P-256, fast on SoftHSM) and certificate, made with the command-line
    // tools before any process opens the token.
    const std::string id = SoftHsmEnv::new_id();
    env.keypairgen(SoftHsmEnv::kPrimaryToken, "EC:prime256v1", id, "e2e-sender");
    mqsec::Bytes cert = env.certificate_for_token_key(SoftHsmEnv::kPrimaryToken, id, "e2e-sender");
    s.cert_file = s.dir / "sender.der";
    mqsec::testing::write_file(s.cert_file, std::string(cert.begin(), cert.end()), 0644);

    auto t0 = Clock::now();
    s.broker = mqsec::test::BrokerNode::start();
    std::printf("[ info ] broker %s up in %.1f s\n", s.broker->url().c_str(),
                std::chrono::duration<double>(Clock::now() - t0).count());
    write_machine(s.a, "hosta", s.dir, *s.broker);
    write_machine(s.b, "hostb", s.dir, *s.broker);
    env.write_config();  // back to the default (the parent does not use it)

    run_child(s.b, "make-queue",
              {{"MQSEC_E2E_PATH", ".\\private$\\inbox"}, {"MQSEC_E2E_AUTH", "1"}}, 60s);
    run_child(s.a, "make-queue",
              {{"MQSEC_E2E_PATH", ".\\private$\\admin"}, {"MQSEC_E2E_AUTH", "0"}}, 60s);
    std::string probe =
        run_child(s.a, "probe-sid", {{"MQSEC_E2E_CERT", s.cert_file.string()}}, 60s);
    std::istringstream in(field(probe, "SID"));
    in >> s.sid_hex >> s.sid_text;
    if (s.sid_hex.empty()) throw std::runtime_error("the SID probe printed no SID:\n" + probe);
    std::printf("[ info ] sender SID %s (%s); configs %s, %s\n", s.sid_text.c_str(),
                s.sid_hex.c_str(), s.a.config.c_str(), s.b.config.c_str());
    mqsec::testing::disarm_deadline();
  }
};

[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new RemoteEnvironment);

// `mqsec agent` of a machine; stopped with SIGTERM by stop() (or killed by the destructor).
class Agent {
 public:
  explicit Agent(const Machine& m)
      : machine_(m.name),
        proc_({MQSEC_CLI, "agent"}, {{"MQSEC_CONFIG", m.config.string()}, {"MQSEC_LOG", "stderr"}},
              g_suite->dir / (m.name + "-agent-" + std::to_string(++serial_) + ".log")) {}

  // "" while it runs, else what happened and its output.
  std::string problem() {
    if (proc_.running()) return {};
    return "mqsec agent of " + machine_ + " exited (" +
           mqsec::testing::describe_wait_status(*proc_.status()) + "); its output (" +
           proc_.output().string() + "):\n" + proc_.output_tail();
  }
  // SIGTERM; "" if it exited 0 within 20 s, else what happened.
  std::string stop() {
    if (!proc_.running()) return problem();
    auto st = proc_.stop(SIGTERM, 20s);
    if (!st) return "mqsec agent of " + machine_ + " did not exit within 20 s of SIGTERM";
    if (WIFEXITED(*st) && WEXITSTATUS(*st) == 0) return {};
    return "mqsec agent of " + machine_ + " ended with " +
           mqsec::testing::describe_wait_status(*st) + " on SIGTERM; output:\n" +
           proc_.output_tail();
  }
  std::string log_tail() const { return proc_.output_tail(3000); }
  // Whether it logged its start line (src/cli/agent_command.cpp): SIGTERM is blocked by then.
  bool started() const {
    return proc_.output_tail(100000).find("agent: machine '") != std::string::npos;
  }

 private:
  static inline int serial_ = 0;
  std::string machine_;
  Subprocess proc_;
};

// Starts an agent and waits until it says it started (a missing verb or a configuration it
// refuses ends it at once). Only then does it take SIGTERM as a request to stop: before, the
// signal's default action ends it (an ASan build under load took more than 1.5 s to get there).
std::unique_ptr<Agent> start_agent(const Machine& m) {
  auto agent = std::make_unique<Agent>(m);
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (!agent->started()) {
    if (std::string p = agent->problem(); !p.empty()) throw std::runtime_error(p);
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("mqsec agent of " + m.name + " did not say it started in 120 s:\n" +
                               agent->log_tail());
    }
    std::this_thread::sleep_for(50ms);
  }
  return agent;
}

// Starts both machines' agents; "" or why one did not start.
std::string start_agents(std::unique_ptr<Agent>& a, std::unique_ptr<Agent>& b) {
  try {
    a = start_agent(g_suite->a);
    b = start_agent(g_suite->b);
    return {};
  } catch (const std::exception& e) {
    return e.what();
  }
}

// The first agent problem, or "".
std::string agents_problem(const std::vector<Agent*>& agents) {
  for (Agent* a : agents) {
    if (std::string p = a->problem(); !p.empty()) return p;
  }
  return {};
}

class RemoteE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(g_suite, nullptr);
    ASSERT_TRUE(g_suite->setup_error.empty()) << "setup failed: " << g_suite->setup_error;
  }
  void TearDown() override { mqsec::testing::disarm_deadline(); }
};

// ---------------------------------------------------------------------------------------------
// Stream

using Key = std::pair<int, long>;  // (sender generation, index)

// Reads "<i>\n" lines from a sender's pipe.
class AckPipe {
 public:
  AckPipe() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  }
  ~AckPipe() {
    close_write();
    ::close(fds_[0]);
  }
  AckPipe(const AckPipe&) = delete;
  AckPipe& operator=(const AckPipe&) = delete;
  int write_end() const { return fds_[1]; }
  void close_write() {
    if (fds_[1] >= 0) ::close(std::exchange(fds_[1], -1));
  }
  // Waits up to `timeout` for data; appends complete lines to `lines`. False at EOF.
  bool read(std::chrono::milliseconds timeout, std::vector<std::string>& lines) {
    pollfd p{fds_[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r <= 0) return true;
    char buf[8192];
    ssize_t n = ::read(fds_[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return false;
    pending_.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = pending_.find('\n')) != std::string::npos;) {
      lines.push_back(pending_.substr(0, nl));
      pending_.erase(0, nl + 1);
    }
    return true;
  }
  const std::string& pending() const { return pending_; }

 private:
  int fds_[2] = {-1, -1};
  std::string pending_;
};

// What the receiver reported so far (its output file, read incrementally).
struct ReceiverReport {
  std::map<Key, int> count;
  std::map<Key, std::string> bad;  // first BAD line per key
  std::vector<std::string> foreign, errors;
  size_t lines = 0;
  std::streamoff offset = 0;

  void update(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    in.seekg(offset);
    std::string line;
    while (std::getline(in, line)) {
      if (in.eof()) break;  // a partial last line: read it next time
      offset = in.tellg();
      ++lines;
      std::istringstream ls(line);
      std::string g, i, verdict;
      ls >> g >> i >> verdict;
      if (g == "ERR") {
        errors.push_back(line);
        continue;
      }
      if (g == "-" || verdict.empty()) {
        foreign.push_back(line);
        continue;
      }
      Key k{std::stoi(g), std::stol(i)};
      ++count[k];
      if (verdict != "OK" && !bad.count(k)) bad[k] = line;
    }
  }
  size_t have(const std::vector<Key>& keys) const {
    size_t n = 0;
    for (const Key& k : keys) n += count.count(k);
    return n;
  }
};

TEST_F(RemoteE2E, TenThousandSignedAcrossBrokerRestartAndSenderKill) {
  Suite& s = *g_suite;
  mqsec::testing::arm_deadline(880s, "TenThousandSignedAcrossBrokerRestartAndSenderKill");
  const long total = std::stol(env_or("MQSEC_REMOTE_MESSAGES", "10000"));
  ASSERT_GE(total, 10) << "MQSEC_REMOTE_MESSAGES";
  const long restart_at = total * 3 / 10, kill_at = total * 6 / 10;

  std::unique_ptr<Agent> agent_a, agent_b;
  if (std::string e = start_agents(agent_a, agent_b); !e.empty()) FAIL() << e;
  const std::vector<Agent*> agents = {agent_a.get(), agent_b.get()};

  const fs::path recv_out = s.dir / "receiver.out", done = s.dir / "receiver.done";
  fs::remove(done);
  Subprocess receiver({s.self.string()},
                      {{kRole, "receiver"},
                       {"MQSEC_CONFIG", s.b.config.string()},
                       {"MQSEC_LOG", "stderr"},
                       {"MQSEC_E2E_SID", s.sid_hex},
                       {"MQSEC_E2E_DONE", done.string()}},
                      recv_out);

  // The broker restart runs beside the stream; the acknowledgement count it sees tells whether
  // sends went on while the broker was down.
  std::atomic<long> acks{0};
  std::atomic<long> acks_when_down{-1}, acks_when_restarting{-1};
  std::string restart_error;
  std::jthread restarter;
  auto restart_broker = [&] {
    try {
      s.broker->stop();
      acks_when_down = acks.load();
      std::this_thread::sleep_for(3s);
      acks_when_restarting = acks.load();
      s.broker->start_again();
    } catch (const std::exception& e) {
      restart_error = e.what();
    }
  };

  std::vector<Key> acked;
  std::optional<Key> in_flight;  // unacknowledged at the SIGKILL
  long next = 0;
  const auto t0 = Clock::now();
  for (int gen = 0; next < total; ++gen) {
    ASSERT_LT(gen, 2) << "a sender generation ended early without being killed";
    AckPipe pipe;
    Subprocess sender({s.self.string()},
                      {{kRole, "sender"},
                       {"MQSEC_CONFIG", s.a.config.string()},
                       {"MQSEC_LOG", "stderr"},
                       {"MQSEC_E2E_CERT", s.cert_file.string()},
                       {"MQSEC_E2E_GEN", std::to_string(gen)},
                       {"MQSEC_E2E_FIRST", std::to_string(next)},
                       {"MQSEC_E2E_END", std::to_string(total)}},
                      s.dir / ("sender-" + std::to_string(gen) + ".out"), pipe.write_end());
    pipe.close_write();
    bool killed = false;
    auto last_ack = Clock::now();
    std::vector<std::string> lines;
    while (pipe.read(1000ms, lines)) {
      for (const std::string& line : lines) {
        ASSERT_EQ(line, std::to_string(next)) << "sender " << gen << " acknowledged out of order";
        acked.emplace_back(gen, next++);
        ++acks;
        last_ack = Clock::now();
      }
      lines.clear();
      if (!restarter.joinable() && next >= restart_at) restarter = std::jthread(restart_broker);
      if (gen == 0 && !killed && next >= kill_at) {
        ::kill(sender.pid(), SIGKILL);
        killed = true;
      }
      ASSERT_TRUE(Clock::now() - last_ack < 120s)
          << "no acknowledgement from sender " << gen << " for 120 s after " << next
          << "; sender output:\n"
          << sender.output_tail() << "\n"
          << agents_problem(agents);
    }
    auto st = sender.wait(30s);
    ASSERT_TRUE(st.has_value()) << "sender " << gen << " did not exit after closing its pipe";
    EXPECT_TRUE(pipe.pending().empty()) << "partial acknowledgement: " << pipe.pending();
    if (killed && WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL) {
      in_flight = Key{gen, next};
      std::printf("[ info ] sender %d SIGKILLed after %ld acknowledged (%.1f s)\n", gen, next,
                  std::chrono::duration<double>(Clock::now() - t0).count());
      continue;
    }
    ASSERT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0 && next == total)
        << "sender " << gen << " ended with " << mqsec::testing::describe_wait_status(*st)
        << " after " << next << " of " << total << " acknowledged; its output:\n"
        << sender.output_tail() << "\nagent A:\n"
        << agent_a->log_tail();
  }
  const double send_time = std::chrono::duration<double>(Clock::now() - t0).count();
  if (restarter.joinable()) restarter.join();
  ASSERT_TRUE(restart_error.empty()) << "broker restart failed: " << restart_error;
  ASSERT_GE(acks_when_down.load(), 0) << "the broker was never restarted";
  const long acked_while_down = acks_when_restarting.load() - acks_when_down.load();
  std::printf(
      "[ info ] %ld acknowledged in %.1f s; broker down after ack %ld, restarting at ack %ld "
      "(%ld acknowledged while it was down)\n",
      total, send_time, acks_when_down.load(), acks_when_restarting.load(), acked_while_down);
  if (acks_when_down.load() < total) {
    EXPECT_GT(acked_while_down, 0) << "sends must keep succeeding while the broker is down";
  }

  // B receives: until it has every acknowledged message, bounded (and no progress for 120 s
  // ends it early).
  ReceiverReport report;
  size_t have = 0;
  auto last_progress = Clock::now();
  const auto deadline = Clock::now() + 420s;
  while (have < acked.size()) {
    std::this_thread::sleep_for(500ms);
    report.update(recv_out);
    size_t now_have = report.have(acked);
    if (now_have != have) last_progress = Clock::now();
    have = now_have;
    std::string problem = agents_problem(agents);
    if (problem.empty() && !receiver.running()) {
      problem = "the receiver exited (" + mqsec::testing::describe_wait_status(*receiver.status()) +
                "):\n" + receiver.output_tail();
    }
    if (problem.empty() && (Clock::now() > deadline || Clock::now() - last_progress > 120s)) {
      problem = "timed out";
    }
    ASSERT_TRUE(problem.empty()) << problem << "\nB has received " << have << " of " << acked.size()
                                 << " acknowledged messages (" << report.lines
                                 << " lines from the receiver); broker queue mqsec.in.hostb holds "
                                 << s.broker->queue_depth("mqsec.in.hostb").value_or(0)
                                 << "\nagent A:\n"
                                 << agent_a->log_tail() << "\nagent B:\n"
                                 << agent_b->log_tail();
  }
  std::printf("[ info ] all %zu acknowledged messages received on B %.1f s after the last send\n",
              acked.size(), std::chrono::duration<double>(Clock::now() - t0).count() - send_time);
  std::this_thread::sleep_for(3s);  // duplicates, if any, have time to show
  mqsec::testing::write_file(done, "done");
  auto rst = receiver.wait(60s);
  ASSERT_TRUE(rst.has_value()) << "the receiver did not finish";
  EXPECT_TRUE(WIFEXITED(*rst) && WEXITSTATUS(*rst) == 0)
      << mqsec::testing::describe_wait_status(*rst) << ": " << receiver.output_tail();
  report.update(recv_out);

  // Every acknowledged message exactly once and verified; the one in flight at most once.
  std::set<Key> expected(acked.begin(), acked.end());
  size_t missing = 0, twice = 0, bad = 0, unexpected = 0;
  for (const Key& k : acked) {
    int n = report.count.count(k) ? report.count.at(k) : 0;
    if (n == 0 && ++missing <= 10)
      ADD_FAILURE() << "acknowledged " << k.first << "/" << k.second << " never arrived";
  }
  for (const auto& [k, n] : report.count) {
    const bool known = expected.count(k) || (in_flight && k == *in_flight);
    if (!known && ++unexpected <= 10) {
      ADD_FAILURE() << "message " << k.first << "/" << k.second << " was never sent";
    }
    if (n > 1 && ++twice <= 10) {
      ADD_FAILURE() << "message " << k.first << "/" << k.second << " arrived " << n << " times";
    }
  }
  for (const auto& [k, line] : report.bad) {
    if (++bad <= 10) ADD_FAILURE() << "not verified as sent by " << s.sid_text << ": " << line;
  }
  for (size_t i = 0; i < std::min<size_t>(report.foreign.size(), 10); ++i)
    ADD_FAILURE() << "foreign message: " << report.foreign[i];
  for (size_t i = 0; i < std::min<size_t>(report.errors.size(), 10); ++i)
    ADD_FAILURE() << "receive error: " << report.errors[i];
  EXPECT_EQ(missing, 0u) << "acknowledged messages missing on B";
  EXPECT_EQ(twice, 0u) << "messages delivered more than once";
  EXPECT_EQ(bad, 0u) << "messages not authenticated with the sender's SID";
  EXPECT_EQ(unexpected, 0u) << "messages that were never sent";
  std::printf("[ info ] %zu acknowledged, %zu distinct received; in flight at the SIGKILL: %s\n",
              acked.size(), report.count.size(),
              in_flight ? (report.count.count(*in_flight) ? "delivered once" : "not delivered")
                        : "none (no kill)");
  EXPECT_EQ(agent_a->stop(), "");
  EXPECT_EQ(agent_b->stop(), "");
}

// ---------------------------------------------------------------------------------------------
// Tamper

// The line of `mqsec rejected --json` (MQSEC_CONFIG = B) about the message labelled `label`.
std::string rejection_record(const Machine& b, const std::string& label) {
  auto r = mqsec::testing::run_command(
      "MQSEC_CONFIG=" + mqsec::testing::shell_quote(b.config) + " MQSEC_LOG=stderr " +
      mqsec::testing::shell_quote(MQSEC_CLI) + " rejected --json 2>&1");
  std::istringstream in(r.output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"label\":\"" + label + "\"") != std::string::npos) return line;
  }
  return {};
}

TEST_F(RemoteE2E, TamperedEnvelopeIsRejectedOnBAndNackedToA) {
  Suite& s = *g_suite;
  mqsec::testing::arm_deadline(600s, "TamperedEnvelopeIsRejectedOnBAndNackedToA");
  std::unique_ptr<Agent> agent_a, agent_b;
  if (std::string e = start_agents(agent_a, agent_b); !e.empty()) FAIL() << e;
  ASSERT_EQ(agent_b->stop(), "") << "B's agent must stop on SIGTERM";
  const std::string inbound = amqp::inbound_queue_name("hostb");
  auto depth = [&] { return s.broker->queue_depth(inbound).value_or(0); };
  ASSERT_EQ(depth(), 0u) << "broker queue " << inbound << " must be empty before the test";

  const std::string tag = std::to_string(::getpid());
  const std::string label = "e2e-tamper-" + tag;
  const std::string unique = "unique body text " + tag;
  std::string out;
  ASSERT_NO_THROW(out = run_child(s.a, "send-tamper",
                                  {{"MQSEC_E2E_CERT", s.cert_file.string()},
                                   {"MQSEC_E2E_LABEL", label},
                                   {"MQSEC_E2E_BODY", "tamper me: " + unique}},
                                  60s));
  const std::string msgid = field(out, "MSGID");
  ASSERT_EQ(msgid.size(), 40u) << out;

  // A forwards it (its agent, or the sending process) to the broker queue of hostb.
  const auto deadline = Clock::now() + 120s;
  while (depth() < 1 && Clock::now() < deadline) {
    ASSERT_EQ(agent_a->problem(), "");
    std::this_thread::sleep_for(500ms);
  }
  ASSERT_EQ(depth(), 1u) << "the message did not reach broker queue " << inbound
                         << " within 120 s; agent A:\n"
                         << agent_a->log_tail();

  // Take it off, flip one byte of the body inside the envelope, publish it again.
  {
    amqp::BrokerSettings settings;
    settings.url = s.broker->url();
    settings.user = s.broker->user();
    settings.password.assign(s.broker->password());
    amqp::Connection c(settings);
    c.open_receiver(amqp::inbound_address("hostb"), 1);
    auto d = c.receive(30s);
    ASSERT_TRUE(d.has_value()) << "nothing to receive from " << inbound;
    ASSERT_EQ(d->message_id.value_or("(none)"), msgid) << "AMQP message-id of the message";
    std::vector<uint8_t> body = d->body;
    const std::string text(body.begin(), body.end());
    const size_t at = text.find(unique);
    ASSERT_NE(at, std::string::npos) << "the body text is not in the envelope";
    ASSERT_EQ(text.find(unique, at + 1), std::string::npos) << "the body text is there twice";
    body[at] ^= 0x20;  // 'u' -> 'U'
    amqp::OutboundMessage m;
    m.address = amqp::inbound_address("hostb");
    m.message_id = *d->message_id;
    m.properties = d->properties;
    m.body = body;
    m.durable = true;
    amqp::SendReport report = c.send(std::span<const amqp::OutboundMessage>(&m, 1));
    ASSERT_TRUE(report.all_accepted()) << "publishing the tampered copy: " << report.error_text;
    ASSERT_TRUE(c.accept(d->id));
    c.close();
  }
  const auto settle = Clock::now() + 30s;
  while (depth() != 1 && Clock::now() < settle) std::this_thread::sleep_for(200ms);
  ASSERT_EQ(depth(), 1u) << "only the tampered copy must be on the broker (the original was "
                            "accepted and must be gone)";

  agent_b.reset();
  try {
    agent_b = start_agent(s.b);
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  // B's agent rejects it: recorded with the signature kind.
  std::string record;
  const auto rejected_by = Clock::now() + 120s;
  while ((record = rejection_record(s.b, label)).empty() && Clock::now() < rejected_by) {
    ASSERT_EQ(agents_problem({agent_a.get(), agent_b.get()}), "");
    std::this_thread::sleep_for(1s);
  }
  ASSERT_FALSE(record.empty()) << "`mqsec rejected --json` on B does not list '" << label
                               << "' after 120 s; broker queue holds " << depth() << "; agent B:\n"
                               << agent_b->log_tail();
  EXPECT_NE(record.find("\"kind\":\"signature\""), std::string::npos) << record;
  EXPECT_NE(record.find("\"queue\":\"inbox\""), std::string::npos) << record;

  // Never in inbox.
  std::string inbox;
  ASSERT_NO_THROW(
      inbox = run_child(s.b, "take",
                        {{"MQSEC_E2E_QUEUE", kLocalInbox}, {"MQSEC_E2E_WAIT_MS", "2000"}}, 60s));
  EXPECT_EQ(inbox.find(label), std::string::npos) << "the tampered message reached inbox:\n"
                                                  << inbox;
  EXPECT_EQ(inbox.find(tag), std::string::npos) << "the tampered message reached inbox:\n" << inbox;

  // The NACK travels back to A's admin queue.
  std::string admin;
  ASSERT_NO_THROW(
      admin = run_child(s.a, "take",
                        {{"MQSEC_E2E_QUEUE", kLocalAdmin}, {"MQSEC_E2E_WAIT_MS", "120000"}}, 180s));
  char want[64];
  std::snprintf(want, sizeof want, "MSG class=%04x corr=%s", MQMSG_CLASS_NACK_BAD_SIGNATURE,
                msgid.c_str());
  EXPECT_NE(admin.find(want), std::string::npos)
      << "expected '" << want << "' in A's admin queue within 120 s; it held:\n"
      << (admin.empty() ? "(nothing)" : admin) << "\nagent B:\n"
      << agent_b->log_tail() << "\nagent A:\n"
      << agent_a->log_tail();
  EXPECT_EQ(agent_a->stop(), "");
  EXPECT_EQ(agent_b->stop(), "");
}

}  // namespace
