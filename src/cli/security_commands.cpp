// The identity and certificate verbs of `mqsec`: enroll, register, whoami, doctor, context.
// enroll/register go through core::register_certificate (MQRegisterCertificate's code path),
// context through the C API (MQGetSecurityContextEx / MQFreeSecurityContext); whoami and
// doctor look at each piece (config, identity, profile, module, token, key) on its own so that
// they can say which one is missing instead of failing on the first.
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "mqsec/error.hpp"
#include "pkcs11/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "pkcs11/module.hpp"
#include "pkcs11/signer.hpp"
#include "pkcs11/token.hpp"
#include "pkcs11/uri.hpp"
#include "src/core/runtime.hpp"
#include "src/core/admin.hpp"
#include "src/core/broker_check.hpp"
#include "src/core/contexts.hpp"
#include "src/core/hresult.hpp"
#include "src/core/registration.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/output.hpp"
#include "src/security/config.hpp"
#include "src/security/context.hpp"
#include "src/security/enroll.hpp"
#include "src/security/identity.hpp"
#include "src/security/personal_store.hpp"

namespace mqsec::cli {
namespace {

// Runs a step of the runtime, turning its mqsec::Error into a Failure that says what failed.
template <typename F>
auto step(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    std::string advice = security::token_error_advice(e.token_error());
    throw Failure(what, e.what(), e.code(), advice.empty() ? default_hint(e.code()) : advice);
  } catch (const pkcs11::Error& e) {
    std::string advice = security::token_error_advice(security::token_error_of(e.problem()));
    throw Failure(what, e.what(), MQ_ERROR_CORRUPTED_SECURITY_DATA,
                  advice.empty() ? default_hint(MQ_ERROR_CORRUPTED_SECURITY_DATA) : advice);
  }
}

std::string key_kind_name(security::KeyKind k) {
  switch (k) {
    case security::KeyKind::Rsa2048:
      return "rsa2048";
    case security::KeyKind::Rsa3072:
      return "rsa3072";
    case security::KeyKind::P256:
      return "p256";
    case security::KeyKind::P384:
      return "p384";
  }
  return "?";
}

std::string not_after(std::span<const uint8_t> der) {
  security::X509Ptr cert = security::parse_der_strict(der);
  if (!cert) return {};
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &tm) != 1) return {};
  return iso_time(timegm(&tm));
}

// ---- enroll -------------------------------------------------------------------------------

struct EnrollArgs {
  std::string key = "rsa2048";
  std::string subject;
  unsigned days = 365;
  bool if_not_exists = false;
  bool adopt = false;
  std::string adopt_selector;
};

int run_enroll(const EnrollArgs& a) {
  resolve_user_or_fail(true);
  security::EnrollOptions opts;
  opts.kind = security::parse_key_kind(a.key);  // CLI11 checked the spelling
  opts.subject = a.subject;
  opts.valid_days = a.days;
  opts.adopt = a.adopt;
  opts.adopt_selector = a.adopt_selector;
  core::Registered r;
  try {
    r = step("enroll", [&] { return core::register_certificate({}, a.if_not_exists, opts); });
  } catch (const std::invalid_argument& e) {
    throw Failure("enroll", e.what(), MQ_ERROR_INVALID_PARAMETER,
                  "--subject takes a DN such as \"CN=alice,O=Example\"");
  } catch (const Failure& f) {
    // A token that cannot generate keys but holds certificates with their keys: adopt one.
    if (!a.adopt &&
        f.reason().find("[key-generation-unsupported]; it holds ") != std::string::npos) {
      throw Failure(f.what_failed(), f.reason(), f.code(),
                    "run `mqsec enroll --adopt`, with the URI of one of the certificates above "
                    "when there are several (e.g. --adopt 'pkcs11:id=%02')");
    }
    // The reason of a refused adoption says what to do; `mqsec doctor` would only send the user
    // back here.
    if (!a.adopt ||
        (f.code() != MQ_ERROR_INVALID_CERTIFICATE && f.code() != MQ_ERROR_INVALID_PARAMETER)) {
      throw;
    }
    throw Failure(f.what_failed(), f.reason(), f.code(),
                  "`pkcs11-tool --list-objects` (or `p11tool --list-all`) shows the "
                  "certificates and keys the token holds");
  }
  bool existed = r.code == MQ_INFORMATION_INTERNAL_USER_CERT_EXIST;
  std::string registration = "registered to SID: " + r.sid;
  if (existed) {
    // The runtime returns early for an existing certificate without touching the registry,
    // so a certificate enrolled before the store was (re)created would stay unregistered and
    // receivers would never confirm its sender. Register it again when it is missing: the
    // binding is idempotent and needs only the key on the token.
    security::SystemConfig cfg = load_config_or_fail();
    std::optional<security::Bytes> bound = step("read the certificate registry", [&] {
      return core::registered_sid_of(cfg.store_path, r.der);
    });
    if (!bound || sid_string(*bound) != r.sid) {
      step("register the existing internal certificate",
           [&] { return core::register_certificate(r.der, false, security::EnrollOptions{}); });
      registration += " (registration renewed: it was missing from the store)";
    }
  }
  std::cout << (existed     ? "already enrolled: "
                : r.adopted ? "adopted: "
                            : "enrolled: ")
            << subject_of(r.der) << '\n'
            << "  certificate: " << r.object_uri << '\n'
            << "  " << registration << '\n';
  if (r.adopted) {
    std::cout << "  key: already on the token; it signed a test challenge that the certificate "
                 "verifies\n";
  } else if (!existed) {
    std::cout << "  key: " << key_kind_name(opts.kind)
              << ", generated on the token (sensitive, not extractable)\n";
  }
  std::cout << "  valid until: " << not_after(r.der) << '\n';
  return kExitOk;
}

