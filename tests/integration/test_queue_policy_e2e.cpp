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

#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "src/queue/store.hpp"
#include "src/security/openssl.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/test_pki.hpp"

using mqsec::testing::Bytes;
using mqsec::testing::SoftHsmEnv;
using mqsec::testing::TestPki;

namespace {

SoftHsmEnv& env() { return SoftHsmEnv::instance(); }

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::wstring format_of(const std::string& name) {
  std::wstring out = L"DIRECT=OS:.\\private$\\";
  for (char c : name) out += static_cast<wchar_t>(c);
  return out;
}

class QueuePolicyE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env();
    pki_ = &mqsec::testing::test_pki(MQSEC_MAKE_PKI);
    mqsec::testing::ConfigOptions opts;
    opts.allow_extractable_keys = true;  // the imported test keys existed outside the token
    env().write_config(opts);
    std::ofstream(env().config_path(), std::ios::app)
        << "\n[trust]\n"
        << "anchors = [\"" << pki_->pem("root").string() << "\"]\n"
        << "intermediates = [\"" << pki_->pem("inter").string() << "\"]\n"
        << "ocsp = \"aia\"\n"
        << "require = \"signature\"\n";
    responder_ = new mqsec::testing::OcspResponder(*pki_, pki_->ocsp_port, MQSEC_LOOPBACK_BIND);
  }
  static void TearDownTestSuite() {
    delete responder_;  // stops the responder
    responder_ = nullptr;
  }

  static std::filesystem::path store_dir() { return env().dir() / "store"; }

  // Creates an authenticating queue with the given policy, as `mqsec queue create` does.
  static std::wstring create_queue(const std::string& name, const std::string& trust,
                                   std::vector<std::string> signer_subjects = {}) {
    mqsec::queue::Store store(store_dir());
    mqsec::queue::QueueInfo q;
    q.name = name;
    q.authenticate = true;
    q.trust = trust;
    q.signer_subjects = std::move(signer_subjects);
    store.create_queue(q);
    return format_of(name);
  }

  // Imports <leaf>.key and <leaf>.pem into the primary token; returns the certificate's DER.
  static Bytes import_leaf(const std::string& leaf) {
    const std::string id = SoftHsmEnv::new_id();
    const std::filesystem::path key_der = pki_->dir / (leaf + ".policy.p8.der");
    const std::filesystem::path cert_der = pki_->dir / (leaf + ".policy.der");
    auto r = mqsec::testing::run_command(
        "openssl pkcs8 -topk8 -nocrypt -in " + mqsec::testing::shell_quote(pki_->key(leaf)) +
        " -outform DER -out " + mqsec::testing::shell_quote(key_der) + " && openssl x509 -in " +
        mqsec::testing::shell_quote(pki_->pem(leaf)) + " -outform DER -out " +
        mqsec::testing::shell_quote(cert_der));
    if (!r.ok()) throw std::runtime_error("converting " + leaf + ": " + r.output);
    Bytes der = mqsec::testing::read_file(cert_der);
    env().import_private_key(SoftHsmEnv::kPrimaryToken, key_der, id, "policy-" + leaf, false);
    env().write_certificate(SoftHsmEnv::kPrimaryToken, der, id, "policy-" + leaf);
    return der;
  }

  static const Bytes& leaf(const std::string& name) {
    static std::map<std::string, Bytes> imported;
    auto it = imported.find(name);
    if (it == imported.end()) it = imported.emplace(name, import_leaf(name)).first;
    return it->second;
  }

  static void send_signed(const std::wstring& format, const Bytes& der) {
    HANDLE ctx = nullptr;
    ASSERT_EQ(MQGetSecurityContextEx(const_cast<uint8_t*>(der.data()),
                                     static_cast<DWORD>(der.size()), &ctx),
              MQ_OK);
    QUEUEHANDLE q = nullptr;
    ASSERT_EQ(MQOpenQueue(format.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &q), MQ_OK);
    std::string body = "payload";
    MSGPROPID ids[3] = {PROPID_M_BODY, PROPID_M_AUTH_LEVEL, PROPID_M_SECURITY_CONTEXT};
    MQPROPVARIANT v[3];
    v[0].vt = VT_UI1 | VT_VECTOR;
    v[0].caub.pElems = reinterpret_cast<UCHAR*>(body.data());
    v[0].caub.cElems = static_cast<ULONG>(body.size());
    v[1].vt = VT_UI4;
    v[1].ulVal = MQMSG_AUTH_LEVEL_ALWAYS;
    v[2].vt = VT_UI4;
    v[2].ulVal = static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx));
    MQMSGPROPS props = {3, ids, v, nullptr};
    EXPECT_EQ(MQSendMessage(q, &props, MQ_NO_TRANSACTION), MQ_OK);
    MQCloseQueue(q);
    MQFreeSecurityContext(ctx);
  }

  struct Received {
    HRESULT hr = MQ_OK;
    UCHAR authenticated = 0;
    ULONG trust = 0;
  };

  static Received receive(const std::wstring& format) {
    Received r;
    QUEUEHANDLE q = nullptr;
    r.hr = MQOpenQueue(format.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &q);
    if (r.hr != MQ_OK) return r;
    MSGPROPID ids[2] = {PROPID_M_AUTHENTICATED, PROPID_M_MQSEC_TRUST};
    MQPROPVARIANT v[2];
    for (auto& x : v) x.vt = VT_NULL;
    MQMSGPROPS props = {2, ids, v, nullptr};
    r.hr = MQReceiveMessage(q, 0, MQ_ACTION_RECEIVE, &props, nullptr, nullptr, nullptr, nullptr);
    if (r.hr == MQ_OK) {
      r.authenticated = v[0].bVal;
      r.trust = v[1].ulVal;
    }
    MQCloseQueue(q);
    return r;
  }

  // Kinds of the rejection records of `queue`, oldest first.
  static std::vector<std::string> rejected_kinds(const std::string& queue) {
    std::vector<std::string> kinds;
    for (const auto& r : mqsec::queue::Store(store_dir()).rejections(queue))
      kinds.push_back(r.kind);
    return kinds;
  }

  static std::string log_text() { return slurp(env().dir() / "mqsec.log"); }

  static const TestPki* pki_;
  static mqsec::testing::OcspResponder* responder_;
};

