// Sending to a queue of another machine (issue 10, the sending side), with a private RabbitMQ node
// (BrokerNode) and no token (unsigned messages: the outgoing path does not depend on signing):
// - a send to DIRECT=OS:hostb\private$\inbox returns while the broker is down, and the messages
//   wait in the outgoing queue (mqsec queue list's backlog);
// - once the broker is up, forward_outgoing moves them to mqsec.in.hostb, in order, with the
//   mqsec-queue/-source/-destination properties, and empties the outgoing queue;
// - a message whose PROPID_M_TIME_TO_REACH_QUEUE runs out while it waits is not forwarded: it is
//   recorded as rejected ("expired") for the outgoing queue and NACKed
//   (MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT) to its local admin queue; the others are forwarded;
// - without [broker], a send to another machine fails with MQ_ERROR_SERVICE_NOT_AVAILABLE ("no
//   [broker] is configured") and nothing is queued.
// Send path: core::Queue::open/send, the path MQSendMessage takes (libmqrt is a thin adapter).
#include <gtest/gtest.h>
#include <mq.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/admin.hpp"
#include "src/core/destination.hpp"
#include "src/core/forwarding.hpp"
#include "src/core/outgoing.hpp"
#include "src/core/queue.hpp"
#include "src/core/runtime.hpp"
#include "src/security/envelope.hpp"
#include "tests/support/broker_node.hpp"
#include "transport/amqp/address.hpp"
#include "transport/amqp/connection.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

fs::path make_root() {
  char tmpl[] = "/tmp/mqsec-remote-send-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (dir == nullptr) throw std::runtime_error("mkdtemp failed");
  return dir;
}

void write_config(const fs::path& path, const fs::path& store, const std::string& broker_section) {
  fs::create_directories(store);
  fs::permissions(store, fs::perms::owner_all, fs::perm_options::replace);
  std::ofstream out(path);
  out << "[store]\npath = \"" << store.string() << "\"\n[machine]\nname = \"hosta\"\n"
      << broker_section;
}

size_t backlog(const fs::path& store) {
  size_t n = 0;
  for (const auto& q :
       mqsec::core::list_outgoing_queues(mqsec::core::runtime().stores().store_at(store))) {
    n += q.backlog;
  }
  return n;
}

// Runs forward_outgoing (as mqsec agent does) until the outgoing queues are empty, at most 60 s.
void forward_until_empty(const mqsec::security::SystemConfig& cfg, const fs::path& store) {
  std::jthread up([&](std::stop_token st) { mqsec::core::forward_outgoing(cfg, st); });
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (backlog(store) != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
}

void send(mqsec::core::Queue& q, const std::string& body,
          uint32_t time_to_reach_queue = mqsec::security::kNoTimeLimit) {
  mqsec::core::Outgoing m;
  m.envelope.delivery = MQMSG_DELIVERY_RECOVERABLE;
  m.envelope.time_to_reach_queue = time_to_reach_queue;
  if (time_to_reach_queue != mqsec::security::kNoTimeLimit) {
    m.envelope.admin_queue = u"DIRECT=OS:.\\private$\\admin";
    m.envelope.acknowledge = MQMSG_ACKNOWLEDGMENT_NACK_REACH_QUEUE;
  }
  m.envelope.body.assign(body.begin(), body.end());
  m.envelope.label = u"remote-send";
  q.send(m, false);
}

class RemoteSend : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = make_root();
    broker_ = mqsec::test::BrokerNode::start();
  }
  static void TearDownTestSuite() {
    mqsec::core::runtime().stop_background_forwarders(3s);
    broker_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  static fs::path root_;
  static std::unique_ptr<mqsec::test::BrokerNode> broker_;
};
fs::path RemoteSend::root_;
std::unique_ptr<mqsec::test::BrokerNode> RemoteSend::broker_;

