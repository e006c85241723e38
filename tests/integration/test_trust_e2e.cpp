// The trust policy end to end through the C API (issue 9, "Done when"): leaf keys and
// certificates of the test PKI (tests/pki/make-pki.sh) imported into a SoftHSM token, a system
// config with [trust] require = "chain" (anchors = the test root, a CRL), messages signed on
// the token and received from an authenticated queue:
//   - a certificate outside the anchors: rejected, never delivered, the reason recorded;
//   - a revoked certificate: rejected;
//   - a CA-issued certificate carrying the sender's SID: delivered with
//     PROPID_M_MQSEC_SENDER_CONFIRMED = 1 and the trust bits, with no MQRegisterCertificate.
#include <gtest/gtest.h>
#include <mq.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "src/security/identity.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/test_pki.hpp"

using mqsec::testing::Bytes;
using mqsec::testing::SoftHsmEnv;
using mqsec::testing::TestPki;

namespace {

SoftHsmEnv& env() { return SoftHsmEnv::instance(); }

std::string user_sid() {
  return mqsec::security::current_user(mqsec::security::SidSource::Auto).sid.str();
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TrustE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env();
    // The SID-bearing leaves carry this user's own SID, the SENDERID its messages will have.
    ::setenv("MQSEC_PKI_SID_EXT", user_sid().c_str(), 1);
    pki_ = &mqsec::testing::test_pki(MQSEC_MAKE_PKI);
    // Imported keys existed outside the token, so the config must allow them.
    mqsec::testing::ConfigOptions opts;
    opts.allow_extractable_keys = true;
    env().write_config(opts);
    std::ofstream(env().config_path(), std::ios::app)
        << "\n[trust]\n"
        << "anchors = [\"" << pki_->pem("root").string() << "\"]\n"
        << "intermediates = [\"" << pki_->pem("inter").string() << "\"]\n"
        << "crl = [\"" << (pki_->dir / "crl.pem").string() << "\"]\n"
        << "require = \"chain\"\n";
  }

  // Imports <leaf>.key and <leaf>.pem into the primary token; returns the certificate's DER.
  static Bytes import_leaf(const std::string& leaf) {
    const std::string id = SoftHsmEnv::new_id();
    const std::filesystem::path key_der = pki_->dir / (leaf + ".p8.der");
    const std::filesystem::path cert_der = pki_->dir / (leaf + ".der");
    auto r = mqsec::testing::run_command(
        "openssl pkcs8 -topk8 -nocrypt -in " + mqsec::testing::shell_quote(pki_->key(leaf)) +
        " -outform DER -out " + mqsec::testing::shell_quote(key_der) + " && openssl x509 -in " +
        mqsec::testing::shell_quote(pki_->pem(leaf)) + " -outform DER -out " +
        mqsec::testing::shell_quote(cert_der));
    if (!r.ok()) throw std::runtime_error("converting " + leaf + ": " + r.output);
    Bytes der = mqsec::testing::read_file(cert_der);
    env().import_private_key(SoftHsmEnv::kPrimaryToken, key_der, id, "trust-" + leaf, false);
    env().write_certificate(SoftHsmEnv::kPrimaryToken, der, id, "trust-" + leaf);
    return der;
  }

  static std::wstring create_queue(const std::string& name) {
    std::wstring path = L".\\private$\\";
    for (char c : name) path += static_cast<wchar_t>(c);
    QUEUEPROPID ids[2] = {PROPID_Q_PATHNAME, PROPID_Q_AUTHENTICATE};
    MQPROPVARIANT v[2];
    v[0].vt = VT_LPWSTR;
    v[0].pwszVal = path.data();
    v[1].vt = VT_UI1;
    v[1].bVal = MQ_AUTHENTICATE;
    MQQUEUEPROPS props = {2, ids, v, nullptr};
    WCHAR format[256] = {};
    DWORD len = 256;
    HRESULT hr = MQCreateQueue(nullptr, &props, format, &len);
    if (hr != MQ_OK) throw std::runtime_error("MQCreateQueue failed: " + std::to_string(hr));
    return format;
  }

