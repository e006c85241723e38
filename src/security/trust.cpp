// Trust policy: chain building with OpenSSL's X509_verify_cert against the configured anchors,
// leaf checks, CRLs (re-read when they change) and OCSP (cached), and the SID a certificate
// carries. See trust.hpp.
#include "src/security/trust.hpp"

#include <mq.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <system_error>
#include <tuple>
#include <vector>

#include "mqsec/error.hpp"
#include "src/security/bytes_less.hpp"
#include "src/security/identity.hpp"
#include "src/security/log.hpp"

namespace mqsec::security {

static_assert(trust_bits::kSignature == MQSEC_TRUST_SIGNATURE);
static_assert(trust_bits::kChain == MQSEC_TRUST_CHAIN);
static_assert(trust_bits::kRevocationChecked == MQSEC_TRUST_REVOCATION_CHECKED);
static_assert(trust_bits::kSidFromCertificate == MQSEC_TRUST_SID_FROM_CERTIFICATE);
static_assert(trust_bits::kSystemRegistry == MQSEC_TRUST_SYSTEM_REGISTRY);
static_assert(trust_bits::kUserRegistry == MQSEC_TRUST_USER_REGISTRY);
static_assert(trust_bits::kSignerAuthorized == MQSEC_TRUST_SIGNER_AUTHORIZED);

namespace {

namespace fs = std::filesystem;

// ---- OpenSSL ownership ----------------------------------------------------------------------

template <class T>
using Ptr = OsslPtr<T>;
using CertStack = OsslPtr<STACK_OF(X509)>;

// Seconds since the epoch of an ASN1_TIME; nullopt if it is malformed.
std::optional<std::time_t> to_time_t(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return timegm(&tm);
}

std::string ossl_reason() {
  std::string r = openssl_error();
  return r.empty() ? "unknown OpenSSL error" : r;
}

// ---- reading certificates and CRLs ----------------------------------------------------------

// The regular files of `p` (non-recursive, sorted) if it is a directory, else {p}.
std::vector<fs::path> files_of(const fs::path& p, std::error_code& ec) {
  std::vector<fs::path> out;
  if (fs::is_directory(p, ec)) {
    for (const auto& entry : fs::directory_iterator(p, ec)) {
      std::error_code e2;
      if (entry.is_regular_file(e2)) out.push_back(entry.path());
    }
    std::sort(out.begin(), out.end());
  } else if (!ec) {
    if (!fs::exists(p, ec)) {
      if (!ec) ec = std::make_error_code(std::errc::no_such_file_or_directory);
    } else {
      out.push_back(p);
    }
  }
  return out;
}

Ptr<BIO> open_file(const fs::path& p) { return Ptr<BIO>(BIO_new_file(p.c_str(), "rb")); }

// Every object in a PEM file (several allowed), or the one object of a DER file.
template <class Owner, class Pem, class Der>
std::vector<Owner> read_all(const fs::path& file, Pem pem, Der der) {
  std::vector<Owner> out;
  Ptr<BIO> bio = open_file(file);
  if (!bio) return out;
  while (auto* c = pem(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(c);
  ERR_clear_error();  // the end of the file reads as "no start line"
  if (out.empty()) {
    bio = open_file(file);
    if (bio) {
      if (auto* c = der(bio.get(), nullptr)) out.emplace_back(c);
      ERR_clear_error();
    }
  }
  return out;
}

std::vector<X509Ptr> read_certificates(const fs::path& file) {
  return read_all<X509Ptr>(file, PEM_read_bio_X509, d2i_X509_bio);
}

std::vector<Ptr<X509_CRL>> read_crls(const fs::path& file) {
  return read_all<Ptr<X509_CRL>>(file, PEM_read_bio_X509_CRL, d2i_X509_CRL_bio);
}

[[noreturn]] void config_error(const std::string& reason) {
  mqsec::fail(MQ_ERROR_SERVICE_NOT_AVAILABLE, reason);
}

// All certificates of the configured files and directories; `what` names the setting.
std::vector<X509Ptr> load_certificates(const std::vector<fs::path>& paths, const char* what) {
  std::vector<X509Ptr> all;
  for (const fs::path& p : paths) {
    std::error_code ec;
    std::vector<fs::path> files = files_of(p, ec);
    if (ec) config_error(std::string("[trust] ") + what + ": " + p.string() + ": " + ec.message());
    size_t before = all.size();
    for (const fs::path& f : files) {
      std::vector<X509Ptr> certs = read_certificates(f);
      if (certs.empty() && files.size() == 1 && f == p) {
        config_error(std::string("[trust] ") + what + ": " + f.string() +
                     ": no certificate could be read (PEM or DER expected)");
      }
      if (certs.empty()) {
        log(LogLevel::Warning,
            std::string("[trust] ") + what + ": " + f.string() + " holds no certificate; skipped");
      }
      for (auto& c : certs) all.push_back(std::move(c));
    }
    if (all.size() == before) {
      config_error(std::string("[trust] ") + what + ": " + p.string() + " holds no certificate");
    }
  }
  return all;
}

// ---- the SID in a certificate ---------------------------------------------------------------

constexpr const char* kSidExtensionOid = "1.3.6.1.4.1.311.25.2";
constexpr const char* kSidOtherNameOid = "1.3.6.1.4.1.311.25.2.1";
constexpr std::string_view kSidUriPrefix = "tag:microsoft.com,2022-09-14:sid:";
constexpr size_t kMaxSidText = 200;  // 15 sub-authorities of 10 digits and more fit easily

// The canonical text of a SID given as text; nullopt when it is not a well-formed SID.
std::optional<std::string> canonical_sid(const unsigned char* data, size_t len) {
  if (data == nullptr || len == 0 || len > kMaxSidText) return std::nullopt;
  std::string text(reinterpret_cast<const char*>(data), len);
  try {
    return Sid::from_string(text).str();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

const ASN1_OBJECT* static_obj(const char* oid) {
  ASN1_OBJECT* o = OBJ_txt2obj(oid, 1);
  return o;  // kept for the life of the process (two objects)
}

// Microsoft's SID extension: SEQUENCE { [0] IMPLICIT OtherName }, which is exactly the DER of
// GeneralNames holding one otherName, so OpenSSL's GENERAL_NAMES decoder parses it.
// found = whether the extension is present at all.
std::optional<std::string> sid_from_extension(X509* cert, bool& found) {
  static const ASN1_OBJECT* ext_oid = static_obj(kSidExtensionOid);
  static const ASN1_OBJECT* on_oid = static_obj(kSidOtherNameOid);
  found = false;
  if (ext_oid == nullptr || on_oid == nullptr) return std::nullopt;
  int idx = X509_get_ext_by_OBJ(cert, ext_oid, -1);
  if (idx < 0) return std::nullopt;
  found = true;
  if (X509_get_ext_by_OBJ(cert, ext_oid, idx) >= 0) return std::nullopt;  // twice: ambiguous
  const ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
  if (value == nullptr || value->length <= 0) return std::nullopt;
  const unsigned char* p = value->data;
  const unsigned char* end = value->data + value->length;
  Ptr<GENERAL_NAMES> names(d2i_GENERAL_NAMES(nullptr, &p, value->length));
  ERR_clear_error();
  if (!names || p != end) return std::nullopt;
  std::optional<std::string> sid;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_OTHERNAME || gn->d.otherName == nullptr) continue;
    const OTHERNAME* on = gn->d.otherName;
    if (on->type_id == nullptr || OBJ_cmp(on->type_id, on_oid) != 0) continue;
    if (on->value == nullptr || on->value->type != V_ASN1_OCTET_STRING) return std::nullopt;
    const ASN1_OCTET_STRING* s = on->value->value.octet_string;
    auto candidate = canonical_sid(s->data, static_cast<size_t>(s->length));
    if (!candidate || (sid && *sid != *candidate)) return std::nullopt;  // bad or contradictory
    sid = candidate;
  }
  return sid;
}

std::optional<std::string> sid_from_san(X509* cert) {
  int crit = 0;
  Ptr<GENERAL_NAMES> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, nullptr)));
  ERR_clear_error();
  if (!names) return std::nullopt;
  std::optional<std::string> sid;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_URI || gn->d.uniformResourceIdentifier == nullptr) continue;
    const ASN1_IA5STRING* uri = gn->d.uniformResourceIdentifier;
    auto len = static_cast<size_t>(uri->length);
    if (len <= kSidUriPrefix.size() ||
        std::memcmp(uri->data, kSidUriPrefix.data(), kSidUriPrefix.size()) != 0) {
      continue;
    }
    auto candidate = canonical_sid(uri->data + kSidUriPrefix.size(), len - kSidUriPrefix.size());
    if (!candidate || (sid && *sid != *candidate)) return std::nullopt;
    sid = candidate;
  }
  return sid;
}

