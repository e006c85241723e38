// Receive-side verification (security::Verifier) with software keys: what is accepted, what is
// rejected and why. Token signing is covered by the integration tests.
#include <gtest/gtest.h>
#include <mq.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <atomic>
#include <ctime>
#include <limits>
#include <thread>
#include <vector>

#include "mqsec/error.hpp"
#include "src/security/envelope.hpp"
#include "src/security/identity.hpp"
#include "src/security/message_auth.hpp"
#include "src/security/openssl.hpp"
#include "tests/support/sign_envelope.hpp"

using namespace mqsec::security;

namespace {

struct Signer {
  PkeyPtr key;
  Bytes der;
};

// A self-signed certificate valid from now+from_days to now+to_days.
Signer make_signer(const char* type, long from_days = -1, long to_days = 30) {
  Signer s;
  s.key.reset(std::string(type) == "RSA" ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256"));
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("alice"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), to_days * 86400);
  X509_set_pubkey(cert.get(), s.key.get());
  X509_sign(cert.get(), s.key.get(), EVP_sha256());
  s.der = to_der(cert.get());
  return s;
}

Envelope signed_envelope(const Signer& s, SigScheme scheme, uint32_t calg = CALG_SHA_256) {
  Envelope e;
  e.body = {'h', 'i'};
  e.label = u"greeting";
  e.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
  e.hash_alg = calg;
  e.sig_scheme = scheme;
  e.sender_id_type = MQMSG_SENDERID_TYPE_SID;
  e.sender_id = Sid::unix_user(1000).bytes();
  e.sender_cert = s.der;
  mqsec::testing::sign_envelope(e, s.key.get());
  return e;
}

const std::time_t kNow = std::time(nullptr);

}  // namespace

TEST(Verifier, UnsignedMessagesAreOkButNotSigned) {
  Verifier v;
  Envelope e;
  Verdict d = v.verify(e, std::nullopt, kNow, false);
  EXPECT_TRUE(d.ok);
  EXPECT_FALSE(d.signed_message);
}

TEST(Verifier, AcceptsEachSchemeAndReportsTheLevel) {
  Verifier v;
  Signer rsa = make_signer("RSA"), ec = make_signer("EC");
  for (auto [s, scheme] : {std::pair{&rsa, SigScheme::RsaPkcs1}, std::pair{&rsa, SigScheme::RsaPss},
                           std::pair{&ec, SigScheme::Ecdsa}}) {
    Verdict d = v.verify(signed_envelope(*s, scheme), std::nullopt, kNow, false);
    EXPECT_TRUE(d.ok) << d.reason;
    EXPECT_EQ(d.authenticated_ex, MQMSG_AUTHENTICATED_SIG20);
    EXPECT_FALSE(d.sender_confirmed);
    EXPECT_EQ(d.subject, "CN=alice");
  }
  Verdict d384 =
      v.verify(signed_envelope(ec, SigScheme::Ecdsa, CALG_SHA_384), std::nullopt, kNow, false);
  EXPECT_TRUE(d384.ok) << d384.reason;
}

