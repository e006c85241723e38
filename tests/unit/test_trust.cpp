// The trust policy (issue 9, items 8 and 9) against a test PKI made at test time by
// tests/pki/make-pki.sh: chain building through an intermediate, every leaf check, CRLs
// (including a CRL that appears while the store is in use), OCSP against a real `openssl ocsp`
// responder on 127.0.0.1 (answers, the cache, soft-fail and hard-fail with the responder
// down), the SID in a certificate, and Verifier with a VerifyPolicy (SENDERID confirmed by the
// certificate, authorized signers, clock skew, replay window).
//
// trust_store_for() caches stores by their settings, and each store caches OCSP answers and
// outcomes; tests that need a fresh cache give their config a distinct ocsp_timeout_ms.
#include <gtest/gtest.h>
#include <mq.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "mqsec/error.hpp"
#include "src/security/envelope.hpp"
#include "src/security/identity.hpp"
#include "src/security/message_auth.hpp"
#include "src/security/openssl.hpp"
#include "src/security/trust.hpp"
#include "tests/support/sign_envelope.hpp"
#include "tests/support/test_pki.hpp"

using namespace mqsec::security;
using mqsec::testing::OcspResponder;
using mqsec::testing::TestPki;
namespace fs = std::filesystem;

namespace {

const TestPki& pki() { return mqsec::testing::test_pki(MQSEC_MAKE_PKI); }

// The first PEM object in `path`, read with `read` (PEM_read_X509, PEM_read_PrivateKey).
template <typename T>
T* read_pem(const fs::path& path, T* (*read)(FILE*, T**, pem_password_cb*, void*)) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) throw std::runtime_error("cannot open " + path.string());
  T* object = read(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (object == nullptr) throw std::runtime_error("cannot read " + path.string());
  return object;
}

X509Ptr load_cert(const std::string& name) {
  return X509Ptr(read_pem(pki().pem(name), PEM_read_X509));
}
PkeyPtr load_key(const std::string& name) {
  return PkeyPtr(read_pem(pki().key(name), PEM_read_PrivateKey));
}

int next_timeout = 3000;

// Anchors = the test root, intermediates = the intermediate; a fresh store (and caches).
TrustConfig base_config() {
  TrustConfig c;
  c.anchors = {pki().pem("root")};
  c.intermediates = {pki().pem("inter")};
  c.ocsp_timeout_ms = ++next_timeout;
  return c;
}

TrustOutcome eval(const TrustStore& store, const std::string& name, TrustRequire required,
                  std::time_t now = std::time(nullptr)) {
  X509Ptr cert = load_cert(name);
  Bytes der = to_der(cert.get());
  return store.evaluate(cert.get(), sha256(der), required, now);
}

std::string sid_of(const std::string& name) {
  X509Ptr cert = load_cert(name);
  return sid_from_certificate(cert.get()).value_or("<none>");
}

class Trust : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki();
    ::setenv("no_proxy", "127.0.0.1", 1);  // the responder is local whatever the environment
  }
};

std::time_t utc(int y, int mo, int d) {
  struct tm tm {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  return timegm(&tm);
}

}  // namespace

// ---- chain and leaf checks ------------------------------------------------------------------

TEST_F(Trust, ChainThroughTheIntermediateIsAccepted) {
  auto store = trust_store_for(base_config());
  for (const char* leaf : {"plain", "noeku", "rsa2048", "sid", "sanuri"}) {
    TrustOutcome t = eval(*store, leaf, TrustRequire::Chain);
    EXPECT_TRUE(t.ok) << leaf << ": " << t.reason;
    EXPECT_EQ(t.flags, trust_bits::kChain) << leaf;
  }
  // Without the intermediates setting the chain cannot be built.
  TrustConfig no_inter = base_config();
  no_inter.intermediates.clear();
  TrustOutcome t = eval(*trust_store_for(no_inter), "plain", TrustRequire::Chain);
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.kind, "chain");
}

