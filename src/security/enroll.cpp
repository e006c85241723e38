// Internal certificate enrollment on the token.
#include "src/security/enroll.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <optional>
#include <stdexcept>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "pkcs11/error.hpp"
#include "pkcs11/signer.hpp"
#include "pkcs11/uri.hpp"
#include "src/security/log.hpp"

namespace mqsec::security {
namespace {

// DER OIDs of the named curves, as CKA_EC_PARAMS wants them.
const uint8_t kP256Oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
const uint8_t kP384Oid[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

// Strips the DER OCTET STRING around CKA_EC_POINT when present.
Bytes unwrap_point(const Bytes& v) {
  if (v.size() > 2 && v[0] == 0x04) {
    size_t len = v[1], hdr = 2;
    if (v[1] == 0x81 && v.size() > 3) {
      len = v[2];
      hdr = 3;
    }
    if (hdr + len == v.size()) return Bytes(v.begin() + static_cast<long>(hdr), v.end());
  }
  return v;
}

PkeyPtr public_key_from_token(pkcs11::Token& token, pkcs11::Token::Session& s, CK_OBJECT_HANDLE pub,
                              KeyKind kind) {
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> n(nullptr, BN_free), e(nullptr, BN_free);
  Bytes point;
  const char* type;
  if (kind == KeyKind::Rsa2048 || kind == KeyKind::Rsa3072) {
    type = "RSA";
    auto mod = token.attribute(s, pub, CKA_MODULUS);
    auto exp = token.attribute(s, pub, CKA_PUBLIC_EXPONENT);
    if (!mod || !exp) throw pkcs11::Error("generated RSA public key has no modulus/exponent");
    n.reset(BN_bin2bn(mod->data(), static_cast<int>(mod->size()), nullptr));
    e.reset(BN_bin2bn(exp->data(), static_cast<int>(exp->size()), nullptr));
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
  } else {
    type = "EC";
    auto ec_point = token.attribute(s, pub, CKA_EC_POINT);
    if (!ec_point) throw pkcs11::Error("generated EC public key has no CKA_EC_POINT");
    point = unwrap_point(*ec_point);
    OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME,
                                    kind == KeyKind::P256 ? "prime256v1" : "secp384r1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                     point.size());
  }
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                                 OSSL_PARAM_free);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* pkey = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    throw pkcs11::Error("cannot import the generated public key: " + openssl_error());
  }
  return PkeyPtr(pkey);
}

void set_subject(X509_NAME* name, const std::string& dn) {
  // "CN=alice,O=Example Corp" -> entries in that order. Commas inside values are not
  // supported (say so rather than guess).
  size_t start = 0;
  while (start <= dn.size()) {
    size_t comma = dn.find(',', start);
    std::string part =
        dn.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!part.empty() && part.front() == ' ') part.erase(part.begin());
    size_t eq = part.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == part.size()) {
      throw std::invalid_argument("subject '" + dn + "' is not of the form CN=name,O=org");
    }
    std::string field = part.substr(0, eq), value = part.substr(eq + 1);
    // RFC 4514 strings name the most specific RDN first, the reverse of the DER order:
    // insert each part in front of the previous ones.
    if (X509_NAME_add_entry_by_txt(name, field.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, 0,
                                   0) != 1) {
      throw std::invalid_argument("subject field '" + field + "' is not a known attribute");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

// An EC public key's encoded point (04 || X || Y), or empty.
Bytes encoded_point(EVP_PKEY* pub) {
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0, &len) !=
          1 ||
      len == 0) {
    return {};
  }
  Bytes point(len);
  if (EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point.data(),
                                      point.size(), &len) != 1) {
    return {};
  }
  point.resize(len);
  return point;
}

