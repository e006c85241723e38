// Integration tests of the security-context API (MQGetSecurityContextEx, MQGetSecurityContext,
// MQFreeSecurityContext, MQRegisterCertificate) against a real SoftHSM2 token.
//
// Everything is driven through mq.h's C API; keys and certificates are provisioned with the
// independent tools (pkcs11-tool, openssl) through tests/support/softhsm_env. The internal C++
// API is used only to look: core::runtime().contexts(), to read which user a context belongs to
// and whether a freed handle is gone, and the store (core::runtime().stores()) and the caller's SID
// (security::resolve_user), to see what MQRegisterCertificate bound.
//
// Each test writes its own system configuration with its own profiles directory, so the tests
// do not depend on each other's profiles whether they run in one process or (under CTest's
// gtest_discover_tests) one process each. Tests that make logins fail use their own token.
#include <grp.h>
#include <mq.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "src/core/runtime.hpp"
#include "src/security/context.hpp"
#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"
#include "src/security/log.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"
#include "tests/support/test_users.hpp"
#include "tests/support/user_profile.hpp"

namespace {

namespace fs = std::filesystem;
using mqsec::testing::Bytes;
using mqsec::testing::ConfigOptions;
using mqsec::testing::hr_text;
using mqsec::testing::SoftHsmEnv;

using GetContextFn = HRESULT (*)(LPVOID, DWORD, HANDLE*);
struct NamedFn {
  const char* name;
  GetContextFn fn;
};
// MQGetSecurityContext is MQGetSecurityContextEx's older name; both must behave the same.
const NamedFn kGetFns[] = {{"MQGetSecurityContextEx", MQGetSecurityContextEx},
                           {"MQGetSecurityContext", MQGetSecurityContext}};

// Created before any test runs and before anything loads the module (SOFTHSM2_CONF).
::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

uintptr_t value(HANDLE h) { return reinterpret_cast<uintptr_t>(h); }
HANDLE handle(uintptr_t v) { return reinterpret_cast<HANDLE>(v); }

std::string user_name(uid_t uid) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return {};
  return pw.pw_name;
}

// "pkcs11:token=x;id=%01%ab;type=cert" -> "01ab".
std::string id_from_uri(const std::string& uri) {
  size_t at = uri.find("id=");
  if (at == std::string::npos) return {};
  std::string out;
  for (size_t i = at + 3; i + 2 < uri.size() && uri[i] == '%'; i += 3) {
    std::string two = uri.substr(i + 1, 2);
    for (char& c : two) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += two;
  }
  return out;
}

// The comma-separated words of pkcs11-tool's "Access:" line for one object.
std::set<std::string> access_flags(const std::string& block) {
  std::set<std::string> out;
  size_t at = block.find("Access:");
  if (at == std::string::npos) return out;
  size_t end = block.find('\n', at);
  std::string line = block.substr(at + 7, end == std::string::npos ? end : end - at - 7);
  size_t pos = 0;
  while (pos <= line.size()) {
    size_t comma = line.find(',', pos);
    std::string word = line.substr(pos, comma == std::string::npos ? comma : comma - pos);
    word.erase(0, word.find_first_not_of(' '));
    word.erase(word.find_last_not_of(" \r") + 1);
    if (!word.empty()) out.insert(word);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

class SecurityContextTest : public ::testing::Test {
 protected:
  static SoftHsmEnv& env() { return SoftHsmEnv::instance(); }

  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "." + info->name();
    for (char& c : name) {
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    profiles_ = env().dir() / ("profiles-" + name);
    options_ = ConfigOptions{};
    options_.profiles_dir = profiles_;
    env().write_config(options_);
  }

  void rewrite_config(const std::function<void(ConfigOptions&)>& change) {
    change(options_);
    env().write_config(options_);
  }

  // The calling user's profile directory under this test's profiles directory.
  fs::path my_profile_dir() const { return profiles_ / user_name(geteuid()); }

  // A key made on the primary token by pkcs11-tool, and a certificate for it made by openssl
  // through the pkcs11 engine; with or without a certificate object on the token.
  Bytes token_key_certificate(const std::string& key_type, bool with_cert_object,
                              std::string* id_out = nullptr,
                              const std::string& label = SoftHsmEnv::kPrimaryToken) {
    const std::string id = SoftHsmEnv::new_id();
    env().keypairgen(label, key_type, id, "it-key-" + id);
    Bytes der = env().certificate_for_token_key(label, id, "it-" + id);
    if (with_cert_object) env().write_certificate(label, der, id, "it-cert-" + id);
    if (id_out) *id_out = id;
    return der;
  }

  fs::path profiles_;
  ConfigOptions options_;
};

// Gets a context from `der` (empty: internal) with `fn`; returns the result and frees the
// context it may have produced.
HRESULT try_get(GetContextFn fn, Bytes der) {
  HANDLE h = nullptr;
  HRESULT hr = fn(der.empty() ? nullptr : der.data(), static_cast<DWORD>(der.size()), &h);
  if (hr == MQ_OK) {
    EXPECT_NE(0u, value(h));
    EXPECT_LE(value(h), uintptr_t{0xFFFFFFFF});
    MQFreeSecurityContext(h);
  }
  return hr;
}

// ---------------------------------------------------------------------------------------
// Parameters

TEST_F(SecurityContextTest, InvalidParametersAreRejected) {
  uint8_t buf[16] = {0x30};
  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    HANDLE h = handle(0x1);
    EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, f.fn(nullptr, 0, nullptr));
    EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, f.fn(buf, sizeof buf, nullptr));
    EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, f.fn(nullptr, 10, &h));
    EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, f.fn(buf, 0, &h));
  }
  // MQRegisterCertificate: unknown flags, NULL with a length, a buffer with no length.
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQRegisterCertificate(0, nullptr, 0));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 5));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, buf, 0));
}

