// Secrets named in the system configuration: PIN-source rules, through pkcs11::read_secret.
#include "src/security/secret_source.hpp"

#include "pkcs11/error.hpp"

namespace mqsec::security {

std::string secret_source_problem(const std::string& spec) {
  return pkcs11::parse_secret_source(spec, /*percent_escapes=*/false).problem;
}

pkcs11::SecretString read_secret_source(const std::string& spec, std::string_view what) {
  const pkcs11::SecretKind kind{std::string(what), std::string(what) + " source", false};
  try {
    return pkcs11::read_secret(spec, kind);
  } catch (const pkcs11::Error& e) {
    throw SecretSourceError(e.what());
  }
}

}  // namespace mqsec::security
