// Creating an internal certificate (MQRegisterCertificate with a NULL buffer, `mqsec enroll`):
// a key pair generated ON the user's token (CKA_SENSITIVE, not extractable), a self-signed
// X.509 certificate for the user signed by that key on the token, the certificate stored on
// the token with the key's CKA_ID, and the user's profile pointed at it.
#pragma once

#include <string>

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
};

struct Enrolled {
  Bytes der;               // the new certificate
  std::string object_uri;  // where it is on the token (the profile's internal-certificate)
};

// Creates the internal certificate for the calling thread's user and records it in their
// profile. Throws mqsec::Error: MQ_ERROR_CORRUPTED_SECURITY_DATA (token), MQ_ERROR_
// CANNOT_CREATE_CERT_STORE (profile not writable), MQ_ERROR_INVALID_PARAMETER (bad subject).
Enrolled enroll_internal(const UserSetup& setup, PersonalStore& store, const EnrollOptions& opts);

}  // namespace mqsec::security
