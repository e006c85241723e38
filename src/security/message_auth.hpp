// Message authentication: signing an envelope with a security context (sender side) and
// verifying it (receiver side). The signature covers to_be_signed(envelope) (see
// docs/signature-format.md), hashed on the host with PROPID_M_HASH_ALG and signed on the token;
// or, for a batch, one signature on the token covers a statement naming the root of a Merkle
// tree over many messages' TBS, and each message carries its own proof (section 10).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pkcs11/signer.hpp"
#include "src/security/bytes_less.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/security/openssl.hpp"
#include "src/security/trust.hpp"

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

// Everything sign_envelope fills except the signature: hash_alg (checked with hash_for),
// sig_scheme, sender_cert, sender id. Clears the signature and any batch proof. Throws
// mqsec::Error(MQ_ERROR_ILLEGAL_PROPERTY_VALUE) for a refused hash.
void prepare_envelope(Envelope& e, const SecurityContext& ctx, uint32_t calg, bool allow_weak,
                      bool attach_sid);

// Signs a batch of envelopes with ONE signature on the token (docs/signature-format.md,
// section 10): each prepared with prepare_envelope(ctx) (the same certificate, scheme and
// hash_alg for all; every other field final, since TBS is taken now). Fills each envelope's
// signature and batch proof (leaf index = position in `batch`). A batch of one is exactly
// sign_envelope's signature (format version 1 or 2, no proof). One C_Sign, so a PIN-always key
// needs one context-specific login per batch. On failure no envelope is changed.
// Throws mqsec::Error: MQ_ERROR_INVALID_PARAMETER (empty, more than kMaxBatchSize, a null
// pointer, envelopes not prepared with this context or with different hashes),
// MQ_ERROR_ILLEGAL_PROPERTY_VALUE (the hash is refused; for two or more messages anything but
// SHA-256/384/512), and sign_envelope's token errors (MQ_ERROR_CANNOT_SIGN_DATA_EX, ...).
void sign_batch(std::span<Envelope* const> batch, const SecurityContext& ctx, bool allow_weak);

// The same with the device abstracted: `sign` signs a digest made with the given hash (what
// SecurityContext::sign_digest does on the token). `cert_sha256` is SHA-256 of the envelopes'
// sender_cert. For tests with software keys, and for whoever signs without a SecurityContext.
using DigestSigner = std::function<Bytes(pkcs11::Hash, std::span<const uint8_t> digest)>;
void sign_batch(std::span<Envelope* const> batch, std::span<const uint8_t> cert_sha256,
                const DigestSigner& sign, bool allow_weak);

struct Verdict {
  bool signed_message = false;    // the message carries a signature
  bool ok = false;                // signed and valid (or unsigned: nothing to verify)
  uint8_t authenticated_ex = 0;   // PROPID_M_AUTHENTICATED_EX when ok and signed
  bool sender_confirmed = false;  // SENDERID confirmed (certificate SID or a registry)
  uint32_t trust = 0;             // trust_bits::* that passed (PROPID_M_MQSEC_TRUST)
  std::string reason;             // why not ok
  // Why not ok, for machines (`mqsec rejected --json`): "malformed", "signature" (missing,
  // altered, scheme mismatch; for a batch-signed message also a malformed proof, a statement
  // whose hash is not the message's, a proof that does not lead to the signed root),
  // "certificate" (not DER, not yet valid, expired), "weak-hash", "sid-mismatch", "chain",
  // "revoked", "revocation-unknown", "leaf", "signer", "clock", "too-old" (sent before the
  // replay window). The receive path adds "unsigned", "replay", "wrong-queue", "too-large".
  std::string kind;
  std::string subject;  // sender certificate subject, when parsed
};

// A queue's authorized signer (IBM MQ AMS's SIGNER): a subject in subject_string()'s form
// ("CN=alice,O=Payroll") or a SID in text form; exactly one of the two is set.
struct AuthorizedSigner {
  std::string subject;
  std::string sid;
  friend bool operator==(const AuthorizedSigner&, const AuthorizedSigner&) = default;
};