// ---- leaf checks ----------------------------------------------------------------------------

// Why `leaf` may not sign messages; nullopt when it may.
std::optional<std::string> leaf_problem(X509* leaf, const std::vector<Ptr<ASN1_OBJECT>>& ekus) {
  const uint32_t xflags = X509_get_extension_flags(leaf);
  if (xflags & EXFLAG_INVALID) return "leaf: the certificate's extensions are malformed";
  if ((xflags & EXFLAG_KUSAGE) && !(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE)) {
    return "leaf: key usage does not allow digital signatures";
  }
  if (xflags & EXFLAG_CA) return "leaf: the certificate is a CA certificate (CA:TRUE)";
  if (xflags & EXFLAG_XKUSAGE) {
    Ptr<EXTENDED_KEY_USAGE> eku(static_cast<EXTENDED_KEY_USAGE*>(
        X509_get_ext_d2i(leaf, NID_ext_key_usage, nullptr, nullptr)));
    ERR_clear_error();
    bool allowed = false;
    for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku.get()) && !allowed; ++i) {
      const ASN1_OBJECT* have = sk_ASN1_OBJECT_value(eku.get(), i);
      for (const auto& want : ekus) {
        if (OBJ_cmp(have, want.get()) == 0) {
          allowed = true;
          break;
        }
      }
    }
    if (!allowed) {
      return "leaf: extended key usage allows none of [trust] extended-key-usage";
    }
  }
  EVP_PKEY* key = X509_get0_pubkey(leaf);
  if (key == nullptr) return "leaf: the public key cannot be read";
  if (EVP_PKEY_is_a(key, "RSA") == 1) {
    int bits = EVP_PKEY_get_bits(key);
    if (bits < 2048) return "leaf: RSA key of " + std::to_string(bits) + " bits (at least 2048)";
    return std::nullopt;
  }
  if (EVP_PKEY_is_a(key, "EC") == 1) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &len) != 1) {
      ERR_clear_error();
      return "leaf: EC key with explicit or unknown curve parameters";
    }
    std::string_view g(group, len);
    for (std::string_view ok :
         {"prime256v1", "P-256", "secp384r1", "P-384", "secp521r1", "P-521"}) {
      if (g == ok) return std::nullopt;
    }
    return "leaf: EC key on curve " + std::string(g) + " (P-256, P-384 or P-521 accepted)";
  }
  return std::string("leaf: key type ") + EVP_PKEY_get0_type_name(key) +
         " is not accepted (RSA or EC)";
}

