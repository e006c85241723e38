// Remote read (issue 10, build item 5: MQOpenQueue with receive or peek access on a queue of
// another machine), with one private RabbitMQ node per test process and two machines on this
// host, as test_remote_e2e has them:
//
// - hostb: its own store and `mqsec agent` (MQSEC_CLI) with [agent] remote-read = ["inbox",
//   "ghost"] (ghost does not exist); queues inbox (authenticating) and other (not served).
// - hosta: this process (MQSEC_CONFIG = A, [broker] request-timeout-ms = 2000) reads
//   DIRECT=OS:hostb\private$\inbox through libmqrt (mqsec/mqsec.hpp and mq.h); it also sends to
//   B through the broker (its background forwarder). Anything done as B runs in a child (this
//   executable re-executed with MQSEC_RR_ROLE and MQSEC_CONFIG = B), or by the mqsec command,
//   or by SQL on B's store file (the tampered envelope).
//
// The cases: messages sent on B and from A are peeked (also with a cursor) and received on A,
// authenticated with the sender's SID, in order; a receive with nothing there ends with
// MQ_ERROR_IO_TIMEOUT; `mqsec receive` takes a format name of another machine; a queue not
// served gives MQ_ERROR_ACCESS_DENIED (also when it does not exist), a served one that does not
// exist MQ_ERROR_QUEUE_NOT_FOUND, a machine without an agent MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE
// within the request timeout, MQ_DENY_RECEIVE_SHARE held on B MQ_ERROR_SHARING_VIOLATION; a
// tampered envelope in B's store is rejected by the reader (in B's rejected list, NACKed to A's
// admin queue, never delivered); 200 messages taken by two concurrent readers are each received
// once, and no reply queue is left on the broker after the readers close; a forked child reads
// through a connection of its own; malformed requests are answered with an error or dropped and
// the agent goes on; with B's agent stopped a receive fails with
// MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE within a bounded time.
#include <mqsec/mqsec.hpp>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/broker_node.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/remote_process.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/sqlite_query.hpp"
#include "transport/amqp/connection.hpp"

#ifndef MQSEC_CLI
#error "MQSEC_CLI must name the mqsec command ($<TARGET_FILE:mqsec>)"
#endif

namespace {

namespace fs = std::filesystem;
using mqsec::testing::SoftHsmEnv;
using mqsec::testing::Subprocess;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kRole = "MQSEC_RR_ROLE";
constexpr const char* kRemoteInbox = "DIRECT=OS:hostb\\private$\\inbox";
constexpr const char* kLocalAdmin = "DIRECT=OS:.\\private$\\admin";
constexpr int kRequestTimeoutMs = 2000;  // A's [broker] request-timeout-ms

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

mqsec::Message signed_message(const mqsec::SecurityContext& ctx, const std::string& body) {
  mqsec::Message m;
  m.set_body(body)
      .set_delivery(mqsec::Delivery::Recoverable)
      .set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS)
      .attach(ctx);
  return m;
}

// =============================================================================================
// Roles on B: this executable re-executed with MQSEC_RR_ROLE=<role> and MQSEC_CONFIG = B.

// MQCreateQueue of MQSEC_RR_PATHS (';'-separated), authenticating.
int role_make_queues() {
  std::istringstream in(env_or("MQSEC_RR_PATHS"));
  std::string path;
  while (std::getline(in, path, ';')) mqsec::Queue::create(path, "", true);
  return 0;
}

// Sends MQSEC_RR_COUNT signed messages "<MQSEC_RR_PREFIX> <i>" to B's own inbox, labelled
// MQSEC_RR_LABEL; with MQSEC_RR_NACK=1 each asks for a NACK to A's admin queue. Prints
// "MSGID <hex>" per message.
int role_send_local() {
  ::alarm(300);
  auto ctx = mqsec::SecurityContext::from_certificate(bytes_of_file(env_or("MQSEC_RR_CERT")));
  const int count = std::stoi(env_or("MQSEC_RR_COUNT", "1"));
  const std::string prefix = env_or("MQSEC_RR_PREFIX", "local");
  mqsec::Queue q = mqsec::Queue::open(".\\private$\\inbox", MQ_SEND_ACCESS);
  for (int i = 0; i < count; ++i) {
    mqsec::Message m = signed_message(ctx, prefix + " " + std::to_string(i));
    m.set_label(env_or("MQSEC_RR_LABEL", "remote-read"));
    if (env_or("MQSEC_RR_NACK") == "1") {
      m.set_admin_queue("DIRECT=OS:hosta\\private$\\admin")
          .set_acknowledge(MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE);
    }
    mqsec::MessageId id = q.send(m);
    std::printf("MSGID %s\n", to_hex(id).c_str());
  }
  return 0;
}