// ---- register -----------------------------------------------------------------------------

int run_register(const std::string& file) {
  resolve_user_or_fail(false);
  std::vector<uint8_t> der = read_certificate_file(file);
  core::Registered r = step("register " + file, [&] {
    return core::register_certificate(der, false, security::EnrollOptions{});
  });
  std::cout << "registered: " << subject_of(r.der) << '\n'
            << "  SID: " << r.sid << '\n'
            << "  SHA-256: " << hex(security::sha256(r.der)) << '\n';
  return kExitOk;
}

// ---- whoami -------------------------------------------------------------------------------

int run_whoami(bool json) {
  security::SystemConfig cfg = load_config_or_fail();
  security::UserIdentity user =
      step("identify the calling user", [&] { return security::current_user(cfg.sid_source); });

  security::UserProfile profile;
  std::string profile_error;
  try {
    profile = security::load_user_profile(cfg, user);
  } catch (const security::ConfigError& e) {
    profile_error = e.what();
  } catch (const Error& e) {
    profile_error = e.what();
  }
  if (profile.dir.empty()) {
    try {
      profile.dir = security::profile_dir(cfg, user);
      profile.file = profile.dir / "profile.toml";
    } catch (const Error& e) {
      if (profile_error.empty()) profile_error = e.what();
    }
  }

  std::string token_uri = profile.token_uri.empty() ? cfg.token_uri : profile.token_uri;
  std::string token_error, token_label, token_serial;
  std::unique_ptr<security::PersonalStore> store;
  if (token_uri.empty()) {
    token_error = "no token URI configured ([token] uri)";
  } else {
    security::UserSetup setup{cfg, user, profile, token_uri};
    try {
      store = std::make_unique<security::PersonalStore>(setup);
      token_label = store->token()->label();
      token_serial = store->token()->serial();
    } catch (const Error& e) {
      token_error = e.what();
    } catch (const pkcs11::Error& e) {
      token_error = e.what();
    }
  }

  std::string cert_state, subject;
  bool cert_found = false;
  if (profile.internal_certificate.empty()) {
    cert_state = "none (run `mqsec enroll`)";
  } else if (!store) {
    cert_state = "not checked: the token is not available";
  } else {
    try {
      if (auto der = store->find_certificate(profile.internal_certificate)) {
        cert_found = true;
        subject = subject_of(*der);
        cert_state = "on the token";
      } else {
        cert_state = "NOT on the token";
      }
    } catch (const std::exception& e) {
      cert_state = std::string("lookup failed: ") + e.what();
    }
  }

  if (json) {
    std::ostringstream o;
    o << "{\"user\":" << json_string(user.name) << ",\"uid\":" << user.uid
      << ",\"sid\":" << json_string(user.sid.str())
      << ",\"sid_source\":" << json_string(security::to_string(cfg.sid_source))
      << ",\"config\":" << json_string(cfg.source.string())
      << ",\"profile\":{\"path\":" << json_string(profile.file.string())
      << ",\"exists\":" << (profile.exists ? "true" : "false");
    if (!profile_error.empty()) o << ",\"error\":" << json_string(profile_error);
    o << "},\"token\":{\"uri\":" << json_string(token_uri)
      << ",\"present\":" << (store ? "true" : "false");
    if (store) {
      o << ",\"label\":" << json_string(token_label) << ",\"serial\":" << json_string(token_serial);
    } else {
      o << ",\"error\":" << json_string(token_error);
    }
    o << "},\"internal_certificate\":{\"uri\":" << json_string(profile.internal_certificate)
      << ",\"found\":" << (cert_found ? "true" : "false");
    if (cert_found) o << ",\"subject\":" << json_string(subject);
    o << ",\"state\":" << json_string(cert_state) << "}}";
    std::cout << o.str() << '\n';
    return kExitOk;
  }

  std::cout << "user:        " << user.name << " (uid " << user.uid << ")\n"
            << "SID:         " << user.sid.str() << " (from " << security::to_string(cfg.sid_source)
            << ")\n"
            << "config:      "
            << (cfg.source.empty() ? "built-in defaults (" +
                                         security::system_config_path().string() + " is absent)"
                                   : cfg.source.string())
            << '\n'
            << "profile:     " << profile.file.string()
            << (!profile_error.empty() ? " (unusable)"
                : profile.exists       ? ""
                                       : " (does not exist yet)")
            << '\n';
  if (!profile_error.empty()) std::cout << "             error: " << profile_error << '\n';
  std::cout << "token URI:   " << (token_uri.empty() ? "(none)" : token_uri) << '\n';
  if (store) {
    std::cout << "token:       '" << token_label << "', serial " << token_serial << '\n';
  } else {
    std::cout << "token:       not available: " << token_error << '\n';
  }
  std::cout << "certificate: "
            << (profile.internal_certificate.empty() ? "(none)" : profile.internal_certificate)
            << '\n'
            << "             " << cert_state << '\n';
  if (cert_found) std::cout << "subject:     " << subject << '\n';
  return kExitOk;
}