// ---- chain verification with CRL results ----------------------------------------------------

// What the verify callback saw about the leaf's CRL.
struct VerifyState {
  bool crl_revoked = false;
  std::string crl_problem;  // no usable CRL for the leaf: why
};

int ex_index() {
  static const int idx = X509_STORE_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

bool is_crl_error(int err) {
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
      return true;
    default:
      return false;
  }
}

// Records the leaf's CRL outcome and lets verification go on, so that the chain result and the
// revocation result are known separately (a missing CRL is "unknown", not a broken chain).
int verify_cb(int ok, X509_STORE_CTX* ctx) {
  if (ok) return ok;
  auto* st = static_cast<VerifyState*>(X509_STORE_CTX_get_ex_data(ctx, ex_index()));
  const int err = X509_STORE_CTX_get_error(ctx);
  if (st != nullptr && X509_STORE_CTX_get_error_depth(ctx) == 0) {
    if (err == X509_V_ERR_CERT_REVOKED) {
      st->crl_revoked = true;
      return 1;
    }
    if (is_crl_error(err)) {
      if (st->crl_problem.empty()) st->crl_problem = X509_verify_cert_error_string(err);
      return 1;
    }
  }
  return 0;
}

// ---- the store ------------------------------------------------------------------------------

enum class RevStatus { Good, Revoked, Unknown };