// Parameters are checked before any configuration or token is looked at.
TEST_F(SecurityContextTest, InvalidParametersWinOverABrokenConfiguration) {
  rewrite_config([&](ConfigOptions& o) { o.module_path = (env().dir() / "no-such.so").string(); });
  uint8_t buf[4] = {0x30, 0x00, 0x00, 0x00};
  HANDLE h = nullptr;
  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, f.fn(nullptr, 0, nullptr));
    EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, f.fn(nullptr, 4, &h));
    EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, f.fn(buf, 0, &h));
  }
}

// ---------------------------------------------------------------------------------------
// Internal certificate

TEST_F(SecurityContextTest, InternalCertificateWithoutProfileIsMissing) {
  ASSERT_FALSE(fs::exists(my_profile_dir() / "profile.toml"));
  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    HANDLE h = handle(0x1);
    EXPECT_HR(MQ_ERROR_NO_INTERNAL_USER_CERT, f.fn(nullptr, 0, &h));
  }
}

TEST_F(SecurityContextTest, InternalCertificatePointingAtAMissingObjectIsMissing) {
  fs::create_directories(my_profile_dir());
  mqsec::testing::write_file(
      my_profile_dir() / "profile.toml",
      "internal-certificate = \"" +
          mqsec::testing::certificate_uri(SoftHsmEnv::kPrimaryToken, SoftHsmEnv::new_id()) + "\"\n",
      0600);
  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    HANDLE h = nullptr;
    EXPECT_HR(MQ_ERROR_NO_INTERNAL_USER_CERT, f.fn(nullptr, 0, &h));
  }
}

TEST_F(SecurityContextTest, RegisteredInternalCertificateGivesAContext) {
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));

  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    HANDLE h = nullptr;
    ASSERT_HR(MQ_OK, f.fn(nullptr, 0, &h));
    EXPECT_NE(0u, value(h));
    EXPECT_LE(value(h), uintptr_t{0xFFFFFFFF});
    MQFreeSecurityContext(h);
  }

  HRESULT again = MQRegisterCertificate(MQCERT_REGISTER_IF_NOT_EXIST, nullptr, 0);
  EXPECT_HR(MQ_INFORMATION_INTERNAL_USER_CERT_EXIST, again);
  EXPECT_TRUE(SUCCEEDED(again));

  // The profile names the certificate; its private key, generated on the token, must be
  // sensitive and never extractable. Checked with pkcs11-tool, not with our own layer.
  Bytes profile = mqsec::testing::read_file(my_profile_dir() / "profile.toml");
  std::string text(profile.begin(), profile.end());
  size_t at = text.find("internal-certificate");
  ASSERT_NE(std::string::npos, at) << text;
  std::string id = id_from_uri(text.substr(at, text.find('\n', at) - at));
  ASSERT_FALSE(id.empty()) << text;
  std::string block = mqsec::testing::object_block(
      env().list_objects(SoftHsmEnv::kPrimaryToken, "privkey", ""), id);
  ASSERT_FALSE(block.empty()) << "no private key with CKA_ID " << id;
  auto flags = access_flags(block);
  EXPECT_TRUE(flags.count("sensitive")) << block;     // CKA_SENSITIVE true
  EXPECT_FALSE(flags.count("extractable")) << block;  // CKA_EXTRACTABLE false
  EXPECT_TRUE(flags.count("never extractable")) << block;
  EXPECT_TRUE(flags.count("local")) << block;  // generated on the token, not imported
}