TEST_F(Trust, EveryLeafCheckRejectsUnderChainAndOnlyInformsUnderSignature) {
  auto store = trust_store_for(base_config());
  const std::pair<const char*, const char*> cases[] = {{"caleaf", "CA certificate"},
                                                       {"nodigsig", "digital signatures"},
                                                       {"serverauth", "extended key usage"},
                                                       {"rsa1024", "1024 bits"},
                                                       {"k256", "secp256k1"}};
  for (auto [leaf, why] : cases) {
    TrustOutcome t = eval(*store, leaf, TrustRequire::Chain);
    EXPECT_FALSE(t.ok) << leaf;
    EXPECT_EQ(t.kind, "leaf") << leaf;
    EXPECT_NE(t.reason.find(why), std::string::npos) << leaf << ": " << t.reason;
    EXPECT_EQ(t.flags, 0u) << leaf;
    TrustOutcome s = eval(*store, leaf, TrustRequire::Signature);
    EXPECT_TRUE(s.ok) << leaf;
    EXPECT_EQ(s.flags, 0u) << leaf << ": a leaf that fails the checks does not count as chained";
  }
}

TEST_F(Trust, ValidityIsCheckedAtTheGivenTime) {
  auto store = trust_store_for(base_config());
  TrustOutcome expired = eval(*store, "expired", TrustRequire::Chain);
  EXPECT_FALSE(expired.ok);
  EXPECT_EQ(expired.kind, "chain");
  EXPECT_NE(expired.reason.find("expired"), std::string::npos) << expired.reason;
  TrustOutcome future = eval(*store, "future", TrustRequire::Chain);
  EXPECT_FALSE(future.ok);
  EXPECT_NE(future.reason.find("not yet valid"), std::string::npos) << future.reason;
  // The not-yet-valid leaf is fine in 2040 (the CAs are valid for 20 years).
  TrustOutcome later = eval(*store, "future", TrustRequire::Chain, utc(2040, 6, 1));
  EXPECT_TRUE(later.ok) << later.reason;
  EXPECT_TRUE(eval(*store, "expired", TrustRequire::Signature).ok);
}

TEST_F(Trust, AnotherRootIsRejectedUnderChainAndUnchainedUnderSignature) {
  auto store = trust_store_for(base_config());
  TrustOutcome chain = eval(*store, "other", TrustRequire::Chain);
  EXPECT_FALSE(chain.ok);
  EXPECT_EQ(chain.kind, "chain");
  TrustOutcome sig = eval(*store, "other", TrustRequire::Signature);
  EXPECT_TRUE(sig.ok);
  EXPECT_EQ(sig.flags, 0u);
  EXPECT_FALSE(sig.certificate_sid) << "a SID from an unchained certificate proves nothing";
  TrustOutcome self = eval(*store, "selfsid", TrustRequire::Signature);
  EXPECT_TRUE(self.ok);
  EXPECT_EQ(self.flags, 0u);
  EXPECT_FALSE(self.certificate_sid);
}

TEST_F(Trust, NoAnchorsMeansSignatureOnly) {
  TrustConfig none;
  none.ocsp_timeout_ms = ++next_timeout;
  auto store = trust_store_for(none);
  EXPECT_TRUE(eval(*store, "plain", TrustRequire::Signature).ok);
  EXPECT_EQ(eval(*store, "plain", TrustRequire::Signature).flags, 0u);
  TrustOutcome t = eval(*store, "plain", TrustRequire::Chain);
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.kind, "chain");
}

TEST_F(Trust, AnchorsFromDirectoriesAndBundles) {
  fs::path dir = pki().dir / "anchors-dir";
  fs::create_directories(dir / "sub");
  fs::copy_file(pki().pem("root"), dir / "root.pem", fs::copy_options::overwrite_existing);
  { std::ofstream(dir / "README") << "not a certificate\n"; }
  TrustConfig c = base_config();
  c.anchors = {dir};
  EXPECT_TRUE(eval(*trust_store_for(c), "plain", TrustRequire::Chain).ok);

  // One PEM file with several certificates: anchors and intermediate together.
  fs::path bundle = pki().dir / "bundle.pem";
  {
    std::ofstream out(bundle);
    for (const char* n : {"other-root", "root"}) {
      std::ifstream in(pki().pem(n));
      out << in.rdbuf();
    }
  }
  TrustConfig b = base_config();
  b.anchors = {bundle};
  EXPECT_TRUE(eval(*trust_store_for(b), "plain", TrustRequire::Chain).ok);
  EXPECT_TRUE(eval(*trust_store_for(b), "other", TrustRequire::Chain).ok);
}

