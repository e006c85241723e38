// Unit tests for the system config and user profiles: every key, every kind of error message,
// the profile directory rules and the atomic, permission-tight profile writer.
#include "src/security/config.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "mqsec/error.hpp"

#include "tests/support/scoped_env.hpp"

namespace mqsec::security {
namespace {

namespace fs = std::filesystem;
using mqsec::testing::ScopedEnv;

const char* const kFile = "/etc/mqsec/mqsec.toml";

// The message of the ConfigError that parsing `text` throws, or "" (and a test failure).
std::string system_error(const std::string& text) {
  try {
    parse_system_config(text, kFile);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for:\n" << text;
  return "";
}

std::string profile_error(const std::string& text) {
  try {
    parse_user_profile(text, "/home/alice/.config/mqsec/profile.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for:\n" << text;
  return "";
}

// A fresh directory under the test temp dir, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "mqsec-config-test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

std::string read_whole(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

UserIdentity alice(const fs::path& home = "/home/alice") {
  UserIdentity u;
  u.uid = 1001;
  u.gid = 1001;
  u.name = "alice";
  u.home = home;
  u.sid = Sid::unix_user(1001);
  return u;
}

// --- system config: values ----------------------------------------------------------------

TEST(SystemConfig, EmptyTextGivesDefaults) {
  const SystemConfig cfg = parse_system_config("", kFile);
  EXPECT_EQ(cfg.source, kFile);
  EXPECT_EQ(cfg.token_uri, "");
  EXPECT_FALSE(cfg.allow_extractable_keys);
  EXPECT_EQ(cfg.store_path, "/var/lib/mqsec");
  EXPECT_EQ(cfg.profiles_dir, "");
  EXPECT_EQ(cfg.sid_source, SidSource::Auto);
  EXPECT_FALSE(cfg.allow_weak_hash);
}

TEST(SystemConfig, EveryKey) {
  const SystemConfig cfg = parse_system_config(R"(
# comment
[token]
uri = "pkcs11:token=mqsec?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/mqsec/user.pin"
allow-extractable-keys = true
[store]
path = "/srv/mqsec"
[profiles]
dir = "/etc/mqsec/users/%u"
[identity]
sid = "unix"
[security]
allow-weak-hash = true
)",
                                               "/tmp/x.toml");
  EXPECT_EQ(cfg.source, "/tmp/x.toml");
  EXPECT_EQ(cfg.token_uri,
            "pkcs11:token=mqsec?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/"
            "mqsec/user.pin");
  EXPECT_TRUE(cfg.allow_extractable_keys);
  EXPECT_EQ(cfg.store_path, "/srv/mqsec");
  EXPECT_EQ(cfg.profiles_dir, "/etc/mqsec/users/%u");
  EXPECT_EQ(cfg.sid_source, SidSource::Unix);
  EXPECT_TRUE(cfg.allow_weak_hash);
}

TEST(SystemConfig, TrustAndLimitsDefaults) {
  const SystemConfig cfg = parse_system_config("", kFile);
  EXPECT_TRUE(cfg.allowed_modules.empty());
  EXPECT_TRUE(cfg.trust.anchors.empty());
  EXPECT_EQ(cfg.trust.ocsp, "off");
  EXPECT_EQ(cfg.trust.revocation, RevocationMode::SoftFail);
  EXPECT_FALSE(cfg.trust.require.has_value());
  EXPECT_EQ(cfg.trust.effective_require(), TrustRequire::Signature);
  EXPECT_EQ(cfg.trust.registry, "/etc/mqsec/registry.d");
  EXPECT_EQ(cfg.trust.replay_window_seconds, 7 * 24 * 3600);
  EXPECT_EQ(cfg.trust.max_clock_skew_seconds, 300);
  EXPECT_EQ(cfg.limits.max_message_body, 4u * 1024 * 1024);
  EXPECT_EQ(cfg.limits.rejected_body_prefix, 4096u);
  // Anchors alone make "chain" the default requirement.
  EXPECT_EQ(parse_system_config("[trust]\nanchors = [\"/etc/mqsec/trust/\"]", kFile)
                .trust.effective_require(),
            TrustRequire::Chain);
}

TEST(SystemConfig, EveryTrustAndLimitsKey) {
  const SystemConfig cfg = parse_system_config(R"(
[token]
allowed-modules = ["/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"]
[trust]
anchors = ["/etc/mqsec/trust/", "/etc/ssl/root.pem"]
intermediates = ["/etc/mqsec/trust/intermediates/"]
crl = ["/etc/mqsec/crl/"]
ocsp = "http://127.0.0.1:8080/"
revocation = "hard-fail"
require = "chain+revocation"
extended-key-usage = ["clientAuth", "1.3.6.1.5.5.7.3.4"]
registry = "/srv/registry.d"
ocsp-timeout-ms = 1500
replay-window = 86400
max-clock-skew = 60
[limits]
max-message-body = 1024
rejected-max-count = 5
rejected-max-bytes = 100000
rejected-max-age = 3600
rejected-body-prefix = 16
)",
                                               kFile);
  ASSERT_EQ(cfg.allowed_modules.size(), 1u);
  EXPECT_EQ(cfg.allowed_modules[0], "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so");
  EXPECT_EQ(cfg.trust.anchors, (std::vector<fs::path>{"/etc/mqsec/trust/", "/etc/ssl/root.pem"}));
  EXPECT_EQ(cfg.trust.intermediates, std::vector<fs::path>{"/etc/mqsec/trust/intermediates/"});
  EXPECT_EQ(cfg.trust.crl, std::vector<fs::path>{"/etc/mqsec/crl/"});
  EXPECT_EQ(cfg.trust.ocsp, "http://127.0.0.1:8080/");
  EXPECT_EQ(cfg.trust.revocation, RevocationMode::HardFail);
  EXPECT_EQ(cfg.trust.effective_require(), TrustRequire::ChainRevocation);
  EXPECT_EQ(cfg.trust.extended_key_usage,
            (std::vector<std::string>{"clientAuth", "1.3.6.1.5.5.7.3.4"}));
  EXPECT_EQ(cfg.trust.registry, "/srv/registry.d");
  EXPECT_EQ(cfg.trust.ocsp_timeout_ms, 1500);
  EXPECT_EQ(cfg.trust.replay_window_seconds, 86400);
  EXPECT_EQ(cfg.trust.max_clock_skew_seconds, 60);
  EXPECT_EQ(cfg.limits.max_message_body, 1024u);
  EXPECT_EQ(cfg.limits.rejected_max_count, 5u);
  EXPECT_EQ(cfg.limits.rejected_max_bytes, 100000u);
  EXPECT_EQ(cfg.limits.rejected_max_age_seconds, 3600);
  EXPECT_EQ(cfg.limits.rejected_body_prefix, 16u);
}

// [signing]: batch signing (issue 12, item 3). Off by default; strict bounds.
TEST(SystemConfig, SigningBatchKeys) {
  SystemConfig d = parse_system_config("", "test");
  EXPECT_EQ(d.signing.batch_max_messages, 1u);
  EXPECT_EQ(d.signing.batch_max_delay_ms, 10);
  EXPECT_FALSE(d.signing.batch_wait);
  EXPECT_FALSE(d.signing.batching());
  SystemConfig c = parse_system_config(
      "[signing]\nbatch-max-messages = 65536\nbatch-max-delay-ms = 250\nbatch-wait = true\n",
      "test");
  EXPECT_EQ(c.signing.batch_max_messages, 65536u);
  EXPECT_EQ(c.signing.batch_max_delay_ms, 250);
  EXPECT_TRUE(c.signing.batch_wait);
  EXPECT_TRUE(c.signing.batching());
  for (const char* bad :
       {"batch-max-messages = 0", "batch-max-messages = 65537", "batch-max-messages = -1",
        "batch-max-messages = \"10\"", "batch-max-delay-ms = 10001", "batch-max-delay-ms = -5",
        "batch-wait = 1", "batch-size = 10"}) {
    try {
      parse_system_config(std::string("[signing]\n") + bad + "\n", "f.toml");
      ADD_FAILURE() << bad << " accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("f.toml:2:"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("signing."), std::string::npos) << e.what();
    }
  }
}

// [signing] batch-limit (issue 12): the administrator's ceiling, system configuration only.
TEST(SystemConfig, SigningBatchLimit) {
  EXPECT_EQ(parse_system_config("", "test").signing.batch_limit, 65536u);
  SystemConfig c =
      parse_system_config("[signing]\nbatch-max-messages = 100\nbatch-limit = 1\n", "test");
  EXPECT_EQ(c.signing.batch_limit, 1u);
  EXPECT_EQ(c.signing.batch_max_messages, 100u);  // as written; the limit applies per send
  for (const char* bad : {"batch-limit = 0", "batch-limit = 65537", "batch-limit = true"}) {
    try {
      parse_system_config(std::string("[signing]\n") + bad + "\n", "f.toml");
      ADD_FAILURE() << bad << " accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("f.toml:2:"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("signing.batch-limit"), std::string::npos) << e.what();
    }
  }
}

TEST(SystemConfig, TrustRequireSpellings) {
  EXPECT_EQ(parse_trust_require("signature"), TrustRequire::Signature);
  EXPECT_EQ(parse_trust_require("chain"), TrustRequire::Chain);
  EXPECT_EQ(parse_trust_require("chain+revocation"), TrustRequire::ChainRevocation);
  EXPECT_FALSE(parse_trust_require("Chain").has_value());
  EXPECT_FALSE(parse_trust_require("").has_value());
  for (TrustRequire r :
       {TrustRequire::Signature, TrustRequire::Chain, TrustRequire::ChainRevocation}) {
    EXPECT_EQ(parse_trust_require(to_string(r)), r);
  }
}

TEST(SystemConfig, TrustAndLimitsErrors) {
  struct Case {
    const char* text;
    const char* error;  // a part of the error message
  };
  const Case cases[] = {
      {"[trust]\nrequire = \"chain\"", "trust.require: \"chain\" needs trust anchors"},
      {"[trust]\nanchors = [\"/a\"]\nrequire = \"strict\"",
       "trust.require: expected \"signature\", \"chain\" or \"chain+revocation\""},
      {"[trust]\nanchors = [\"etc/trust\"]", "trust.anchors: every entry must be an absolute path"},
      {"[trust]\nanchors = \"/etc/trust\"",
       "trust.anchors: expected an array of strings, not a string"},
      {"[trust]\ncrl = [\"/a\", 3]",
       "trust.crl: expected an array of strings, but an element is an integer"},
      {"[trust]\nocsp = \"https://ocsp.example/\"",
       "trust.ocsp: expected \"off\", \"aia\" or an http:// URL"},
      {"[trust]\nrevocation = \"ignore\"",
       "trust.revocation: expected \"soft-fail\" or \"hard-fail\""},
      {"[trust]\nreplay-window = -1", "trust.replay-window: must be between 0"},
      {"[trust]\nregistry = \"registry.d\"", "trust.registry: must be an absolute path"},
      {"[trust]\nanchor = [\"/a\"]", "unknown key 'trust.anchor'"},
      {"[limits]\nmax-message-body = \"4MB\"",
       "limits.max-message-body: expected an integer, not a string"},
      {"[limits]\nmax-body = 1", "unknown key 'limits.max-body'"},
      {"[token]\nallowed-modules = [\"libfoo.so\"]",
       "token.allowed-modules: every entry must be an absolute path"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string error = system_error(c.text);
    EXPECT_NE(error.find(c.error), std::string::npos) << error;
  }
}

// The commented sample in config/ must stay a valid configuration, with its commented trust
// and limits settings switched on too.
TEST(SystemConfig, SampleFileParses) {
  std::ifstream in(std::string(MQSEC_SOURCE_DIR) + "/config/mqsec.toml");
  ASSERT_TRUE(in) << "config/mqsec.toml not found";
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NO_THROW(parse_system_config(text.str(), "config/mqsec.toml"));
  // Uncomment every "# key = value" line of [token], [trust] and [limits], and the commented
  // [machine], [broker], [broker.tls] and [agent] tables with their keys.
  std::string uncommented;
  std::istringstream lines(text.str());
  std::string section;
  for (std::string line; std::getline(lines, line);) {
    if (line == "# [machine]" || line == "# [broker]" || line == "# [broker.tls]" ||
        line == "# [agent]" || line == "# [signing]")
      line = line.substr(2);
    if (!line.empty() && line[0] == '[') section = line;
    if ((section == "[trust]" || section == "[limits]" || section == "[token]" ||
         section == "[machine]" || section == "[broker]" || section == "[broker.tls]" ||
         section == "[agent]" || section == "[signing]") &&
        line.rfind("# ", 0) == 0 && line.find(" = ") != std::string::npos &&
        line.find(' ', 2) > line.find(" = ") - 1)
      line = line.substr(2);
    uncommented += line + "\n";
  }
  SystemConfig cfg = parse_system_config(uncommented, "config/mqsec.toml (uncommented)");
  EXPECT_EQ(cfg.trust.effective_require(), TrustRequire::Chain);
  EXPECT_FALSE(cfg.allowed_modules.empty());
  EXPECT_EQ(cfg.limits.rejected_max_count, 10000u);
  EXPECT_EQ(cfg.machine.name, "hosta");
  ASSERT_TRUE(cfg.broker.has_value());
  EXPECT_TRUE(cfg.broker->uses_tls());
  EXPECT_EQ(cfg.broker->user, "mqsec");
  EXPECT_EQ(cfg.broker->password_source, "file:/etc/mqsec/broker.pw");
  EXPECT_EQ(cfg.broker->tls.ca, "/etc/mqsec/broker-ca.pem");
  EXPECT_FALSE(cfg.broker->tls.cert.empty());
  EXPECT_FALSE(cfg.broker->tls.key.empty());
  EXPECT_EQ(cfg.broker->request_timeout_ms, 10000);
  EXPECT_EQ(cfg.agent.remote_read, (std::vector<std::string>{"inbox"}));
  EXPECT_EQ(cfg.signing.batch_max_messages, 1000u);
  EXPECT_EQ(cfg.signing.batch_max_delay_ms, 10);
}

TEST(SystemConfig, EverySidSource) {
  EXPECT_EQ(parse_system_config("[identity]\nsid = \"auto\"", kFile).sid_source, SidSource::Auto);
  EXPECT_EQ(parse_system_config("[identity]\nsid = \"unix\"", kFile).sid_source, SidSource::Unix);
  EXPECT_EQ(parse_system_config("[identity]\nsid = \"sssd\"", kFile).sid_source, SidSource::Sssd);
  EXPECT_EQ(parse_system_config("[identity]\nsid = \"winbind\"", kFile).sid_source,
            SidSource::Winbind);
}

TEST(SystemConfig, DottedKeysAndInlineTablesAreTheSameKeys) {
  const SystemConfig a = parse_system_config("token.allow-extractable-keys = true\n", kFile);
  EXPECT_TRUE(a.allow_extractable_keys);
  const SystemConfig b = parse_system_config("store = { path = \"/data/mq\" }\n", kFile);
  EXPECT_EQ(b.store_path, "/data/mq");
}

// --- system config: [machine] and [broker] -------------------------------------------------

TEST(MachineConfig, DefaultIsTheHostNameLowerCased) {
  const SystemConfig cfg = parse_system_config("", kFile, std::string("HostA.Example"));
  EXPECT_EQ(cfg.machine.name, "hosta.example");
  EXPECT_TRUE(cfg.machine.from_host_name);
  EXPECT_EQ(cfg.machine.host_name_problem, "");
  // Without the stand-in, this host's name.
  const std::string host = host_machine_name();
  if (machine_name_problem(host).empty()) {
    EXPECT_EQ(parse_system_config("", kFile).machine.name, host);
  }
}

TEST(MachineConfig, NameIsCaseInsensitiveAndWinsOverTheHostName) {
  const SystemConfig cfg =
      parse_system_config("[machine]\nname = \"Host_B-2.lan\"\n", kFile, std::string("hosta"));
  EXPECT_EQ(cfg.machine.name, "host_b-2.lan");
  EXPECT_FALSE(cfg.machine.from_host_name);
  EXPECT_EQ(parse_system_config("[machine]\nname = \"" + std::string(63, 'a') + "\"\n", kFile)
                .machine.name,
            std::string(63, 'a'));
}

TEST(MachineConfig, NameRule) {
  for (const char* ok : {"a", "hosta", "HOSTA", "9host", "a.b-c_d", "x1"})
    EXPECT_EQ(machine_name_problem(ok), "") << ok;
  for (const std::string& bad :
       {std::string(""), std::string(64, 'a'), std::string("host a"), std::string(".hidden"),
        std::string("-x"), std::string("_x"), std::string("a/b"), std::string("a\\b"),
        std::string("h\xc3\xa9"), std::string("a:b")})
    EXPECT_NE(machine_name_problem(bad), "") << bad;
  EXPECT_EQ(machine_name_problem("host a"),
            "\"host a\" is not a valid machine name: use 1 to 63 letters, digits, '-', '_' or '.', "
            "beginning with a letter or a digit");
}

TEST(MachineConfig, Errors) {
  EXPECT_EQ(system_error("[machine]\nname = \"host a\"\n"),
            "/etc/mqsec/mqsec.toml:2:1: machine.name: \"host a\" is not a valid machine name: use "
            "1 to 63 letters, digits, '-', '_' or '.', beginning with a letter or a digit");
  EXPECT_NE(system_error("[machine]\nname = \"\"\n").find("machine.name: \"\" is not a valid"),
            std::string::npos);
  EXPECT_NE(system_error("[machine]\nname = 7\n").find("machine.name: expected a string"),
            std::string::npos);
  EXPECT_NE(system_error("[machine]\nhost = \"a\"\n")
                .find("machine.host: unknown key 'machine.host' (expected name)"),
            std::string::npos);
  EXPECT_NE(system_error("machine = \"hosta\"\n").find("machine: expected a table, not a string"),
            std::string::npos);
}

TEST(MachineConfig, UnusableHostNameMattersOnlyWithABroker) {
  const SystemConfig local = parse_system_config("", kFile, std::string("bad host"));
  EXPECT_EQ(local.machine.name, "");
  EXPECT_NE(local.machine.host_name_problem.find("\"bad host\" is not a valid machine name"),
            std::string::npos);
  try {
    parse_system_config("[broker]\nurl = \"amqp://127.0.0.1\"\n", kFile, std::string("bad host"));
    FAIL() << "a broker without a usable machine name was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "/etc/mqsec/mqsec.toml:1:2: machine.name: not set, and the host name cannot be the "
              "machine name: \"bad host\" is not a valid machine name: use 1 to 63 letters, "
              "digits, '-', '_' or '.', beginning with a letter or a digit; set [machine] name");
  }
  EXPECT_EQ(parse_system_config("[machine]\nname = \"a\"\n[broker]\nurl = \"amqp://h\"\n", kFile,
                                std::string("bad host"))
                .machine.name,
            "a");
}

TEST(BrokerConfig, AbsentMeansNoBroker) {
  EXPECT_FALSE(parse_system_config("", kFile).broker.has_value());
  EXPECT_FALSE(parse_system_config("[machine]\nname = \"hosta\"\n", kFile).broker.has_value());
}

TEST(BrokerConfig, EveryKey) {
  const SystemConfig cfg = parse_system_config(R"(
[machine]
name = "hosta"
[broker]
url = "amqps://broker.example:5999"
user = "mqsec"
password-source = "file:/etc/mqsec/broker.pw"
connect-timeout-ms = 2500
request-timeout-ms = 1500
[broker.tls]
ca = "/etc/mqsec/broker-ca.pem"
cert = "/etc/mqsec/client.pem"
key = "/etc/mqsec/client.key"
)",
                                               kFile);
  EXPECT_EQ(cfg.machine.name, "hosta");
  ASSERT_TRUE(cfg.broker.has_value());
  const BrokerConfig& b = *cfg.broker;
  EXPECT_EQ(b.url, "amqps://broker.example:5999");
  EXPECT_EQ(b.scheme, "amqps");
  EXPECT_TRUE(b.uses_tls());
  EXPECT_EQ(b.host, "broker.example");
  EXPECT_EQ(b.port, 5999);
  EXPECT_EQ(b.user, "mqsec");
  EXPECT_EQ(b.password_source, "file:/etc/mqsec/broker.pw");
  EXPECT_EQ(b.connect_timeout_ms, 2500);
  EXPECT_EQ(b.request_timeout_ms, 1500);
  EXPECT_EQ(b.tls.ca, "/etc/mqsec/broker-ca.pem");
  EXPECT_EQ(b.tls.cert, "/etc/mqsec/client.pem");
  EXPECT_EQ(b.tls.key, "/etc/mqsec/client.key");
}

TEST(BrokerConfig, Defaults) {
  const SystemConfig cfg = parse_system_config("[broker]\nurl = \"amqp://127.0.0.1\"\n", kFile);
  ASSERT_TRUE(cfg.broker.has_value());
  const BrokerConfig& b = *cfg.broker;
  EXPECT_EQ(b.scheme, "amqp");
  EXPECT_FALSE(b.uses_tls());
  EXPECT_EQ(b.host, "127.0.0.1");
  EXPECT_EQ(b.port, 5672);
  EXPECT_EQ(b.user, "");
  EXPECT_EQ(b.password_source, "");
  EXPECT_EQ(b.connect_timeout_ms, 5000);
  EXPECT_EQ(b.request_timeout_ms, 10000);
  EXPECT_TRUE(b.tls.ca.empty());
  EXPECT_TRUE(b.tls.cert.empty());
  EXPECT_TRUE(b.tls.key.empty());
  // amqps:// without [broker.tls]: port 5671, the system's CAs.
  const SystemConfig s = parse_system_config("[broker]\nurl = \"amqps://mq.example\"\n", kFile);
  EXPECT_EQ(s.broker->port, 5671);
  EXPECT_TRUE(s.broker->uses_tls());
  EXPECT_TRUE(s.broker->tls.ca.empty());
}

TEST(BrokerConfig, UrlForms) {
  struct Case {
    const char* url;
    const char* scheme;
    const char* host;
    uint16_t port;
  };
  for (const Case& c : {Case{"amqp://127.0.0.1:5672", "amqp", "127.0.0.1", 5672},
                        Case{"amqp://localhost", "amqp", "localhost", 5672},
                        Case{"amqp://mq-1.example_x.org:1/", "amqp", "mq-1.example_x.org", 1},
                        Case{"AMQPS://MQ.example:65535", "amqps", "MQ.example", 65535},
                        Case{"amqp://[::1]:5673", "amqp", "::1", 5673},
                        Case{"amqps://[fe80::1]", "amqps", "fe80::1", 5671}}) {
    SCOPED_TRACE(c.url);
    const SystemConfig cfg =
        parse_system_config("[broker]\nurl = \"" + std::string(c.url) + "\"\n", kFile);
    ASSERT_TRUE(cfg.broker.has_value());
    EXPECT_EQ(cfg.broker->url, c.url);
    EXPECT_EQ(cfg.broker->scheme, c.scheme);
    EXPECT_EQ(cfg.broker->host, c.host);
    EXPECT_EQ(cfg.broker->port, c.port);
  }
}

TEST(BrokerConfig, EnvPasswordSourceAndDottedKeys) {
  const SystemConfig cfg = parse_system_config(
      "broker = { url = \"amqp://h\", user = \"u\", password-source = \"env:MQ_PW\" }\n", kFile);
  ASSERT_TRUE(cfg.broker.has_value());
  EXPECT_EQ(cfg.broker->password_source, "env:MQ_PW");
  const SystemConfig dotted =
      parse_system_config("broker.url = \"amqps://h\"\nbroker.tls.ca = \"/etc/ca.pem\"\n", kFile);
  EXPECT_EQ(dotted.broker->tls.ca, "/etc/ca.pem");
}

TEST(BrokerConfig, Errors) {
  struct Case {
    const char* text;
    const char* error;  // a part of the error message
  };
  const Case cases[] = {
      {"[broker]\nurl = \"http://h:5672\"",
       "broker.url: expected amqp://host[:port] or amqps://host[:port], not \"http://h:5672\""},
      {"[broker]\nurl = \"127.0.0.1:5672\"", "broker.url: expected amqp://host[:port]"},
      {"[broker]\nurl = \"amqp://\"",
       "broker.url: expected amqp://host[:port] or "
       "amqps://host[:port], not \"amqp://\": the host is missing"},
      {"[broker]\nurl = \"amqp://:5672\"", "the host is missing"},
      {"[broker]\nurl = \"amqp://h:0\"",
       "broker.url: \"amqp://h:0\": the port must be a number "
       "from 1 to 65535"},
      {"[broker]\nurl = \"amqp://h:65536\"", "the port must be a number from 1 to 65535"},
      {"[broker]\nurl = \"amqp://h:ab\"", "the port must be a number from 1 to 65535"},
      {"[broker]\nurl = \"amqp://h:\"", "the port must be a number from 1 to 65535"},
      {"[broker]\nurl = \"amqp://h/vhost\"", "the URL names the broker only"},
      {"[broker]\nurl = \"amqp://h?x=1\"", "the URL names the broker only"},
      {"[broker]\nurl = \"amqp://h a\"", "no spaces or control characters"},
      {"[broker]\nurl = \"amqp://h!x\"", "the host may contain only letters, digits"},
      {"[broker]\nurl = \"amqp://::1:5672\"", "write an IPv6 address in brackets"},
      {"[broker]\nurl = \"amqp://[::1\"", "an IPv6 address needs its closing ']'"},
      {"[broker]\nurl = \"amqp://[nothost]:1\"", "in brackets is not an IPv6 address"},
      {"[broker]\nurl = \"amqp://[::1]x\"", "only ':port' may follow ']'"},
      {"[broker]\nurl = 5672", "broker.url: expected a string, not an integer"},
      {"[broker]\nuser = \"u\"\npassword-source = \"env:P\"",
       "/etc/mqsec/mqsec.toml:1:2: broker.url: missing: [broker] needs url = "
       "\"amqp://host:5672\" (or remove [broker] to run without a broker)"},
      {"[broker]\n", "broker.url: missing"},
      {"[broker]\nurl = \"amqp://h\"\nuser = \"u\"",
       "/etc/mqsec/mqsec.toml:3:1: broker.password-source: missing: broker.user needs "
       "password-source"},
      {"[broker]\nurl = \"amqp://h\"\npassword-source = \"env:P\"",
       "/etc/mqsec/mqsec.toml:3:1: broker.user: missing: broker.password-source needs user"},
      {"[broker]\nurl = \"amqp://h\"\nuser = \"\"\npassword-source = \"env:P\"",
       "broker.user: must not be empty"},
      {"[broker]\nurl = \"amqp://h\"\nuser = \"a\\nb\"\npassword-source = \"env:P\"",
       "broker.user: must not contain control characters"},
      {"[broker]\nurl = \"amqp://h\"\nuser = \"u\"\npassword-source = \"file:broker.pw\"",
       "/etc/mqsec/mqsec.toml:4:1: broker.password-source: 'file:broker.pw' must name an "
       "absolute path"},
      {"[broker]\nurl = \"amqp://h\"\nuser = \"u\"\npassword-source = \"env:\"",
       "broker.password-source: 'env:' must name an environment variable"},
      {"[broker]\nurl = \"amqp://h\"\nuser = \"u\"\npassword-source = \"exec:/bin/pw\"",
       "broker.password-source: unsupported source (not shown: it may be the secret itself): "
       "use file:<absolute path> or env:<VARIABLE>"},
      {"[broker]\nurl = \"amqp://h\"\nconnect-timeout-ms = 0",
       "broker.connect-timeout-ms: must be at least 1"},
      {"[broker]\nurl = \"amqp://h\"\nconnect-timeout-ms = 600001",
       "broker.connect-timeout-ms: must be between 0 and 600000"},
      {"[broker]\nurl = \"amqp://h\"\nconnect-timeout-ms = \"5s\"",
       "broker.connect-timeout-ms: expected an integer, not a string"},
      {"[broker]\nurl = \"amqp://h\"\nrequest-timeout-ms = 0",
       "broker.request-timeout-ms: must be at least 1"},
      {"[broker]\nurl = \"amqp://h\"\nrequest-timeout-ms = 600001",
       "broker.request-timeout-ms: must be between 0 and 600000"},
      {"[broker]\nurl = \"amqp://h\"\ntimeout = 5",
       "broker.timeout: unknown key 'broker.timeout' (expected url, user, password-source, "
       "connect-timeout-ms, request-timeout-ms or the table [broker.tls])"},
      {"[broker]\nurl = \"amqp://h\"\n[broker.tls]\nca = \"/etc/ca.pem\"",
       "/etc/mqsec/mqsec.toml:3:9: broker.tls: TLS settings need an amqps:// URL, and "
       "broker.url is amqp://"},
      {"[broker]\nurl = \"amqps://h\"\n[broker.tls]\nca = \"ca.pem\"",
       "/etc/mqsec/mqsec.toml:4:1: broker.tls.ca: must be an absolute path"},
      {"[broker]\nurl = \"amqps://h\"\n[broker.tls]\ncert = \"/c.pem\"",
       "/etc/mqsec/mqsec.toml:4:1: broker.tls.key: missing: a client certificate needs its "
       "private key (set cert and key, or neither)"},
      {"[broker]\nurl = \"amqps://h\"\n[broker.tls]\nkey = \"/c.key\"",
       "/etc/mqsec/mqsec.toml:4:1: broker.tls.cert: missing: a private key needs its client "
       "certificate (set cert and key, or neither)"},
      {"[broker]\nurl = \"amqps://h\"\n[broker.tls]\nverify = false",
       "broker.tls.verify: unknown key 'broker.tls.verify' (expected ca, cert or key)"},
      {"[broker]\nurl = \"amqps://h\"\ntls = \"/etc/ca.pem\"",
       "broker.tls: expected a table, not a string"},
      {"broker = \"amqp://h\"", "broker: expected a table, not a string"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string error = system_error(c.text);
    EXPECT_NE(error.find(c.error), std::string::npos) << error;
  }
}

TEST(AgentConfig, RemoteReadIsOffByDefaultAndListsQueueNames) {
  EXPECT_TRUE(parse_system_config("", kFile).agent.remote_read.empty());
  EXPECT_TRUE(parse_system_config("[agent]\n", kFile).agent.remote_read.empty());
  const SystemConfig cfg =
      parse_system_config("[agent]\nremote-read = [\"Inbox\", \"orders.v2\"]\n", kFile);
  EXPECT_EQ(cfg.agent.remote_read, (std::vector<std::string>{"inbox", "orders.v2"}));
}

TEST(AgentConfig, ExpirySweepEveryTenSecondsByDefaultZeroTurnsItOff) {
  EXPECT_EQ(parse_system_config("", kFile).agent.expiry_sweep_seconds, 10);
  EXPECT_EQ(
      parse_system_config("[agent]\nexpiry-sweep-seconds = 0\n", kFile).agent.expiry_sweep_seconds,
      0);
  EXPECT_EQ(parse_system_config("[agent]\nexpiry-sweep-seconds = 3600\n", kFile)
                .agent.expiry_sweep_seconds,
            3600);
}

TEST(AgentConfig, Errors) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"[agent]\nremote-read = \"inbox\"",
       "agent.remote-read: expected an array of strings, not a string"},
      {"[agent]\nremote-read = [\"\"]", "agent.remote-read: \"\" is not a queue name"},
      {"[agent]\nremote-read = [\"private$\\\\inbox\"]",
       "agent.remote-read: \"private$\\inbox\" is not a queue name: write the private queue's "
       "name"},
      {"[agent]\nremote-read = [\"a/b\"]", "is not a queue name"},
      {"[agent]\nremote-read = [1]", "expected an array of strings, but an element is an integer"},
      {"[agent]\nread = [\"inbox\"]",
       "agent.read: unknown key 'agent.read' (expected remote-read or expiry-sweep-seconds)"},
      {"[agent]\nexpiry-sweep-seconds = -1",
       "agent.expiry-sweep-seconds: must be between 0 and 3600, not -1"},
      {"[agent]\nexpiry-sweep-seconds = 3601", "must be between 0 and 3600, not 3601"},
      {"[agent]\nexpiry-sweep-seconds = \"10\"", "expected an integer, not a string"},
      {"agent = 1", "agent: expected a table"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string error = system_error(c.text);
    EXPECT_NE(error.find(c.error), std::string::npos) << error;
  }
}

TEST(BrokerConfig, InlinePasswordIsRefusedWithoutEchoingIt) {
  for (const char* text : {"[broker]\nurl = \"amqp://h\"\nuser = \"u\"\npassword = \"hunter2\"\n",
                           "[broker]\nurl = \"amqp://h\"\npassword = \"hunter2\"\n",
                           "broker = { url = \"amqp://h\", password = \"hunter2\" }\n"}) {
    SCOPED_TRACE(text);
    const std::string msg = system_error(text);
    EXPECT_NE(msg.find("broker.password: passwords do not belong in configuration files (the "
                       "value is not shown); use password-source = \"file:<path>\""),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find("hunter2"), std::string::npos) << "password leaked into: " << msg;
  }
  EXPECT_EQ(system_error("[broker]\nurl = \"amqp://h\"\npassword = \"hunter2\"\n")
                .rfind("/etc/mqsec/mqsec.toml:3:1: broker.password: ", 0),
            0u);
}

TEST(BrokerConfig, SecretsInOtherPlacesAreNotEchoed) {
  // A password in the URL's user information.
  const std::string url = system_error("[broker]\nurl = \"amqp://mqsec:hunter2@h:5672\"\n");
  EXPECT_NE(url.find("broker.url: the URL must not carry a user name or password (the URL is "
                     "not shown); set broker.user and broker.password-source instead"),
            std::string::npos)
      << url;
  EXPECT_EQ(url.find("hunter2"), std::string::npos) << url;
  // A password written where its source belongs.
  const std::string source =
      system_error("[broker]\nurl = \"amqp://h\"\nuser = \"u\"\npassword-source = \"hunter2\"\n");
  EXPECT_NE(source.find("broker.password-source: unsupported source"), std::string::npos) << source;
  EXPECT_EQ(source.find("hunter2"), std::string::npos) << source;
}

// --- system config: errors ----------------------------------------------------------------

TEST(SystemConfigErrors, WrongTypeNamesFileLineColumnAndKey) {
  EXPECT_EQ(system_error("[token]\n\nuri = 5\n"),
            "/etc/mqsec/mqsec.toml:3:1: token.uri: expected a string, not an integer");
  EXPECT_EQ(system_error("[token]\nallow-extractable-keys = \"yes\"\n"),
            "/etc/mqsec/mqsec.toml:2:1: token.allow-extractable-keys: expected a boolean (true or "
            "false), not a string");
  EXPECT_EQ(system_error("[security]\n  allow-weak-hash = 1\n"),
            "/etc/mqsec/mqsec.toml:2:3: security.allow-weak-hash: expected a boolean (true or "
            "false), not an integer");
  EXPECT_EQ(system_error("[store]\npath = [\"/a\"]\n"),
            "/etc/mqsec/mqsec.toml:2:1: store.path: expected a string, not an array");
  EXPECT_EQ(system_error("[identity]\nsid = true\n"),
            "/etc/mqsec/mqsec.toml:2:1: identity.sid: expected a string, not a boolean");
  EXPECT_EQ(system_error("[profiles]\ndir = 1.5\n"),
            "/etc/mqsec/mqsec.toml:2:1: profiles.dir: expected a string, not a floating-point "
            "number");
}

TEST(SystemConfigErrors, TableExpected) {
  EXPECT_EQ(system_error("token = \"pkcs11:token=x\"\n"),
            "/etc/mqsec/mqsec.toml:1:1: token: expected a table, not a string");
  EXPECT_EQ(system_error("[[store]]\npath = \"/a\"\n"),
            "/etc/mqsec/mqsec.toml:1:3: store: expected a table, not an array");
}

TEST(SystemConfigErrors, UnknownKeysAndTables) {
  const std::string key = system_error("[token]\nuri = \"pkcs11:token=x\"\nurii = \"x\"\n");
  EXPECT_EQ(key.rfind("/etc/mqsec/mqsec.toml:3:1: token.urii: unknown key 'token.urii'", 0), 0u)
      << key;
  const std::string table = system_error("\n[tokens]\nuri = \"x\"\n");
  EXPECT_EQ(table.rfind("/etc/mqsec/mqsec.toml:2:2: tokens: unknown key 'tokens'", 0), 0u) << table;
  const std::string top = system_error("sid = \"unix\"\n");
  EXPECT_EQ(top.rfind("/etc/mqsec/mqsec.toml:1:1: sid: unknown key 'sid'", 0), 0u) << top;
  for (const char* text : {"[store]\npaths = \"/a\"\n", "[profiles]\ndirectory = \"/a\"\n",
                           "[identity]\nsids = \"unix\"\n", "[security]\nweak = true\n"}) {
    EXPECT_NE(system_error(text).find("unknown key '"), std::string::npos) << text;
  }
}

TEST(SystemConfigErrors, BadValues) {
  EXPECT_EQ(system_error("[identity]\nsid = \"ldap\"\n"),
            "/etc/mqsec/mqsec.toml:2:1: identity.sid: unknown SID source \"ldap\" (expected "
            "\"auto\", \"unix\", \"sssd\" or \"winbind\")");
  EXPECT_NE(system_error("[store]\npath = \"var/lib/mqsec\"\n")
                .find("mqsec.toml:2:1: store.path: must be an absolute path"),
            std::string::npos);
  EXPECT_NE(system_error("[profiles]\ndir = \"~/.mqsec\"\n")
                .find("profiles.dir: must be an absolute path"),
            std::string::npos);
  EXPECT_NE(system_error("[profiles]\ndir = \"/etc/mqsec/%n\"\n")
                .find("profiles.dir: unknown placeholder '%n'"),
            std::string::npos);
  EXPECT_NE(system_error("[profiles]\ndir = \"/etc/mqsec/%\"\n").find("a lone '%'"),
            std::string::npos);
  EXPECT_NE(system_error("[token]\nuri = \"token=mqsec\"\n")
                .find("token.uri: expected a PKCS#11 URI (RFC 7512) starting with \"pkcs11:\""),
            std::string::npos);
  EXPECT_NE(system_error("[store]\npath = \"/var/lib\\u0000/x\"\n").find("NUL"), std::string::npos);
}

TEST(SystemConfigErrors, PinValueIsRefusedWithoutEchoingIt) {
  const std::string msg = system_error("[token]\nuri = \"pkcs11:token=mqsec?pin-value=123456\"\n");
  EXPECT_NE(msg.find("token.uri: the URI carries pin-value"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("123456"), std::string::npos) << "PIN leaked into: " << msg;
  EXPECT_NE(system_error("[token]\nuri = \"pkcs11:token=a;pin-value=1\"\n").find("pin-value"),
            std::string::npos);
  // An attribute that merely contains the text is not pin-value.
  EXPECT_NO_THROW(parse_system_config("[token]\nuri = \"pkcs11:token=my-pin-value\"\n", kFile));
}

TEST(SystemConfigErrors, SyntaxErrorsHavePositions) {
  const std::string msg = system_error("[token]\nuri = \"unterminated\n");
  EXPECT_EQ(msg.rfind("/etc/mqsec/mqsec.toml:2:", 0), 0u) << msg;
  const std::string dup = system_error("[store]\npath = \"/a\"\npath = \"/b\"\n");
  EXPECT_EQ(dup.rfind("/etc/mqsec/mqsec.toml:3:", 0), 0u) << dup;
  const std::string header = system_error("[token\n");
  EXPECT_EQ(header.rfind("/etc/mqsec/mqsec.toml:1:", 0), 0u) << header;
}

// --- system config: locating and loading --------------------------------------------------

TEST(SystemConfigFile, PathFromEnvironment) {
  {
    ScopedEnv env("MQSEC_CONFIG", nullptr);
    EXPECT_EQ(system_config_path(), "/etc/mqsec/mqsec.toml");
  }
  {
    ScopedEnv env("MQSEC_CONFIG", "");
    EXPECT_EQ(system_config_path(), "/etc/mqsec/mqsec.toml");
  }
  {
    ScopedEnv env("MQSEC_CONFIG", "/opt/mq/conf.toml");
    EXPECT_EQ(system_config_path(), "/opt/mq/conf.toml");
  }
}

TEST(SystemConfigFile, LoadsTheNamedFile) {
  TempDir dir;
  const fs::path file = dir.path() / "mqsec.toml";
  write_file(file, "[store]\npath = \"/srv/q\"\n[identity]\nsid = \"unix\"\n");
  ScopedEnv env("MQSEC_CONFIG", file.c_str());
  const SystemConfig cfg = load_system_config();
  EXPECT_EQ(cfg.source, file);
  EXPECT_EQ(cfg.store_path, "/srv/q");
  EXPECT_EQ(cfg.sid_source, SidSource::Unix);
}

TEST(SystemConfigFile, ErrorsNameTheLoadedFile) {
  TempDir dir;
  const fs::path file = dir.path() / "mqsec.toml";
  write_file(file, "[token]\n\nuri = 5\n");
  ScopedEnv env("MQSEC_CONFIG", file.c_str());
  try {
    load_system_config();
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              file.string() + ":3:1: token.uri: expected a string, not an integer");
  }
}

TEST(SystemConfigFile, ExplicitMissingFileIsAnError) {
  TempDir dir;
  const fs::path file = dir.path() / "absent.toml";
  ScopedEnv env("MQSEC_CONFIG", file.c_str());
  try {
    load_system_config();
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(file.string() + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find("MQSEC_CONFIG"), std::string::npos) << msg;
  }
}

TEST(SystemConfigFile, ExplicitDirectoryIsAnError) {
  TempDir dir;
  ScopedEnv env("MQSEC_CONFIG", dir.path().c_str());
  EXPECT_THROW(load_system_config(), ConfigError);
}

TEST(SystemConfigFile, DefaultPathMissingGivesDefaults) {
  if (fs::exists("/etc/mqsec/mqsec.toml")) GTEST_SKIP() << "/etc/mqsec/mqsec.toml exists here";
  ScopedEnv env("MQSEC_CONFIG", nullptr);
  const SystemConfig cfg = load_system_config();
  EXPECT_TRUE(cfg.source.empty());
  EXPECT_EQ(cfg.store_path, "/var/lib/mqsec");
  EXPECT_EQ(cfg.sid_source, SidSource::Auto);
}

// --- profile directory --------------------------------------------------------------------

TEST(ProfileDir, DefaultIsUnderHome) {
  SystemConfig cfg;
  EXPECT_EQ(profile_dir(cfg, alice()), "/home/alice/.config/mqsec");
}

TEST(ProfileDir, PercentUIsTheUserName) {
  SystemConfig cfg;
  cfg.profiles_dir = "/etc/mqsec/users/%u";
  EXPECT_EQ(profile_dir(cfg, alice()), "/etc/mqsec/users/alice");
  cfg.profiles_dir = "/srv/%u/mq/%u-%%";
  EXPECT_EQ(profile_dir(cfg, alice()), "/srv/alice/mq/alice-%");
  cfg.profiles_dir = "/srv/shared";
  EXPECT_EQ(profile_dir(cfg, alice()), "/srv/shared");
}

TEST(ProfileDir, UnsafeNamesAndHomesAreRefused) {
  SystemConfig cfg;
  cfg.profiles_dir = "/etc/mqsec/users/%u";
  for (const char* name : {"", ".", "..", "a/b"}) {
    UserIdentity u = alice();
    u.name = name;
    try {
      profile_dir(cfg, u);
      ADD_FAILURE() << "accepted user name '" << name << "'";
    } catch (const mqsec::Error& e) {
      EXPECT_EQ(e.code(), MQ_ERROR_CANNOT_OPEN_CERT_STORE);
    }
  }
  SystemConfig defaults;
  for (const char* home : {"", "relative/home"}) {
    try {
      profile_dir(defaults, alice(home));
      ADD_FAILURE() << "accepted home '" << home << "'";
    } catch (const mqsec::Error& e) {
      EXPECT_EQ(e.code(), MQ_ERROR_CANNOT_OPEN_CERT_STORE);
    }
  }
}

// --- user profile -------------------------------------------------------------------------

TEST(UserProfile, EveryKey) {
  const UserProfile p = parse_user_profile(R"(
internal-certificate = "pkcs11:token=mqsec;id=%01;type=cert"
[token]
uri = "pkcs11:token=alice-card?pin-source=file:/home/alice/.config/mqsec/pin"
)",
                                           "p.toml");
  EXPECT_TRUE(p.exists);
  EXPECT_EQ(p.internal_certificate, "pkcs11:token=mqsec;id=%01;type=cert");
  EXPECT_EQ(p.token_uri, "pkcs11:token=alice-card?pin-source=file:/home/alice/.config/mqsec/pin");
}

// A profile's [signing] (issue 12): the keys it sets, and only those, replace the system's.
TEST(UserProfile, SigningKeys) {
  const UserProfile none = parse_user_profile("", "p.toml");
  EXPECT_TRUE(none.signing.empty());
  const UserProfile p =
      parse_user_profile("[signing]\nbatch-max-messages = 200\nbatch-wait = true\n", "p.toml");
  ASSERT_TRUE(p.signing.batch_max_messages);
  EXPECT_EQ(*p.signing.batch_max_messages, 200u);
  EXPECT_FALSE(p.signing.batch_max_delay_ms);
  SigningConfig system;
  system.batch_max_delay_ms = 40;
  system.batch_limit = 50;
  const SigningConfig s = p.signing.applied_to(system);
  EXPECT_EQ(s.batch_max_messages, 200u);
  EXPECT_EQ(s.batch_max_delay_ms, 40);  // not set in the profile: the system's
  EXPECT_TRUE(s.batch_wait);
  EXPECT_EQ(s.batch_limit, 50u);  // the system's alone
  // Strict, as the system configuration: range, type, unknown keys; batch-limit is refused.
  for (const char* bad :
       {"batch-max-messages = 0", "batch-max-messages = 65537", "batch-max-delay-ms = 10001",
        "batch-wait = \"yes\"", "batch-size = 3", "batch-limit = 100"}) {
    const std::string e = profile_error(std::string("[signing]\n") + bad + "\n");
    EXPECT_NE(e.find("profile.toml:2:"), std::string::npos) << bad << ": " << e;
    EXPECT_NE(e.find("signing."), std::string::npos) << e;
  }
  EXPECT_NE(profile_error("[signing]\nbatch-limit = 100\n").find("system configuration"),
            std::string::npos);
  EXPECT_NE(profile_error("signing = 3\n").find("expected a table"), std::string::npos);
}

TEST(UserProfile, SampleFileParses) {
  std::ifstream in(std::string(MQSEC_SOURCE_DIR) + "/config/profile.toml");
  ASSERT_TRUE(in) << "config/profile.toml not found";
  std::stringstream text;
  text << in.rdbuf();
  const UserProfile p = parse_user_profile(text.str(), "config/profile.toml");
  EXPECT_FALSE(p.internal_certificate.empty());
  ASSERT_TRUE(p.signing.batch_max_messages);
  EXPECT_EQ(*p.signing.batch_max_messages, 500u);
}

TEST(UserProfile, Errors) {
  EXPECT_EQ(profile_error("internal-certificate = 1\n"),
            "/home/alice/.config/mqsec/profile.toml:1:1: internal-certificate: expected a "
            "string, not an integer");
  const std::string unknown = profile_error("internal-certificat = \"pkcs11:id=%01\"\n");
  EXPECT_EQ(unknown.rfind("/home/alice/.config/mqsec/profile.toml:1:1: internal-certificat: "
                          "unknown key 'internal-certificat'",
                          0),
            0u)
      << unknown;
  EXPECT_NE(profile_error("[token]\nuri = \"pkcs11:x\"\nslot = 1\n")
                .find(":3:1: token.slot: unknown key 'token.slot'"),
            std::string::npos);
  EXPECT_NE(profile_error("[token]\nuri = 7\n").find(":2:1: token.uri: expected a string"),
            std::string::npos);
  EXPECT_NE(profile_error("internal-certificate = \"/tmp/cert.der\"\n")
                .find("internal-certificate: expected a PKCS#11 URI"),
            std::string::npos);
  // The SID must never come from a user-editable file.
  EXPECT_NE(profile_error("sid = \"S-1-5-18\"\n").find("unknown key 'sid'"), std::string::npos);
  EXPECT_NE(profile_error("internal-certificate = \n").find("profile.toml:1:"), std::string::npos);
}

TEST(UserProfile, MissingFileDoesNotExist) {
  TempDir dir;
  SystemConfig cfg;
  cfg.profiles_dir = (dir.path() / "users" / "%u").string();
  const UserProfile p = load_user_profile(cfg, alice());
  EXPECT_FALSE(p.exists);
  EXPECT_EQ(p.dir, dir.path() / "users" / "alice");
  EXPECT_EQ(p.file, dir.path() / "users" / "alice" / "profile.toml");
  EXPECT_EQ(p.internal_certificate, "");
}

TEST(UserProfile, LoadsFromHomeByDefault) {
  TempDir dir;
  fs::create_directories(dir.path() / ".config" / "mqsec");
  write_file(dir.path() / ".config" / "mqsec" / "profile.toml",
             "internal-certificate = \"pkcs11:token=t;id=%02;type=cert\"\n");
  const UserProfile p = load_user_profile(SystemConfig{}, alice(dir.path()));
  EXPECT_TRUE(p.exists);
  EXPECT_EQ(p.dir, dir.path() / ".config" / "mqsec");
  EXPECT_EQ(p.internal_certificate, "pkcs11:token=t;id=%02;type=cert");
}

TEST(UserProfile, MalformedFileIsAConfigErrorNamingIt) {
  TempDir dir;
  fs::create_directories(dir.path() / "alice");
  const fs::path file = dir.path() / "alice" / "profile.toml";
  write_file(file, "\ninternal-certificate = 42\n");
  SystemConfig cfg;
  cfg.profiles_dir = (dir.path() / "%u").string();
  try {
    load_user_profile(cfg, alice());
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              file.string() + ":2:1: internal-certificate: expected a string, not an integer");
  }
}

