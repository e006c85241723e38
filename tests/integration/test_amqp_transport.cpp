// The AMQP 1.0 transport (src/transport/amqp) against a real RabbitMQ node: URL and address
// rules, connection errors (bad password, nothing listening), 10,000 durable messages in order,
// durable messages across a clean stop and a SIGKILL of the broker, the Forwarder across a broker
// restart (nothing removed from the source before the broker accepted it, order kept, duplicates
// counted) and the Inbound consumer (retry -> redelivered, malformed -> reported, stop).
//
// One broker node for the whole AmqpBroker suite (tests/support/broker_node.hpp); each test uses
// its own machine names, so its own broker queues. Every wait is bounded.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <mqsec/error.hpp>

#include "tests/support/amqp_raw_sender.hpp"
#include "tests/support/broker_node.hpp"
#include "transport/amqp/address.hpp"
#include "transport/amqp/connection.hpp"
#include "transport/amqp/forwarder.hpp"
#include "transport/amqp/inbound.hpp"
#include "transport/amqp/settings.hpp"

namespace {

using namespace mqsec::transport::amqp;
using namespace std::chrono_literals;
using mqsec::test::BrokerNode;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string hex_id(uint64_t n) {
  char buf[41];
  std::snprintf(buf, sizeof buf, "%024x%016llx", 0xabcdefu, static_cast<unsigned long long>(n));
  return buf;
}

HRESULT code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const mqsec::Error& e) {
    return e.code();
  }
  return MQ_OK;
}

// ---- pure rules -------------------------------------------------------------------------------

TEST(AmqpUrl, ValidUrls) {
  auto u = parse_broker_url("amqp://127.0.0.1:5672");
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 5672);
  EXPECT_EQ(u.to_string(), "amqp://127.0.0.1:5672");
  u = parse_broker_url("amqps://broker.example.com");
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.port, 5671);
  EXPECT_EQ(parse_broker_url("amqp://Broker-1").port, 5672);
  u = parse_broker_url("amqp://[::1]:65535");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.to_string(), "amqp://[::1]:65535");
}

TEST(AmqpUrl, InvalidUrlsSayWhatIsWrong) {
  struct Case {
    const char* url;
    HRESULT code;
    const char* says;
  };
  const Case cases[] = {
      {"", MQ_ERROR_INVALID_PARAMETER, "empty"},
      {"http://h:1", MQ_ERROR_ILLEGAL_FORMATNAME, "scheme \"http\""},
      {"127.0.0.1:5672", MQ_ERROR_ILLEGAL_FORMATNAME, "no scheme"},
      {"amqp://", MQ_ERROR_ILLEGAL_FORMATNAME, "host is missing"},
      {"amqp://:5672", MQ_ERROR_ILLEGAL_FORMATNAME, "host is missing"},
      {"amqp://h:0", MQ_ERROR_ILLEGAL_FORMATNAME, "from 1 to 65535"},
      {"amqp://h:65536", MQ_ERROR_ILLEGAL_FORMATNAME, "from 1 to 65535"},
      {"amqp://h:12ab", MQ_ERROR_ILLEGAL_FORMATNAME, "decimal number"},
      {"amqp://h:", MQ_ERROR_ILLEGAL_FORMATNAME, "port is empty"},
      {"amqp://h:5672/vhost", MQ_ERROR_ILLEGAL_FORMATNAME, "path, query or fragment"},
      {"amqp://h?x=1", MQ_ERROR_ILLEGAL_FORMATNAME, "path, query or fragment"},
      {"amqp://h_x:1", MQ_ERROR_ILLEGAL_FORMATNAME, "letters, digits"},
      {"amqp://h x:1", MQ_ERROR_ILLEGAL_FORMATNAME, "spaces"},
      {"amqp://[::1:5672", MQ_ERROR_ILLEGAL_FORMATNAME, "unterminated IPv6"},
  };
  for (const auto& c : cases) {
    try {
      parse_broker_url(c.url);
      ADD_FAILURE() << "accepted: " << c.url;
    } catch (const mqsec::Error& e) {
      EXPECT_EQ(e.code(), c.code) << c.url;
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << c.url << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("broker url"), std::string::npos) << e.what();
    }
  }
}

