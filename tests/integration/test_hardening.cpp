// Regression tests for issue 9's hardening items, each an attack that worked on the code before:
//
// 1. A user's profile names a PKCS#11 module (module-path=): a root service impersonating that
//    user must not load it unless it is registered with p11-kit or in [token] allowed-modules,
//    and root-controlled. A module whose constructor writes a marker file shows whether it ran.
// 2. A thread impersonating user B must not get a context on a token the service logged in
//    without proving the PIN from B's own PIN source.
// 4. A setuid program ignores MQSEC_LOG (secure_getenv).
// 5. A PIN file that is a FIFO is refused at once (it used to block forever), a symbolic link
//    as PIN file is refused, and the log file is never opened through a symbolic link and is
//    created 0600 whatever the umask.
//
// The multi-user tests need root (useradd, setresuid on one thread, chown, setuid bits) and
// skip otherwise; CI runs as root. Each creates a throwaway user and removes it when done.
#include <fcntl.h>
#include <mq.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pkcs11/error.hpp"
#include "pkcs11/module.hpp"
#include "pkcs11/pin.hpp"
#include "pkcs11/token.hpp"
#include "pkcs11/uri.hpp"
#include "src/core/runtime.hpp"
#include "src/security/context.hpp"
#include "src/security/log.hpp"
#include "tests/mock/mock_pkcs11.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"
#include "tests/support/test_name.hpp"
#include "tests/support/test_users.hpp"
#include "tests/support/user_profile.hpp"

namespace {

namespace fs = std::filesystem;
using namespace mqsec::testing;  // the shared test support (tests/support/)

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new SoftHsmTestEnvironment);

SoftHsmEnv& env() { return SoftHsmEnv::instance(); }

uintptr_t value(HANDLE h) { return reinterpret_cast<uintptr_t>(h); }

// A system configuration of this test's own (MQSEC_CONFIG points at it): the service's token
// is the primary SoftHSM token with the service's PIN file, profiles under <dir>/profiles-<test>.
class Hardening : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = current_test_name();
    profiles_ = env().dir() / ("profiles-" + name_);
    fs::create_directories(profiles_);
    chmod(profiles_.c_str(), 0755);
    config_ = env().dir() / ("hardening-" + name_ + ".toml");
    write_config({});
    setenv("MQSEC_CONFIG", config_.c_str(), 1);
  }
  void TearDown() override { setenv("MQSEC_CONFIG", env().config_path().c_str(), 1); }

  void write_config(const std::vector<std::string>& allowed_modules) {
    std::string allowed;
    for (const auto& m : allowed_modules) allowed += (allowed.empty() ? "\"" : ", \"") + m + "\"";
    write_file(config_,
               "[token]\nuri = \"" + env().token_uri(SoftHsmEnv::kPrimaryToken, env().pin_file()) +
                   "\"\nallowed-modules = [" + allowed + "]\n[store]\npath = \"" +
                   (env().dir() / ("store-" + name_)).string() + "\"\n[profiles]\ndir = \"" +
                   (profiles_ / "%u").string() + "\"\n[identity]\nsid = \"unix\"\n");
  }

  // B's profile.toml (owned by B, 0600, in B's 0700 directory).
  void write_profile(const TemporaryUser& b, const std::string& internal_cert,
                     const std::string& token_uri) {
    write_user_profile(profiles_, b, internal_cert, token_uri);
  }

  // MQGetSecurityContextEx(NULL) (B's internal certificate) on a thread impersonating B.
  struct Attempt {
    HRESULT hr = MQ_ERROR;
    HANDLE handle = nullptr;
    std::string reason;  // the thread's last logged error
    std::string switch_error;
  };
  Attempt get_internal_as(const TemporaryUser& b) {
    Attempt a;
    a.switch_error = run_as_user(b, [&] {
      a.hr = MQGetSecurityContextEx(nullptr, 0, &a.handle);
      if (a.hr != MQ_OK) a.reason = mqsec::last_error_message();
    });
    return a;
  }

  std::string name_;
  fs::path profiles_, config_;
};

#define NEEDS_ROOT()                                                                   \
  if (geteuid() != 0) {                                                                \
    GTEST_SKIP() << "needs root: creates a user with useradd and switches a thread's " \
                    "credentials with setresuid(2)";                                   \
  }

