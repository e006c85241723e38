// Tests of the fault-injection PKCS#11 module (tests/fault/fault_pkcs11.cpp) on a temporary
// SoftHSM token, driven through mqsec's own PKCS#11 layer (Module::load, Token::open, login
// from a PIN file) and through raw Cryptoki calls where the exact CK_RV matters: forwarding,
// Nth-call and persistent failures, call counts, token removal (old sessions fail with
// CKR_DEVICE_REMOVED, the token disappears, the real login is lost), re-insertion under the
// same and under new slot ids, concurrent callers, and the MQSEC_FAULT_SPEC environment
// control (in a re-executed child of this test program).
#include <gtest/gtest.h>

#include "pkcs11/cryptoki.hpp"

#include <dlfcn.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pkcs11/error.hpp"
#include "pkcs11/module.hpp"
#include "pkcs11/token.hpp"
#include "pkcs11/uri.hpp"
#include "tests/fault/fault_control.h"

#ifndef MQSEC_FAULT_MODULE
#error "MQSEC_FAULT_MODULE must name the fault-injection module (libmqsec_fault_pkcs11.so)"
#endif
#ifndef MQSEC_INIT_TOKEN
#error "MQSEC_INIT_TOKEN must name the mqsec-init-token executable"
#endif

extern char** environ;

namespace {

namespace fs = std::filesystem;
using mqsec::pkcs11::Error;
using mqsec::pkcs11::Module;
using mqsec::pkcs11::Token;
using mqsec::pkcs11::Uri;

constexpr const char* kLabel = "fault-it";
constexpr const char* kSoftHsm = "/usr/lib/softhsm/libsofthsm2.so";
// Set in the environment of this program re-executed as a child (the EnvSpec tests).
constexpr const char* kChildVar = "MQSEC_FAULT_TEST_CHILD";

fs::path g_dir;  // the temporary SoftHSM installation
fs::path g_pin_file;

void write_private(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::trunc);
  out << content;
  out.close();
  if (!out || ::chmod(p.c_str(), 0600) != 0) throw std::runtime_error("cannot write " + p.string());
}

// A throwaway SoftHSM token per test process. A re-executed child uses its parent's (it
// inherits SOFTHSM2_CONF) and the parent removes it.
class SoftHsmToken : public ::testing::Environment {
 public:
  void SetUp() override {
    if (std::getenv(kChildVar) != nullptr) {
      g_pin_file = std::getenv(kChildVar);
      return;
    }
    std::string tmpl = (fs::temp_directory_path() / "mqsec-fault.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    g_dir = tmpl;
    fs::create_directories(g_dir / "tokens");
    write_private(g_dir / "softhsm2.conf", "directories.tokendir = " + (g_dir / "tokens").string() +
                                               "\nobjectstore.backend = file\nlog.level = ERROR\n");
    // Before anything loads SoftHSM: it reads the configuration in C_Initialize.
    ::setenv("SOFTHSM2_CONF", (g_dir / "softhsm2.conf").c_str(), 1);
    g_pin_file = g_dir / "user.pin";
    write_private(g_pin_file, "1234");
    write_private(g_dir / "so.pin", "5678");
    std::string cmd = std::string("'") + MQSEC_INIT_TOKEN + "' --module '" + kSoftHsm +
                      "' --label " + kLabel + " --pin-file '" + g_pin_file.string() +
                      "' --so-pin-file '" + (g_dir / "so.pin").string() + "' 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
    ASSERT_TRUE(p);
    std::string out;
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p.get())) > 0) out.append(buf, n);
    ASSERT_EQ(::pclose(p.release()), 0) << "mqsec-init-token failed: " << out;
  }
  void TearDown() override {
    if (!g_dir.empty() && std::getenv("MQSEC_IT_KEEP") == nullptr) {
      std::error_code ec;
      fs::remove_all(g_dir, ec);
    }
  }
};

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new SoftHsmToken);

// The control API, from the module instance that Module::load brought into the process.
struct Control {
  mqsec_fault_reset_fn reset;
  mqsec_fault_fail_fn fail;
  mqsec_fault_clear_fn clear;
  mqsec_fault_remove_token_fn remove_token;
  mqsec_fault_insert_token_fn insert_token;
  mqsec_fault_call_count_fn call_count;
};

