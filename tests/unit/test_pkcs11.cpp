// The pkcs11/ layer against the mock module: token lookup by URI, the session pool, login
// and PIN sources, device signing with each mechanism, and the one checked error path.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <thread>

#include "pkcs11/error.hpp"
#include "pkcs11/module.hpp"
#include "pkcs11/pin.hpp"
#include "pkcs11/signer.hpp"
#include "pkcs11/token.hpp"
#include "pkcs11/uri.hpp"
#include "tests/mock/mock_pkcs11.hpp"

using namespace mqsec::pkcs11;
namespace mock = mqsec::mock;

namespace {

EVP_PKEY* make_key(const char* type) {
  return std::string(type) == "RSA" ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
}

class Pkcs11Test : public ::testing::Test {
 protected:
  void SetUp() override {
    mock::reset();
    setenv("MQSEC_TEST_PIN", "1234", 1);
    // A fresh refusal memory (pin_refusals.hpp) per test.
    char dir[] = "/tmp/mqsec-pinstate-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    state_dir_ = dir;
    setenv("MQSEC_STATE_DIR", dir, 1);
    module_ = Module::from_function_list(mock::function_list(), "mock");
  }
  std::shared_ptr<Token> token(const std::string& uri) {
    return Token::open(module_, Uri::parse(uri));
  }
  void TearDown() override {
    if (!state_dir_.empty()) {
      std::error_code ignored;  // a test's leftovers in a temporary directory
      std::filesystem::remove_all(state_dir_, ignored);
    }
  }
  // A PIN file of our own, mode 0600.
  std::string pin_file(const std::string& pin) {
    std::string path = state_dir_ + "/pin";
    { std::ofstream(path, std::ios::trunc) << pin; }
    chmod(path.c_str(), 0600);
    return "file:" + path;
  }
  std::shared_ptr<Module> module_;
  std::string state_dir_;
};

std::vector<uint8_t> sha256(const std::string& s) {
  std::vector<uint8_t> d(32);
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d.data());
  return d;
}

bool verify(EVP_PKEY* key, const std::vector<uint8_t>& digest, const std::vector<uint8_t>& sig,
            bool pss) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key, nullptr);
  bool ok = EVP_PKEY_verify_init(ctx) == 1;
  if (EVP_PKEY_is_a(key, "RSA")) {
    ok = ok &&
         EVP_PKEY_CTX_set_rsa_padding(ctx, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) == 1;
    if (pss) ok = ok && EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
  }
  ok = ok && EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1;
  ok = ok && EVP_PKEY_verify(ctx, sig.data(), sig.size(), digest.data(), digest.size()) == 1;
  EVP_PKEY_CTX_free(ctx);
  return ok;
}

}  // namespace

