// Arrival of messages from other machines (issue 10, item 5 and 6): core::Arrivals, the Inbound
// callback of `mqsec agent`, on messages built as the broker hands them over (InboundMessage
// with a signed envelope as body), and the agent's process behaviour (signals, configuration
// errors, exit codes).
//
// The process's runtime reads MQSEC_CONFIG, set up front to a configuration of this test's own
// (a store in a temporary directory; trust: signatures). Envelopes are signed in software with a
// self-signed P-256 certificate, as a token would sign them (tests/support/sign_envelope.hpp).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <random>
#include <span>
#include <thread>
#include <string>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/admin.hpp"
#include "src/core/arrival.hpp"
#include "src/core/queue.hpp"
#include "src/core/runtime.hpp"
#include "src/security/config.hpp"
#include "src/security/envelope.hpp"
#include "src/security/identity.hpp"
#include "src/security/openssl.hpp"
#include "src/security/security_descriptor.hpp"
#include "tests/support/remote_process.hpp"
#include "tests/support/sign_envelope.hpp"
#include "tests/support/softhsm_env.hpp"

#ifndef MQSEC_CLI
#error "MQSEC_CLI must name the mqsec command"
#endif

namespace mqsec::core {
namespace {

namespace fs = std::filesystem;
namespace amqp = transport::amqp;
using namespace std::chrono_literals;
using security::Envelope;

struct Signer {
  security::PkeyPtr key;
  security::Bytes der;
};

Signer make_signer() {
  Signer s;
  s.key.reset(EVP_EC_gen("P-256"));
  security::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 11);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("arrival sender"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -86400);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30 * 86400);
  X509_set_pubkey(cert.get(), s.key.get());
  X509_sign(cert.get(), s.key.get(), EVP_sha256());
  s.der = security::to_der(cert.get());
  return s;
}

std::string hex(std::span<const uint8_t> b) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t c : b) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

class Arrival : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("mqsec-arrival-" + std::to_string(::getpid()));
    fs::create_directories(root_);
    fs::permissions(root_, fs::perms::owner_all);
    config_ = root_ / "mqsec.toml";
    mqsec::testing::write_file(
        config_,
        "[store]\npath = \"" + (root_ / "store").string() + "\"\n[machine]\nname = \"hostb\"\n",
        0600);
    ::setenv("MQSEC_CONFIG", config_.c_str(), 1);
    ::setenv("MQSEC_LOG", "stderr", 1);
    signer_ = new Signer(make_signer());
    cfg_ = new security::SystemConfig(security::load_system_config());
    for (const char* q : {"inbox", "admin", "other"}) {
      transport::QueueInfo info;
      info.name = q;
      info.authenticate = std::string(q) != "admin";
      create_queue(cfg_->store_path, info);
    }
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void SetUp() override {
    drain("inbox");
    drain("admin");
  }

  // A signed message for `queue` on hostb, as a sender on hosta makes it.
  static Envelope message(const std::string& body, const std::string& queue = "inbox") {
    Envelope e;
    static std::mt19937_64 rng(std::random_device{}());
    for (auto& b : e.msg_id) b = static_cast<uint8_t>(rng());
    e.body.assign(body.begin(), body.end());
    e.label = u"arrival";
    e.priority = 3;
    e.delivery = MQMSG_DELIVERY_RECOVERABLE;
    e.sent_time = static_cast<uint64_t>(std::time(nullptr));
    e.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
    e.hash_alg = CALG_SHA_256;
    e.sig_scheme = security::SigScheme::Ecdsa;
    e.sender_id_type = MQMSG_SENDERID_TYPE_SID;
    e.sender_id = security::Sid::unix_user(1000).bytes();
    e.sender_cert = signer_->der;
    std::u16string dest = u"DIRECT=OS:hostb\\private$\\";
    for (char c : queue) dest.push_back(static_cast<char16_t>(c));
    e.dest_queue = dest;
    e.source_machine = u"hosta";
    e.admin_queue = u"DIRECT=OS:.\\private$\\admin";
    e.acknowledge = MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE;
    return e;
  }
  static void sign(Envelope& e) { mqsec::testing::sign_envelope(e, signer_->key.get()); }
  static amqp::InboundMessage inbound(const Envelope& e,
                                      const std::string& queue = "private$\\inbox") {
    amqp::InboundMessage m;
    m.queue = queue;
    m.message_id_hex = hex(e.msg_id);
    m.source_machine = "hosta";
    m.body = security::encode(e);
    return m;
  }

  static std::shared_ptr<Queue> open(const std::string& name) {
    Destination d;
    d.queue = name;
    return Queue::open(d, Access{false, true, true}, false);
  }
  static size_t count(const std::string& name) {
    return runtime()
        .stores()
        .store_at(cfg_->store_path)
        .message_count(
            find_queue(cfg_->store_path, Destination{name, Destination::Transport::Local, {}})->id);
  }
  // Takes every message of `name` (verified on receive, as an application would).
  static std::vector<Envelope> drain(const std::string& name) {
    std::vector<Envelope> out;
    auto q = open(name);
    for (;;) {
      try {
        q->receive(Action::Receive, 0ms, nullptr, [&](const Delivered& d) {
          out.push_back(*d.envelope);
          return MQ_OK;
        });
      } catch (const Error& e) {
        if (e.code() == MQ_ERROR_IO_TIMEOUT) break;
        throw;
      }
    }
    return out;
  }
  static std::vector<transport::Rejection> rejected(const std::string& queue) {
    return rejections(cfg_->store_path, queue);
  }

  static inline fs::path root_, config_;
  static inline Signer* signer_ = nullptr;
  static inline security::SystemConfig* cfg_ = nullptr;
};

