// The broker fixture itself (tests/support/broker_node.hpp) against a real RabbitMQ node, with a
// blocking Qpid Proton C++ client local to this file: authentication, loopback-only listeners,
// durable messages across a clean stop and a SIGKILL, cleanup by the destructor and by the
// watchdog when the test process dies.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <proton/connection.hpp>
#include <proton/connection_options.hpp>
#include <proton/container.hpp>
#include <proton/delivery.hpp>
#include <proton/error_condition.hpp>
#include <proton/message.hpp>
#include <proton/message_id.hpp>
#include <proton/messaging_handler.hpp>
#include <proton/receiver.hpp>
#include <proton/receiver_options.hpp>
#include <proton/sender.hpp>
#include <proton/sender_options.hpp>
#include <proton/source_options.hpp>
#include <proton/target_options.hpp>
#include <proton/tracker.hpp>
#include <proton/transport.hpp>
#include <proton/value.hpp>

#include "tests/support/broker_node.hpp"

namespace {

namespace fs = std::filesystem;
using mqsec::test::BrokerNode;
using namespace std::chrono_literals;

constexpr auto kClientLimit = 60s;

struct Credentials {
  std::string user;
  std::string password;
};

// One connection that sends `bodies` as durable messages to `address` (and waits until the
// broker accepts each), or receives `want` messages from it (accepting each), then closes.
class Client : public proton::messaging_handler {
 public:
  // `url` is the broker's, `address` the AMQP address ("/queue/NAME"). Not url + address: Proton
  // takes the URL's path without its leading '/' as the address, and RabbitMQ refuses that.
  static Client sending(std::string url, std::string address, Credentials who,
                        std::vector<std::string> bodies) {
    return Client(std::move(url), std::move(address), std::move(who), std::move(bodies), 0, false);
  }
  static Client receiving(std::string url, std::string address, Credentials who, size_t want) {
    return Client(std::move(url), std::move(address), std::move(who), {}, want, true);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Runs the exchange, bounded by `limit`. True when it completed; error() says why not.
  bool run(std::chrono::seconds limit) {
    proton::container container(*this);
    std::promise<void> finished;
    auto done = finished.get_future();
    std::thread runner([&] {
      try {
        container.run();
      } catch (const std::exception& e) {
        fail(std::string("container: ") + e.what());
      }
      finished.set_value();
    });
    if (done.wait_for(limit) == std::future_status::timeout) {
      fail("timed out");
      container.stop();
    }
    runner.join();
    std::lock_guard<std::mutex> lock(mutex_);
    return ok_ && error_.empty();
  }

  std::string error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
  }
  std::vector<std::string> received() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }

  void on_container_start(proton::container& c) override {
    proton::connection_options co;
    co.user(who_.user)
        .password(who_.password)
        .sasl_allowed_mechs("PLAIN")
        .sasl_allow_insecure_mechs(true);  // SASL PLAIN over plain TCP on 127.0.0.1
    c.connect(url_, co);
  }

  void on_connection_open(proton::connection& c) override {
    if (receiving_) {
      proton::receiver_options ro;
      ro.auto_accept(false).credit_window(0).source(
          proton::source_options().durability_mode(proton::source::UNSETTLED_STATE));
      c.open_receiver(address_, ro);
    } else {
      proton::sender_options so;
      so.target(proton::target_options()
                    .durability_mode(proton::target::UNSETTLED_STATE)
                    .expiry_policy(proton::target::NEVER));
      c.open_sender(address_, so);
    }
  }

  void on_receiver_open(proton::receiver& r) override {
    r.add_credit(static_cast<uint32_t>(want_));
  }

  void on_sendable(proton::sender& s) override {
    while (sent_ < bodies_.size() && s.credit() > 0) {
      proton::message m(bodies_[sent_]);
      m.durable(true);
      m.id(proton::message_id(bodies_[sent_]));
      s.send(m);
      ++sent_;
    }
  }

  void on_tracker_accept(proton::tracker& t) override {
    if (++accepted_ == bodies_.size()) {
      set_ok();
      t.connection().close();
    }
  }
  void on_tracker_reject(proton::tracker& t) override {
    fail("rejected by the broker");
    t.connection().close();
  }
  void on_tracker_release(proton::tracker& t) override {
    fail("released by the broker");
    t.connection().close();
  }