TEST_F(Pkcs11Test, RvNamesAndErrorsCarryTheFunction) {
  EXPECT_EQ(rv_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
  EXPECT_EQ(rv_name(0x8123), "CKR_0x00008123");
  Error e("C_Sign", CKR_DEVICE_ERROR);
  EXPECT_EQ(e.rv(), CKR_DEVICE_ERROR);
  EXPECT_EQ(e.function(), "C_Sign");
  EXPECT_STREQ(e.what(), "C_Sign failed: CKR_DEVICE_ERROR");
}

TEST_F(Pkcs11Test, UriParsingAndPinValueRefused) {
  Uri u = Uri::parse("pkcs11:token=mock-a;id=%01%02;type=cert?module-path=/x.so&pin-source=env:X");
  EXPECT_EQ(u.token_label(), "mock-a");
  EXPECT_EQ(u.module_path(), "/x.so");
  EXPECT_EQ(u.pin_source(), "env:X");
  EXPECT_EQ(*u.object_id(), (std::vector<uint8_t>{1, 2}));
  EXPECT_EQ(*u.object_class(), static_cast<CK_OBJECT_CLASS>(CKO_CERTIFICATE));
  EXPECT_THROW(Uri::parse("http://example"), Error);
  try {
    Uri::parse("pkcs11:token=a?pin-value=secret99");
    FAIL() << "pin-value accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("secret99"), std::string::npos);
  }
  EXPECT_EQ(object_uri("my token", "S1", {0x01, 0xab}, "cert"),
            "pkcs11:token=my%20token;serial=S1;id=%01%AB;type=cert");
}

TEST_F(Pkcs11Test, TokenFoundByLabelOrSerialNeverBySlot) {
  EXPECT_EQ(token("pkcs11:token=mock-b")->serial(), "MOCKSERIAL0002");
  EXPECT_EQ(token("pkcs11:serial=MOCKSERIAL0001")->label(), "mock-a");
  EXPECT_THROW(token("pkcs11:token=absent"), Error);
  try {
    token("pkcs11:");  // matches both tokens
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 tokens match"), std::string::npos);
  }
  mock::set_token_present(0, false);
  EXPECT_THROW(token("pkcs11:token=mock-a"), Error);
}

TEST_F(Pkcs11Test, SessionPoolIsCappedByTheTokensLimit) {
  auto t = token("pkcs11:token=mock-a");  // ulMaxSessionCount 4
  std::vector<Token::Session> held;
  for (int i = 0; i < 4; ++i) held.push_back(t->session());
  EXPECT_EQ(mock::open_session_count(0), 4);
  try {
    t->session(50);
    FAIL() << "a fifth session was handed out";
  } catch (const Error& e) {
    EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_SESSION_COUNT));
  }
  // A waiter gets the session another thread gives back.
  std::thread giver([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    held.pop_back();
  });
  Token::Session s = t->session(5000);
  giver.join();
  EXPECT_NE(s.handle(), static_cast<CK_SESSION_HANDLE>(CK_INVALID_HANDLE));
  EXPECT_EQ(mock::open_session_count(0), 4);
}

// CI's ASan run once saw every send after a token removal wait and fail with
// CKR_SESSION_COUNT (MQ_ERROR_INSUFFICIENT_RESOURCES), even after re-insertion: another thread's
// recovery ran while a broken session was being closed, reset the pool's count, and the close
// then decremented the new generation's count below zero (an unsigned wrap: "pool full").
TEST_F(Pkcs11Test, RecoveryWhileABrokenSessionIsClosedLeavesThePoolUsable) {
  auto t = token("pkcs11:token=mock-b");
  t->login("env:MQSEC_TEST_PIN");
  uint64_t before = 0;
  {
    Token::Session s = t->session();
    before = s.generation();
    s.discard();
    // Another thread's recovery while the token is out: it fails, and leaves the new
    // generation with no session counted.
    mock::on_next_close_session([&] {
      std::thread other([&] {
        mock::set_token_present(1, false);
        EXPECT_THROW(t->recover(before, "env:MQSEC_TEST_PIN"), Error);
      });
      other.join();
    });
  }  // closed here, with the recovery in the middle
  EXPECT_GT(t->generation(), before);
  mock::set_token_present(1, true);  // re-inserted: the pool must hand out sessions again
  std::vector<Token::Session> held;
  for (int i = 0; i < 8; ++i) ASSERT_NO_THROW(held.push_back(t->session(200))) << "session " << i;
}

// A session leased before a recovery and given back after it belongs to the old generation:
// it is closed, never pooled into the new one.
TEST_F(Pkcs11Test, SessionGivenBackAfterARecoveryIsClosedNotPooled) {
  auto t = token("pkcs11:token=mock-b");
  t->login("env:MQSEC_TEST_PIN");
  Token::Session old = t->session();
  const CK_SESSION_HANDLE old_handle = old.handle();
  t->recover(old.generation(), "env:MQSEC_TEST_PIN");
  old = Token::Session();  // given back after the recovery: closed, not pooled
  std::vector<Token::Session> held;
  for (int i = 0; i < 8; ++i) {
    held.push_back(t->session(200));
    EXPECT_NE(held.back().handle(), old_handle) << "session " << i;
  }
}