// ---------------------------------------------------------------------------------------
// External certificate

TEST_F(SecurityContextTest, MalformedCertificateBuffersAreInvalid) {
  Bytes good = token_key_certificate("rsa:2048", true);
  Bytes trailing = good;
  trailing.push_back(0x00);
  Bytes truncated(good.begin(), good.end() - 1);
  std::string junk = "this is not a certificate";
  Bytes garbage(junk.begin(), junk.end());
  Bytes der_like = {0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x00};  // a SEQUENCE cut short

  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, try_get(f.fn, garbage));
    EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, try_get(f.fn, der_like));
    EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, try_get(f.fn, trailing));
    EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, try_get(f.fn, truncated));
    // The unmodified certificate is fine: the failures above are the extra/missing bytes.
    EXPECT_HR(MQ_OK, try_get(f.fn, good));
  }
}

TEST_F(SecurityContextTest, CertificateWhoseKeyIsNotOnTheTokenIsInvalid) {
  for (const char* alg : {"rsa", "ec"}) {
    SCOPED_TRACE(alg);
    Bytes der = env().software_certificate(alg, std::string("not-on-token-") + alg).cert_der;
    for (const NamedFn& f : kGetFns) {
      SCOPED_TRACE(f.name);
      EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, try_get(f.fn, der));
    }
  }
}

TEST_F(SecurityContextTest, TokenKeyWithCertificateObjectGivesAContext) {
  std::string id;
  Bytes der = token_key_certificate("rsa:2048", true, &id);
  ASSERT_FALSE(
      mqsec::testing::object_block(env().list_objects(SoftHsmEnv::kPrimaryToken, "cert", ""), id)
          .empty());
  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    EXPECT_HR(MQ_OK, try_get(f.fn, der));
  }
}

class PublicKeyMatchTest : public SecurityContextTest,
                           public ::testing::WithParamInterface<const char*> {};

// No certificate object on the token: the key is found by its public half.
TEST_P(PublicKeyMatchTest, TokenKeyWithoutCertificateObjectGivesAContext) {
  std::string id;
  Bytes der = token_key_certificate(GetParam(), false, &id);
  ASSERT_TRUE(
      mqsec::testing::object_block(env().list_objects(SoftHsmEnv::kPrimaryToken, "cert", ""), id)
          .empty())
      << "precondition: no certificate object with CKA_ID " << id;
  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    HANDLE h = nullptr;
    ASSERT_HR(MQ_OK, f.fn(der.data(), static_cast<DWORD>(der.size()), &h));
    auto ctx = mqsec::core::runtime().contexts().get(static_cast<uint32_t>(value(h)));
    ASSERT_TRUE(ctx);
    EXPECT_EQ(der, ctx->certificate());
    MQFreeSecurityContext(h);
  }
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, PublicKeyMatchTest,
                         ::testing::Values("rsa:2048", "EC:prime256v1"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           return std::string(p.param[0] == 'r' ? "Rsa2048" : "P256");
                         });

TEST_F(SecurityContextTest, ExtractableKeysAreRefusedUnlessAllowed) {
  auto soft = env().software_certificate("rsa", "extractable");
  const std::string id = SoftHsmEnv::new_id();
  env().import_private_key(SoftHsmEnv::kPrimaryToken, soft.key_der, id, "it-extractable-" + id,
                           /*extractable=*/true);
  std::string block = mqsec::testing::object_block(
      env().list_objects(SoftHsmEnv::kPrimaryToken, "privkey", ""), id);
  ASSERT_TRUE(access_flags(block).count("extractable"))
      << "precondition: the imported key is extractable\n"
      << block;

  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, try_get(f.fn, soft.cert_der));
  }
  rewrite_config([](ConfigOptions& o) { o.allow_extractable_keys = true; });
  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    EXPECT_HR(MQ_OK, try_get(f.fn, soft.cert_der));
  }
}

