// The calling user's personal certificate store: MSMQ's "personal store" mapped onto a
// PKCS#11 token.
//
// resolve_user() gathers who is calling (the thread's effective user, never $HOME) and what
// their configuration says; PersonalStore opens and logs in to their token and finds the
// private key that belongs to a certificate. Everything here throws mqsec::Error with the
// HRESULT MQGetSecurityContextEx documents and a reason that is also logged.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>

#include <mq.h>

#include "mqsec/error.hpp"
#include "pkcs11/error.hpp"
#include "pkcs11/signer.hpp"
#include "pkcs11/token.hpp"
#include "src/security/config.hpp"
#include "src/security/identity.hpp"
#include "src/security/openssl.hpp"

namespace mqsec::security {

struct UserSetup {
  SystemConfig config;
  UserIdentity user;
  UserProfile profile;
  std::string token_uri;  // the effective token URI: the profile's [token] uri, else the system's
};

// Throws MQ_ERROR_COULD_NOT_GET_USER_SID (no identity) or MQ_ERROR_CORRUPTED_SECURITY_DATA
// (malformed system config). A malformed profile is reported as `profile_error` instead of
// thrown, because only the internal-certificate path depends on it.
UserSetup resolve_user(std::string* profile_error = nullptr);

// A private key on the token, and what we know about it.
struct KeyRef {
  pkcs11::SignKey key;
  Bytes id;  // CKA_ID
  bool sensitive = false;
  bool extractable = true;
  // CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE: false for a key that once existed outside
  // the token (imported) or was ever exportable. Tokens that do not report them count as true.
  bool always_sensitive = true;
  bool never_extractable = true;
  // Why the key may have left, or may leave, the token; empty when it never could.
  std::string exposure() const;
};

class PersonalStore {
 public:
  // Loads the module, finds the token and logs in. Throws MQ_ERROR_CORRUPTED_SECURITY_DATA
  // (module, token or login failure), MQ_ERROR_INSUFFICIENT_RESOURCES (no session/memory).
  explicit PersonalStore(const UserSetup& setup);

  const std::shared_ptr<pkcs11::Token>& token() const noexcept { return token_; }
  const std::string& pin_source() const noexcept { return pin_source_; }

  // The private key of `cert`: the token's certificate object with the same DER and the
  // private key with its CKA_ID, else a private key whose public half matches. nullopt when
  // there is not exactly one.
  std::optional<KeyRef> find_key_for(X509* cert, std::span<const uint8_t> der);
  // The DER of the certificate object named by an object URI; nullopt if not exactly one.
  std::optional<Bytes> find_certificate(const std::string& object_uri);

 private:
  std::shared_ptr<pkcs11::Token> token_;
  std::string pin_source_;
};

// Loads the module named by a token URI (module-path= or module-name=; when the URI names
// neither, the system config's [token] uri's). A URI other than the system config's own (a
// user profile's) names code that runs in the caller's process, so its module is loaded only
// when registered with p11-kit or listed in [token] allowed-modules, and root-controlled
// (pkcs11::Module::load_restricted); the system config's is the operator's and loads as is.
// Throws pkcs11::Error (with the reason and what to do).
std::shared_ptr<pkcs11::Module> module_for(const pkcs11::Uri& uri, const SystemConfig& config);
// The same with only the system URI at hand: the allow-list is read from the system config
// (load_system_config()) when the URI is not the system's.
std::shared_ptr<pkcs11::Module> module_for(const pkcs11::Uri& uri, const std::string& fallback_uri);

// Maps a failure of the PKCS#11 layer to MSMQ's result: resources -> INSUFFICIENT_RESOURCES,
// everything else -> `otherwise` (MSMQ's codes are kept). The token error it is (a wrong or
// locked PIN, a pulled or replaced card, ...) goes into the reason ("... [pin-locked]") and the
// thrown mqsec::Error's token_error(). Logs the reason.
[[noreturn]] void throw_mapped(const pkcs11::Error& e, HRESULT otherwise, const std::string& what);

// The token error a pkcs11::Problem is.
TokenError token_error_of(pkcs11::Problem p) noexcept;
// "pin-locked", "card-replaced", ... ("" for TokenError::None): the names of docs/security.md.
const char* token_error_name(TokenError t) noexcept;
// What the user can do about it, one sentence ("" for TokenError::None).
std::string token_error_advice(TokenError t);

}  // namespace mqsec::security