TEST(UserProfile, UnreadableFileIsCannotOpenCertStore) {
  TempDir dir;
  fs::create_directories(dir.path() / "alice" / "profile.toml");  // a directory, not a file
  SystemConfig cfg;
  cfg.profiles_dir = (dir.path() / "%u").string();
  try {
    load_user_profile(cfg, alice());
    FAIL() << "no error";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_CANNOT_OPEN_CERT_STORE);
  }
}

// --- writing the profile ------------------------------------------------------------------

TEST(ProfileWrite, RoundTripWithModes) {
  TempDir dir;
  SystemConfig cfg;
  cfg.profiles_dir = (dir.path() / "users" / "%u" / "mqsec").string();
  const UserProfile before = load_user_profile(cfg, alice());
  ASSERT_FALSE(before.exists);

  const std::string uri = "pkcs11:token=mqsec;serial=abc;id=%01%02;type=cert";
  set_internal_certificate(before, uri);

  // Every directory it created is 0700, the file 0600, whatever the umask.
  EXPECT_EQ(mode_of(dir.path() / "users"), 0700u);
  EXPECT_EQ(mode_of(dir.path() / "users" / "alice"), 0700u);
  EXPECT_EQ(mode_of(before.dir), 0700u);
  EXPECT_EQ(mode_of(before.file), 0600u);

  const UserProfile after = load_user_profile(cfg, alice());
  EXPECT_TRUE(after.exists);
  EXPECT_EQ(after.internal_certificate, uri);
  EXPECT_EQ(after.token_uri, "");

  // Nothing but the profile is left in the directory (no temporary files).
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(before.dir)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1u);
}