std::string hex_of(const Bytes& b) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (uint8_t c : b) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Why the private keys with `id` cannot be the key of `cert` ("" when exactly one can, and
// then *key is it).
std::string key_mismatch(pkcs11::Token& token, pkcs11::Token::Session& s, X509* cert,
                         const Bytes& id, CK_OBJECT_HANDLE* key) {
  CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
  auto keys = token.find(s,
                         {pkcs11::attribute(CKA_CLASS, &priv_class, sizeof priv_class),
                          pkcs11::attribute(CKA_ID, id.data(), id.size())},
                         2);
  if (keys.empty()) return "no private key with its CKA_ID";
  if (keys.size() > 1) return "several private keys with its CKA_ID";
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  if (pub == nullptr) return "its public key is unreadable";
  const bool rsa = EVP_PKEY_is_a(pub, "RSA") == 1;
  if (!rsa && EVP_PKEY_is_a(pub, "EC") != 1) return "its key is neither RSA nor EC";
  if (auto type = token.ulong_attribute(s, keys[0], CKA_KEY_TYPE);
      type && *type != static_cast<CK_ULONG>(rsa ? CKK_RSA : CKK_EC)) {
    return std::string("the private key with its CKA_ID is not an ") + (rsa ? "RSA" : "EC") +
           " key";
  }
  if (auto can_sign = token.bool_attribute(s, keys[0], CKA_SIGN); can_sign && !*can_sign) {
    return "the private key with its CKA_ID cannot sign (CKA_SIGN false)";
  }
  if (rsa) {
    BIGNUM* n = nullptr;
    if (EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) == 1) {
      Bytes mod(static_cast<size_t>(BN_num_bytes(n)));
      BN_bn2bin(n, mod.data());
      BN_free(n);
      auto on_token = token.attribute(s, keys[0], CKA_MODULUS);
      if (on_token) {
        Bytes m = *on_token;
        while (!m.empty() && m.front() == 0) m.erase(m.begin());
        if (m != mod) return "the private key with its CKA_ID has another RSA modulus";
      }
    }
  } else {
    const Bytes point = encoded_point(pub);
    std::optional<Bytes> on_token = token.attribute(s, keys[0], CKA_EC_POINT);
    if (!on_token) {
      auto pubs = token.find(s,
                             {pkcs11::attribute(CKA_CLASS, &pub_class, sizeof pub_class),
                              pkcs11::attribute(CKA_ID, id.data(), id.size())},
                             2);
      if (pubs.size() == 1) on_token = token.attribute(s, pubs[0], CKA_EC_POINT);
    }
    if (on_token && !point.empty() && unwrap_point(*on_token) != point) {
      return "the key with its CKA_ID has another EC public point";
    }
  }
  *key = keys[0];
  return {};
}

}  // namespace

std::string Adoptable::describe() const {
  return "'" + label + "' id=" + hex_of(id) + ": " + subject + " (" + object_uri + ")";
}

std::vector<Adoptable> adoptable_certificates(PersonalStore& store, const std::string& selector,
                                              std::vector<std::string>* skipped) {
  pkcs11::Token& token = *store.token();
  std::optional<Bytes> want_id;
  std::string want_label;
  if (!selector.empty()) {
    std::optional<pkcs11::Uri> uri;
    try {
      uri.emplace(pkcs11::Uri::parse(selector));
    } catch (const pkcs11::Error& e) {
      fail(MQ_ERROR_INVALID_PARAMETER, std::string("--adopt: ") + e.what());
    }
    CK_TOKEN_INFO info{};
    {
      pkcs11::CallScope scope;
      if (token.fn()->C_GetTokenInfo(token.slot(), &info) == CKR_OK && !uri->matches_token(info)) {
        fail(MQ_ERROR_INVALID_PARAMETER, "--adopt: '" + selector +
                                             "' names another token than yours ('" + token.label() +
                                             "', serial " + token.serial() + ")");
      }
    }
    want_id = uri->object_id();
    want_label = uri->object_label();
  }

  pkcs11::CallScope scope;
  auto s = token.session();
  CK_OBJECT_CLASS cert_class = CKO_CERTIFICATE;
  CK_CERTIFICATE_TYPE x509 = CKC_X_509;
  std::vector<CK_ATTRIBUTE> tmpl{pkcs11::attribute(CKA_CLASS, &cert_class, sizeof cert_class),
                                 pkcs11::attribute(CKA_CERTIFICATE_TYPE, &x509, sizeof x509)};
  if (want_id) tmpl.push_back(pkcs11::attribute(CKA_ID, want_id->data(), want_id->size()));
  if (!want_label.empty()) {
    tmpl.push_back(pkcs11::attribute(CKA_LABEL, want_label.data(), want_label.size()));
  }
  std::vector<Adoptable> out;
  for (CK_OBJECT_HANDLE c : token.find(s, tmpl, 256)) {
    Adoptable a;
    a.id = token.attribute(s, c, CKA_ID).value_or(Bytes{});
    auto label = token.attribute(s, c, CKA_LABEL).value_or(Bytes{});
    a.label.assign(label.begin(), label.end());
    auto der = token.attribute(s, c, CKA_VALUE);
    X509Ptr cert = der ? parse_der_strict(*der) : nullptr;
    const std::string name = "'" + a.label + "' id=" + hex_of(a.id);
    if (!cert) {
      if (skipped) skipped->push_back(name + ": not a DER X.509 certificate");
      continue;
    }
    a.subject = subject_string(cert.get());
    if (a.id.empty()) {
      if (skipped) skipped->push_back(name + " (" + a.subject + "): no CKA_ID to find its key by");
      continue;
    }
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    if (std::string why = key_mismatch(token, s, cert.get(), a.id, &key); !why.empty()) {
      if (skipped) skipped->push_back(name + " (" + a.subject + "): " + why);
      continue;
    }
    a.der = std::move(*der);
    a.object_uri = pkcs11::object_uri(token.label(), token.serial(), a.id, "cert");
    out.push_back(std::move(a));
  }
  return out;
}

