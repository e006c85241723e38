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

#include <string>

#include "src/security/identity.hpp"
#include "tests/support/pki_token.hpp"
#include "tests/support/signed_messages.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/test_pki.hpp"

using namespace mqsec::testing;  // the shared test support (tests/support/)

namespace {

SoftHsmEnv& env() { return SoftHsmEnv::instance(); }

std::string user_sid() {
  return mqsec::security::current_user(mqsec::security::SidSource::Auto).sid.str();
}

class TrustE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env();
    // The SID-bearing leaves carry this user's own SID, the SENDERID its messages will have.
    ::setenv("MQSEC_PKI_SID_EXT", user_sid().c_str(), 1);
    pki_ = &test_pki(MQSEC_MAKE_PKI);
    write_config_trusting_pki(
        *pki_, "crl = [\"" + (pki_->dir / "crl.pem").string() + "\"]\nrequire = \"chain\"\n");
  }

  // Imports <leaf>.key and <leaf>.pem into the primary token; returns the certificate's DER.
  static Bytes import_leaf(const std::string& leaf) {
    return import_pki_leaf(*pki_, leaf, "trust");
  }

  // One message signed with `leaf`'s certificate to a new authenticating queue `queue`, and
  // what receiving it gives.
  static ReceivedTrust send_and_receive(const std::string& queue, const std::string& leaf,
                                        const std::string& body) {
    std::wstring q = create_authenticated_queue(queue);
    send_signed(q, import_leaf(leaf), body);
    return receive_with_trust(q);
  }

  static std::string log_text() { return read_text(env().dir() / "mqsec.log"); }

  static const TestPki* pki_;
};

const TestPki* TrustE2E::pki_ = nullptr;

}  // namespace

TEST_F(TrustE2E, CertificateOutsideTheAnchorsIsRejected) {
  ReceivedTrust r = send_and_receive("trust-other", "other", "from elsewhere");
  EXPECT_EQ(r.hr, MQ_ERROR_IO_TIMEOUT) << "never delivered";
  std::string log = log_text();
  EXPECT_NE(log.find("queue 'trust-other': chain: "), std::string::npos) << log;
}

TEST_F(TrustE2E, RevokedCertificateIsRejected) {
  ReceivedTrust r = send_and_receive("trust-revoked", "revoked", "revoked sender");
  EXPECT_EQ(r.hr, MQ_ERROR_IO_TIMEOUT) << "never delivered";
  std::string log = log_text();
  EXPECT_NE(log.find("queue 'trust-revoked': revoked: "), std::string::npos) << log;
}

TEST_F(TrustE2E, SidBearingCaCertificateConfirmsTheSenderWithoutRegistration) {
  ReceivedTrust r = send_and_receive("trust-sid", "sid", "from a directory user");
  ASSERT_EQ(r.hr, MQ_OK) << log_text();
  EXPECT_EQ(r.authenticated, 1);
  EXPECT_EQ(r.confirmed, 1);
  EXPECT_EQ(r.trust,
            static_cast<ULONG>(MQSEC_TRUST_SIGNATURE | MQSEC_TRUST_CHAIN |
                               MQSEC_TRUST_REVOCATION_CHECKED | MQSEC_TRUST_SID_FROM_CERTIFICATE));
}

TEST_F(TrustE2E, ChainedCertificateWithoutSidIsAuthenticButNotConfirmed) {
  ReceivedTrust r = send_and_receive("trust-plain", "plain", "no SID in the certificate");
  ASSERT_EQ(r.hr, MQ_OK) << log_text();
  EXPECT_EQ(r.authenticated, 1);
  EXPECT_EQ(r.confirmed, 0);
  EXPECT_EQ(r.trust & MQSEC_TRUST_CHAIN, static_cast<ULONG>(MQSEC_TRUST_CHAIN));
  EXPECT_EQ(r.trust & MQSEC_TRUST_SID_FROM_CERTIFICATE, 0u);
}