TEST(ProfileWrite, KeepsTokenUriAndReplacesCertificate) {
  TempDir dir;
  SystemConfig cfg;
  cfg.profiles_dir = (dir.path() / "%u").string();
  fs::create_directories(dir.path() / "alice");
  write_file(dir.path() / "alice" / "profile.toml",
             "# mine\ninternal-certificate = \"pkcs11:token=old;id=%01\"\n[token]\n"
             "uri = \"pkcs11:token=alice-card?pin-source=env:ALICE_PIN\"\n");
  const UserProfile p = load_user_profile(cfg, alice());
  ASSERT_TRUE(p.exists);

  set_internal_certificate(p, "pkcs11:token=new;id=%09;type=cert");
  const UserProfile q = load_user_profile(cfg, alice());
  EXPECT_EQ(q.internal_certificate, "pkcs11:token=new;id=%09;type=cert");
  EXPECT_EQ(q.token_uri, "pkcs11:token=alice-card?pin-source=env:ALICE_PIN");
  EXPECT_EQ(mode_of(q.file), 0600u);
}

// Writing the internal certificate keeps the profile's [signing].
TEST(ProfileWrite, KeepsSigningSettings) {
  TempDir dir;
  SystemConfig cfg;
  cfg.profiles_dir = (dir.path() / "%u").string();
  fs::create_directories(dir.path() / "alice");
  write_file(dir.path() / "alice" / "profile.toml",
             "[signing]\nbatch-max-messages = 300\nbatch-max-delay-ms = 0\nbatch-wait = false\n");
  set_internal_certificate(load_user_profile(cfg, alice()), "pkcs11:token=new;id=%09");
  const UserProfile q = load_user_profile(cfg, alice());
  EXPECT_EQ(q.internal_certificate, "pkcs11:token=new;id=%09");
  ASSERT_TRUE(q.signing.batch_max_messages && q.signing.batch_max_delay_ms && q.signing.batch_wait);
  EXPECT_EQ(*q.signing.batch_max_messages, 300u);
  EXPECT_EQ(*q.signing.batch_max_delay_ms, 0);
  EXPECT_FALSE(*q.signing.batch_wait);
}