TEST(AmqpUrl, UserInfoIsRefusedAndNeverEchoed) {
  try {
    parse_broker_url("amqp://mqsec:s3cret-pw@127.0.0.1:5672");
    FAIL() << "accepted user info";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_ILLEGAL_FORMATNAME);
    EXPECT_EQ(std::string(e.what()).find("s3cret-pw"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("password-source"), std::string::npos) << e.what();
  }
}

TEST(AmqpUrl, SecretStringWipesAndCopies) {
  SecretString a("pw-1");
  SecretString b = a;
  EXPECT_EQ(b.reveal(), "pw-1");
  SecretString c = std::move(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(c.reveal(), "pw-1");
  c.clear();
  EXPECT_TRUE(c.empty());
}

TEST(AmqpAddress, MachineToBrokerQueue) {
  EXPECT_EQ(canonical_machine_name("HostB"), "hostb");
  EXPECT_EQ(inbound_queue_name("HostB"), "mqsec.in.hostb");
  EXPECT_EQ(inbound_address("hostb.example.com"), "/queue/mqsec.in.hostb.example.com");
  EXPECT_EQ(inbound_address("Host_B-2", ""), "mqsec.in.host_b-2");
  for (const char* bad : {"", "-x", "x-", ".x", "a..b", "a/b", "a b", "a*", "#", "h\xc3\xa9"})
    EXPECT_EQ(code_of([&] { canonical_machine_name(bad); }), MQ_ERROR_ILLEGAL_FORMATNAME) << bad;
  EXPECT_EQ(code_of([] { canonical_machine_name(std::string(201, 'a')); }),
            MQ_ERROR_ILLEGAL_FORMATNAME);
  EXPECT_EQ(code_of([] { canonical_machine_name(std::string(200, 'a')); }), MQ_OK);
  EXPECT_EQ(code_of([] { validate_queue_name("private$\\inbox"); }), MQ_OK);
  EXPECT_EQ(code_of([] { validate_queue_name(""); }), MQ_ERROR_ILLEGAL_FORMATNAME);
  EXPECT_EQ(code_of([] { validate_queue_name("a\nb"); }), MQ_ERROR_ILLEGAL_FORMATNAME);
  EXPECT_TRUE(is_message_id_hex(hex_id(7)));
  EXPECT_FALSE(is_message_id_hex("ABCDEF0000000000000000000000000000000000"));
  EXPECT_FALSE(is_message_id_hex("abc"));
}

// A loopback port with nothing listening (bound, then closed).
uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST(AmqpConnect, NothingListeningIsNotAvailableWithinTheTimeout) {
  BrokerSettings s;
  s.url = "amqp://127.0.0.1:" + std::to_string(closed_port());
  s.user = "mqsec";
  s.password.assign("unused");
  s.connect_timeout = 3s;
  const auto t0 = Clock::now();
  try {
    Connection c(s);
    FAIL() << "connected to a closed port";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_SERVICE_NOT_AVAILABLE) << e.what();
    EXPECT_NE(std::string(e.what()).find("127.0.0.1"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("unused"), std::string::npos) << e.what();
  }
  EXPECT_LT(seconds_since(t0), 4.0);
}

// The outgoing queue of the core, in memory: FIFO, records removals and checks they are prefixes.
class MemorySource : public OutgoingSource {
 public:
  void add(OutgoingItem item) {
    std::lock_guard lock(m_);
    item.seq = next_seq_++;
    items_.push_back(std::move(item));
    cv_.notify_all();
  }
  std::vector<OutgoingItem> peek(size_t max) override {
    std::lock_guard lock(m_);
    ++peeks_;
    std::vector<OutgoingItem> out(items_.begin(),
                                  items_.begin() + static_cast<long>(std::min(max, items_.size())));
    return out;
  }
  void remove(std::span<const int64_t> seqs) override {
    std::lock_guard lock(m_);
    for (int64_t s : seqs) {
      // The forwarder removes the accepted prefix, oldest first.
      if (items_.empty() || items_.front().seq != s) {
        ++out_of_order_removals_;
        auto it = std::find_if(items_.begin(), items_.end(),
                               [&](const OutgoingItem& i) { return i.seq == s; });
        if (it != items_.end()) items_.erase(it);
        continue;
      }
      items_.pop_front();
      ++removed_;
    }
    cv_.notify_all();
  }
  bool wait_for_change(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(m_);
    const size_t before = items_.size();
    return cv_.wait_for(lock, timeout, [&] { return items_.size() != before; });
  }
  size_t size() const {
    std::lock_guard lock(m_);
    return items_.size();
  }
  size_t removed() const {
    std::lock_guard lock(m_);
    return removed_;
  }
  size_t out_of_order_removals() const {
    std::lock_guard lock(m_);
    return out_of_order_removals_;
  }
  bool wait_until_empty(std::chrono::milliseconds limit) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, limit, [&] { return items_.empty(); });
  }

 private:
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<OutgoingItem> items_;
  int64_t next_seq_ = 1;
  size_t removed_ = 0;
  size_t out_of_order_removals_ = 0;
  size_t peeks_ = 0;
};

