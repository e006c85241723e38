// The root-owned system registry and registrations that never rebind (issue 9, items 3 and 7):
//
// - Entry files: format, parse, the certificate must hash to the file's name (no root needed).
// - Receivers' cached view (security::SystemRegistry): a root-owned directory and entries are
//   trusted; a directory writable by group or owned by another user, an entry not owned by root
//   or a symbolic link are ignored; lookups are cached (no file read per message) and see a
//   change of the directory.
// - End to end through the C API: a message whose certificate only the system registry binds to
//   the sender's SID is delivered with PROPID_M_MQSEC_SENDER_CONFIRMED = 1 and
//   MQSEC_TRUST_SYSTEM_REGISTRY; the same registry made group-writable or owned by another user
//   confirms nothing; an entry binding the certificate to another SID rejects the message
//   ("sid-mismatch").
// - MQRegisterCertificate never rebinds: user A registers a certificate; a thread impersonating
//   a real user B, who holds the same key on the same token with B's own PIN file, cannot
//   register it to B's SID (MQ_ERROR_INVALID_CERTIFICATE), and A's binding is unchanged.
//
// Tests that chown, create users or need root-owned directories skip when not run as root (CI
// runs as root). Throwaway users are removed even when an assertion fails.
#include <mq.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include "mqsec/error.hpp"
#include "src/core/runtime.hpp"
#include "src/security/identity.hpp"
#include "src/security/log.hpp"
#include "src/security/openssl.hpp"
#include "src/security/system_registry.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/signed_messages.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"
#include "tests/support/test_name.hpp"
#include "tests/support/test_users.hpp"
#include "tests/support/user_profile.hpp"

namespace {

namespace fs = std::filesystem;
using mqsec::security::Sid;
using mqsec::security::SystemRegistry;
using namespace mqsec::testing;  // the shared test support (tests/support/)

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new SoftHsmTestEnvironment);

SoftHsmEnv& env() { return SoftHsmEnv::instance(); }

#define NEEDS_ROOT()                                                                   \
  if (geteuid() != 0) {                                                                \
    GTEST_SKIP() << "needs root: root-owned registry directories, chown, useradd and " \
                    "setresuid(2) on one thread";                                      \
  }

// A software certificate (no key on any token): enough for registry entries.
Bytes software_cert(const std::string& cn) { return env().software_certificate("ec", cn).cert_der; }

// A key pair on the primary token and a self-signed certificate for it, stored with the key.
struct TokenCert {
  std::string id;
  Bytes der;
};
TokenCert token_cert(const std::string& cn) {
  TokenCert c;
  c.id = SoftHsmEnv::new_id();
  env().keypairgen(SoftHsmEnv::kPrimaryToken, "EC:prime256v1", c.id, "reg-key-" + c.id);
  c.der = env().certificate_for_token_key(SoftHsmEnv::kPrimaryToken, c.id, cn);
  env().write_certificate(SoftHsmEnv::kPrimaryToken, c.der, c.id, "reg-cert-" + c.id);
  return c;
}

std::string own_sid() {
  return mqsec::security::current_user(mqsec::security::SidSource::Unix).sid.str();
}

// A directory for this test under the environment's (root-owned 0755) directory.
fs::path fresh_dir(const std::string& what) {
  fs::path d = env().dir() / (what + "-" + current_test_name());
  fs::remove_all(d);
  fs::create_directories(d);
  chmod(d.c_str(), 0755);
  return d;
}

// ---------------------------------------------------------------------------------------
// Entry files (no root needed)

TEST(SystemRegistryFile, FormatParsesBackAndIsNamedByTheCertificatesSha256) {
  Bytes der = software_cert("registry-format");
  Sid sid = Sid::from_string("S-1-5-21-1004336348-1177238915-682003330-1001");
  std::string text = mqsec::security::format_system_registry_entry(der, sid);
  Bytes digest = mqsec::security::sha256(der);
  auto e = mqsec::security::parse_system_registry_entry(text, digest, "entry");
  EXPECT_EQ(e.sid, sid);
  EXPECT_EQ(e.cert_der, der);
  EXPECT_EQ(e.cert_sha256, digest);
  EXPECT_EQ(e.subject, "CN=registry-format");
  std::string name = mqsec::security::system_registry_file_name(digest);
  EXPECT_EQ(name.size(), 64u + 5u);
  EXPECT_EQ(name.substr(64), ".toml");
  EXPECT_EQ(mqsec::security::system_registry_digest_of(name), digest);
  EXPECT_FALSE(mqsec::security::system_registry_digest_of("." + name + ".tmp.1.2"));
  EXPECT_FALSE(mqsec::security::system_registry_digest_of(name.substr(1)));
}

