// The batch-signing pipeline (issue 12, item 3; src/core/batch_signing.hpp) on a SoftHSM token
// reached through the fault-injection module (tests/fault), which can slow every C_Sign down
// (a slow card) and pull the token out:
//
// - one sending thread, deferred signing, a card slowed to 50 ms per signature: Queue::send
//   returns long before the messages are signed, few C_Sign calls cover them all, every message
//   arrives in order and verifies alone on receive (batch proofs, one certificate);
// - nothing is visible to a receiver before it is signed; MQCloseQueue (Queue::flush) waits for
//   the queue's messages;
// - token removed while messages are queued and while a batch is being signed: no message is
//   delivered unsigned or with a bad signature; each one not signed is recorded as rejected
//   (kind "signing-failed") and NACKed to its admin queue; sent = delivered + rejected;
// - batch-wait (and sends in a transaction): concurrent senders share signatures and each
//   caller gets a signing failure as its own error;
// - fork: a child sends through its own signer (never the parent's thread), and does not
//   sign or store messages its parent had queued;
// - a child process killed (SIGKILL) with messages queued leaves no unsigned message behind;
//   a child that exits normally stores every message it queued (the exit flush);
// - a queue of another machine: the signed messages reach the outgoing queue only once signed,
//   and arrive through the other machine's arrival path in order, each verifying alone;
// - a user profile's [signing] turns batching on for that user's contexts, and the system's
//   [signing] batch-limit caps it (1: every message signed alone, even with set_batching).
#include <gtest/gtest.h>
#include <mq.h>
#include <dlfcn.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/admin.hpp"
#include "src/core/arrival.hpp"
#include "src/core/destination.hpp"
#include "src/core/outgoing.hpp"
#include "src/core/queue.hpp"
#include "src/core/runtime.hpp"
#include "src/core/text.hpp"
#include "src/core/verification.hpp"
#include "src/security/config.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/security/personal_store.hpp"
#include "tests/fault/fault_control.h"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/verified_receive.hpp"
#include "tests/support/softhsm_test_environment.hpp"

#ifndef MQSEC_CLI
#error "MQSEC_CLI must name the mqsec command"
#endif
#ifndef MQSEC_FAULT_MODULE
#error "MQSEC_FAULT_MODULE must name the fault-injection module"
#endif

namespace mqsec::core {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using mqsec::testing::receive_all;
using mqsec::testing::SoftHsmEnv;
using security::Envelope;

struct Control {
  mqsec_fault_reset_fn reset = nullptr;
  mqsec_fault_remove_token_fn remove_token = nullptr;
  mqsec_fault_insert_token_fn insert_token = nullptr;
  mqsec_fault_call_count_fn call_count = nullptr;
  mqsec_fault_set_sign_delay_fn set_sign_delay = nullptr;
};

Control g_ctl;
security::Bytes g_cert;  // a P-256 key on the token, with its certificate

class PipelineEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    SoftHsmEnv& env = SoftHsmEnv::instance();
    {
      std::ofstream conf(env.softhsm_conf(), std::ios::app);
      conf << "library.reset_on_fork = true\n";  // a forked child starts afresh (as real cards)
    }
    mqsec::testing::ConfigOptions o;
    o.module_path = MQSEC_FAULT_MODULE;
    env.write_config(o);
    const std::string id = SoftHsmEnv::new_id();
    env.keypairgen(SoftHsmEnv::kPrimaryToken, "EC:prime256v1", id, "pipe-p256");
    g_cert = env.certificate_for_token_key(SoftHsmEnv::kPrimaryToken, id, "mqsec-pipe-p256");
    auto ctx = security::acquire_context(g_cert);  // loads the module
    void* dl = ::dlopen(MQSEC_FAULT_MODULE, RTLD_NOW | RTLD_NOLOAD);
    ASSERT_NE(dl, nullptr);
    g_ctl.reset = reinterpret_cast<mqsec_fault_reset_fn>(::dlsym(dl, "mqsec_fault_reset"));
    g_ctl.remove_token =
        reinterpret_cast<mqsec_fault_remove_token_fn>(::dlsym(dl, "mqsec_fault_remove_token"));
    g_ctl.insert_token =
        reinterpret_cast<mqsec_fault_insert_token_fn>(::dlsym(dl, "mqsec_fault_insert_token"));
    g_ctl.call_count =
        reinterpret_cast<mqsec_fault_call_count_fn>(::dlsym(dl, "mqsec_fault_call_count"));
    g_ctl.set_sign_delay =
        reinterpret_cast<mqsec_fault_set_sign_delay_fn>(::dlsym(dl, "mqsec_fault_set_sign_delay"));
    ASSERT_TRUE(g_ctl.reset && g_ctl.remove_token && g_ctl.insert_token && g_ctl.call_count &&
                g_ctl.set_sign_delay);
  }
};