TEST_F(Arrival, ValidMessageIsStoredOnceWhenDeliveredThreeTimes) {
  Envelope e = message("exactly once");
  sign(e);
  Arrivals arrivals(*cfg_);
  amqp::InboundMessage m = inbound(e);
  for (int i = 0; i < 3; ++i) {
    m.delivery_count = static_cast<uint32_t>(i);
    EXPECT_EQ(arrivals.deliver(m), amqp::Disposition::accept) << "delivery " << i;
  }
  EXPECT_EQ(arrivals.counts().stored, 1u);
  EXPECT_EQ(arrivals.counts().duplicates, 2u);
  EXPECT_EQ(count("inbox"), 1u);
  // Verified again on receive (defence in depth): authenticated, the body intact.
  auto got = drain("inbox");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].msg_id, e.msg_id);
  EXPECT_EQ(std::string(got[0].body.begin(), got[0].body.end()), "exactly once");
  // A fourth delivery after the application took it: still a duplicate (delivered ids).
  EXPECT_EQ(Arrivals(*cfg_).deliver(m), amqp::Disposition::accept);
  EXPECT_EQ(count("inbox"), 0u);
  EXPECT_TRUE(drain("admin").empty());
}

TEST_F(Arrival, TamperedBodyIsRejectedAsSignatureRecordedAndNacked) {
  Envelope e = message("pay 10 EUR");
  e.label = u"tampered";
  sign(e);
  e.body[4] = '9';  // altered in transit, after signing
  const size_t before = rejected("inbox").size();
  EXPECT_EQ(arrive(*cfg_, inbound(e)), amqp::Disposition::reject);
  EXPECT_EQ(count("inbox"), 0u);
  auto r = rejected("inbox");
  ASSERT_EQ(r.size(), before + 1);
  EXPECT_EQ(r.back().kind, "signature");
  auto nacks = drain("admin");
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].msg_class, MQMSG_CLASS_NACK_BAD_SIGNATURE);
  EXPECT_EQ(nacks[0].correlation_id, e.msg_id);
  EXPECT_EQ(nacks[0].label, u"tampered");
}

TEST_F(Arrival, MessageSignedForAnotherQueueIsRejectedAsWrongQueue) {
  Envelope e = message("for other", "other");
  sign(e);
  EXPECT_EQ(arrive(*cfg_, inbound(e, "private$\\inbox")), amqp::Disposition::reject);
  EXPECT_EQ(count("inbox"), 0u);
  auto r = rejected("inbox");
  ASSERT_FALSE(r.empty());
  EXPECT_EQ(r.back().kind, "wrong-queue");
  EXPECT_EQ(drain("admin").size(), 1u);
  // Addressed right, it arrives (the property's case and the private$ prefix do not matter).
  EXPECT_EQ(arrive(*cfg_, inbound(e, "PRIVATE$\\Other")), amqp::Disposition::accept);
  EXPECT_EQ(drain("other").size(), 1u);
}

