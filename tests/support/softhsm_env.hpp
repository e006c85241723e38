// Integration-test support: a throwaway SoftHSM2 installation per test process, and the
// independent tools (softhsm2-util, pkcs11-tool, openssl) that provision it.
//
// SoftHsmEnv::instance() creates, once per process, a temporary directory holding a
// softhsm2.conf (file backend), initialised tokens, a user PIN file and an mqsec.toml, and
// points SOFTHSM2_CONF, MQSEC_CONFIG and MQSEC_LOG at them. Call it before anything loads the
// SoftHSM module or starts threads (a GoogleTest Environment's SetUp, or SetUpTestSuite):
// SoftHSM reads its configuration and the list of tokens when the module is initialised, so
// every token a test process uses is initialised here, up front.
//
// Provisioning goes through the command-line tools on purpose: a key or certificate made by
// our own PKCS#11 layer would not test that layer independently.
//
// The PINs are fixed, well-known test values. softhsm2-util and pkcs11-tool only take PINs on
// the command line, so they appear in the argv of those short-lived child processes; that is
// acceptable for throwaway test tokens and nothing else. The helpers never put a PIN in an
// exception message or a log line.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace mqsec::testing {

using Bytes = std::vector<uint8_t>;

// What a shell command printed (stdout and stderr interleaved) and how it ended.
struct CommandResult {
  int status = -1;  // exit status; -1 if it did not exit normally
  std::string output;
  bool ok() const noexcept { return status == 0; }
};

// Runs `command` with /bin/sh -c, capturing its output. Throws std::runtime_error when the
// shell cannot be started.
CommandResult run_command(const std::string& command);

// `s` quoted for /bin/sh (single quotes).
std::string shell_quote(const std::string& s);

// The block of pkcs11-tool --list-objects output that describes the object with CKA_ID
// id_hex (pkcs11-tool filters listings by type but not by id); empty if there is none.
std::string object_block(const std::string& listing, const std::string& id_hex);

// Reads / writes a whole file. Throw std::runtime_error.
Bytes read_file(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::string& content, mode_t mode = 0644);
// A whole file as text; empty when it cannot be read (a log that was never written).
std::string read_text(const std::filesystem::path& path);

// pkcs11:token=<label>;id=<id_hex percent-encoded>;type=cert
std::string certificate_uri(const std::string& label, const std::string& id_hex);

// What the system configuration (mqsec.toml) says; defaults are the primary token with the
// primary PIN file.
struct ConfigOptions {
  std::string token_label;              // empty: SoftHsmEnv::kPrimaryToken
  std::string module_path;              // empty: the SoftHSM module
  std::filesystem::path pin_file;       // empty: SoftHsmEnv::pin_file()
  std::string token_uri;                // non-empty: used verbatim instead of the above
  bool allow_extractable_keys = false;  // [token] allow-extractable-keys
  std::filesystem::path profiles_dir;   // empty: <dir>/users; "/%u" is appended
  std::filesystem::path store_path;     // empty: <dir>/store
};

// A key and self-signed certificate made in software (openssl genpkey / req -x509).
struct SoftwareCert {
  std::filesystem::path key_der;  // PKCS#8 DER private key, for pkcs11-tool --write-object
  Bytes cert_der;
};

class SoftHsmEnv {
 public:
  // No label is a prefix of another: the pkcs11 engine (libp11 0.4.12) then picked the wrong
  // token for "token=mqsec-it" when "mqsec-it-wrongpin" came first in the slot list.
  static constexpr const char* kPrimaryToken = "mqsec-it";
  // A token only the wrong-PIN tests log in to, so a failed login cannot affect others.
  static constexpr const char* kWrongPinToken = "wrongpin-it";
  // A token for an impersonated user (its files are handed to that user).
  static constexpr const char* kUserBToken = "userb-it";
  static constexpr const char* kUserPin = "1234";
  static constexpr const char* kSoPin = "5678";