TEST_F(RemoteSend, SendsWaitInTheOutgoingQueueThenForwardInOrder) {
  const fs::path store = root_ / "a-store";
  const fs::path config = root_ / "a.toml";
  write_config(config, store,
               "[broker]\nurl = \"" + broker_->url() + "\"\nuser = \"" + broker_->user() +
                   "\"\npassword-source = \"file:" + broker_->password_file().string() +
                   "\"\nconnect-timeout-ms = 2000\n");
  ASSERT_EQ(setenv("MQSEC_CONFIG", config.c_str(), 1), 0);
  broker_->stop();  // the broker is down: sends must still succeed

  auto d = mqsec::core::destination_of_format("DIRECT=OS:HostB\\private$\\Inbox");
  ASSERT_TRUE(d.remote());
  auto q = mqsec::core::Queue::open(d, {.send = true}, false);
  constexpr int kCount = 20;
  for (int i = 0; i < kCount; ++i) send(*q, "message " + std::to_string(i));
  // The background forwarder (started by the first send) cannot reach the broker; stop it so
  // that this test runs forward_outgoing itself.
  mqsec::core::runtime().stop_background_forwarders(3s);
  EXPECT_EQ(backlog(store), size_t{kCount});
  auto listed = mqsec::core::list_outgoing_queues(mqsec::core::runtime().stores().store_at(store));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].format_name, "DIRECT=OS:hostb\\private$\\inbox");
  EXPECT_FALSE(mqsec::core::forwarder_running(store));

  // A forwarder while the broker is down forwards nothing and removes nothing.
  auto cfg = mqsec::core::runtime().config();
  {
    std::jthread down([&](std::stop_token st) { mqsec::core::forward_outgoing(cfg, st); });
    std::this_thread::sleep_for(1500ms);
    EXPECT_TRUE(mqsec::core::forwarder_running(store));
  }
  EXPECT_EQ(backlog(store), size_t{kCount});

  broker_->start_again();
  const std::string inbound = mqsec::transport::amqp::inbound_queue_name("hostb");
  forward_until_empty(cfg, store);
  EXPECT_EQ(backlog(store), 0u);
  EXPECT_EQ(broker_->queue_depth(inbound), uint64_t{kCount});

  // In order, addressed to hostb's inbox, from hosta, each body a whole envelope.
  mqsec::transport::amqp::Connection c(mqsec::core::broker_settings(cfg));
  c.open_receiver(mqsec::transport::amqp::inbound_address("hostb"), kCount);
  for (int i = 0; i < kCount; ++i) {
    auto m = c.receive(10s);
    ASSERT_TRUE(m) << i;
    ASSERT_TRUE(m->binary_body);
    const mqsec::security::Envelope e = mqsec::security::decode(m->body);
    EXPECT_EQ(std::string(e.body.begin(), e.body.end()), "message " + std::to_string(i));
    ASSERT_TRUE(m->property("mqsec-queue"));
    EXPECT_EQ(*m->property("mqsec-queue"), "inbox");
    ASSERT_TRUE(m->property("mqsec-source"));
    EXPECT_EQ(*m->property("mqsec-source"), "hosta");
    ASSERT_TRUE(m->property("mqsec-destination"));
    EXPECT_EQ(*m->property("mqsec-destination"), "hostb");
    EXPECT_TRUE(c.accept(m->id));
  }
  c.close();
}

TEST_F(RemoteSend, AMessageWhoseTimeToReachQueueRunsOutIsNackedNotForwarded) {
  const fs::path store = root_ / "ttl-store";
  const fs::path config = root_ / "ttl.toml";
  write_config(config, store,
               "[broker]\nurl = \"" + broker_->url() + "\"\nuser = \"" + broker_->user() +
                   "\"\npassword-source = \"file:" + broker_->password_file().string() +
                   "\"\nconnect-timeout-ms = 2000\n");
  ASSERT_EQ(setenv("MQSEC_CONFIG", config.c_str(), 1), 0);
  mqsec::transport::QueueInfo admin;
  admin.name = "admin";
  mqsec::core::create_queue(store, admin);
  broker_->stop();

  auto d = mqsec::core::destination_of_format("DIRECT=OS:hostb\\private$\\ttl");
  auto q = mqsec::core::Queue::open(d, {.send = true}, false);
  send(*q, "no limit");
  send(*q, "one second", 1);
  send(*q, "one hour", 3600);
  mqsec::core::runtime().stop_background_forwarders(3s);
  // Expired: now > sent time + 1 s (whole seconds), whether or not the broker is up.
  std::this_thread::sleep_for(2100ms);

  broker_->start_again();
  auto cfg = mqsec::core::runtime().config();
  const std::string inbound = mqsec::transport::amqp::inbound_queue_name("hostb");
  forward_until_empty(cfg, store);
  EXPECT_EQ(backlog(store), 0u);

  // The other two were forwarded, in order; the expired one was not.
  mqsec::transport::amqp::Connection c(mqsec::core::broker_settings(cfg));
  c.open_receiver(mqsec::transport::amqp::inbound_address("hostb"), 10);
  std::vector<std::string> forwarded;
  while (auto m = c.receive(3s)) {
    const mqsec::security::Envelope e = mqsec::security::decode(m->body);
    if (m->property("mqsec-queue") && *m->property("mqsec-queue") == "ttl") {
      forwarded.emplace_back(e.body.begin(), e.body.end());
      if (forwarded.back() == "one hour") {
        EXPECT_EQ(e.time_to_reach_queue, 3600u);  // carried to the destination as sent
      }
    }
    EXPECT_TRUE(c.accept(m->id));
  }
  c.close();
  EXPECT_EQ(forwarded, (std::vector<std::string>{"no limit", "one hour"}));

  // Recorded for the outgoing queue as expired ...
  auto r = mqsec::core::rejections(store, "direct=os:hostb\\private$\\ttl");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, "expired");
  EXPECT_EQ(mqsec::security::decode(r[0].envelope).time_to_reach_queue, 1u);
  // ... and NACKed to the local admin queue.
  mqsec::core::Destination ad;
  ad.queue = "admin";
  auto admin_q = mqsec::core::Queue::open(ad, {.receive = true}, false);
  std::vector<mqsec::security::Envelope> nacks;
  for (;;) {
    try {
      admin_q->receive(mqsec::core::Action::Receive, 0ms, nullptr,
                       [&](const mqsec::core::Delivered& del) {
                         nacks.push_back(*del.envelope);
                         return MQ_OK;
                       });
    } catch (const mqsec::Error& e) {
      if (e.code() == MQ_ERROR_IO_TIMEOUT) break;
      throw;
    }
  }
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].msg_class, MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT);
  EXPECT_EQ(std::string(nacks[0].body.begin(), nacks[0].body.end()), "one second");
}