TEST_F(Trust, UnreadableAnchorsAndUnknownUsagesAreConfigurationErrors) {
  TrustConfig missing = base_config();
  missing.anchors = {pki().dir / "no-such-anchor.pem"};
  try {
    trust_store_for(missing);
    ADD_FAILURE() << "a missing anchor must throw";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_SERVICE_NOT_AVAILABLE);
    EXPECT_NE(std::string(e.what()).find("no-such-anchor.pem"), std::string::npos) << e.what();
  }
  TrustConfig empty = base_config();
  empty.anchors = {pki().dir / "sids.env"};
  EXPECT_THROW(trust_store_for(empty), mqsec::Error);

  TrustConfig bad_eku = base_config();
  bad_eku.extended_key_usage = {"clientAuth", "noSuchUsage"};
  try {
    trust_store_for(bad_eku);
    ADD_FAILURE() << "an unknown extended key usage must throw";
  } catch (const mqsec::Error& e) {
    EXPECT_NE(std::string(e.what()).find("noSuchUsage"), std::string::npos) << e.what();
  }
  // Names and OIDs both work: serverAuth by OID admits the serverAuth leaf.
  TrustConfig oid = base_config();
  oid.extended_key_usage = {"1.3.6.1.5.5.7.3.1"};
  EXPECT_TRUE(eval(*trust_store_for(oid), "serverauth", TrustRequire::Chain).ok);
  EXPECT_FALSE(eval(*trust_store_for(oid), "plain", TrustRequire::Chain).ok);
}

// ---- CRLs -----------------------------------------------------------------------------------

TEST_F(Trust, CrlRevocationPemDerAndDirectory) {
  fs::path crl_dir = pki().dir / "crl-dir";
  fs::create_directories(crl_dir);
  fs::copy_file(pki().dir / "crl.der", crl_dir / "inter.crl", fs::copy_options::overwrite_existing);
  for (const fs::path& crl : {pki().dir / "crl.pem", pki().dir / "crl.der", crl_dir}) {
    TrustConfig c = base_config();
    c.crl = {crl};
    c.revocation = RevocationMode::HardFail;
    auto store = trust_store_for(c);
    TrustOutcome revoked = eval(*store, "revoked", TrustRequire::Chain);
    EXPECT_FALSE(revoked.ok) << crl;
    EXPECT_EQ(revoked.kind, "revoked") << crl;
    TrustOutcome signature_only = eval(*store, "revoked", TrustRequire::Signature);
    EXPECT_TRUE(signature_only.ok);
    EXPECT_EQ(signature_only.flags, 0u) << "a revoked certificate is not a valid chain";
    TrustOutcome good = eval(*store, "plain", TrustRequire::ChainRevocation);
    EXPECT_TRUE(good.ok) << crl << ": " << good.reason;
    EXPECT_EQ(good.flags, trust_bits::kChain | trust_bits::kRevocationChecked);
  }
}

TEST_F(Trust, CrlsAreReReadWhenTheyChange) {
  fs::path crl_dir = pki().dir / "crl-later";
  fs::create_directories(crl_dir);
  TrustConfig c = base_config();
  c.crl = {crl_dir};
  auto store = trust_store_for(c);
  TrustOutcome before = eval(*store, "revoked", TrustRequire::Chain);
  EXPECT_TRUE(before.ok) << "no CRL yet: " << before.reason;
  TrustOutcome unknown = eval(*store, "plain", TrustRequire::ChainRevocation);
  EXPECT_TRUE(unknown.ok) << "soft-fail";
  EXPECT_EQ(unknown.flags, trust_bits::kChain);
  fs::copy_file(pki().dir / "crl.pem", crl_dir / "inter.pem");
  std::this_thread::sleep_for(std::chrono::milliseconds(2300));  // re-checked every 2 s
  TrustOutcome after = eval(*store, "revoked", TrustRequire::Chain);
  EXPECT_FALSE(after.ok) << "the cached outcome must not outlive the new CRL";
  EXPECT_EQ(after.kind, "revoked");
}