// ---------------------------------------------------------------------------------------
// MQRegisterCertificate: proof of possession
//
// A certificate is public. Writing someone else's certificate onto one's own token next to an
// unrelated key with the same CKA_ID makes the certificate and "its" key match by attributes;
// registering must still fail, because that key cannot sign for the certificate (and a
// registration is never rebound, so binding it would lock its owner out for good).

struct ForeignKey {
  const char* cert_alg;  // software certificate: "rsa" | "ec"
  const char* key_type;  // unrelated key generated on the token
  const char* name;
};

void PrintTo(const ForeignKey& k, std::ostream* os) { *os << k.name; }

class PossessionTest : public SecurityContextTest,
                       public ::testing::WithParamInterface<ForeignKey> {
 protected:
  void SetUp() override {
    SecurityContextTest::SetUp();
    store_ = profiles_ / "store";
    fs::create_directories(store_);
    rewrite_config([&](ConfigOptions& o) { o.store_path = store_; });
  }

  // `alg`'s software certificate (its key is nowhere on the token) written onto the primary
  // token as a certificate object with the CKA_ID of a fresh, unrelated `key_type` key pair.
  Bytes foreign_certificate_next_to_unrelated_key(const std::string& alg,
                                                  const std::string& key_type,
                                                  std::string* id_out) {
    const std::string id = SoftHsmEnv::new_id();
    Bytes der = env().software_certificate(alg, "victim-" + id).cert_der;
    env().keypairgen(SoftHsmEnv::kPrimaryToken, key_type, id, "attacker-key-" + id);
    env().write_certificate(SoftHsmEnv::kPrimaryToken, der, id, "victim-cert-" + id);
    if (id_out) *id_out = id;
    return der;
  }

  std::optional<Bytes> bound_sid(const Bytes& der) {
    return mqsec::core::runtime().stores().store_at(store_).certificate_sid(
        mqsec::security::sha256(der));
  }
  static Bytes my_sid() { return mqsec::security::resolve_user().user.sid.bytes(); }

  void write_profile_naming(const std::string& id) {
    fs::create_directories(my_profile_dir());
    mqsec::testing::write_file(my_profile_dir() / "profile.toml",
                               "internal-certificate = \"" +
                                   mqsec::testing::certificate_uri(SoftHsmEnv::kPrimaryToken, id) +
                                   "\"\n",
                               0600);
  }

  fs::path store_;
};

TEST_P(PossessionTest, ForeignCertificateNextToAnUnrelatedKeyIsNotRegistered) {
  const ForeignKey& p = GetParam();
  std::string id;
  Bytes der = foreign_certificate_next_to_unrelated_key(p.cert_alg, p.key_type, &id);
  ASSERT_FALSE(
      mqsec::testing::object_block(env().list_objects(SoftHsmEnv::kPrimaryToken, "cert", ""), id)
          .empty())
      << "precondition: the certificate object with CKA_ID " << id;

  HRESULT hr =
      MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, der.data(), static_cast<DWORD>(der.size()));
  std::string reason = mqsec::last_error_message();
  EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, hr) << reason;
  // Refused by the proof, not by the lookup: the attribute match alone would have passed.
  EXPECT_NE(std::string::npos, reason.find("did not produce a valid signature")) << reason;
  EXPECT_NE(std::string::npos, reason.find(SoftHsmEnv::kPrimaryToken)) << reason;
  EXPECT_FALSE(bound_sid(der)) << "the foreign certificate was bound to the caller's SID";
}

