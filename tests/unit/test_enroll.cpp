// Issue 11, item 4: cards that cannot generate keys. `mqsec enroll --adopt [URI]` and
// MQRegisterCertificate(MQCERT_REGISTER_IF_NOT_EXIST, NULL) make a certificate already on the
// token (with its private key) the user's internal certificate and register it, through the core
// path (core::register_certificate) on the mock module, which the system configuration names
// by its file: the test links the same shared object, so its helpers steer the module the
// runtime loads.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "mqsec/error.hpp"
#include "mqsec/security_context.hpp"
#include "pkcs11/module.hpp"
#include "src/core/admin.hpp"
#include "src/core/registration.hpp"
#include "src/security/config.hpp"
#include "src/security/context.hpp"
#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"
#include "tests/mock/mock_pkcs11.hpp"

using namespace mqsec;
namespace mock = mqsec::mock;
namespace fs = std::filesystem;

namespace {

security::Bytes self_signed(EVP_PKEY* key, const std::string& cn) {
  security::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key);
  X509_sign(cert.get(), key, EVP_sha256());
  return security::to_der(cert.get());
}

class EnrollAdopt : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/mqsec-adopt-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::replace);
    std::ofstream(dir_ / "mqsec.toml")
        << "[token]\nuri = \"pkcs11:token=mock-a?module-path=" << MQSEC_MOCK_MODULE
        << "&pin-source=env:MQSEC_TEST_PIN\"\n"
        << "[store]\npath = \"" << (dir_ / "store").string() << "\"\n"
        << "[profiles]\ndir = \"" << (dir_ / "users/%u").string() << "\"\n"
        << "[identity]\nsid = \"unix\"\n";
    setenv("MQSEC_CONFIG", (dir_ / "mqsec.toml").c_str(), 1);
    setenv("MQSEC_LOG", ("file:" + (dir_ / "mqsec.log").string()).c_str(), 1);
    setenv("MQSEC_STATE_DIR", dir_.c_str(), 1);
    setenv("MQSEC_TEST_PIN", "1234", 1);
    // A fresh card in slot 0 for each test; the runtime keeps its Module (and Token) for the
    // process, so the mock is initialised again here as the loaded module would be.
    mock::reset();
    ASSERT_EQ(mock::function_list()->C_Initialize(nullptr), static_cast<CK_RV>(CKR_OK));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // A key with its certificate on the card, as a vendor tool provisions a PIV slot.
  security::PkeyPtr provision(const std::vector<uint8_t>& id, const std::string& label,
                              const std::string& cn, bool always_authenticate = false) {
    security::PkeyPtr key(EVP_EC_gen("P-256"));
    mock::add_key(0, key.get(), id, label, self_signed(key.get(), cn), true, false,
                  always_authenticate);
    return key;
  }
  static security::EnrollOptions adopt(const std::string& selector = {}) {
    security::EnrollOptions o;
    o.adopt = true;
    o.adopt_selector = selector;
    return o;
  }
  std::string internal_certificate() {
    security::UserSetup setup = security::resolve_user();
    return setup.profile.internal_certificate;
  }
  bool registered(const security::Bytes& der) {
    return core::registered_sid_of(dir_ / "store", der).has_value();
  }
  fs::path dir_;
};

}  // namespace

TEST_F(EnrollAdopt, TheOnlyCertificateWithItsKeyBecomesTheInternalOneAndIsRegistered) {
  security::PkeyPtr key = provision({0x9a}, "Certificate for PIV Authentication", "alice");
  core::Registered r = core::register_certificate({}, false, adopt());
  EXPECT_TRUE(r.adopted);
  EXPECT_EQ(r.code, MQ_OK);
  EXPECT_NE(r.object_uri.find("id=%9A"), std::string::npos) << r.object_uri;
  EXPECT_NE(r.object_uri.find("serial=MOCKSERIAL0001"), std::string::npos) << r.object_uri;
  EXPECT_EQ(internal_certificate(), r.object_uri);
  EXPECT_TRUE(registered(r.der));
  // MQGetSecurityContextEx(NULL) now finds it, and it signs with the card's key.
  auto ctx = security::acquire_context({});
  std::vector<uint8_t> digest(32, 0x5a);
  auto sig = ctx->sign_digest(pkcs11::Hash::Sha256, digest);
  security::PkeyCtxPtr v(EVP_PKEY_CTX_new(key.get(), nullptr));
  ASSERT_EQ(EVP_PKEY_verify_init(v.get()), 1);
  EXPECT_EQ(EVP_PKEY_verify(v.get(), sig.data(), sig.size(), digest.data(), digest.size()), 1);
}