TEST_F(Trust, ChainPlusRevocationWithoutAnySourceFollowsTheRevocationMode) {
  TrustConfig soft = base_config();
  TrustOutcome s = eval(*trust_store_for(soft), "plain", TrustRequire::ChainRevocation);
  EXPECT_TRUE(s.ok);
  EXPECT_EQ(s.flags, trust_bits::kChain);
  TrustConfig hard = base_config();
  hard.revocation = RevocationMode::HardFail;
  TrustOutcome h = eval(*trust_store_for(hard), "plain", TrustRequire::ChainRevocation);
  EXPECT_FALSE(h.ok);
  EXPECT_EQ(h.kind, "revocation-unknown");
  // Hard-fail only matters where revocation is demanded.
  EXPECT_TRUE(eval(*trust_store_for(hard), "plain", TrustRequire::Chain).ok);
}

// ---- OCSP -----------------------------------------------------------------------------------

TEST_F(Trust, OcspFromAiaSaysRevokedAndGood) {
  OcspResponder responder(pki(), pki().ocsp_port, MQSEC_LOOPBACK_BIND);
  TrustConfig c = base_config();
  c.ocsp = "aia";
  c.revocation = RevocationMode::HardFail;
  auto store = trust_store_for(c);
  TrustOutcome revoked = eval(*store, "revoked", TrustRequire::ChainRevocation);
  EXPECT_FALSE(revoked.ok);
  EXPECT_EQ(revoked.kind, "revoked") << revoked.reason;
  // Revoked is rejected whenever a chain is required, not only under chain+revocation.
  EXPECT_EQ(eval(*store, "revoked", TrustRequire::Chain).kind, "revoked");
  TrustOutcome good = eval(*store, "plain", TrustRequire::ChainRevocation);
  EXPECT_TRUE(good.ok) << good.reason << "\n" << responder.log();
  EXPECT_EQ(good.flags, trust_bits::kChain | trust_bits::kRevocationChecked);
  EXPECT_EQ(responder.requests(), 2) << responder.log();
}

TEST_F(Trust, OcspFixedUrl) {
  OcspResponder responder(pki(), pki().ocsp_port, MQSEC_LOOPBACK_BIND);
  TrustConfig c = base_config();
  c.ocsp = pki().ocsp_url();
  auto store = trust_store_for(c);
  TrustOutcome good = eval(*store, "sid", TrustRequire::ChainRevocation);
  EXPECT_TRUE(good.ok) << good.reason;
  EXPECT_EQ(good.flags, trust_bits::kChain | trust_bits::kRevocationChecked);
  EXPECT_EQ(good.certificate_sid, pki().sid_ext);
  EXPECT_EQ(eval(*store, "revoked", TrustRequire::ChainRevocation).kind, "revoked");
}

// An old "good" answer without our nonce and without a nextUpdate, served back by whoever answers
// at the responder's address, proves nothing about now: revocation stays unknown.
TEST_F(Trust, ReplayedOcspAnswerWithoutNonceOrNextUpdateIsNotTrusted) {
  const std::filesystem::path captured = pki().dir / "captured-good.der";
  {
    OcspResponder responder(pki(), pki().ocsp_port, MQSEC_LOOPBACK_BIND);
    const std::string cmd = "openssl ocsp -issuer '" + pki().pem("inter").string() + "' -cert '" +
                            pki().pem("plain").string() + "' -url " + pki().ocsp_url() +
                            " -no_nonce -noverify -respout '" + captured.string() +
                            "' >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "capturing an answer";
  }
  const int port = mqsec::testing::free_loopback_port();
  mqsec::testing::CannedOcspServer replay(captured, port);
  TrustConfig c = base_config();
  c.ocsp = "http://127.0.0.1:" + std::to_string(port) + "/";
  c.revocation = RevocationMode::HardFail;
  TrustOutcome t = eval(*trust_store_for(c), "plain", TrustRequire::ChainRevocation);
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.kind, "revocation-unknown");
  EXPECT_NE(t.reason.find("replayed"), std::string::npos) << t.reason;
  EXPECT_EQ(t.flags & trust_bits::kRevocationChecked, 0u);
}