[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);
[[maybe_unused]] ::testing::Environment* const g_pipe_env =
    ::testing::AddGlobalTestEnvironment(new PipelineEnvironment);

class BatchPipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    g_ctl.reset();
    g_ctl.set_sign_delay(0);
    cfg_ = security::load_system_config();
  }
  void TearDown() override {
    g_ctl.set_sign_delay(0);
    g_ctl.insert_token(0);
    g_ctl.reset();
  }

  static std::string new_queue(const std::string& tag) {
    static int n = 0;
    transport::QueueInfo info;
    info.name = "pipe-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(++n);
    info.authenticate = true;
    create_queue(security::load_system_config().store_path, info);
    return info.name;
  }

  static security::SigningConfig batching(uint32_t max, int64_t delay_ms, bool wait = false) {
    security::SigningConfig s;
    s.batch_max_messages = max;
    s.batch_max_delay_ms = delay_ms;
    s.batch_wait = wait;
    return s;
  }

  static std::shared_ptr<Queue> open_sender(const std::string& queue,
                                            const security::SigningConfig& s) {
    auto q = Queue::open(Destination{queue, {}, {}}, Access{true, false, false}, false);
    q->set_batching(s);
    return q;
  }

  static Outgoing message(const std::shared_ptr<security::SecurityContext>& ctx, int i,
                          const std::string& admin = {}) {
    Outgoing m;
    const std::string body = "msg " + std::to_string(i);
    m.envelope.body.assign(body.begin(), body.end());
    m.envelope.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
    m.envelope.delivery = MQMSG_DELIVERY_EXPRESS;
    if (!admin.empty()) {
      m.envelope.admin_queue = utf8_to_utf16(admin);
      m.envelope.acknowledge = MQMSG_ACKNOWLEDGMENT_NACK_REACH_QUEUE;
    }
    m.signer = ctx;
    return m;
  }

  static std::string body(const Envelope& e) { return std::string(e.body.begin(), e.body.end()); }

  security::SystemConfig cfg_;
};

// One sending thread, a card at 50 ms per signature: send returns at once, few signatures.
TEST_F(BatchPipeline, OneThreadManyMessagesFewSignatures) {
  auto ctx = security::acquire_context(g_cert);
  const std::string queue = new_queue("one");
  auto q = open_sender(queue, batching(1000, 20));
  g_ctl.set_sign_delay(50);
  const int signs_before = g_ctl.call_count("C_Sign");
  constexpr int kMessages = 400;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kMessages; ++i) {
    Outgoing m = message(ctx, i);
    q->send(m, false);
    EXPECT_TRUE(m.envelope.signature.empty());  // queued, not signed in the caller
  }
  const auto sent = std::chrono::steady_clock::now() - t0;
  // 400 single signatures would take 20 s at 50 ms each.
  EXPECT_LT(sent, 5s);
  q->flush();  // MQCloseQueue: waits for the queue's messages
  const int signatures = g_ctl.call_count("C_Sign") - signs_before;
  EXPECT_GE(signatures, 1);
  EXPECT_LE(signatures, 40) << "one device signature per batch";
  auto got = receive_all(queue);
  ASSERT_EQ(got.size(), static_cast<size_t>(kMessages));
  std::set<security::Bytes> sigs;
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(body(got[i]), "msg " + std::to_string(i)) << "order per sender and queue";
    sigs.insert(got[i].signature);
  }
  EXPECT_LE(sigs.size(), static_cast<size_t>(signatures));
  EXPECT_TRUE(got.front().batch.present());
}