// One certificate, every hash and scheme, interleaved and each asked twice: the verification
// context kept per certificate (initialised once, copied per message) is the one of the
// message's own hash and scheme, and a signature under one scheme or hash never verifies
// labelled with another.
TEST(Verifier, EachHashAndSchemeOfOneCertificateIsVerifiedWithItsOwnContext) {
  Verifier v;
  Signer rsa = make_signer("RSA");
  struct Case {
    SigScheme scheme;
    uint32_t calg;
  };
  const Case cases[] = {{SigScheme::RsaPkcs1, CALG_SHA_256}, {SigScheme::RsaPss, CALG_SHA_256},
                        {SigScheme::RsaPkcs1, CALG_SHA_384}, {SigScheme::RsaPss, CALG_SHA_512},
                        {SigScheme::RsaPkcs1, CALG_SHA_512}, {SigScheme::RsaPss, CALG_SHA_384}};
  for (int round = 0; round < 2; ++round) {
    for (const Case& c : cases) {
      const Envelope e = signed_envelope(rsa, c.scheme, c.calg);
      Verdict d = v.verify(e, std::nullopt, kNow, false);
      EXPECT_TRUE(d.ok) << static_cast<int>(c.scheme) << "/" << c.calg << ": " << d.reason;
      Envelope other_scheme = e;
      other_scheme.sig_scheme =
          c.scheme == SigScheme::RsaPss ? SigScheme::RsaPkcs1 : SigScheme::RsaPss;
      EXPECT_FALSE(v.verify(other_scheme, std::nullopt, kNow, false).ok)
          << "signed " << static_cast<int>(c.scheme) << ", labelled the other scheme";
      Envelope other_hash = e;
      other_hash.hash_alg = c.calg == CALG_SHA_256 ? CALG_SHA_384 : CALG_SHA_256;
      EXPECT_FALSE(v.verify(other_hash, std::nullopt, kNow, false).ok)
          << "signed with " << c.calg << ", labelled another hash";
    }
  }
}

TEST(Verifier, AnyChangedSignedFieldIsCaught) {
  Verifier v;
  Signer ec = make_signer("EC");
  Envelope e = signed_envelope(ec, SigScheme::Ecdsa);
  Envelope body = e;
  body.body[0] ^= 1;
  Envelope label = e;
  label.label = u"greetinG";
  Envelope sid = e;
  sid.sender_id = Sid::unix_user(0).bytes();
  Envelope sig = e;
  sig.signature.back() ^= 1;
  for (const Envelope* bad : {&body, &label, &sid, &sig}) {
    Verdict d = v.verify(*bad, std::nullopt, kNow, false);
    EXPECT_FALSE(d.ok);
    EXPECT_NE(d.reason.find("does not verify"), std::string::npos) << d.reason;
  }
}

TEST(Verifier, CertificateSwapIsCaught) {
  Verifier v;
  Signer a = make_signer("EC"), b = make_signer("EC");
  Envelope e = signed_envelope(a, SigScheme::Ecdsa);
  e.sender_cert = b.der;  // the digest of the certificate is signed, and the key differs
  EXPECT_FALSE(v.verify(e, std::nullopt, kNow, false).ok);
}

TEST(Verifier, CertificateValidityIsEnforced) {
  Verifier v;
  Signer expired = make_signer("EC", -30, -1), future = make_signer("EC", 2, 30);
  Verdict d1 = v.verify(signed_envelope(expired, SigScheme::Ecdsa), std::nullopt, kNow, false);
  EXPECT_FALSE(d1.ok);
  EXPECT_NE(d1.reason.find("expired"), std::string::npos);
  Verdict d2 = v.verify(signed_envelope(future, SigScheme::Ecdsa), std::nullopt, kNow, false);
  EXPECT_FALSE(d2.ok);
  EXPECT_NE(d2.reason.find("not yet valid"), std::string::npos);
}

// One Verifier keeps each certificate it parsed (and the last one it used, found by its bytes)
// with the last second at which its validity period held: a later or earlier `now` is
// compared again, so a certificate that expires while messages keep coming is refused at once.
TEST(Verifier, ValidityIsComparedAgainWhenTheTimeChanges) {
  Verifier v;
  Signer s = make_signer("EC", -1, 30);
  const Envelope e = signed_envelope(s, SigScheme::Ecdsa);
  const std::time_t day = 86400;
  EXPECT_TRUE(v.verify(e, std::nullopt, kNow, false).ok);
  EXPECT_TRUE(v.verify(e, std::nullopt, kNow, false).ok);
  Verdict later = v.verify(e, std::nullopt, kNow + 31 * day, false);
  EXPECT_FALSE(later.ok);
  EXPECT_NE(later.reason.find("expired"), std::string::npos) << later.reason;
  EXPECT_TRUE(v.verify(e, std::nullopt, kNow + 1, false).ok);
  Verdict earlier = v.verify(e, std::nullopt, kNow - 2 * day, false);
  EXPECT_FALSE(earlier.ok);
  EXPECT_NE(earlier.reason.find("not yet valid"), std::string::npos) << earlier.reason;
  EXPECT_TRUE(v.verify(e, std::nullopt, kNow, false).ok);
}

