// Recovery of a security context's token on the mock module: card pulled and re-inserted,
// sessions closed behind our back, and a forked child using an inherited context.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "pkcs11/error.hpp"
#include "pkcs11/module.hpp"
#include "pkcs11/token.hpp"
#include "src/security/context.hpp"
#include "tests/mock/mock_pkcs11.hpp"

using namespace mqsec;
namespace mock = mqsec::mock;

namespace {

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mock::reset();
    setenv("MQSEC_TEST_PIN", "1234", 1);
    char dir[] = "/tmp/mqsec-pinstate-XXXXXX";  // a fresh PIN refusal memory per test
    ASSERT_NE(mkdtemp(dir), nullptr);
    state_dir_ = dir;
    setenv("MQSEC_STATE_DIR", dir, 1);
    key_.reset(EVP_EC_gen("P-256"));
    security::X509Ptr cert(X509_new());
    X509_set_pubkey(cert.get(), key_.get());
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
    X509_sign(cert.get(), key_.get(), EVP_sha256());
    der_ = security::to_der(cert.get());
    auto module = pkcs11::Module::from_function_list(mock::function_list(), "mock");
    token_ = pkcs11::Token::open(module, pkcs11::Uri::parse("pkcs11:token=mock-a"));
    token_->login("env:MQSEC_TEST_PIN");
    pkcs11::SignKey k{mock::add_key(0, key_.get(), {7, 7}, "k", der_), pkcs11::Scheme::Ecdsa, 64,
                      false};
    security::UserIdentity user;
    user.sid = security::Sid::unix_user(1000);
    ctx_ = std::make_shared<security::SecurityContext>(der_, security::parse_der_strict(der_),
                                                       token_, "env:MQSEC_TEST_PIN", k,
                                                       security::Bytes{7, 7}, user);
  }
  void TearDown() override {
    if (!state_dir_.empty()) {
      std::error_code ignored;  // a test's leftovers in a temporary directory
      std::filesystem::remove_all(state_dir_, ignored);
    }
  }
  // A context on a PIN-always (CKA_ALWAYS_AUTHENTICATE) key of the same token.
  std::shared_ptr<security::SecurityContext> pin_always_context(CK_OBJECT_HANDLE h) {
    pkcs11::SignKey k{h, pkcs11::Scheme::Ecdsa, 64, true};
    security::UserIdentity user;
    user.sid = security::Sid::unix_user(1000);
    return std::make_shared<security::SecurityContext>(der_, security::parse_der_strict(der_),
                                                       token_, "env:MQSEC_TEST_PIN", k,
                                                       security::Bytes{8, 8}, user);
  }
  bool signs_with(security::SecurityContext& ctx, uint8_t fill) {
    std::vector<uint8_t> d(32, fill);
    auto sig = ctx.sign_digest(pkcs11::Hash::Sha256, d);
    EVP_PKEY_CTX* v = EVP_PKEY_CTX_new(key_.get(), nullptr);
    bool ok = EVP_PKEY_verify_init(v) == 1 &&
              EVP_PKEY_verify(v, sig.data(), sig.size(), d.data(), d.size()) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
  }
  std::string state_dir_;
  bool signs() {
    std::vector<uint8_t> d(32, 0x42);
    auto sig = ctx_->sign_digest(pkcs11::Hash::Sha256, d);
    EVP_PKEY_CTX* v = EVP_PKEY_CTX_new(key_.get(), nullptr);
    bool ok = EVP_PKEY_verify_init(v) == 1 &&
              EVP_PKEY_verify(v, sig.data(), sig.size(), d.data(), d.size()) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
  }
  security::PkeyPtr key_;
  security::Bytes der_;
  std::shared_ptr<pkcs11::Token> token_;
  std::shared_ptr<security::SecurityContext> ctx_;
};

}  // namespace

TEST_F(RecoveryTest, RemovedTokenFailsClearlyAndTheSameContextWorksAfterReinsertion) {
  ASSERT_TRUE(signs());
  mock::set_token_present(0, false);
  try {
    signs();
    FAIL() << "signed with the token removed";
  } catch (const pkcs11::Error& e) {
    EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_TOKEN_NOT_PRESENT)) << e.what();
  }
  mock::set_token_present(0, true);
  EXPECT_TRUE(signs());  // no action by the application
  EXPECT_TRUE(mock::logged_in(0));
}

TEST_F(RecoveryTest, SessionsClosedBehindOurBackAreTransparent) {
  ASSERT_TRUE(signs());
  ASSERT_EQ(mock::function_list()->C_CloseAllSessions(0), static_cast<CK_RV>(CKR_OK));
  EXPECT_TRUE(signs());
  EXPECT_TRUE(signs());
}

TEST_F(RecoveryTest, WrongPinDuringRecoveryIsNotRetried) {
  ASSERT_TRUE(signs());
  mock::set_token_present(0, false);
  mock::set_token_present(0, true);
  setenv("MQSEC_TEST_PIN", "0000", 1);  // the PIN source now holds a wrong PIN
  EXPECT_THROW(signs(), pkcs11::Error);
  EXPECT_THROW(signs(), pkcs11::Error);
  int logins = mock::call_count("C_Login");
  EXPECT_THROW(signs(), pkcs11::Error);
  EXPECT_EQ(mock::call_count("C_Login"), logins) << "a refused PIN was submitted again";
}

TEST_F(RecoveryTest, ForkedChildUsingAnInheritedContextNeverHangs) {
  ASSERT_TRUE(signs());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);  // a deadlock would be killed by SIGALRM and fail the test
    int rc = 2;
    try {
      rc = signs() ? 0 : 1;
    } catch (const pkcs11::Error&) {
      rc = 3;  // a clear error is acceptable
    }
    _exit(rc);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died by signal " << WTERMSIG(status);
  EXPECT_TRUE(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3) << WEXITSTATUS(status);
  EXPECT_TRUE(signs());  // the parent is unaffected
}