TEST_F(Trust, OcspAnswersAreCachedOneRequestForManyEvaluations) {
  // The responder answers one request and exits: a second request would find nobody.
  OcspResponder responder(pki(), pki().ocsp_port, MQSEC_LOOPBACK_BIND, 1);
  TrustConfig c = base_config();
  c.ocsp = "aia";
  c.revocation = RevocationMode::HardFail;
  auto store = trust_store_for(c);
  X509Ptr cert = load_cert("plain");
  Bytes digest = sha256(to_der(cert.get()));
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        // Alternate requirements: the OCSP answer, not only the outcome cache, is reused.
        TrustRequire r = (i + t) % 2 ? TrustRequire::ChainRevocation : TrustRequire::Chain;
        TrustOutcome o = store->evaluate(cert.get(), digest, r, std::time(nullptr));
        if (o.ok && (o.flags & trust_bits::kRevocationChecked)) ++good;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 400);
  EXPECT_EQ(responder.requests(), 1) << responder.log();
}

TEST_F(Trust, ResponderDownSoftFailAcceptsHardFailRejectsAndFailuresAreCached) {
  const int port = mqsec::testing::free_loopback_port();  // nothing listens there
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
  // A refused connection is retried until the timeout (OpenSSL's HTTP client): keep it short.
  TrustConfig soft = base_config();
  soft.ocsp = url;
  soft.ocsp_timeout_ms = 1001;
  TrustOutcome s = eval(*trust_store_for(soft), "plain", TrustRequire::ChainRevocation);
  EXPECT_TRUE(s.ok) << s.reason;
  EXPECT_EQ(s.flags, trust_bits::kChain) << "no answer: revocation not checked";

  TrustConfig hard = base_config();
  hard.ocsp = url;
  hard.ocsp_timeout_ms = 1002;
  hard.revocation = RevocationMode::HardFail;
  auto store = trust_store_for(hard);
  TrustOutcome h = eval(*store, "plain", TrustRequire::ChainRevocation);
  EXPECT_FALSE(h.ok);
  EXPECT_EQ(h.kind, "revocation-unknown") << h.reason;
  // The responder comes up: the failure stays cached briefly, no request per message.
  OcspResponder responder(pki(), port, MQSEC_LOOPBACK_BIND);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(eval(*store, "plain", TrustRequire::ChainRevocation).kind, "revocation-unknown");
  }
  EXPECT_EQ(responder.requests(), 0) << responder.log();
  // ... and expires: 31 s later (as the evaluation time says) the responder is asked.
  TrustOutcome later =
      eval(*store, "plain", TrustRequire::ChainRevocation, std::time(nullptr) + 31);
  EXPECT_TRUE(later.ok) << later.reason;
  EXPECT_EQ(responder.requests(), 1);
}

// ---- the SID in a certificate ---------------------------------------------------------------

TEST_F(Trust, SidFromExtensionAndFromSanUri) {
  EXPECT_EQ(sid_of("sid"), pki().sid_ext);
  EXPECT_EQ(sid_of("sanuri"), pki().sid_san);
  EXPECT_EQ(sid_of("plain"), "<none>");
  auto store = trust_store_for(base_config());
  EXPECT_EQ(eval(*store, "sid", TrustRequire::Chain).certificate_sid, pki().sid_ext);
  EXPECT_EQ(eval(*store, "sanuri", TrustRequire::Signature).certificate_sid, pki().sid_san)
      << "chained under a signature-only requirement: the SID is still vouched for";
  EXPECT_FALSE(eval(*store, "plain", TrustRequire::Chain).certificate_sid);
}

namespace {

// A self-signed certificate whose SID extension holds `ext_der` (the extension's value).
X509Ptr cert_with_sid_extension(const Bytes& ext_der) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 9);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("x"),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key.get());
  ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.4.1.311.25.2", 1);
  ASN1_OCTET_STRING* os = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(os, ext_der.data(), static_cast<int>(ext_der.size()));
  X509_EXTENSION* ext = X509_EXTENSION_create_by_OBJ(nullptr, oid, 0, os);
  X509_add_ext(cert.get(), ext, -1);
  X509_EXTENSION_free(ext);
  ASN1_OCTET_STRING_free(os);
  ASN1_OBJECT_free(oid);
  X509_sign(cert.get(), key.get(), EVP_sha256());
  return cert;
}