TEST_F(Pkcs11Test, LoginFromEnvAndAlreadyLoggedInIsSuccess) {
  auto t = token("pkcs11:token=mock-a");
  t->login("env:MQSEC_TEST_PIN");
  EXPECT_TRUE(t->logged_in());
  EXPECT_TRUE(mock::logged_in(0));
  t->login("env:MQSEC_TEST_PIN");  // no second C_Login
  EXPECT_EQ(mock::call_count("C_Login"), 1);
}

TEST_F(Pkcs11Test, WrongPinIsNeverRetried) {
  setenv("MQSEC_WRONG_PIN", "9999", 1);
  auto t = token("pkcs11:token=mock-b");
  for (int i = 0; i < 5; ++i) {
    try {
      t->login("env:MQSEC_WRONG_PIN");
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_PIN_INCORRECT));
      EXPECT_EQ(std::string(e.what()).find("9999"), std::string::npos);
    }
  }
  EXPECT_EQ(mock::call_count("C_Login"), 1) << "the same wrong PIN was submitted again";
  t->login("env:MQSEC_TEST_PIN");  // a corrected PIN is tried
  EXPECT_TRUE(t->logged_in());
}

TEST_F(Pkcs11Test, PinFilesMustBeOwnerOnly) {
  char dir[] = "/tmp/mqsec-pin-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/pin";
  std::ofstream(path) << "1234\n";
  chmod(path.c_str(), 0644);
  EXPECT_THROW(read_pin("file:" + path), Error);
  chmod(path.c_str(), 0600);
  EXPECT_EQ(read_pin("file:" + path).str(), "1234");
  EXPECT_THROW(read_pin("file:relative/pin"), Error);
  EXPECT_THROW(read_pin("env:MQSEC_UNSET_VARIABLE_X"), Error);
  EXPECT_THROW(read_pin("exec:/bin/true"), Error);
  unlink(path.c_str());
  rmdir(dir);
}

TEST_F(Pkcs11Test, SignsWithEachMechanismAndSignaturesVerify) {
  auto t = token("pkcs11:token=mock-a");
  t->login("env:MQSEC_TEST_PIN");
  EVP_PKEY* rsa = make_key("RSA");
  EVP_PKEY* ec = make_key("EC");
  SignKey rk{mock::add_key(0, rsa, {1}, "rsa", {}), Scheme::RsaPkcs1, 256, false};
  SignKey pk = rk;
  pk.scheme = Scheme::RsaPss;
  SignKey ek{mock::add_key(0, ec, {2}, "ec", {}), Scheme::Ecdsa, 64, false};
  auto d = sha256("message");
  EXPECT_TRUE(verify(rsa, d, sign_digest(*t, rk, Hash::Sha256, d, ""), false));
  EXPECT_TRUE(verify(rsa, d, sign_digest(*t, pk, Hash::Sha256, d, ""), true));
  auto ecsig = sign_digest(*t, ek, Hash::Sha256, d, "");
  EXPECT_EQ(ecsig[0], 0x30) << "ECDSA signature not converted to DER";
  EXPECT_TRUE(verify(ec, d, ecsig, false));
  auto other = sha256("other");
  EXPECT_FALSE(verify(rsa, other, sign_digest(*t, rk, Hash::Sha256, d, ""), false));
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);
}

TEST_F(Pkcs11Test, AlwaysAuthenticateKeysGetAContextLogin) {
  auto t = token("pkcs11:token=mock-a");
  t->login("env:MQSEC_TEST_PIN");
  EVP_PKEY* ec = make_key("EC");
  SignKey k{mock::add_key(0, ec, {3}, "aa", {}, true, false, true), Scheme::Ecdsa, 64, true};
  auto d = sha256("x");
  EXPECT_TRUE(verify(ec, d, sign_digest(*t, k, Hash::Sha256, d, "env:MQSEC_TEST_PIN"), false));
  EXPECT_EQ(mock::call_count("C_Login"), 2);  // user login + context-specific login
  k.always_authenticate = false;              // without the context login the token refuses
  EXPECT_THROW(sign_digest(*t, k, Hash::Sha256, d, ""), Error);
  EVP_PKEY_free(ec);
}

