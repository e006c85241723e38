// mqsec's configuration files: the system config (/etc/mqsec/mqsec.toml or $MQSEC_CONFIG) and
// each user's profile (<profiles dir>/profile.toml), as DESIGN.md's "Configuration" section
// defines them. Parsing is strict: unknown tables or keys and wrong types are errors that name
// the file, line, column and key, because a misspelt key silently ignored is a security
// setting silently not applied. docs/configuration.md is the operator's reference.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "src/security/identity.hpp"

namespace mqsec::security {

// What a receiver demands of a signed message's certificate ([trust] require, and per queue).
// Ordered: a stronger requirement compares greater.
enum class TrustRequire { Signature = 0, Chain = 1, ChainRevocation = 2 };
// "signature", "chain", "chain+revocation"; nullopt for anything else.
std::optional<TrustRequire> parse_trust_require(std::string_view text);
const char* to_string(TrustRequire r) noexcept;

enum class RevocationMode { SoftFail, HardFail };

// [trust]: anchors, chain building and revocation (docs/configuration.md).
struct TrustConfig {
  std::vector<std::filesystem::path> anchors;        // PEM files or directories of trusted CAs
  std::vector<std::filesystem::path> intermediates;  // PEM files or directories
  std::vector<std::filesystem::path> crl;            // PEM or DER CRL files or directories
  std::string ocsp = "off";                          // "off" | "aia" | an http:// URL
  RevocationMode revocation = RevocationMode::SoftFail;
  std::optional<TrustRequire> require;  // unset: chain when anchors are set, else signature
  // Extended key usages a leaf may carry (when it has the extension at all): OpenSSL short
  // names ("clientAuth") or dotted OIDs.
  std::vector<std::string> extended_key_usage = {"clientAuth", "emailProtection",
                                                 "1.3.6.1.4.1.311.10.3.12",  // document signing
                                                 "anyExtendedKeyUsage"};
  std::filesystem::path registry = "/etc/mqsec/registry.d";  // the root-owned system registry
  int64_t ocsp_timeout_ms = 3000;
  // Replay protection: a message id is delivered at most once per queue within the window; a
  // signed message sent before the window (so its id may be forgotten) is rejected.
  int64_t replay_window_seconds = 7 * 24 * 3600;
  int64_t max_clock_skew_seconds = 300;  // a sent time further in the future is rejected

  TrustRequire effective_require() const noexcept {
    if (require) return *require;
    return anchors.empty() ? TrustRequire::Signature : TrustRequire::Chain;
  }
};

// [limits]: sizes and bounds (docs/configuration.md).
struct LimitsConfig {
  uint64_t max_message_body = 4 * 1024 * 1024;  // MSMQ's 4 MB message limit
  uint64_t rejected_max_count = 10000;          // rejected-message records kept per store
  uint64_t rejected_max_bytes = 64 * 1024 * 1024;
  int64_t rejected_max_age_seconds = 30 * 24 * 3600;
  uint64_t rejected_body_prefix = 4096;  // bytes of a rejected message's envelope kept
};

// [machine]: this queue manager's name on the network of queue managers.
struct MachineConfig {
  // [machine] name, else the host name; lower-case (machine names are case-insensitive) and
  // valid by machine_name_problem(). Empty only when [machine] name is unset, no [broker] is
  // configured, and the host name is not a valid machine name (then host_name_problem says why).
  std::string name;
  bool from_host_name = false;    // name is the host name (no [machine] name)
  std::string host_name_problem;  // see name
};

// [broker.tls]: only with an amqps:// URL.
struct BrokerTlsConfig {
  std::filesystem::path ca;    // PEM CA certificate(s) to trust; empty: the system's CA store
  std::filesystem::path cert;  // PEM client certificate; empty: none. Set exactly when key is.
  std::filesystem::path key;   // its PEM private key
};

// [broker]: the AMQP 1.0 broker that carries messages to and from other machines.
struct BrokerConfig {
  std::string url;     // [broker] url as written: amqp://host[:port] or amqps://host[:port]
  std::string scheme;  // "amqp" or "amqps" (lower-case)
  std::string host;    // host name or IP address; an IPv6 address without its brackets
  uint16_t port = 0;   // the URL's port, else 5672 (amqp) or 5671 (amqps)
  std::string user;    // [broker] user; empty: none (SASL ANONYMOUS, or EXTERNAL with TLS)
  // [broker] password-source: "file:<absolute path>" or "env:<NAME>"; set exactly when user is.
  // Only its form is checked here; read it with read_secret_source (secret_source.hpp).
  std::string password_source;
  int64_t connect_timeout_ms = 5000;  // [broker] connect-timeout-ms, 1 .. 600000
  // [broker] request-timeout-ms, 1 .. 600000: how long a remote read waits for the other
  // machine's agent to answer one request.
  int64_t request_timeout_ms = 10000;
  BrokerTlsConfig tls;  // [broker.tls]; all empty unless uses_tls()