int run_role(const std::string& role) {
  static const std::map<std::string, int (*)()> roles = {{"make-queues", role_make_queues},
                                                         {"send-local", role_send_local}};
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

[[maybe_unused]] const bool g_is_child = [] {
  const std::string role = env_or(kRole);
  if (role.empty()) return false;
  ::setvbuf(stdout, nullptr, _IOLBF, 0);
  const int rc = run_role(role);
  std::fflush(nullptr);
  ::_exit(rc);
}();

// =============================================================================================
// The parent: machines, broker, B's agent

struct Machine {
  std::string name;
  fs::path dir, config, store;
};

// `mqsec agent` of B; stopped with SIGTERM by stop() (or killed by the destructor).
class Agent {
 public:
  Agent(const Machine& m, const fs::path& log)
      : proc_({MQSEC_CLI, "agent"}, {{"MQSEC_CONFIG", m.config.string()}, {"MQSEC_LOG", "stderr"}},
              log) {}
  std::string problem() {
    if (proc_.running()) return {};
    return "mqsec agent exited (" + mqsec::testing::describe_wait_status(*proc_.status()) + "):\n" +
           proc_.output_tail();
  }
  std::string stop() {
    if (!proc_.running()) return problem();
    auto st = proc_.stop(SIGTERM, 20s);
    if (!st) return "mqsec agent did not exit within 20 s of SIGTERM";
    if (WIFEXITED(*st) && WEXITSTATUS(*st) == 0) return {};
    return "mqsec agent ended with " + mqsec::testing::describe_wait_status(*st) + ":\n" +
           proc_.output_tail();
  }
  std::string log_tail() const { return proc_.output_tail(3000); }

 private:
  Subprocess proc_;
};

struct Suite {
  std::unique_ptr<mqsec::test::BrokerNode> broker;
  Machine a, b;
  fs::path dir, cert_file, self;
  std::string sid_hex;
  std::unique_ptr<Agent> agent_b;
  std::string setup_error;
};
Suite* g_suite = nullptr;

// Runs `role` on B to completion; its output. Throws when it fails.
std::string run_on_b(const std::string& role, std::map<std::string, std::string> env) {
  static int serial = 0;
  Suite& s = *g_suite;
  env[kRole] = role;
  env["MQSEC_CONFIG"] = s.b.config.string();
  env["MQSEC_LOG"] = "stderr";
  env["MQSEC_RR_CERT"] = s.cert_file.string();
  const fs::path out = s.dir / ("b-" + role + "-" + std::to_string(++serial) + ".out");
  Subprocess p({s.self.string()}, env, out);
  auto st = p.wait(120s);
  if (!st) {
    p.stop(SIGKILL, 5s);
    throw std::runtime_error(role + " on hostb did not finish; output:\n" + p.output_tail());
  }
  if (!WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
    throw std::runtime_error(role + " on hostb failed (" +
                             mqsec::testing::describe_wait_status(*st) + "):\n" + p.output_tail());
  }
  return slurp(out);
}

// Messages sent on B to its inbox: their ids.
std::vector<std::string> send_on_b(int count, const std::string& prefix,
                                   const std::string& label = "remote-read", bool nack = false) {
  std::string out = run_on_b("send-local", {{"MQSEC_RR_COUNT", std::to_string(count)},
                                            {"MQSEC_RR_PREFIX", prefix},
                                            {"MQSEC_RR_LABEL", label},
                                            {"MQSEC_RR_NACK", nack ? "1" : "0"}});
  std::vector<std::string> ids;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("MSGID ", 0) == 0) ids.push_back(line.substr(6));
  return ids;
}