struct OcspAnswer {
  RevStatus status = RevStatus::Unknown;
  std::string reason;
  std::time_t fetched = 0;  // the `now` of the evaluation that fetched it
  std::time_t expires = 0;  // usable while now < expires
};

// Anchors plus the CRLs read at one time; replaced as a whole when a CRL file changes.
struct Snapshot {
  Ptr<X509_STORE> store;
  bool has_crls = false;
  std::time_t crl_next_update = 0;  // earliest nextUpdate of the loaded CRLs (0: none)
};

using FileStamp = std::tuple<std::string, int64_t, int64_t, uint64_t>;  // path, mtime ns, size, ino

constexpr auto kCrlRecheck = std::chrono::seconds(2);
constexpr std::time_t kOutcomeTtl = 60;
constexpr std::time_t kOcspMaxTtl = 3600;
constexpr std::time_t kOcspDefaultTtl = 300;
constexpr std::time_t kOcspFailureTtl = 30;
constexpr std::time_t kOcspSkew = 300;
constexpr size_t kMaxCacheEntries = 4096;

class X509TrustStore final : public TrustStore {
 public:
  explicit X509TrustStore(const TrustConfig& cfg) : cfg_(cfg) {
    if (cfg.ocsp != "off" && cfg.ocsp != "aia" && cfg.ocsp.rfind("http://", 0) != 0) {
      config_error("[trust] ocsp: expected \"off\", \"aia\" or an http:// URL, not \"" + cfg.ocsp +
                   "\"");
    }
    for (const std::string& name : cfg.extended_key_usage) {
      ASN1_OBJECT* o = OBJ_txt2obj(name.c_str(), 0);
      ERR_clear_error();
      if (o == nullptr) {
        config_error("[trust] extended-key-usage: \"" + name +
                     "\" is neither a known extended key usage name (e.g. clientAuth, "
                     "emailProtection) nor a dotted OID");
      }
      ekus_.emplace_back(o);
    }
    if (!cfg.anchors.empty()) anchors_ = load_certificates(cfg.anchors, "anchors");
    if (!cfg.intermediates.empty()) {
      intermediates_ = load_certificates(cfg.intermediates, "intermediates");
    }
    for (const fs::path& p : cfg.crl) {
      std::error_code ec;
      files_of(p, ec);
      if (ec) config_error("[trust] crl: " + p.string() + ": " + ec.message());
    }
    std::lock_guard lock(mu_);
    reload_crls_locked(crl_stamps());
    last_crl_check_ = std::chrono::steady_clock::now();
  }

  TrustOutcome evaluate(X509* leaf, const Bytes& cert_sha256, TrustRequire required,
                        std::time_t now) const override {
    TrustOutcome out;
    if (anchors_.empty()) {
      out.ok = required == TrustRequire::Signature;
      if (!out.ok) {
        out.kind = "chain";
        out.reason = "chain: no trust anchors are configured";
      }
      return out;
    }
    std::shared_ptr<const Snapshot> snap = snapshot();
    const auto key = std::make_pair(cert_sha256, static_cast<int>(required));
    {
      std::lock_guard lock(mu_);
      if (auto it = outcomes_.find(key); it != outcomes_.end() && it->second.snap == snap &&
                                         it->second.computed <= now && now < it->second.until) {
        return it->second.outcome;
      }
    }
    std::time_t until = now + kOutcomeTtl;
    out = compute(leaf, cert_sha256, required, now, *snap, until);
    if (out.ok && until > now) {
      std::lock_guard lock(mu_);
      if (outcomes_.size() >= kMaxCacheEntries) outcomes_.clear();
      outcomes_[key] = CachedOutcome{out, snap, now, until};
    }
    return out;
  }

 private:
  struct CachedOutcome {
    TrustOutcome outcome;
    std::shared_ptr<const Snapshot> snap;
    std::time_t computed = 0;
    std::time_t until = 0;
  };