// The same at the period's edges, each second asked twice: valid from notBefore to one second
// before notAfter (X509_cmp_time counts an equal time as earlier), and a refusal is never
// remembered as a pass.
TEST(Verifier, ValidityEdgesAreExactAndRefusalsAreNotRemembered) {
  Verifier v;
  Signer s = make_signer("EC", -1, 30);
  const Envelope e = signed_envelope(s, SigScheme::Ecdsa);
  X509Ptr cert = parse_der_strict(s.der);
  ASSERT_TRUE(cert);
  auto seconds = [](const ASN1_TIME* t) {
    std::tm tm{};
    EXPECT_EQ(ASN1_TIME_to_tm(t, &tm), 1);
    return timegm(&tm);
  };
  const std::time_t nb = seconds(X509_get0_notBefore(cert.get()));
  const std::time_t na = seconds(X509_get0_notAfter(cert.get()));
  for (int round = 0; round < 2; ++round) {
    EXPECT_FALSE(v.verify(e, std::nullopt, nb - 1, false).ok) << "before notBefore";
    EXPECT_FALSE(v.verify(e, std::nullopt, nb - 1, false).ok) << "asked again";
    EXPECT_TRUE(v.verify(e, std::nullopt, nb, false).ok) << "at notBefore";
    EXPECT_TRUE(v.verify(e, std::nullopt, na - 1, false).ok) << "the last valid second";
    EXPECT_FALSE(v.verify(e, std::nullopt, na, false).ok) << "at notAfter";
    EXPECT_FALSE(v.verify(e, std::nullopt, na, false).ok) << "asked again";
    EXPECT_TRUE(v.verify(e, std::nullopt, na - 1, false).ok);
  }
}

// The cache's "never held" mark is INT64_MIN: a `now` of that very value is still compared (a
// fresh certificate is not taken as valid at it), also when asked again.
TEST(Verifier, ATimeEqualToTheCachesNeverHeldMarkIsStillCompared) {
  Verifier v;
  Signer s = make_signer("EC", -1, 30);
  const Envelope e = signed_envelope(s, SigScheme::Ecdsa);
  const auto never = static_cast<std::time_t>(std::numeric_limits<int64_t>::min());
  for (int round = 0; round < 2; ++round) {
    Verdict d = v.verify(e, std::nullopt, never, false);
    EXPECT_FALSE(d.ok) << "round " << round;
    EXPECT_EQ(d.kind, "certificate") << d.reason;
    EXPECT_TRUE(v.verify(e, std::nullopt, kNow, false).ok);
  }
}