// ---- doctor -------------------------------------------------------------------------------

// A check is ok, FAIL (exit 1, with a fix), warn (worth knowing, not a failure: a PIN try
// was wasted, no store yet) or skip (does not apply, or cannot run because a check before it
// failed, which failed the run already).
class Checklist {
 public:
  void ok(const std::string& name, const std::string& detail) { line("ok", name, detail); }
  void fail(const std::string& name, const std::string& detail, const std::string& fix) {
    failed_ = true;
    line("FAIL", name, detail);
    if (!fix.empty()) std::cout << "      fix: " << fix << '\n';
  }
  void warn(const std::string& name, const std::string& detail, const std::string& fix = {}) {
    line("warn", name, detail);
    if (!fix.empty()) std::cout << "      fix: " << fix << '\n';
  }
  void skip(const std::string& name, const std::string& why) { line("skip", name, why); }
  bool failed() const noexcept { return failed_; }

 private:
  void line(const char* state, const std::string& name, const std::string& detail) {
    std::printf("%-5s %-28s %s\n", state, name.c_str(), detail.c_str());
    std::fflush(stdout);
  }
  bool failed_ = false;
};

std::string token_list(pkcs11::Module& module) {
  CK_FUNCTION_LIST* f = module.fn();
  CK_ULONG count = 0;
  if (f->C_GetSlotList(CK_TRUE, nullptr, &count) != CKR_OK) return "the slot list is unavailable";
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0 && f->C_GetSlotList(CK_TRUE, slots.data(), &count) != CKR_OK) {
    return "the slot list is unavailable";
  }
  slots.resize(count);
  std::string out;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO info{};
    if (f->C_GetTokenInfo(s, &info) != CKR_OK) continue;
    if (!out.empty()) out += ", ";
    if (!(info.flags & CKF_TOKEN_INITIALIZED)) {
      out += "an uninitialised token in slot " + std::to_string(s);
      continue;
    }
    out += "'" + pkcs11::padded_string(info.label, sizeof info.label) + "' (serial " +
           pkcs11::padded_string(info.serialNumber, sizeof info.serialNumber) + ")";
  }
  return out.empty() ? "the module has no token" : "tokens in this module: " + out;
}

std::string login_fix(const pkcs11::Error& e, const std::string& pin_source) {
  const TokenError kind = security::token_error_of(e.problem());
  if (kind == TokenError::PinIncorrect) {
    return "the PIN from " + pin_source + " is wrong: " + security::token_error_advice(kind);
  }
  if (kind != TokenError::None) return security::token_error_advice(kind);
  return "check pin-source= in the token URI (file:<path> owned by you, mode 0600; or "
         "env:<NAME>)";
}