// Not visible before it is signed: with a long window (60 s, longer than any stall; flush() ends
// it), a receiver sees nothing yet.
TEST_F(BatchPipeline, InvisibleUntilSigned) {
  auto ctx = security::acquire_context(g_cert);
  const std::string queue = new_queue("invisible");
  auto q = open_sender(queue, batching(1000, 60000));
  for (int i = 0; i < 5; ++i) {
    Outgoing m = message(ctx, i);
    q->send(m, false);
  }
  EXPECT_TRUE(receive_all(queue).empty());
  q->flush();
  EXPECT_EQ(receive_all(queue).size(), 5u);
}

// The hand-over of a signed batch (one call per run of one queue and delivery mode, the local
// store writing each run in one transaction): one batch spanning two queues, express and
// recoverable messages interleaved, lands whole, each queue in its sender's order; a
// recoverable message whose queue was deleted before its batch was signed becomes a
// "store-failed" rejection record, the others of its batch are stored.
TEST_F(BatchPipeline, OneBatchOverTwoQueuesAndBothDeliveriesKeepsOrderAndReportsStoreFailures) {
  auto ctx = security::acquire_context(g_cert);
  const std::string qa = new_queue("handa"), qb = new_queue("handb"), qc = new_queue("handc");
  auto a = open_sender(qa, batching(1000, 60000));
  auto b = open_sender(qb, batching(1000, 60000));
  auto c = open_sender(qc, batching(1000, 60000));
  const int signs_before = g_ctl.call_count("C_Sign");
  for (int i = 0; i < 60; ++i) {
    Outgoing m = message(ctx, i);
    if (i % 3 == 1) m.envelope.delivery = MQMSG_DELIVERY_RECOVERABLE;
    (i % 4 < 2 ? a : b)->send(m, false);
  }
  Outgoing lost = message(ctx, 1000);
  lost.envelope.delivery = MQMSG_DELIVERY_RECOVERABLE;
  c->send(lost, false);
  delete_queue(cfg_.store_path, Destination{qc, {}, {}});  // before the window ends
  a->flush();
  EXPECT_EQ(g_ctl.call_count("C_Sign") - signs_before, 1) << "one batch";
  auto got_a = receive_all(qa), got_b = receive_all(qb);
  std::vector<std::string> want_a, want_b;
  for (int i = 0; i < 60; ++i) (i % 4 < 2 ? want_a : want_b).push_back("msg " + std::to_string(i));
  ASSERT_EQ(got_a.size(), want_a.size());
  ASSERT_EQ(got_b.size(), want_b.size());
  for (size_t i = 0; i < got_a.size(); ++i) EXPECT_EQ(body(got_a[i]), want_a[i]);
  for (size_t i = 0; i < got_b.size(); ++i) EXPECT_EQ(body(got_b[i]), want_b[i]);
  EXPECT_TRUE(got_a.front().batch.present());
  const auto rejected = rejections(cfg_.store_path, qc);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].kind, "store-failed") << rejected[0].reason;
}

// Token pulled while messages are queued and while one batch is in C_Sign.
TEST_F(BatchPipeline, TokenRemovedMidBatchDeliversNothingUnsignedAndNacksTheRest) {
  auto ctx = security::acquire_context(g_cert);
  const std::string queue = new_queue("removed");
  const std::string admin = new_queue("removed-admin");
  const std::string admin_format = format_name_of(Destination{admin, {}, {}});
  auto q = open_sender(queue, batching(20, 30));
  g_ctl.set_sign_delay(150);
  constexpr int kMessages = 100;
  const int signs_before = g_ctl.call_count("C_Sign");
  std::thread puller([signs_before] {
    // Pulled once the first batch is inside C_Sign (counted on entry, before the 150 ms), so
    // that later batches are still queued however slowly this machine runs.
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (g_ctl.call_count("C_Sign") == signs_before &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(1ms);
    }
    g_ctl.remove_token();
  });
  for (int i = 0; i < kMessages; ++i) {
    Outgoing m = message(ctx, i, admin_format);
    q->send(m, false);
  }
  puller.join();
  q->flush();
  g_ctl.set_sign_delay(0);
  const auto got = receive_all(queue);  // each verified by receive_all
  const auto rejected = rejections(cfg_.store_path, queue);
  size_t failed = 0;
  for (const auto& r : rejected) {
    EXPECT_EQ(r.kind, "signing-failed") << r.reason;
    failed += r.kind == "signing-failed";
  }
  EXPECT_EQ(got.size() + failed, static_cast<size_t>(kMessages)) << "never a silent loss";
  EXPECT_GT(failed, 0u);
  // Each failed message's NACK in the admin queue (NACKs are unsigned: read them raw).
  auto resolved = runtime().resolve(Destination{admin, {}, {}}, cfg_.store_path);
  ASSERT_TRUE(resolved);
  resolved->transport->flush();
  EXPECT_EQ(resolved->transport->count(), failed);
  if (auto first = resolved->transport->first()) {
    Envelope nack = security::decode(first->envelope);
    EXPECT_EQ(nack.msg_class, MQMSG_CLASS_NACK_BAD_SIGNATURE);
  }
  // The token comes back: the same context signs again.
  g_ctl.insert_token(0);
  Outgoing m = message(ctx, 999);
  q->send(m, false);
  q->flush();
  const auto again = receive_all(queue);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(body(again[0]), "msg 999");
}