void write_machine(Machine& m, const std::string& name, const std::string& extra) {
  Suite& s = *g_suite;
  SoftHsmEnv& env = SoftHsmEnv::instance();
  m.name = name;
  m.dir = s.dir / name;
  m.store = m.dir / "store";
  m.config = m.dir / "mqsec.toml";
  fs::create_directories(m.store);
  fs::permissions(m.dir, fs::perms::owner_all, fs::perm_options::replace);
  fs::permissions(m.store, fs::perms::owner_all, fs::perm_options::replace);
  mqsec::testing::ConfigOptions o;
  o.store_path = m.store;
  env.write_config(o);
  std::string text = slurp(env.config_path());
  text += "[machine]\nname = \"" + name + "\"\n";
  text += "[broker]\nurl = \"" + s.broker->url() + "\"\nuser = \"" + s.broker->user() +
          "\"\npassword-source = \"file:" + s.broker->password_file().string() + "\"\n" + extra;
  mqsec::testing::write_file(m.config, text, 0600);
}

// MQOpenQueue's HRESULT for `format` with `access`.
HRESULT open_hr(const std::string& format, DWORD access, DWORD share = MQ_DENY_NONE) {
  std::wstring w(format.begin(), format.end());
  QUEUEHANDLE h = nullptr;
  HRESULT hr = MQOpenQueue(w.c_str(), access, share, &h);
  if (SUCCEEDED(hr)) MQCloseQueue(h);
  return hr;
}

std::unique_ptr<Agent> start_agent_b() {
  static int serial = 0;
  Suite& s = *g_suite;
  auto agent =
      std::make_unique<Agent>(s.b, s.dir / ("hostb-agent-" + std::to_string(++serial) + ".log"));
  // Ready once a remote open from A is answered: the agent subscribes to its read queue on a
  // thread of its own after it starts, and a request sent before that is never answered.
  const auto deadline = Clock::now() + 120s;
  for (HRESULT hr = MQ_ERROR;; std::this_thread::sleep_for(100ms)) {
    if (std::string p = agent->problem(); !p.empty()) throw std::runtime_error(p);
    if (SUCCEEDED(hr = open_hr(kRemoteInbox, MQ_PEEK_ACCESS))) break;
    if (Clock::now() > deadline) {
      throw std::runtime_error("B's agent did not answer a remote open in 120 s (last " +
                               mqsec::testing::hr_text(hr) + "):\n" + agent->log_tail());
    }
  }
  return agent;
}

class RemoteReadEnvironment : public ::testing::Environment {
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
    if (g_suite->agent_b) g_suite->agent_b->stop();
    delete g_suite;  // stops the broker
    g_suite = nullptr;
  }

 private:
  static void setup() {
    Suite& s = *g_suite;
    mqsec::testing::arm_deadline(240s, "remote read setup");
    SoftHsmEnv& env = SoftHsmEnv::instance();
    s.self = fs::read_symlink("/proc/self/exe");
    s.dir = env.dir() / "remote-read";
    fs::create_directories(s.dir);
    const std::string id = SoftHsmEnv::new_id();
    env.keypairgen(SoftHsmEnv::kPrimaryToken, "EC:prime256v1", id, "rr-sender");
    mqsec::Bytes cert = env.certificate_for_token_key(SoftHsmEnv::kPrimaryToken, id, "rr-sender");
    s.cert_file = s.dir / "sender.der";
    mqsec::testing::write_file(s.cert_file, std::string(cert.begin(), cert.end()), 0644);

    const auto t0 = Clock::now();
    s.broker = mqsec::test::BrokerNode::start();
    std::printf("[ info ] broker %s up in %.1f s\n", s.broker->url().c_str(),
                std::chrono::duration<double>(Clock::now() - t0).count());
    write_machine(s.a, "hosta", "request-timeout-ms = " + std::to_string(kRequestTimeoutMs) + "\n");
    write_machine(s.b, "hostb", "[agent]\nremote-read = [\"inbox\", \"ghost\"]\n");
    run_on_b("make-queues", {{"MQSEC_RR_PATHS", ".\\private$\\inbox;.\\private$\\other"}});
    // This process is machine A from now on.
    ::setenv("MQSEC_CONFIG", s.a.config.c_str(), 1);
    mqsec::Queue::create(".\\private$\\admin");
    // The sender's SID as a receiver sees it (a signed local round trip on A).
    const std::string probe = mqsec::Queue::create(".\\private$\\rr-probe", "", true);
    auto ctx = mqsec::SecurityContext::from_certificate(cert);
    mqsec::Queue::open(probe, MQ_SEND_ACCESS).send(signed_message(ctx, "probe"));
    auto m = mqsec::Queue::open(probe, MQ_RECEIVE_ACCESS).receive(10s);
    if (!m || !m->authenticated()) throw std::runtime_error("the SID probe failed");
    s.sid_hex = to_hex(m->sender_id());
    mqsec::Queue::remove(probe);
    s.agent_b = start_agent_b();
    std::printf("[ info ] setup done in %.1f s; configs %s, %s\n",
                std::chrono::duration<double>(Clock::now() - t0).count(), s.a.config.c_str(),
                s.b.config.c_str());
    mqsec::testing::disarm_deadline();
  }
};