// Where confirmed SIDs come from: certificate SHA-256 -> SID bytes, or nullopt.
using Registry = std::function<std::optional<Bytes>(const Bytes& cert_sha256)>;

// What a receive demands of a message, assembled by the receive path from the system config
// and the queue's own settings.
struct VerifyPolicy {
  std::time_t now = 0;
  bool allow_weak = false;
  TrustRequire require = TrustRequire::Signature;  // the stronger of system and queue
  const TrustStore* trust = nullptr;               // null: no [trust] anchors configured
  Registry system_registry;                        // root-owned; may be empty
  Registry user_registry;                          // the receiving user's store; may be empty
  std::vector<AuthorizedSigner> signers;           // empty: any signer
  int64_t max_clock_skew_seconds = 300;            // sent time further ahead -> "clock"
  int64_t replay_window_seconds = 0;               // > 0: signed earlier than this -> "too-old"
};

// Verifies envelopes; caches parsed certificates by digest so a stream of messages from the
// same sender parses its certificate once, and recognises the last certificate it used by its
// bytes, so such a stream does not hash it either. Thread-safe.
class Verifier {
 public:
  // Signature (for a batch-signed message: the proof up to the statement's root, then the
  // signature over the statement), validity period, hash policy, then (when the message
  // carries a SENDERID) the confirmation sources in order: a SID in a certificate whose chain
  // validated, the system registry, the user registry. A source that binds the certificate to
  // another SID than the message's rejects it ("sid-mismatch"). Then the trust requirement,
  // authorized signers (subject, or a SID that was confirmed) and the sent-time checks. Unsigned
  // messages pass with signed_message = false (the queue decides whether that is allowed).
  Verdict verify(const Envelope& e, const VerifyPolicy& policy);

  // Signature-only verification with one registry (tests, `mqsec receive --export`).
  Verdict verify(const Envelope& e, const std::optional<Bytes>& registered_sid, std::time_t now,
                 bool allow_weak);
  Verdict verify(const Envelope& e, const Registry& registry, std::time_t now, bool allow_weak);

 private:
  static constexpr int64_t kNeverValid = std::numeric_limits<int64_t>::min();
  static constexpr size_t kVerifyTemplates = 5 * 4;  // pkcs11::Hash x SigScheme
  // A parsed sender certificate and what every verification with it needs, worked out once.
  struct Cached {
    Bytes der;     // the certificate's bytes, as received
    Bytes digest;  // their SHA-256: the registries' key, and part of the signed bytes
    std::shared_ptr<X509> cert;
    std::string subject;
    bool is_rsa = false, is_ec = false;  // the key's type
    // The last `now` (a whole second) at which the validity period held, or kNeverValid: the
    // period is compared again (X509_cmp_time) only when `now` changes (and always for a `now`
    // of kNeverValid itself).
    mutable std::atomic<int64_t> valid_at{kNeverValid};
    // A context initialised for verifying with this certificate's key, per hash and scheme
    // (made on first use, then only copied: a copy costs less than EVP_DigestVerifyInit, which
    // looks its algorithms up every time). Owned; freed with the entry.
    mutable std::array<std::atomic<EVP_MD_CTX*>, kVerifyTemplates> templates{};
    Cached() = default;
    Cached(const Cached&) = delete;
    Cached& operator=(const Cached&) = delete;
    ~Cached();
  };
  // The template of `cached` for `hash` and `scheme` (nullptr when OpenSSL refuses them).
  static EVP_MD_CTX* verify_template(const Cached& cached, pkcs11::Hash hash, SigScheme scheme);
  std::shared_ptr<const Cached> certificate(const Bytes& der);
  Verdict check(const Envelope& e, const Cached& cert, std::time_t now, bool allow_weak);
  std::mutex mu_;
  std::map<Bytes, std::shared_ptr<const Cached>, BytesLess> cache_;  // by digest
  std::shared_ptr<const Cached> last_;  // the certificate of the last verification
};

}  // namespace mqsec::security