  void on_message(proton::delivery& d, proton::message& m) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      received_.push_back(proton::get<std::string>(m.body()));
    }
    d.accept();
    if (++got_ == want_) {
      set_ok();
      d.receiver().close();  // the link first, then the connection on the broker's answer
    }
  }
  // RabbitMQ 3.x answers a link close with a detach: handle both.
  void on_receiver_close(proton::receiver& r) override { r.connection().close(); }
  void on_receiver_detach(proton::receiver& r) override { r.connection().close(); }

  void on_transport_error(proton::transport& t) override { fail(t.error().what()); }
  void on_error(const proton::error_condition& e) override { fail(e.what()); }

 private:
  Client(std::string url, std::string address, Credentials who, std::vector<std::string> bodies,
         size_t want, bool receiving)
      : url_(std::move(url)),
        address_(std::move(address)),
        who_(std::move(who)),
        bodies_(std::move(bodies)),
        want_(want),
        receiving_(receiving) {}

  void set_ok() {
    std::lock_guard<std::mutex> lock(mutex_);
    ok_ = true;
  }
  void fail(const std::string& why) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (error_.empty()) error_ = why.empty() ? "error" : why;
  }

  std::string url_;
  std::string address_;
  Credentials who_;
  std::vector<std::string> bodies_;
  size_t want_ = 0;
  bool receiving_ = false;
  size_t sent_ = 0;
  size_t accepted_ = 0;
  size_t got_ = 0;
  mutable std::mutex mutex_;
  bool ok_ = false;
  std::string error_;
  std::vector<std::string> received_;
};

Credentials credentials_of(const BrokerNode& broker) { return {broker.user(), broker.password()}; }

std::string env_value(const fs::path& env_file, const std::string& key) {
  std::ifstream in(env_file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  return {};
}

// Alive and not a zombie.
bool process_alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  if (text.empty() || paren == std::string::npos || paren + 2 >= text.size()) return false;
  return text[paren + 2] != 'Z' && text[paren + 2] != 'X';
}

// The pid in a pid file if that process is alive.
std::optional<pid_t> live_pid(const fs::path& pid_file) {
  std::ifstream in(pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 0 || !process_alive(static_cast<pid_t>(pid))) return std::nullopt;
  return static_cast<pid_t>(pid);
}

std::set<std::string> socket_inodes(pid_t pid) {
  std::set<std::string> inodes;
  std::error_code ec;
  for (const auto& fd : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    const auto target = fs::read_symlink(fd.path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  return inodes;
}

// Local addresses (hex, as in /proc/net/tcp*) of the listening TCP sockets among `inodes`.
std::vector<std::string> listening_addresses(const std::set<std::string>& inodes) {
  std::vector<std::string> found;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string sl, local, remote, state, queues, timer, retr, uid, timeout, inode;
      fields >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >>
          inode;
      if (state == "0A" && inodes.count(inode) != 0) found.push_back(local);
    }
  }
  return found;
}

bool is_loopback(const std::string& hex_address) {
  const std::string addr = hex_address.substr(0, hex_address.find(':'));
  if (addr.size() == 8) return addr.substr(6, 2) == "7F";  // 127.x.x.x, little-endian
  return addr == "00000000000000000000000001000000";       // ::1
}