TEST_F(Pkcs11Test, DeviceErrorsComeBackWithFunctionAndCode) {
  auto t = token("pkcs11:token=mock-a");
  t->login("env:MQSEC_TEST_PIN");
  EVP_PKEY* ec = make_key("EC");
  SignKey k{mock::add_key(0, ec, {4}, "e", {}), Scheme::Ecdsa, 64, false};
  auto d = sha256("y");
  mock::fail("C_Sign", CKR_DEVICE_ERROR);
  try {
    sign_digest(*t, k, Hash::Sha256, d, "");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.function(), "C_Sign");
    EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_DEVICE_ERROR));
  }
  // The failed session was not returned to the pool; the next signature works.
  EXPECT_TRUE(verify(ec, d, sign_digest(*t, k, Hash::Sha256, d, ""), false));
  mock::fail("C_SignInit", CKR_KEY_HANDLE_INVALID);
  EXPECT_THROW(sign_digest(*t, k, Hash::Sha256, d, ""), Error);
  EVP_PKEY_free(ec);
}

TEST_F(Pkcs11Test, ManyThreadsSignAtOnce) {
  auto t = token("pkcs11:token=mock-b");
  t->login("env:MQSEC_TEST_PIN");
  EVP_PKEY* ec = make_key("EC");
  SignKey k{mock::add_key(1, ec, {5}, "t", {}), Scheme::Ecdsa, 64, false};
  std::atomic<int> good{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&, i] {
      for (int j = 0; j < 25; ++j) {
        auto d = sha256(std::to_string(i * 100 + j));
        if (verify(ec, d, sign_digest(*t, k, Hash::Sha256, d, ""), false)) ++good;
      }
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(good.load(), 200);
  EVP_PKEY_free(ec);
}

TEST(DigestInfo, PrefixesAreTheRfc8017Ones) {
  std::vector<uint8_t> d(32, 0xaa);
  auto di = digest_info(Hash::Sha256, d);
  ASSERT_EQ(di.size(), 19u + 32u);
  EXPECT_EQ(di[0], 0x30);
  EXPECT_EQ(di[18], 0x20);
  EXPECT_EQ(digest_size(Hash::Sha384), 48u);
  EXPECT_THROW(ecdsa_raw_to_der(std::vector<uint8_t>(63, 1)), Error);
}

// OpenSSL's encoding of r||s, the reference ecdsa_raw_to_der must match byte for byte.
std::vector<uint8_t> openssl_ecdsa_der(const std::vector<uint8_t>& raw) {
  const size_t half = raw.size() / 2;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(raw.data(), static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig, r, s) != 1) {
    ADD_FAILURE() << "OpenSSL could not build the reference signature";
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return {};
  }
  const int len = i2d_ECDSA_SIG(sig, nullptr);
  std::vector<uint8_t> der(static_cast<size_t>(len > 0 ? len : 0));
  unsigned char* p = der.data();
  i2d_ECDSA_SIG(sig, &p);
  ECDSA_SIG_free(sig);
  return der;
}