// The user PIN's state as the token reports it (CKF_USER_PIN_* flags), before any PIN is
// presented. Returns false when no PIN may be presented now (locked, or the final try).
bool check_pin_state(Checklist& c, pkcs11::Token& token, const std::string& pin_source) {
  CK_TOKEN_INFO info{};
  CK_RV rv;
  {
    pkcs11::CallScope scope;
    rv = token.fn()->C_GetTokenInfo(token.slot(), &info);
  }
  if (rv != CKR_OK) {
    c.fail("PIN state", "C_GetTokenInfo failed: " + pkcs11::rv_name(rv),
           security::token_error_advice(
               security::token_error_of(pkcs11::Error("C_GetTokenInfo", rv).problem())));
    return false;
  }
  if (!(info.flags & CKF_LOGIN_REQUIRED)) {
    c.ok("PIN state", "the token needs no login");
    return true;
  }
  const bool pad = pin_source.empty() && (info.flags & CKF_PROTECTED_AUTHENTICATION_PATH);
  if (info.flags & CKF_USER_PIN_LOCKED) {
    c.fail("PIN state",
           "the user PIN is locked (CKF_USER_PIN_LOCKED); mqsec presents no PIN to this token",
           security::token_error_advice(TokenError::PinLocked));
    return false;
  }
  if (info.flags & CKF_USER_PIN_FINAL_TRY) {
    if (pad) {
      c.warn("PIN state",
             "one user PIN try is left (CKF_USER_PIN_FINAL_TRY): a wrong PIN on the PIN pad "
             "locks the card");
      return true;
    }
    c.fail("PIN state",
           "one user PIN try is left (CKF_USER_PIN_FINAL_TRY); mqsec does not present the PIN "
           "from " +
               pin_source + " (no try was used)",
           security::token_error_advice(TokenError::PinFinalTry));
    return false;
  }
  if (info.flags & CKF_USER_PIN_COUNT_LOW) {
    c.warn("PIN state",
           "a wrong user PIN was entered since the last good login (CKF_USER_PIN_COUNT_LOW): "
           "fewer tries are left",
           "make sure " +
               (pad ? std::string("the PIN typed on the pad") : "the PIN in " + pin_source) +
               " is right; a good login resets the count");
  } else if (info.flags & CKF_USER_PIN_TO_BE_CHANGED) {
    c.warn("PIN state", "the token asks for a new user PIN (CKF_USER_PIN_TO_BE_CHANGED)",
           "set a new user PIN with the token's tool and put it in the PIN source");
  } else {
    c.ok("PIN state", "no failed PIN tries reported by the token" +
                          std::string(pad ? " (PIN pad: the PIN is typed on the reader)" : ""));
  }
  return true;
}

// What to run for an internal certificate: `mqsec enroll`, or `mqsec enroll --adopt` on a token
// that holds a certificate with its key or cannot generate keys.
std::string enroll_fix(security::PersonalStore& store) {
  try {
    std::vector<security::Adoptable> found = security::adoptable_certificates(store, {});
    if (found.size() == 1) {
      return "run `mqsec enroll --adopt` to use the certificate on the token (" +
             found.front().describe() + "), or `mqsec enroll` to generate a new key pair";
    }
    if (found.size() > 1) {
      return "run `mqsec enroll --adopt 'pkcs11:id=...'` to use one of the " +
             std::to_string(found.size()) +
             " certificates on the token that have their key there, or `mqsec enroll` to "
             "generate a new key pair";
    }
    if (std::string why = store.token()->cannot_generate(CKM_RSA_PKCS_KEY_PAIR_GEN); !why.empty()) {
      return "token '" + store.token()->label() + "' cannot generate key pairs (" + why +
             "): " + security::token_error_advice(TokenError::KeyGenerationUnsupported);
    }
  } catch (const std::exception&) {
    // cannot look: the plain advice
  }
  return "run `mqsec enroll` (or `mqsec enroll --adopt` for a certificate already on the token)";
}