TEST(ProfileWrite, TokenUriFromTheFileWinsOverAStaleProfile) {
  TempDir dir;
  SystemConfig cfg;
  cfg.profiles_dir = (dir.path() / "%u").string();
  UserProfile stale = load_user_profile(cfg, alice());
  stale.token_uri = "pkcs11:token=stale";
  fs::create_directories(stale.dir);
  write_file(stale.file, "[token]\nuri = \"pkcs11:token=current\"\n");
  set_internal_certificate(stale, "pkcs11:token=t;id=%01");
  EXPECT_EQ(load_user_profile(cfg, alice()).token_uri, "pkcs11:token=current");

  // Without a file, the profile's own token URI is kept.
  TempDir dir2;
  cfg.profiles_dir = (dir2.path() / "%u").string();
  UserProfile fresh = load_user_profile(cfg, alice());
  fresh.token_uri = "pkcs11:token=mine";
  set_internal_certificate(fresh, "pkcs11:token=t;id=%01");
  EXPECT_EQ(load_user_profile(cfg, alice()).token_uri, "pkcs11:token=mine");
}

TEST(ProfileWrite, ValuesThatNeedEscapingSurvive) {
  TempDir dir;
  SystemConfig cfg;
  cfg.profiles_dir = (dir.path() / "%u").string();
  const std::string uri = "pkcs11:token=a\"b'c\\d;object=\xc3\xa9t\xc3\xa9";
  set_internal_certificate(load_user_profile(cfg, alice()), uri);
  EXPECT_EQ(load_user_profile(cfg, alice()).internal_certificate, uri);
}