  // The process's environment, created on first use. Throws std::runtime_error (with the
  // failing tool's output) when SoftHSM, the module or a tool is missing or fails.
  static SoftHsmEnv& instance();

  SoftHsmEnv(const SoftHsmEnv&) = delete;
  SoftHsmEnv& operator=(const SoftHsmEnv&) = delete;
  ~SoftHsmEnv();  // removes the directory unless $MQSEC_IT_KEEP is set

  const std::filesystem::path& dir() const noexcept { return dir_; }
  const std::string& module_path() const noexcept { return module_; }
  const std::filesystem::path& config_path() const noexcept { return config_; }
  const std::filesystem::path& softhsm_conf() const noexcept { return softhsm_conf_; }
  const std::filesystem::path& pin_file() const noexcept { return pin_file_; }
  std::filesystem::path token_dir() const { return dir_ / "tokens"; }
  // The token's own directory under token_dir() (SoftHSM names it by a UUID).
  std::filesystem::path token_subdir(const std::string& label) const;

  // pkcs11:token=<label>?module-path=<module>&pin-source=file:<pin_file>
  std::string token_uri(const std::string& label, const std::filesystem::path& pin_file) const;
  // Rewrites mqsec.toml (atomically: readers see the old or the new file).
  void write_config(const ConfigOptions& opts = {}) const;
  // A PIN file <dir>/<name> with mode 0600, owned by `owner` (-1: the process's user).
  std::filesystem::path write_pin_file(const std::string& name, const std::string& pin,
                                       uid_t owner = static_cast<uid_t>(-1),
                                       gid_t group = static_cast<gid_t>(-1)) const;

  // A fresh CKA_ID in hex ("a1b2..."), unique within the process.
  static std::string new_id();
  // pkcs11-tool --keypairgen on `label`: key_type "rsa:2048" or "EC:prime256v1". Throws.
  void keypairgen(const std::string& label, const std::string& key_type, const std::string& id_hex,
                  const std::string& object_label) const;
  // A self-signed certificate for the token key with CKA_ID id_hex, signed on the token by
  // `openssl req -x509` through the pkcs11 engine (libengine-pkcs11-openssl). Throws.
  Bytes certificate_for_token_key(const std::string& label, const std::string& id_hex,
                                  const std::string& common_name) const;
  // A key pair and self-signed certificate made in software: algorithm "rsa" (2048) or "ec"
  // (P-256). Throws.
  SoftwareCert software_certificate(const std::string& algorithm,
                                    const std::string& common_name) const;
  // pkcs11-tool --write-object of a certificate (DER) with CKA_ID id_hex. Throws.
  void write_certificate(const std::string& label, const Bytes& der, const std::string& id_hex,
                         const std::string& object_label) const;
  // pkcs11-tool --write-object of a PKCS#8 DER private key (sign usage; --extractable when
  // asked). Throws.
  void import_private_key(const std::string& label, const std::filesystem::path& key_der,
                          const std::string& id_hex, const std::string& object_label,
                          bool extractable) const;
  // pkcs11-tool --list-objects output for `label` (type: "privkey", "cert", ...). OpenSC 0.23
  // filters the listing by type only, whatever id_hex says (may be empty): pick the object
  // out with object_block(). Throws when the tool fails.
  std::string list_objects(const std::string& label, const std::string& type,
                           const std::string& id_hex) const;

 private:
  SoftHsmEnv();
  void init_token(const std::string& label);
  // Runs a provisioning command; throws with `what` and the output (which never contains a
  // PIN: the tools do not echo them) when it fails.
  CommandResult must_run(const std::string& what, const std::string& command) const;
  std::string pkcs11_tool(const std::string& label) const;

  std::filesystem::path dir_, config_, softhsm_conf_, pin_file_, openssl_conf_;
  std::string module_;
  std::map<std::string, std::filesystem::path> token_dirs_;  // label -> its directory
};

}  // namespace mqsec::testing