  TrustOutcome compute(X509* leaf, const Bytes& digest, TrustRequire required, std::time_t now,
                       const Snapshot& snap, std::time_t& until) const {
    TrustOutcome out;
    auto reject = [&](const char* kind, std::string reason) {
      out.flags = 0;
      out.certificate_sid.reset();
      out.kind = kind;
      out.reason = std::move(reason);
      out.ok = required == TrustRequire::Signature;  // the chain is only informative then
      return out;
    };

    CertStack untrusted(sk_X509_new_null());  // outlives ctx, which points to it
    Ptr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
    if (!ctx || !untrusted) return reject("chain", "chain: out of memory");
    for (const X509Ptr& c : intermediates_) {
      if (!sk_X509_push(untrusted.get(), c.get())) return reject("chain", "chain: out of memory");
      X509_up_ref(c.get());
    }
    if (X509_STORE_CTX_init(ctx.get(), snap.store.get(), leaf, untrusted.get()) != 1) {
      return reject("chain", "chain: " + ossl_reason());
    }
    VerifyState state;
    X509_STORE_CTX_set_ex_data(ctx.get(), ex_index(), &state);
    X509_STORE_CTX_set_verify_cb(ctx.get(), verify_cb);
    X509_STORE_CTX_set_time(ctx.get(), 0, now);
    unsigned long vflags = X509_V_FLAG_PARTIAL_CHAIN;  // any configured anchor ends a chain
    if (snap.has_crls) vflags |= X509_V_FLAG_CRL_CHECK;
    X509_STORE_CTX_set_flags(ctx.get(), vflags);
    if (X509_verify_cert(ctx.get()) != 1) {
      const int err = X509_STORE_CTX_get_error(ctx.get());
      std::string why = X509_verify_cert_error_string(err);
      ERR_clear_error();
      return reject("chain", "chain: " + why + " (depth " +
                                 std::to_string(X509_STORE_CTX_get_error_depth(ctx.get())) + ")");
    }
    CertStack chain(X509_STORE_CTX_get1_chain(ctx.get()));
    for (int i = 0; chain && i < sk_X509_num(chain.get()); ++i) {
      if (auto t = to_time_t(X509_get0_notAfter(sk_X509_value(chain.get(), i)))) {
        until = std::min(until, *t);
      }
    }
    if (auto problem = leaf_problem(leaf, ekus_)) return reject("leaf", *problem);

    // Revocation: the CRL (when CRLs are configured), else OCSP (when configured).
    RevStatus rev = RevStatus::Unknown;
    std::string rev_reason;
    if (snap.has_crls) {
      if (state.crl_revoked) {
        rev = RevStatus::Revoked;
        rev_reason = "revoked: the certificate is on its issuer's CRL";
      } else if (state.crl_problem.empty()) {
        rev = RevStatus::Good;
        if (snap.crl_next_update > 0) until = std::min(until, snap.crl_next_update);
      } else {
        rev_reason = "CRL: " + state.crl_problem;
      }
    } else {
      rev_reason = "no CRL is configured";
    }
    if (rev == RevStatus::Unknown && cfg_.ocsp != "off") {
      X509* issuer =
          chain && sk_X509_num(chain.get()) >= 2 ? sk_X509_value(chain.get(), 1) : nullptr;
      OcspAnswer a = ocsp_status(leaf, issuer, chain.get(), snap, digest, now);
      until = std::min(until, a.expires);
      if (a.status == RevStatus::Unknown) {
        rev_reason += "; OCSP: " + a.reason;
      } else {
        rev = a.status;
        rev_reason = a.reason;
      }
    } else if (rev == RevStatus::Unknown) {
      rev_reason += "; OCSP is off";
    }
    if (rev == RevStatus::Revoked) return reject("revoked", rev_reason);
    if (rev == RevStatus::Unknown && required == TrustRequire::ChainRevocation &&
        cfg_.revocation == RevocationMode::HardFail) {
      out = reject("revocation-unknown",
                   "revocation-unknown: no revocation answer (" + rev_reason + ")");
      return out;
    }
    out.ok = true;
    out.flags = trust_bits::kChain;
    if (rev == RevStatus::Good) out.flags |= trust_bits::kRevocationChecked;
    if (rev == RevStatus::Unknown && required == TrustRequire::ChainRevocation) {
      out.reason = "revocation not checked (soft-fail): " + rev_reason;
    }
    out.certificate_sid = sid_from_certificate(leaf);
    return out;
  }