// The signed destination names the machine: a message signed for hostc's inbox, taken off the
// broker and published into hostb's broker queue, is not stored on hostb (before this check it
// was: the queue part matched).
TEST_F(Arrival, MessageSignedForTheSameQueueOnAnotherMachineIsRejectedAsWrongMachine) {
  Envelope e = message("for hostc");
  e.dest_queue = u"DIRECT=OS:hostc\\private$\\inbox";
  sign(e);
  EXPECT_EQ(arrive(*cfg_, inbound(e)), amqp::Disposition::reject);
  EXPECT_EQ(count("inbox"), 0u);
  auto r = rejected("inbox");
  ASSERT_FALSE(r.empty());
  EXPECT_EQ(r.back().kind, "wrong-machine");
  EXPECT_NE(r.back().reason.find("hostc"), std::string::npos) << r.back().reason;
  EXPECT_EQ(drain("admin").size(), 1u);
  // The same message signed for hostb (this machine, any case) arrives.
  Envelope ok = message("for hostb");
  ok.dest_queue = u"DIRECT=OS:HostB\\private$\\inbox";
  sign(ok);
  EXPECT_EQ(arrive(*cfg_, inbound(ok)), amqp::Disposition::accept);
  EXPECT_EQ(drain("inbox").size(), 1u);
}

// PROPID_M_TIME_TO_REACH_QUEUE, counted from the signed sent time, with the configured clock
// skew (300 s by default) allowed on top.
TEST_F(Arrival, MessageArrivingAfterItsTimeToReachQueueIsRejectedAsExpiredAndNacked) {
  const auto now = static_cast<uint64_t>(std::time(nullptr));
  Envelope e = message("too late");
  e.label = u"late";
  e.sent_time = now - 1000;
  e.time_to_reach_queue = 60;
  sign(e);
  const size_t before = rejected("inbox").size();
  EXPECT_EQ(arrive(*cfg_, inbound(e)), amqp::Disposition::reject);
  EXPECT_EQ(count("inbox"), 0u);
  auto r = rejected("inbox");
  ASSERT_EQ(r.size(), before + 1);
  EXPECT_EQ(r.back().kind, "expired");
  auto nacks = drain("admin");
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].msg_class, MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT);
  EXPECT_EQ(nacks[0].correlation_id, e.msg_id);
  EXPECT_EQ(nacks[0].label, u"late");

  // In time (or late by less than the clock skew), and without a limit: stored, and the limit
  // is there for the receiver as sent.
  Envelope in_time = message("in time");
  in_time.time_to_reach_queue = 60;
  sign(in_time);
  Envelope within_skew = message("within skew");
  within_skew.sent_time = now - 100;
  within_skew.time_to_reach_queue = 10;
  sign(within_skew);
  Envelope no_limit = message("no limit");
  no_limit.sent_time = now - 100000;
  sign(no_limit);
  for (const Envelope* m : {&in_time, &within_skew, &no_limit}) {
    EXPECT_EQ(arrive(*cfg_, inbound(*m)), amqp::Disposition::accept);
  }
  auto got = drain("inbox");
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].time_to_reach_queue, 60u);
  EXPECT_EQ(got[1].time_to_reach_queue, 10u);
  EXPECT_EQ(got[2].time_to_reach_queue, security::kNoTimeLimit);
  EXPECT_EQ(rejected("inbox").size(), before + 1);
  EXPECT_TRUE(drain("admin").empty());
}