// The tests that impersonate a real user B: root only, and B exists for the test's duration.
class HardeningWithUserB : public Hardening {
 protected:
  void SetUp() override {
    NEEDS_ROOT();
    Hardening::SetUp();
    b_ = make_temporary_user("mqhd");
    ASSERT_TRUE(b_);
  }
  std::unique_ptr<TemporaryUser> b_;
};

// ---------------------------------------------------------------------------------------
// 1. Profiles name no code

TEST_F(HardeningWithUserB, ProfileNamedModuleIsNotLoadedUnlessAllowedAndRootControlled) {
  // The marker file: any uid may create it, so a constructor run as B would leave it.
  const fs::path markers = env().dir() / ("markers-" + name_);
  fs::create_directories(markers);
  chmod(markers.c_str(), 01777);
  const fs::path marker = markers / "loaded";
  setenv("MQSEC_TEST_MARKER", marker.c_str(), 1);  // read by the module's constructor

  auto copy_module = [&](const fs::path& dir, const std::string& file, mode_t dir_mode,
                         mode_t file_mode, const TemporaryUser* owner) {
    fs::create_directories(dir);
    const fs::path to = dir / file;
    fs::copy_file(MQSEC_MARKER_MODULE, to, fs::copy_options::overwrite_existing);
    chmod(to.c_str(), file_mode);
    chmod(dir.c_str(), dir_mode);
    if (owner) {
      give_to(to, *owner);
      give_to(dir, *owner);
    }
    return to;
  };
  const fs::path base = env().dir() / ("modules-" + name_);
  fs::create_directories(base);
  chmod(base.c_str(), 0755);
  // What an attacker would do: B's own library in B's own directory.
  const fs::path b_module = copy_module(base / "b", "evil.so", 0755, 0755, b_.get());
  // Root-owned and root-controlled, but neither registered nor allowed (yet).
  const fs::path root_module = copy_module(base / "root", "marker.so", 0755, 0755, nullptr);
  // Allowed but writable by others, or in a directory writable by others.
  const fs::path writable_module =
      copy_module(base / "writable-file", "marker.so", 0755, 0666, nullptr);
  const fs::path in_writable_dir =
      copy_module(base / "writable-dir", "marker.so", 0777, 0755, nullptr);

  const std::string cert =
      "pkcs11:token=" + std::string(SoftHsmEnv::kPrimaryToken) + ";id=%01;type=cert";
  auto uri_for = [&](const fs::path& module) {
    return "pkcs11:token=" + std::string(SoftHsmEnv::kPrimaryToken) +
           "?module-path=" + module.string() +
           "&pin-source=file:" + (env().dir() / "no-such.pin").string();
  };

  struct Case {
    const char* what;
    fs::path module;
    std::vector<std::string> allowed;
  };
  const std::vector<Case> refused = {
      {"B's own module, not allowed", b_module, {}},
      {"B's own module, allowed by path (not root-owned)", b_module, {b_module.string()}},
      {"root-owned module, not registered and not allowed", root_module, {}},
      {"allowed module writable by others", writable_module, {writable_module.string()}},
      {"allowed module in a directory writable by others",
       in_writable_dir,
       {in_writable_dir.string()}},
  };
  for (const Case& c : refused) {
    SCOPED_TRACE(c.what);
    write_config(c.allowed);
    write_profile(*b_, cert, uri_for(c.module));
    Attempt a = get_internal_as(*b_);
    ASSERT_TRUE(a.switch_error.empty()) << a.switch_error;
    EXPECT_HR(MQ_ERROR_CORRUPTED_SECURITY_DATA, a.hr) << a.reason;
    if (a.hr == MQ_OK) MQFreeSecurityContext(a.handle);
    EXPECT_NE(a.reason.find("refusing to load PKCS#11 module"), std::string::npos) << a.reason;
    EXPECT_FALSE(fs::exists(marker)) << "the module named by B's profile was loaded";
  }
  {
    // The log says what to do about a module that is merely not allowed.
    write_config({});
    write_profile(*b_, cert, uri_for(root_module));
    Attempt a = get_internal_as(*b_);
    EXPECT_NE(a.reason.find("allowed-modules"), std::string::npos) << a.reason;
  }
  {
    // module-name= resolves through p11-kit's module configs only.
    write_config({});
    write_profile(*b_, cert,
                  "pkcs11:token=" + std::string(SoftHsmEnv::kPrimaryToken) +
                      "?module-name=mqsec-no-such-module&pin-source=file:/nonexistent");
    Attempt a = get_internal_as(*b_);
    EXPECT_HR(MQ_ERROR_CORRUPTED_SECURITY_DATA, a.hr) << a.reason;
  }
  ASSERT_FALSE(fs::exists(marker));

  // Positive control: the same root-owned module, allowed by the system config, IS loaded (and
  // then refused as not being a PKCS#11 module): the marker shows loading is detected.
  write_config({root_module.string()});
  write_profile(*b_, cert, uri_for(root_module));
  Attempt a = get_internal_as(*b_);
  ASSERT_TRUE(a.switch_error.empty()) << a.switch_error;
  EXPECT_HR(MQ_ERROR_CORRUPTED_SECURITY_DATA, a.hr) << a.reason;
  EXPECT_NE(a.reason.find("C_GetFunctionList"), std::string::npos) << a.reason;
  EXPECT_TRUE(fs::exists(marker)) << "the allowed module was not loaded: the test cannot detect "
                                     "loading";
  unsetenv("MQSEC_TEST_MARKER");
}

