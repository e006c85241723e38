// Implicit security contexts (issue 14): a signed MQSendMessage without
// PROPID_M_SECURITY_CONTEXT uses a context cached per effective identity and certificate
// (src/core/implicit_contexts.hpp), rebuilt when the configuration, the profile, a
// registration, the token's generation or the process changes, and never lent to another
// identity. Against a real SoftHSM2 token; security::context_acquisitions() shows how many
// contexts were built.
#include <mq.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/implicit_contexts.hpp"
#include "src/core/runtime.hpp"
#include "src/security/context.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"
#include "tests/support/test_users.hpp"
#include "tests/support/user_profile.hpp"

namespace {

namespace fs = std::filesystem;
using mqsec::security::context_acquisitions;
using mqsec::testing::Bytes;
using mqsec::testing::ConfigOptions;
using mqsec::testing::hr_text;
using mqsec::testing::SoftHsmEnv;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

mqsec::core::ImplicitContexts& implicit() { return mqsec::core::runtime().implicit_contexts(); }

class ImplicitContext : public ::testing::Test {
 protected:
  static SoftHsmEnv& env() { return SoftHsmEnv::instance(); }

  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    name_ = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name_) {
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    options_.profiles_dir = env().dir() / ("profiles-" + name_);
    env().write_config(options_);
    implicit().clear();
  }

  // A key made on `label` by pkcs11-tool and a certificate object for it.
  Bytes token_key_certificate(const std::string& key_type, std::string* id_out = nullptr,
                              const std::string& label = SoftHsmEnv::kPrimaryToken) {
    const std::string id = SoftHsmEnv::new_id();
    env().keypairgen(label, key_type, id, "ic-key-" + id);
    Bytes der = env().certificate_for_token_key(label, id, "ic-" + id);
    env().write_certificate(label, der, id, "ic-cert-" + id);
    if (id_out) *id_out = id;
    return der;
  }

  std::string name_;
  ConfigOptions options_;
};

TEST_F(ImplicitContext, SignedSendsWithoutAContextBuildOneContext) {
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  const std::wstring path = L".\\private$\\implicit-" + std::wstring(name_.begin(), name_.end());
  MQPROPVARIANT qv[1];
  QUEUEPROPID qid[1] = {PROPID_Q_PATHNAME};
  qv[0].vt = VT_LPWSTR;
  qv[0].pwszVal = const_cast<wchar_t*>(path.c_str());
  MQQUEUEPROPS qprops{1, qid, qv, nullptr};
  WCHAR fmt[256];
  DWORD len = 256;
  ASSERT_HR(MQ_OK, MQCreateQueue(nullptr, &qprops, fmt, &len));
  QUEUEHANDLE q = nullptr;
  ASSERT_HR(MQ_OK, MQOpenQueue(fmt, MQ_SEND_ACCESS, MQ_DENY_NONE, &q));

  std::string body = "implicit";
  MSGPROPID id[2] = {PROPID_M_BODY, PROPID_M_AUTH_LEVEL};
  MQPROPVARIANT v[2];
  v[0].vt = VT_UI1 | VT_VECTOR;
  v[0].caub.pElems = reinterpret_cast<UCHAR*>(body.data());
  v[0].caub.cElems = static_cast<ULONG>(body.size());
  v[1].vt = VT_UI4;
  v[1].ulVal = MQMSG_AUTH_LEVEL_ALWAYS;
  MQMSGPROPS props{2, id, v, nullptr};

  const uint64_t before = context_acquisitions();
  for (int i = 0; i < 5; ++i) ASSERT_HR(MQ_OK, MQSendMessage(q, &props, nullptr));
  // One context for the five sends (each built and freed its own before the cache).
  EXPECT_EQ(1u, context_acquisitions() - before);

  // A registration in this process is seen at once: the next send builds a new context.
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  ASSERT_HR(MQ_OK, MQSendMessage(q, &props, nullptr));
  ASSERT_HR(MQ_OK, MQSendMessage(q, &props, nullptr));
  EXPECT_EQ(2u, context_acquisitions() - before);
  MQCloseQueue(q);
  MQDeleteQueue(fmt);
}

