// Device signing of host digests.
#include "pkcs11/signer.hpp"

#include <memory>
#include <mutex>

#include "pkcs11/call_gate.hpp"
#include "pkcs11/error.hpp"

namespace mqsec::pkcs11 {
namespace {

// DER prefixes of DigestInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING digest }
// (RFC 8017, section 9.2, note 1).
const uint8_t kMd5[] = {0x30, 0x20, 0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48,
                        0x86, 0xf7, 0x0d, 0x02, 0x05, 0x05, 0x00, 0x04, 0x10};
const uint8_t kSha1[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
                         0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
const uint8_t kSha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                           0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
const uint8_t kSha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                           0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
const uint8_t kSha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                           0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

std::span<const uint8_t> prefix(Hash h) {
  switch (h) {
    case Hash::Md5:
      return kMd5;
    case Hash::Sha1:
      return kSha1;
    case Hash::Sha256:
      return kSha256;
    case Hash::Sha384:
      return kSha384;
    case Hash::Sha512:
      return kSha512;
  }
  return {};
}

void pss_params(Hash h, CK_RSA_PKCS_PSS_PARAMS& p) {
  switch (h) {
    case Hash::Md5:
      throw Error("RSA-PSS with MD5 is not supported");
    case Hash::Sha1:
      p = {CKM_SHA_1, CKG_MGF1_SHA1, 20};
      return;
    case Hash::Sha256:
      p = {CKM_SHA256, CKG_MGF1_SHA256, 32};
      return;
    case Hash::Sha384:
      p = {CKM_SHA384, CKG_MGF1_SHA384, 48};
      return;
    case Hash::Sha512:
      p = {CKM_SHA512, CKG_MGF1_SHA512, 64};
      return;
  }
}

}  // namespace

size_t digest_size(Hash h) noexcept {
  switch (h) {
    case Hash::Md5:
      return 16;
    case Hash::Sha1:
      return 20;
    case Hash::Sha256:
      return 32;
    case Hash::Sha384:
      return 48;
    case Hash::Sha512:
      return 64;
  }
  return 0;
}

Bytes digest_info(Hash h, std::span<const uint8_t> digest) {
  auto p = prefix(h);
  Bytes out(p.begin(), p.end());
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

void append_der_length(Bytes& out, size_t len) {
  if (len < 0x80) {
    out.push_back(static_cast<uint8_t>(len));
    return;
  }
  size_t n = 0;
  for (size_t v = len; v > 0; v >>= 8) ++n;
  out.push_back(static_cast<uint8_t>(0x80 | n));
  for (size_t k = n; k > 0; --k) out.push_back(static_cast<uint8_t>(len >> (8 * (k - 1))));
}

Bytes ecdsa_raw_to_der(std::span<const uint8_t> raw) {
  if (raw.empty() || raw.size() % 2 != 0) {
    throw Error("token returned a malformed ECDSA signature (odd length)");
  }
  // ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 3279, 2.2.3) in DER, written
  // directly into one buffer: OpenSSL's way (two BIGNUMs, an ECDSA_SIG and two i2d passes) took
  // 0.8 us of a P-256 send's 5.4 us of host work (docs/performance.md, session 21). Each half
  // is an unsigned big-endian number: its leading zero bytes go (one stays for zero), and a
  // 0x00 goes in front when the first byte left has its high bit set (a positive INTEGER).
  struct Integer {
    std::span<const uint8_t> digits;
    bool pad = false;
    size_t length = 0;  // of the content: the pad and the digits
  };
  auto integer = [](std::span<const uint8_t> v) {
    size_t skip = 0;
    while (skip + 1 < v.size() && v[skip] == 0) ++skip;
    const bool pad = (v[skip] & 0x80) != 0;
    return Integer{v.subspan(skip), pad, v.size() - skip + (pad ? 1 : 0)};
  };
  auto tlv_size = [](size_t length) {
    size_t bytes = 1;
    if (length >= 0x80) {
      for (size_t v = length; v > 0; v >>= 8) ++bytes;
    }
    return 1 + bytes + length;  // tag, length, content
  };
  const size_t half = raw.size() / 2;
  const Integer ints[2] = {integer(raw.first(half)), integer(raw.subspan(half))};
  const size_t body = tlv_size(ints[0].length) + tlv_size(ints[1].length);
  Bytes der;
  der.reserve(tlv_size(body));
  der.push_back(0x30);
  append_der_length(der, body);
  for (const Integer& i : ints) {
    der.push_back(0x02);
    append_der_length(der, i.length);
    if (i.pad) der.push_back(0x00);
    der.insert(der.end(), i.digits.begin(), i.digits.end());
  }
  return der;
}

Bytes sign_digest(Token& token, const SignKey& key, Hash hash, std::span<const uint8_t> digest,
                  const std::string& pin_source) {
  CK_MECHANISM mech{CKM_RSA_PKCS, nullptr, 0};
  CK_RSA_PKCS_PSS_PARAMS pss{};
  Bytes input;
  std::span<const uint8_t> data = digest;
  switch (key.scheme) {
    case Scheme::RsaPkcs1:
      input = digest_info(hash, digest);
      data = input;
      break;
    case Scheme::RsaPss:
      pss_params(hash, pss);
      mech = {CKM_RSA_PKCS_PSS, &pss, sizeof pss};
      break;
    case Scheme::Ecdsa:
      mech = {CKM_ECDSA, nullptr, 0};
      break;
  }

  Token::Session s = token.session();
  CallScope scope;  // (after the session: waiting for one must not delay a fork)
  CK_FUNCTION_LIST* f = token.fn();
  // A PIN-always key's C_SignInit -> C_Login(CKU_CONTEXT_SPECIFIC) -> C_Sign runs alone on the
  // token: another signature in between would consume this one's PIN verification.
  std::unique_lock<std::mutex> pin_always;
  if (key.always_authenticate) pin_always = std::unique_lock(token.pin_always_mutex());

  auto sign_init = [&] {
    CK_RV rv = f->C_SignInit(s.handle(), &mech, key.handle);
    if (rv == CKR_OPERATION_ACTIVE) {
      // A session left with an operation active (by a module that keeps it after a failure
      // we could not see) is broken: drop it and take a fresh one, once.
      if (pin_always) pin_always.unlock();
      s.discard();
      s = token.session();
      if (key.always_authenticate) pin_always.lock();
      rv = f->C_SignInit(s.handle(), &mech, key.handle);
    }
    if (rv == CKR_USER_NOT_LOGGED_IN && !pin_source.empty()) {
      // The token dropped our login (e.g. another application logged out): log in again once.
      // A refused PIN is not retried (Token::login remembers it). Not under the PIN-always
      // lock: logging in may wait for a session another signer holds.
      if (pin_always) pin_always.unlock();
      token.relogin(pin_source);
      if (key.always_authenticate) pin_always.lock();
      rv = f->C_SignInit(s.handle(), &mech, key.handle);
    }
    if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
        rv == CKR_OPERATION_ACTIVE) {
      s.discard();
    }
    check(rv, "C_SignInit");
  };
  // Ends the active sign operation after a failure between C_SignInit and C_Sign (a failed
  // C_Login does not end it): Cryptoki 3.0 ends it with C_SignInit(NULL_PTR); otherwise, or
  // when that fails, the session is closed rather than pooled.
  auto abandon = [&]() noexcept {
    if (f->version.major >= 3 && f->C_SignInit(s.handle(), nullptr, CK_INVALID_HANDLE) == CKR_OK) {
      return;
    }
    s.discard();
  };
  auto context_login = [&] {
    if (!key.always_authenticate) return;
    try {
      token.context_login(s, pin_source);
    } catch (...) {
      abandon();
      throw;
    }
  };

  sign_init();
  context_login();
  Bytes sig(key.signature_size > 0 ? key.signature_size : 1024);
  CK_ULONG len = sig.size();
  CK_RV rv =
      f->C_Sign(s.handle(), const_cast<CK_BYTE_PTR>(data.data()), data.size(), sig.data(), &len);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    // The operation stays active after CKR_BUFFER_TOO_SMALL; retry with the size it gave.
    sig.resize(len);
    rv = f->C_Sign(s.handle(), const_cast<CK_BYTE_PTR>(data.data()), data.size(), sig.data(), &len);
  }
  if (rv == CKR_USER_NOT_LOGGED_IN && key.always_authenticate) {
    // The card refused the signature although the context login succeeded: either we were
    // logged out (recovery's business), or something outside this process consumed the PIN
    // verification. Only the first is a lost login; the second is retried once, and never
    // reported as a lost login, which would make the caller recover the token and disturb
    // every other signer.
    CK_SESSION_INFO si{};
    bool still_user = f->C_GetSessionInfo(s.handle(), &si) == CKR_OK &&
                      (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);
    if (still_user) {
      sign_init();
      context_login();
      len = sig.size();
      rv = f->C_Sign(s.handle(), const_cast<CK_BYTE_PTR>(data.data()), data.size(), sig.data(),
                     &len);
      if (rv == CKR_USER_NOT_LOGGED_IN) {
        s.discard();
        throw Error("C_Sign", CKR_FUNCTION_REJECTED,
                    "token '" + token.label() +
                        "' refused two signatures with the PIN-always key right after the "
                        "context-specific login succeeded (CKR_USER_NOT_LOGGED_IN while still "
                        "logged in): another application is using the card's PIN verification");
      }
    }
  }
  if (rv != CKR_OK) {
    // A failed C_Sign may leave the operation active in some modules: do not pool it.
    s.discard();
    throw Error("C_Sign", rv, "token '" + token.label() + "'");
  }
  sig.resize(len);
  if (key.scheme == Scheme::Ecdsa) return ecdsa_raw_to_der(sig);
  return sig;
}

}  // namespace mqsec::pkcs11