[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new RemoteReadEnvironment);

class RemoteRead : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(g_suite, nullptr);
    ASSERT_TRUE(g_suite->setup_error.empty()) << "setup failed: " << g_suite->setup_error;
    ASSERT_TRUE(g_suite->agent_b) << "B's agent is not running";
    ASSERT_EQ(g_suite->agent_b->problem(), "");
  }
  void TearDown() override {
    mqsec::testing::disarm_deadline();
    if (HasFailure() && g_suite && g_suite->agent_b)
      std::printf("agent B's log:\n%s\n", g_suite->agent_b->log_tail().c_str());
  }
};

// Takes messages until none comes within `wait`; their bodies.
std::vector<std::string> drain(mqsec::Queue& q, std::chrono::milliseconds wait) {
  std::vector<std::string> bodies;
  while (auto m = q.receive(wait)) bodies.push_back(m->body_string());
  return bodies;
}

// ---------------------------------------------------------------------------------------------

TEST_F(RemoteRead, PeeksAndReceivesMessagesSentOnBAndFromA) {
  Suite& s = *g_suite;
  mqsec::testing::arm_deadline(120s, "PeeksAndReceivesMessagesSentOnBAndFromA");
  ASSERT_NO_THROW(send_on_b(2, "local"));
  {
    auto ctx = mqsec::SecurityContext::from_certificate(bytes_of_file(s.cert_file));
    mqsec::Queue::open(kRemoteInbox, MQ_SEND_ACCESS).send(signed_message(ctx, "from a"));
  }
  // A's message travels A -> outgoing queue -> broker -> B's agent -> inbox: peek with a cursor
  // until it is the third.
  mqsec::Queue peeker = mqsec::Queue::open(kRemoteInbox, MQ_PEEK_ACCESS);
  std::vector<std::string> walked;
  const auto until = Clock::now() + 60s;
  while (Clock::now() < until) {
    walked.clear();
    mqsec::Cursor c = peeker.create_cursor();
    for (auto m = peeker.peek_current(c, 0ms); m; m = peeker.peek_next(c, 0ms)) {
      EXPECT_TRUE(m->authenticated()) << m->body_string();
      EXPECT_EQ(to_hex(m->sender_id()), s.sid_hex) << m->body_string();
      walked.push_back(m->body_string());
    }
    if (walked.size() >= 3) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(walked, (std::vector<std::string>{"local 0", "local 1", "from a"}));
  // A plain peek shows the first and leaves it.
  auto first = peeker.peek(0ms);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->body_string(), "local 0");
  EXPECT_TRUE(first->authenticated());

  // `mqsec receive` with a format name of another machine (MQSEC_CONFIG = A).
  auto r = mqsec::testing::run_command(
      "MQSEC_CONFIG=" + mqsec::testing::shell_quote(s.a.config) + " MQSEC_LOG=stderr " +
      mqsec::testing::shell_quote(MQSEC_CLI) + " receive --json --timeout 5000 " +
      mqsec::testing::shell_quote(kRemoteInbox) + " 2>&1");
  EXPECT_TRUE(r.ok()) << r.output;
  EXPECT_NE(r.output.find("\"body\":\"local 0\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"authenticated_name\":\"MQMSG_AUTHENTICATED_SIG20\""),
            std::string::npos)
      << r.output;

  mqsec::Queue receiver = mqsec::Queue::open(kRemoteInbox, MQ_RECEIVE_ACCESS);
  for (const char* want : {"local 1", "from a"}) {
    auto m = receiver.receive(5s);
    ASSERT_TRUE(m.has_value()) << "expected '" << want << "'";
    EXPECT_EQ(m->body_string(), want);
    EXPECT_TRUE(m->authenticated());
    EXPECT_EQ(to_hex(m->sender_id()), s.sid_hex);
  }
  // Nothing left: MQ_ERROR_IO_TIMEOUT, as locally, after the timeout.
  const auto t0 = Clock::now();
  const HRESULT hr = MQReceiveMessage(receiver.native_handle(), 300, MQ_ACTION_RECEIVE, nullptr,
                                      nullptr, nullptr, nullptr, nullptr);
  const auto waited = Clock::now() - t0;
  EXPECT_EQ(hr, MQ_ERROR_IO_TIMEOUT);
  EXPECT_GE(waited, 300ms);
  EXPECT_LT(waited, 300ms + std::chrono::milliseconds(kRequestTimeoutMs));
  EXPECT_FALSE(peeker.peek(0ms).has_value());
}