// A NACK is unsigned and carries the destination of the message it answers (another
// machine's queue): it must still reach this machine's admin queue. (The wrong-machine check
// first applied to it: hostb's NACKs never reached hosta.)
TEST_F(Arrival, NackCarryingAnotherMachinesDestinationReachesTheAdminQueue) {
  const Envelope original = message("the original body");
  Envelope nack;  // as core::send_nack builds one
  nack.msg_class = MQMSG_CLASS_NACK_BAD_SIGNATURE;
  nack.msg_id = message("").msg_id;
  nack.correlation_id = original.msg_id;
  nack.label = original.label;
  nack.body = original.body;
  nack.dest_queue = u"DIRECT=OS:hostc\\private$\\inbox";
  nack.source_machine = u"hostc";
  nack.sent_time = original.sent_time;
  EXPECT_EQ(arrive(*cfg_, inbound(nack, "private$\\admin")), amqp::Disposition::accept);
  auto got = drain("admin");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].msg_class, MQMSG_CLASS_NACK_BAD_SIGNATURE);
}

// PROPID_Q_QUOTA holds for arrivals from other machines too: a message that would take the
// queue over its quota is not stored, recorded as "quota" and NACKed with MSMQ's class.
TEST_F(Arrival, MessageOverTheQueuesQuotaIsRejectedAndNackedAsExceedQuota) {
  transport::QueueInfo info;
  info.name = "small";
  info.authenticate = true;
  info.quota = 4;  // KB
  create_queue(cfg_->store_path, info);
  Envelope fits = message("fits", "small");
  sign(fits);
  EXPECT_EQ(arrive(*cfg_, inbound(fits, "private$\\small")), amqp::Disposition::accept);
  Envelope big = message(std::string(3500, 'x'), "small");
  big.label = u"big";
  sign(big);
  EXPECT_EQ(arrive(*cfg_, inbound(big, "private$\\small")), amqp::Disposition::reject);
  EXPECT_EQ(count("small"), 1u);
  auto r = rejected("small");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, "quota");
  auto nacks = drain("admin");
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].msg_class, MQMSG_CLASS_NACK_Q_EXCEED_QUOTA);
  EXPECT_EQ(nacks[0].correlation_id, big.msg_id);
  EXPECT_EQ(nacks[0].label, u"big");
  EXPECT_EQ(drain("small").size(), 1u);
}

TEST_F(Arrival, MissingQueueIsRejectedAndNackedAsBadDestinationQueue) {
  Envelope e = message("nowhere", "nope");
  sign(e);
  EXPECT_EQ(arrive(*cfg_, inbound(e, "private$\\nope")), amqp::Disposition::reject);
  auto r = rejected("nope");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, "no-such-queue");
  auto nacks = drain("admin");
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].msg_class, MQMSG_CLASS_NACK_BAD_DST_Q);
  EXPECT_EQ(nacks[0].correlation_id, e.msg_id);
}

TEST_F(Arrival, MessageForASubqueueIsRejectedAsBadDestinationQueue) {
  auto sub = open("inbox;held");  // the subqueue exists (created at its first opening)
  Envelope e = message("into a subqueue", "inbox;held");
  sign(e);
  EXPECT_EQ(arrive(*cfg_, inbound(e, "private$\\inbox;held")), amqp::Disposition::reject);
  auto r = rejected("inbox;held");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, "no-such-queue");
  EXPECT_EQ(count("inbox"), 0u);
  EXPECT_EQ(runtime()
                .stores()
                .store_at(cfg_->store_path)
                .message_count(
                    runtime().stores().store_at(cfg_->store_path).find_queue("inbox;held")->id),
            0u);
  auto nacks = drain("admin");
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].msg_class, MQMSG_CLASS_NACK_BAD_DST_Q);
}

TEST_F(Arrival, MessageIdOtherThanTheBrokersIsRejectedAsMalformed) {
  Envelope e = message("id mismatch");
  sign(e);
  amqp::InboundMessage m = inbound(e);
  m.message_id_hex = std::string(40, 'a');
  EXPECT_EQ(arrive(*cfg_, m), amqp::Disposition::reject);
  EXPECT_EQ(count("inbox"), 0u);
  EXPECT_EQ(rejected("inbox").back().kind, "malformed");
  // Not an envelope at all.
  m.body = {1, 2, 3};
  EXPECT_EQ(arrive(*cfg_, m), amqp::Disposition::reject);
  EXPECT_EQ(rejected("inbox").back().kind, "malformed");
}