template <typename F>
F sym(void* dl, const char* name) {
  auto f = reinterpret_cast<F>(::dlsym(dl, name));
  if (f == nullptr) throw std::runtime_error(std::string("fault module lacks ") + name);
  return f;
}

Control control() {
  // RTLD_NOLOAD: the very instance our layer loaded, not a second copy.
  void* dl = ::dlopen(MQSEC_FAULT_MODULE, RTLD_NOW | RTLD_NOLOAD);
  if (dl == nullptr) throw std::runtime_error("the fault module is not loaded");
  return {sym<mqsec_fault_reset_fn>(dl, "mqsec_fault_reset"),
          sym<mqsec_fault_fail_fn>(dl, "mqsec_fault_fail"),
          sym<mqsec_fault_clear_fn>(dl, "mqsec_fault_clear"),
          sym<mqsec_fault_remove_token_fn>(dl, "mqsec_fault_remove_token"),
          sym<mqsec_fault_insert_token_fn>(dl, "mqsec_fault_insert_token"),
          sym<mqsec_fault_call_count_fn>(dl, "mqsec_fault_call_count")};
}

std::string pin_source() { return "file:" + g_pin_file.string(); }

std::vector<CK_SLOT_ID> slot_list(CK_FUNCTION_LIST* f, CK_BBOOL present) {
  CK_ULONG n = 0;
  EXPECT_EQ(f->C_GetSlotList(present, nullptr, &n), CKR_OK);
  std::vector<CK_SLOT_ID> slots(n);
  if (n > 0) {
    EXPECT_EQ(f->C_GetSlotList(present, slots.data(), &n), CKR_OK);
  }
  slots.resize(n);
  return slots;
}