Bytes sid_extension(const std::string& text) {
  // 30 L  A0 L  06 0A <oid 1.3.6.1.4.1.311.25.2.1>  A0 L  04 L <text>
  const Bytes oid = {0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x19, 0x02, 0x01};
  Bytes os = {0x04, static_cast<uint8_t>(text.size())};
  os.insert(os.end(), text.begin(), text.end());
  Bytes expl = {0xA0, static_cast<uint8_t>(os.size())};
  expl.insert(expl.end(), os.begin(), os.end());
  Bytes on = oid;
  on.insert(on.end(), expl.begin(), expl.end());
  Bytes tagged = {0xA0, static_cast<uint8_t>(on.size())};
  tagged.insert(tagged.end(), on.begin(), on.end());
  Bytes seq = {0x30, static_cast<uint8_t>(tagged.size())};
  seq.insert(seq.end(), tagged.begin(), tagged.end());
  return seq;
}

}  // namespace

TEST_F(Trust, MalformedSidExtensionsGiveNoSid) {
  Bytes good = sid_extension("S-1-5-21-1-2-3-500");
  EXPECT_EQ(sid_from_certificate(cert_with_sid_extension(good).get()), "S-1-5-21-1-2-3-500");
  EXPECT_FALSE(sid_from_certificate(cert_with_sid_extension(sid_extension("S-1-x")).get()));
  EXPECT_FALSE(sid_from_certificate(cert_with_sid_extension(sid_extension("")).get()));
  Bytes truncated(good.begin(), good.end() - 3);
  EXPECT_FALSE(sid_from_certificate(cert_with_sid_extension(truncated).get()));
  Bytes trailing = good;
  trailing.push_back(0);
  EXPECT_FALSE(sid_from_certificate(cert_with_sid_extension(trailing).get()));
  Bytes lying_length = good;
  lying_length[1] = 0x7f;
  EXPECT_FALSE(sid_from_certificate(cert_with_sid_extension(lying_length).get()));
  EXPECT_FALSE(sid_from_certificate(cert_with_sid_extension(Bytes{0x05, 0x00}).get()));
}

// ---- Verifier with a VerifyPolicy -----------------------------------------------------------

namespace {

// After the PKI exists: its certificates are valid from the second they were made.
std::time_t test_now() {
  static const std::time_t t = (pki(), std::time(nullptr));
  return t;
}

Envelope signed_by(const std::string& leaf, const Bytes& sender_sid, uint64_t sent = 0) {
  X509Ptr cert = load_cert(leaf);
  PkeyPtr key = load_key(leaf);
  Envelope e;
  e.body = {'p', 'a', 'y'};
  e.label = u"trust";
  e.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
  e.hash_alg = CALG_SHA_256;
  e.sig_scheme = EVP_PKEY_is_a(key.get(), "RSA") == 1 ? SigScheme::RsaPkcs1 : SigScheme::Ecdsa;
  e.sender_id_type = MQMSG_SENDERID_TYPE_SID;
  e.sender_id = sender_sid;
  e.sender_cert = to_der(cert.get());
  e.sent_time = sent ? sent : static_cast<uint64_t>(test_now());
  mqsec::testing::sign_envelope(e, key.get());
  return e;
}

Bytes sid_bytes(const std::string& s) { return Sid::from_string(s).bytes(); }

VerifyPolicy policy(const TrustStore* store, TrustRequire r) {
  VerifyPolicy p;
  p.now = test_now();
  p.require = r;
  p.trust = store;
  return p;
}

// A Verifier's verdict on a message signed by `leaf` whose SENDERID is `sender_sid`, under
// policy(store, r).
Verdict verify_signed(const std::string& leaf, const std::string& sender_sid,
                      const TrustStore* store, TrustRequire r) {
  return Verifier().verify(signed_by(leaf, sid_bytes(sender_sid)), policy(store, r));
}

}  // namespace