TEST(EcdsaDer, MatchesOpenSslForEveryShapeOfRAndS) {
  // P-256, P-384 and P-521 (66-byte halves: a long-form SEQUENCE length), and odd sizes; each
  // half random, or with leading zero bytes, its high bit set, all zero, or all 0xff.
  size_t checked = 0;
  for (size_t half : {1u, 2u, 31u, 32u, 48u, 63u, 64u, 66u, 100u}) {
    for (int shape_r = 0; shape_r < 6; ++shape_r) {
      for (int shape_s = 0; shape_s < 6; ++shape_s) {
        for (int trial = 0; trial < 20; ++trial) {
          std::vector<uint8_t> raw(2 * half);
          ASSERT_EQ(RAND_bytes(raw.data(), static_cast<int>(raw.size())), 1);
          auto shape = [&](uint8_t* h, int kind) {
            switch (kind) {
              case 1:
                h[0] = 0;
                break;  // one zero
              case 2:
                std::fill(h, h + std::min<size_t>(half, 3), 0);
                break;  // several
              case 3:
                h[0] |= 0x80;
                break;  // high bit
              case 4:
                std::fill(h, h + half, 0);
                break;  // zero
              case 5:
                std::fill(h, h + half, 0xff);
                break;  // all ones
              default:
                break;  // random
            }
            if (kind == 1 && half > 1) h[1] |= 0x80;  // a zero before a high bit
          };
          shape(raw.data(), shape_r);
          shape(raw.data() + half, shape_s);
          ASSERT_EQ(ecdsa_raw_to_der(raw), openssl_ecdsa_der(raw))
              << "half " << half << ", shapes " << shape_r << "/" << shape_s;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 9u * 36u * 20u);
  EXPECT_THROW(ecdsa_raw_to_der(std::vector<uint8_t>()), Error);
  // The DER length it (and enrollment, and the store's CKA_EC_POINT) writes, at each form's edges.
  auto length = [](size_t n) {
    Bytes out;
    append_der_length(out, n);
    return out;
  };
  EXPECT_EQ(length(0), (Bytes{0x00}));
  EXPECT_EQ(length(127), (Bytes{0x7f}));
  EXPECT_EQ(length(128), (Bytes{0x81, 0x80}));
  EXPECT_EQ(length(255), (Bytes{0x81, 0xff}));
  EXPECT_EQ(length(256), (Bytes{0x82, 0x01, 0x00}));
  EXPECT_EQ(length(0x10000), (Bytes{0x83, 0x01, 0x00, 0x00}));
  EXPECT_THROW(ecdsa_raw_to_der(std::vector<uint8_t>(65, 1)), Error);
}

TEST_F(Pkcs11Test, LostLoginIsRecoveredOnceFromThePinSource) {
  auto t = token("pkcs11:token=mock-a");
  t->login("env:MQSEC_TEST_PIN");
  EVP_PKEY* ec = make_key("EC");
  SignKey k{mock::add_key(0, ec, {6}, "r", {}), Scheme::Ecdsa, 64, false};
  auto d = sha256("z");
  {
    // Another application logs the token out behind our back.
    Token::Session s = t->session();
    ASSERT_EQ(mock::function_list()->C_Logout(s.handle()), static_cast<CK_RV>(CKR_OK));
  }
  ASSERT_FALSE(mock::logged_in(0));
  EXPECT_TRUE(verify(ec, d, sign_digest(*t, k, Hash::Sha256, d, "env:MQSEC_TEST_PIN"), false));
  EXPECT_EQ(mock::call_count("C_Login"), 2);
  // Breaking every pooled session never logs us out: an anchor session holds the login.
  mock::fail("C_Sign", CKR_DEVICE_ERROR);
  EXPECT_THROW(sign_digest(*t, k, Hash::Sha256, d, "env:MQSEC_TEST_PIN"), Error);
  EXPECT_TRUE(mock::logged_in(0));
  EVP_PKEY_free(ec);
}

namespace {

// A token object of its own, as a restarted process would have: drops the process-wide cache
// by opening the token through another Module object over the same function list.
std::shared_ptr<Token> fresh_token(const std::string& uri) {
  return Token::open(Module::from_function_list(mock::function_list(), "mock"), Uri::parse(uri));
}

}  // namespace

// Issue 11, item 1: a failed context-specific login leaves the sign operation active (as OpenSC
// does); the session must not go back to the pool like that, or every later signature fails
// with CKR_OPERATION_ACTIVE even after the PIN source is corrected.
TEST_F(Pkcs11Test, FailedContextLoginDoesNotPoisonTheSession) {
  auto t = token("pkcs11:token=mock-b");
  std::string source = pin_file("1234");
  t->login(source);
  EVP_PKEY* ec = make_key("EC");
  SignKey k{mock::add_key(1, ec, {7}, "pa", {}, true, false, true), Scheme::Ecdsa, 64, true};
  auto d = sha256("p");
  // A wrong PIN in the source: the context login fails once.
  pin_file("9999");
  try {
    sign_digest(*t, k, Hash::Sha256, d, source);
    FAIL() << "signed with a wrong context PIN";
  } catch (const Error& e) {
    EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_PIN_INCORRECT)) << e.what();
  }
  // Injected failures (device errors) between C_SignInit and C_Sign as well.
  pin_file("1234");
  mock::fail_context_login(1, CKR_DEVICE_ERROR, 2);
  EXPECT_THROW(sign_digest(*t, k, Hash::Sha256, d, source), Error);
  EXPECT_THROW(sign_digest(*t, k, Hash::Sha256, d, source), Error);
  // The PIN source is fixed: every later signature works, none meets CKR_OPERATION_ACTIVE.
  for (int i = 0; i < 10; ++i) {
    try {
      EXPECT_TRUE(verify(ec, d, sign_digest(*t, k, Hash::Sha256, d, source), false));
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
  EVP_PKEY_free(ec);
}

// 8 threads x 50 signatures with the PIN-always key `k`, each thread on the token that
// token_for_thread() gives it (one shared, or its own); how many signatures verified.
template <class TokenFor>
int signatures_from_threads(EVP_PKEY* key, const SignKey& k, TokenFor token_for_thread) {
  std::atomic<int> good{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&, i] {
      auto t = token_for_thread();
      for (int j = 0; j < 50; ++j) {
        auto d = sha256(std::to_string(i * 1000 + j));
        try {
          if (verify(key, d, sign_digest(*t, k, Hash::Sha256, d, "env:MQSEC_TEST_PIN"), false)) {
            ++good;
          }
        } catch (const Error&) {
        }
      }
    });
  }
  for (auto& th : ts) th.join();
  return good.load();
}

// Issue 11, item 2: a PIN verification is good for the next signature on the card, whatever
// the session; concurrent PIN-always signers must not consume each other's.
TEST_F(Pkcs11Test, PinAlwaysKeyFromManyThreadsSharedContext) {
  auto t = token("pkcs11:token=mock-a");  // 4 sessions for 8 threads
  t->login("env:MQSEC_TEST_PIN");
  mock::set_card_latency(std::chrono::microseconds(300));
  EVP_PKEY* ec = make_key("EC");
  SignKey k{mock::add_key(0, ec, {8}, "pa", {}, true, false, true), Scheme::Ecdsa, 64, true};
  EXPECT_EQ(signatures_from_threads(ec, k, [&] { return t; }), 400);
  EXPECT_TRUE(mock::logged_in(0));
  EVP_PKEY_free(ec);
}

TEST_F(Pkcs11Test, PinAlwaysKeyFromManyThreadsContextPerThread) {
  token("pkcs11:token=mock-b")->login("env:MQSEC_TEST_PIN");
  mock::set_card_latency(std::chrono::microseconds(300));
  EVP_PKEY* ec = make_key("EC");
  const CK_OBJECT_HANDLE h = mock::add_key(1, ec, {9}, "pa", {}, true, false, true);
  const SignKey k{h, Scheme::Ecdsa, 64, true};
  EXPECT_EQ(signatures_from_threads(ec, k,
                                    [&] {
                                      auto t = token("pkcs11:token=mock-b");  // its own context
                                      t->login("env:MQSEC_TEST_PIN");
                                      return t;
                                    }),
            400);
  EVP_PKEY_free(ec);
}

// Issue 11, item 3: the token's PIN state is read before a PIN is presented.
TEST_F(Pkcs11Test, FinalTryOrLockedPinIsNeverPresented) {
  mock::set_user_pin_failures(0, 2);  // CKF_USER_PIN_FINAL_TRY
  auto t = token("pkcs11:token=mock-a");
  try {
    t->login("env:MQSEC_TEST_PIN");
    FAIL() << "logged in on the final try";
  } catch (const Error& e) {
    EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_PIN_LOCKED));
    EXPECT_NE(std::string(e.what()).find("one user PIN try is left"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(mock::call_count("C_Login"), 0);
  mock::set_user_pin_failures(0, 3);  // CKF_USER_PIN_LOCKED
  try {
    t->login("env:MQSEC_TEST_PIN");
    FAIL() << "logged in to a locked token";
  } catch (const Error& e) {
    EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_PIN_LOCKED));
    EXPECT_NE(std::string(e.what()).find("PIN is locked"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("PUK"), std::string::npos) << e.what();
  }
  EXPECT_EQ(mock::call_count("C_Login"), 0);
  // One failed try (CKF_USER_PIN_COUNT_LOW) only warns.
  mock::set_user_pin_failures(0, 1);
  t->login("env:MQSEC_TEST_PIN");
  EXPECT_EQ(mock::call_count("C_Login"), 1);
}

TEST_F(Pkcs11Test, RefusedPinIsRememberedAcrossProcesses) {
  // mock-b: every token object here keeps its sessions for the life of the process.
  std::string source = pin_file("9999");
  {
    auto t = fresh_token("pkcs11:token=mock-b");
    try {
      t->login(source);
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_PIN_INCORRECT));
    }
  }
  EXPECT_EQ(mock::call_count("C_Login"), 1);
  struct stat st {};
  ASSERT_EQ(stat((state_dir_ + "/pin-refusals").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  {
    std::ifstream in(state_dir_ + "/pin-refusals");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(all.find("9999"), std::string::npos);
  }
  // A "restarted process": a new token object with no memory of its own.
  {
    auto t = fresh_token("pkcs11:token=mock-b");
    try {
      t->login(source);
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.rv(), static_cast<CK_RV>(CKR_PIN_INCORRECT));
      EXPECT_NE(std::string(e.what()).find("refused this PIN before"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(mock::call_count("C_Login"), 1) << "the refused PIN was presented again";
  // Corrected PIN file: it is presented, works, and the record is cleared.
  pin_file("1234");
  fresh_token("pkcs11:token=mock-b")->login(source);
  EXPECT_EQ(mock::call_count("C_Login"), 2);
  EXPECT_NE(stat((state_dir_ + "/pin-refusals").c_str(), &st), 0);
}

// Issue 11, item 4: OpenSC cuts a token label longer than 32 bytes to 29 bytes and "...". A URI
// naming the label as the card's owner knows it (up to the 32 bytes a URI can carry) still
// finds the token; the truncated label itself, and the serial, find it too.
TEST_F(Pkcs11Test, TruncatedTokenLabelMatchesItsBeginning) {
  const std::string shown = "Card of Alexandra Example-Hol...";  // as C_GetTokenInfo gives it
  ASSERT_EQ(shown.size(), 32u);
  mock::insert_card(1, {shown, "PIVSERIAL0042", "1234"});
  EXPECT_EQ(token("pkcs11:token=Card%20of%20Alexandra%20Example-Holmes")->serial(),
            "PIVSERIAL0042");
  EXPECT_EQ(token("pkcs11:token=Card%20of%20Alexandra%20Example-Hol...")->serial(),
            "PIVSERIAL0042");
  // The whole label, longer than the 32 bytes of CK_TOKEN_INFO.
  EXPECT_EQ(token("pkcs11:token=Card%20of%20Alexandra%20Example-Holmes%20the%20Second;"
                  "serial=PIVSERIAL0042?pin-source=env:X")
                ->serial(),
            "PIVSERIAL0042");
  EXPECT_THROW(token("pkcs11:token=Card%20of%20Alexandra%20Example-Hal%20the%20Second"), Error);
  EXPECT_EQ(token("pkcs11:serial=PIVSERIAL0042")->label(), shown);
  // The first 29 bytes must agree, and the other attributes still count.
  EXPECT_THROW(token("pkcs11:token=Card%20of%20Alexandra%20Example-Hal"), Error);
  EXPECT_THROW(token("pkcs11:token=Card%20of%20Alexandra%20Example-Holmes;serial=OTHER"), Error);
  EXPECT_TRUE(truncated_label_matches("Card of Alexandra Example-Holmes", shown));
  EXPECT_FALSE(truncated_label_matches("Card of Alexandra Example-Ho", shown));  // too short
  EXPECT_FALSE(truncated_label_matches("mock-a", "mock-a"));  // not a truncated label
}

// Issue 11, item 8: a reader with a PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH). A token URI
// without pin-source logs in with C_Login(NULL, 0): the user types the PIN on the pad, and no
// PIN source is read. The token's PIN state still counts: a locked PIN is not asked for, while
// the final try is the user's own to make on the pad.
TEST_F(Pkcs11Test, PinPadLoginPassesNoPinAndReadsNoPinSource) {
  mock::set_pin_pad(0, true);
  unsetenv("MQSEC_TEST_PIN");  // nothing to read even if something tried
  auto t = token("pkcs11:token=mock-a");
  ASSERT_TRUE(t->flags() & CKF_PROTECTED_AUTHENTICATION_PATH);
  t->login("");
  EXPECT_TRUE(t->logged_in());
  EXPECT_TRUE(mock::logged_in(0));
  EXPECT_EQ(mock::call_count("C_Login"), 1);
  // A PIN-always key: the context-specific login is typed on the pad too.
  EVP_PKEY* ec = make_key("EC");
  SignKey k{mock::add_key(0, ec, {0x9c}, "pad", {}, true, false, true), Scheme::Ecdsa, 64, true};
  auto d = sha256("pad");
  EXPECT_TRUE(verify(ec, d, sign_digest(*t, k, Hash::Sha256, d, ""), false));
  EXPECT_EQ(mock::call_count("C_Login"), 2);
  EVP_PKEY_free(ec);
}

TEST_F(Pkcs11Test, PinPadWrongPinFinalTryAndLockedPin) {
  mock::set_pin_pad(1, true, CKR_PIN_INCORRECT);  // the user types a wrong PIN
  auto t = token("pkcs11:token=mock-b");
  try {
    t->login("");
    FAIL() << "logged in with a wrong PIN on the pad";
  } catch (const Error& e) {
    EXPECT_EQ(e.problem(), Problem::PinIncorrect);
    EXPECT_NE(std::string(e.what()).find("entered on the PIN pad"), std::string::npos) << e.what();
  }
  // Final try: the pad may still ask (the user decides), and a right PIN resets the counter.
  mock::set_user_pin_failures(1, 2);
  mock::set_pin_pad(1, true, CKR_OK);
  t->login("");
  EXPECT_TRUE(mock::logged_in(1));
  // Locked: not even the pad is asked.
  auto t2 = fresh_token("pkcs11:token=mock-b");
  mock::set_user_pin_failures(1, 3);
  {
    Token::Session s = t2->session();
    ASSERT_EQ(mock::function_list()->C_Logout(s.handle()), static_cast<CK_RV>(CKR_OK));
  }
  const int logins = mock::call_count("C_Login");
  try {
    t2->login("");
    FAIL() << "asked for the PIN of a locked token";
  } catch (const Error& e) {
    EXPECT_EQ(e.problem(), Problem::PinLocked) << e.what();
  }
  EXPECT_EQ(mock::call_count("C_Login"), logins);
}

// Without a pad, a token URI without pin-source is an error that says what to add.
TEST_F(Pkcs11Test, NoPinSourceWithoutAPinPadIsAPinSourceError) {
  auto t = token("pkcs11:token=mock-a");
  try {
    t->login("");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.problem(), Problem::PinSource);
    EXPECT_NE(std::string(e.what()).find("pin-source"), std::string::npos) << e.what();
  }
  try {
    t->login("env:MQSEC_UNSET_PIN_VARIABLE");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.problem(), Problem::PinSource) << e.what();
  }
  EXPECT_EQ(mock::call_count("C_Login"), 0);
}