TEST_F(ImplicitContext, ConfigurationProfileAndRegistrationChangesRebuildIt) {
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  fs::path file;
  (void)mqsec::security::acquire_context({}, &file);
  const Bytes first_profile = mqsec::testing::read_file(file);

  auto a = implicit().get({});
  uint64_t n = context_acquisitions();
  EXPECT_EQ(a, implicit().get({})) << "not cached";
  EXPECT_EQ(n, context_acquisitions());

  // A registration (a new internal certificate): the next context has the new certificate.
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  auto b = implicit().get({});
  EXPECT_NE(a->certificate(), b->certificate());
  EXPECT_EQ(n + 1, context_acquisitions());

  // The profile rewritten by someone else (another process: no registration seen here) to
  // name the first certificate again.
  {
    const fs::path tmp = file.string() + ".new";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    ASSERT_NE(nullptr, f);
    ASSERT_EQ(first_profile.size(), std::fwrite(first_profile.data(), 1, first_profile.size(), f));
    std::fclose(f);
    fs::rename(tmp, file);
  }
  auto c = implicit().get({});
  EXPECT_EQ(a->certificate(), c->certificate()) << "the changed profile was not seen";
  EXPECT_EQ(n + 2, context_acquisitions());
  EXPECT_EQ(c, implicit().get({}));

  // The system configuration rewritten (same content, a new file).
  env().write_config(options_);
  auto d = implicit().get({});
  EXPECT_NE(c, d);
  EXPECT_EQ(n + 3, context_acquisitions());

  // MQSEC_CONFIG naming another file with the same content.
  const fs::path other = env().dir() / ("other-" + name_ + ".toml");
  fs::copy_file(env().config_path(), other, fs::copy_options::overwrite_existing);
  setenv("MQSEC_CONFIG", other.c_str(), 1);
  auto e = implicit().get({});
  setenv("MQSEC_CONFIG", env().config_path().c_str(), 1);
  EXPECT_NE(d, e);
  EXPECT_EQ(n + 4, context_acquisitions());
}

TEST_F(ImplicitContext, EachCertificateHasItsOwnAndTheCacheIsBounded) {
  std::vector<Bytes> certs;
  for (int i = 0; i < 3; ++i) certs.push_back(token_key_certificate("EC:prime256v1"));
  mqsec::core::ImplicitContexts cache(2);
  auto c0 = cache.get(certs[0]);
  auto c1 = cache.get(certs[1]);
  EXPECT_EQ(certs[0], c0->certificate());
  EXPECT_EQ(certs[1], c1->certificate());
  EXPECT_EQ(2u, cache.size());
  const uint64_t n = context_acquisitions();
  EXPECT_EQ(c1, cache.get(certs[1]));
  EXPECT_EQ(n, context_acquisitions());
  auto c2 = cache.get(certs[2]);  // evicts the oldest (certs[0])
  EXPECT_EQ(certs[2], c2->certificate());
  EXPECT_EQ(2u, cache.size());
  EXPECT_NE(c0, cache.get(certs[0]));
  EXPECT_EQ(n + 2, context_acquisitions());
  EXPECT_EQ(2u, cache.size());
}

TEST_F(ImplicitContext, EntriesAreRebuiltAfterTheirMaximumAge) {
  const Bytes der = token_key_certificate("EC:prime256v1");
  mqsec::core::ImplicitContexts cache(8, std::chrono::milliseconds(300));
  auto a = cache.get(der);
  const uint64_t n = context_acquisitions();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto b = cache.get(der);
  EXPECT_NE(a, b);
  EXPECT_EQ(n + 1, context_acquisitions());
  static_assert(mqsec::core::ImplicitContexts::kMaxAge == std::chrono::seconds(2));
}

TEST_F(ImplicitContext, TokenRecoveryRebuildsIt) {
  const Bytes der = token_key_certificate("EC:prime256v1");
  auto a = implicit().get(der);
  const uint64_t n = context_acquisitions();
  EXPECT_EQ(a, implicit().get(der));
  // What a removal and re-insertion leads to: the token recovers (a new generation).
  const_cast<mqsec::pkcs11::Token&>(a->token())
      .recover(a->token_generation(), "file:" + env().pin_file().string());
  auto b = implicit().get(der);
  EXPECT_NE(a, b);
  EXPECT_EQ(n + 1, context_acquisitions());
  const std::vector<uint8_t> digest(32, 0x5a);
  EXPECT_FALSE(b->sign_digest(mqsec::pkcs11::Hash::Sha256, digest).empty());
  // A context whose send failed is dropped.
  implicit().forget(b.get());
  EXPECT_NE(b, implicit().get(der));
  EXPECT_EQ(n + 2, context_acquisitions());
}