bool contains(const std::vector<CK_SLOT_ID>& v, CK_SLOT_ID s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

CK_RV random_bytes(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE h) {
  CK_BYTE buf[16];
  return f->C_GenerateRandom(h, buf, sizeof buf);
}

CK_STATE session_state(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE h, CK_SLOT_ID* slot = nullptr) {
  CK_SESSION_INFO info{};
  EXPECT_EQ(f->C_GetSessionInfo(h, &info), CKR_OK);
  if (slot != nullptr) *slot = info.slotID;
  return info.state;
}

class FaultModule : public ::testing::Test {
 protected:
  void SetUp() override {
    module_ = Module::load(MQSEC_FAULT_MODULE);
    f_ = module_->fn();
    ctl_ = control();
    // Every test starts with the card freshly inserted into a new reader: no real session or
    // login left by an earlier test in this process, and a slot id our layer has not seen, so
    // Token::open gives a new Token rather than the process-wide one an earlier test used.
    ctl_.reset();
    ctl_.remove_token();
    ctl_.insert_token(1);
    ctl_.reset();
  }
  void TearDown() override { ctl_.reset(); }

  std::shared_ptr<Token> open_token() {
    return Token::open(module_, Uri::parse(std::string("pkcs11:token=") + kLabel));
  }

  std::shared_ptr<Module> module_;
  CK_FUNCTION_LIST* f_ = nullptr;
  Control ctl_{};
};

TEST_F(FaultModule, ForwardsCallsToTheRealModule) {
  CK_INFO info{};
  ASSERT_EQ(f_->C_GetInfo(&info), CKR_OK);
  EXPECT_EQ(mqsec::pkcs11::padded_string(info.manufacturerID, sizeof info.manufacturerID),
            "SoftHSM");

  auto token = open_token();
  EXPECT_EQ(token->label(), kLabel);
  CK_TOKEN_INFO ti{};
  ASSERT_EQ(f_->C_GetTokenInfo(token->slot(), &ti), CKR_OK);
  EXPECT_EQ(mqsec::pkcs11::padded_string(ti.label, sizeof ti.label), kLabel);
  EXPECT_EQ(mqsec::pkcs11::padded_string(ti.serialNumber, sizeof ti.serialNumber), token->serial());
  EXPECT_TRUE(ti.flags & CKF_TOKEN_INITIALIZED);
}

TEST_F(FaultModule, FailsTheNthCallOnce) {
  auto token = open_token();
  CK_TOKEN_INFO ti{};
  ctl_.fail("C_GetTokenInfo", CKR_DEVICE_ERROR, 3, 0);
  EXPECT_EQ(f_->C_GetTokenInfo(token->slot(), &ti), CKR_OK);
  EXPECT_EQ(f_->C_GetTokenInfo(token->slot(), &ti), CKR_OK);
  EXPECT_EQ(f_->C_GetTokenInfo(token->slot(), &ti), CKR_DEVICE_ERROR);
  EXPECT_EQ(f_->C_GetTokenInfo(token->slot(), &ti), CKR_OK);

  // Through our layer: the failure surfaces as pkcs11::Error carrying the injected CK_RV.
  ctl_.fail("C_GetSlotList", CKR_FUNCTION_FAILED, 1, 0);
  try {
    open_token();
    ADD_FAILURE() << "Token::open succeeded despite the injected failure";
  } catch (const Error& e) {
    EXPECT_EQ(e.rv(), CKR_FUNCTION_FAILED) << e.what();
  }
  EXPECT_EQ(open_token()->label(), kLabel);
}

TEST_F(FaultModule, PersistentFailureLastsUntilCleared) {
  auto token = open_token();
  Token::Session s = token->session();
  ctl_.fail("C_GenerateRandom", CKR_DEVICE_ERROR, 2, 1);
  EXPECT_EQ(random_bytes(f_, s.handle()), CKR_OK);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(random_bytes(f_, s.handle()), CKR_DEVICE_ERROR) << i;
  CK_SESSION_INFO info{};
  EXPECT_EQ(f_->C_GetSessionInfo(s.handle(), &info), CKR_OK);  // other functions unaffected
  ctl_.clear();
  EXPECT_EQ(random_bytes(f_, s.handle()), CKR_OK);
  EXPECT_EQ(ctl_.call_count("C_GenerateRandom"), 6);
}

TEST_F(FaultModule, CountsCalls) {
  EXPECT_EQ(ctl_.call_count("C_GetInfo"), 0);
  CK_INFO info{};
  for (int i = 0; i < 5; ++i) ASSERT_EQ(f_->C_GetInfo(&info), CKR_OK);
  EXPECT_EQ(ctl_.call_count("C_GetInfo"), 5);
  ctl_.fail("C_GetInfo", CKR_GENERAL_ERROR, 1, 0);
  EXPECT_EQ(f_->C_GetInfo(&info), CKR_GENERAL_ERROR);
  EXPECT_EQ(ctl_.call_count("C_GetInfo"), 6);  // injected failures count too
  EXPECT_EQ(ctl_.call_count("C_NoSuchFunction"), 0);
  ctl_.reset();
  EXPECT_EQ(ctl_.call_count("C_GetInfo"), 0);
}

TEST_F(FaultModule, LogsInThroughOurLayer) {
  auto token = open_token();
  token->login(pin_source());
  EXPECT_TRUE(token->logged_in());
  Token::Session s = token->session();
  CK_SLOT_ID slot = 0;
  EXPECT_EQ(session_state(f_, s.handle(), &slot), CKS_RO_USER_FUNCTIONS);
  EXPECT_EQ(slot, token->slot());
  EXPECT_GE(ctl_.call_count("C_Login"), 1);
}

TEST_F(FaultModule, RemovalFailsOldSessionsAndHidesTheToken) {
  auto token = open_token();
  const CK_SLOT_ID slot = token->slot();
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  ASSERT_EQ(f_->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &h), CKR_OK);
  {
    // Log in on a session of our own so the real login's fate is observable below.
    std::ifstream in(g_pin_file);
    std::string pin;
    std::getline(in, pin);
    CK_RV rv = f_->C_Login(h, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size());
    ASSERT_TRUE(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) << rv;
  }
  ASSERT_EQ(session_state(f_, h), CKS_RO_USER_FUNCTIONS);

  ctl_.remove_token();

  EXPECT_EQ(random_bytes(f_, h), CKR_DEVICE_REMOVED);
  EXPECT_EQ(random_bytes(f_, h), CKR_SESSION_HANDLE_INVALID);
  EXPECT_TRUE(slot_list(f_, CK_TRUE).empty());
  EXPECT_TRUE(contains(slot_list(f_, CK_FALSE), slot));
  CK_SLOT_INFO si{};
  ASSERT_EQ(f_->C_GetSlotInfo(slot, &si), CKR_OK);
  EXPECT_FALSE(si.flags & CKF_TOKEN_PRESENT);
  CK_TOKEN_INFO ti{};
  EXPECT_EQ(f_->C_GetTokenInfo(slot, &ti), CKR_TOKEN_NOT_PRESENT);
  CK_SESSION_HANDLE h2 = CK_INVALID_HANDLE;
  EXPECT_EQ(f_->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &h2),
            CKR_TOKEN_NOT_PRESENT);
  try {
    open_token();
    ADD_FAILURE() << "Token::open found a removed token";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no token"), std::string::npos) << e.what();
  }

  ctl_.insert_token(0);
  auto again = open_token();
  EXPECT_EQ(again->slot(), slot);
  EXPECT_EQ(f_->C_GetTokenInfo(slot, &ti), CKR_OK);
  // The old session stays dead; a new one works and is not logged in: the card lost it.
  EXPECT_EQ(random_bytes(f_, h), CKR_SESSION_HANDLE_INVALID);
  ASSERT_EQ(f_->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &h2), CKR_OK);
  EXPECT_NE(h2, h);
  EXPECT_EQ(random_bytes(f_, h2), CKR_OK);
  EXPECT_EQ(session_state(f_, h2), CKS_RO_PUBLIC_SESSION);
  EXPECT_EQ(f_->C_CloseSession(h2), CKR_OK);
  EXPECT_EQ(f_->C_CloseSession(h2), CKR_SESSION_HANDLE_INVALID);
}