// One Verifier shared by threads (its certificate cache, the last certificate used and each
// certificate's "valid at" second are shared): four threads verify two senders' messages at
// times on both sides of one certificate's notAfter, each getting the verdict of its own `now`.
TEST(Verifier, ThreadsSharingOneVerifierEachGetTheVerdictOfTheirOwnTime) {
  Verifier v;
  Signer a = make_signer("EC", -1, 30), b = make_signer("RSA", -1, 60);
  const Envelope from_a = signed_envelope(a, SigScheme::Ecdsa);
  const Envelope from_b = signed_envelope(b, SigScheme::RsaPkcs1);
  const std::time_t day = 86400;
  // a is valid at kNow and expired at kNow + 45 days; b is valid at both.
  const std::time_t times[] = {kNow, kNow + 45 * day};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        const std::time_t now = times[(i + t) % 2];
        const bool a_valid = now == kNow;
        if (v.verify(from_a, std::nullopt, now, false).ok != a_valid) ++wrong;
        if (!v.verify(from_b, std::nullopt, now, false).ok) ++wrong;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

// A validity time that is not RFC 5280's form (here fractional seconds, which DER allows and
// X509_cmp_time cannot compare) is refused, not taken as valid: this certificate expired in
// 2020, and before the check it verified in a signature-only policy.
TEST(Verifier, AValidityTimeThatCannotBeComparedIsRefused) {
  for (const char* bad_after : {"20200101000000.5Z", "20990101000000.5Z"}) {
    Signer s = make_signer("EC", -30, 30);
    X509Ptr cert = parse_der_strict(s.der);
    ASSERT_TRUE(cert);
    ASN1_TIME* t = ASN1_TIME_new();
    ASSERT_EQ(ASN1_GENERALIZEDTIME_set_string(t, bad_after), 1) << bad_after;
    ASSERT_EQ(X509_set1_notAfter(cert.get(), t), 1);
    ASN1_TIME_free(t);
    ASSERT_GT(X509_sign(cert.get(), s.key.get(), EVP_sha256()), 0);
    s.der = to_der(cert.get());
    ASSERT_TRUE(parse_der_strict(s.der)) << "it is DER, and parses";
    Verifier v;
    Verdict d = v.verify(signed_envelope(s, SigScheme::Ecdsa), std::nullopt, kNow, false);
    EXPECT_FALSE(d.ok) << bad_after;
    EXPECT_EQ(d.kind, "certificate");
    EXPECT_NE(d.reason.find("validity period"), std::string::npos) << d.reason;
  }
}

// A scheme that names another key type than the certificate's is refused by the scheme check
// itself, also when the signature would verify with the key's default padding (an RSA PKCS#1
// signature labelled ECDSA), and also once the certificate is cached.
TEST(Verifier, ASchemeOfAnotherKeyTypeIsRefusedBeforeTheSignatureIsChecked) {
  Verifier v;
  Signer rsa = make_signer("RSA"), ec = make_signer("EC");
  for (int round = 0; round < 2; ++round) {
    EXPECT_TRUE(v.verify(signed_envelope(rsa, SigScheme::RsaPkcs1), std::nullopt, kNow, false).ok);
    Verdict d = v.verify(signed_envelope(rsa, SigScheme::Ecdsa), std::nullopt, kNow, false);
    EXPECT_FALSE(d.ok);
    EXPECT_NE(d.reason.find("does not match"), std::string::npos) << d.reason;
    EXPECT_TRUE(v.verify(signed_envelope(ec, SigScheme::Ecdsa), std::nullopt, kNow, false).ok);
    Verdict d2 = v.verify(signed_envelope(ec, SigScheme::RsaPkcs1), std::nullopt, kNow, false);
    EXPECT_FALSE(d2.ok);
    EXPECT_NE(d2.reason.find("does not match"), std::string::npos) << d2.reason;
  }
}

// Messages of several senders, interleaved, through one Verifier: each is checked against its
// own certificate (its digest, its key's type), whichever certificate was used last.
TEST(Verifier, InterleavedSendersAreEachCheckedWithTheirOwnCertificate) {
  Verifier v;
  Signer a = make_signer("EC"), b = make_signer("RSA");
  const Envelope from_a = signed_envelope(a, SigScheme::Ecdsa);
  const Envelope from_b = signed_envelope(b, SigScheme::RsaPkcs1);
  Envelope a_with_b_cert = from_a;
  a_with_b_cert.sender_cert = b.der;
  Envelope b_as_ecdsa = from_b;
  b_as_ecdsa.sig_scheme = SigScheme::Ecdsa;
  // A second EC sender whose certificate has the same length as a's (its signature's DER
  // length varies): a comparison of lengths or prefixes would take one for the other.
  Signer c = make_signer("EC");
  for (int i = 0; i < 200 && c.der.size() != a.der.size(); ++i) c = make_signer("EC");
  ASSERT_EQ(c.der.size(), a.der.size());
  ASSERT_NE(c.der, a.der);
  const Envelope from_c = signed_envelope(c, SigScheme::Ecdsa);
  Envelope a_with_c_cert = from_a;
  a_with_c_cert.sender_cert = c.der;
  for (int round = 0; round < 2; ++round) {
    EXPECT_TRUE(v.verify(from_a, std::nullopt, kNow, false).ok);
    EXPECT_FALSE(v.verify(a_with_c_cert, std::nullopt, kNow, false).ok);
    EXPECT_TRUE(v.verify(from_c, std::nullopt, kNow, false).ok);
    EXPECT_FALSE(v.verify(a_with_c_cert, std::nullopt, kNow, false).ok);
    EXPECT_TRUE(v.verify(from_a, std::nullopt, kNow, false).ok);
    EXPECT_FALSE(v.verify(a_with_b_cert, std::nullopt, kNow, false).ok);
    EXPECT_TRUE(v.verify(from_b, std::nullopt, kNow, false).ok);
    EXPECT_FALSE(v.verify(b_as_ecdsa, std::nullopt, kNow, false).ok);
    EXPECT_TRUE(v.verify(from_a, std::nullopt, kNow, false).ok);
    EXPECT_TRUE(v.verify(from_a, std::nullopt, kNow, false).ok);
    EXPECT_TRUE(v.verify(from_b, std::nullopt, kNow, false).ok);
  }
}

TEST(Verifier, RegistryConfirmsOrRejectsTheSid) {
  Verifier v;
  Signer ec = make_signer("EC");
  Envelope e = signed_envelope(ec, SigScheme::Ecdsa);
  Verdict good = v.verify(e, Sid::unix_user(1000).bytes(), kNow, false);
  EXPECT_TRUE(good.ok);
  EXPECT_TRUE(good.sender_confirmed);
  Verdict other = v.verify(e, Sid::unix_user(1001).bytes(), kNow, false);
  EXPECT_FALSE(other.ok);
  EXPECT_NE(other.reason.find("registered to another SID"), std::string::npos);
}

TEST(Verifier, WeakHashesOnlyWhenAllowed) {
  Verifier v;
  Signer ec = make_signer("EC");
  Envelope e = signed_envelope(ec, SigScheme::Ecdsa, CALG_SHA1);
  EXPECT_FALSE(v.verify(e, std::nullopt, kNow, false).ok);
  EXPECT_TRUE(v.verify(e, std::nullopt, kNow, true).ok);
  EXPECT_THROW(hash_for(CALG_MD5, false), mqsec::Error);
  EXPECT_THROW(hash_for(0x1234, true), mqsec::Error);
  try {
    hash_for(CALG_SHA1, false);
  } catch (const mqsec::Error& err) {
    EXPECT_EQ(err.code(), MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
  }
}

TEST(Verifier, SchemeMustMatchTheKeyType) {
  Verifier v;
  Signer ec = make_signer("EC");
  Envelope e = signed_envelope(ec, SigScheme::Ecdsa);
  e.sig_scheme = SigScheme::RsaPkcs1;
  EXPECT_FALSE(v.verify(e, std::nullopt, kNow, false).ok);
  Envelope no_cert = signed_envelope(ec, SigScheme::Ecdsa);
  no_cert.sender_cert = {1, 2, 3};
  EXPECT_FALSE(v.verify(no_cert, std::nullopt, kNow, false).ok);
}

TEST(Verifier, NoSenderIdIsAuthenticButNotConfirmed) {
  Verifier v;
  Signer ec = make_signer("EC");
  Envelope e = signed_envelope(ec, SigScheme::Ecdsa);
  e.sender_id_type = MQMSG_SENDERID_TYPE_NONE;
  e.sender_id.clear();
  // re-sign without the SID
  Envelope resigned = e;
  mqsec::testing::sign_envelope(resigned, ec.key.get());
  Verdict d = v.verify(resigned, Sid::unix_user(1000).bytes(), kNow, false);
  EXPECT_TRUE(d.ok) << d.reason;
  EXPECT_FALSE(d.sender_confirmed);
}