TEST(AmqpForwarder, UnreachableBrokerKeepsEverythingAndStopsPromptly) {
  MemorySource source;
  for (int i = 0; i < 10; ++i)
    source.add({0, "hostb", "private$\\q", hex_id(static_cast<uint64_t>(i)), {1, 2, 3}, true});
  BrokerSettings s;
  s.url = "amqp://127.0.0.1:" + std::to_string(closed_port());
  s.user = "mqsec";
  s.password.assign("x");
  s.connect_timeout = 2s;
  ForwarderOptions o;
  o.source_machine = "hosta";
  Forwarder f(s, source, o);
  EXPECT_EQ(code_of([&] { f.run_once(); }), MQ_ERROR_SERVICE_NOT_AVAILABLE);
  std::jthread t([&](std::stop_token st) { f.run(st); });
  std::this_thread::sleep_for(1500ms);
  const auto t0 = Clock::now();
  t.request_stop();
  t.join();
  EXPECT_LT(seconds_since(t0), 2.5);
  EXPECT_EQ(source.size(), 10u);
  const auto st = f.status();
  EXPECT_GE(st.failures, 2u);
  EXPECT_EQ(st.last_error, MQ_ERROR_SERVICE_NOT_AVAILABLE);
  EXPECT_FALSE(st.connected);
}

// Expired items and items that cannot be addressed are settled with the core without a broker.
class ExpiringSource : public MemorySource {
 public:
  bool expired(const OutgoingItem& item) override { return item.queue == "expired"; }
  void on_expired(const OutgoingItem& item) override { expired_ids.push_back(item.message_id_hex); }
  bool on_rejected(const OutgoingItem& item, const std::string& why) override {
    rejected.emplace_back(item.message_id_hex, why);
    return true;  // recorded and NACKed by the core
  }
  std::vector<std::string> expired_ids;
  std::vector<std::pair<std::string, std::string>> rejected;
};

TEST(AmqpForwarder, ExpiredAndUnaddressableItemsGoToTheCoreWithoutABroker) {
  ExpiringSource source;
  source.add({0, "hostb", "expired", hex_id(1), {1}, true});
  source.add({0, "host b!", "q", hex_id(2), {2}, true});  // not a machine name
  source.add({0, "hostb", "expired", hex_id(3), {3}, true});
  BrokerSettings s;
  s.url = "amqp://127.0.0.1:" + std::to_string(closed_port());
  s.connect_timeout = 2s;
  ForwarderOptions o;
  o.source_machine = "hosta";
  Forwarder f(s, source, o);
  EXPECT_EQ(f.run_once(), 3u);
  EXPECT_EQ(source.size(), 0u);
  EXPECT_EQ(source.expired_ids, (std::vector<std::string>{hex_id(1), hex_id(3)}));
  ASSERT_EQ(source.rejected.size(), 1u);
  EXPECT_EQ(source.rejected[0].first, hex_id(2));
  EXPECT_NE(source.rejected[0].second.find("machine name"), std::string::npos);
  EXPECT_EQ(f.status().connects, 0u);
  EXPECT_EQ(f.status().expired, 2u);
  // A bad source machine or URL is a configuration error, found at construction.
  o.source_machine = "a/b";
  EXPECT_THROW(Forwarder(s, source, o), mqsec::Error);
  o.source_machine = "hosta";
  s.url = "amqp://h:99999";
  EXPECT_THROW(Forwarder(s, source, o), mqsec::Error);
}

// ---- against a real broker ----------------------------------------------------------------------

