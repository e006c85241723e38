// Proof of possession: before a certificate is bound to the caller's SID, the private key that
// PersonalStore::find_key_for matched to it must sign a fresh challenge that the certificate's
// public key verifies. Matching attributes proves nothing: a certificate is public, and anyone
// can write it onto their own token next to an unrelated key with the same CKA_ID.
#pragma once

#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"

namespace mqsec::security {

// The domain tag in front of every challenge, so a proof signature can never be taken for
// (or made from) a message signature.
inline constexpr char kPossessionTag[] = "mqsec register proof-of-possession v1";

// Signs tag || SHA-256(certificate DER) || 32 random bytes with `key` on `store`'s token (the
// path messages are signed by: SHA-256 on the host, pkcs11::sign_digest with the key's scheme
// and the store's PIN source) and verifies the signature with `cert`'s public key. Returns
// normally only when it verifies. Throws mqsec::Error (logged): MQ_ERROR_INVALID_CERTIFICATE
// when the key did not produce a valid signature (or cannot sign with the certificate's
// scheme at all), MQ_ERROR_INSUFFICIENT_RESOURCES / MQ_ERROR_CORRUPTED_SECURITY_DATA when the
// token or OpenSSL failed for another reason.
void prove_possession(PersonalStore& store, X509* cert, const KeyRef& key);

}  // namespace mqsec::security
