// Per-queue trust demands end to end through the C API (issue 9, "Done when"): the system asks
// only for signatures (`[trust] require = "signature"`, anchors and OCSP configured), and
// queues demand more of their own:
//   - a queue with trust "chain+revocation" rejects a sender that the test's real
//     `openssl ocsp` responder (127.0.0.1) says is revoked, and delivers a good one with
//     MQSEC_TRUST_REVOCATION_CHECKED; the same revoked sender on a queue without a demand of
//     its own is delivered (authentic, but without MQSEC_TRUST_CHAIN);
//   - a queue with authorized signers rejects any other signer, recorded as "signer".
// Queues are created through the store, as `mqsec queue create --trust/--signer` does.
#include <gtest/gtest.h>
#include <mq.h>

#include <map>
#include <string>
#include <vector>

#include "src/transport/local/store.hpp"
#include "src/security/openssl.hpp"
#include "tests/support/pki_token.hpp"
#include "tests/support/signed_messages.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/test_pki.hpp"

using namespace mqsec::testing;  // the shared test support (tests/support/)

namespace {

SoftHsmEnv& env() { return SoftHsmEnv::instance(); }

std::wstring format_of(const std::string& name) {
  std::wstring out = L"DIRECT=OS:.\\private$\\";
  for (char c : name) out += static_cast<wchar_t>(c);
  return out;
}

class QueuePolicyE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env();
    pki_ = &test_pki(MQSEC_MAKE_PKI);
    write_config_trusting_pki(*pki_, "ocsp = \"aia\"\nrequire = \"signature\"\n");
    responder_ = new OcspResponder(*pki_, pki_->ocsp_port, MQSEC_LOOPBACK_BIND);
  }
  static void TearDownTestSuite() {
    delete responder_;  // stops the responder
    responder_ = nullptr;
  }

  static std::filesystem::path store_dir() { return env().dir() / "store"; }

  // Creates an authenticating queue with the given policy, as `mqsec queue create` does.
  static std::wstring create_queue(const std::string& name, const std::string& trust,
                                   std::vector<std::string> signer_subjects = {}) {
    mqsec::transport::local::Store store(store_dir());
    mqsec::transport::QueueInfo q;
    q.name = name;
    q.authenticate = true;
    q.trust = trust;
    q.signer_subjects = std::move(signer_subjects);
    store.create_queue(q);
    return format_of(name);
  }

  // <name>.key and <name>.pem imported into the primary token once; the certificate's DER.
  static const Bytes& leaf(const std::string& name) {
    static std::map<std::string, Bytes> imported;
    auto it = imported.find(name);
    if (it == imported.end()) {
      it = imported.emplace(name, import_pki_leaf(*pki_, name, "policy")).first;
    }
    return it->second;
  }

  // One message signed with `leaf_name`'s certificate to `format`, and what receiving gives.
  static ReceivedTrust send_and_receive(const std::wstring& format, const std::string& leaf_name) {
    send_signed(format, leaf(leaf_name), "payload");
    return receive_with_trust(format);
  }

  // Kinds of the rejection records of `queue`, oldest first.
  static std::vector<std::string> rejected_kinds(const std::string& queue) {
    std::vector<std::string> kinds;
    for (const auto& r : mqsec::transport::local::Store(store_dir()).rejections(queue))
      kinds.push_back(r.kind);
    return kinds;
  }

  static std::string log_text() { return read_text(env().dir() / "mqsec.log"); }

  static const TestPki* pki_;
  static OcspResponder* responder_;
};

const TestPki* QueuePolicyE2E::pki_ = nullptr;
OcspResponder* QueuePolicyE2E::responder_ = nullptr;

}  // namespace

TEST_F(QueuePolicyE2E, QueueDemandingRevocationRejectsAnOcspRevokedSender) {
  std::wstring strict = create_queue("policy-strict", "chain+revocation");
  EXPECT_EQ(send_and_receive(strict, "revoked").hr, MQ_ERROR_IO_TIMEOUT)
      << "a revoked sender is never delivered";
  EXPECT_EQ(rejected_kinds("policy-strict"), std::vector<std::string>{"revoked"}) << log_text();

  ReceivedTrust good = send_and_receive(strict, "plain");
  ASSERT_EQ(good.hr, MQ_OK) << log_text();
  EXPECT_EQ(good.authenticated, 1);
  EXPECT_EQ(good.trust & (MQSEC_TRUST_CHAIN | MQSEC_TRUST_REVOCATION_CHECKED),
            static_cast<ULONG>(MQSEC_TRUST_CHAIN | MQSEC_TRUST_REVOCATION_CHECKED));
  EXPECT_GE(responder_->requests(), 1) << "the answer came from the OCSP responder";
}

TEST_F(QueuePolicyE2E, QueueWithoutItsOwnDemandFollowsTheSystemsSignatureLevel) {
  std::wstring lax = create_queue("policy-lax", "");
  ReceivedTrust r = send_and_receive(lax, "revoked");
  ASSERT_EQ(r.hr, MQ_OK) << "the system only requires a signature: " << log_text();
  EXPECT_EQ(r.authenticated, 1);
  EXPECT_EQ(r.trust & MQSEC_TRUST_SIGNATURE, static_cast<ULONG>(MQSEC_TRUST_SIGNATURE));
  EXPECT_EQ(r.trust & MQSEC_TRUST_CHAIN, 0u) << "a revoked certificate never counts as chained";
}

TEST_F(QueuePolicyE2E, UnauthorizedSignerIsRejectedAuthorizedOneDelivered) {
  auto subject_of = [](const Bytes& der) {
    auto cert = mqsec::security::parse_der_strict(der);
    return mqsec::security::subject_string(cert.get());
  };
  std::wstring payroll = create_queue("policy-payroll", "", {subject_of(leaf("rsa2048"))});
  EXPECT_EQ(send_and_receive(payroll, "plain").hr, MQ_ERROR_IO_TIMEOUT)
      << "not an authorized signer";
  EXPECT_EQ(rejected_kinds("policy-payroll"), std::vector<std::string>{"signer"}) << log_text();

  ReceivedTrust r = send_and_receive(payroll, "rsa2048");
  ASSERT_EQ(r.hr, MQ_OK) << log_text();
  EXPECT_EQ(r.trust & MQSEC_TRUST_SIGNER_AUTHORIZED,
            static_cast<ULONG>(MQSEC_TRUST_SIGNER_AUTHORIZED));
}