// batch-wait: four threads share signatures; each caller returns with its message stored.
TEST_F(BatchPipeline, WaitModeGroupsConcurrentSenders) {
  auto ctx = security::acquire_context(g_cert);
  const std::string queue = new_queue("wait");
  auto q = open_sender(queue, batching(64, 20, /*wait=*/true));
  g_ctl.set_sign_delay(30);
  const int signs_before = g_ctl.call_count("C_Sign");
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        Outgoing m = message(ctx, t * 1000 + i);
        q->send(m, false);
        ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  const int signatures = g_ctl.call_count("C_Sign") - signs_before;
  EXPECT_LT(signatures, kThreads * kEach / 2) << "concurrent sends share signatures";
  q->flush();
  EXPECT_EQ(receive_all(queue).size(), static_cast<size_t>(kThreads * kEach));
  // A removed token: the caller gets the error itself (nothing recorded, nothing stored).
  g_ctl.remove_token();
  Outgoing m = message(ctx, 5);
  try {
    q->send(m, false);
    ADD_FAILURE() << "signed without a token";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_CANNOT_SIGN_DATA_EX) << e.what();
  }
  EXPECT_TRUE(receive_all(queue).empty());
  EXPECT_TRUE(rejections(cfg_.store_path, queue).empty());
}

// Waits for a child with a deadline; returns its exit status or -1.
int wait_child(pid_t pid, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    std::this_thread::sleep_for(20ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

// fork: the child has no signer thread of its parent's; its own batched sends work, and the
// messages its parent had queued are signed and stored once, by the parent.
TEST_F(BatchPipeline, ForkedChildSignsWithItsOwnSigner) {
  auto ctx = security::acquire_context(g_cert);
  const std::string queue = new_queue("fork");
  auto q = open_sender(queue, batching(1000, 300));
  for (int i = 0; i < 10; ++i) {
    Outgoing m = message(ctx, i);
    q->send(m, false);  // queued in the parent, window 300 ms
  }
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(60);
    int rc = 0;
    try {
      for (int i = 100; i < 110; ++i) {
        Outgoing m = message(ctx, i);
        q->send(m, false);
      }
      q->flush();
    } catch (...) {
      rc = 3;
    }
    std::_Exit(rc);  // no exit handlers: nothing else of the parent's runs here
  }
  q->flush();
  const int status = wait_child(pid, 60s);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto got = receive_all(queue);
  std::multiset<std::string> bodies;
  for (const auto& e : got) bodies.insert(body(e));
  EXPECT_EQ(got.size(), 20u);
  for (int i : {0, 9, 100, 109}) EXPECT_EQ(bodies.count("msg " + std::to_string(i)), 1u) << i;
}

// A child that exits normally stores what it queued (the exit flush); a child killed with
// messages queued leaves nothing unsigned: whatever is in the queue verifies.
TEST_F(BatchPipeline, ExitFlushesAndSigkillLeavesNothingUnsigned) {
  auto ctx = security::acquire_context(g_cert);
  for (const bool kill_it : {false, true}) {
    SCOPED_TRACE(kill_it ? "SIGKILL" : "exit");
    const std::string queue = new_queue(kill_it ? "kill" : "exit");
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::alarm(60);
      ::close(ready[0]);
      try {
        auto cq = open_sender(queue, batching(1000, 5000));
        for (int i = 0; i < 50; ++i) {
          Outgoing m = message(ctx, i);
          m.envelope.delivery = MQMSG_DELIVERY_RECOVERABLE;
          cq->send(m, false);
        }
      } catch (...) {
        std::_Exit(3);
      }
      (void)!::write(ready[1], "x", 1);
      if (kill_it) ::pause();
      ::setenv("MQSEC_IT_KEEP", "1", 1);  // the parent's test directory is not the child's
      std::exit(0);  // the exit handlers flush the signers (5 s window not waited for)
    }
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
    if (kill_it) ::kill(pid, SIGKILL);
    const int status = wait_child(pid, 30s);
    ASSERT_NE(status, -1);
    const auto got = receive_all(queue);  // every one verified
    EXPECT_EQ(got.size(), kill_it ? 0u : 50u);
  }
}