TEST_F(FaultModule, ReinsertedUnderNewSlotIdsIsFoundByLabel) {
  auto before = open_token();
  const CK_SLOT_ID old_slot = before->slot();
  ctl_.remove_token();
  ctl_.insert_token(1);

  auto token = open_token();  // by label: the slot id it had is gone
  EXPECT_NE(token->slot(), old_slot);
  EXPECT_EQ(token->slot(), old_slot + 1000);
  EXPECT_EQ(token->serial(), before->serial());
  auto present = slot_list(f_, CK_TRUE);
  EXPECT_TRUE(contains(present, token->slot()));
  EXPECT_FALSE(contains(present, old_slot));
  CK_TOKEN_INFO ti{};
  EXPECT_NE(f_->C_GetTokenInfo(old_slot, &ti), CKR_OK);

  // Log in again from the PIN source and use the token under its new id.
  token->login(pin_source());
  Token::Session s = token->session();
  CK_SLOT_ID slot = 0;
  EXPECT_EQ(session_state(f_, s.handle(), &slot), CKS_RO_USER_FUNCTIONS);
  EXPECT_EQ(slot, token->slot());  // C_GetSessionInfo reports the translated id
  EXPECT_EQ(random_bytes(f_, s.handle()), CKR_OK);
}

TEST_F(FaultModule, ConcurrentCallersSeeACleanRemoval) {
  auto token = open_token();
  constexpr int kThreads = 4;
  struct Result {
    int calls = 0;
    CK_RV first_failure = CKR_OK, after = CKR_OK;
  };
  std::vector<Result> results(kThreads);
  std::vector<CK_SESSION_HANDLE> sessions(kThreads);
  for (auto& h : sessions) {
    ASSERT_EQ(f_->C_OpenSession(token->slot(), CKF_SERIAL_SESSION, nullptr, nullptr, &h), CKR_OK);
  }
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Result& r = results[t];
      for (;;) {
        CK_RV rv = random_bytes(f_, sessions[t]);
        if (++r.calls == 1) started.fetch_add(1);
        if (rv != CKR_OK) {
          r.first_failure = rv;
          break;
        }
      }
      r.after = random_bytes(f_, sessions[t]);
      ++r.calls;
    });
  }
  while (started.load() < kThreads) std::this_thread::yield();
  ctl_.remove_token();
  for (auto& th : threads) th.join();

  int total = 0;
  for (const Result& r : results) {
    // Every call either completed on the real token or was refused; none saw a half-closed
    // real session.
    EXPECT_EQ(r.first_failure, CKR_DEVICE_REMOVED);
    EXPECT_EQ(r.after, CKR_SESSION_HANDLE_INVALID);
    total += r.calls;
  }
  EXPECT_EQ(ctl_.call_count("C_GenerateRandom"), total);
}