// The same through the internal-certificate path: the profile names the foreign certificate
// object and MQRegisterCertificate(MQCERT_REGISTER_IF_NOT_EXIST, NULL, 0) finds it "existing".
TEST_P(PossessionTest, ForeignInternalCertificateIsNotRegistered) {
  const ForeignKey& p = GetParam();
  std::string id;
  Bytes der = foreign_certificate_next_to_unrelated_key(p.cert_alg, p.key_type, &id);
  write_profile_naming(id);
  const Bytes profile_before = mqsec::testing::read_file(my_profile_dir() / "profile.toml");

  HRESULT hr = MQRegisterCertificate(MQCERT_REGISTER_IF_NOT_EXIST, nullptr, 0);
  std::string reason = mqsec::last_error_message();
  EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, hr) << reason;
  EXPECT_NE(std::string::npos, reason.find("did not produce a valid signature")) << reason;
  EXPECT_FALSE(bound_sid(der)) << "the foreign internal certificate was bound";
  EXPECT_EQ(profile_before, mqsec::testing::read_file(my_profile_dir() / "profile.toml"))
      << "the profile changed although nothing was registered";
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, PossessionTest,
                         ::testing::Values(ForeignKey{"rsa", "rsa:2048", "RsaCertRsaKey"},
                                           ForeignKey{"ec", "EC:prime256v1", "EcCertEcKey"},
                                           ForeignKey{"ec", "rsa:2048", "EcCertRsaKey"},
                                           ForeignKey{"rsa", "EC:prime256v1", "RsaCertEcKey"}),
                         [](const ::testing::TestParamInfo<ForeignKey>& i) {
                           return std::string(i.param.name);
                         });

// Positive controls: certificates whose keys really are on the token register, by certificate
// object (RSA, EC), by public key alone, and as the profile's existing internal certificate.
TEST_F(PossessionTest, CertificatesWhoseKeyIsOnTheTokenRegister) {
  const Bytes me = my_sid();
  for (const char* key_type : {"rsa:2048", "EC:prime256v1"}) {
    for (bool with_cert_object : {true, false}) {
      SCOPED_TRACE(std::string(key_type) + (with_cert_object ? " with" : " without") +
                   " a certificate object");
      Bytes der = token_key_certificate(key_type, with_cert_object);
      EXPECT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, der.data(),
                                             static_cast<DWORD>(der.size())))
          << mqsec::last_error_message();
      EXPECT_EQ(std::optional<Bytes>(me), bound_sid(der));
    }
  }

  std::string id;
  Bytes internal = token_key_certificate("EC:prime256v1", true, &id);
  write_profile_naming(id);
  EXPECT_HR(MQ_INFORMATION_INTERNAL_USER_CERT_EXIST,
            MQRegisterCertificate(MQCERT_REGISTER_IF_NOT_EXIST, nullptr, 0))
      << mqsec::last_error_message();
  EXPECT_EQ(std::optional<Bytes>(me), bound_sid(internal));

  // A newly enrolled internal certificate proves possession too and is bound.
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0))
      << mqsec::last_error_message();
  Bytes profile = mqsec::testing::read_file(my_profile_dir() / "profile.toml");
  std::string text(profile.begin(), profile.end());
  size_t at = text.find("internal-certificate");
  ASSERT_NE(std::string::npos, at) << text;
  ASSERT_NE(id, id_from_uri(text.substr(at, text.find('\n', at) - at))) << text;
  HANDLE h = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(nullptr, 0, &h));
  auto ctx = mqsec::core::runtime().contexts().get(static_cast<uint32_t>(value(h)));
  ASSERT_TRUE(ctx);
  EXPECT_EQ(std::optional<Bytes>(me), bound_sid(ctx->certificate()));
  MQFreeSecurityContext(h);
}

// ---------------------------------------------------------------------------------------
// Module, token and login failures

TEST_F(SecurityContextTest, ModuleThatCannotLoadIsCorruptedSecurityData) {
  Bytes der = token_key_certificate("EC:prime256v1", true);
  ASSERT_HR(MQ_OK, try_get(MQGetSecurityContextEx, der));  // the certificate itself is fine

  for (const fs::path& bad : {env().dir() / "no-such-module.so", env().config_path()}) {
    SCOPED_TRACE(bad.string());
    rewrite_config([&](ConfigOptions& o) { o.module_path = bad.string(); });
    for (const NamedFn& f : kGetFns) {
      SCOPED_TRACE(f.name);
      EXPECT_HR(MQ_ERROR_CORRUPTED_SECURITY_DATA, try_get(f.fn, der));
    }
  }
}

TEST_F(SecurityContextTest, AbsentTokenIsCorruptedSecurityData) {
  Bytes der = token_key_certificate("rsa:2048", true);
  ASSERT_HR(MQ_OK, try_get(MQGetSecurityContextEx, der));
  rewrite_config([](ConfigOptions& o) { o.token_label = "nosuch"; });
  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    EXPECT_HR(MQ_ERROR_CORRUPTED_SECURITY_DATA, try_get(f.fn, der));
  }
}

