// Personal store: user resolution, token login, certificate-to-key matching.
#include "src/security/personal_store.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>

#include <algorithm>

#include "mqsec/error.hpp"
#include "pkcs11/error.hpp"
#include "pkcs11/signer.hpp"
#include "pkcs11/uri.hpp"
#include "src/security/log.hpp"

namespace mqsec::security {
namespace {

// DER OCTET STRING around `v` (CKA_EC_POINT's form in PKCS#11 v2.40).
Bytes octet_string(const Bytes& v) {
  Bytes out{0x04};
  pkcs11::append_der_length(out, v.size());
  out.insert(out.end(), v.begin(), v.end());
  return out;
}

}  // namespace

std::string KeyRef::exposure() const {
  if (extractable) return "extractable";
  if (!sensitive) return "not sensitive";
  if (!never_extractable) return "was extractable once (CKA_NEVER_EXTRACTABLE is false)";
  if (!always_sensitive)
    return "was imported or not always sensitive (CKA_ALWAYS_SENSITIVE is false)";
  return {};
}

TokenError token_error_of(pkcs11::Problem p) noexcept {
  switch (p) {
    case pkcs11::Problem::Other:
      return TokenError::None;
    case pkcs11::Problem::PinIncorrect:
      return TokenError::PinIncorrect;
    case pkcs11::Problem::PinRefusedBefore:
      return TokenError::PinRefusedBefore;
    case pkcs11::Problem::PinFinalTry:
      return TokenError::PinFinalTry;
    case pkcs11::Problem::PinLocked:
      return TokenError::PinLocked;
    case pkcs11::Problem::PinExpired:
      return TokenError::PinExpired;
    case pkcs11::Problem::PinSource:
      return TokenError::PinSource;
    case pkcs11::Problem::TokenAbsent:
      return TokenError::TokenAbsent;
    case pkcs11::Problem::CardReplaced:
      return TokenError::CardReplaced;
    case pkcs11::Problem::ReaderUnavailable:
      return TokenError::ReaderUnavailable;
    case pkcs11::Problem::KeyGenerationUnsupported:
      return TokenError::KeyGenerationUnsupported;
  }
  return TokenError::None;
}

const char* token_error_name(TokenError t) noexcept {
  switch (t) {
    case TokenError::None:
      return "";
    case TokenError::PinIncorrect:
      return "pin-incorrect";
    case TokenError::PinRefusedBefore:
      return "pin-refused-before";
    case TokenError::PinFinalTry:
      return "pin-final-try";
    case TokenError::PinLocked:
      return "pin-locked";
    case TokenError::PinExpired:
      return "pin-expired";
    case TokenError::PinSource:
      return "pin-source";
    case TokenError::TokenAbsent:
      return "token-absent";
    case TokenError::CardReplaced:
      return "card-replaced";
    case TokenError::ReaderUnavailable:
      return "reader-unavailable";
    case TokenError::KeyGenerationUnsupported:
      return "key-generation-unsupported";
  }
  return "";
}

std::string token_error_advice(TokenError t) {
  switch (t) {
    case TokenError::None:
      return {};
    case TokenError::PinIncorrect:
      return "correct the PIN in the PIN source (pin-source= of the token URI); mqsec never "
             "presents a refused PIN again, so the card keeps its remaining tries";
    case TokenError::PinRefusedBefore:
      return "put the right PIN in the PIN source: mqsec presents a PIN again only once the "
             "source holds another one";
    case TokenError::PinFinalTry:
      return "one PIN try is left and mqsec will not risk it: check the PIN, then log in once by "
             "hand with the right one (e.g. `pkcs11-tool --login --test`), which resets the "
             "counter";
    case TokenError::PinLocked:
      return "unblock the PIN with the PUK or the security officer PIN (the card vendor's tool, "
             "e.g. `yubico-piv-tool -a unblock-pin`), then put the right PIN in the PIN source";
    case TokenError::PinExpired:
      return "set a new user PIN on the token (e.g. `pkcs11-tool --change-pin`) and put it in "
             "the PIN source";
    case TokenError::PinSource:
      return "name a readable PIN source in the token URI: ?pin-source=file:<path> (yours, mode "
             "0600) or env:<NAME>";
    case TokenError::TokenAbsent:
      return "insert the card (any reader will do: mqsec finds it by its serial number)";
    case TokenError::CardReplaced:
      return "insert the card with the serial number the message names; mqsec never signs with "
             "another card, nor presents your PIN to it";
    case TokenError::ReaderUnavailable:
      return "connect the reader and check that pcscd runs (`systemctl status pcscd`, "
             "`pcsc_scan`)";
    case TokenError::KeyGenerationUnsupported:
      return "provision the card with its vendor tool (a key pair and its certificate, e.g. "
             "`yubico-piv-tool -a generate`, `-a selfsign-certificate`, "
             "`-a import-certificate`), then run `mqsec enroll --adopt`";
  }
  return {};
}

void throw_mapped(const pkcs11::Error& e, HRESULT otherwise, const std::string& what) {
  CK_RV rv = e.rv();
  HRESULT code = (rv == CKR_HOST_MEMORY || rv == CKR_DEVICE_MEMORY || rv == CKR_SESSION_COUNT)
                     ? MQ_ERROR_INSUFFICIENT_RESOURCES
                     : otherwise;
  const TokenError kind = token_error_of(e.problem());
  std::string reason = what + ": " + e.what();
  if (kind != TokenError::None) reason += std::string(" [") + token_error_name(kind) + "]";
  fail(code, reason, kind);
}

UserSetup resolve_user(std::string* profile_error) {
  UserSetup s;
  try {
    s.config = load_system_config();
  } catch (const ConfigError& e) {
    fail(MQ_ERROR_CORRUPTED_SECURITY_DATA, std::string("system configuration: ") + e.what());
  }
  try {
    s.user = current_user(s.config.sid_source);
  } catch (const Error& e) {
    log(LogLevel::Error, e.what());
    throw;
  }
  try {
    s.profile = load_user_profile(s.config, s.user);
  } catch (const ConfigError& e) {
    if (profile_error) *profile_error = e.what();
    log(LogLevel::Warning, std::string("user profile: ") + e.what());
    s.profile = UserProfile{};
    s.profile.dir = profile_dir(s.config, s.user);
    s.profile.file = s.profile.dir / "profile.toml";
  }
  s.token_uri = s.profile.token_uri.empty() ? s.config.token_uri : s.profile.token_uri;
  return s;
}

namespace {

std::shared_ptr<pkcs11::Module> module_for_impl(const pkcs11::Uri& uri,
                                                const std::string& system_uri,
                                                const std::vector<std::filesystem::path>* allowed,
                                                const std::string& config_file) {
  const bool names_module = !uri.module_path().empty() || !uri.module_name().empty();
  if (names_module && uri.text() != system_uri) {
    // A user's profile names the module: code of its choosing would run in this process (a
    // service impersonating the user runs as root).
    pkcs11::ModulePolicy policy;
    std::vector<std::filesystem::path> from_config;
    if (allowed == nullptr) {
      try {
        from_config = load_system_config().allowed_modules;
      } catch (const ConfigError&) {
        // unreadable system config: no allow-list (p11-kit's registry only)
      }
      allowed = &from_config;
    }
    for (const auto& p : *allowed) policy.allowed.push_back(p.string());
    policy.how_to_allow =
        "if this module is trusted, an administrator can allow it by adding its absolute path "
        "to [token] allowed-modules in the system configuration (" +
        (config_file.empty() ? system_config_path().string() : config_file) + ")";
    if (!uri.module_path().empty()) {
      return pkcs11::Module::load_restricted(uri.module_path(), policy);
    }
    return pkcs11::Module::load_restricted_by_name(uri.module_name(), policy);
  }
  if (!uri.module_path().empty()) return pkcs11::Module::load(uri.module_path());
  if (!uri.module_name().empty()) return pkcs11::Module::load_by_name(uri.module_name());
  if (!system_uri.empty() && system_uri != uri.text()) {
    return module_for_impl(pkcs11::Uri::parse(system_uri), system_uri, allowed, config_file);
  }
  throw pkcs11::Error("the token URI '" + uri.text() +
                      "' names no module: add module-path=<library> or module-name=<p11-kit "
                      "name> to its query");
}

}  // namespace

std::shared_ptr<pkcs11::Module> module_for(const pkcs11::Uri& uri, const SystemConfig& config) {
  return module_for_impl(uri, config.token_uri, &config.allowed_modules, config.source.string());
}

std::shared_ptr<pkcs11::Module> module_for(const pkcs11::Uri& uri,
                                           const std::string& fallback_uri) {
  return module_for_impl(uri, fallback_uri, nullptr, {});
}

PersonalStore::PersonalStore(const UserSetup& setup) {
  if (setup.token_uri.empty()) {
    fail(MQ_ERROR_CORRUPTED_SECURITY_DATA,
         "no token configured: set [token] uri in " +
             (setup.config.source.empty() ? std::string("/etc/mqsec/mqsec.toml")
                                          : setup.config.source.string()) +
             " or in " + setup.profile.file.string());
  }
  try {
    pkcs11::Uri uri = pkcs11::Uri::parse(setup.token_uri);
    auto module = module_for(uri, setup.config);
    token_ = pkcs11::Token::open(module, uri);
    pin_source_ = uri.pin_source();
    token_->login(pin_source_);
  } catch (const pkcs11::Error& e) {
    throw_mapped(e, MQ_ERROR_CORRUPTED_SECURITY_DATA, "personal store (token)");
  }
}

std::optional<Bytes> PersonalStore::find_certificate(const std::string& object_uri) {
  pkcs11::Uri uri = pkcs11::Uri::parse(object_uri);
  CK_TOKEN_INFO info{};
  if (token_->fn()->C_GetTokenInfo(token_->slot(), &info) == CKR_OK && !uri.matches_token(info)) {
    log(LogLevel::Warning,
        "certificate URI '" + object_uri + "' names another token than '" + token_->label() + "'");
    return std::nullopt;
  }
  CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
  std::vector<CK_ATTRIBUTE> tmpl{pkcs11::attribute(CKA_CLASS, &cls, sizeof cls)};
  auto id = uri.object_id();
  std::string label = uri.object_label();
  if (id) tmpl.push_back(pkcs11::attribute(CKA_ID, id->data(), id->size()));
  if (!label.empty()) tmpl.push_back(pkcs11::attribute(CKA_LABEL, label.data(), label.size()));
  if (!id && label.empty()) return std::nullopt;  // would match any certificate
  auto s = token_->session();
  auto found = token_->find(s, tmpl, 2);
  if (found.size() != 1) return std::nullopt;
  return token_->attribute(s, found[0], CKA_VALUE);
}

std::optional<KeyRef> PersonalStore::find_key_for(X509* cert, std::span<const uint8_t> der) {
  auto s = token_->session();
  CK_OBJECT_CLASS cert_class = CKO_CERTIFICATE, priv_class = CKO_PRIVATE_KEY,
                  pub_class = CKO_PUBLIC_KEY;
  std::vector<CK_OBJECT_HANDLE> keys;
  Bytes key_id;
  auto keys_with_id = [&](const Bytes& id) {
    return token_->find(s,
                        {pkcs11::attribute(CKA_CLASS, &priv_class, sizeof priv_class),
                         pkcs11::attribute(CKA_ID, id.data(), id.size())},
                        2);
  };

  // 1. The token's certificate object with this DER, then the private key with its CKA_ID.
  for (CK_OBJECT_HANDLE c :
       token_->find(s, {pkcs11::attribute(CKA_CLASS, &cert_class, sizeof cert_class),
                        pkcs11::attribute(CKA_VALUE, der.data(), der.size())})) {
    auto id = token_->attribute(s, c, CKA_ID);
    if (!id || id->empty()) continue;
    for (CK_OBJECT_HANDLE k : keys_with_id(*id)) {
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        keys.push_back(k);
        key_id = *id;
      }
    }
  }

