// Shared OpenSSL helpers.
#include "src/security/openssl.hpp"

#include <openssl/bio.h>

#include <algorithm>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

namespace mqsec::security {

std::string hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0x0F];
  }
  return out;
}

X509Ptr parse_der_strict(std::span<const uint8_t> der) {
  if (der.empty()) return nullptr;
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != der.data() + der.size()) {
    ERR_clear_error();
    return nullptr;
  }
  // DER only: BER (indefinite lengths, odd parameter encodings) would give one certificate
  // several byte forms, and the registry keys certificates by the SHA-256 of their bytes.
  int len = i2d_X509(cert.get(), nullptr);
  if (len != static_cast<int>(der.size())) return nullptr;
  Bytes again(static_cast<size_t>(len));
  unsigned char* q = again.data();
  i2d_X509(cert.get(), &q);
  if (!std::equal(again.begin(), again.end(), der.begin())) return nullptr;
  return cert;
}

Validity validity_at(X509* cert, std::time_t now) {
  const int from = X509_cmp_time(X509_get0_notBefore(cert), &now);
  const int until = X509_cmp_time(X509_get0_notAfter(cert), &now);
  if (from == 0 || until == 0) return Validity::Unreadable;
  if (from > 0) return Validity::NotYetValid;
  if (until < 0) return Validity::Expired;
  return Validity::Valid;
}

Bytes to_der(X509* cert) {
  int len = i2d_X509(cert, nullptr);
  if (len <= 0) return {};
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  i2d_X509(cert, &p);
  return out;
}

Bytes sha256(std::span<const uint8_t> data) {
  Bytes d(SHA256_DIGEST_LENGTH);
  SHA256(data.data(), data.size(), d.data());
  return d;
}

namespace {

// The digest as an explicitly fetched EVP_MD: EVP_DigestInit_ex with a legacy EVP_MD (what
// EVP_sha256() returns) fetches the implementation again on every call (a lookup under the
// provider store's lock); with a fetched one it does not. Fetched once per algorithm and kept
// for the life of the process; `md` itself when fetching fails (or for another algorithm).
const EVP_MD* fetched(const EVP_MD* md) {
  // Function-local statics: after the first use per algorithm no lock is taken at all. A fork
  // during that first fetch in another thread can still leave the child waiting on the
  // static's init guard (or OpenSSL's provider lock) when it first hashes with that algorithm;
  // the window is one fetch per algorithm and process, not every hash.
  auto fetch = [](const EVP_MD* legacy) -> const EVP_MD* {
    EVP_MD* f = EVP_MD_fetch(nullptr, EVP_MD_get0_name(legacy), nullptr);
    return f != nullptr ? f : legacy;  // never freed: a signer thread may still hash at exit
  };
  switch (EVP_MD_get_type(md)) {
    case NID_sha256: {
      static const EVP_MD* const f = fetch(md);
      return f;
    }
    case NID_sha384: {
      static const EVP_MD* const f = fetch(md);
      return f;
    }
    case NID_sha512: {
      static const EVP_MD* const f = fetch(md);
      return f;
    }
    default:
      return md;
  }
}

// One digest context per thread, reused from hash to hash.
struct ThreadCtx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~ThreadCtx() { EVP_MD_CTX_free(ctx); }
};

// The thread's digest context, initialised for `md` (its fetched implementation); null if
// OpenSSL fails.
EVP_MD_CTX* thread_ctx_for(const EVP_MD* md) {
  thread_local ThreadCtx tc;
  thread_local const EVP_MD* last_md = nullptr;
  thread_local const EVP_MD* last_fetched = nullptr;
  if (md != last_md) {
    last_fetched = fetched(md);
    last_md = md;
  }
  EVP_MD_CTX* ctx = tc.ctx;
  if (ctx == nullptr || EVP_DigestInit_ex2(ctx, last_fetched, nullptr) != 1) return nullptr;
  return ctx;
}

bool finish_digest(EVP_MD_CTX* ctx, const EVP_MD* md, uint8_t* out) {
  unsigned int len = 0;
  return EVP_DigestFinal_ex(ctx, out, &len) == 1 && static_cast<int>(len) == EVP_MD_get_size(md);
}

}  // namespace

bool digest_verify_init(EVP_MD_CTX* md, const EVP_MD* hash, EVP_PKEY* pub, bool pss) {
  EVP_PKEY_CTX* pctx = nullptr;
  if (md == nullptr || EVP_DigestVerifyInit(md, &pctx, hash, nullptr, pub) != 1) return false;
  return !pss || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                  EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1);
}

bool digest_parts(const EVP_MD* md, std::initializer_list<std::span<const uint8_t>> parts,
                  uint8_t* out) {
  EVP_MD_CTX* ctx = thread_ctx_for(md);
  if (ctx == nullptr) return false;
  for (const auto& p : parts) {
    if (EVP_DigestUpdate(ctx, p.data(), p.size()) != 1) return false;
  }
  return finish_digest(ctx, md, out);
}

DigestStream::DigestStream(const EVP_MD* md) : md_(md), ctx_(thread_ctx_for(md)) {}

void DigestStream::update(std::span<const uint8_t> bytes) {
  if (ctx_ != nullptr && EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()) != 1) ctx_ = nullptr;
}

bool DigestStream::finish(uint8_t* out) {
  if (ctx_ == nullptr) return false;
  EVP_MD_CTX* ctx = ctx_;
  ctx_ = nullptr;
  return finish_digest(ctx, md_, out);
}

std::string subject_string(X509* cert) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio) return {};
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0,
                     XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace mqsec::security
