// Test support: the test PKI (test_pki.hpp) on the SoftHSM token (softhsm_env.hpp): a leaf's key
// and certificate imported into the primary token, and a system configuration that trusts the
// test root. The imported keys existed outside the token, so that configuration allows them.
#pragma once

#include <string>

#include "tests/support/softhsm_env.hpp"
#include "tests/support/test_pki.hpp"

namespace mqsec::testing {

// Imports <leaf>.key (as PKCS#8 DER) and <leaf>.pem into SoftHsmEnv::kPrimaryToken under a new
// CKA_ID, both objects labelled "<label_prefix>-<leaf>"; returns the certificate's DER. Throws.
Bytes import_pki_leaf(const TestPki& pki, const std::string& leaf, const std::string& label_prefix);

// Rewrites mqsec.toml (SoftHsmEnv::write_config, extractable keys allowed) with a [trust]
// section: anchors = the test root, intermediates = the test intermediate, then
// `more_trust_lines` (e.g. "require = \"chain\"\n").
void write_config_trusting_pki(const TestPki& pki, const std::string& more_trust_lines);

}  // namespace mqsec::testing