// Uses its own token: a failed login must not affect the token the other tests use.
TEST_F(SecurityContextTest, WrongPinIsCorruptedSecurityData) {
  const std::string label = SoftHsmEnv::kWrongPinToken;
  Bytes der = token_key_certificate("rsa:2048", true, nullptr, label);
  fs::path wrong = env().write_pin_file("wrong.pin", "0000");
  rewrite_config([&](ConfigOptions& o) {
    o.token_label = label;
    o.pin_file = wrong;
  });
  for (const NamedFn& f : kGetFns) {
    SCOPED_TRACE(f.name);
    EXPECT_HR(MQ_ERROR_CORRUPTED_SECURITY_DATA, try_get(f.fn, der));
  }
  // The same token and certificate with the right PIN: the PIN was the only problem.
  rewrite_config([&](ConfigOptions& o) { o.pin_file = env().pin_file(); });
  EXPECT_HR(MQ_OK, try_get(MQGetSecurityContextEx, der));
}

// ---------------------------------------------------------------------------------------
// Freeing

TEST_F(SecurityContextTest, FreeingIsHarmlessForNullForgedAndFreedHandles) {
  MQFreeSecurityContext(nullptr);
  MQFreeSecurityContext(handle(0x12345));
  MQFreeSecurityContext(handle(0xFFFFFFFF));
  if constexpr (sizeof(uintptr_t) > 4) {
    MQFreeSecurityContext(handle(static_cast<uintptr_t>(0x100000001ull)));
  }

  Bytes der = token_key_certificate("EC:prime256v1", true);
  HANDLE h1 = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(der.data(), static_cast<DWORD>(der.size()), &h1));
  const auto v1 = static_cast<uint32_t>(value(h1));
  auto& table = mqsec::core::runtime().contexts();
  ASSERT_TRUE(table.get(v1));

  // A forged handle with the live slot but another generation frees nothing.
  MQFreeSecurityContext(handle(v1 ^ 0x10000u));
  EXPECT_TRUE(table.get(v1)) << "a forged handle freed a live context";

  MQFreeSecurityContext(h1);
  EXPECT_FALSE(table.get(v1)) << "a freed handle still resolves";
  MQFreeSecurityContext(h1);  // twice: a no-op
  EXPECT_FALSE(table.get(v1));

  HANDLE h2 = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(der.data(), static_cast<DWORD>(der.size()), &h2));
  EXPECT_NE(value(h1), value(h2)) << "a new context reused a freed handle value";
  EXPECT_FALSE(table.get(v1)) << "the old handle resolves to the new context";
  EXPECT_TRUE(table.get(static_cast<uint32_t>(value(h2))));
  MQFreeSecurityContext(h1);  // the stale handle must not free the new context
  EXPECT_TRUE(table.get(static_cast<uint32_t>(value(h2))));
  MQFreeSecurityContext(h2);
}

// ---------------------------------------------------------------------------------------
// Threads

