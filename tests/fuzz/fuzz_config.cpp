// libFuzzer target for the configuration parsers: the system config
// (security::parse_system_config) and a user's profile (security::parse_user_profile), both
// TOML read by toml++. Bad text may only be refused with ConfigError. Accepted text must give
// values within the documented contract (absolute paths, "pkcs11:" URIs), and a URI the
// config accepts must not carry a PIN that p11-kit would find: the config's own pin-value
// check and p11-kit's parser have to agree, or a PIN could sit in a world-readable file.
#include <strings.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mqsec/error.hpp"
#include "pkcs11/error.hpp"
#include "pkcs11/uri.hpp"
#include "src/security/config.hpp"
#include "tests/fuzz/pin_text.hpp"

namespace {

using namespace mqsec;

using fuzz::repeats_pin;

void check_uri(const std::string& uri) {
  if (uri.empty()) return;
  if (uri.size() < 7 || strncasecmp(uri.c_str(), "pkcs11:", 7) != 0) abort();
  try {
    (void)pkcs11::Uri::parse(uri);
  } catch (const pkcs11::Error& e) {
    // Not every accepted string is a valid URI (p11-kit checks that when the token is
    // opened), but none may be one that p11-kit reads a pin-value from.
    if (std::string_view(e.what()).starts_with("a PKCS#11 URI in the configuration contains"))
      abort();
    // The other refusal, "invalid PKCS#11 URI '<text>'...", may quote the text, but not a PIN.
    if (repeats_pin(e.what(), uri)) abort();
  }
}

void system_config(std::string_view text) {
  security::SystemConfig cfg;
  try {
    cfg = security::parse_system_config(text, "fuzz.toml");
  } catch (const security::ConfigError&) {
    return;
  }
  if (cfg.source != "fuzz.toml") abort();
  if (!cfg.store_path.is_absolute()) abort();
  if (!cfg.profiles_dir.empty() && cfg.profiles_dir[0] != '/') abort();
  check_uri(cfg.token_uri);
  // The profile directory is absolute for an ordinary user, and a hostile user name is
  // either refused or not used.
  security::UserIdentity user;
  user.uid = 1000;
  user.name = "alice";
  user.home = "/home/alice";
  if (!security::profile_dir(cfg, user).is_absolute()) abort();
  for (const char* name : {"..", ".", "", "a/b"}) {
    user.name = name;
    try {
      if (!security::profile_dir(cfg, user).is_absolute()) abort();
    } catch (const Error& e) {
      if (e.code() != MQ_ERROR_CANNOT_OPEN_CERT_STORE) abort();
    }
  }
}

void user_profile(std::string_view text) {
  security::UserProfile profile;
  try {
    profile = security::parse_user_profile(text, "profile.toml");
  } catch (const security::ConfigError&) {
    return;
  }
  if (!profile.exists) abort();
  check_uri(profile.internal_certificate);
  check_uri(profile.token_uri);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Config files are refused above 1 MiB; 64 KiB is plenty for the parser and keeps runs fast.
  constexpr size_t kMaxInput = 1 << 16;
  if (size > kMaxInput) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  system_config(text);
  user_profile(text);
  return 0;
}