TEST(SystemRegistryFile, MalformedEntriesAreRefused) {
  using mqsec::security::parse_system_registry_entry;
  using mqsec::security::SystemRegistryError;
  Bytes der = software_cert("registry-malformed");
  Bytes other = software_cert("registry-other");
  Sid sid = Sid::from_string("S-1-5-21-1-2-3-1001");
  Bytes digest = mqsec::security::sha256(der);
  std::string good = mqsec::security::format_system_registry_entry(der, sid);
  // The certificate of another file: its hash is not the name.
  EXPECT_THROW(parse_system_registry_entry(
                   mqsec::security::format_system_registry_entry(other, sid), digest, "e"),
               SystemRegistryError);
  std::string bad_sid = good;
  bad_sid.replace(bad_sid.find("S-1-5-21-1-2-3-1001"), 19, "S-1-5-21-x");
  EXPECT_THROW(parse_system_registry_entry(bad_sid, digest, "e"), SystemRegistryError);
  EXPECT_THROW(parse_system_registry_entry(good + "extra = \"x\"\n", digest, "e"),
               SystemRegistryError);
  EXPECT_THROW(parse_system_registry_entry("sid = \"S-1-5-21-1-2-3-1001\"\n", digest, "e"),
               SystemRegistryError);
  EXPECT_THROW(parse_system_registry_entry("not toml [", digest, "e"), SystemRegistryError);
  try {
    parse_system_registry_entry(mqsec::security::format_system_registry_entry(other, sid), digest,
                                "the-file");
  } catch (const SystemRegistryError& e) {
    EXPECT_EQ(e.kind(), SystemRegistryError::Kind::Malformed);
    EXPECT_NE(std::string(e.what()).find("the-file"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------
// Receivers' cached view

TEST(SystemRegistryView, RootOwnedEntriesAreTrustedOthersIgnored) {
  NEEDS_ROOT();
  const fs::path dir = fresh_dir("sysreg") / "registry.d";  // created by add, mode 0755
  Bytes der = software_cert("view-trusted");
  Sid sid = Sid::from_string("S-1-5-21-7-8-9-1001");
  ASSERT_EQ(mqsec::security::add_to_system_registry(dir, der, sid),
            mqsec::security::SystemRegistryAdd::Added);
  struct stat st {};
  ASSERT_EQ(0, stat(dir.c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  const fs::path file =
      dir / mqsec::security::system_registry_file_name(mqsec::security::sha256(der));
  ASSERT_EQ(0, stat(file.c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(st.st_uid, 0u);
  const Bytes digest = mqsec::security::sha256(der);
  // What a receiver's fresh view (no caching) of the registry says about the certificate.
  auto fresh_lookup = [&] {
    return SystemRegistry(dir, std::chrono::milliseconds(0)).lookup(digest);
  };

  {
    SystemRegistry reg(dir, std::chrono::milliseconds(0));
    EXPECT_EQ(reg.lookup(digest), sid.bytes());
    EXPECT_FALSE(reg.lookup(mqsec::security::sha256(software_cert("view-absent"))));
  }
  // Each way another user could have written the registry or an entry, applied and undone:
  // the spoiled registry confirms nothing, the restored one confirms again.
  const fs::path parent = dir.parent_path();
  const fs::path elsewhere = fresh_dir("sysreg-elsewhere") / "entry.toml";
  struct Spoil {
    const char* what;
    std::function<void()> apply, undo;
  };
  const Spoil spoils[] = {
      {"a group-writable registry",  // ignored as a whole
       [&] { chmod(dir.c_str(), 0775); }, [&] { chmod(dir.c_str(), 0755); }},
      {"a registry owned by uid 65534", [&] { ASSERT_EQ(0, chown(dir.c_str(), 65534, 65534)); },
       [&] { ASSERT_EQ(0, chown(dir.c_str(), 0, 0)); }},
      {"a registry in a world-writable directory",  // they could swap the registry
       [&] { chmod(parent.c_str(), 0777); }, [&] { chmod(parent.c_str(), 0755); }},
      {"an entry owned by uid 65534", [&] { ASSERT_EQ(0, chown(file.c_str(), 65534, 65534)); },
       [&] { ASSERT_EQ(0, chown(file.c_str(), 0, 0)); }},
      {"a group-writable entry", [&] { chmod(file.c_str(), 0664); },
       [&] { chmod(file.c_str(), 0644); }},
      {"a symbolic link as entry (to a root-owned file elsewhere)",
       [&] {
         fs::rename(file, elsewhere);
         fs::create_symlink(elsewhere, file);
       },
       [&] {
         fs::remove(file);
         fs::rename(elsewhere, file);
       }},
  };
  for (const Spoil& s : spoils) {
    s.apply();
    EXPECT_FALSE(fresh_lookup()) << s.what << " was trusted";
    s.undo();
    EXPECT_EQ(fresh_lookup(), sid.bytes()) << "positive control after undoing " << s.what;
  }
  // What `registry list` reports.
  auto listing = mqsec::security::list_system_registry(dir);
  EXPECT_TRUE(listing.dir.trusted) << listing.dir.problem;
  ASSERT_EQ(listing.entries.size(), 1u);
  EXPECT_EQ(listing.entries[0].sid, sid);
}

TEST(SystemRegistryView, LookupsAreCachedAndSeeChanges) {
  NEEDS_ROOT();
  const fs::path dir = fresh_dir("sysreg-cache") / "registry.d";
  Bytes a = software_cert("cache-a"), b = software_cert("cache-b");
  Sid sid_a = Sid::from_string("S-1-5-21-7-8-9-2001"),
      sid_b = Sid::from_string("S-1-5-21-7-8-9-2002");
  mqsec::security::add_to_system_registry(dir, a, sid_a);
  const Bytes da = mqsec::security::sha256(a), db = mqsec::security::sha256(b);

  SystemRegistry reg(dir, std::chrono::milliseconds(200), std::chrono::seconds(60));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(reg.lookup(da), sid_a.bytes());
  EXPECT_EQ(reg.reads(), 1u) << "one file read for 1000 lookups of the same certificate";
  for (int i = 0; i < 100; ++i) ASSERT_FALSE(reg.lookup(db));
  EXPECT_EQ(reg.reads(), 2u) << "an absent entry is cached too";

  // Adding b and removing a change the directory: seen after the recheck interval.
  mqsec::security::add_to_system_registry(dir, b, sid_b);
  ASSERT_TRUE(mqsec::security::remove_from_system_registry(dir, da));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(reg.lookup(db), sid_b.bytes());
  EXPECT_FALSE(reg.lookup(da));
}

TEST(SystemRegistryAdmin, AddNeverRebindsAndRefusesAnUnsafeDirectory) {
  NEEDS_ROOT();
  using mqsec::security::SystemRegistryError;
  const fs::path dir = fresh_dir("sysreg-admin") / "registry.d";
  Bytes der = software_cert("admin");
  Sid s1 = Sid::from_string("S-1-5-21-1-1-1-1001"), s2 = Sid::from_string("S-1-5-21-1-1-1-1002");
  EXPECT_EQ(mqsec::security::add_to_system_registry(dir, der, s1),
            mqsec::security::SystemRegistryAdd::Added);
  EXPECT_EQ(mqsec::security::add_to_system_registry(dir, der, s1),
            mqsec::security::SystemRegistryAdd::AlreadyPresent);
  try {
    mqsec::security::add_to_system_registry(dir, der, s2);
    ADD_FAILURE() << "rebound to another SID";
  } catch (const SystemRegistryError& e) {
    EXPECT_EQ(e.kind(), SystemRegistryError::Kind::Conflict);
    EXPECT_NE(std::string(e.what()).find(s1.str()), std::string::npos) << e.what();
  }
  auto entry = mqsec::security::read_system_registry_entry(dir, mqsec::security::sha256(der));
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->sid, s1) << "the binding changed";
  // No temporary files left behind.
  size_t files = 0;
  for (const auto& f : fs::directory_iterator(dir)) {
    (void)f;
    ++files;
  }
  EXPECT_EQ(files, 1u);

  chmod(dir.c_str(), 0777);
  Bytes other = software_cert("admin-other");
  try {
    mqsec::security::add_to_system_registry(dir, other, s2);
    ADD_FAILURE() << "wrote into a world-writable registry";
  } catch (const SystemRegistryError& e) {
    EXPECT_EQ(e.kind(), SystemRegistryError::Kind::Unsafe);
  }
  chmod(dir.c_str(), 0755);
  EXPECT_TRUE(mqsec::security::remove_from_system_registry(dir, mqsec::security::sha256(der)));
  EXPECT_FALSE(mqsec::security::remove_from_system_registry(dir, mqsec::security::sha256(der)));
}

// ---------------------------------------------------------------------------------------
// End to end through the C API

class RegistryE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = current_test_name();
    store_ = env().dir() / ("store-" + name_);
    config_ = env().dir() / ("registry-" + name_ + ".toml");
    setenv("MQSEC_CONFIG", config_.c_str(), 1);
  }
  void TearDown() override { setenv("MQSEC_CONFIG", env().config_path().c_str(), 1); }

  void write_config(const fs::path& registry, const fs::path& profiles = {}) {
    write_file(config_,
               "[token]\nuri = \"" + env().token_uri(SoftHsmEnv::kPrimaryToken, env().pin_file()) +
                   "\"\n[store]\npath = \"" + store_.string() + "\"\n[profiles]\ndir = \"" +
                   ((profiles.empty() ? env().dir() / "users" : profiles) / "%u").string() +
                   "\"\n[identity]\nsid = \"unix\"\n[trust]\nregistry = \"" + registry.string() +
                   "\"\n");
  }

  // One scenario: a fresh token certificate that no user registry knows, bound by a fresh
  // registry directory to `sid`, `spoil` applied to that directory, one message sent and
  // received on a fresh queue.
  ReceivedTrust scenario(
      const std::string& tag, const std::string& sid,
      const std::function<void(const fs::path& dir, const fs::path& file)>& spoil,
      std::string* queue_name = nullptr) {
    const fs::path registry = fresh_dir("reg-" + tag) / "registry.d";
    TokenCert c = token_cert("registry-" + tag);
    mqsec::security::add_to_system_registry(registry, c.der, Sid::from_string(sid));
    spoil(registry,
          registry / mqsec::security::system_registry_file_name(mqsec::security::sha256(c.der)));
    write_config(registry);
    std::string qname = "reg-" + tag;
    if (queue_name) *queue_name = qname;
    std::wstring q = create_authenticated_queue(qname);
    send_signed(q, c.der, "registry test");
    // The certificate is in no user registry: whatever confirms it is the system registry.
    EXPECT_FALSE(mqsec::core::runtime().stores().store_at(store_).certificate_sid(
        mqsec::security::sha256(c.der)));
    return receive_with_trust(q);
  }

  std::string name_;
  fs::path store_, config_;
};

const auto kNothing = [](const fs::path&, const fs::path&) {};

TEST_F(RegistryE2E, SystemRegistryConfirmsTheSenderWithoutUserRegistration) {
  NEEDS_ROOT();
  ReceivedTrust r = scenario("confirmed", own_sid(), kNothing);
  ASSERT_HR(MQ_OK, r.hr) << read_text(env().dir() / "mqsec.log");
  EXPECT_EQ(r.authenticated, 1);
  EXPECT_EQ(r.confirmed, 1) << "the root-owned system registry did not confirm the sender";
  EXPECT_EQ(r.trust & MQSEC_TRUST_SYSTEM_REGISTRY, static_cast<ULONG>(MQSEC_TRUST_SYSTEM_REGISTRY));
  EXPECT_EQ(r.trust & MQSEC_TRUST_USER_REGISTRY, 0u);
}

TEST_F(RegistryE2E, GroupWritableRegistryIsIgnored) {
  NEEDS_ROOT();
  ReceivedTrust r = scenario("group-writable", own_sid(), [](const fs::path& dir, const fs::path&) {
    chmod(dir.c_str(), 0775);
  });
  ASSERT_HR(MQ_OK, r.hr);
  EXPECT_EQ(r.authenticated, 1);
  EXPECT_EQ(r.confirmed, 0) << "a group-writable registry confirmed the sender";
  EXPECT_EQ(r.trust & MQSEC_TRUST_SYSTEM_REGISTRY, 0u);
  EXPECT_NE(read_text(env().dir() / "mqsec.log").find("is writable by group or others"),
            std::string::npos)
      << "no warning in the log";
}

TEST_F(RegistryE2E, RegistryOwnedByAnotherUserIsIgnored) {
  NEEDS_ROOT();
  auto b = make_temporary_user("mqrg");
  ASSERT_TRUE(b);
  const uid_t uid = b->uid();
  const gid_t gid = b->gid();
  ReceivedTrust r =
      scenario("other-owner", own_sid(), [&](const fs::path& dir, const fs::path& file) {
        ASSERT_EQ(0, chown(dir.c_str(), uid, gid));
        ASSERT_EQ(0, chown(file.c_str(), uid, gid));
      });
  ASSERT_HR(MQ_OK, r.hr);
  EXPECT_EQ(r.authenticated, 1);
  EXPECT_EQ(r.confirmed, 0) << "a registry owned by " << b->name() << " confirmed the sender";
  EXPECT_EQ(r.trust & MQSEC_TRUST_SYSTEM_REGISTRY, 0u);
}

TEST_F(RegistryE2E, EntryBindingTheCertificateToAnotherSidRejectsTheMessage) {
  NEEDS_ROOT();
  std::string queue;
  ReceivedTrust r =
      scenario("mismatch", "S-1-5-21-3623811015-3361044348-30300820-1013", kNothing, &queue);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, r.hr) << "delivered although the registry binds another SID";
  auto records = mqsec::core::runtime().stores().store_at(store_).rejections(queue);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].kind, "sid-mismatch");
  EXPECT_NE(records[0].reason.find("system registry"), std::string::npos) << records[0].reason;
}

// ---------------------------------------------------------------------------------------
// MQRegisterCertificate never rebinds (issue 9, item 3)

TEST_F(RegistryE2E, RegisterCertificateNeverRebindsToAnotherUsersSid) {
  NEEDS_ROOT();
  auto b = make_temporary_user("mqrg");
  ASSERT_TRUE(b);
  const fs::path profiles = fresh_dir("profiles");
  write_config(env().dir() / "no-registry.d", profiles);

  // A (root, S-1-22-1-0) registers a certificate whose key is on the primary token.
  TokenCert c = token_cert("registry-rebind");
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, c.der.data(),
                                         static_cast<DWORD>(c.der.size())));
  const Bytes digest = mqsec::security::sha256(c.der);
  const Bytes a_sid = Sid::from_string(own_sid()).bytes();
  ASSERT_EQ(mqsec::core::runtime().stores().store_at(store_).certificate_sid(digest), a_sid);

  // B reaches the same key: B's profile names the primary token with B's own PIN file, and B
  // may read the token files (SoftHSM re-reads them on use).
  GroupAccess share(env().token_dir(), b->gid());
  ASSERT_TRUE(share.ok()) << share.output();
  const fs::path b_pin =
      env().write_pin_file("b-" + name_ + ".pin", SoftHsmEnv::kUserPin, b->uid(), b->gid());
  write_user_profile(profiles, *b, certificate_uri(SoftHsmEnv::kPrimaryToken, c.id),
                     env().token_uri(SoftHsmEnv::kPrimaryToken, b_pin));

  HRESULT context_hr = MQ_ERROR, register_hr = MQ_OK;
  std::string reason;
  std::string err = run_as_user(*b, [&] {
    // Positive control: B holds the key (a context for the certificate works) ...
    HANDLE ctx = nullptr;
    context_hr = MQGetSecurityContextEx(c.der.data(), static_cast<DWORD>(c.der.size()), &ctx);
    if (ctx) MQFreeSecurityContext(ctx);
    // ... and still cannot take the registration over.
    register_hr = MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, c.der.data(),
                                        static_cast<DWORD>(c.der.size()));
    reason = mqsec::last_error_message();
  });
  ASSERT_TRUE(err.empty()) << err;
  ASSERT_HR(MQ_OK, context_hr) << "B cannot reach the key: the test proves nothing";
  EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, register_hr) << reason;
  EXPECT_NE(reason.find("registered to another SID"), std::string::npos) << reason;
  EXPECT_EQ(mqsec::core::runtime().stores().store_at(store_).certificate_sid(digest), a_sid)
      << "the registration was rebound to B's SID";

  // A registering it again is idempotent.
  EXPECT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, c.der.data(),
                                         static_cast<DWORD>(c.der.size())));
}

}  // namespace
