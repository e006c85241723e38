// The trust policy a receiver applies to a sender certificate beyond its signature: chain
// building to configured anchors (OpenSSL's X509_verify_cert, never hand-written chain logic),
// revocation (CRLs and OCSP, both cached), the leaf checks a signing certificate must pass,
// and the sender SID a certificate carries (Microsoft's SID extension or the SAN URI).
// docs/security.md explains what each outcome means to an application.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>

#include "src/security/config.hpp"
#include "src/security/openssl.hpp"

namespace mqsec::security {

// Bits of PROPID_M_MQSEC_TRUST (mq.h, MQSEC_TRUST_*): which trust checks a message passed.
namespace trust_bits {
constexpr uint32_t kSignature = 0x01;           // the signature verified (PROPID_M_AUTHENTICATED)
constexpr uint32_t kChain = 0x02;               // the certificate chains to a configured anchor
constexpr uint32_t kRevocationChecked = 0x04;   // a CRL or OCSP answer says "not revoked"
constexpr uint32_t kSidFromCertificate = 0x08;  // SENDERID confirmed by the certificate's SID
constexpr uint32_t kSystemRegistry = 0x10;      // SENDERID confirmed by the root-owned registry
constexpr uint32_t kUserRegistry = 0x20;        // ... by the receiving user's own registry
constexpr uint32_t kSignerAuthorized = 0x40;    // the queue names authorized signers; one matched
}  // namespace trust_bits

// The SID a certificate carries, in text form ("S-1-5-21-..."): the SID extension
// (OID 1.3.6.1.4.1.311.25.2) first, else a SAN URI "tag:microsoft.com,2022-09-14:sid:<SID>".
// nullopt when it has neither or the value is not a well-formed SID. Only meaningful for a
// certificate whose chain was validated.
std::optional<std::string> sid_from_certificate(X509* cert);

struct TrustOutcome {
  bool ok = false;     // the certificate meets the required level
  std::string reason;  // why not (names the check: "chain: ...", "revoked: ...")
  std::string kind;    // short machine-readable reason: "chain", "revoked", "revocation-unknown",
                       // "leaf" (key usage, CA flag, EKU, key size/curve)
  uint32_t flags = 0;  // trust_bits::kChain, kRevocationChecked
  std::optional<std::string> certificate_sid;  // set only when the chain validated
};

// Anchors, intermediates, CRLs and OCSP settings of one [trust] configuration, loaded once
// and shared by every receive of the process (thread-safe). CRL files are re-read when they
// change; OCSP answers are cached until their nextUpdate (at most an hour), so a receiver never
// makes one network request per message.
class TrustStore {
 public:
  virtual ~TrustStore() = default;
  // Evaluates `leaf` (cert_sha256: SHA-256 of its DER, the cache key) against `required` at
  // `now`. With anchors configured the chain is always attempted, so flags say what passed even
  // when only the signature is required; a failed chain then fails only when `required`
  // demands one.
  virtual TrustOutcome evaluate(X509* leaf, const Bytes& cert_sha256, TrustRequire required,
                                std::time_t now) const = 0;
};

// The process's TrustStore for `cfg` (cached: the same settings give the same object).
// Throws mqsec::Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, reason) when an anchor cannot be read
// or holds no certificate: a receiver must not silently run without the anchors it was given.
std::shared_ptr<const TrustStore> trust_store_for(const TrustConfig& cfg);

}  // namespace mqsec::security