TEST_F(FaultModule, ExportsOnlyTheEntryPointAndControl) {
  std::string cmd = std::string("nm -D --defined-only '") + MQSEC_FAULT_MODULE + "' 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  ASSERT_TRUE(p);
  char line[1024];
  std::set<std::string> exported;
  while (std::fgets(line, sizeof line, p.get()) != nullptr) {
    std::string l(line);
    std::string name = l.substr(l.find_last_of(' ') + 1);
    name.erase(name.find_last_not_of("\n") + 1);
    exported.insert(name);
  }
  EXPECT_EQ(::pclose(p.release()), 0);
  // The Cryptoki entry point and the control functions of fault_control.h, nothing else.
  const std::set<std::string> expected{"C_GetFunctionList",        "mqsec_fault_call_count",
                                       "mqsec_fault_clear",        "mqsec_fault_fail",
                                       "mqsec_fault_insert_token", "mqsec_fault_remove_token",
                                       "mqsec_fault_reset",        "mqsec_fault_set_sign_delay"};
  EXPECT_EQ(exported, expected);
}

// Runs this program again with `env` added, running only the (disabled) test `filter`.
int run_child(const std::string& filter, const std::vector<std::string>& env) {
  std::vector<std::string> envs = env;
  envs.push_back(std::string(kChildVar) + "=" + g_pin_file.string());
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "MQSEC_FAULT_", 12) != 0) envs.emplace_back(*e);
  }
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::string f = "--gtest_filter=" + filter;
  std::string d = "--gtest_also_run_disabled_tests";
  char* argv[] = {exe.data(), f.data(), d.data(), nullptr};
  pid_t pid = 0;
  if (::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, envp.data()) != 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(FaultEnvSpec, RulesFromTheEnvironmentApplyInAChild) {
  EXPECT_EQ(run_child("FaultChild.DISABLED_AppliesSpec",
                      {"MQSEC_FAULT_SPEC=C_GetTokenInfo:CKR_DEVICE_ERROR:2:0,"
                       "C_GenerateRandom:0x32:1:1"}),
            0);
}

TEST(FaultEnvSpec, MalformedSpecFailsInitialize) {
  EXPECT_EQ(run_child("FaultChild.DISABLED_LoadFails", {"MQSEC_FAULT_SPEC=C_Sign:CKR_NOPE:1:0"}),
            0);
}

TEST(FaultEnvSpec, MissingTargetFailsToLoad) {
  EXPECT_EQ(
      run_child("FaultChild.DISABLED_LoadFails", {"MQSEC_FAULT_TARGET=/nonexistent/libnothing.so"}),
      0);
}

// Child bodies: only run by run_child (disabled in a normal run).
TEST(FaultChild, DISABLED_AppliesSpec) {
  // Raw calls only: our Token::open makes C_GetTokenInfo calls of its own (one per slot).
  auto module = Module::load(MQSEC_FAULT_MODULE);
  CK_FUNCTION_LIST* f = module->fn();
  auto slots = slot_list(f, CK_TRUE);
  ASSERT_FALSE(slots.empty());
  CK_TOKEN_INFO ti{};
  EXPECT_EQ(f->C_GetTokenInfo(slots[0], &ti), CKR_OK);
  EXPECT_EQ(f->C_GetTokenInfo(slots[0], &ti), CKR_DEVICE_ERROR);
  EXPECT_EQ(f->C_GetTokenInfo(slots[0], &ti), CKR_OK);
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  ASSERT_EQ(f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, nullptr, nullptr, &h), CKR_OK);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(random_bytes(f, h), CKR_DEVICE_REMOVED);
  EXPECT_EQ(control().call_count("C_GenerateRandom"), 3);
}

TEST(FaultChild, DISABLED_LoadFails) { EXPECT_THROW(Module::load(MQSEC_FAULT_MODULE), Error); }

}  // namespace