const TestPki* QueuePolicyE2E::pki_ = nullptr;
mqsec::testing::OcspResponder* QueuePolicyE2E::responder_ = nullptr;

}  // namespace

TEST_F(QueuePolicyE2E, QueueDemandingRevocationRejectsAnOcspRevokedSender) {
  std::wstring strict = create_queue("policy-strict", "chain+revocation");
  send_signed(strict, leaf("revoked"));
  EXPECT_EQ(receive(strict).hr, MQ_ERROR_IO_TIMEOUT) << "a revoked sender is never delivered";
  EXPECT_EQ(rejected_kinds("policy-strict"), std::vector<std::string>{"revoked"}) << log_text();

  send_signed(strict, leaf("plain"));
  Received good = receive(strict);
  ASSERT_EQ(good.hr, MQ_OK) << log_text();
  EXPECT_EQ(good.authenticated, 1);
  EXPECT_EQ(good.trust & (MQSEC_TRUST_CHAIN | MQSEC_TRUST_REVOCATION_CHECKED),
            static_cast<ULONG>(MQSEC_TRUST_CHAIN | MQSEC_TRUST_REVOCATION_CHECKED));
  EXPECT_GE(responder_->requests(), 1) << "the answer came from the OCSP responder";
}

TEST_F(QueuePolicyE2E, QueueWithoutItsOwnDemandFollowsTheSystemsSignatureLevel) {
  std::wstring lax = create_queue("policy-lax", "");
  send_signed(lax, leaf("revoked"));
  Received r = receive(lax);
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
  send_signed(payroll, leaf("plain"));
  EXPECT_EQ(receive(payroll).hr, MQ_ERROR_IO_TIMEOUT) << "not an authorized signer";
  EXPECT_EQ(rejected_kinds("policy-payroll"), std::vector<std::string>{"signer"}) << log_text();

  send_signed(payroll, leaf("rsa2048"));
  Received r = receive(payroll);
  ASSERT_EQ(r.hr, MQ_OK) << log_text();
  EXPECT_EQ(r.trust & MQSEC_TRUST_SIGNER_AUTHORIZED,
            static_cast<ULONG>(MQSEC_TRUST_SIGNER_AUTHORIZED));
}
