// Envelope signing and verification.
#include "src/security/message_auth.hpp"

#include <mq.h>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "pkcs11/error.hpp"
#include "src/security/identity.hpp"
#include "src/security/log.hpp"
#include "src/security/merkle.hpp"
#include "src/security/personal_store.hpp"

namespace mqsec::security {
namespace {

uint8_t level_for(uint32_t auth_level) {
  switch (auth_level) {
    case MQMSG_AUTH_LEVEL_SIG10:
      return MQMSG_AUTHENTICATED_SIG10;
    case MQMSG_AUTH_LEVEL_SIG30:
      return MQMSG_AUTHENTICATED_SIG30;
    default:  // ALWAYS and SIG20: our signature covers MSMQ 2.0's fields (and more)
      return MQMSG_AUTHENTICATED_SIG20;
  }
}

SigScheme scheme_of(pkcs11::Scheme s) {
  switch (s) {
    case pkcs11::Scheme::RsaPkcs1:
      return SigScheme::RsaPkcs1;
    case pkcs11::Scheme::RsaPss:
      return SigScheme::RsaPss;
    case pkcs11::Scheme::Ecdsa:
      return SigScheme::Ecdsa;
  }
  return SigScheme::None;
}

Bytes digest_of(pkcs11::Hash hash, std::span<const uint8_t> data) {
  const EVP_MD* md = evp_md(hash);
  Bytes digest(static_cast<size_t>(EVP_MD_get_size(md)));
  if (!digest_parts(md, {data}, digest.data())) {
    throw Error(MQ_ERROR_CORRUPTED_SECURITY_DATA, "hashing the message failed");
  }
  return digest;
}

// The digest of to_be_signed(e, cert_sha256), hashed as the bytes are written: the body is
// hashed where it is, not copied into a TBS buffer first.
Bytes digest_of_tbs(pkcs11::Hash hash, const Envelope& e, std::span<const uint8_t> cert_sha256) {
  struct Hasher final : ByteSink {
    DigestStream d;
    explicit Hasher(const EVP_MD* md) : d(md) {}
    void update(std::span<const uint8_t> bytes) override { d.update(bytes); }
  };
  const EVP_MD* md = evp_md(hash);
  Bytes digest(static_cast<size_t>(EVP_MD_get_size(md)));
  Hasher h(md);
  write_to_be_signed(e, cert_sha256, h);
  if (!h.d.finish(digest.data())) {
    throw Error(MQ_ERROR_CORRUPTED_SECURITY_DATA, "hashing the message failed");
  }
  return digest;
}

[[noreturn]] void bad_batch(const std::string& why) {
  throw Error(MQ_ERROR_INVALID_PARAMETER, "batch signature: " + why);
}

}  // namespace

pkcs11::Hash hash_for(uint32_t calg, bool allow_weak) {
  switch (calg) {
    case CALG_SHA_256:
      return pkcs11::Hash::Sha256;
    case CALG_SHA_384:
      return pkcs11::Hash::Sha384;
    case CALG_SHA_512:
      return pkcs11::Hash::Sha512;
    case CALG_SHA1:
      if (allow_weak) return pkcs11::Hash::Sha1;
      break;
    case CALG_MD5:
      if (allow_weak) return pkcs11::Hash::Md5;
      break;
    default:
      throw Error(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
                  "PROPID_M_HASH_ALG " + std::to_string(calg) + " is not a known hash algorithm");
  }
  throw Error(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
              "PROPID_M_HASH_ALG: MD5 and SHA-1 are refused; use CALG_SHA_256 (or set [security] "
              "allow-weak-hash = true)");
}

const EVP_MD* evp_md(pkcs11::Hash h) {
  switch (h) {
    case pkcs11::Hash::Md5:
      return EVP_md5();
    case pkcs11::Hash::Sha1:
      return EVP_sha1();
    case pkcs11::Hash::Sha256:
      return EVP_sha256();
    case pkcs11::Hash::Sha384:
      return EVP_sha384();
    case pkcs11::Hash::Sha512:
      return EVP_sha512();
  }
  return EVP_sha256();
}

void prepare_envelope(Envelope& e, const SecurityContext& ctx, uint32_t calg, bool allow_weak,
                      bool attach_sid) {
  (void)hash_for(calg, allow_weak);  // refused hashes throw before anything changes
  e.hash_alg = calg;
  e.sig_scheme = scheme_of(ctx.scheme());
  e.sender_cert = ctx.certificate();
  if (attach_sid) {
    e.sender_id_type = MQMSG_SENDERID_TYPE_SID;
    e.sender_id = ctx.sid().bytes();
  } else {
    e.sender_id_type = MQMSG_SENDERID_TYPE_NONE;
    e.sender_id.clear();
  }
  e.signature.clear();
  e.batch = {};
}

void sign_envelope(Envelope& e, const SecurityContext& ctx, uint32_t calg, bool allow_weak,
                   bool attach_sid) {
  pkcs11::Hash hash = hash_for(calg, allow_weak);
  prepare_envelope(e, ctx, calg, allow_weak, attach_sid);
  pkcs11::CallScope scope;  // OpenSSL's locks too must not be held across a fork
  Bytes digest = digest_of_tbs(hash, e, ctx.certificate_sha256());
  try {
    e.signature = ctx.sign_digest(hash, digest);
  } catch (const pkcs11::Error& err) {
    throw_mapped(err, MQ_ERROR_CANNOT_SIGN_DATA_EX, "signing a message");
  }
}

void sign_batch(std::span<Envelope* const> batch, std::span<const uint8_t> cert_sha256,
                const DigestSigner& sign, bool allow_weak) {
  if (batch.empty() || batch.size() > kMaxBatchSize) {
    bad_batch("a batch has 1 to " + std::to_string(kMaxBatchSize) + " messages, not " +
              std::to_string(batch.size()));
  }
  for (const Envelope* e : batch) {
    if (e == nullptr) bad_batch("no envelope");
  }
  const Envelope& first = *batch.front();
  if (first.sig_scheme == SigScheme::None || first.sender_cert.empty()) {
    bad_batch("the envelopes are not prepared for signing (no scheme or certificate)");
  }
  for (const Envelope* e : batch) {
    if (e->hash_alg != first.hash_alg || e->sig_scheme != first.sig_scheme ||
        e->sender_cert != first.sender_cert) {
      bad_batch("the envelopes of one batch share one certificate, scheme and hash algorithm");
    }
  }
  const pkcs11::Hash hash = hash_for(first.hash_alg, allow_weak);
  if (batch.size() == 1) {
    // A batch of one is an ordinary signature over TBS: format version 1 or 2, no proof.
    Envelope& e = *batch.front();
    Bytes signature;
    {
      pkcs11::CallScope scope;
      Bytes tbs = to_be_signed(e, cert_sha256);
      signature = sign(hash, digest_of(hash, tbs));
    }
    e.batch = {};
    e.signature = std::move(signature);
    return;
  }
  if (hash != pkcs11::Hash::Sha256 && hash != pkcs11::Hash::Sha384 &&
      hash != pkcs11::Hash::Sha512) {
    throw Error(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
                "batch signature: only SHA-256, SHA-384 and SHA-512 have a batch form; sign "
                "MD5 and SHA-1 messages one by one");
  }
  const EVP_MD* md = evp_md(hash);
  std::vector<Bytes> leaves;
  leaves.reserve(batch.size());
  for (const Envelope* e : batch) {
    pkcs11::CallScope scope;  // one message at a time, so a fork() need not wait for them all
    leaves.push_back(merkle::leaf_hash(md, to_be_signed(*e, cert_sha256)));
  }
  BatchProof proof;
  std::optional<merkle::Tree> tree;
  Bytes signature;
  {
    pkcs11::CallScope scope;
    tree.emplace(md, std::move(leaves));
    proof.hash_alg = first.hash_alg;
    proof.tree_size = static_cast<uint32_t>(batch.size());
    proof.root = tree->root();
    proof.path = tree->path(0);  // leaf 0's, so that the proof is complete for the statement
    signature = sign(hash, digest_of(hash, batch_statement(proof)));  // the one device signature
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    Envelope& e = *batch[i];
    e.batch = proof;
    e.batch.leaf_index = static_cast<uint32_t>(i);
    e.batch.path = tree->path(i);
    e.signature = signature;
  }
}

void sign_batch(std::span<Envelope* const> batch, const SecurityContext& ctx, bool allow_weak) {
  for (const Envelope* e : batch) {
    if (e != nullptr &&
        (e->sender_cert != ctx.certificate() || e->sig_scheme != scheme_of(ctx.scheme()))) {
      bad_batch("an envelope was not prepared with this security context");
    }
  }
  try {
    sign_batch(
        batch, ctx.certificate_sha256(),
        [&](pkcs11::Hash h, std::span<const uint8_t> digest) { return ctx.sign_digest(h, digest); },
        allow_weak);
  } catch (const pkcs11::Error& err) {
    throw_mapped(err, MQ_ERROR_CANNOT_SIGN_DATA_EX, "signing a batch of messages");
  }
}

std::shared_ptr<const Verifier::Cached> Verifier::certificate(const Bytes& der) {
  std::shared_ptr<const Cached> last;
  {
    std::lock_guard lock(mu_);
    last = last_;
  }
  // The same bytes: no hash needed (compared unlocked: an entry never changes once published).
  if (last && last->der == der) return last;
  Bytes digest = sha256(der);
  std::lock_guard lock(mu_);
  if (auto it = cache_.find(digest); it != cache_.end()) {
    last_ = it->second;
    return last_;
  }
  X509Ptr parsed = parse_der_strict(der);
  if (!parsed) return nullptr;
  auto c = std::make_shared<Cached>();
  c->der = der;
  c->digest = std::move(digest);
  c->cert = std::shared_ptr<X509>(parsed.release(), X509_free);
  c->subject = subject_string(c->cert.get());
  EVP_PKEY* pub = X509_get0_pubkey(c->cert.get());
  c->is_rsa = pub && EVP_PKEY_is_a(pub, "RSA") == 1;
  c->is_ec = pub && EVP_PKEY_is_a(pub, "EC") == 1;
  if (cache_.size() >= 1024) cache_.clear();  // bounded; senders are few in practice
  cache_.emplace(c->digest, c);
  last_ = c;
  return c;
}

Verdict Verifier::verify(const Envelope& e, const std::optional<Bytes>& registered_sid,
                         std::time_t now, bool allow_weak) {
  return verify(
      e, [&](const Bytes&) { return registered_sid; }, now, allow_weak);
}

Verdict Verifier::verify(const Envelope& e, const Registry& registry, std::time_t now,
                         bool allow_weak) {
  VerifyPolicy p;
  p.now = now;
  p.allow_weak = allow_weak;
  p.user_registry = registry;
  p.max_clock_skew_seconds = -1;  // not checked on this path
  return verify(e, p);
}

Verdict Verifier::verify(const Envelope& e, const VerifyPolicy& p) {
  Verdict v;
  if (e.sig_scheme == SigScheme::None && e.signature.empty() && !e.batch.present()) {
    v.ok = true;  // unsigned: nothing to verify (the queue decides whether that is allowed)
    return v;
  }
  v.signed_message = true;
  auto fail = [&](const char* kind, std::string reason) {
    v.ok = false;
    v.authenticated_ex = 0;
    v.sender_confirmed = false;
    v.kind = kind;
    v.reason = std::move(reason);
    return v;
  };
  if (e.signature.empty() || e.sender_cert.empty()) {
    return fail("signature", "signed message without signature or sender certificate");
  }
  if (e.batch.present() && e.sig_scheme == SigScheme::None) {
    return fail("signature", "batch proof on a message without a signature scheme");
  }
  pkcs11::CallScope scope;  // OpenSSL's locks must not be held across a fork
  const std::shared_ptr<const Cached> cert = certificate(e.sender_cert);
  if (!cert) return fail("certificate", "sender certificate is not a valid DER certificate");
  const Bytes& digest = cert->digest;
  v = check(e, *cert, p.now, p.allow_weak);
  if (!v.ok) return v;
  v.trust |= trust_bits::kSignature;

  // Trust policy: chain and revocation (attempted whenever anchors exist).
  std::optional<std::string> cert_sid;
  if (p.trust != nullptr) {
    TrustOutcome t = p.trust->evaluate(cert->cert.get(), digest, p.require, p.now);
    if (!t.ok) return fail(t.kind.empty() ? "chain" : t.kind.c_str(), t.reason);
    v.trust |= t.flags;
    cert_sid = t.certificate_sid;
  } else if (p.require != TrustRequire::Signature) {
    return fail("chain",
                "chain: the queue requires a certificate chain but no [trust] anchors "
                "are configured");
  }

  // Confirmation of SENDERID, strongest source first. A message that carries no SID
  // (SENDERID_TYPE NONE) is authentic but confirms no sender identity.
  std::optional<Bytes> confirmed;
  if (e.sender_id_type == MQMSG_SENDERID_TYPE_SID) {
    if (cert_sid) {
      Bytes sid;
      try {
        sid = Sid::from_string(*cert_sid).bytes();
      } catch (const std::exception&) {
      }
      if (sid != e.sender_id) {
        return fail("sid-mismatch", "the sender certificate carries SID " + *cert_sid +
                                        ", not the message's SENDERID");
      }
      v.trust |= trust_bits::kSidFromCertificate;
      confirmed = sid;
    }
    const std::pair<const Registry*, uint32_t> sources[] = {
        {&p.system_registry, trust_bits::kSystemRegistry},
        {&p.user_registry, trust_bits::kUserRegistry}};
    for (const auto& [registry, bit] : sources) {
      if (!*registry) continue;
      std::optional<Bytes> registered = (*registry)(digest);
      if (!registered) continue;
      if (*registered != e.sender_id) {
        return fail("sid-mismatch",
                    std::string("sender certificate is registered to another SID than the "
                                "message's SENDERID (") +
                        (bit == trust_bits::kSystemRegistry ? "system" : "user") + " registry)");
      }
      v.trust |= bit;
      if (!confirmed) confirmed = *registered;
    }
    v.sender_confirmed = confirmed.has_value();
  }

  // Authorized signers: a subject match, or a SID that a trusted source confirmed (the SID of
  // a certificate whose chain validated counts even when the message carries no SENDERID). A
  // subject counts only in a certificate whose chain to an anchor validated: anyone can make a
  // self-signed certificate with any subject.
  if (!p.signers.empty()) {
    const bool chained = (v.trust & trust_bits::kChain) != 0;
    std::optional<Bytes> signer_sid = confirmed;
    if (!signer_sid && cert_sid) {
      try {
        signer_sid = Sid::from_string(*cert_sid).bytes();
      } catch (const std::exception&) {
      }
    }
    bool allowed = false;
    for (const AuthorizedSigner& s : p.signers) {
      if (chained && !s.subject.empty() && s.subject == v.subject) allowed = true;
      if (!s.sid.empty() && signer_sid) {
        try {
          if (Sid::from_string(s.sid).bytes() == *signer_sid) allowed = true;
        } catch (const std::exception&) {
        }
      }
    }
    if (!allowed) {
      return fail("signer", "signer '" + v.subject + "' is not an authorized signer of the queue" +
                                (chained ? std::string()
                                         : " (a subject is only accepted from a certificate that "
                                           "chains to a configured trust anchor)"));
    }
    v.trust |= trust_bits::kSignerAuthorized;
  }

  // Sent time: not from the future (beyond the allowed skew), not before the replay window.
  const auto sent = static_cast<int64_t>(e.sent_time);
  const auto now = static_cast<int64_t>(p.now);
  if (p.max_clock_skew_seconds >= 0 && sent > now + p.max_clock_skew_seconds) {
    return fail("clock", "sent time is " + std::to_string(sent - now) +
                             " s in the future (more than the allowed clock skew of " +
                             std::to_string(p.max_clock_skew_seconds) + " s)");
  }
  if (p.replay_window_seconds > 0 && sent < now - p.replay_window_seconds) {
    return fail("too-old", "sent " + std::to_string(now - sent) +
                               " s ago, before the replay window of " +
                               std::to_string(p.replay_window_seconds) + " s");
  }
  return v;
}

Verifier::Cached::~Cached() {
  for (std::atomic<EVP_MD_CTX*>& t : templates) EVP_MD_CTX_free(t.load(std::memory_order_relaxed));
}

EVP_MD_CTX* Verifier::verify_template(const Cached& cached, pkcs11::Hash hash, SigScheme scheme) {
  const size_t index = static_cast<size_t>(hash) * 4 + static_cast<size_t>(scheme);
  if (index >= cached.templates.size()) return nullptr;
  std::atomic<EVP_MD_CTX*>& slot = cached.templates[index];
  if (EVP_MD_CTX* t = slot.load(std::memory_order_acquire)) return t;
  MdCtxPtr fresh(EVP_MD_CTX_new());
  if (!digest_verify_init(fresh.get(), evp_md(hash), X509_get0_pubkey(cached.cert.get()),
                          scheme == SigScheme::RsaPss)) {
    openssl_error();  // clear the queue
    return nullptr;
  }
  // Threads that made one at the same time: the first published is kept, for all of them.
  EVP_MD_CTX* published = nullptr;
  if (slot.compare_exchange_strong(published, fresh.get(), std::memory_order_acq_rel)) {
    return fresh.release();
  }
  return published;
}

Verdict Verifier::check(const Envelope& e, const Cached& cached, std::time_t now, bool allow_weak) {
  Verdict v;
  v.signed_message = true;
  X509* cert = cached.cert.get();
  const Bytes& digest = cached.digest;
  v.subject = cached.subject;
  // INT64_MIN is also the "never held" mark: a `now` of that value is compared every time.
  if (int64_t{now} == kNeverValid ||
      cached.valid_at.load(std::memory_order_relaxed) != int64_t{now}) {
    const char* invalid = nullptr;
    switch (validity_at(cert, now)) {
      case Validity::Valid:
        break;
      case Validity::NotYetValid:
        invalid = "sender certificate is not yet valid";
        break;
      case Validity::Expired:
        invalid = "sender certificate has expired";
        break;
      case Validity::Unreadable:
        invalid = "sender certificate's validity period cannot be read (not RFC 5280's time form)";
        break;
    }
    if (invalid != nullptr) {
      v.kind = "certificate";
      v.reason = invalid;
      return v;
    }
    cached.valid_at.store(int64_t{now}, std::memory_order_relaxed);
  }
  pkcs11::Hash hash;
  try {
    hash = hash_for(e.hash_alg, allow_weak);
  } catch (const Error&) {
    v.kind = "weak-hash";
    v.reason = "hash algorithm " + std::to_string(e.hash_alg) + " is not accepted";
    return v;
  }
  if ((e.sig_scheme == SigScheme::Ecdsa && !cached.is_ec) ||
      ((e.sig_scheme == SigScheme::RsaPkcs1 || e.sig_scheme == SigScheme::RsaPss) &&
       !cached.is_rsa)) {
    v.kind = "signature";
    v.reason = "signature scheme does not match the sender certificate's key";
    return v;
  }

  // What the signature is over: TBS, or for a batch-signed message the statement whose root
  // the message's proof leads to from the message's own leaf (rebuilt here from TBS).
  std::optional<Bytes> statement;
  if (e.batch.present()) {
    auto refuse = [&](std::string reason) {
      v.kind = "signature";
      v.reason = std::move(reason);
      return v;
    };
    if (const char* why = batch_proof_problem(e.batch)) {
      return refuse(std::string("batch proof is malformed: ") + why);
    }
    if (e.batch.hash_alg != e.hash_alg) {
      return refuse("the batch statement's hash algorithm is not the message's");
    }
    const EVP_MD* tree_md = evp_md(hash);
    std::optional<Bytes> root =
        merkle::root_from_path(tree_md, merkle::leaf_hash(tree_md, to_be_signed(e, digest)),
                               e.batch.leaf_index, e.batch.tree_size, e.batch.path);
    if (!root || *root != e.batch.root) {
      return refuse(
          "batch proof does not lead to the signed root (message altered, or the proof of "
          "another message)");
    }
    statement = batch_statement(e.batch);
  }
  EVP_MD_CTX* initialised = verify_template(cached, hash, e.sig_scheme);
  MdCtxPtr md(EVP_MD_CTX_new());
  bool good = md && initialised != nullptr && EVP_MD_CTX_copy_ex(md.get(), initialised) == 1;
  if (good) {
    // Used once: its final step need not leave it usable (OpenSSL would otherwise duplicate the
    // key's context for that step and free the copy).
    EVP_MD_CTX_set_flags(md.get(), EVP_MD_CTX_FLAG_FINALISE);
    if (statement) {
      good = EVP_DigestVerifyUpdate(md.get(), statement->data(), statement->size()) == 1;
    } else {
      // TBS hashed as it is written, the body where it is (no copy of the message).
      struct Feed final : ByteSink {
        EVP_MD_CTX* ctx;
        bool ok = true;
        explicit Feed(EVP_MD_CTX* c) : ctx(c) {}
        void update(std::span<const uint8_t> bytes) override {
          ok = ok && EVP_DigestVerifyUpdate(ctx, bytes.data(), bytes.size()) == 1;
        }
      } feed(md.get());
      write_to_be_signed(e, digest, feed);
      good = feed.ok;
    }
    good = good && EVP_DigestVerifyFinal(md.get(), e.signature.data(), e.signature.size()) == 1;
  }
  if (!good) {
    openssl_error();  // clear the queue
    v.kind = "signature";
    v.reason = e.batch.present() ? "signature over the batch statement does not verify (statement "
                                   "altered or signed by another key)"
                                 : "signature does not verify (message altered or signed by "
                                   "another key)";
    return v;
  }
  v.ok = true;
  v.authenticated_ex = level_for(e.auth_level);
  return v;
}

}  // namespace mqsec::security
