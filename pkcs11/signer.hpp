// Signing a host-computed digest with a private key that stays on the token.
//
// The message is hashed on the host (fast, and the same for every token); only the digest
// goes to the device. Mechanisms: CKM_RSA_PKCS over a DER DigestInfo (PKCS#1 v1.5),
// CKM_RSA_PKCS_PSS (MGF1 with the same hash, salt length = digest length) and CKM_ECDSA,
// whose raw r||s output is converted to the DER ECDSA-Sig-Value everyone else expects.
#pragma once

#include "pkcs11/cryptoki.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pkcs11/token.hpp"

namespace mqsec::pkcs11 {

enum class Hash { Md5, Sha1, Sha256, Sha384, Sha512 };
enum class Scheme { RsaPkcs1, RsaPss, Ecdsa };

size_t digest_size(Hash h) noexcept;
// The DER DigestInfo prefix + digest that CKM_RSA_PKCS signs for PKCS#1 v1.5.
Bytes digest_info(Hash h, std::span<const uint8_t> digest);
// Raw r||s (two equal halves) to DER ECDSA-Sig-Value. Throws pkcs11::Error on odd input.
Bytes ecdsa_raw_to_der(std::span<const uint8_t> raw);
// Appends a DER length (X.690, 8.1.3): one byte below 128, else 0x80 | n and n big-endian bytes.
void append_der_length(Bytes& out, size_t len);

struct SignKey {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  Scheme scheme = Scheme::RsaPkcs1;
  size_t signature_size = 0;         // modulus bytes (RSA) or 2 x field bytes (EC)
  bool always_authenticate = false;  // CKA_ALWAYS_AUTHENTICATE: log in again per signature
};

// Signs `digest` (already hashed with `hash`) on the token, in one pooled session.
// `pin_source` is used only for always-authenticate keys. Throws pkcs11::Error.
Bytes sign_digest(Token& token, const SignKey& key, Hash hash, std::span<const uint8_t> digest,
                  const std::string& pin_source);

}  // namespace mqsec::pkcs11