class AmqpBroker : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto t0 = Clock::now();
    broker_ = BrokerNode::start();
    std::printf("[ broker   ] %s started in %.1f s\n", broker_->url().c_str(), seconds_since(t0));
  }
  static void TearDownTestSuite() { broker_.reset(); }

  static BrokerSettings settings() {
    BrokerSettings s;
    s.url = broker_->url();
    s.user = broker_->user();
    s.password.assign(broker_->password());
    s.connect_timeout = 15s;
    s.operation_timeout = 60s;
    return s;
  }

  static void restart(bool hard) {
    const auto t0 = Clock::now();
    if (hard)
      broker_->kill_hard();
    else
      broker_->stop();
    const double down = seconds_since(t0);
    broker_->start_again();
    std::printf("[ broker   ] %s in %.1f s, started again in %.1f s\n", hard ? "killed" : "stopped",
                down, seconds_since(t0) - down);
  }

  // Receives from `address` until `want` distinct message ids arrived or `limit` passed;
  // accepts each. Returns the ids in arrival order (duplicates included).
  static std::vector<InboundDelivery> drain(const std::string& address, size_t want,
                                            std::chrono::seconds limit) {
    Connection c(settings());
    c.open_receiver(address, 1000);
    std::vector<InboundDelivery> got;
    std::set<std::string> distinct;
    const auto deadline = Clock::now() + limit;
    while (distinct.size() < want && Clock::now() < deadline) {
      auto d = c.receive(500ms);
      if (!d) continue;
      c.accept(d->id);
      distinct.insert(d->message_id.value_or(""));
      got.push_back(std::move(*d));
    }
    c.close();
    return got;
  }

  static inline std::unique_ptr<BrokerNode> broker_;
};

TEST_F(AmqpBroker, BadPasswordIsAccessDeniedAndGoodOneConnects) {
  auto s = settings();
  s.password.assign("not-the-password");
  try {
    Connection c(s);
    FAIL() << "connected with a wrong password";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_ACCESS_DENIED) << e.what();
    EXPECT_EQ(std::string(e.what()).find("not-the-password"), std::string::npos);
  }
  // TLS asked for, the broker's port speaks plain AMQP: a clear failure in bounded time.
  auto tls = settings();
  tls.url = "amqps://127.0.0.1:" + std::to_string(broker_->port());
  tls.connect_timeout = 5s;
  const auto t0 = Clock::now();
  try {
    Connection c(tls);
    FAIL() << "TLS handshake with a plain listener succeeded";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_SERVICE_NOT_AVAILABLE) << e.what();
    std::printf("[ tls      ] %s\n", e.what());
  }
  EXPECT_LT(seconds_since(t0), 6.0);
  Connection good(settings());
  EXPECT_TRUE(good.ok());
  // An address the broker refuses (no such exchange): the message is not accepted and the
  // report says why; the connection may or may not survive, but nothing hangs.
  const std::vector<uint8_t> body{1};
  OutboundMessage m{"/exchange/mqsec-no-such-exchange/key", hex_id(1), {}, body, true};
  const auto report = good.send(std::span(&m, 1));
  EXPECT_FALSE(report.all_accepted());
  EXPECT_TRUE(report.error == MQ_ERROR_QUEUE_NOT_FOUND || report.error == MQ_ERROR_ACCESS_DENIED)
      << std::hex << report.error << " " << report.error_text;
  std::printf("[ refused  ] %s: %s\n", to_string(report.outcomes[0]), report.error_text.c_str());
}

TEST_F(AmqpBroker, TenThousandDurableMessagesRoundTripIntactAndInOrder) {
  constexpr size_t kCount = 10000;
  const std::string address = inbound_address("roundtrip");
  std::vector<std::vector<uint8_t>> bodies(kCount, std::vector<uint8_t>(1024));
  for (size_t i = 0; i < kCount; ++i)
    for (size_t j = 0; j < 1024; ++j) bodies[i][j] = static_cast<uint8_t>(i * 31 + j * 7);
  std::vector<OutboundMessage> messages(kCount);
  for (size_t i = 0; i < kCount; ++i)
    messages[i] = {
        address, hex_id(i), {{"mqsec-queue", "q" + std::to_string(i % 7)}}, bodies[i], true};
  {
    Connection c(settings());
    const auto t0 = Clock::now();
    const auto report = c.send(messages);
    const double dt = seconds_since(t0);
    ASSERT_TRUE(report.all_accepted()) << report.error_text;
    std::printf("[ send     ] %zu x 1 KiB durable, all accepted: %.2f s, %.0f msg/s\n", kCount, dt,
                kCount / dt);
  }
  EXPECT_EQ(broker_->queue_depth(inbound_queue_name("roundtrip")), kCount);
  const auto t0 = Clock::now();
  const auto got = drain(address, kCount, 120s);
  const double dt = seconds_since(t0);
  std::printf("[ receive  ] %zu deliveries: %.2f s, %.0f msg/s\n", got.size(), dt, got.size() / dt);
  ASSERT_EQ(got.size(), kCount);
  for (size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(got[i].message_id, hex_id(i)) << i;
    ASSERT_TRUE(got[i].binary_body);
    ASSERT_EQ(got[i].body, bodies[i]) << i;
    const std::string* q = got[i].property("mqsec-queue");
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(*q, "q" + std::to_string(i % 7));
  }
  EXPECT_EQ(broker_->queue_depth(inbound_queue_name("roundtrip")), 0u) << "accepted, re-queued";
}