TEST(ProfileWrite, MalformedExistingProfileIsLeftAlone) {
  TempDir dir;
  SystemConfig cfg;
  cfg.profiles_dir = (dir.path() / "%u").string();
  fs::create_directories(dir.path() / "alice");
  const fs::path file = dir.path() / "alice" / "profile.toml";
  write_file(file, "internal-certificate = [\n");
  UserProfile p;
  p.dir = dir.path() / "alice";
  p.file = file;
  try {
    set_internal_certificate(p, "pkcs11:token=t;id=%01");
    FAIL() << "no error";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_CANNOT_CREATE_CERT_STORE);
    EXPECT_NE(std::string(e.what()).find(file.string() + ":"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_whole(file), "internal-certificate = [\n");
}

TEST(ProfileWrite, UnwritableLocationIsCannotCreateCertStore) {
  TempDir dir;
  write_file(dir.path() / "plain-file", "x");
  UserProfile p;
  p.dir = dir.path() / "plain-file" / "mqsec";  // a path through a regular file: ENOTDIR
  p.file = p.dir / "profile.toml";
  try {
    set_internal_certificate(p, "pkcs11:token=t;id=%01");
    FAIL() << "no error";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_CANNOT_CREATE_CERT_STORE);
    EXPECT_NE(std::string(e.what()).find("plain-file"), std::string::npos) << e.what();
  }
}

TEST(ProfileWrite, RejectsWhatTheParserWouldReject) {
  TempDir dir;
  UserProfile p;
  p.dir = dir.path();
  p.file = dir.path() / "profile.toml";
  for (const char* bad : {"", "/tmp/cert.der", "pkcs11:token=t?pin-value=1234"}) {
    try {
      set_internal_certificate(p, bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const mqsec::Error& e) {
      EXPECT_EQ(e.code(), MQ_ERROR_INVALID_PARAMETER);
      EXPECT_EQ(std::string(e.what()).find("1234"), std::string::npos);
    }
  }
  EXPECT_FALSE(fs::exists(p.file));
}

}  // namespace
}  // namespace mqsec::security