TEST_F(Arrival, UnsignedMessageOnAnAuthenticatingQueueIsRejected) {
  Envelope e = message("unsigned");
  e.auth_level = MQMSG_AUTH_LEVEL_NONE;
  e.sig_scheme = security::SigScheme::None;
  e.sender_cert.clear();
  EXPECT_EQ(arrive(*cfg_, inbound(e)), amqp::Disposition::reject);
  EXPECT_EQ(rejected("inbox").back().kind, "unsigned");
  EXPECT_EQ(count("inbox"), 0u);
}

// Throughput of the arrival path (verify + durable dedupe append, one message per transaction,
// as the Inbound callback calls it). MQSEC_ARRIVAL_MESSAGES (default 2000) messages.
// Issue 13: the queue's security descriptor decides who may send to it from another machine:
// the sender's SID when it is confirmed (here: its certificate bound in the store's registry),
// Anonymous Logon otherwise. Without MQSEC_WRITE_MESSAGE the message is rejected as
// "access-denied" and NACKed with MQMSG_CLASS_NACK_ACCESS_DENIED.
TEST_F(Arrival, SenderWithoutWriteRightOnTheQueueIsRejectedAsAccessDeniedAndNacked) {
  transport::local::Store& st = runtime().stores().store_at(cfg_->store_path);
  transport::QueueInfo info;
  info.name = "guarded";
  create_queue(cfg_->store_path, info);
  const int64_t id = st.find_queue("guarded")->id;
  const security::Sid alice = security::Sid::unix_user(1000);  // message()'s SENDERID
  security::SecurityDescriptor sd = security::default_queue_descriptor(
      security::Sid::unix_user(::geteuid()), security::unix_group_sid(::getegid()));
  sd.dacl = std::vector<security::Ace>{
      {security::Ace::Type::Allowed, 0, MQSEC_QUEUE_GENERIC_ALL, *sd.owner},
      {security::Ace::Type::Allowed, 0, MQSEC_WRITE_MESSAGE, alice}};
  ASSERT_TRUE(st.set_queue_security(
      id,
      security::serialize_security_descriptor(sd, security::kOwnerSecurityInformation |
                                                      security::kGroupSecurityInformation |
                                                      security::kDaclSecurityInformation),
      st.queue_security(id)));

  // Signed, but by a certificate nothing binds to alice: an anonymous sender.
  Envelope e = message("from someone", "guarded");
  e.label = u"unconfirmed";
  sign(e);
  EXPECT_EQ(Arrivals(*cfg_).deliver(inbound(e, "private$\\guarded")), amqp::Disposition::reject);
  EXPECT_EQ(count("guarded"), 0u);
  auto r = rejected("guarded");
  ASSERT_FALSE(r.empty());
  EXPECT_EQ(r.back().kind, "access-denied");
  auto nacks = drain("admin");
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].msg_class, MQMSG_CLASS_NACK_ACCESS_DENIED);
  EXPECT_EQ(nacks[0].correlation_id, e.msg_id);

  // The same SENDERID, confirmed: its certificate is bound to alice in the store's registry.
  Signer confirmed = make_signer();
  st.bind_certificate(security::sha256(confirmed.der), confirmed.der, alice.bytes(), 0);
  Envelope ok = message("from alice", "guarded");
  ok.sender_cert = confirmed.der;
  mqsec::testing::sign_envelope(ok, confirmed.key.get());
  EXPECT_EQ(Arrivals(*cfg_).deliver(inbound(ok, "private$\\guarded")), amqp::Disposition::accept);
  EXPECT_EQ(count("guarded"), 1u);
  EXPECT_TRUE(drain("admin").empty());
}

TEST_F(Arrival, Throughput) {
  const char* n_env = std::getenv("MQSEC_ARRIVAL_MESSAGES");
  const int n = n_env ? std::atoi(n_env) : 2000;
  std::vector<amqp::InboundMessage> ms;
  ms.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Envelope e = message("throughput " + std::to_string(i) + std::string(1000, 'x'));
    sign(e);
    ms.push_back(inbound(e));
  }
  Arrivals arrivals(*cfg_);
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& m : ms) ASSERT_EQ(arrivals.deliver(m), amqp::Disposition::accept);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "[ info     ] %d arrivals (1 KiB, P-256, durable, one per transaction) in %.2f s: "
      "%.0f msg/s\n",
      n, s, n / s);
  EXPECT_EQ(count("inbox"), static_cast<size_t>(n));
  EXPECT_EQ(drain("inbox").size(), static_cast<size_t>(n));
}