TEST_F(AmqpBroker, DurableMessagesSurviveStopAndKill) {
  constexpr size_t kCount = 1000;
  const std::string address = inbound_address("survivor");
  std::vector<uint8_t> body(1024, 0x5a);
  std::vector<OutboundMessage> messages(kCount);
  for (size_t i = 0; i < kCount; ++i) messages[i] = {address, hex_id(i), {}, body, true};
  // Express messages (durable=false) in the same kind of durable queue: gone after a restart,
  // as MSMQ's express messages are.
  std::vector<OutboundMessage> express(100);
  for (size_t i = 0; i < express.size(); ++i)
    express[i] = {inbound_address("express"), hex_id(i), {}, body, false};
  {
    Connection c(settings());
    ASSERT_TRUE(c.send(messages).all_accepted());
    ASSERT_TRUE(c.send(express).all_accepted());
  }
  EXPECT_EQ(broker_->queue_depth(inbound_queue_name("survivor")), kCount);
  EXPECT_EQ(broker_->queue_depth(inbound_queue_name("express")), express.size());
  restart(false);
  EXPECT_EQ(broker_->queue_depth(inbound_queue_name("survivor")), kCount);
  EXPECT_EQ(broker_->queue_depth(inbound_queue_name("express")), 0u);
  restart(true);
  EXPECT_EQ(broker_->queue_depth(inbound_queue_name("survivor")), kCount);
  const auto got = drain(address, kCount, 60s);
  ASSERT_EQ(got.size(), kCount);
  for (size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(got[i].message_id, hex_id(i));
    ASSERT_EQ(got[i].body, body);
  }
  // Accepted, then the receiver link closed before the connection: nothing re-queued.
  EXPECT_EQ(broker_->queue_depth(inbound_queue_name("survivor")), 0u);
}