Adoptable choose_adoptable(PersonalStore& store, const std::string& selector) {
  std::vector<std::string> skipped;
  std::vector<Adoptable> found;
  try {
    found = adoptable_certificates(store, selector, &skipped);
  } catch (const pkcs11::Error& e) {
    throw_mapped(e, MQ_ERROR_CORRUPTED_SECURITY_DATA, "looking for a certificate to adopt");
  }
  const std::string token = "token '" + store.token()->label() + "'";
  if (found.size() == 1) return std::move(found.front());
  if (found.size() > 1) {
    std::string list;
    for (const Adoptable& a : found) list += "\n  " + a.describe();
    fail(MQ_ERROR_INVALID_PARAMETER,
         std::to_string(found.size()) + " certificates on " + token +
             (selector.empty() ? std::string() : " match '" + selector + "'") +
             " have their private key there; choose one with `mqsec enroll --adopt "
             "'pkcs11:id=...'` (or object=<label>):" +
             list);
  }
  std::string why;
  for (const std::string& line : skipped) why += "\n  " + line;
  fail(MQ_ERROR_INVALID_CERTIFICATE,
       "no certificate on " + token +
           (selector.empty() ? std::string() : " that '" + selector + "' selects") +
           " has its private key there" +
           (why.empty() ? std::string(" (the token holds no certificate)")
                        : std::string(":") + why) +
           "; provision the card with its vendor tool (a key pair and its certificate), then run "
           "`mqsec enroll --adopt` again");
}

KeyKind parse_key_kind(const std::string& s) {
  if (s == "rsa2048") return KeyKind::Rsa2048;
  if (s == "rsa3072") return KeyKind::Rsa3072;
  if (s == "p256") return KeyKind::P256;
  if (s == "p384") return KeyKind::P384;
  throw std::invalid_argument("unknown key type '" + s + "': use rsa2048, rsa3072, p256 or p384");
}