TEST_F(RemoteRead, QueuesNotServedAndMachinesWithoutAgentAreRefused) {
  Suite& s = *g_suite;
  mqsec::testing::arm_deadline(120s, "QueuesNotServedAndMachinesWithoutAgentAreRefused");
  // Not in [agent] remote-read: refused whether it exists (other) or not (nope).
  EXPECT_EQ(open_hr("DIRECT=OS:hostb\\private$\\other", MQ_RECEIVE_ACCESS), MQ_ERROR_ACCESS_DENIED);
  EXPECT_EQ(open_hr("DIRECT=OS:hostb\\private$\\nope", MQ_PEEK_ACCESS), MQ_ERROR_ACCESS_DENIED);
  // The reader is told why (here through `mqsec receive`, which prints the runtime's reason).
  auto r = mqsec::testing::run_command(
      "MQSEC_CONFIG=" + mqsec::testing::shell_quote(s.a.config) + " MQSEC_LOG=stderr " +
      mqsec::testing::shell_quote(MQSEC_CLI) + " receive --timeout 0 " +
      mqsec::testing::shell_quote("DIRECT=OS:hostb\\private$\\other") + " 2>&1");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.output.find("does not serve remote reads of queue 'other'"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("MQ_ERROR_ACCESS_DENIED"), std::string::npos) << r.output;
  // Served but missing.
  EXPECT_EQ(open_hr("DIRECT=OS:hostb\\private$\\ghost", MQ_PEEK_ACCESS), MQ_ERROR_QUEUE_NOT_FOUND);
  // MQ_DENY_RECEIVE_SHARE is not offered for a remote queue.
  EXPECT_EQ(open_hr(kRemoteInbox, MQ_RECEIVE_ACCESS, MQ_DENY_RECEIVE_SHARE),
            MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION);
  // A receiver on B holding inbox with MQ_DENY_RECEIVE_SHARE (its exclusive lock on the queue's
  // lock file): remote receivers are refused, peekers are not.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2((s.b.store / "mqsec.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
              SQLITE_OK);
    const int64_t id =
        mqsec::testing::query_int64(db, "SELECT id FROM queues WHERE name = 'inbox'");
    sqlite3_close(db);
    ASSERT_GT(id, 0);
    fs::create_directories(s.b.store / "locks");
    const fs::path lock = s.b.store / "locks" / (std::to_string(id) + ".lock");
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
    EXPECT_EQ(open_hr(kRemoteInbox, MQ_RECEIVE_ACCESS), MQ_ERROR_SHARING_VIOLATION);
    EXPECT_EQ(open_hr(kRemoteInbox, MQ_PEEK_ACCESS), MQ_OK);
    ::close(fd);
  }
  EXPECT_EQ(open_hr(kRemoteInbox, MQ_RECEIVE_ACCESS), MQ_OK);
  // A machine no agent answers for: MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE after the request
  // timeout, not later.
  const auto t0 = Clock::now();
  EXPECT_EQ(open_hr("DIRECT=OS:hostz\\private$\\inbox", MQ_RECEIVE_ACCESS),
            MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE);
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(kRequestTimeoutMs));
  EXPECT_LT(took, std::chrono::milliseconds(kRequestTimeoutMs) + 5s);
}