TEST(BrokerNode, AcceptsItsUserRefusesAWrongPasswordListensOnLoopbackOnly) {
  fs::path dir;
  std::optional<pid_t> beam;
  {
    auto broker = BrokerNode::start();
    dir = broker->dir();
    EXPECT_EQ(broker->url(), "amqp://127.0.0.1:" + std::to_string(broker->port()));
    EXPECT_EQ(broker->user(), "mqsec");
    EXPECT_TRUE(broker->running());

    struct stat st {};
    ASSERT_EQ(::stat(broker->password_file().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(st.st_uid, getuid());
    const std::string password = broker->password();
    EXPECT_GE(password.size(), 24u);

    const std::string address = "/queue/auth-check";
    auto good = Client::sending(broker->url(), address, credentials_of(*broker), {"hello"});
    EXPECT_TRUE(good.run(kClientLimit)) << good.error();
    EXPECT_EQ(broker->queue_depth("auth-check"), 1u);
    EXPECT_EQ(broker->queue_depth("/queue/auth-check"), 1u);
    EXPECT_EQ(broker->queue_depth("no-such-queue"), std::nullopt);

    auto bad =
        Client::sending(broker->url(), address, {broker->user(), password + "x"}, {"intruder"});
    EXPECT_FALSE(bad.run(kClientLimit));
    EXPECT_NE(bad.error(), "timed out");
    EXPECT_EQ(bad.error().find(password), std::string::npos);
    std::cout << "wrong password refused: " << bad.error() << std::endl;
    auto nobody = Client::sending(broker->url(), address, {"guest", "guest"}, {"guest"});
    EXPECT_FALSE(nobody.run(kClientLimit)) << "guest must not get in";
    EXPECT_EQ(broker->queue_depth("auth-check"), 1u);

    // Every listening socket of the node and of its epmd is on loopback.
    beam = live_pid(dir / "node" / "rabbit.pid");
    const auto epmd = live_pid(dir / "node" / "epmd.pid");
    ASSERT_TRUE(beam && epmd);
    auto inodes = socket_inodes(*beam);
    inodes.merge(socket_inodes(*epmd));
    const auto listening = listening_addresses(inodes);
    EXPECT_GE(listening.size(), 3u);  // AMQP, distribution, epmd
    for (const auto& a : listening) EXPECT_TRUE(is_loopback(a)) << "listens on " << a;

    broker->stop();
    EXPECT_FALSE(broker->running());
    EXPECT_FALSE(process_alive(*beam));
    broker->stop();  // safe twice
    // The user comes from a definitions file (owner-only) that holds the password's salted hash,
    // never the password; no file of the node's holds it.
    ASSERT_EQ(::stat((dir / "node" / "defs.json").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    size_t files = 0;
    for (const auto& f : fs::recursive_directory_iterator(dir / "node")) {
      if (!f.is_regular_file()) continue;
      std::ifstream in(f.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), {});
      EXPECT_EQ(bytes.find(password), std::string::npos) << f.path();
      ++files;
    }
    EXPECT_GT(files, 3u);
    // The log names no password.
    std::ifstream log(dir / "node" / "log" / (broker->node_name() + ".log"));
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(text.find(password), std::string::npos);
    broker->start_again();
    beam = live_pid(dir / "node" / "rabbit.pid");
    ASSERT_TRUE(beam);
  }
  // The destructor stopped the node and removed its directory.
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(process_alive(*beam));
}

TEST(BrokerNode, DurableMessagesSurviveACleanStopAndASigkill) {
  auto broker = BrokerNode::start();
  const std::string address = "/queue/durable-check";
  auto send = Client::sending(broker->url(), address, credentials_of(*broker),
                              {"first", "second", "third"});
  ASSERT_TRUE(send.run(kClientLimit)) << send.error();
  EXPECT_EQ(broker->queue_depth("durable-check"), 3u);

  const auto t0 = std::chrono::steady_clock::now();
  broker->stop();
  const auto t1 = std::chrono::steady_clock::now();
  broker->start_again();
  const auto t2 = std::chrono::steady_clock::now();
  std::cout << "stop " << std::chrono::duration<double>(t1 - t0).count() << " s, start_again "
            << std::chrono::duration<double>(t2 - t1).count() << " s" << std::endl;
  EXPECT_EQ(broker->queue_depth("durable-check"), 3u);
  EXPECT_EQ(env_value(broker->dir() / "broker.env", "URL"), broker->url());  // same port

  auto take_one = Client::receiving(broker->url(), address, credentials_of(*broker), 1);
  ASSERT_TRUE(take_one.run(kClientLimit)) << take_one.error();
  EXPECT_EQ(take_one.received(), std::vector<std::string>{"first"});
  EXPECT_EQ(broker->queue_depth("durable-check"), 2u);

  const auto beam = live_pid(broker->dir() / "node" / "rabbit.pid");
  ASSERT_TRUE(beam);
  broker->kill_hard();
  EXPECT_FALSE(process_alive(*beam));
  EXPECT_FALSE(broker->running());
  const auto t3 = std::chrono::steady_clock::now();
  broker->start_again();
  std::cout << "start_again after SIGKILL "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t3).count() << " s"
            << std::endl;
  // The two unreceived messages survive the SIGKILL. The one received just before it may come
  // back: RabbitMQ writes a classic queue's acknowledgements to disk in the background, not
  // before it settles them, so a kill right after one can undo it (at-least-once delivery;
  // seen in CI at 2 s between the ack and the kill). The receiver removes such a duplicate by
  // its signed message id (docs/remote.md); what must never happen is a lost message.
  const std::optional<uint64_t> after_kill = broker->queue_depth("durable-check");
  ASSERT_TRUE(after_kill);
  const size_t depth = static_cast<size_t>(*after_kill);
  ASSERT_TRUE(depth == 2u || depth == 3u) << depth;
  if (depth == 3u) std::cout << "the message received before the SIGKILL came back" << std::endl;

  auto take_rest = Client::receiving(broker->url(), address, credentials_of(*broker), depth);
  ASSERT_TRUE(take_rest.run(kClientLimit)) << take_rest.error();
  const std::vector<std::string> rest = depth == 3u
                                            ? std::vector<std::string>{"first", "second", "third"}
                                            : std::vector<std::string>{"second", "third"};
  EXPECT_EQ(take_rest.received(), rest);
  EXPECT_EQ(broker->queue_depth("durable-check"), 0u);
}

// Run by the next test in a child process (--gtest_also_run_disabled_tests): starts a node,
// writes its directory to $MQSEC_BROKER_CHILD_REPORT and waits to be killed.
TEST(BrokerNode, DISABLED_ChildThatIsKilled) {
  const char* report = std::getenv("MQSEC_BROKER_CHILD_REPORT");
  ASSERT_NE(report, nullptr);
  auto broker = BrokerNode::start();
  {
    std::ofstream out(std::string(report) + ".tmp");
    out << broker->dir().string() << "\n";
  }
  fs::rename(std::string(report) + ".tmp", report);
  std::this_thread::sleep_for(300s);
}

TEST(BrokerNode, WatchdogStopsTheNodeWhenTheTestProcessIsKilled) {
  const fs::path report =
      fs::temp_directory_path() / ("mqsec-broker-child-" + std::to_string(getpid()) + ".txt");
  fs::remove(report);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // dies with this test process (ctest's timeout)
    setenv("MQSEC_BROKER_CHILD_REPORT", report.c_str(), 1);
    execl("/proc/self/exe", "test_broker_node", "--gtest_also_run_disabled_tests",
          "--gtest_filter=BrokerNode.DISABLED_ChildThatIsKilled", static_cast<char*>(nullptr));
    _exit(127);
  }
  // An ASSERT below returns early: the child (and its node) must not run on for 300 s.
  struct KillChild {
    pid_t pid;
    ~KillChild() {
      if (pid > 0 && kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
    }
  } kill_child{child};
  const auto deadline = std::chrono::steady_clock::now() + 200s;
  while (!fs::exists(report) && std::chrono::steady_clock::now() < deadline &&
         waitpid(child, nullptr, WNOHANG) == 0)
    std::this_thread::sleep_for(200ms);
  std::string dir_text;
  std::ifstream(report) >> dir_text;
  fs::remove(report);
  const fs::path dir = dir_text;
  ASSERT_FALSE(dir_text.empty()) << "the child did not start a node";
  const auto beam = live_pid(dir / "node" / "rabbit.pid");
  const auto epmd = live_pid(dir / "node" / "epmd.pid");
  ASSERT_TRUE(beam && epmd);

  kill(child, SIGKILL);  // as ctest's timeout would
  waitpid(child, nullptr, 0);
  kill_child.pid = 0;
  const auto killed = std::chrono::steady_clock::now();
  while ((process_alive(*beam) || process_alive(*epmd) || fs::exists(dir)) &&
         std::chrono::steady_clock::now() < killed + 120s)
    std::this_thread::sleep_for(200ms);
  std::cout << "watchdog cleaned up in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count()
            << " s" << std::endl;
  EXPECT_FALSE(process_alive(*beam));
  EXPECT_FALSE(process_alive(*epmd));
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