Enrolled enroll_internal(const UserSetup& setup, PersonalStore& store, const EnrollOptions& opts) {
  pkcs11::Token& token = *store.token();
  const bool rsa = opts.kind == KeyKind::Rsa2048 || opts.kind == KeyKind::Rsa3072;
  const pkcs11::Hash hash =
      opts.kind == KeyKind::P384 ? pkcs11::Hash::Sha384 : pkcs11::Hash::Sha256;
  const EVP_MD* md = hash == pkcs11::Hash::Sha384 ? EVP_sha384() : EVP_sha256();

  X509Ptr cert(X509_new());
  std::unique_ptr<X509_NAME, OsslFree> name(X509_NAME_new());
  try {
    set_subject(name.get(), opts.subject.empty() ? "CN=" + setup.user.name : opts.subject);
  } catch (const std::invalid_argument& e) {
    fail(MQ_ERROR_INVALID_PARAMETER, e.what());
  }

  Bytes id(16);
  RAND_bytes(id.data(), static_cast<int>(id.size()));
  std::string label = "mqsec internal " + setup.user.name;
  try {
    // 1. Key pair on the token.
    pkcs11::CallScope scope;
    auto s = token.rw_session();
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG bits = opts.kind == KeyKind::Rsa3072 ? 3072 : 2048;
    const uint8_t e65537[] = {0x01, 0x00, 0x01};
    std::vector<CK_ATTRIBUTE> pub_t{pkcs11::attribute(CKA_TOKEN, &yes, 1),
                                    pkcs11::attribute(CKA_VERIFY, &yes, 1),
                                    pkcs11::attribute(CKA_ID, id.data(), id.size()),
                                    pkcs11::attribute(CKA_LABEL, label.data(), label.size())};
    std::vector<CK_ATTRIBUTE> priv_t{pkcs11::attribute(CKA_TOKEN, &yes, 1),
                                     pkcs11::attribute(CKA_PRIVATE, &yes, 1),
                                     pkcs11::attribute(CKA_SENSITIVE, &yes, 1),
                                     pkcs11::attribute(CKA_EXTRACTABLE, &no, 1),
                                     pkcs11::attribute(CKA_SIGN, &yes, 1),
                                     pkcs11::attribute(CKA_ID, id.data(), id.size()),
                                     pkcs11::attribute(CKA_LABEL, label.data(), label.size())};
    CK_MECHANISM mech{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
    if (rsa) {
      pub_t.push_back(pkcs11::attribute(CKA_MODULUS_BITS, &bits, sizeof bits));
      pub_t.push_back(pkcs11::attribute(CKA_PUBLIC_EXPONENT, e65537, sizeof e65537));
    } else {
      mech = {CKM_EC_KEY_PAIR_GEN, nullptr, 0};
      if (opts.kind == KeyKind::P256) {
        pub_t.push_back(pkcs11::attribute(CKA_EC_PARAMS, kP256Oid, sizeof kP256Oid));
      } else {
        pub_t.push_back(pkcs11::attribute(CKA_EC_PARAMS, kP384Oid, sizeof kP384Oid));
      }
    }
    if (std::string why = token.cannot_generate(mech.mechanism); !why.empty()) {
      throw pkcs11::Error("token '" + token.label() + "' cannot generate key pairs: " + why,
                          pkcs11::Problem::KeyGenerationUnsupported);
    }
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    CK_RV gen_rv = token.fn()->C_GenerateKeyPair(s.handle(), &mech, pub_t.data(), pub_t.size(),
                                                 priv_t.data(), priv_t.size(), &pub, &priv);
    if (gen_rv != CKR_OK) {
      pkcs11::Error e("C_GenerateKeyPair", gen_rv, "token '" + token.label() + "'");
      if (e.problem() == pkcs11::Problem::KeyGenerationUnsupported) {
        throw pkcs11::Error("C_GenerateKeyPair", gen_rv,
                            "token '" + token.label() + "' cannot generate key pairs",
                            pkcs11::Problem::KeyGenerationUnsupported);
      }
      throw e;
    }
    PkeyPtr pkey = public_key_from_token(token, s, pub, opts.kind);

    // 2. The certificate body (TBS), with the signature algorithm it will carry.
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;  // positive INTEGER
    std::unique_ptr<BIGNUM, decltype(&BN_free)> sn(BN_bin2bn(serial, sizeof serial, nullptr),
                                                   BN_free);
    X509_set_version(cert.get(), X509_VERSION_3);
    BN_to_ASN1_INTEGER(sn.get(), X509_get_serialNumber(cert.get()));
    X509_set_subject_name(cert.get(), name.get());
    X509_set_issuer_name(cert.get(), name.get());
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(opts.valid_days) * 86400);
    X509_set_pubkey(cert.get(), pkey.get());
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
    for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                              std::pair{NID_key_usage, "critical,digitalSignature"},
                              std::pair{NID_subject_key_identifier, "hash"}}) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
      if (ext == nullptr) throw pkcs11::Error("cannot build certificate extension");
      X509_add_ext(cert.get(), ext, -1);
      X509_EXTENSION_free(ext);
    }
    int sig_nid =
        rsa ? NID_sha256WithRSAEncryption
            : (hash == pkcs11::Hash::Sha384 ? NID_ecdsa_with_SHA384 : NID_ecdsa_with_SHA256);
    // OpenSSL 3.0 has no setter for the TBS signature algorithm: it lives inside the X509
    // object and X509_sign would fill it, but X509_sign needs the private key, which never
    // leaves the token. So we set it in place and sign the re-encoded TBS on the token.
    auto* tbs_alg = const_cast<X509_ALGOR*>(X509_get0_tbs_sigalg(cert.get()));
    X509_ALGOR_set0(tbs_alg, OBJ_nid2obj(sig_nid), rsa ? V_ASN1_NULL : V_ASN1_UNDEF, nullptr);
    unsigned char* tbs_p = nullptr;
    int tbs_len = i2d_re_X509_tbs(cert.get(), &tbs_p);
    if (tbs_len <= 0) throw pkcs11::Error("cannot encode the certificate: " + openssl_error());
    Bytes tbs(tbs_p, tbs_p + tbs_len);
    OPENSSL_free(tbs_p);

    // 3. Sign the TBS on the token and assemble Certificate ::= SEQUENCE { tbs, alg, sig }.
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_Digest(tbs.data(), tbs.size(), digest, &dlen, md, nullptr);
    pkcs11::SignKey key;
    key.handle = priv;
    key.scheme = rsa ? pkcs11::Scheme::RsaPkcs1 : pkcs11::Scheme::Ecdsa;
    key.signature_size = rsa ? bits / 8 : (opts.kind == KeyKind::P256 ? 64 : 96);
    Bytes sig = pkcs11::sign_digest(token, key, hash, std::span(digest, dlen), store.pin_source());
    X509_ALGOR* alg = X509_ALGOR_new();
    X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), rsa ? V_ASN1_NULL : V_ASN1_UNDEF, nullptr);
    unsigned char* alg_p = nullptr;
    int alg_len = i2d_X509_ALGOR(alg, &alg_p);
    X509_ALGOR_free(alg);
    Bytes body = tbs;
    body.insert(body.end(), alg_p, alg_p + alg_len);
    OPENSSL_free(alg_p);
    body.push_back(0x03);  // BIT STRING, no unused bits
    pkcs11::append_der_length(body, sig.size() + 1);
    body.push_back(0x00);
    body.insert(body.end(), sig.begin(), sig.end());
    Bytes der{0x30};
    pkcs11::append_der_length(der, body.size());
    der.insert(der.end(), body.begin(), body.end());

    X509Ptr check = parse_der_strict(der);
    if (!check || X509_verify(check.get(), pkey.get()) != 1) {
      throw pkcs11::Error("the token's signature on the new certificate does not verify");
    }

    // 4. Store the certificate on the token next to its key.
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ctype = CKC_X_509;
    unsigned char* subj_p = nullptr;
    int subj_len = i2d_X509_NAME(name.get(), &subj_p);
    Bytes subj(subj_p, subj_p + subj_len);
    OPENSSL_free(subj_p);
    std::vector<CK_ATTRIBUTE> cert_t{pkcs11::attribute(CKA_CLASS, &cls, sizeof cls),
                                     pkcs11::attribute(CKA_CERTIFICATE_TYPE, &ctype, sizeof ctype),
                                     pkcs11::attribute(CKA_TOKEN, &yes, 1),
                                     pkcs11::attribute(CKA_PRIVATE, &no, 1),
                                     pkcs11::attribute(CKA_ID, id.data(), id.size()),
                                     pkcs11::attribute(CKA_LABEL, label.data(), label.size()),
                                     pkcs11::attribute(CKA_SUBJECT, subj.data(), subj.size()),
                                     pkcs11::attribute(CKA_ISSUER, subj.data(), subj.size()),
                                     pkcs11::attribute(CKA_VALUE, der.data(), der.size())};
    CK_OBJECT_HANDLE cert_obj = CK_INVALID_HANDLE;
    pkcs11::check(token.fn()->C_CreateObject(s.handle(), cert_t.data(), cert_t.size(), &cert_obj),
                  "C_CreateObject");

    Enrolled out;
    out.der = std::move(der);
    out.object_uri = pkcs11::object_uri(token.label(), token.serial(), id, "cert");
    set_internal_certificate(setup.profile, out.object_uri);
    log(LogLevel::Info,
        "enrolled internal certificate " + out.object_uri + " for user '" + setup.user.name + "'");
    return out;
  } catch (const pkcs11::Error& e) {
    throw_mapped(e, MQ_ERROR_CORRUPTED_SECURITY_DATA, "enrolling an internal certificate");
  }
}

}  // namespace mqsec::security