TEST_F(EnrollAdopt, SeveralCandidatesAreListedAndTheUriChoosesOne) {
  provision({0x9a}, "PIV AUTH key", "alice auth");
  provision({0x9c}, "SIGN key", "alice sign", true);  // PIN-always, like PIV slot 9C
  try {
    core::register_certificate({}, false, adopt());
    FAIL() << "adopted one of two certificates without being told which";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_INVALID_PARAMETER);
    const std::string what = e.what();
    EXPECT_NE(what.find("'PIV AUTH key' id=9a"), std::string::npos) << what;
    EXPECT_NE(what.find("'SIGN key' id=9c"), std::string::npos) << what;
    EXPECT_NE(what.find("--adopt"), std::string::npos) << what;
  }
  EXPECT_EQ(internal_certificate(), "");
  core::Registered by_id = core::register_certificate({}, false, adopt("pkcs11:id=%9C"));
  EXPECT_NE(by_id.object_uri.find("id=%9C"), std::string::npos);
  EXPECT_EQ(security::subject_string(security::parse_der_strict(by_id.der).get()), "CN=alice sign");
  core::Registered by_label =
      core::register_certificate({}, false, adopt("pkcs11:object=PIV%20AUTH%20key"));
  EXPECT_NE(by_label.object_uri.find("id=%9A"), std::string::npos);
  EXPECT_EQ(internal_certificate(), by_label.object_uri);
  // A URI that selects nothing, or names another token, adopts nothing.
  EXPECT_THROW(core::register_certificate({}, false, adopt("pkcs11:id=%01")), Error);
  try {
    core::register_certificate({}, false, adopt("pkcs11:token=mock-b;id=%9A"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_INVALID_PARAMETER);
    EXPECT_NE(std::string(e.what()).find("another token"), std::string::npos) << e.what();
  }
  EXPECT_EQ(internal_certificate(), by_label.object_uri);
}

TEST_F(EnrollAdopt, CertificateNextToAnotherKeyIsNotAdopted) {
  // The certificate of one key stored with the CKA_ID of another: not the card's own pair.
  security::PkeyPtr other(EVP_EC_gen("P-256"));
  security::PkeyPtr key(EVP_EC_gen("P-256"));
  mock::add_key(0, key.get(), {0x01}, "mixed", self_signed(other.get(), "mallory"));
  try {
    core::register_certificate({}, false, adopt());
    FAIL() << "adopted a certificate whose key is not on the token";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_INVALID_CERTIFICATE);
    EXPECT_NE(std::string(e.what()).find("another EC public point"), std::string::npos) << e.what();
  }
  EXPECT_EQ(internal_certificate(), "");
}

TEST_F(EnrollAdopt, RegisterIfNotExistAdoptsOnACardThatCannotGenerateKeys) {
  mock::set_key_generation(0, mock::KeyGeneration::FunctionNotSupported);  // OpenSC with PIV
  provision({0x9a}, "Certificate for PIV Authentication", "alice");
  core::Registered r = core::register_certificate({}, true, {});
  EXPECT_TRUE(r.adopted);
  EXPECT_EQ(internal_certificate(), r.object_uri);
  EXPECT_TRUE(registered(r.der));
  EXPECT_EQ(mock::call_count("C_GenerateKeyPair"), 1);
  // MQCERT_REGISTER_ALWAYS means "create a new one": refused, and it says how to adopt instead.
  try {
    core::register_certificate({}, false, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_CORRUPTED_SECURITY_DATA);
    EXPECT_EQ(e.token_error(), TokenError::KeyGenerationUnsupported);
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot generate key pairs"), std::string::npos) << what;
    EXPECT_NE(what.find("mqsec enroll --adopt"), std::string::npos) << what;
    EXPECT_EQ(what.find("doctor"), std::string::npos) << what;
  }
}

TEST_F(EnrollAdopt, NoKeyGenerationAndNothingToAdoptSaysHowToProvision) {
  mock::set_key_generation(0, mock::KeyGeneration::NotOffered);
  for (bool if_not_exist : {true, false}) {
    try {
      core::register_certificate({}, if_not_exist, {});
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), MQ_ERROR_CORRUPTED_SECURITY_DATA);
      EXPECT_EQ(e.token_error(), TokenError::KeyGenerationUnsupported);
      const std::string what = e.what();
      EXPECT_NE(what.find("does not offer CKM_RSA_PKCS_KEY_PAIR_GEN"), std::string::npos) << what;
      EXPECT_NE(what.find("vendor tool"), std::string::npos) << what;
      EXPECT_NE(what.find("mqsec enroll --adopt"), std::string::npos) << what;
    }
  }
  // The flags said so: C_GenerateKeyPair was never called.
  EXPECT_EQ(mock::call_count("C_GenerateKeyPair"), 0);
  try {
    core::register_certificate({}, false, adopt());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_INVALID_CERTIFICATE);
    EXPECT_NE(std::string(e.what()).find("vendor tool"), std::string::npos) << e.what();
  }
}