// A queue of another machine (docs/remote.md): batched sends wait in this process until signed,
// then go to the destination's outgoing queue, never before; taken from there as the forwarder
// takes them (StoreOutgoingSource, no broker) and handed to the other machine's arrival path
// (core::Arrivals, `mqsec agent` there), they arrive in order and each verifies alone: with one
// of the batch lost on the way, the others still arrive and verify.
TEST_F(BatchPipeline, RemoteQueueBatchArrivesInOrderEachVerifyingAlone) {
  SoftHsmEnv& env = SoftHsmEnv::instance();
  const fs::path conf = env.config_path();
  const std::string original = mqsec::testing::read_text(conf);
  struct Restore {
    fs::path path;
    std::string text;
    ~Restore() { mqsec::testing::write_file(path, text); }
  } restore{conf, original};
  const std::string broker = "[broker]\nurl = \"amqp://127.0.0.1:9\"\n";  // never reached here
  // This machine: hosta, with a broker configured (a remote send needs one).
  mqsec::testing::write_file(conf, original + "[machine]\nname = \"hosta\"\n" + broker);
  const security::SystemConfig sender_cfg = security::load_system_config();
  // The other machine: hostb, its own store, the queue there.
  const fs::path store_b = env.dir() / ("store-hostb-" + std::to_string(::getpid()));
  fs::create_directories(store_b);
  fs::permissions(store_b, fs::perms::owner_all, fs::perm_options::replace);
  const std::string queue = "pipe-remote-" + std::to_string(::getpid());
  {
    transport::QueueInfo info;
    info.name = queue;
    info.authenticate = true;
    create_queue(store_b, info);
  }
  security::SystemConfig receiver_cfg = sender_cfg;
  receiver_cfg.store_path = store_b;
  receiver_cfg.machine.name = "hostb";

  auto ctx = security::acquire_context(g_cert);
  const Destination there{queue, Destination::Transport::Remote, "hostb"};
  auto q = Queue::open(there, Access{true, false, false}, false);
  q->set_batching(batching(1000, 60000));
  auto backlog = [&] {
    size_t n = 0;
    for (const auto& o : list_outgoing_queues(runtime().stores().store_at(sender_cfg.store_path))) {
      if (o.destination == there) n += o.backlog;
    }
    return n;
  };
  const int signs_before = g_ctl.call_count("C_Sign");
  constexpr int kMessages = 30;
  for (int i = 0; i < kMessages; ++i) {
    Outgoing m = message(ctx, i);
    if (i % 3 == 0) m.envelope.delivery = MQMSG_DELIVERY_RECOVERABLE;
    q->send(m, false);
  }
  EXPECT_EQ(backlog(), 0u) << "nothing in the outgoing queue before it is signed";
  q->flush();
  EXPECT_EQ(g_ctl.call_count("C_Sign") - signs_before, 1) << "one batch";
  ASSERT_EQ(backlog(), static_cast<size_t>(kMessages));

  // What the forwarder would publish, in its order; message 7 is lost on the way.
  StoreOutgoingSource source(runtime().stores(), sender_cfg.store_path,
                             rejection_bounds_of(sender_cfg.limits), "hosta");
  const auto items = source.peek(1000);
  ASSERT_EQ(items.size(), static_cast<size_t>(kMessages));
  Arrivals arrivals(receiver_cfg);
  std::vector<int64_t> seqs;
  for (size_t i = 0; i < items.size(); ++i) {
    seqs.push_back(items[i].seq);
    EXPECT_EQ(items[i].destination_machine, "hostb");
    if (i == 7) continue;
    transport::amqp::InboundMessage in;
    in.queue = items[i].queue;
    in.message_id_hex = items[i].message_id_hex;
    in.source_machine = "hosta";
    in.body = items[i].body;
    EXPECT_EQ(arrivals.deliver(in), transport::amqp::Disposition::accept) << i;
  }
  source.remove(seqs);
  EXPECT_EQ(backlog(), 0u);
  EXPECT_EQ(arrivals.counts().stored, static_cast<size_t>(kMessages - 1));
  EXPECT_TRUE(rejections(store_b, queue).empty());

  // Received on hostb (its configuration now), each verified on its own, in order.
  mqsec::testing::ConfigOptions o;
  o.module_path = MQSEC_FAULT_MODULE;
  o.store_path = store_b;
  env.write_config(o);
  mqsec::testing::write_file(
      conf, mqsec::testing::read_text(conf) + "[machine]\nname = \"hostb\"\n" + broker);
  const auto got = receive_all(queue);
  ASSERT_EQ(got.size(), static_cast<size_t>(kMessages - 1));
  std::set<security::Bytes> sigs;
  for (int i = 0, k = 0; i < kMessages; ++i) {
    if (i == 7) continue;
    EXPECT_EQ(body(got[k]), "msg " + std::to_string(i)) << "order per sender and queue";
    EXPECT_TRUE(got[k].batch.present());
    sigs.insert(got[k].signature);
    ++k;
  }
  EXPECT_EQ(sigs.size(), 1u) << "one batch signature";
}