TEST_F(AmqpBroker, ForwarderAcrossBrokerRestartDeliversEverythingInOrder) {
  constexpr size_t kPerDestination = 3000;
  const std::vector<std::string> destinations{"fwd-b", "fwd-c"};
  MemorySource source;
  // A sender that keeps sending while the broker is away (MSMQ: sends succeed, messages wait).
  // The second half waits until the broker is down, so that messages certainly wait for it
  // however slow the machine is (a loaded machine once forwarded everything before the
  // broker's shutdown completed).
  std::atomic<bool> broker_down{false};
  std::jthread producer([&](std::stop_token st) {
    for (size_t i = 0; i < kPerDestination && !st.stop_requested(); ++i) {
      while (i == kPerDestination / 2 && !broker_down.load() && !st.stop_requested()) {
        std::this_thread::sleep_for(5ms);
      }
      for (const auto& d : destinations) {
        std::vector<uint8_t> body(512, static_cast<uint8_t>(i));
        source.add({0, d, "private$\\inbox", hex_id(i), std::move(body), true});
      }
      std::this_thread::sleep_for(3ms);
    }
  });
  ForwarderOptions o;
  o.source_machine = "fwd-a";
  o.batch = 200;
  o.backoff_max = 1000ms;
  o.log = [](std::string_view line) {
    std::printf("[ log      ] %.*s\n", int(line.size()), line.data());
  };
  auto s = settings();
  s.connect_timeout = 5s;
  Forwarder f(s, source, o);
  std::jthread t([&](std::stop_token st) { f.run(st); });

  // Let part of it through, then take the broker away mid-stream.
  const auto t0 = Clock::now();
  while (source.removed() < 1500 && seconds_since(t0) < 60) std::this_thread::sleep_for(5ms);
  ASSERT_GE(source.removed(), 1500u);
  broker_->stop();
  broker_down = true;
  const size_t removed_while_down = source.removed();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(source.removed(), removed_while_down) << "removed while the broker was down";
  EXPECT_GT(source.size(), 0u) << "nothing waited for the broker; make the run longer";
  std::printf("[ forward  ] broker down: %zu removed, %zu waiting\n", removed_while_down,
              source.size());
  broker_->start_again();
  producer.join();
  EXPECT_TRUE(source.wait_until_empty(120s));
  t.request_stop();
  const auto stop0 = Clock::now();
  t.join();
  EXPECT_LT(seconds_since(stop0), 5.0);
  EXPECT_EQ(source.out_of_order_removals(), 0u);
  const auto st = f.status();
  std::printf("[ forward  ] %llu forwarded, %llu resent, %llu connects, %llu failures; last: %s\n",
              static_cast<unsigned long long>(st.forwarded),
              static_cast<unsigned long long>(st.resent),
              static_cast<unsigned long long>(st.connects),
              static_cast<unsigned long long>(st.failures), st.last_error_text.c_str());
  EXPECT_GE(st.connects, 2u);

  for (const auto& d : destinations) {
    const auto got = drain(inbound_address(d), kPerDestination, 120s);
    std::set<std::string> seen;
    size_t duplicates = 0;
    std::string last_new;
    bool in_order = true;
    for (const auto& m : got) {
      const std::string id = m.message_id.value_or("");
      if (!seen.insert(id).second) {
        ++duplicates;
        continue;
      }
      if (!last_new.empty() && id < last_new) in_order = false;  // hex ids sort like numbers
      last_new = id;
      EXPECT_EQ(m.property("mqsec-source") ? *m.property("mqsec-source") : "", "fwd-a");
      EXPECT_EQ(m.property("mqsec-destination") ? *m.property("mqsec-destination") : "", d);
    }
    std::printf("[ forward  ] %s: %zu distinct of %zu, %zu duplicates\n", d.c_str(), seen.size(),
                kPerDestination, duplicates);
    EXPECT_EQ(seen.size(), kPerDestination) << d;
    EXPECT_TRUE(in_order) << d;
  }
}

// SIGSTOP of the broker's Erlang VM (pid from the node's pid file): a broker that accepts
// connections but never answers. SIGCONT when the guard goes.
class FrozenBroker {
 public:
  explicit FrozenBroker(const BrokerNode& node) {
    std::ifstream in(node.dir() / "node" / "rabbit.pid");
    if (in >> pid_ && pid_ > 1 && ::kill(pid_, SIGSTOP) != 0) pid_ = 0;
  }
  ~FrozenBroker() {
    if (pid_ > 1) ::kill(pid_, SIGCONT);
  }
  bool frozen() const { return pid_ > 1; }

 private:
  pid_t pid_ = 0;
};

TEST_F(AmqpBroker, ForwarderStopsPromptlyWhileTheBrokerHangs) {
  MemorySource source;
  for (int i = 0; i < 2000; ++i)
    source.add(
        {0, "hang-b", "q", hex_id(static_cast<uint64_t>(i)), std::vector<uint8_t>(256, 1), true});
  ForwarderOptions o;
  o.source_machine = "hang-a";
  o.batch = 1000;
  Forwarder f(settings(), source, o);  // operation_timeout 60 s
  EXPECT_GT(f.run_once(), 0u);         // connected, first batch through
  const size_t left = source.size();
  size_t removed_before_stop = 0;
  {
    FrozenBroker freeze(*broker_);
    if (!freeze.frozen()) GTEST_SKIP() << "no broker pid file to freeze the broker with";
    std::jthread t([&](std::stop_token st) { f.run(st); });
    std::this_thread::sleep_for(1s);  // the next batch is waiting for the broker
    removed_before_stop = source.removed();
    const auto t0 = Clock::now();
    t.request_stop();
    t.join();
    std::printf("[ hang     ] stop returned after %.2f s\n", seconds_since(t0));
    EXPECT_LT(seconds_since(t0), 3.0);
  }
  EXPECT_EQ(source.size(), left) << "removed without the broker accepting";
  EXPECT_EQ(source.removed(), removed_before_stop);
  EXPECT_EQ(f.status().last_error, MQ_ERROR_OPERATION_CANCELLED) << f.status().last_error_text;
}