// One forwarder per store (the flock on forwarder.lock): a second forward_outgoing on the same
// store waits while the first holds the store, and takes over when it stops.
TEST_F(RemoteSend, ASecondForwarderWaitsAndTakesOverWhenTheFirstStops) {
  const fs::path store = root_ / "takeover-store";
  const fs::path config = root_ / "takeover.toml";
  write_config(config, store,
               "[broker]\nurl = \"" + broker_->url() + "\"\nuser = \"" + broker_->user() +
                   "\"\npassword-source = \"file:" + broker_->password_file().string() +
                   "\"\nconnect-timeout-ms = 2000\n");
  ASSERT_EQ(setenv("MQSEC_CONFIG", config.c_str(), 1), 0);
  broker_->stop();
  auto q = mqsec::core::Queue::open(
      mqsec::core::destination_of_format("DIRECT=OS:hostc\\private$\\inbox"), {.send = true},
      false);
  constexpr int kCount = 5;
  for (int i = 0; i < kCount; ++i) send(*q, "takeover " + std::to_string(i));
  mqsec::core::runtime().stop_background_forwarders(3s);
  ASSERT_FALSE(mqsec::core::forwarder_running(store));

  auto cfg = mqsec::core::runtime().config();
  auto first = std::make_unique<std::jthread>(
      [&](std::stop_token st) { mqsec::core::forward_outgoing(cfg, st); });
  const auto t0 = std::chrono::steady_clock::now();
  while (!mqsec::core::forwarder_running(store) && std::chrono::steady_clock::now() - t0 < 10s) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(mqsec::core::forwarder_running(store));
  std::jthread second([&](std::stop_token st) { mqsec::core::forward_outgoing(cfg, st); });
  std::this_thread::sleep_for(1s);
  first.reset();  // stop and join the holder: the second takes the store over
  broker_->start_again();
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (backlog(store) != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(backlog(store), 0u) << "the waiting forwarder did not take over";
  EXPECT_TRUE(mqsec::core::forwarder_running(store));
  second.request_stop();
  second.join();
  EXPECT_FALSE(mqsec::core::forwarder_running(store));
  EXPECT_EQ(broker_->queue_depth(mqsec::transport::amqp::inbound_queue_name("hostc")),
            uint64_t{kCount});
}

TEST_F(RemoteSend, WithoutBrokerARemoteSendFailsClearly) {
  const fs::path store = root_ / "nobroker-store";
  const fs::path config = root_ / "nobroker.toml";
  write_config(config, store, "");
  ASSERT_EQ(setenv("MQSEC_CONFIG", config.c_str(), 1), 0);
  auto d = mqsec::core::destination_of_format("DIRECT=OS:hostb\\private$\\inbox");
  try {
    mqsec::core::Queue::open(d, {.send = true}, false);
    FAIL() << "opened a remote queue without [broker]";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_SERVICE_NOT_AVAILABLE);
    EXPECT_NE(std::string(e.what()).find("no [broker] is configured"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(backlog(store), 0u);
}

}  // namespace