  // ---- OCSP ----

  OcspAnswer ocsp_status(X509* leaf, X509* issuer, STACK_OF(X509) * chain, const Snapshot& snap,
                         const Bytes& digest, std::time_t now) const {
    auto cached = [&]() -> std::optional<OcspAnswer> {
      std::lock_guard lock(mu_);
      auto it = ocsp_.find(digest);
      if (it != ocsp_.end() && it->second.fetched - kOcspSkew <= now && now < it->second.expires) {
        return it->second;
      }
      return std::nullopt;
    };
    if (auto a = cached()) return *a;
    // One request per certificate at a time: the others wait for its answer.
    std::lock_guard fetch_lock(fetch_mu_[digest.empty() ? 0 : digest[0] % fetch_mu_.size()]);
    if (auto a = cached()) return *a;
    OcspAnswer a = fetch_ocsp(leaf, issuer, chain, snap, now);
    a.fetched = now;
    if (a.status == RevStatus::Unknown) {
      a.expires = now + kOcspFailureTtl;
      log(LogLevel::Warning, "OCSP: " + a.reason);
    }
    std::lock_guard lock(mu_);
    if (ocsp_.size() >= kMaxCacheEntries) ocsp_.clear();
    ocsp_[digest] = a;
    return a;
  }

  OcspAnswer fetch_ocsp(X509* leaf, X509* issuer, STACK_OF(X509) * chain, const Snapshot& snap,
                        std::time_t now) const {
    OcspAnswer a;
    auto unknown = [&](std::string why) {
      a.status = RevStatus::Unknown;
      a.reason = std::move(why);
      ERR_clear_error();
      return a;
    };
    if (issuer == nullptr) return unknown("the certificate's issuer is not known");
    std::string url = cfg_.ocsp;
    if (url == "aia") {
      url.clear();
      OsslPtr<STACK_OF(OPENSSL_STRING)> urls(X509_get1_ocsp(leaf));
      for (int i = 0; urls && i < sk_OPENSSL_STRING_num(urls.get()); ++i) {
        std::string u = sk_OPENSSL_STRING_value(urls.get(), i);
        if (u.rfind("http://", 0) == 0) {
          url = u;
          break;
        }
      }
      if (url.empty()) return unknown("the certificate names no http:// OCSP responder (AIA)");
    }
    Ptr<OCSP_REQUEST> req(OCSP_REQUEST_new());
    OCSP_CERTID* id = OCSP_cert_to_id(EVP_sha1(), leaf, issuer);
    if (!req || id == nullptr) {
      OCSP_CERTID_free(id);
      return unknown("cannot build the request: " + ossl_reason());
    }
    Ptr<OCSP_CERTID> id_copy(OCSP_CERTID_dup(id));
    if (!id_copy || OCSP_request_add0_id(req.get(), id) == nullptr) {
      OCSP_CERTID_free(id);
      return unknown("cannot build the request: " + ossl_reason());
    }
    if (OCSP_request_add1_nonce(req.get(), nullptr, -1) != 1) {
      return unknown("cannot add a nonce: " + ossl_reason());
    }
    Ptr<BIO> body(ASN1_item_i2d_mem_bio(ASN1_ITEM_rptr(OCSP_REQUEST),
                                        reinterpret_cast<const ASN1_VALUE*>(req.get())));
    if (!body) return unknown("cannot encode the request: " + ossl_reason());
    const int timeout_s =
        static_cast<int>(std::max<int64_t>(1, (cfg_.ocsp_timeout_ms + 999) / 1000));
    char *host = nullptr, *port = nullptr, *path = nullptr;
    int use_ssl = 0;
    if (OCSP_parse_url(url.c_str(), &host, &port, &path, &use_ssl) != 1 || use_ssl != 0) {
      OPENSSL_free(host);
      OPENSSL_free(port);
      OPENSSL_free(path);
      return unknown("responder URL " + url + " is not an http:// URL");
    }
    // The proxy, if any, comes from http_proxy / no_proxy (read with secure_getenv): responses
    // are signed, so a proxy can withhold an answer but not forge one.
    Ptr<BIO> rsp(OSSL_HTTP_transfer(nullptr, host, port, path, 0, nullptr, nullptr, nullptr,
                                    nullptr, nullptr, nullptr, 0, nullptr,
                                    "application/ocsp-request", body.get(),
                                    "application/ocsp-response", 1, 100 * 1024, timeout_s, 0));
    OPENSSL_free(host);
    OPENSSL_free(port);
    OPENSSL_free(path);
    if (!rsp) return unknown("no answer from " + url + ": " + ossl_reason());
    Ptr<OCSP_RESPONSE> resp(d2i_OCSP_RESPONSE_bio(rsp.get(), nullptr));
    if (!resp) return unknown("malformed response from " + url);
    const int rstatus = OCSP_response_status(resp.get());
    if (rstatus != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
      return unknown(url + " answered " + OCSP_response_status_str(rstatus));
    }
    Ptr<OCSP_BASICRESP> basic(OCSP_response_get1_basic(resp.get()));
    if (!basic) return unknown("response from " + url + " is not a basic response");
    // 1: our nonce came back; 0: another nonce (a mix-up or an attack); anything else: none.
    const int nonce = OCSP_check_nonce(req.get(), basic.get());
    if (nonce == 0) return unknown("response from " + url + " carries another nonce");
    if (OCSP_basic_verify(basic.get(), chain, snap.store.get(), 0) != 1) {
      return unknown("response from " + url + " does not verify: " + ossl_reason());
    }
    int status = -1, reason = -1;
    ASN1_GENERALIZEDTIME *rev = nullptr, *this_upd = nullptr, *next_upd = nullptr;
    if (OCSP_resp_find_status(basic.get(), id_copy.get(), &status, &reason, &rev, &this_upd,
                              &next_upd) != 1) {
      return unknown("response from " + url + " does not mention the certificate");
    }
    auto t_this = to_time_t(this_upd);
    if (!t_this || *t_this > now + kOcspSkew) {
      return unknown("response from " + url + " has a thisUpdate in the future");
    }
    std::time_t ttl = kOcspDefaultTtl;
    if (next_upd == nullptr) {
      // Without a nextUpdate only our nonce shows that the answer was made for this request:
      // an old "good" answer replayed by whoever answers at the responder's address would
      // otherwise pass for as long as it is served, revoked or not.
      if (nonce != 1) {
        return unknown("response from " + url +
                       " has neither a nextUpdate nor our nonce, so it may be a replayed answer");
      }
      if (*t_this < now - kOcspMaxTtl) {
        return unknown("response from " + url + " is older than an hour and has no nextUpdate");
      }
    } else {
      auto t_next = to_time_t(next_upd);
      if (!t_next || *t_next < now - kOcspSkew) {
        return unknown("response from " + url + " is out of date (nextUpdate has passed)");
      }
      ttl = std::clamp<std::time_t>(*t_next - now, 1, kOcspMaxTtl);
    }
    a.expires = now + ttl;
    switch (status) {
      case V_OCSP_CERTSTATUS_GOOD:
        a.status = RevStatus::Good;
        a.reason = "OCSP: good";
        return a;
      case V_OCSP_CERTSTATUS_REVOKED:
        a.status = RevStatus::Revoked;
        a.reason = std::string("revoked: the OCSP responder says revoked (") +
                   (reason >= 0 ? OCSP_crl_reason_str(reason) : "no reason given") + ")";
        return a;
      default:
        return unknown("the responder does not know the certificate");
    }
  }