// Issue 11, item 2: PIN-always signatures from 8 threads, on one shared context and on a
// context per thread (all on one token, whose PIN verification is good for one signature):
// every one succeeds, and the token stays logged in throughout.
TEST_F(RecoveryTest, PinAlwaysKeySignsFromManyThreadsAndContexts) {
  const CK_OBJECT_HANDLE h = mock::add_key(0, key_.get(), {8, 8}, "pa", {}, true, false, true);
  mock::set_card_latency(std::chrono::microseconds(300));
  auto shared = pin_always_context(h);
  for (bool per_thread : {false, true}) {
    std::atomic<int> good{0};
    std::atomic<int> errors{0};
    std::string first_error;
    std::mutex m;
    std::vector<std::thread> ts;
    for (int i = 0; i < 8; ++i) {
      ts.emplace_back([&, i] {
        auto ctx = per_thread ? pin_always_context(h) : shared;
        for (int j = 0; j < 50; ++j) {
          try {
            if (signs_with(*ctx, static_cast<uint8_t>(i * 50 + j))) ++good;
          } catch (const pkcs11::Error& e) {
            if (errors++ == 0) {
              std::lock_guard lock(m);
              first_error = e.what();
            }
          }
        }
      });
    }
    for (auto& th : ts) th.join();
    EXPECT_EQ(good.load(), 400) << (per_thread ? "per-thread" : "shared")
                                << " contexts; first error: " << first_error;
    EXPECT_TRUE(mock::logged_in(0));
  }
}

// Issue 11, item 7: a token is its card, not its slot. The card is pulled, recovery fails
// while it is out, and another card (same label, same PIN, another serial) goes into the
// reader: the context must neither sign with that card nor present the PIN to it; it says
// "card replaced", and works again as soon as its own card is back, in either reader.
TEST_F(RecoveryTest, AnotherCardInTheSameSlotIsNeverUsedNorGivenThePin) {
  ASSERT_TRUE(signs());
  mock::set_token_present(0, false);
  EXPECT_THROW(signs(), pkcs11::Error);  // recovery fails while the card is out
  // Another card with our label and PIN, and a key of its own with our CKA_ID.
  mock::insert_card(0, {"mock-a", "OTHERCARD0001", "1234"});
  security::PkeyPtr other(EVP_EC_gen("P-256"));
  mock::add_key(0, other.get(), {7, 7}, "k", {});
  const int logins = mock::call_count("C_Login");
  const int sign_inits = mock::call_count("C_SignInit");
  for (int i = 0; i < 3; ++i) {
    try {
      signs();
      FAIL() << "signed with another card";
    } catch (const pkcs11::Error& e) {
      EXPECT_EQ(e.problem(), pkcs11::Problem::CardReplaced) << e.what();
      EXPECT_NE(std::string(e.what()).find("card replaced"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("OTHERCARD0001"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(mock::call_count("C_Login"), logins) << "the PIN was presented to another card";
  EXPECT_EQ(mock::call_count("C_SignInit"), sign_inits) << "a key handle went to another card";
  EXPECT_EQ(mock::open_session_count(0), 0) << "a session on the other card stayed open";
  // Our card in the other reader: found by its serial, logged in, the key found again.
  mock::insert_card(1, {"mock-a", "MOCKSERIAL0001", "1234"});
  EXPECT_TRUE(signs());
  EXPECT_EQ(token_->slot(), 1u);
  // And back in the first reader, in place of the other card.
  mock::insert_card(0, {"mock-a", "MOCKSERIAL0001", "1234"});
  EXPECT_TRUE(signs());
  EXPECT_EQ(token_->slot(), 0u);
}

// The same when the card is swapped while the token is idle and logged in: the first
// signature after it meets closed sessions, and recovery finds the other card in the slot.
TEST_F(RecoveryTest, CardSwappedWhileIdleIsReportedAsReplaced) {
  ASSERT_TRUE(signs());
  mock::insert_card(0, {"mock-a", "OTHERCARD0002", "1234"});
  const int logins = mock::call_count("C_Login");
  try {
    signs();
    FAIL() << "signed with another card";
  } catch (const pkcs11::Error& e) {
    EXPECT_EQ(e.problem(), pkcs11::Problem::CardReplaced) << e.what();
  }
  EXPECT_EQ(mock::call_count("C_Login"), logins) << "the PIN was presented to another card";
  mock::insert_card(0, {"mock-a", "MOCKSERIAL0001", "1234"});
  EXPECT_TRUE(signs());
}

// Token::recover used to strand the sessions other threads held at that moment: forgotten,
// never closed, still counted by the token against its session limit.
TEST_F(RecoveryTest, SessionsLeasedDuringARecoveryAreClosedWhenGivenBack) {
  ASSERT_TRUE(signs());
  const int before = mock::open_session_count(0);
  {
    pkcs11::Token::Session held = token_->session();
    pkcs11::Token::Session held2 = token_->session();
    const int leased = mock::open_session_count(0);
    // A recovery that finds the card still there (e.g. after CKR_USER_NOT_LOGGED_IN).
    token_->recover(token_->generation(), "env:MQSEC_TEST_PIN");
    EXPECT_GE(mock::open_session_count(0), leased - 1);  // the held ones are still open
  }
  EXPECT_LE(mock::open_session_count(0), before) << "sessions held during recovery leaked";
  EXPECT_TRUE(signs());
}
