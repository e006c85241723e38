// libFuzzer target for the certificate buffer of MQGetSecurityContextEx and
// MQRegisterCertificate: everything done with the caller's bytes before a token is touched.
// parse_der_strict must accept exactly one DER certificate and nothing else; an accepted one
// then goes through the token-independent steps that follow it (re-encoding, digest, subject
// for messages, the public key as the key search reads it, validity times), and through the
// receiver's Verifier, which parses the same kind of buffer from a message. No token, no
// PKCS#11 module: key matching itself needs a token and is covered by the integration tests.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <span>

#include "src/security/message_auth.hpp"
#include "src/security/openssl.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Real certificates are a few KiB; the cap keeps each run fast and memory bounded.
  constexpr size_t kMaxInput = 1 << 16;
  if (size > kMaxInput) return 0;
  using namespace mqsec::security;
  const std::span<const uint8_t> der(data, size);
  X509Ptr cert = parse_der_strict(der);
  if (!cert) return 0;

  // parse_der_strict promises DER, and DER has one encoding per value: what it accepts must
  // re-encode to exactly the input. (OpenSSL's d2i_X509 also takes some BER, e.g. odd
  // encodings of the outer signature algorithm's parameters, which the signature does not
  // cover.) MQSEC_FUZZ_KNOWN_NON_DER=1 skips this check, to fuzz the rest while a reported
  // instance is not fixed yet.
  const Bytes again = to_der(cert.get());
  if (again.empty()) abort();
  static const bool skip_non_der = std::getenv("MQSEC_FUZZ_KNOWN_NON_DER") != nullptr;
  if (!skip_non_der && (again.size() != size || std::memcmp(again.data(), data, size) != 0))
    abort();
  if (sha256(der).size() != 32) abort();
  (void)subject_string(cert.get());

  // The public key as the key search reads it (RSA modulus, EC point), before any token call.
  if (EVP_PKEY* pub = X509_get0_pubkey(cert.get())) {
    if (EVP_PKEY_is_a(pub, "RSA") == 1) {
      BIGNUM* n = nullptr;
      if (EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) == 1) {
        Bytes mod(static_cast<size_t>(BN_num_bytes(n)));
        BN_bn2bin(n, mod.data());
        BN_free(n);
      }
    } else if (EVP_PKEY_is_a(pub, "EC") == 1) {
      size_t len = 0;
      if (EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0,
                                          &len) == 1 &&
          len <= size) {
        Bytes point(len);
        (void)EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point.data(),
                                              point.size(), &len);
      }
    }
  }
  std::time_t now = 1700000000;  // fixed, so that a run is reproducible
  (void)X509_cmp_time(X509_get0_notBefore(cert.get()), &now);
  (void)X509_cmp_time(X509_get0_notAfter(cert.get()), &now);

  // The receiver's path for the same bytes: a signed message carrying this certificate and a
  // signature that cannot be right. verify() reports, it must not throw or crash.
  Envelope e;
  e.body = {'f', 'u', 'z', 'z'};
  e.hash_alg = 0x800C;  // CALG_SHA_256
  e.sender_cert.assign(data, data + size);
  e.signature.assign(64, 0x5A);
  for (SigScheme scheme : {SigScheme::RsaPkcs1, SigScheme::RsaPss, SigScheme::Ecdsa}) {
    e.sig_scheme = scheme;
    Verifier verifier;
    (void)verifier.verify(e, std::nullopt, now, false);
  }
  return 0;
}