// A user profile's [signing] turns batch signing on for the contexts that user acquires (the
// system configuration leaves it off); the administrator's [signing] batch-limit caps it,
// set_batching (`mqsec send --batch`) included, and batch-limit = 1 forbids it.
TEST_F(BatchPipeline, ProfileTurnsBatchingOnAndTheSystemLimitCapsIt) {
  SoftHsmEnv& env = SoftHsmEnv::instance();
  const fs::path conf = env.config_path();
  const std::string original = mqsec::testing::read_text(conf);
  const fs::path profile = security::resolve_user().profile.file;
  ASSERT_FALSE(fs::exists(profile)) << profile;
  struct Restore {
    fs::path conf, profile;
    std::string text;
    ~Restore() {
      mqsec::testing::write_file(conf, text);
      std::error_code ec;
      fs::remove(profile, ec);
    }
  } restore{conf, profile, original};
  fs::create_directories(profile.parent_path());
  fs::permissions(profile.parent_path(), fs::perms::owner_all, fs::perm_options::replace);
  mqsec::testing::write_file(
      profile, "[signing]\nbatch-max-messages = 1000\nbatch-max-delay-ms = 5000\n", 0600);
  ASSERT_FALSE(security::load_system_config().signing.batching());
  // A malformed [signing] makes the profile malformed: a context of an external certificate
  // is still made, without the profile's settings.
  mqsec::testing::write_file(profile, "[signing]\nbatch-max-messages = 0\n", 0600);
  EXPECT_TRUE(security::acquire_context(g_cert)->signing().empty());
  mqsec::testing::write_file(
      profile, "[signing]\nbatch-max-messages = 1000\nbatch-max-delay-ms = 5000\n", 0600);
  auto ctx = security::acquire_context(g_cert);  // reads the profile
  ASSERT_FALSE(ctx->signing().empty());
  auto plain_sender = [](const std::string& queue) {
    return Queue::open(Destination{queue, {}, {}}, Access{true, false, false}, false);
  };
  auto send = [&](Queue& q, int n) {
    for (int i = 0; i < n; ++i) {
      Outgoing m = message(ctx, i);
      q.send(m, false);
    }
  };

  // The profile's settings: deferred, one signature for the lot (only the flush ends the 5 s
  // window).
  const std::string queue = new_queue("profile");
  auto q = plain_sender(queue);
  int signs = g_ctl.call_count("C_Sign");
  send(*q, 20);
  EXPECT_EQ(g_ctl.call_count("C_Sign"), signs) << "queued, not signed yet";
  q->flush();
  EXPECT_EQ(g_ctl.call_count("C_Sign") - signs, 1);
  EXPECT_EQ(receive_all(queue).size(), 20u);

  // batch-limit = 4: at most 4 messages a signature.
  mqsec::testing::write_file(conf, original + "[signing]\nbatch-limit = 4\n");
  auto capped = plain_sender(queue);
  signs = g_ctl.call_count("C_Sign");
  send(*capped, 10);
  capped->flush();
  EXPECT_EQ(g_ctl.call_count("C_Sign") - signs, 3) << "4 + 4 + 2";
  EXPECT_EQ(receive_all(queue).size(), 10u);

  // The cap holds when a capped queue and an uncapped one (q, opened before the limit) send
  // with the same context at the same time: no batch holding a capped message exceeds 4.
  const std::string capped_queue = new_queue("capped");
  auto capped2 = plain_sender(capped_queue);
  for (int i = 0; i < 20; ++i) {
    Outgoing b = message(ctx, i);
    capped2->send(b, false);
    Outgoing a = message(ctx, i);
    q->send(a, false);  // last: a shared signer would now cut at q's 1000
  }
  q->flush();
  capped2->flush();
  EXPECT_EQ(receive_all(queue).size(), 20u);
  const auto capped_got = receive_all(capped_queue);
  ASSERT_EQ(capped_got.size(), 20u);
  for (const auto& e : capped_got) EXPECT_LE(e.batch.tree_size, 4u);

  // batch-limit = 1: every message signed alone, in the caller, with the profile's settings
  // and with set_batching's.
  mqsec::testing::write_file(conf, original + "[signing]\nbatch-limit = 1\n");
  auto forbidden = plain_sender(queue);
  auto forced = open_sender(queue, batching(1000, 5000));
  for (Queue* each : {forbidden.get(), forced.get()}) {
    signs = g_ctl.call_count("C_Sign");
    for (int i = 0; i < 5; ++i) {
      Outgoing m = message(ctx, i);
      each->send(m, false);
      EXPECT_FALSE(m.envelope.signature.empty()) << "signed before send returned";
      EXPECT_FALSE(m.envelope.batch.present());
    }
    EXPECT_EQ(g_ctl.call_count("C_Sign") - signs, 5);
  }
  const auto alone = receive_all(queue);
  ASSERT_EQ(alone.size(), 10u);
  for (const auto& e : alone) EXPECT_FALSE(e.batch.present());
  // `mqsec send --batch` says batching is off here, and signs each message alone.
  const fs::path cert = SoftHsmEnv::instance().dir() / "pipe-p256-limit.der";
  mqsec::testing::write_file(cert, std::string(g_cert.begin(), g_cert.end()), 0644);
  auto r = mqsec::testing::run_command(std::string(MQSEC_CLI) + " send " + queue +
                                       " --body hello --auth --batch --count 3 --cert " +
                                       mqsec::testing::shell_quote(cert.string()) + " 2>&1");
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_NE(r.output.find("batch-limit = 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sent 3 messages"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("batch signature"), std::string::npos) << r.output;
  const auto from_cli = receive_all(queue);
  ASSERT_EQ(from_cli.size(), 3u);
  for (const auto& e : from_cli) EXPECT_FALSE(e.batch.present());
}

// `mqsec send --batch`: one process, many messages, few signatures, all verify on receive.
TEST_F(BatchPipeline, CliSendBatch) {
  const std::string queue = new_queue("cli");
  const fs::path cert = SoftHsmEnv::instance().dir() / "pipe-p256.der";
  mqsec::testing::write_file(cert, std::string(g_cert.begin(), g_cert.end()), 0644);
  auto r = mqsec::testing::run_command(std::string(MQSEC_CLI) + " send " + queue +
                                       " --body hello --auth --batch --count 200 --cert " +
                                       mqsec::testing::shell_quote(cert.string()) + " 2>&1");
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_NE(r.output.find("sent 200 messages"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("batch signature"), std::string::npos) << r.output;
  const auto got = receive_all(queue);
  ASSERT_EQ(got.size(), 200u);
  std::set<security::Bytes> sigs;
  for (const auto& e : got) sigs.insert(e.signature);
  EXPECT_LT(sigs.size(), 50u);
}

}  // namespace
}  // namespace mqsec::core
