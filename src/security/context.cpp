// Acquiring security contexts.
#include "src/security/context.hpp"

#include "mqsec/error.hpp"
#include "pkcs11/error.hpp"
#include "src/security/log.hpp"
#include "src/security/personal_store.hpp"

namespace mqsec::security {
SecurityContext::SecurityContext(Bytes der, X509Ptr cert, std::shared_ptr<pkcs11::Token> token,
                                 std::string pin_source, pkcs11::SignKey key, Bytes key_id,
                                 UserIdentity user)
    : der_(std::move(der)),
      der_sha256_(sha256(der_)),
      cert_(std::move(cert)),
      token_(std::move(token)),
      pin_source_(std::move(pin_source)),
      key_(key),
      key_handle_(key.handle),
      key_generation_(token_->generation()),
      key_id_(std::move(key_id)),
      user_(std::move(user)) {}

CK_OBJECT_HANDLE SecurityContext::find_key(uint64_t generation) const {
  token_->login(pin_source_);  // private keys are invisible without the login
  auto s = token_->session();
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                         {CKA_ID, const_cast<uint8_t*>(key_id_.data()), key_id_.size()}};
  auto found = token_->find(s, {tmpl[0], tmpl[1]}, 2);
  if (found.size() != 1) {
    throw pkcs11::Error("the private key (CKA_ID) of '" + subject_string(cert_.get()) +
                        "' is no longer on token '" + token_->label() + "'");
  }
  // Remember it, unless another thread is writing (it may skip a write: the next signature
  // looks the key up again) or already stored one of a later generation.
  uint64_t seq = key_seq_.load(std::memory_order_acquire);
  if (!(seq & 1) && key_generation_.load(std::memory_order_relaxed) <= generation &&
      key_seq_.compare_exchange_strong(seq, seq + 1, std::memory_order_acq_rel)) {
    // Release stores (no fence: ThreadSanitizer does not model fences and refuses to build them
    // under -Werror): a reader whose acquire load sees either new value synchronizes with this
    // thread up to it, the odd sequence count included, so its second read of key_seq_ cannot
    // return the even count it read first, and it looks the key up instead. Relaxed stores
    // would not give that on weakly ordered CPUs (arm64): the acquire half of the CAS orders
    // only its load, not its store, before them.
    key_handle_.store(found[0], std::memory_order_release);
    key_generation_.store(generation, std::memory_order_release);
    key_seq_.store(seq + 2, std::memory_order_release);
  }
  return found[0];
}

Bytes SecurityContext::sign_digest(pkcs11::Hash hash, std::span<const uint8_t> digest) const {
  pkcs11::SignKey key = key_;
  uint64_t generation = token_->generation();
  const uint64_t seq = key_seq_.load(std::memory_order_acquire);
  // Acquire loads keep the second read of the sequence count after them and pair with
  // find_key's release stores (a seqlock without a fence, which ThreadSanitizer does not model).
  key.handle = key_handle_.load(std::memory_order_acquire);
  bool current = key_generation_.load(std::memory_order_acquire) == generation;
  current = current && !(seq & 1) && key_seq_.load(std::memory_order_relaxed) == seq;
  try {
    // A handle from before a recovery may name nothing, or another object: look the key up.
    if (!current) key.handle = find_key(generation);
    return pkcs11::sign_digest(*token_, key, hash, digest, pin_source_);
  } catch (const pkcs11::Error& e) {
    if (!pkcs11::Token::needs_recovery(e.rv())) throw;
    log(LogLevel::Warning, std::string("signing failed (") + e.what() +
                               "); recovering the token session and retrying once");
  }
  token_->recover(generation, pin_source_);
  generation = token_->generation();
  key.handle = find_key(generation);
  return pkcs11::sign_digest(*token_, key, hash, digest, pin_source_);
}

std::shared_ptr<SecurityContext> acquire_context(std::span<const uint8_t> der_in) {
  const bool internal = der_in.empty();
  X509Ptr cert;
  if (!internal) {
    cert = parse_der_strict(der_in);
    if (!cert) {
      fail(MQ_ERROR_INVALID_CERTIFICATE,
           "the certificate buffer is not exactly one DER-encoded X.509 certificate");
    }
  }

  std::string profile_error;
  UserSetup setup = resolve_user(&profile_error);
  if (internal) {
    if (!profile_error.empty()) {
      fail(MQ_ERROR_NO_INTERNAL_USER_CERT, "user profile is malformed: " + profile_error);
    }
    if (setup.profile.internal_certificate.empty()) {
      fail(MQ_ERROR_NO_INTERNAL_USER_CERT,
           "user '" + setup.user.name + "' has no internal certificate (" +
               setup.profile.file.string() +
               (setup.profile.exists ? " has no internal-certificate" : " does not exist") +
               "); run `mqsec enroll` or MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, NULL, 0)");
    }
  }

  PersonalStore store(setup);
  Bytes der(der_in.begin(), der_in.end());
  try {
    if (internal) {
      auto found = store.find_certificate(setup.profile.internal_certificate);
      if (!found) {
        fail(MQ_ERROR_NO_INTERNAL_USER_CERT,
             "internal certificate '" + setup.profile.internal_certificate + "' is not on token '" +
                 store.token()->label() + "'");
      }
      der = std::move(*found);
      cert = parse_der_strict(der);
      if (!cert) {
        fail(MQ_ERROR_NO_INTERNAL_USER_CERT, "internal certificate '" +
                                                 setup.profile.internal_certificate +
                                                 "' on the token is not a valid DER certificate");
      }
    }
    const HRESULT no_key = internal ? MQ_ERROR_NO_INTERNAL_USER_CERT : MQ_ERROR_INVALID_CERTIFICATE;
    auto key = store.find_key_for(cert.get(), der);
    if (!key) {
      fail(no_key, "no single private key for certificate '" + subject_string(cert.get()) +
                       "' on token '" + store.token()->label() + "'");
    }
    if (std::string why = key->exposure(); !why.empty() && !setup.config.allow_extractable_keys) {
      fail(MQ_ERROR_INVALID_CERTIFICATE,
           "refusing the private key of '" + subject_string(cert.get()) + "': it " +
               (why.rfind("was", 0) == 0 ? why : "is " + why) +
               ", so a copy may exist outside the token; set [token] allow-extractable-keys = "
               "true in the system config to allow such keys");
    }
    return std::make_shared<SecurityContext>(std::move(der), std::move(cert), store.token(),
                                             store.pin_source(), key->key, key->id,
                                             std::move(setup.user));
  } catch (const pkcs11::Error& e) {
    throw_mapped(e, MQ_ERROR_CORRUPTED_SECURITY_DATA, "security context");
  }
}

}  // namespace mqsec::security