  // ---- CRLs ----

  std::vector<FileStamp> crl_stamps() const {
    std::vector<FileStamp> stamps;
    for (const fs::path& p : cfg_.crl) {
      std::error_code ec;
      for (const fs::path& f : files_of(p, ec)) {
        struct stat st {};
        if (::stat(f.c_str(), &st) != 0) continue;
        stamps.emplace_back(f.string(),
                            int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec,
                            int64_t{st.st_size}, uint64_t{st.st_ino});
      }
    }
    return stamps;
  }

  void reload_crls_locked(std::vector<FileStamp> stamps) const {
    auto snap = std::make_shared<Snapshot>();
    snap->store.reset(X509_STORE_new());
    if (!snap->store) config_error("[trust]: out of memory");
    for (const X509Ptr& c : anchors_) X509_STORE_add_cert(snap->store.get(), c.get());
    for (const FileStamp& s : stamps) {
      const std::string& file = std::get<0>(s);
      std::vector<Ptr<X509_CRL>> crls = read_crls(file);
      if (crls.empty()) {
        log(LogLevel::Warning, "[trust] crl: " + file + " holds no CRL; skipped");
        continue;
      }
      for (const auto& crl : crls) {
        X509_STORE_add_crl(snap->store.get(), crl.get());
        snap->has_crls = true;
        if (auto t = to_time_t(X509_CRL_get0_nextUpdate(crl.get()))) {
          if (snap->crl_next_update == 0 || *t < snap->crl_next_update) {
            snap->crl_next_update = *t;
          }
        }
      }
    }
    ERR_clear_error();
    snap_ = std::move(snap);
    crl_stamps_ = std::move(stamps);
    outcomes_.clear();
  }