  bool uses_tls() const noexcept { return scheme == "amqps"; }
};

// [agent]: what `mqsec agent` serves to other machines.
struct AgentConfig {
  // [agent] remote-read: the local queues (names, lower-case) that readers on other machines
  // may receive from and peek at through the broker (MSMQ's remote read). Empty: none.
  std::vector<std::string> remote_read;
  // [agent] expiry-sweep-seconds, 0 .. 3,600: how often the agent takes out the messages whose
  // time to be received has passed (core/expiry_sweep.hpp); 0: never (receivers still do).
  int64_t expiry_sweep_seconds = 10;
};

// [signing]: batch signing (docs/configuration.md "Batch signing"; the format is
// docs/signature-format.md, section 10). Off unless batch_max_messages > 1.
struct SigningConfig {
  // [signing] batch-max-messages, 1 .. 65,536: at most this many messages share one device
  // signature. 1: every authenticated message is signed alone, before MQSendMessage returns.
  uint32_t batch_max_messages = 1;
  // [signing] batch-max-delay-ms, 0 .. 10,000: how long the first message of a batch waits for
  // others before the batch is signed.
  int64_t batch_max_delay_ms = 10;
  // [signing] batch-wait: MQSendMessage waits until its message is signed and handed to its
  // queue (group signing of concurrent senders) instead of returning once it is queued for
  // signing (deferred signing, the default).
  bool batch_wait = false;
  // [signing] batch-limit, 1 .. 65,536 (system configuration only): the most messages one
  // device signature may cover, whoever asks (this file, a user profile, `mqsec send --batch`,
  // Queue::set_batching). 1 forbids batch signing on this machine.
  uint32_t batch_limit = 65536;

  bool batching() const noexcept { return batch_max_messages > 1; }
};

// A user profile's [signing] (docs/configuration.md "User profiles"): each key it sets replaces
// the system configuration's for the security contexts that user acquires; batch-limit is the
// system's alone and caps the result.
struct SigningOverrides {
  std::optional<uint32_t> batch_max_messages;
  std::optional<int64_t> batch_max_delay_ms;
  std::optional<bool> batch_wait;