// p11-kit's registry is read from the module config files, never by loading modules; files
// anyone but root could have written are ignored.
TEST_F(Hardening, P11KitRegistryIsReadFromRootOwnedModuleConfigs) {
  NEEDS_ROOT();
  const fs::path dir = env().dir() / ("p11-modules-" + name_);
  fs::create_directories(dir);
  write_file(dir / "relative.module", "# a comment\nmodule: librelative.so\npriority: 1\n", 0644);
  write_file(dir / "absolute.module", "module:   /opt/x/libabsolute.so  \n", 0644);
  write_file(dir / "writable.module", "module: /opt/x/libwritable.so\n", 0666);
  write_file(dir / "ignored.conf", "module: /opt/x/libignored.so\n", 0644);
  auto found = mqsec::pkcs11::registered_modules({dir.string()});
  ASSERT_EQ(2u, found.size());
  EXPECT_EQ("absolute", found[0].name);
  EXPECT_EQ("/opt/x/libabsolute.so", found[0].path);
  EXPECT_EQ("relative", found[1].name);
  EXPECT_EQ(mqsec::pkcs11::p11kit_module_dir() + "/librelative.so", found[1].path);

  auto pc = run_command("pkg-config --variable=p11_module_path p11-kit-1");
  if (pc.ok() && !pc.output.empty()) {
    std::string expected = pc.output.substr(0, pc.output.find('\n'));
    EXPECT_EQ(fs::canonical(expected).string(), mqsec::pkcs11::p11kit_module_dir());
  }
  // This machine's SoftHSM is registered (Debian's softhsm2 ships softhsm2.module) and is the
  // module the tests use, whatever symlink names it.
  bool softhsm = false;
  for (const auto& m : mqsec::pkcs11::registered_modules()) {
    if (m.name == "softhsm2") softhsm = fs::equivalent(m.path, env().module_path());
  }
  EXPECT_TRUE(softhsm) << "softhsm2 is not registered with p11-kit on this machine";
}

// ---------------------------------------------------------------------------------------
// 2. An impersonated identity signs only with keys it controls

