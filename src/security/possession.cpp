// Proof of possession of a certificate's private key on the caller's token.
#include "src/security/possession.hpp"

#include <openssl/rand.h>

#include <array>
#include <cstring>
#include <optional>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "pkcs11/error.hpp"
#include "pkcs11/signer.hpp"
#include "src/security/log.hpp"

namespace mqsec::security {
namespace {

// Results of signing that say the key cannot sign for this certificate (a key of another type
// or size, or one the token will not use this way): the same answer as a bad signature.
bool key_cannot_sign(CK_RV rv) {
  switch (rv) {
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_KEY_SIZE_RANGE:
    case CKR_KEY_HANDLE_INVALID:
    case CKR_DATA_LEN_RANGE:
    case CKR_DATA_INVALID:
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
      return true;
    default:
      return false;
  }
}

}  // namespace

void prove_possession(PersonalStore& store, X509* cert, const KeyRef& key) {
  const std::string label = store.token()->label();
  const std::string subject = subject_string(cert);
  auto not_the_key = [&](const std::string& detail) {
    fail(MQ_ERROR_INVALID_CERTIFICATE,
         "cannot register '" + subject + "': the private key on token '" + label +
             "' does not belong to '" + subject + "' (it did not produce a valid signature" +
             (detail.empty() ? std::string() : ": " + detail) +
             "); a certificate is registered only with the key it was issued for");
  };

  pkcs11::CallScope scope;  // OpenSSL's locks too must not be held across a fork
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  if (pub == nullptr) not_the_key("the certificate's public key is unreadable");

  // A key of another type cannot sign for the certificate; say so rather than leave it to the
  // token (SoftHSM answers such a C_Sign with CKR_GENERAL_ERROR, which means nothing).
  const bool cert_rsa = EVP_PKEY_is_a(pub, "RSA") == 1;
  std::optional<CK_ULONG> key_type;
  try {
    auto s = store.token()->session();
    key_type = store.token()->ulong_attribute(s, key.key.handle, CKA_KEY_TYPE);
  } catch (const pkcs11::Error& e) {
    throw_mapped(e, MQ_ERROR_CORRUPTED_SECURITY_DATA,
                 "proof of possession: reading the key type on token '" + label + "'");
  }
  if (key_type && *key_type != (cert_rsa ? CKK_RSA : CKK_EC)) {
    not_the_key(std::string("the token's key is not an ") + (cert_rsa ? "RSA" : "EC") +
                " key like the certificate's");
  }

  // tag || SHA-256(certificate) || nonce: fresh, bound to this certificate and to this purpose.
  Bytes challenge(kPossessionTag, kPossessionTag + std::strlen(kPossessionTag));
  challenge.push_back(0);
  const Bytes cert_digest = sha256(to_der(cert));
  challenge.insert(challenge.end(), cert_digest.begin(), cert_digest.end());
  std::array<uint8_t, 32> nonce{};
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) {
    fail(MQ_ERROR_CORRUPTED_SECURITY_DATA,
         "proof of possession: no random challenge (RAND_bytes failed: " + openssl_error() + ")");
  }
  challenge.insert(challenge.end(), nonce.begin(), nonce.end());

  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(challenge.data(), challenge.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    fail(MQ_ERROR_CORRUPTED_SECURITY_DATA,
         "proof of possession: hashing the challenge failed: " + openssl_error());
  }

  Bytes signature;
  try {
    signature = pkcs11::sign_digest(*store.token(), key.key, pkcs11::Hash::Sha256,
                                    std::span<const uint8_t>(digest, len), store.pin_source());
  } catch (const pkcs11::Error& e) {
    if (key_cannot_sign(e.rv())) not_the_key(e.what());
    throw_mapped(e, MQ_ERROR_CORRUPTED_SECURITY_DATA,
                 "proof of possession of the key of '" + subject + "' on token '" + label + "'");
  }

  MdCtxPtr md(EVP_MD_CTX_new());
  bool good =
      digest_verify_init(md.get(), EVP_sha256(), pub, key.key.scheme == pkcs11::Scheme::RsaPss);
  good = good && EVP_DigestVerify(md.get(), signature.data(), signature.size(), challenge.data(),
                                  challenge.size()) == 1;
  if (!good) {
    openssl_error();  // clear the queue
    not_the_key({});
  }
}

}  // namespace mqsec::security