TEST_F(RemoteRead, TamperedEnvelopeInBsStoreIsRejectedByTheReader) {
  Suite& s = *g_suite;
  mqsec::testing::arm_deadline(120s, "TamperedEnvelopeInBsStoreIsRejectedByTheReader");
  const std::string label = "rr-tamper-" + std::to_string(::getpid());
  std::vector<std::string> ids;
  ASSERT_NO_THROW(ids = send_on_b(1, "tamper me", label, /*nack=*/true));
  ASSERT_EQ(ids.size(), 1u);
  // Flip one byte of the body inside the stored envelope (B's verification on arrival is
  // bypassed: only a write to the store does that).
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(
        sqlite3_open_v2((s.b.store / "mqsec.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr),
        SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT m.seq, m.envelope FROM messages m JOIN queues q ON "
                                 "q.id = m.queue_id WHERE q.name = 'inbox' ORDER BY m.seq",
                                 -1, &st, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    const int64_t seq = sqlite3_column_int64(st, 0);
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 1));
    std::vector<uint8_t> envelope(p, p + sqlite3_column_bytes(st, 1));
    EXPECT_EQ(sqlite3_step(st), SQLITE_DONE) << "inbox must hold only the tampered message";
    sqlite3_finalize(st);
    const std::string text(envelope.begin(), envelope.end());
    const size_t at = text.find("tamper me 0");
    ASSERT_NE(at, std::string::npos);
    envelope[at] ^= 0x20;  // 't' -> 'T'
    ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE messages SET envelope = ?1 WHERE seq = ?2", -1, &st,
                                 nullptr),
              SQLITE_OK);
    sqlite3_bind_blob(st, 1, envelope.data(), static_cast<int>(envelope.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, seq);
    EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  // The reader verifies, rejects it (removed on B, recorded there) and delivers nothing.
  mqsec::Queue q = mqsec::Queue::open(kRemoteInbox, MQ_RECEIVE_ACCESS);
  EXPECT_FALSE(q.receive(500ms).has_value()) << "the tampered message was delivered";
  auto r = mqsec::testing::run_command(
      "MQSEC_CONFIG=" + mqsec::testing::shell_quote(s.b.config) + " MQSEC_LOG=stderr " +
      mqsec::testing::shell_quote(MQSEC_CLI) + " rejected --json inbox 2>&1");
  std::string record;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);)
    if (line.find("\"label\":\"" + label + "\"") != std::string::npos) record = line;
  ASSERT_FALSE(record.empty()) << "`mqsec rejected --json inbox` on B:\n" << r.output;
  EXPECT_NE(record.find("\"kind\":\"signature\""), std::string::npos) << record;
  // The NACK comes from the reader's side (A), to A's admin queue.
  mqsec::Queue admin = mqsec::Queue::open(kLocalAdmin, MQ_RECEIVE_ACCESS);
  auto nack = admin.receive(10s);
  ASSERT_TRUE(nack.has_value()) << "no NACK in A's admin queue";
  EXPECT_EQ(nack->message_class(), MQMSG_CLASS_NACK_BAD_SIGNATURE);
  EXPECT_EQ(to_hex(nack->correlation_id()), ids[0]);
}