TEST_F(HardeningWithUserB, ImpersonatedThreadMustProveThePinOfTheServicesLogin) {
  // The service's key and certificate on the primary token; the service logs in by getting a
  // context, as a long-running service does.
  const std::string id = SoftHsmEnv::new_id();
  env().keypairgen(SoftHsmEnv::kPrimaryToken, "EC:prime256v1", id, "svc-key-" + id);
  Bytes der = env().certificate_for_token_key(SoftHsmEnv::kPrimaryToken, id, "svc-" + id);
  env().write_certificate(SoftHsmEnv::kPrimaryToken, der, id, "svc-cert-" + id);
  HANDLE svc = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(der.data(), static_cast<DWORD>(der.size()), &svc));
  auto svc_ctx = mqsec::core::runtime().contexts().get(static_cast<uint32_t>(value(svc)));
  ASSERT_TRUE(svc_ctx);
  const std::vector<uint8_t> digest(32, 0x5a);
  ASSERT_FALSE(svc_ctx->sign_digest(mqsec::pkcs11::Hash::Sha256, digest).empty());

  // SoftHSM re-reads token files on use: B's thread must be able to read the token store, or
  // every result would be a failure for an unrelated reason (the positive control shows it
  // is not). The other tokens' private objects stay encrypted under their PINs.
  GroupAccess share(env().token_dir(), b_->gid());
  ASSERT_TRUE(share.ok()) << share.output();

  const std::string cert_uri = certificate_uri(SoftHsmEnv::kPrimaryToken, id);
  auto b_pin = [&](const std::string& file, const std::string& pin) {
    return env().write_pin_file(file, pin, b_->uid(), b_->gid());
  };
  struct Case {
    const char* what;
    std::string token_uri;
  };
  setenv("MQSEC_HARDENING_PIN", SoftHsmEnv::kUserPin, 1);
  const std::vector<Case> refused = {
      {"B's PIN file does not exist",
       env().token_uri(SoftHsmEnv::kPrimaryToken, env().dir() / ("absent-" + name_ + ".pin"))},
      {"B's own PIN file holds a wrong PIN",
       env().token_uri(SoftHsmEnv::kPrimaryToken, b_pin("b-wrong-" + name_ + ".pin", "0000"))},
      {"B names the service's PIN file (owned by root)",
       env().token_uri(SoftHsmEnv::kPrimaryToken, env().pin_file())},
      {"B names the service's environment",
       "pkcs11:token=" + std::string(SoftHsmEnv::kPrimaryToken) +
           "?module-path=" + env().module_path() + "&pin-source=env:MQSEC_HARDENING_PIN"},
      {"B names the module by its p11-kit name and a missing PIN file",
       "pkcs11:token=" + std::string(SoftHsmEnv::kPrimaryToken) +
           "?module-name=softhsm2&pin-source=file:" +
           (env().dir() / ("absent-" + name_ + ".pin")).string()},
  };
  for (const Case& c : refused) {
    SCOPED_TRACE(c.what);
    write_profile(*b_, cert_uri, c.token_uri);
    Attempt a = get_internal_as(*b_);
    ASSERT_TRUE(a.switch_error.empty()) << a.switch_error;
    EXPECT_HR(MQ_ERROR_CORRUPTED_SECURITY_DATA, a.hr) << a.reason;
    if (a.hr == MQ_OK) MQFreeSecurityContext(a.handle);
    EXPECT_EQ(a.reason.find(SoftHsmEnv::kUserPin), std::string::npos) << "the PIN in a message";
    // The service's login is undisturbed: its context still signs, and it gets new ones.
    EXPECT_FALSE(svc_ctx->sign_digest(mqsec::pkcs11::Hash::Sha256, digest).empty());
    HANDLE again = nullptr;
    EXPECT_HR(MQ_OK, MQGetSecurityContextEx(der.data(), static_cast<DWORD>(der.size()), &again));
    if (again) MQFreeSecurityContext(again);
  }

  // Positive control: B with the right PIN in B's own file gets a context of its own, which
  // signs: the refusals above were about the PIN, not about B reaching the token.
  write_profile(*b_, cert_uri,
                env().token_uri(SoftHsmEnv::kPrimaryToken,
                                b_pin("b-right-" + name_ + ".pin", SoftHsmEnv::kUserPin)));
  Attempt a = get_internal_as(*b_);
  ASSERT_TRUE(a.switch_error.empty()) << a.switch_error;
  ASSERT_HR(MQ_OK, a.hr) << a.reason;
  auto b_ctx = mqsec::core::runtime().contexts().get(static_cast<uint32_t>(value(a.handle)));
  ASSERT_TRUE(b_ctx);
  EXPECT_EQ("S-1-22-1-" + std::to_string(b_->uid()), b_ctx->sid().str());
  EXPECT_FALSE(b_ctx->sign_digest(mqsec::pkcs11::Hash::Sha256, digest).empty());
  MQFreeSecurityContext(a.handle);
  MQFreeSecurityContext(svc);
}

