// Creating an internal certificate (MQRegisterCertificate with a NULL buffer, `mqsec enroll`):
// a key pair generated ON the user's token (CKA_SENSITIVE, not extractable), a self-signed
// X.509 certificate for the user signed by that key on the token, the certificate stored on
// the token with the key's CKA_ID, and the user's profile pointed at it.
#pragma once

#include <string>
#include <vector>

#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"

namespace mqsec::security {

enum class KeyKind { Rsa2048, Rsa3072, P256, P384 };

// "rsa2048" | "rsa3072" | "p256" | "p384"; throws std::invalid_argument otherwise.
KeyKind parse_key_kind(const std::string& s);

struct EnrollOptions {
  KeyKind kind = KeyKind::Rsa2048;
  std::string subject;  // "CN=...,O=..."; empty -> CN=<user name>
  unsigned valid_days = 365;
  // Adopt a certificate already on the token (with its private key) instead of generating a
  // key pair: `mqsec enroll --adopt [URI]`, for cards that cannot generate keys. The selector is
  // a PKCS#11 URI whose object= / id= pick the certificate ("" when the token holds one).
  bool adopt = false;
  std::string adopt_selector;
};

struct Enrolled {
  Bytes der;               // the new certificate
  std::string object_uri;  // where it is on the token (the profile's internal-certificate)
};

// A certificate on the user's token whose private key is there too, which `mqsec enroll
// --adopt` can make the internal certificate.
struct Adoptable {
  Bytes der;
  Bytes id;           // CKA_ID of the certificate and of its private key
  std::string label;  // the certificate object's CKA_LABEL
  std::string subject;
  std::string object_uri;        // pkcs11:token=...;serial=...;id=...;type=cert
  std::string describe() const;  // "'<label>' id=<hex>: <subject>"
};

// The certificates on `store`'s token that `selector` selects (a PKCS#11 URI: object= and id=
// pick certificates; "" selects all) and that have exactly one private key with their CKA_ID,
// able to sign, of the certificate's key type, and whose public key is the certificate's where
// the token shows it (RSA modulus; EC point of the key or of the public-key object). That the
// key really is the certificate's is proven later by a signature (prove_possession). Why other
// selected certificates were left out goes to `skipped`, one line each, when given. Throws
// mqsec::Error (MQ_ERROR_INVALID_PARAMETER for a selector that is not a PKCS#11 URI or names
// another token) and pkcs11::Error.
std::vector<Adoptable> adoptable_certificates(PersonalStore& store, const std::string& selector,
                                              std::vector<std::string>* skipped = nullptr);

// The one certificate to adopt: the only candidate, or the only one `selector` selects. Throws
// mqsec::Error: MQ_ERROR_INVALID_PARAMETER when several qualify (the message lists them, to be
// chosen with object= or id=), MQ_ERROR_INVALID_CERTIFICATE when none does (the message says
// why each certificate was left out and how to provision the card).
Adoptable choose_adoptable(PersonalStore& store, const std::string& selector);

// Creates the internal certificate for the calling thread's user and records it in their
// profile. Throws mqsec::Error: MQ_ERROR_CORRUPTED_SECURITY_DATA (token), MQ_ERROR_
// CANNOT_CREATE_CERT_STORE (profile not writable), MQ_ERROR_INVALID_PARAMETER (bad subject);
// a token that cannot generate key pairs (its flags say so, or C_GenerateKeyPair answers
// CKR_FUNCTION_NOT_SUPPORTED) is MQ_ERROR_CORRUPTED_SECURITY_DATA with
// TokenError::KeyGenerationUnsupported.
Enrolled enroll_internal(const UserSetup& setup, PersonalStore& store, const EnrollOptions& opts);

}  // namespace mqsec::security