TEST_F(Trust, VerifierConfirmsSenderIdFromAChainedCertificateWithoutRegistry) {
  auto store = trust_store_for(base_config());
  Verdict d = verify_signed("sid", pki().sid_ext, store.get(), TrustRequire::Chain);
  EXPECT_TRUE(d.ok) << d.reason;
  EXPECT_TRUE(d.sender_confirmed);
  EXPECT_EQ(d.trust, trust_bits::kSignature | trust_bits::kChain | trust_bits::kSidFromCertificate);
  // The SAN form confirms too, and so does a chained certificate under "signature".
  Verdict san = verify_signed("sanuri", pki().sid_san, store.get(), TrustRequire::Signature);
  EXPECT_TRUE(san.ok) << san.reason;
  EXPECT_TRUE(san.sender_confirmed);
  EXPECT_TRUE(san.trust & trust_bits::kSidFromCertificate);
}

TEST_F(Trust, VerifierRejectsASenderIdTheCertificateContradicts) {
  auto store = trust_store_for(base_config());
  Verdict d = verify_signed("sid", pki().sid_san, store.get(), TrustRequire::Chain);
  EXPECT_FALSE(d.ok);
  EXPECT_EQ(d.kind, "sid-mismatch");
  EXPECT_FALSE(d.sender_confirmed);
  // Also under "signature": a chained certificate's SID is authoritative.
  EXPECT_EQ(verify_signed("sid", pki().sid_san, store.get(), TrustRequire::Signature).kind,
            "sid-mismatch");
}

TEST_F(Trust, VerifierDoesNotTakeTheSidOfAnUnchainedCertificate) {
  auto store = trust_store_for(base_config());
  Verdict d = verify_signed("selfsid", pki().sid_ext, store.get(), TrustRequire::Signature);
  EXPECT_TRUE(d.ok) << d.reason;
  EXPECT_FALSE(d.sender_confirmed);
  EXPECT_EQ(d.trust, trust_bits::kSignature);
  Verdict other = verify_signed("other", pki().sid_ext, store.get(), TrustRequire::Signature);
  EXPECT_TRUE(other.ok);
  EXPECT_FALSE(other.sender_confirmed);
  Verdict chain = verify_signed("selfsid", pki().sid_ext, store.get(), TrustRequire::Chain);
  EXPECT_FALSE(chain.ok);
  EXPECT_EQ(chain.kind, "chain");
  // No trust store but a chain demanded: rejected, never silently downgraded.
  Verdict none = verify_signed("sid", pki().sid_ext, nullptr, TrustRequire::Chain);
  EXPECT_FALSE(none.ok);
  EXPECT_EQ(none.kind, "chain");
}

TEST_F(Trust, VerifierRejectsRevokedAndLeafFailures) {
  TrustConfig c = base_config();
  c.crl = {pki().dir / "crl.pem"};
  auto store = trust_store_for(c);
  Verdict revoked = verify_signed("revoked", pki().sid_ext, store.get(), TrustRequire::Chain);
  EXPECT_FALSE(revoked.ok);
  EXPECT_EQ(revoked.kind, "revoked");
  Verdict ca = verify_signed("caleaf", pki().sid_ext, store.get(), TrustRequire::Chain);
  EXPECT_FALSE(ca.ok);
  EXPECT_EQ(ca.kind, "leaf");
  Verdict good = verify_signed("plain", pki().sid_ext, store.get(), TrustRequire::ChainRevocation);
  EXPECT_TRUE(good.ok) << good.reason;
  EXPECT_EQ(good.trust,
            trust_bits::kSignature | trust_bits::kChain | trust_bits::kRevocationChecked);
  EXPECT_FALSE(good.sender_confirmed) << "plain carries no SID and nothing is registered";
}

TEST_F(Trust, VerifierRegistriesConfirmAndContradict) {
  auto store = trust_store_for(base_config());
  Verifier v;
  const Bytes alice = sid_bytes("S-1-5-21-7-7-7-1107");
  VerifyPolicy p = policy(store.get(), TrustRequire::Chain);
  p.system_registry = [&](const Bytes&) { return std::optional<Bytes>(alice); };
  Verdict d = v.verify(signed_by("plain", alice), p);
  EXPECT_TRUE(d.ok) << d.reason;
  EXPECT_TRUE(d.sender_confirmed);
  EXPECT_TRUE(d.trust & trust_bits::kSystemRegistry);
  // The system registry binds the SID-bearing certificate to another SID: rejected.
  Verdict contradicted = v.verify(signed_by("sid", sid_bytes(pki().sid_ext)), p);
  EXPECT_FALSE(contradicted.ok);
  EXPECT_EQ(contradicted.kind, "sid-mismatch");
  VerifyPolicy u = policy(store.get(), TrustRequire::Chain);
  u.user_registry = [&](const Bytes&) { return std::optional<Bytes>(alice); };
  Verdict user = v.verify(signed_by("plain", alice), u);
  EXPECT_TRUE(user.ok);
  EXPECT_EQ(user.trust & (trust_bits::kUserRegistry | trust_bits::kSystemRegistry),
            trust_bits::kUserRegistry);
}