  bool empty() const noexcept { return !batch_max_messages && !batch_max_delay_ms && !batch_wait; }
  // `base` with the keys set here replacing its own.
  SigningConfig applied_to(SigningConfig base) const {
    if (batch_max_messages) base.batch_max_messages = *batch_max_messages;
    if (batch_max_delay_ms) base.batch_max_delay_ms = *batch_max_delay_ms;
    if (batch_wait) base.batch_wait = *batch_wait;
    return base;
  }
};

struct SystemConfig {
  std::filesystem::path source;         // the file it came from; empty = defaults
  std::string token_uri;                // [token] uri; empty if unset
  bool allow_extractable_keys = false;  // [token] allow-extractable-keys
  // [token] allowed-modules: absolute paths of PKCS#11 modules a user profile may name, in
  // addition to the modules registered with p11-kit.
  std::vector<std::filesystem::path> allowed_modules;
  std::filesystem::path store_path = "/var/lib/mqsec";  // [store] path
  std::string profiles_dir;  // [profiles] dir, may contain %u; empty = <home>/.config/mqsec
  SidSource sid_source = SidSource::Auto;  // [identity] sid
  bool allow_weak_hash = false;            // [security] allow-weak-hash
  TrustConfig trust;                       // [trust]
  LimitsConfig limits;                     // [limits]
  MachineConfig machine;                   // [machine]
  // [broker]; unset: no broker, remote queues are unavailable (their users report it).
  std::optional<BrokerConfig> broker;
  AgentConfig agent;      // [agent]
  SigningConfig signing;  // [signing]
};

// "" when `name` is a valid machine name, else the reason, stating the rule: 1 to 63 ASCII
// letters, digits, '-', '_' or '.', beginning with a letter or a digit. Case is not checked
// (machine names are case-insensitive; SystemConfig holds them lower-case).
std::string machine_name_problem(std::string_view name);

// This host's name (gethostname), lower-case; "" if it cannot be had.
std::string host_machine_name();

// A malformed or unreadable configuration file. what() is
// "<file>:<line>:<column>: <key>: <problem>", e.g.
// "/etc/mqsec/mqsec.toml:3:1: token.uri: expected a string, not an integer"; syntax errors are
// "<file>:<line>:<column>: <toml++'s description>"; I/O errors "<file>: <problem>".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// $MQSEC_CONFIG if set and non-empty, else /etc/mqsec/mqsec.toml. The variable is read with
// secure_getenv, so it is ignored in setuid/setgid programs.
std::filesystem::path system_config_path();

// Parses system config text; source_name is used in error messages (and copied into
// SystemConfig::source). host_name stands in for host_machine_name() (the default machine
// name) when given. Throws ConfigError.
SystemConfig parse_system_config(std::string_view text, const std::string& source_name,
                                 const std::optional<std::string>& host_name = std::nullopt);

// Reads system_config_path(). The default path missing -> built-in defaults (source empty).
// Throws ConfigError when the file is malformed, when the default file exists but cannot be
// read, and when an explicit $MQSEC_CONFIG is missing or unreadable.
SystemConfig load_system_config();

struct UserProfile {
  std::filesystem::path dir;         // the user's profile directory
  std::filesystem::path file;        // dir / "profile.toml"
  bool exists = false;               // the file exists (and parsed)
  std::string internal_certificate;  // PKCS#11 URI of the internal certificate; empty if unset
  std::string token_uri;             // [token] uri: the user's own token; empty if unset
  SigningOverrides signing;          // [signing]: batch signing for this user's contexts
};

// The user's profile directory: [profiles] dir with %u replaced by user.name (and %% by %), or
// user.home/.config/mqsec when unset. Throws mqsec::Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE) when
// the result would not be a safe per-user absolute path: %u with a user name that is empty,
// "." / ".." or contains '/', or the default with a home that is empty or relative.
std::filesystem::path profile_dir(const SystemConfig& cfg, const UserIdentity& user);

// Parses profile text. Throws ConfigError.
UserProfile parse_user_profile(std::string_view text, const std::string& source_name);

// Reads profile_dir(cfg, user) / "profile.toml". A missing file (or directory) gives
// exists = false with dir and file set. Throws ConfigError when the file is malformed, and
// mqsec::Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE) when it exists but cannot be read (MSMQ's code
// for "no permission on one's own profile"), or from profile_dir().
UserProfile load_user_profile(const SystemConfig& cfg, const UserIdentity& user);

// Writes profile.file (or profile.dir / "profile.toml") with internal-certificate = uri,
// keeping the [token] uri and [signing] currently in the file (or profile's when there is no
// file).
// Missing directories are created with mode 0700, the file gets mode 0600; the new content goes
// to a temporary file in the same directory which is fsynced and renamed over the old one, so
// readers see the old or the new profile, never a torn one. Comments in an existing profile
// are not kept. Throws mqsec::Error(MQ_ERROR_INVALID_PARAMETER) when uri is not a PKCS#11 URI,
// and mqsec::Error(MQ_ERROR_CANNOT_CREATE_CERT_STORE, reason) when the directory or file cannot
// be created or written, or the existing profile is malformed (it is left untouched).
void set_internal_certificate(const UserProfile& profile, const std::string& uri);

}  // namespace mqsec::security