  std::shared_ptr<const Snapshot> snapshot() const {
    std::lock_guard lock(mu_);
    auto t = std::chrono::steady_clock::now();
    if (!cfg_.crl.empty() && t - last_crl_check_ >= kCrlRecheck) {
      last_crl_check_ = t;
      std::vector<FileStamp> stamps = crl_stamps();
      if (stamps != crl_stamps_) {
        try {
          reload_crls_locked(std::move(stamps));
          log(LogLevel::Info, "[trust] crl: CRLs changed; re-read");
        } catch (const std::exception& e) {
          log(LogLevel::Error, std::string("[trust] crl: re-reading failed: ") + e.what());
        }
      }
    }
    return snap_;
  }

  const TrustConfig cfg_;
  std::vector<Ptr<ASN1_OBJECT>> ekus_;
  std::vector<X509Ptr> anchors_;
  std::vector<X509Ptr> intermediates_;

  mutable std::mutex mu_;  // guards everything below
  mutable std::shared_ptr<const Snapshot> snap_;
  mutable std::vector<FileStamp> crl_stamps_;
  mutable std::chrono::steady_clock::time_point last_crl_check_;
  mutable std::map<std::pair<Bytes, int>, CachedOutcome, BytesPairLess<int>> outcomes_;
  mutable std::map<Bytes, OcspAnswer, BytesLess> ocsp_;
  mutable std::array<std::mutex, 16> fetch_mu_;
};

std::string settings_key(const TrustConfig& c) {
  std::string k;
  auto add = [&](const std::string& s) {
    k += std::to_string(s.size());
    k += ':';
    k += s;
  };
  for (const auto* list : {&c.anchors, &c.intermediates, &c.crl}) {
    add(std::to_string(list->size()));
    for (const fs::path& p : *list) add(p.string());
  }
  add(c.ocsp);
  add(c.revocation == RevocationMode::HardFail ? "hard" : "soft");
  add(std::to_string(c.extended_key_usage.size()));
  for (const std::string& e : c.extended_key_usage) add(e);
  add(std::to_string(c.ocsp_timeout_ms));
  return k;
}

}  // namespace

std::optional<std::string> sid_from_certificate(X509* cert) {
  if (cert == nullptr) return std::nullopt;
  bool has_extension = false;
  std::optional<std::string> sid = sid_from_extension(cert, has_extension);
  if (has_extension) return sid;  // a malformed extension is not replaced by the SAN
  return sid_from_san(cert);
}

std::shared_ptr<const TrustStore> trust_store_for(const TrustConfig& cfg) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const TrustStore>> stores;
  const std::string key = settings_key(cfg);
  std::lock_guard lock(mu);
  if (auto it = stores.find(key); it != stores.end()) return it->second;
  auto store = std::make_shared<const X509TrustStore>(cfg);
  if (stores.size() >= 16) stores.clear();
  stores.emplace(key, store);
  return store;
}

}  // namespace mqsec::security