TEST_F(EnrollAdopt, AnExistingInternalCertificateIsKeptWithIfNotExist) {
  provision({0x9a}, "first", "alice");
  core::Registered first = core::register_certificate({}, false, adopt());
  provision({0x9c}, "second", "alice 2");
  core::Registered again = core::register_certificate({}, true, adopt("pkcs11:id=%9C"));
  EXPECT_EQ(again.code, MQ_INFORMATION_INTERNAL_USER_CERT_EXIST);
  EXPECT_EQ(internal_certificate(), first.object_uri);
}

// Issue 11, item 5: the token failures MSMQ reports alike (MQ_ERROR_CORRUPTED_SECURITY_DATA) are
// told apart in the C++ API's error: its text carries the runtime's reason ("[pin-locked]") and
// token_error() says which one it is; the HRESULT stays MSMQ's.
class TokenErrors : public EnrollAdopt {
 protected:
  // MQGetSecurityContextEx through the header-only C++ API, for the external certificate of
  // a key provisioned on the card; the mqsec::Error it throws.
  Error context_error() {
    try {
      SecurityContext::from_certificate(cert_);
    } catch (const Error& e) {
      return e;
    }
    ADD_FAILURE() << "MQGetSecurityContextEx succeeded";
    return Error(MQ_OK, "");
  }
  void SetUp() override {
    EnrollAdopt::SetUp();
    security::PkeyPtr key(EVP_EC_gen("P-256"));
    cert_ = self_signed(key.get(), "alice");
    mock::add_key(0, key.get(), {0x9a}, "k", cert_);
  }
  security::Bytes cert_;
};

TEST_F(TokenErrors, WrongRefusedFinalTryAndLockedPinsAreToldApart) {
  setenv("MQSEC_TEST_PIN", "4711", 1);  // wrong (and not used by any other test)
  Error wrong = context_error();
  EXPECT_EQ(wrong.code(), MQ_ERROR_CORRUPTED_SECURITY_DATA);
  EXPECT_EQ(wrong.token_error(), TokenError::PinIncorrect) << wrong.what();
  const std::string what = wrong.what();
  EXPECT_NE(what.find("MQGetSecurityContextEx failed: MQ_ERROR_CORRUPTED_SECURITY_DATA"),
            std::string::npos)
      << what;
  EXPECT_NE(what.find("CKR_PIN_INCORRECT"), std::string::npos) << what;
  EXPECT_NE(what.find("[pin-incorrect]"), std::string::npos) << what;
  EXPECT_EQ(what.find("4711"), std::string::npos) << "the PIN is in the error";
  Error again = context_error();
  EXPECT_EQ(again.token_error(), TokenError::PinRefusedBefore) << again.what();
  setenv("MQSEC_TEST_PIN", "1234", 1);
  mock::set_user_pin_failures(0, 2);
  Error final_try = context_error();
  EXPECT_EQ(final_try.token_error(), TokenError::PinFinalTry) << final_try.what();
  mock::set_user_pin_failures(0, 3);
  Error locked = context_error();
  EXPECT_EQ(locked.token_error(), TokenError::PinLocked) << locked.what();
  EXPECT_EQ(locked.code(), MQ_ERROR_CORRUPTED_SECURITY_DATA);
  EXPECT_EQ(mock::call_count("C_Login"), 1) << "a PIN went to the token on the final try or locked";
}

TEST_F(TokenErrors, CardAbsentAndReaderDownAreToldApart) {
  mock::set_token_present(0, false);
  Error absent = context_error();
  EXPECT_EQ(absent.code(), MQ_ERROR_CORRUPTED_SECURITY_DATA);
  EXPECT_EQ(absent.token_error(), TokenError::TokenAbsent) << absent.what();
  mock::set_token_present(0, true);
  mock::fail("C_GetSlotList", CKR_DEVICE_ERROR, 1, true);  // pcscd gone
  Error reader = context_error();
  EXPECT_EQ(reader.token_error(), TokenError::ReaderUnavailable) << reader.what();
  EXPECT_NE(std::string(reader.what()).find("CKR_DEVICE_ERROR"), std::string::npos);
  mock::clear_failures();
  try {
    SecurityContext::from_certificate(cert_);
  } catch (const Error& e) {
    ADD_FAILURE() << e.what();
  }
}

TEST_F(TokenErrors, KeyGenerationUnsupportedThroughRegisterCertificate) {
  mock::set_key_generation(0, mock::KeyGeneration::FunctionNotSupported);
  try {
    register_certificate(MQCERT_REGISTER_ALWAYS);
    FAIL() << "enrolled on a card that cannot generate keys";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_CORRUPTED_SECURITY_DATA);
    EXPECT_EQ(e.token_error(), TokenError::KeyGenerationUnsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("mqsec enroll --adopt"), std::string::npos) << e.what();
  }
  // MQCERT_REGISTER_IF_NOT_EXIST adopts the one certificate with its key.
  EXPECT_EQ(register_certificate(MQCERT_REGISTER_IF_NOT_EXIST), MQ_OK);
  EXPECT_NO_THROW(SecurityContext::internal());
}