// The same rule at the token layer, where C_Login calls can be counted (mock module): a PIN that
// does not match the login is refused without being submitted, and stays refused after the
// login is lost (so an impersonated user cannot spend the card's retry counter with it); B's
// right PIN logs in, and the service then proves its own PIN without another C_Login.
// Token::login from a thread running as `user`: "logged in", the refusal's text, or what went
// wrong switching identities.
std::string login_as(const TemporaryUser& user, mqsec::pkcs11::Token& token,
                     const std::string& pin_source) {
  std::string outcome = "logged in";
  std::string err = run_as_user(user, [&] {
    try {
      token.login(pin_source);
    } catch (const mqsec::pkcs11::Error& e) {
      outcome = e.what();
    }
  });
  return err.empty() ? outcome : err;
}

// Token "mock-a" of a freshly reset mock module (no login yet); its user PIN, "1234", is in
// $MQSEC_HARDENING_MOCK_PIN for the service's pin-source=env:.
std::shared_ptr<mqsec::pkcs11::Token> fresh_mock_token() {
  mqsec::mock::reset();
  setenv("MQSEC_HARDENING_MOCK_PIN", "1234", 1);
  auto module = mqsec::pkcs11::Module::from_function_list(mqsec::mock::function_list(), "mock");
  return mqsec::pkcs11::Token::open(module, mqsec::pkcs11::Uri::parse("pkcs11:token=mock-a"));
}

TEST_F(HardeningWithUserB, MismatchedPinOfAnotherIdentityIsNeverSubmittedToTheToken) {
  namespace mock = mqsec::mock;
  using mqsec::pkcs11::Error;
  const std::string svc_source = "env:MQSEC_HARDENING_MOCK_PIN";
  auto token = fresh_mock_token();
  token->login(svc_source);
  const int logins = mock::call_count("C_Login");
  ASSERT_EQ(1, logins);

  const std::string wrong =
      "file:" + env().write_pin_file("mock-wrong-" + name_, "0000", b_->uid(), b_->gid()).string();
  const std::string right =
      "file:" + env().write_pin_file("mock-right-" + name_, "1234", b_->uid(), b_->gid()).string();
  auto login_as_b = [&](const std::string& source) { return login_as(*b_, *token, source); };

  std::string r = login_as_b(wrong);
  EXPECT_NE(r.find("CKR_PIN_INCORRECT"), std::string::npos) << r;
  EXPECT_EQ(r.find("0000"), std::string::npos) << "the PIN in a message";
  EXPECT_EQ(logins, mock::call_count("C_Login")) << "B's PIN was submitted to the token";
  EXPECT_TRUE(mock::logged_in(0)) << "the service's login was disturbed";

  // The token logs everyone out (another application): B's wrong PIN is still not submitted.
  {
    auto s = token->session();
    ASSERT_EQ(static_cast<CK_RV>(CKR_OK), mock::function_list()->C_Logout(s.handle()));
  }
  r = login_as_b(wrong);
  EXPECT_NE(r.find("CKR_PIN_INCORRECT"), std::string::npos) << r;
  EXPECT_EQ(logins, mock::call_count("C_Login")) << "a refused PIN was submitted";

  // B's own right PIN logs in; the service then proves its PIN without a C_Login.
  EXPECT_EQ("logged in", login_as_b(right));
  EXPECT_EQ(logins + 1, mock::call_count("C_Login"));
  EXPECT_NO_THROW(token->login(svc_source));
  EXPECT_EQ(logins + 1, mock::call_count("C_Login"));
  EXPECT_EQ("logged in", login_as_b(right));  // proven: no further PIN check or C_Login
  EXPECT_EQ(logins + 1, mock::call_count("C_Login"));
}

