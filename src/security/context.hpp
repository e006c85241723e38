// The security context of MQGetSecurityContextEx: everything needed to sign many messages
// as one user with one certificate, fetched once.
//
// It holds the certificate (DER and parsed), its public key, the token (shared session pool
// and login), the private key's object handle and CKA_ID, the signing scheme, and the SID
// and name of the user who obtained it. That identity is fixed at creation: a thread that
// impersonated user B, got a context, and reverted still signs as B with it.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "pkcs11/signer.hpp"
#include "src/security/config.hpp"
#include "src/security/handle_table.hpp"
#include "src/security/identity.hpp"
#include "src/security/openssl.hpp"

namespace mqsec::security {

class SecurityContext {
 public:
  SecurityContext(Bytes der, X509Ptr cert, std::shared_ptr<pkcs11::Token> token,
                  std::string pin_source, pkcs11::SignKey key, Bytes key_id, UserIdentity user);

  const Bytes& certificate() const noexcept { return der_; }
  const Bytes& certificate_sha256() const noexcept { return der_sha256_; }
  X509* x509() const noexcept { return cert_.get(); }
  EVP_PKEY* public_key() const noexcept { return X509_get0_pubkey(cert_.get()); }
  const UserIdentity& user() const noexcept { return user_; }
  const Sid& sid() const noexcept { return user_.sid; }
  pkcs11::Scheme scheme() const noexcept { return key_.scheme; }
  const Bytes& key_id() const noexcept { return key_id_; }
  const pkcs11::Token& token() const noexcept { return *token_; }
  // The token's generation now (bumped by each recovery; a forked child first forgets its
  // parent's sessions): a context cache drops what was built in an older one.
  uint64_t token_generation() const { return token_->generation(); }

  // Signs a digest made with `hash` on the token. Thread-safe; many threads may sign with
  // one context at once (each uses its own pooled session). When the token was removed and
  // re-inserted, its sessions closed, or the process forked, it recovers once: the token is
  // found again by serial and label, logged in again from the PIN source, and the key found
  // again by CKA_ID. A key handle found before a recovery (or a fork) is never used after it:
  // the key is looked up again first. Throws pkcs11::Error when that fails (e.g.
  // CKR_TOKEN_NOT_PRESENT; Problem::CardReplaced when another card sits in the reader, which
  // is never used and never sees the PIN).
  Bytes sign_digest(pkcs11::Hash hash, std::span<const uint8_t> digest) const;

  // The [signing] of the profile of the user who acquired the context, read then (batch signing
  // for this context's sends; docs/configuration.md "User profiles"). Set once, before the
  // context is shared.
  const SigningOverrides& signing() const noexcept { return signing_; }
  void set_signing(SigningOverrides s) { signing_ = std::move(s); }

 private:
  // Logs in if needed and finds the key by CKA_ID on the token of `generation`; remembers it.
  CK_OBJECT_HANDLE find_key(uint64_t generation) const;

  Bytes der_, der_sha256_;
  X509Ptr cert_;
  std::shared_ptr<pkcs11::Token> token_;
  std::string pin_source_;
  pkcs11::SignKey key_;  // key_.handle is stale after recovery; the live one is key_handle_
  // The live key handle and the token generation it belongs to, read and written as a pair
  // under a sequence count (odd while written): no lock, so a fork() can never leave one held.
  mutable std::atomic<uint64_t> key_seq_{0};
  mutable std::atomic<CK_OBJECT_HANDLE> key_handle_;
  mutable std::atomic<uint64_t> key_generation_;
  Bytes key_id_;
  UserIdentity user_;
  SigningOverrides signing_;
};

// Builds a context for the calling thread's user: `der` empty -> the user's internal
// certificate (profile's internal-certificate), else that external DER certificate.
// Throws mqsec::Error with MQGetSecurityContextEx's documented codes. `profile_file`, when
// given, receives the path of the user's profile file that was consulted (for a cache to
// watch; it need not exist).
std::shared_ptr<SecurityContext> acquire_context(std::span<const uint8_t> der,
                                                 std::filesystem::path* profile_file = nullptr);
// How many times acquire_context() was called in this process (for tests and `mqsec bench`
// to see what a context cache saves).
uint64_t context_acquisitions() noexcept;

}  // namespace mqsec::security