TEST_F(RemoteRead, TwoConcurrentReadersTakeEachMessageOnceAndLeaveNoQueueBehind) {
  Suite& s = *g_suite;
  mqsec::testing::arm_deadline(180s, "TwoConcurrentReadersTakeEachMessageOnce");
  constexpr int kCount = 200;
  ASSERT_NO_THROW(send_on_b(kCount, "pair"));
  std::mutex mu;
  std::map<std::string, int> seen;
  std::vector<std::string> errors;
  std::vector<size_t> taken(2, 0);
  const auto t0 = Clock::now();
  {
    std::vector<std::jthread> readers;
    for (size_t k = 0; k < 2; ++k) {
      readers.emplace_back([&, k] {
        try {
          mqsec::Queue q = mqsec::Queue::open(kRemoteInbox, MQ_RECEIVE_ACCESS);
          for (const std::string& body : drain(q, 500ms)) {
            std::lock_guard lock(mu);
            ++seen[body];
            ++taken[k];
          }
        } catch (const std::exception& e) {
          std::lock_guard lock(mu);
          errors.push_back(e.what());
        }
      });
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("[ info ] %d messages taken by two remote readers (%zu + %zu) in %.1f s\n", kCount,
              taken[0], taken[1], secs);
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(seen.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    const std::string body = "pair " + std::to_string(i);
    EXPECT_EQ(seen.count(body) ? seen[body] : 0, 1) << body;
  }
  // No reply queue outlives its reader: the test node's policy expires unused mqsec.reply.*
  // queues (broker.sh; RabbitMQ 3.10's AMQP 1.0 plugin cannot declare auto-delete queues).
  std::vector<std::string> left;
  const auto until = Clock::now() + 30s;
  do {
    std::this_thread::sleep_for(1s);
    left.clear();
    for (const std::string& q : s.broker->queue_names())
      if (q.rfind("mqsec.reply.", 0) == 0 || q.rfind("amq.gen-", 0) == 0) left.push_back(q);
  } while (!left.empty() && Clock::now() < until);
  std::string names;
  for (const auto& q : left) names += q + " ";
  EXPECT_TRUE(left.empty()) << "queues left on the broker 30 s after the readers closed: " << names;
  std::printf("[ info ] reply queues gone %.1f s after the readers closed\n",
              std::chrono::duration<double>(Clock::now() - t0).count() - secs);
}

TEST_F(RemoteRead, ForkedChildReadsThroughItsOwnConnection) {
  mqsec::testing::arm_deadline(120s, "ForkedChildReadsThroughItsOwnConnection");
  ASSERT_NO_THROW(send_on_b(2, "fork"));
  mqsec::Queue q = mqsec::Queue::open(kRemoteInbox, MQ_RECEIVE_ACCESS);
  auto before = q.peek(5s);  // the parent's connection is up before the fork
  ASSERT_TRUE(before.has_value());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::alarm(30);
    int rc = 1;
    try {
      auto m = q.receive(5s);
      rc = m && m->body_string() == "fork 0" && m->authenticated() ? 0 : 2;
    } catch (...) {
      rc = 3;
    }
    ::_exit(rc);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << mqsec::testing::describe_wait_status(status);
  // The parent's handle still works, on its own connection.
  auto m = q.receive(5s);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->body_string(), "fork 1");
}

// Requests that are not what a reader sends: answered with an error when they name a reply
// queue, dropped (and logged) when they do not, and the agent goes on serving.
TEST_F(RemoteRead, MalformedRequestsAreAnsweredOrDroppedAndTheAgentGoesOn) {
  Suite& s = *g_suite;
  mqsec::testing::arm_deadline(120s, "MalformedRequestsAreAnsweredOrDroppedAndTheAgentGoesOn");
  namespace amqp = mqsec::transport::amqp;
  amqp::BrokerSettings settings;
  settings.url = s.broker->url();
  settings.user = s.broker->user();
  settings.password.assign(s.broker->password());
  amqp::Connection c(settings);
  const std::string reply = "mqsec.reply.test." + std::to_string(::getpid());
  c.open_receiver("/queue/" + reply, 8, /*durable=*/false);
  using Props = std::vector<std::pair<std::string, std::string>>;
  struct Request {
    std::string correlation, reply_to;
    Props props;
  };
  const std::vector<Request> requests = {
      {"1", reply, {{"mqsec-op", "frobnicate"}, {"mqsec-queue", "inbox"}}},
      {"2", reply, {{"mqsec-op", "get"}, {"mqsec-queue", "inbox"}}},
      {"3", "", {{"mqsec-op", "first"}, {"mqsec-queue", "inbox"}}},
      {"4", "mqsec.in.hostb", {{"mqsec-op", "first"}, {"mqsec-queue", "inbox"}}},
      {"5",
       reply,
       {{"mqsec-op", "next-after"},
        {"mqsec-queue", "inbox"},
        {"mqsec-priority", "99"},
        {"mqsec-seq", "1"}}},
      {"6", reply, {{"mqsec-op", "count"}, {"mqsec-queue", "inbox"}}},
  };
  std::vector<amqp::OutboundMessage> out;
  for (const Request& r : requests) {
    amqp::OutboundMessage m;
    m.address = "/queue";
    m.subject = "mqsec.read.hostb";
    m.reply_to = r.reply_to;
    m.correlation_id = r.correlation;
    m.properties = r.props;
    m.durable = false;
    out.push_back(std::move(m));
  }
  ASSERT_TRUE(c.send(out).all_accepted());
  std::map<std::string, std::pair<std::string, std::string>> answers;  // corr -> status, error
  const auto until = Clock::now() + 5s;
  while (answers.size() < 4 && Clock::now() < until) {
    auto d = c.receive(500ms);
    if (!d) continue;
    c.accept(d->id);
    const std::string* status = d->property("mqsec-status");
    const std::string* error = d->property("mqsec-error");
    answers[d->correlation_id] = {status ? *status : "(none)", error ? *error : ""};
  }
  std::this_thread::sleep_for(500ms);  // a reply to 3 or 4 would have come by now
  while (auto d = c.receive(0ms)) answers[d->correlation_id] = {"unexpected", ""};
  c.close();
  ASSERT_EQ(answers.size(), 4u);
  EXPECT_EQ(answers["1"].first, "0xc00e0006");
  EXPECT_NE(answers["1"].second.find("unknown operation"), std::string::npos)
      << answers["1"].second;
  EXPECT_EQ(answers["2"].first, "0xc00e0006");
  EXPECT_NE(answers["2"].second.find("mqsec-seq is missing"), std::string::npos)
      << answers["2"].second;
  EXPECT_EQ(answers["5"].first, "0xc00e0006");
  EXPECT_EQ(answers["6"].first, "0x00000000");
  EXPECT_FALSE(s.broker->queue_depth("mqsec.in.hostb").value_or(0) > 0)
      << "a reply went into another kind of queue";
  EXPECT_EQ(s.agent_b->problem(), "");
  EXPECT_EQ(open_hr(kRemoteInbox, MQ_PEEK_ACCESS), MQ_OK);
}

// Last: it stops B's agent.
TEST_F(RemoteRead, StoppedAgentGivesRemoteMachineNotAvailable) {
  Suite& s = *g_suite;
  mqsec::testing::arm_deadline(120s, "StoppedAgentGivesRemoteMachineNotAvailable");
  ASSERT_NO_THROW(send_on_b(1, "after stop"));
  mqsec::Queue q = mqsec::Queue::open(kRemoteInbox, MQ_RECEIVE_ACCESS);
  ASSERT_EQ(s.agent_b->stop(), "");
  s.agent_b.reset();
  const auto t0 = Clock::now();
  const HRESULT hr = MQReceiveMessage(q.native_handle(), 0, MQ_ACTION_RECEIVE, nullptr, nullptr,
                                      nullptr, nullptr, nullptr);
  const auto took = Clock::now() - t0;
  EXPECT_EQ(hr, MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE);
  EXPECT_LT(took, std::chrono::milliseconds(kRequestTimeoutMs) + 5s);
  EXPECT_EQ(open_hr(kRemoteInbox, MQ_PEEK_ACCESS), MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE);
}

}  // namespace