TEST_F(ImplicitContext, ForkedChildBuildsItsOwn) {
  const Bytes der = token_key_certificate("EC:prime256v1");
  // Its own cache with a long age, so that only the fork can make it build another.
  mqsec::core::ImplicitContexts cache(8, std::chrono::hours(1));
  auto a = cache.get(der);
  const std::vector<uint8_t> digest(32, 0x5a);
  ASSERT_FALSE(a->sign_digest(mqsec::pkcs11::Hash::Sha256, digest).empty());
  const pid_t pid = fork();
  ASSERT_NE(-1, pid);
  if (pid == 0) {
    int rc = 0;
    try {
      const uint64_t n = context_acquisitions();
      auto c = cache.get(der);
      if (c == a) rc |= 1;                           // the parent's context
      if (context_acquisitions() != n + 1) rc |= 2;  // not built here
      if (c->sign_digest(mqsec::pkcs11::Hash::Sha256, digest).empty()) rc |= 4;
      if (cache.get(der) != c) rc |= 8;  // the child caches its own
    } catch (...) {
      rc |= 16;
    }
    _exit(rc);
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(0, WEXITSTATUS(status));
  // The parent's entry is still good.
  const uint64_t n = context_acquisitions();
  EXPECT_EQ(a, cache.get(der));
  EXPECT_EQ(n, context_acquisitions());
  EXPECT_FALSE(a->sign_digest(mqsec::pkcs11::Hash::Sha256, digest).empty());
}

TEST_F(ImplicitContext, ImpersonatingThreadNeverGetsAnotherIdentitysContext) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root: creates a user and switches a thread's credentials";
  }
  auto user = mqsec::testing::make_temporary_user("mqic");
  ASSERT_TRUE(user);
  const std::string label = SoftHsmEnv::kUserBToken;
  std::string b_id;
  Bytes b_der = token_key_certificate("rsa:2048", &b_id, label);
  fs::path b_pin =
      env().write_pin_file("ic-userb.pin", SoftHsmEnv::kUserPin, user->uid(), user->gid());
  auto chown_r = mqsec::testing::run_command(
      "chown -R " + std::to_string(user->uid()) + ":" + std::to_string(user->gid()) + " " +
      mqsec::testing::shell_quote(env().token_subdir(label).string()));
  ASSERT_TRUE(chown_r.ok()) << chown_r.output;
  mqsec::testing::GroupAccess share(env().token_dir(), user->gid());
  ASSERT_TRUE(share.ok()) << share.output();
  // Its own cache with a long age, so that an entry changes only for the reasons tested.
  mqsec::core::ImplicitContexts cache(8, std::chrono::hours(1));
  mqsec::testing::write_user_profile(options_.profiles_dir, *user,
                                     mqsec::testing::certificate_uri(label, b_id),
                                     env().token_uri(label, b_pin));

  // Root's implicit contexts: internal, and one for root's certificate on the primary token.
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  const Bytes root_der = token_key_certificate("EC:prime256v1");
  auto root_internal = cache.get({});
  auto root_external = cache.get(root_der);
  ASSERT_EQ("S-1-22-1-0", root_internal->sid().str());

  std::shared_ptr<mqsec::security::SecurityContext> b_internal, b_again;
  HRESULT b_with_roots_cert = MQ_OK;
  std::string thread_error = mqsec::testing::run_as_user(*user, [&] {
    b_internal = cache.get({});
    b_again = cache.get({});
    try {
      auto c = cache.get(root_der);  // root's certificate: not on B's token
      (void)c;
    } catch (const mqsec::Error& e) {
      b_with_roots_cert = e.code();
    }
  });
  ASSERT_TRUE(thread_error.empty()) << thread_error;
  ASSERT_TRUE(b_internal);
  EXPECT_NE(root_internal, b_internal);
  EXPECT_EQ(user->unix_sid(), b_internal->sid().str());
  EXPECT_EQ(b_der, b_internal->certificate());
  EXPECT_EQ(b_internal, b_again) << "B's own context is cached for B";
  EXPECT_HR(MQ_ERROR_INVALID_CERTIFICATE, b_with_roots_cert);

  // B's profile now names the primary token (root's cached context's) with B's own PIN file
  // holding a wrong PIN: B must prove the PIN and cannot, whatever root has cached.
  fs::path wrong = env().write_pin_file("ic-userb-wrong.pin", "0000", user->uid(), user->gid());
  mqsec::testing::write_user_profile(
      options_.profiles_dir, *user,
      "pkcs11:token=" + std::string(SoftHsmEnv::kPrimaryToken) + ";type=cert",
      env().token_uri(SoftHsmEnv::kPrimaryToken, wrong));
  HRESULT b_internal_hr = MQ_OK, b_external_hr = MQ_OK;
  thread_error = mqsec::testing::run_as_user(*user, [&] {
    try {
      (void)cache.get({});
    } catch (const mqsec::Error& e) {
      b_internal_hr = e.code();
    }
    try {
      (void)cache.get(root_der);
    } catch (const mqsec::Error& e) {
      b_external_hr = e.code();
    }
  });
  ASSERT_TRUE(thread_error.empty()) << thread_error;
  EXPECT_TRUE(FAILED(b_internal_hr)) << hr_text(b_internal_hr);
  EXPECT_TRUE(FAILED(b_external_hr)) << hr_text(b_external_hr);

  // Root's entries were never replaced by B's.
  const uint64_t n = context_acquisitions();
  EXPECT_EQ(root_internal, cache.get({}));
  EXPECT_EQ(root_external, cache.get(root_der));
  EXPECT_EQ(n, context_acquisitions());
}

}  // namespace