TEST_F(Trust, VerifierAuthorizedSignersBySubjectAndSid) {
  auto store = trust_store_for(base_config());
  // Messages from `leaf` with SENDERID = the PKI's extension SID, under policy `p`.
  auto expect_authorized = [&](const std::string& leaf, const VerifyPolicy& p) {
    Verdict d = Verifier().verify(signed_by(leaf, sid_bytes(pki().sid_ext)), p);
    EXPECT_TRUE(d.ok) << leaf << ": " << d.reason;
    EXPECT_TRUE(d.trust & trust_bits::kSignerAuthorized) << leaf;
  };
  auto expect_unauthorized = [&](const std::string& leaf, const VerifyPolicy& p) {
    Verdict d = Verifier().verify(signed_by(leaf, sid_bytes(pki().sid_ext)), p);
    EXPECT_FALSE(d.ok) << leaf;
    EXPECT_EQ(d.kind, "signer") << leaf;
  };
  X509Ptr plain = load_cert("plain");
  VerifyPolicy by_subject = policy(store.get(), TrustRequire::Chain);
  by_subject.signers = {{subject_string(plain.get()), ""}};
  expect_authorized("plain", by_subject);
  expect_unauthorized("sid", by_subject);

  VerifyPolicy by_sid = policy(store.get(), TrustRequire::Chain);
  by_sid.signers = {{"", pki().sid_ext}};
  expect_authorized("sid", by_sid);
  // Claiming the SID in SENDERID is not enough: nothing confirms it for the plain certificate.
  expect_unauthorized("plain", by_sid);
  // Nor is the same SID in a self-signed certificate.
  VerifyPolicy sig_only = by_sid;
  sig_only.require = TrustRequire::Signature;
  expect_unauthorized("selfsid", sig_only);

  // A self-signed certificate with the authorized subject (selfsid has sid's subject) is not
  // that signer, under any requirement and with or without anchors.
  X509Ptr sid = load_cert("sid"), selfsid = load_cert("selfsid");
  ASSERT_EQ(subject_string(sid.get()), subject_string(selfsid.get()));
  for (const TrustStore* trust : {store.get(), static_cast<const TrustStore*>(nullptr)}) {
    VerifyPolicy subject_only = policy(trust, TrustRequire::Signature);
    subject_only.signers = {{subject_string(sid.get()), ""}};
    expect_unauthorized("selfsid", subject_only);
  }
  VerifyPolicy subject_chained = policy(store.get(), TrustRequire::Signature);
  subject_chained.signers = {{subject_string(sid.get()), ""}};
  expect_authorized("sid", subject_chained);
}

TEST_F(Trust, VerifierClockSkewAndReplayWindow) {
  auto store = trust_store_for(base_config());
  Verifier v;
  VerifyPolicy p = policy(store.get(), TrustRequire::Chain);
  p.max_clock_skew_seconds = 300;
  p.replay_window_seconds = 7 * 86400;
  const Bytes sid = sid_bytes(pki().sid_ext);
  EXPECT_TRUE(v.verify(signed_by("sid", sid, test_now() + 200), p).ok);
  Verdict future = v.verify(signed_by("sid", sid, test_now() + 1000), p);
  EXPECT_FALSE(future.ok);
  EXPECT_EQ(future.kind, "clock");
  EXPECT_TRUE(v.verify(signed_by("sid", sid, test_now() - 86400), p).ok);
  Verdict old = v.verify(signed_by("sid", sid, test_now() - 8 * 86400), p);
  EXPECT_FALSE(old.ok);
  EXPECT_EQ(old.kind, "too-old");
}
