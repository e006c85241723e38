// The batch-signing pipeline (src/core/batch_signing.hpp) with a PIN-always key
// (CKA_ALWAYS_AUTHENTICATE; issue 12: "one context-specific login per batch, not per message"),
// on the mock PKCS#11 module (tests/mock), which supports such keys and counts every call
// (SoftHSM does not support CKA_ALWAYS_AUTHENTICATE). The context is made on the mock's token
// (as tests/unit/test_batch.cpp does); the queues are in a store of this test's own
// configuration (MQSEC_CONFIG), sent to and received from through core::Queue, the path
// MQSendMessage and MQReceiveMessage take:
//
// - N messages sent deferred through one context cost exactly one C_Login(CKU_CONTEXT_SPECIFIC)
//   and one C_Sign, and each arrives, in order, and verifies on receive;
// - a context-specific login the card refuses (CKR_PIN_INCORRECT) turns the whole batch into
//   "signing-failed" rejection records and NACKs (MQMSG_CLASS_NACK_BAD_SIGNATURE) to the admin
//   queue: nothing is stored, unsigned or otherwise; in waiting mode ([signing] batch-wait)
//   each caller gets the failure itself.
#include <gtest/gtest.h>
#include <mq.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mqsec/error.hpp"
#include "pkcs11/module.hpp"
#include "pkcs11/token.hpp"
#include "pkcs11/uri.hpp"
#include "src/core/admin.hpp"
#include "src/core/destination.hpp"
#include "src/core/queue.hpp"
#include "src/core/runtime.hpp"
#include "src/core/text.hpp"
#include "src/security/config.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/security/identity.hpp"
#include "src/security/openssl.hpp"
#include "tests/mock/mock_pkcs11.hpp"
#include "tests/support/verified_receive.hpp"

namespace mqsec::core {
namespace {

namespace fs = std::filesystem;
namespace mock = mqsec::mock;
using namespace std::chrono_literals;
using mqsec::testing::receive_all;
using security::Envelope;

security::Bytes self_signed(EVP_PKEY* key) {
  security::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 21);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("pin-always batch"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key);
  X509_sign(cert.get(), key, EVP_sha256());
  return security::to_der(cert.get());
}

class BatchPinAlways : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/mqsec-batch-pin-always-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new fs::path(tmpl);
    fs::create_directories(*dir_ / "store");
    fs::permissions(*dir_ / "store", fs::perms::owner_all, fs::perm_options::replace);
    std::ofstream(*dir_ / "mqsec.toml")
        << "[store]\npath = \"" << (*dir_ / "store").string() << "\"\n[identity]\nsid = \"unix\"\n";
    setenv("MQSEC_CONFIG", (*dir_ / "mqsec.toml").c_str(), 1);
    setenv("MQSEC_LOG", ("file:" + (*dir_ / "mqsec.log").string()).c_str(), 1);
    setenv("MQSEC_STATE_DIR", dir_->c_str(), 1);  // the PIN-refusal memory stays here
    setenv("MQSEC_TEST_PIN", "1234", 1);
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    if (std::getenv("MQSEC_IT_KEEP") == nullptr) fs::remove_all(*dir_, ec);
    delete dir_;
  }

  void SetUp() override {
    mock::reset();
    // Each test's own PIN-refusal memory: a refused PIN is not presented again.
    const fs::path state = *dir_ / ("state-" + std::to_string(++tests_));
    fs::create_directories(state);
    fs::permissions(state, fs::perms::owner_all, fs::perm_options::replace);
    setenv("MQSEC_STATE_DIR", state.c_str(), 1);
    auto module = pkcs11::Module::from_function_list(mock::function_list(), "mock");
    token_ = pkcs11::Token::open(module, pkcs11::Uri::parse("pkcs11:token=mock-a"));
    token_->login("env:MQSEC_TEST_PIN");
    key_.reset(EVP_EC_gen("P-256"));
    der_ = self_signed(key_.get());
    const CK_OBJECT_HANDLE h = mock::add_key(0, key_.get(), {0x9c}, "PIV sign", der_, true, false,
                                             /*always_authenticate=*/true);
    security::UserIdentity user;
    user.sid = security::Sid::unix_user(::getuid());
    ctx_ = std::make_shared<security::SecurityContext>(
        der_, security::parse_der_strict(der_), token_, "env:MQSEC_TEST_PIN",
        pkcs11::SignKey{h, pkcs11::Scheme::Ecdsa, 64, /*always_authenticate=*/true},
        security::Bytes{0x9c}, user);
  }

  static std::string store() { return (*dir_ / "store").string(); }

  static std::string new_queue(const std::string& tag) {
    transport::QueueInfo info;
    info.name = "pin-always-" + tag + "-" + std::to_string(++queues_);
    info.authenticate = true;
    create_queue(store(), info);
    return info.name;
  }

  // delay_ms: 10 s, only the flush (MQCloseQueue) ends the window.
  static std::shared_ptr<Queue> open_sender(const std::string& queue, bool wait,
                                            int64_t delay_ms = 10000) {
    security::SigningConfig s;
    s.batch_max_messages = 1000;
    s.batch_max_delay_ms = delay_ms;
    s.batch_wait = wait;
    auto q = Queue::open(Destination{queue, {}, {}}, Access{true, false, false}, false);
    q->set_batching(s);
    return q;
  }

  Outgoing message(int i, const std::string& admin_format = {}) const {
    Outgoing m;
    const std::string body = "pin-always " + std::to_string(i);
    m.envelope.body.assign(body.begin(), body.end());
    m.envelope.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
    m.envelope.delivery = i % 2 ? MQMSG_DELIVERY_RECOVERABLE : MQMSG_DELIVERY_EXPRESS;
    if (!admin_format.empty()) {
      m.envelope.admin_queue = utf8_to_utf16(admin_format);
      m.envelope.acknowledge = MQMSG_ACKNOWLEDGMENT_NACK_REACH_QUEUE;
    }
    m.signer = ctx_;
    return m;
  }

  // The messages of `queue` as stored, unverified (NACKs are unsigned).
  static std::vector<Envelope> raw(const std::string& queue) {
    auto resolved = runtime().resolve(Destination{queue, {}, {}}, store());
    EXPECT_TRUE(resolved);
    std::vector<Envelope> out;
    if (!resolved) return out;
    resolved->transport->flush();
    while (auto m = resolved->transport->first()) {
      out.push_back(security::decode(m->envelope));
      resolved->transport->remove(m->seq);
    }
    return out;
  }

  static inline fs::path* dir_ = nullptr;
  static inline int tests_ = 0, queues_ = 0;
  std::shared_ptr<pkcs11::Token> token_;
  security::PkeyPtr key_;
  security::Bytes der_;
  std::shared_ptr<security::SecurityContext> ctx_;
};

