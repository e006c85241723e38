// OpenSSL ownership (std::unique_ptr with the right free function) and the certificate
// helpers the security layer shares: strict DER parsing, digests, names, public keys.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <ctime>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mqsec::security {

using Bytes = std::vector<uint8_t>;

struct OsslFree {
  void operator()(X509* p) const noexcept { X509_free(p); }
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
  void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
  void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
  void operator()(X509_NAME* p) const noexcept { X509_NAME_free(p); }
  void operator()(BIO* p) const noexcept { BIO_free_all(p); }
  void operator()(X509_STORE* p) const noexcept { X509_STORE_free(p); }
  void operator()(X509_STORE_CTX* p) const noexcept { X509_STORE_CTX_free(p); }
  void operator()(X509_CRL* p) const noexcept { X509_CRL_free(p); }
  void operator()(ASN1_OBJECT* p) const noexcept { ASN1_OBJECT_free(p); }
  void operator()(OCSP_REQUEST* p) const noexcept { OCSP_REQUEST_free(p); }
  void operator()(OCSP_RESPONSE* p) const noexcept { OCSP_RESPONSE_free(p); }
  void operator()(OCSP_BASICRESP* p) const noexcept { OCSP_BASICRESP_free(p); }
  void operator()(OCSP_CERTID* p) const noexcept { OCSP_CERTID_free(p); }
  void operator()(GENERAL_NAMES* p) const noexcept { GENERAL_NAMES_free(p); }
  void operator()(EXTENDED_KEY_USAGE* p) const noexcept {
    sk_ASN1_OBJECT_pop_free(p, ASN1_OBJECT_free);
  }
  void operator()(STACK_OF(X509) * p) const noexcept { sk_X509_pop_free(p, X509_free); }
  void operator()(STACK_OF(OPENSSL_STRING) * p) const noexcept { X509_email_free(p); }
};
// Any OpenSSL object OsslFree knows how to free.
template <class T>
using OsslPtr = std::unique_ptr<T, OsslFree>;
using X509Ptr = std::unique_ptr<X509, OsslFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OsslFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, OsslFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OsslFree>;

// Parses exactly one DER certificate: nullptr if the bytes are not a certificate or have
// anything after it.
X509Ptr parse_der_strict(std::span<const uint8_t> der);
Bytes to_der(X509* cert);
// Where `now` falls in the certificate's validity period: valid from notBefore up to the
// second before notAfter (X509_cmp_time counts an equal time as earlier). Unreadable: a time
// not in RFC 5280's form (for example fractional seconds, which DER allows), which
// X509_cmp_time cannot compare; such a certificate is not valid.
enum class Validity { Valid, NotYetValid, Expired, Unreadable };
Validity validity_at(X509* cert, std::time_t now);
Bytes sha256(std::span<const uint8_t> data);
// Hashes the concatenation of `parts` with `md` (EVP_sha256() and the like) into `out`, which
// must hold EVP_MD_get_size(md) bytes; false if OpenSSL fails. For hot paths (every signed
// message, every Merkle leaf and node): it uses the explicitly fetched implementation of `md`
// and one EVP_MD_CTX per thread, so it neither allocates nor looks the digest up in OpenSSL's
// provider store (under its lock) per call, as EVP_Digest with a legacy EVP_MD does.
bool digest_parts(const EVP_MD* md, std::initializer_list<std::span<const uint8_t>> parts,
                  uint8_t* out);
// digest_parts in pieces: update() any number of times, then finish(out) (false if OpenSSL
// failed anywhere). It borrows the thread's digest context, so nothing else on this thread may
// hash with digest_parts or another DigestStream between its construction and finish().
class DigestStream {
 public:
  explicit DigestStream(const EVP_MD* md);
  DigestStream(const DigestStream&) = delete;
  DigestStream& operator=(const DigestStream&) = delete;
  void update(std::span<const uint8_t> bytes);
  bool finish(uint8_t* out);

 private:
  const EVP_MD* md_;
  EVP_MD_CTX* ctx_;
};
// Initialises `md` for verifying signatures of `pub` over `hash` digests, with RSA-PSS padding
// (salt as long as the digest) when `pss`; false if OpenSSL refuses (its error queue is left
// for the caller).
bool digest_verify_init(EVP_MD_CTX* md, const EVP_MD* hash, EVP_PKEY* pub, bool pss);
// Lower-case hexadecimal, two digits a byte ("00ff...").
std::string hex(std::span<const uint8_t> bytes);
// "CN=alice,O=Example" (RFC 2253 order, OpenSSL's one-line form).
std::string subject_string(X509* cert);
// The last OpenSSL error as text (and clears the queue).
std::string openssl_error();

}  // namespace mqsec::security