  // Sends one message signed on the token with the certificate `der` to `format`.
  static void send_signed(const std::wstring& format, const Bytes& der, const char* text) {
    HANDLE ctx = nullptr;
    ASSERT_EQ(MQGetSecurityContextEx(const_cast<uint8_t*>(der.data()),
                                     static_cast<DWORD>(der.size()), &ctx),
              MQ_OK);
    QUEUEHANDLE q = nullptr;
    ASSERT_EQ(MQOpenQueue(format.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &q), MQ_OK);
    std::string body = text;
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
    UCHAR authenticated = 0, confirmed = 0;
    ULONG trust = 0;
  };

  static Received receive(const std::wstring& format) {
    Received r;
    QUEUEHANDLE q = nullptr;
    r.hr = MQOpenQueue(format.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &q);
    if (r.hr != MQ_OK) return r;
    MSGPROPID ids[3] = {PROPID_M_AUTHENTICATED, PROPID_M_MQSEC_SENDER_CONFIRMED,
                        PROPID_M_MQSEC_TRUST};
    MQPROPVARIANT v[3];
    for (auto& x : v) x.vt = VT_NULL;
    MQMSGPROPS props = {3, ids, v, nullptr};
    r.hr = MQReceiveMessage(q, 0, MQ_ACTION_RECEIVE, &props, nullptr, nullptr, nullptr, nullptr);
    if (r.hr == MQ_OK) {
      r.authenticated = v[0].bVal;
      r.confirmed = v[1].bVal;
      r.trust = v[2].ulVal;
    }
    MQCloseQueue(q);
    return r;
  }

  static std::string log_text() { return slurp(env().dir() / "mqsec.log"); }

  static const TestPki* pki_;
};

const TestPki* TrustE2E::pki_ = nullptr;

}  // namespace

TEST_F(TrustE2E, CertificateOutsideTheAnchorsIsRejected) {
  std::wstring q = create_queue("trust-other");
  send_signed(q, import_leaf("other"), "from elsewhere");
  Received r = receive(q);
  EXPECT_EQ(r.hr, MQ_ERROR_IO_TIMEOUT) << "never delivered";
  std::string log = log_text();
  EXPECT_NE(log.find("queue 'trust-other': chain: "), std::string::npos) << log;
}

TEST_F(TrustE2E, RevokedCertificateIsRejected) {
  std::wstring q = create_queue("trust-revoked");
  send_signed(q, import_leaf("revoked"), "revoked sender");
  Received r = receive(q);
  EXPECT_EQ(r.hr, MQ_ERROR_IO_TIMEOUT) << "never delivered";
  std::string log = log_text();
  EXPECT_NE(log.find("queue 'trust-revoked': revoked: "), std::string::npos) << log;
}

TEST_F(TrustE2E, SidBearingCaCertificateConfirmsTheSenderWithoutRegistration) {
  std::wstring q = create_queue("trust-sid");
  send_signed(q, import_leaf("sid"), "from a directory user");
  Received r = receive(q);
  ASSERT_EQ(r.hr, MQ_OK) << log_text();
  EXPECT_EQ(r.authenticated, 1);
  EXPECT_EQ(r.confirmed, 1);
  EXPECT_EQ(r.trust,
            static_cast<ULONG>(MQSEC_TRUST_SIGNATURE | MQSEC_TRUST_CHAIN |
                               MQSEC_TRUST_REVOCATION_CHECKED | MQSEC_TRUST_SID_FROM_CERTIFICATE));
}

TEST_F(TrustE2E, ChainedCertificateWithoutSidIsAuthenticButNotConfirmed) {
  std::wstring q = create_queue("trust-plain");
  send_signed(q, import_leaf("plain"), "no SID in the certificate");
  Received r = receive(q);
  ASSERT_EQ(r.hr, MQ_OK) << log_text();
  EXPECT_EQ(r.authenticated, 1);
  EXPECT_EQ(r.confirmed, 0);
  EXPECT_EQ(r.trust & MQSEC_TRUST_CHAIN, static_cast<ULONG>(MQSEC_TRUST_CHAIN));
  EXPECT_EQ(r.trust & MQSEC_TRUST_SID_FROM_CERTIFICATE, 0u);
}