// N messages through the pipeline: one context-specific login and one C_Sign for all of them.
TEST_F(BatchPinAlways, OneContextLoginAndOneSignaturePerBatch) {
  const std::string queue = new_queue("one");
  auto q = open_sender(queue, false);
  constexpr int kMessages = 50;
  const int logins = mock::call_count("C_Login"), signs = mock::call_count("C_Sign");
  for (int i = 0; i < kMessages; ++i) {
    Outgoing m = message(i);
    q->send(m, false);
  }
  EXPECT_EQ(mock::call_count("C_Sign"), signs) << "deferred: nothing signed in the caller";
  q->flush();  // MQCloseQueue
  EXPECT_EQ(mock::call_count("C_Login") - logins, 1) << "one context-specific login per batch";
  EXPECT_EQ(mock::call_count("C_Sign") - signs, 1) << "one device signature per batch";
  const auto got = receive_all(queue);
  ASSERT_EQ(got.size(), static_cast<size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(std::string(got[i].body.begin(), got[i].body.end()),
              "pin-always " + std::to_string(i));
    EXPECT_TRUE(got[i].batch.present());
    EXPECT_EQ(got[i].signature, got[0].signature);
  }
  // The next batch logs in again (the card's login is good for one signature).
  for (int i = 0; i < 3; ++i) {
    Outgoing m = message(100 + i);
    q->send(m, false);
  }
  q->flush();
  EXPECT_EQ(mock::call_count("C_Login") - logins, 2);
  EXPECT_EQ(mock::call_count("C_Sign") - signs, 2);
  EXPECT_EQ(receive_all(queue).size(), 3u);
}

// The card refuses the context-specific PIN: every message of the batch is a "signing-failed"
// rejection record and a NACK, none is stored.
TEST_F(BatchPinAlways, RefusedContextPinRejectsAndNacksTheWholeBatch) {
  const std::string queue = new_queue("refused");
  const std::string admin = new_queue("refused-admin");
  const std::string admin_format = format_name_of(Destination{admin, {}, {}});
  auto q = open_sender(queue, false);
  constexpr int kMessages = 20;
  mock::fail_context_login(0, CKR_PIN_INCORRECT);
  const int signs = mock::call_count("C_Sign");
  std::vector<security::Bytes> ids;
  for (int i = 0; i < kMessages; ++i) {
    Outgoing m = message(i, admin_format);
    q->send(m, false);  // deferred: the failure comes later, as records and NACKs
    ids.push_back(security::Bytes(m.envelope.msg_id.begin(), m.envelope.msg_id.end()));
  }
  q->flush();
  EXPECT_EQ(mock::call_count("C_Sign") - signs, 0) << "nothing signed without the login";
  EXPECT_TRUE(receive_all(queue).empty()) << "nothing stored, unsigned or otherwise";
  EXPECT_TRUE(raw(queue).empty());
  const auto rejected = rejections(store(), queue);
  ASSERT_EQ(rejected.size(), static_cast<size_t>(kMessages));
  for (const auto& r : rejected) {
    EXPECT_EQ(r.kind, "signing-failed") << r.reason;
    EXPECT_NE(r.reason.find("PIN"), std::string::npos) << r.reason;
  }
  const auto nacks = raw(admin);
  ASSERT_EQ(nacks.size(), static_cast<size_t>(kMessages));
  for (size_t i = 0; i < nacks.size(); ++i) {
    EXPECT_EQ(nacks[i].msg_class, MQMSG_CLASS_NACK_BAD_SIGNATURE);
    EXPECT_EQ(security::Bytes(nacks[i].correlation_id.begin(), nacks[i].correlation_id.end()),
              ids[i])
        << "NACK " << i << " answers message " << i;
  }
}

// Waiting mode: each caller gets the refused PIN as its own error; nothing is recorded or stored.
TEST_F(BatchPinAlways, RefusedContextPinInWaitingModeFailsEachCaller) {
  const std::string queue = new_queue("wait");
  auto q = open_sender(queue, true, 20);
  mock::fail_context_login(0, CKR_PIN_INCORRECT);
  Outgoing m = message(0);
  try {
    q->send(m, false);
    ADD_FAILURE() << "sent without the context-specific login";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_CANNOT_SIGN_DATA_EX) << e.what();
  }
  q->flush();
  EXPECT_TRUE(raw(queue).empty());
  EXPECT_TRUE(rejections(store(), queue).empty());
}

}  // namespace
}  // namespace mqsec::core
