// Test support: an envelope signed in software, as a sender's token would sign it: the digest
// named by its hash_alg over to_be_signed(envelope), RSA-PSS padding when its sig_scheme says so.
#pragma once

#include <mq.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "src/security/envelope.hpp"
#include "src/security/openssl.hpp"

namespace mqsec::testing {

// Sets e.signature to `key`'s signature over to_be_signed(e).
inline void sign_envelope(security::Envelope& e, EVP_PKEY* key) {
  const security::Bytes tbs = security::to_be_signed(e);
  security::MdCtxPtr md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  const EVP_MD* h = e.hash_alg == CALG_SHA_384   ? EVP_sha384()
                    : e.hash_alg == CALG_SHA_512 ? EVP_sha512()
                    : e.hash_alg == CALG_SHA1    ? EVP_sha1()
                                                 : EVP_sha256();
  EVP_DigestSignInit(md.get(), &pctx, h, nullptr, key);
  if (e.sig_scheme == security::SigScheme::RsaPss) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
  }
  size_t len = 0;
  EVP_DigestSign(md.get(), nullptr, &len, tbs.data(), tbs.size());
  e.signature.resize(len);
  EVP_DigestSign(md.get(), e.signature.data(), &len, tbs.data(), tbs.size());
  e.signature.resize(len);
}

}  // namespace mqsec::testing