  // 2. Else by public key: RSA modulus on the private key, or the EC point of the public
  //    key object that shares the private key's CKA_ID.
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  if (pub == nullptr) return std::nullopt;
  bool is_rsa = EVP_PKEY_is_a(pub, "RSA") == 1;
  bool is_ec = EVP_PKEY_is_a(pub, "EC") == 1;
  if (!is_rsa && !is_ec) {
    log(LogLevel::Error, "certificate key type is neither RSA nor EC");
    return std::nullopt;
  }
  if (keys.empty() && is_rsa) {
    BIGNUM* n = nullptr;
    if (EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) == 1) {
      Bytes mod(static_cast<size_t>(BN_num_bytes(n)));
      BN_bn2bin(n, mod.data());
      BN_free(n);
      keys = token_->find(s,
                          {pkcs11::attribute(CKA_CLASS, &priv_class, sizeof priv_class),
                           pkcs11::attribute(CKA_MODULUS, mod.data(), mod.size())},
                          2);
      if (keys.size() == 1) key_id = token_->attribute(s, keys[0], CKA_ID).value_or(Bytes{});
    }
  }
  if (keys.empty() && is_ec) {
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0, &len);
    Bytes point(len);
    if (len > 0 && EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                   point.data(), point.size(), &len) == 1) {
      for (const Bytes& form : {octet_string(point), point}) {
        for (CK_OBJECT_HANDLE p :
             token_->find(s, {pkcs11::attribute(CKA_CLASS, &pub_class, sizeof pub_class),
                              pkcs11::attribute(CKA_EC_POINT, form.data(), form.size())})) {
          auto id = token_->attribute(s, p, CKA_ID);
          if (!id || id->empty()) continue;
          for (CK_OBJECT_HANDLE k : keys_with_id(*id)) {
            if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
              keys.push_back(k);
              key_id = *id;
            }
          }
        }
        if (!keys.empty()) break;
      }
    }
  }
  if (keys.size() != 1) {
    log(LogLevel::Error,
        keys.empty() ? "no private key on token '" + token_->label() + "' matches the certificate"
                     : std::to_string(keys.size()) + " private keys on token '" + token_->label() +
                           "' match the certificate; expected exactly one");
    return std::nullopt;
  }

  KeyRef ref;
  ref.id = key_id;
  ref.key.handle = keys[0];
  ref.key.scheme = is_rsa ? pkcs11::Scheme::RsaPkcs1 : pkcs11::Scheme::Ecdsa;
  ref.key.signature_size = is_rsa ? static_cast<size_t>(EVP_PKEY_get_size(pub))
                                  : 2 * ((static_cast<size_t>(EVP_PKEY_get_bits(pub)) + 7) / 8);
  ref.key.always_authenticate =
      token_->bool_attribute(s, keys[0], CKA_ALWAYS_AUTHENTICATE).value_or(false);
  ref.sensitive = token_->bool_attribute(s, keys[0], CKA_SENSITIVE).value_or(false);
  ref.extractable = token_->bool_attribute(s, keys[0], CKA_EXTRACTABLE).value_or(true);
  ref.always_sensitive = token_->bool_attribute(s, keys[0], CKA_ALWAYS_SENSITIVE).value_or(true);
  ref.never_extractable = token_->bool_attribute(s, keys[0], CKA_NEVER_EXTRACTABLE).value_or(true);
  if (auto can_sign = token_->bool_attribute(s, keys[0], CKA_SIGN); can_sign && !*can_sign) {
    log(LogLevel::Error, "the private key on token '" + token_->label() +
                             "' has CKA_SIGN = false: it cannot sign messages");
    return std::nullopt;
  }
  return ref;
}

}  // namespace mqsec::security