TEST_F(SecurityContextTest, ConcurrentGetAndFreeFromManyThreads) {
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  Bytes der = token_key_certificate("EC:prime256v1", true);

  constexpr int kThreads = 8, kIterations = 50;
  std::mutex mu;
  std::set<uintptr_t> live;
  std::vector<std::string> problems;  // guarded by mu
  auto problem = [&](std::string what) {
    std::lock_guard lock(mu);
    if (problems.size() < 20) problems.push_back(std::move(what));
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        // Each iteration holds an internal and an external context at once.
        HANDLE hs[2] = {nullptr, nullptr};
        HRESULT hr0 = MQGetSecurityContextEx(nullptr, 0, &hs[0]);
        HRESULT hr1 =
            (t + i) % 2
                ? MQGetSecurityContext(der.data(), static_cast<DWORD>(der.size()), &hs[1])
                : MQGetSecurityContextEx(der.data(), static_cast<DWORD>(der.size()), &hs[1]);
        for (HRESULT hr : {hr0, hr1}) {
          if (hr != MQ_OK) problem("thread " + std::to_string(t) + ": " + hr_text(hr));
        }
        {
          std::lock_guard lock(mu);
          for (HANDLE h : hs) {
            if (h == nullptr) continue;
            if (value(h) > 0xFFFFFFFF) problems.push_back("handle wider than 32 bits");
            if (!live.insert(value(h)).second) {
              problems.push_back("handle " + std::to_string(value(h)) + " issued twice");
            }
          }
        }
        {
          std::lock_guard lock(mu);  // out of the set before it is freed and may be reissued
          for (HANDLE h : hs) live.erase(value(h));
        }
        for (HANDLE h : hs) MQFreeSecurityContext(h);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_TRUE(problems.empty()) << [&] {
    std::string all;
    for (const auto& p : problems) all += p + "\n";
    return all;
  }();
}

// ---------------------------------------------------------------------------------------
// Impersonation

TEST_F(SecurityContextTest, ThreadImpersonatingAnotherUserGetsThatUsersContext) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root: creates a user with useradd and switches a thread's "
                    "credentials with setresuid(2)";
  }
  auto user = mqsec::testing::make_temporary_user("mqit");
  ASSERT_TRUE(user);
  const std::string label = SoftHsmEnv::kUserBToken;

  // B's internal certificate on B's own token, provisioned as root before B's files are
  // handed over.
  std::string id;
  Bytes b_der = token_key_certificate("rsa:2048", true, &id, label);
  fs::path b_pin =
      env().write_pin_file("userb.pin", SoftHsmEnv::kUserPin, user->uid(), user->gid());
  auto chown_r = mqsec::testing::run_command(
      "chown -R " + std::to_string(user->uid()) + ":" + std::to_string(user->gid()) + " " +
      mqsec::testing::shell_quote(env().token_subdir(label).string()));
  ASSERT_TRUE(chown_r.ok()) << chown_r.output;
  // SoftHSM is one module instance per process, and B's lookup of its token reads every
  // token's files (C_GetTokenInfo on each slot). A file B cannot read makes SoftHSM mark that
  // token object invalid for good, for every thread (CKR_GENERAL_ERROR afterwards). So B's
  // group gets access to the whole token store for the duration of this test; the other
  // tokens' private objects stay encrypted under their PINs.
  mqsec::testing::GroupAccess share(env().token_dir(), user->gid());
  ASSERT_TRUE(share.ok()) << share.output();

  mqsec::testing::write_user_profile(profiles_, *user, mqsec::testing::certificate_uri(label, id),
                                     env().token_uri(label, b_pin));

  // The caller (root) has a context of its own first, so the module and token list are
  // already loaded when B asks, as in a long-running service.
  Bytes root_der = token_key_certificate("EC:prime256v1", true);
  HANDLE root_h = nullptr;
  ASSERT_HR(MQ_OK,
            MQGetSecurityContextEx(root_der.data(), static_cast<DWORD>(root_der.size()), &root_h));

  HRESULT hr = MQ_ERROR;
  HANDLE b_h = nullptr;
  std::string sid_inside, reason;
  uid_t euid_inside = 0;
  const std::string thread_error = mqsec::testing::run_as_user(*user, [&] {
    euid_inside = geteuid();
    hr = MQGetSecurityContextEx(nullptr, 0, &b_h);
    // B cannot write the root-owned log file; the thread's last logged error says why.
    if (hr != MQ_OK) reason = mqsec::last_error_message();
    if (hr == MQ_OK) {
      auto ctx = mqsec::core::runtime().contexts().get(static_cast<uint32_t>(value(b_h)));
      if (ctx) sid_inside = ctx->sid().str();
    }
  });
  ASSERT_TRUE(thread_error.empty()) << thread_error;
  EXPECT_EQ(user->uid(), euid_inside);
  EXPECT_EQ(0u, geteuid()) << "the switch leaked out of the thread";

  const std::string b_sid = "S-1-22-1-" + std::to_string(user->uid());
  ASSERT_HR(MQ_OK, hr) << reason;
  EXPECT_EQ(b_sid, sid_inside);
  auto ctx = mqsec::core::runtime().contexts().get(static_cast<uint32_t>(value(b_h)));
  ASSERT_TRUE(ctx);
  EXPECT_EQ(b_sid, ctx->sid().str()) << "the context changed user after the thread reverted";
  EXPECT_EQ(b_der, ctx->certificate()) << "not B's certificate";

  auto root_ctx = mqsec::core::runtime().contexts().get(static_cast<uint32_t>(value(root_h)));
  ASSERT_TRUE(root_ctx);
  EXPECT_EQ("S-1-22-1-0", root_ctx->sid().str());

  MQFreeSecurityContext(b_h);
  MQFreeSecurityContext(root_h);
}

}  // namespace