// Signs a random digest with the key on the token (with the context-specific login of a
// PIN-always key) and verifies it with the certificate.
void check_test_signature(Checklist& c, security::PersonalStore& store, X509* cert,
                          const security::KeyRef& key) {
  std::vector<uint8_t> digest(32);
  if (RAND_bytes(digest.data(), static_cast<int>(digest.size())) != 1) {
    c.fail("test signature", "no random bytes (OpenSSL RAND_bytes)", {});
    return;
  }
  const std::string pin_source = store.pin_source();
  const std::string how =
      key.key.always_authenticate
          ? (pin_source.empty()
                 ? " (PIN-always key: the PIN was typed on the PIN pad)"
                 : " (PIN-always key: context-specific login with the PIN from " + pin_source + ")")
          : std::string();
  security::Bytes sig;
  try {
    sig = pkcs11::sign_digest(*store.token(), key.key, pkcs11::Hash::Sha256, digest, pin_source);
  } catch (const pkcs11::Error& e) {
    const TokenError kind = security::token_error_of(e.problem());
    c.fail("test signature", std::string("the token did not sign: ") + e.what(),
           kind != TokenError::None ? security::token_error_advice(kind)
                                    : "see the reason; `mqsec enroll` makes a new key pair");
    return;
  }
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  security::PkeyCtxPtr v(pub ? EVP_PKEY_CTX_new(pub, nullptr) : nullptr);
  bool good = v && EVP_PKEY_verify_init(v.get()) == 1;
  if (good && key.key.scheme != pkcs11::Scheme::Ecdsa) {
    good = EVP_PKEY_CTX_set_rsa_padding(v.get(), RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_CTX_set_signature_md(v.get(), EVP_sha256()) == 1;
  }
  good =
      good && EVP_PKEY_verify(v.get(), sig.data(), sig.size(), digest.data(), digest.size()) == 1;
  if (!good) {
    security::openssl_error();  // clear the queue
    c.fail("test signature",
           "the key signed, but the certificate does not verify the signature: they do not "
           "belong together",
           "make a matching pair: `mqsec enroll`, or `mqsec enroll --adopt` for the card's own");
    return;
  }
  c.ok("test signature", "signed a random digest on the token; the certificate verifies it" + how);
}

int run_doctor() {
  Checklist c;
  auto skip_rest = [&](std::initializer_list<const char*> names, const std::string& why) {
    for (const char* n : names) c.skip(n, why);
  };
  const std::filesystem::path cfg_path = security::system_config_path();

  // 1. System configuration.
  security::SystemConfig cfg;
  try {
    cfg = security::load_system_config();
    c.ok("system configuration", cfg.source.empty()
                                     ? "built-in defaults (" + cfg_path.string() + " is absent)"
                                     : cfg.source.string());
  } catch (const security::ConfigError& e) {
    c.fail("system configuration", e.what(),
           "correct the file (docs/configuration.md), or set MQSEC_CONFIG to another one");
    skip_rest({"identity", "user profile", "token URI", "PKCS#11 module", "token present",
               "PIN state", "login", "internal certificate", "certificate-key match", "key policy",
               "test signature", "certificate registration", "store directory", "broker"},
              "needs the system configuration");
    return kExitFailed;
  }

  // 2. Identity.
  security::UserIdentity user;
  bool have_user = false;
  try {
    user = security::current_user(cfg.sid_source);
    have_user = true;
    c.ok("identity", user.name + " (uid " + std::to_string(user.uid) + "), SID " + user.sid.str() +
                         " from " + std::string(security::to_string(cfg.sid_source)));
  } catch (const Error& e) {
    c.fail("identity", e.what(),
           "check [identity] sid (auto, unix, sssd or winbind) and that SSSD/winbind runs");
  }

  // 3. Profile.
  security::UserProfile profile;
  if (have_user) {
    try {
      profile = security::load_user_profile(cfg, user);
      c.ok("user profile",
           profile.file.string() + (profile.exists ? "" : " (absent; `mqsec enroll` writes it)"));
    } catch (const security::ConfigError& e) {
      c.fail("user profile", e.what(),
             "correct the file, or remove it and run `mqsec enroll` to write a new one");
    } catch (const Error& e) {
      c.fail("user profile", e.what(),
             "the profile directory must be yours and readable; check [profiles] dir");
    }
  } else {
    c.skip("user profile", "needs the identity");
  }

  // 4. Token URI.
  std::string token_uri = profile.token_uri.empty() ? cfg.token_uri : profile.token_uri;
  std::optional<pkcs11::Uri> uri;
  if (token_uri.empty()) {
    c.fail("token URI", "no token configured",
           "set [token] uri in " + (cfg.source.empty() ? cfg_path.string() : cfg.source.string()) +
               " (or in your profile)");
  } else {
    try {
      uri.emplace(pkcs11::Uri::parse(token_uri));
      c.ok("token URI", token_uri + (profile.token_uri.empty() ? "" : " (from the profile)"));
    } catch (const pkcs11::Error& e) {
      c.fail("token URI", e.what(), "write an RFC 7512 URI: pkcs11:token=<label>?module-path=...");
    }
  }

  // 5. Module.
  std::shared_ptr<pkcs11::Module> module;
  if (uri) {
    try {
      module = security::module_for(*uri, cfg.token_uri);
      CK_INFO info = module->info();
      c.ok("PKCS#11 module",
           module->path() + " (" +
               pkcs11::padded_string(info.manufacturerID, sizeof info.manufacturerID) + " " +
               pkcs11::padded_string(info.libraryDescription, sizeof info.libraryDescription) +
               " " + std::to_string(info.libraryVersion.major) + "." +
               std::to_string(info.libraryVersion.minor) + ")");
    } catch (const pkcs11::Error& e) {
      c.fail("PKCS#11 module", e.what(),
             "check module-path= (or module-name=) in the token URI; is the library installed?");
    }
  } else {
    c.skip("PKCS#11 module", "needs the token URI");
  }

  // 6. Token.
  std::shared_ptr<pkcs11::Token> token;
  if (module) {
    try {
      token = pkcs11::Token::open(module, *uri);
      c.ok("token present", "'" + token->label() + "', serial " + token->serial() + ", slot " +
                                std::to_string(token->slot()));
    } catch (const pkcs11::Error& e) {
      c.fail("token present", std::string(e.what()) + "; " + token_list(*module),
             e.problem() == pkcs11::Problem::ReaderUnavailable
                 ? security::token_error_advice(TokenError::ReaderUnavailable)
                 : "insert the card, or correct token=/serial= in the token URI");
    }
  } else {
    c.skip("token present", "needs the module");
  }

  // 7. The PIN's state (tries left), then the login: no PIN is presented on a final try or to a
  // locked PIN.
  bool may_log_in = false;
  if (token) {
    may_log_in = check_pin_state(c, *token, uri->pin_source());
  } else {
    c.skip("PIN state", "needs the token");
  }
  bool logged_in = false;
  if (token && !may_log_in) {
    c.skip("login", "no PIN is presented to the token in this PIN state");
  } else if (token) {
    try {
      token->login(uri->pin_source());
      logged_in = true;
      c.ok("login", uri->pin_source().empty() ? "logged in (protected authentication path)"
                                              : "logged in with the PIN from " + uri->pin_source());
    } catch (const pkcs11::Error& e) {
      c.fail("login", e.what(), login_fix(e, uri->pin_source()));
    }
  } else {
    c.skip("login", "needs the token");
  }

  // 8-10. Internal certificate, its key and the key's policy.
  std::optional<security::Bytes> der;
  std::optional<security::KeyRef> key;
  std::unique_ptr<security::PersonalStore> store;
  if (!logged_in || !have_user) {
    c.skip("internal certificate", logged_in ? "needs the identity" : "needs a logged-in token");
  } else {
    try {
      store = std::make_unique<security::PersonalStore>(
          security::UserSetup{cfg, user, profile, token_uri});
    } catch (const Error& e) {
      c.fail("internal certificate", e.what(), "see the checks above");
    }
  }
  bool lookup_failed = false;
  if (!store) {
    // reported above
  } else if (profile.internal_certificate.empty()) {
    c.fail("internal certificate", "the profile names none", enroll_fix(*store));
  } else {
    try {
      der = store->find_certificate(profile.internal_certificate);
    } catch (const std::exception& e) {
      lookup_failed = true;
      c.fail("internal certificate", e.what(), "check internal-certificate in the profile");
    }
    if (lookup_failed) {
      // reported above
    } else if (!der) {
      c.fail("internal certificate",
             profile.internal_certificate + " is not on token '" + token->label() + "'",
             enroll_fix(*store) + " (or correct internal-certificate in " + profile.file.string() +
                 ")");
    } else if (security::X509Ptr cert = security::parse_der_strict(*der); !cert) {
      c.fail("internal certificate", "the token's certificate object is not valid DER",
             enroll_fix(*store));
      der.reset();
    } else {
      std::time_t now = std::time(nullptr);
      std::string until = not_after(*der);
      const security::Validity validity = security::validity_at(cert.get(), now);
      if (validity == security::Validity::Expired) {
        c.fail("internal certificate", security::subject_string(cert.get()) + " expired " + until,
               enroll_fix(*store));
      } else if (validity == security::Validity::NotYetValid) {
        c.fail("internal certificate", security::subject_string(cert.get()) + " is not yet valid",
               "check the system clock");
      } else if (validity == security::Validity::Unreadable) {
        c.fail("internal certificate",
               security::subject_string(cert.get()) +
                   ": its validity period is not in RFC 5280's time form; receivers refuse it",
               enroll_fix(*store));
      } else {
        c.ok("internal certificate",
             security::subject_string(cert.get()) + ", valid until " + until);
      }
      try {
        key = store->find_key_for(cert.get(), *der);
      } catch (const std::exception& e) {
        c.fail("certificate-key match", e.what(), "see `mqsec doctor`'s token checks");
      }
      if (key) {
        const char* scheme = key->key.scheme == pkcs11::Scheme::Ecdsa ? "ECDSA" : "RSA";
        c.ok("certificate-key match",
             std::string(scheme) + " private key, CKA_ID " + hex(key->id) +
                 (key->key.always_authenticate ? " (always-authenticate: PIN per signature)" : ""));
      } else {
        c.fail("certificate-key match",
               "no single private key on the token matches the certificate "
               "(missing, duplicated, or CKA_SIGN false)",
               enroll_fix(*store));
      }
    }
  }
  if (!der) c.skip("certificate-key match", "needs the internal certificate");
  if (key) {
    bool good = key->sensitive && !key->extractable;
    std::string state = std::string(key->sensitive ? "sensitive" : "NOT sensitive") + ", " +
                        (key->extractable ? "extractable" : "not extractable");
    if (good) {
      c.ok("key policy", state);
    } else if (cfg.allow_extractable_keys) {
      c.ok("key policy", state + " (accepted only because allow-extractable-keys = true)");
    } else {
      c.fail("key policy", state + ": the key could leave the token, so mqsec refuses it",
             "run `mqsec enroll` to generate a key on the token (sensitive, not extractable)");
    }
  } else {
    c.skip("key policy", "needs the key");
  }
  if (key && der) {
    security::X509Ptr cert = security::parse_der_strict(*der);
    check_test_signature(c, *store, cert.get(), *key);
  } else {
    c.skip("test signature", "needs the key");
  }

  // 11. Registration of the internal certificate (receivers' "sender confirmed").
  std::error_code ec;
  bool store_exists = std::filesystem::exists(cfg.store_path / "mqsec.db", ec);
  if (!der) {
    c.skip("certificate registration", "needs the internal certificate");
  } else if (!store_exists) {
    c.warn("certificate registration",
           "no message store yet at " + cfg.store_path.string() +
               " (not a failure: it is created when first used)",
           "`mqsec enroll --if-not-exists` creates it and registers the certificate in it");
  } else {
    try {
      auto sid = core::registered_sid_of(cfg.store_path, *der);
      if (sid && *sid == user.sid.bytes()) {
        c.ok("certificate registration", "registered to " + user.sid.str());
      } else {
        std::string id = key ? hex(key->id) : std::string("<id>");
        std::string fix = "export it and register it: pkcs11-tool --module " + module->path() +
                          " --read-object --type cert --id " + id +
                          " -o cert.der && mqsec register cert.der";
        c.fail("certificate registration",
               sid ? "registered to another SID: " + sid_string(*sid) : "not registered", fix);
      }
    } catch (const Error& e) {
      c.fail("certificate registration", e.what(), "check the store directory below");
    }
  }

  // 12. Store directory.
  const std::filesystem::path& dir = cfg.store_path;
  if (std::filesystem::is_directory(dir, ec)) {
    bool writable = access(dir.c_str(), W_OK | X_OK) == 0;
    bool db_ok = !store_exists || access((dir / "mqsec.db").c_str(), R_OK | W_OK) == 0;
    if (writable && db_ok) {
      c.ok("store directory", dir.string() + " (writable" +
                                  (store_exists ? ", mqsec.db present)" : ", no store yet)"));
    } else {
      c.fail("store directory",
             dir.string() + (writable ? ": mqsec.db is not writable" : " is not writable"),
             "give every sender and receiver write access to " + dir.string() + " and its files");
    }
  } else if (std::filesystem::exists(dir, ec)) {
    c.fail("store directory", dir.string() + " is not a directory",
           "set [store] path to a directory");
  } else {
    std::filesystem::path parent = dir.parent_path();
    while (!parent.empty() && !std::filesystem::exists(parent, ec) && parent != parent.root_path())
      parent = parent.parent_path();
    if (!parent.empty() && access(parent.c_str(), W_OK | X_OK) == 0) {
      c.ok("store directory", dir.string() + " (absent; will be created)");
    } else {
      c.fail("store directory", dir.string() + " does not exist and cannot be created",
             "create it (mode 0700, or 0770 for a group of senders and receivers)");
    }
  }

  // 13. The broker of remote queues ([broker]).
  const core::BrokerCheck broker = core::check_broker(cfg);
  switch (broker.failed_at) {
    case core::BrokerCheck::Step::Ok:
      c.ok("broker", broker.detail);
      break;
    case core::BrokerCheck::Step::NotConfigured:
      c.skip("broker", broker.detail);
      break;
    case core::BrokerCheck::Step::Settings:
      c.fail("broker", broker.detail,
             "check [broker] and its password-source (docs/configuration.md)");
      break;
    case core::BrokerCheck::Step::Connect:
      c.fail("broker", broker.detail,
             "check that the broker runs and listens at [broker] url, and the user and password "
             "(docs/remote.md)");
      break;
    case core::BrokerCheck::Step::Consume:
      c.fail("broker", "connected, but may not consume " + broker.address + ": " + broker.detail,
             "give the user read/write/configure permissions on that queue (rabbitmqctl "
             "set_permissions, docs/remote.md)");
      break;
  }

  std::cout << (c.failed() ? "\nsome checks failed\n" : "\nall checks passed\n");
  return c.failed() ? kExitFailed : kExitOk;
}

// ---- context ------------------------------------------------------------------------------

int run_context(const std::string& cert_file) {
  resolve_user_or_fail(cert_file.empty());  // the internal certificate is named by the profile
  std::vector<uint8_t> der;
  if (!cert_file.empty()) der = read_certificate_file(cert_file);
  uint32_t value = 0;
  ReasonProbe probe;
  HRESULT hr = core::hresult_of("MQGetSecurityContextEx", [&]() -> HRESULT {
    value = core::open_context(der);
    return MQ_OK;
  });
  check_hr(hr, "MQGetSecurityContextEx", probe);
  char handle_text[16];
  std::snprintf(handle_text, sizeof handle_text, "0x%08X", value);

  auto ctx = core::runtime().contexts().get(value);
  std::cout << "security context " << handle_text << " obtained ("
            << (der.empty() ? "internal certificate" : "certificate " + cert_file) << ")\n";
  if (ctx) {
    std::cout << "  certificate: " << security::subject_string(ctx->x509()) << '\n'
              << "  SID:         " << ctx->sid().str() << " (" << ctx->user().name << ")\n"
              << "  token:       '" << ctx->token().label() << "', serial " << ctx->token().serial()
              << ", key CKA_ID " << hex(ctx->key_id()) << '\n';
  }
  ctx.reset();  // our reference must not keep the context alive past MQFreeSecurityContext
  core::free_context(value);
  bool freed = core::runtime().contexts().get(value) == nullptr;
  if (!freed) {
    throw Failure("MQFreeSecurityContext", "the context is still live after being freed",
                  MQ_ERROR_BAD_SECURITY_CONTEXT);
  }
  std::cout << "security context " << handle_text << " freed (the handle is no longer valid)\n";
  return kExitOk;
}

}  // namespace

