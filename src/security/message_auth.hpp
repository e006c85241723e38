// Message authentication: signing an envelope with a security context (sender side) and
// verifying it (receiver side). The signature covers to_be_signed(envelope) (see
// docs/signature-format.md), hashed on the host with PROPID_M_HASH_ALG and signed on the token.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "pkcs11/signer.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/security/openssl.hpp"

namespace mqsec::security {

// CALG_* -> hash. SHA-256/384/512 always; MD5 and SHA-1 only with allow_weak. Throws
// mqsec::Error(MQ_ERROR_ILLEGAL_PROPERTY_VALUE) otherwise.
pkcs11::Hash hash_for(uint32_t calg, bool allow_weak);
const EVP_MD* evp_md(pkcs11::Hash h);

// Fills hash_alg, sig_scheme, sender_cert, sender id (when attach_sid) and signature.
// Throws mqsec::Error: MQ_ERROR_CANNOT_SIGN_DATA_EX when the token cannot sign (removed and
// not re-inserted, key gone, device error), MQ_ERROR_INSUFFICIENT_RESOURCES (no session or
// memory), MQ_ERROR_ILLEGAL_PROPERTY_VALUE (hash refused).
void sign_envelope(Envelope& e, const SecurityContext& ctx, uint32_t calg, bool allow_weak,
                   bool attach_sid);

struct Verdict {
  bool signed_message = false;    // the message carries a signature
  bool ok = false;                // signed and valid (or unsigned: nothing to verify)
  uint8_t authenticated_ex = 0;   // PROPID_M_AUTHENTICATED_EX when ok and signed
  bool sender_confirmed = false;  // certificate registered and its SID == SENDERID
  std::string reason;             // why not ok
  std::string subject;            // sender certificate subject, when parsed
};

// Verifies envelopes; caches parsed certificates by digest so a stream of messages from the
// same sender parses its certificate once. Thread-safe.
class Verifier {
 public:
  // `registered_sid`: the SID the certificate registry binds the sender certificate to, if
  // any. `now`: Unix time for the validity check.
  Verdict verify(const Envelope& e, const std::optional<Bytes>& registered_sid, std::time_t now,
                 bool allow_weak);
  // The same, asking `registry` (certificate SHA-256 -> registered SID) only for signed
  // messages, with the digest computed once.
  using Registry = std::function<std::optional<Bytes>(const Bytes& cert_sha256)>;
  Verdict verify(const Envelope& e, const Registry& registry, std::time_t now, bool allow_weak);

 private:
  struct Cached {
    std::shared_ptr<X509> cert;
    std::string subject;
  };
  std::optional<Cached> certificate(const Bytes& der, const Bytes& digest);
  Verdict check(const Envelope& e, const Bytes& digest, const Cached& cert, std::time_t now,
                bool allow_weak);
  std::mutex mu_;
  std::map<Bytes, Cached> cache_;
};

}  // namespace mqsec::security