// A login made by other code of the process (no record of ours to prove a PIN against) is lent
// to the process's own user only, never to a thread acting for another user.
TEST_F(HardeningWithUserB, ForeignLoginIsNotLentToAnImpersonatedIdentity) {
  namespace mock = mqsec::mock;
  using mqsec::pkcs11::Error;
  auto token = fresh_mock_token();
  {  // "other code": its own session and C_Login, outside mqsec's Token
    CK_FUNCTION_LIST* f = mock::function_list();
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    ASSERT_EQ(static_cast<CK_RV>(CKR_OK),
              f->C_OpenSession(token->slot(), CKF_SERIAL_SESSION, nullptr, nullptr, &h));
    std::string pin = "1234";
    ASSERT_EQ(static_cast<CK_RV>(CKR_OK),
              f->C_Login(h, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size()));
  }
  const std::string b_source =
      "file:" +
      env().write_pin_file("mock-foreign-" + name_, "1234", b_->uid(), b_->gid()).string();
  const std::string outcome = login_as(*b_, *token, b_source);
  EXPECT_NE(outcome.find("logged in by other code"), std::string::npos) << outcome;
  EXPECT_NO_THROW(token->login("env:MQSEC_HARDENING_MOCK_PIN")) << "the process's own user";
}

// ---------------------------------------------------------------------------------------
// 4. The environment is not trusted in privileged processes

TEST_F(HardeningWithUserB, SetuidProgramIgnoresMqsecLog) {
  // A root-owned directory for the programs and for the log the setuid run must not write.
  const fs::path dir = env().dir() / ("suid-" + name_);
  fs::create_directories(dir);
  chmod(dir.c_str(), 0755);
  const fs::path suid = dir / "probe-suid", plain = dir / "probe-plain";
  fs::copy_file(MQSEC_LOG_PROBE, suid, fs::copy_options::overwrite_existing);
  fs::copy_file(MQSEC_LOG_PROBE, plain, fs::copy_options::overwrite_existing);
  ASSERT_EQ(0, chown(suid.c_str(), 0, 0));
  ASSERT_EQ(0, chmod(suid.c_str(), 04755));
  ASSERT_EQ(0, chmod(plain.c_str(), 0755));
  // B's own directory for the positive control's log.
  const fs::path b_dir = dir / "b";
  fs::create_directories(b_dir);
  give_to(b_dir, *b_);

  auto run_as_b = [&](const fs::path& program, const fs::path& log) {
    return run_command("setpriv --reuid=" + std::to_string(b_->uid()) +
                       " --regid=" + std::to_string(b_->gid()) + " --clear-groups env MQSEC_LOG=" +
                       shell_quote("file:" + log.string()) + " " + shell_quote(program.string()));
  };
  const fs::path suid_log = dir / "setuid.log";
  auto r = run_as_b(suid, suid_log);
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_FALSE(fs::exists(suid_log))
      << "a setuid-root program wrote where its caller's MQSEC_LOG said";

  // Positive control: the same program without the setuid bit does log there.
  const fs::path plain_log = b_dir / "plain.log";
  r = run_as_b(plain, plain_log);
  ASSERT_TRUE(r.ok()) << r.output;
  ASSERT_TRUE(fs::exists(plain_log)) << "the probe did not log where MQSEC_LOG said";
  Bytes text = read_file(plain_log);
  EXPECT_NE(std::string(text.begin(), text.end()).find("mqsec log probe"), std::string::npos);
}