// Remote read without a broker: a clear refusal at open (test_remote_read reads through one);
// MQ_DENY_RECEIVE_SHARE is refused for a queue of another machine before anything else.
TEST_F(Arrival, ReadingAQueueOnAnotherMachineWithoutABrokerIsRefusedAtOpen) {
  Destination d;
  d.queue = "inbox";
  d.transport = Destination::Transport::Remote;
  d.machine = "hostc";
  for (Access a : {Access{false, true, false}, Access{false, false, true}}) {
    try {
      Queue::open(d, a, false);
      ADD_FAILURE() << "opened a remote queue for reading without a broker";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), MQ_ERROR_SERVICE_NOT_AVAILABLE);
      EXPECT_NE(std::string(e.what()).find("no [broker] is configured"), std::string::npos)
          << e.what();
    }
  }
  try {
    Queue::open(d, Access{false, false, true}, true);
    ADD_FAILURE() << "opened a remote queue with MQ_DENY_RECEIVE_SHARE";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION);
  }
}

// ---------------------------------------------------------------------------------------------
// The agent process.

fs::path agent_config(const std::string& name, const std::string& extra) {
  fs::path dir = fs::temp_directory_path() /
                 ("mqsec-arrival-agent-" + std::to_string(::getpid()) + "-" + name);
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all);
  fs::path cfg = dir / "mqsec.toml";
  mqsec::testing::write_file(
      cfg,
      "[store]\npath = \"" + (dir / "store").string() + "\"\n[machine]\nname = \"hostb\"\n" + extra,
      0600);
  return cfg;
}

TEST(Agent, StopsCleanlyOnSigtermWhileTheBrokerIsUnreachable) {
  // Nothing listens on port 1: the agent keeps retrying until it is told to stop.
  fs::path cfg = agent_config("sigterm",
                              "[broker]\nurl = \"amqp://127.0.0.1:1\"\nuser = \"mqsec\"\n"
                              "password-source = \"env:MQSEC_ARRIVAL_TEST_PW\"\n");
  for (int sig : {SIGTERM, SIGINT}) {
    mqsec::testing::Subprocess agent(
        {MQSEC_CLI, "agent"},
        {{"MQSEC_CONFIG", cfg.string()}, {"MQSEC_LOG", "stderr"}, {"MQSEC_ARRIVAL_TEST_PW", "pw"}},
        cfg.parent_path() / ("agent-" + std::to_string(sig) + ".log"));
    // SIGTERM and SIGINT are the agent's requests to stop once it has blocked them, which it
    // has when it logs its start line; before, their default action ends it.
    ASSERT_TRUE(agent.wait_for_output("agent: machine '", 120s)) << agent.output_tail();
    ASSERT_TRUE(agent.running()) << agent.output_tail();
    const auto t0 = std::chrono::steady_clock::now();
    auto st = agent.stop(sig, 10s);
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_TRUE(st.has_value()) << "no exit within 10 s of signal " << sig << "\n"
                                << agent.output_tail();
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
        << mqsec::testing::describe_wait_status(*st) << "\n"
        << agent.output_tail();
    EXPECT_LT(took, 5s);
    EXPECT_NE(agent.output_tail().find("stopping"), std::string::npos) << agent.output_tail();
  }
}

TEST(Agent, WithoutABrokerSectionItFailsWithAConfigurationError) {
  fs::path cfg = agent_config("nobroker", "");
  mqsec::testing::Subprocess agent({MQSEC_CLI, "agent"},
                                   {{"MQSEC_CONFIG", cfg.string()}, {"MQSEC_LOG", "stderr"}},
                                   cfg.parent_path() / "agent.log");
  auto st = agent.wait(20s);
  ASSERT_TRUE(st.has_value()) << agent.output_tail();
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 3)
      << mqsec::testing::describe_wait_status(*st) << "\n"
      << agent.output_tail();
  EXPECT_NE(agent.output_tail().find("no [broker] is configured"), std::string::npos)
      << agent.output_tail();
}

}  // namespace
}  // namespace mqsec::core
