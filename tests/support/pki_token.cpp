// Test-PKI leaves on the SoftHSM token, and a config trusting the test root (pki_token.hpp).
#include "tests/support/pki_token.hpp"

#include <fstream>
#include <stdexcept>

namespace mqsec::testing {

Bytes import_pki_leaf(const TestPki& pki, const std::string& leaf,
                      const std::string& label_prefix) {
  SoftHsmEnv& env = SoftHsmEnv::instance();
  const std::string id = SoftHsmEnv::new_id();
  const std::filesystem::path key_der = pki.dir / (leaf + "." + id + ".p8.der");
  const std::filesystem::path cert_der = pki.dir / (leaf + "." + id + ".der");
  auto r = run_command("openssl pkcs8 -topk8 -nocrypt -in " + shell_quote(pki.key(leaf)) +
                       " -outform DER -out " + shell_quote(key_der) + " && openssl x509 -in " +
                       shell_quote(pki.pem(leaf)) + " -outform DER -out " + shell_quote(cert_der));
  if (!r.ok()) throw std::runtime_error("converting " + leaf + ": " + r.output);
  Bytes der = read_file(cert_der);
  const std::string label = label_prefix + "-" + leaf;
  env.import_private_key(SoftHsmEnv::kPrimaryToken, key_der, id, label, false);
  env.write_certificate(SoftHsmEnv::kPrimaryToken, der, id, label);
  return der;
}

void write_config_trusting_pki(const TestPki& pki, const std::string& more_trust_lines) {
  SoftHsmEnv& env = SoftHsmEnv::instance();
  ConfigOptions opts;
  opts.allow_extractable_keys = true;
  env.write_config(opts);
  std::ofstream out(env.config_path(), std::ios::app);
  out << "\n[trust]\n"
      << "anchors = [\"" << pki.pem("root").string() << "\"]\n"
      << "intermediates = [\"" << pki.pem("inter").string() << "\"]\n"
      << more_trust_lines;
  if (!out.flush()) throw std::runtime_error("cannot append to " + env.config_path().string());
}

}  // namespace mqsec::testing