TEST_F(HardeningWithUserB, ImpersonatingThreadCannotUseTheProcesssEnvironmentAsPinSource) {
  setenv("MQSEC_HARDENING_PIN", "1234", 1);
  EXPECT_EQ(mqsec::pkcs11::read_pin("env:MQSEC_HARDENING_PIN").str(), "1234");  // the service
  std::string what;
  bool read = false;
  std::string err = run_as_user(*b_, [&] {
    try {
      read = !mqsec::pkcs11::read_pin("env:MQSEC_HARDENING_PIN").empty();
    } catch (const mqsec::pkcs11::Error& e) {
      what = e.what();
    }
  });
  ASSERT_TRUE(err.empty()) << err;
  EXPECT_FALSE(read) << "an impersonating thread read the service's environment as its PIN";
  EXPECT_EQ(what.find("1234"), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// 5. Files

// Runs `fn` in a forked child with a deadline; returns the child's exit status, or -1 when it
// had to be killed (it blocked).
int in_child(const std::function<int()>& fn, std::chrono::seconds deadline) {
  pid_t pid = fork();
  if (pid < 0) return -2;
  if (pid == 0) {
    int rc = 1;
    try {
      rc = fn();
    } catch (...) {
      rc = 99;
    }
    _exit(rc);
  }
  auto until = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    int status = 0;
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -3;
    if (std::chrono::steady_clock::now() >= until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// 0: read_pin refused `source` with a message containing `expect`; 2: it returned a PIN;
// 3: it refused for another reason.
int refuses(const std::string& source, const std::string& expect) {
  try {
    mqsec::pkcs11::read_pin(source);
    return 2;
  } catch (const mqsec::pkcs11::Error& e) {
    if (std::string(e.what()).find(expect) == std::string::npos) {
      std::fprintf(stderr, "refused for another reason: %s\n", e.what());
      return 3;
    }
    return 0;
  }
}

TEST_F(Hardening, PinFileThatIsAFifoIsRefusedAtOnce) {
  const fs::path fifo = env().dir() / ("pin-fifo-" + name_);
  ASSERT_EQ(0, mkfifo(fifo.c_str(), 0600));
  const auto start = std::chrono::steady_clock::now();
  int rc =
      in_child([&] { return refuses("file:" + fifo.string(), "FIFO"); }, std::chrono::seconds(5));
  EXPECT_NE(-1, rc) << "reading a FIFO PIN source blocked (killed after 5 s)";
  EXPECT_EQ(0, rc);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  // A device is refused too.
  EXPECT_EQ(0,
            in_child([] { return refuses("file:/dev/null", "device"); }, std::chrono::seconds(5)));
  unlink(fifo.c_str());
}

TEST_F(Hardening, PinFileThatIsASymbolicLinkIsRefused) {
  const fs::path real = env().write_pin_file("pin-real-" + name_, "1234");
  const fs::path link = env().dir() / ("pin-link-" + name_);
  fs::remove(link);
  fs::create_symlink(real, link);
  EXPECT_EQ(mqsec::pkcs11::read_pin("file:" + real.string()).str(), "1234");  // the file is fine
  EXPECT_EQ(0, in_child([&] { return refuses("file:" + link.string(), "symbolic link"); },
                        std::chrono::seconds(5)));
}

// Logs one line to `log` (MQSEC_LOG=file:<log>) in a child process, with umask `mask` when
// given; 0 when the child ran to its end.
int log_line_in_child(const fs::path& log, const std::string& line,
                      std::optional<mode_t> mask = std::nullopt) {
  return in_child(
      [&] {
        if (mask) umask(*mask);
        setenv("MQSEC_LOG", ("file:" + log.string()).c_str(), 1);
        mqsec::log(mqsec::LogLevel::Error, line);
        return 0;
      },
      std::chrono::seconds(10));
}

// Expects `p` to exist with permission bits `mode` and some content.
void expect_mode_and_content(const fs::path& p, mode_t mode) {
  struct stat st {};
  ASSERT_EQ(0, stat(p.c_str(), &st)) << p;
  EXPECT_EQ(mode, st.st_mode & 07777) << p;
  EXPECT_GT(st.st_size, 0) << p;
}

TEST_F(Hardening, LogFileIsNeverFollowedThroughASymbolicLink) {
  const fs::path target = env().dir() / ("log-target-" + name_);
  write_file(target, "", 0600);
  const fs::path link = env().dir() / ("log-link-" + name_);
  fs::remove(link);
  fs::create_symlink(target, link);
  EXPECT_EQ(0, log_line_in_child(link, "through a link"));
  EXPECT_EQ(0u, fs::file_size(target)) << "the log was written through a symbolic link";
  EXPECT_TRUE(fs::is_symlink(link));
}

TEST_F(Hardening, NewLogFileIsOwnerOnlyWhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{0777}}) {
    SCOPED_TRACE("umask " + std::to_string(mask));
    const fs::path log = env().dir() / ("log-new-" + name_ + "-" + std::to_string(mask));
    fs::remove(log);
    EXPECT_EQ(0, log_line_in_child(log, "first line", mask));
    expect_mode_and_content(log, 0600);
  }
  // An existing log keeps the mode its owner gave it.
  const fs::path existing = env().dir() / ("log-existing-" + name_);
  write_file(existing, "", 0640);
  EXPECT_EQ(0, log_line_in_child(existing, "appended"));
  expect_mode_and_content(existing, 0640);
}

}  // namespace