void add_security_commands(CLI::App& app, Action& action) {
  {
    auto a = std::make_shared<EnrollArgs>();
    CLI::App* sub = app.add_subcommand(
        "enroll",
        "Create your internal certificate: a key pair generated on the token, a self-signed "
        "certificate stored next to it, your profile pointed at it, and the certificate "
        "registered to your SID (MQRegisterCertificate with no buffer); --adopt takes a "
        "certificate already on the token instead");
    sub->add_option("--key", a->key, "Key type")
        ->check(CLI::IsMember({"rsa2048", "rsa3072", "p256", "p384"}))
        ->capture_default_str();
    sub->add_option("--subject", a->subject,
                    "Subject DN, e.g. \"CN=alice,O=Example\" (default CN=<user>)")
        ->type_name("DN");
    sub->add_option("--days", a->days, "Validity in days")
        ->check(CLI::Range(1u, 36500u))
        ->capture_default_str();
    sub->add_flag("--if-not-exists", a->if_not_exists,
                  "Keep an existing internal certificate (MQCERT_REGISTER_IF_NOT_EXIST)");
    CLI::Option* adopt =
        sub->add_option("--adopt", a->adopt_selector,
                        "Make a certificate already on the token (with its private key) your "
                        "internal certificate instead of generating a key pair, for cards that "
                        "cannot generate keys; URI (object=/id=) chooses when there are several")
            ->expected(0, 1)
            ->type_name("[URI]");
    for (const char* generation_only : {"--key", "--subject", "--days"}) {
      adopt->excludes(sub->get_option(generation_only));
    }
    sub->callback([a, adopt, &action] {
      a->adopt = adopt->count() > 0;
      action = [a] { return run_enroll(*a); };
    });
  }
  {
    auto file = std::make_shared<std::string>();
    CLI::App* sub = app.add_subcommand(
        "register",
        "Register an external certificate (DER or PEM) to your SID; its private key must be on "
        "your token (MQRegisterCertificate)");
    sub->add_option("FILE", *file, "Certificate file, DER or PEM")->required();
    sub->callback([file, &action] { action = [file] { return run_register(*file); }; });
  }
  {
    auto json = std::make_shared<bool>(false);
    CLI::App* sub = app.add_subcommand(
        "whoami",
        "Show your user, uid, SID, profile, token and internal certificate; works without the "
        "token and says what is missing");
    sub->add_flag("--json", *json, "One JSON object");
    sub->callback([json, &action] { action = [json] { return run_whoami(*json); }; });
  }
  {
    CLI::App* sub = app.add_subcommand(
        "doctor",
        "Check the configuration, identity, profile, module, token, login, certificate and key, "
        "and the store; each check says ok or FAIL with a fix (exit 0 only when all are ok)");
    sub->callback([&action] { action = [] { return run_doctor(); }; });
  }
  {
    auto cert = std::make_shared<std::string>();
    CLI::App* sub = app.add_subcommand(
        "context",
        "Obtain a security context (MQGetSecurityContextEx), show it, and free it "
        "(MQFreeSecurityContext)");
    sub->add_option("--cert", *cert,
                    "An external certificate (DER or PEM) whose key is on your token; default: "
                    "your internal certificate")
        ->type_name("FILE");
    sub->callback([cert, &action] { action = [cert] { return run_context(*cert); }; });
  }
}

}  // namespace mqsec::cli