TEST_F(AmqpBroker, InboundRetryIsRedeliveredMalformedIsReportedAndStopIsPrompt) {
  const std::string machine = "inbound-b";
  const std::string address = inbound_address(machine);
  const std::vector<uint8_t> body{9, 8, 7};
  {
    Connection c(settings());
    std::vector<OutboundMessage> m = {
        {address,
         hex_id(1),
         {{"mqsec-queue", "private$\\inbox"},
          {"mqsec-source", "hosta"},
          {"mqsec-destination", machine}},
         body,
         true},
        {address, "not-a-hex-id", {{"mqsec-queue", "q"}, {"mqsec-source", "hosta"}}, body, true},
        {address, hex_id(2), {{"mqsec-source", "hosta"}}, body, true},  // no mqsec-queue
        {address,
         hex_id(3),
         {{"mqsec-queue", "q"}, {"mqsec-source", "hosta"}, {"mqsec-destination", "someone-else"}},
         body,
         true},
        {address,
         hex_id(4),
         {{"mqsec-queue", "private$\\inbox"}, {"mqsec-source", "hosta"}},
         body,
         true},
    };
    ASSERT_TRUE(c.send(m).all_accepted());
  }
  // A body that is an AMQP string value, not a binary data section.
  ASSERT_TRUE(mqsec::test::send_string_body(broker_->url(), broker_->user(), broker_->password(),
                                            address, hex_id(5), "not an envelope", 30s));
  std::mutex mu;
  std::vector<std::pair<std::string, uint32_t>> calls;  // message id, delivery count
  std::vector<std::string> malformed;
  InboundOptions o;
  o.machine = machine;
  o.credit = 100;
  o.retry_delay = 50ms;
  o.on_malformed = [&](const MalformedMessage& m) {
    std::lock_guard lock(mu);
    malformed.push_back(m.reason);
  };
  Inbound in(settings(), o, [&](const InboundMessage& m) {
    std::lock_guard lock(mu);
    calls.emplace_back(m.message_id_hex, m.delivery_count);
    EXPECT_EQ(m.body, body);
    EXPECT_EQ(m.source_machine, "hosta");
    EXPECT_EQ(m.queue, "private$\\inbox");
    // The first delivery of id 1 fails transiently; everything else is stored.
    const bool first_of_1 = m.message_id_hex == hex_id(1) &&
                            std::count_if(calls.begin(), calls.end(),
                                          [&](auto& c) { return c.first == hex_id(1); }) == 1;
    return first_of_1 ? Disposition::retry : Disposition::accept;
  });
  std::jthread t([&](std::stop_token st) { in.run(st); });
  const auto t0 = Clock::now();
  for (;;) {
    {
      std::lock_guard lock(mu);
      if (calls.size() >= 3 && malformed.size() >= 4) break;
    }
    if (seconds_since(t0) > 60) break;
    std::this_thread::sleep_for(20ms);
  }
  const auto stop0 = Clock::now();
  t.request_stop();
  t.join();
  EXPECT_LT(seconds_since(stop0), 5.0);
  std::lock_guard lock(mu);
  ASSERT_EQ(calls.size(), 3u);
  size_t ones = 0;
  for (const auto& [id, count] : calls)
    if (id == hex_id(1)) ++ones;
  EXPECT_EQ(ones, 2u) << "retry must bring the message back";
  EXPECT_EQ(std::count(calls.begin(), calls.end(), std::make_pair(hex_id(4), 0u)), 1);
  ASSERT_EQ(malformed.size(), 4u);
  EXPECT_EQ(
      std::count(malformed.begin(), malformed.end(), "the body is not one binary data section"), 1);
  const auto st = in.status();
  EXPECT_EQ(st.delivered, 2u);
  EXPECT_EQ(st.retried, 1u);
  EXPECT_EQ(st.malformed, 4u);
  // Nothing left behind: accepted and rejected messages are gone from the broker queue.
  EXPECT_EQ(broker_->queue_depth(inbound_queue_name(machine)), 0u);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::setvbuf(stderr, nullptr, _IOLBF, 0);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
