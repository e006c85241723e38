// Tests for the mock PKCS#11 module itself, so unit tests built on it can trust what it does:
// Cryptoki conventions (size queries, error codes, login state), signatures that verify with
// OpenSSL, and the test knobs (failure injection, token removal, counters).
#include "tests/mock/mock_pkcs11.hpp"

#include <gtest/gtest.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace mock = mqsec::mock;
using Bytes = std::vector<uint8_t>;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct X509Free {
  void operator()(X509* p) const noexcept { X509_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const noexcept { ECDSA_SIG_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const noexcept { BN_free(p); }
};
struct Asn1StringFree {
  void operator()(ASN1_OCTET_STRING* p) const noexcept { ASN1_OCTET_STRING_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const noexcept { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const noexcept { OSSL_PARAM_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;

constexpr CK_SLOT_ID kSlotA = 0;
constexpr CK_SLOT_ID kSlotB = 1;
const std::string kPin = "1234";
const std::string kSoPin = "5678";
const Bytes kRsaId = {0x01, 0x02};
const Bytes kEcId = {0x0e, 0xc2};

// Generating RSA keys is slow; every test shares these (the mock takes its own reference).
EVP_PKEY* rsa_key() {
  static PkeyPtr key(EVP_RSA_gen(2048));
  return key.get();
}
EVP_PKEY* ec_key(const char* curve) {
  static PkeyPtr p256(EVP_EC_gen("P-256"));
  static PkeyPtr p384(EVP_EC_gen("P-384"));
  return std::string(curve) == "P-256" ? p256.get() : p384.get();
}

Bytes self_signed_cert(EVP_PKEY* key, const char* cn) {
  std::unique_ptr<X509, X509Free> cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 4242);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key);
  X509_sign(cert.get(), key, EVP_sha256());
  const int len = i2d_X509(cert.get(), nullptr);
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  i2d_X509(cert.get(), &p);
  return der;
}

Bytes sha(const EVP_MD* md, const std::string& msg) {
  Bytes out(static_cast<size_t>(EVP_MD_get_size(md)));
  unsigned int len = 0;
  EVP_Digest(msg.data(), msg.size(), out.data(), &len, md, nullptr);
  return out;
}

// DER DigestInfo for SHA-256, as CKM_RSA_PKCS expects it (RFC 8017, 9.2 note 1).
Bytes sha256_digest_info(const std::string& msg) {
  Bytes di = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
              0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
  Bytes h = sha(EVP_sha256(), msg);
  di.insert(di.end(), h.begin(), h.end());
  return di;
}

bool verify_digest_sign(EVP_PKEY* key, const EVP_MD* md, const std::string& msg, const Bytes& sig) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  const bool ok =
      EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) == 1 &&
      EVP_DigestVerify(ctx.get(), sig.data(), sig.size(),
                       reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  ERR_clear_error();
  return ok;
}

bool verify_pss(EVP_PKEY* key, const Bytes& digest, const Bytes& sig, int salt_len) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(key, nullptr));
  const bool ok =
      EVP_PKEY_verify_init(ctx.get()) == 1 &&
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) == 1 &&
      EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) == 1 &&
      EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), salt_len) == 1 &&
      EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), digest.data(), digest.size()) == 1;
  ERR_clear_error();
  return ok;
}

// Cryptoki's r||s to the DER ECDSA-Sig-Value OpenSSL verifies.
Bytes ecdsa_raw_to_der(const Bytes& raw) {
  const int half = static_cast<int>(raw.size() / 2);
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), half, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + half, half, nullptr);
  ECDSA_SIG_set0(sig.get(), r, s);  // takes r and s
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  i2d_ECDSA_SIG(sig.get(), &p);
  return der;
}

CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE type, const void* value, size_t len) {
  return CK_ATTRIBUTE{type, const_cast<void*>(value), static_cast<CK_ULONG>(len)};
}
template <typename T>
CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE type, const T& value) {
  return attr(type, &value, sizeof value);
}
CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE type, const Bytes& value) {
  return attr(type, value.data(), value.size());
}

std::string trimmed(const unsigned char* field, size_t n) {
  std::string s(reinterpret_cast<const char*>(field), n);
  return s.substr(0, s.find_last_not_of(' ') + 1);
}

class MockPkcs11 : public ::testing::Test {
 protected:
  void SetUp() override {
    mock::reset();
    f_ = mock::function_list();
    ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  }
  void TearDown() override { mock::reset(); }

  CK_SESSION_HANDLE open(CK_SLOT_ID slot, CK_FLAGS flags = CKF_SERIAL_SESSION | CKF_RW_SESSION) {
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    EXPECT_EQ(f_->C_OpenSession(slot, flags, nullptr, nullptr, &h), CKR_OK);
    return h;
  }
  CK_RV login(CK_SESSION_HANDLE s, const std::string& pin, CK_USER_TYPE who = CKU_USER) {
    return f_->C_Login(s, who, reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(pin.data())),
                       pin.size());
  }
  std::vector<CK_OBJECT_HANDLE> find(CK_SESSION_HANDLE s, std::vector<CK_ATTRIBUTE> tmpl) {
    std::vector<CK_OBJECT_HANDLE> all;
    EXPECT_EQ(f_->C_FindObjectsInit(s, tmpl.data(), tmpl.size()), CKR_OK);
    CK_OBJECT_HANDLE chunk[2];
    CK_ULONG n = 0;
    // Deliberately small chunks so continuation is exercised.
    while (f_->C_FindObjects(s, chunk, 2, &n) == CKR_OK && n > 0)
      all.insert(all.end(), chunk, chunk + n);
    EXPECT_EQ(f_->C_FindObjectsFinal(s), CKR_OK);
    return all;
  }
  Bytes get(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE a{type, nullptr, 0};
    EXPECT_EQ(f_->C_GetAttributeValue(s, o, &a, 1), CKR_OK);
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return {};
    Bytes v(a.ulValueLen);
    a.pValue = v.data();
    EXPECT_EQ(f_->C_GetAttributeValue(s, o, &a, 1), CKR_OK);
    return v;
  }
  // SignInit + length query + sign; returns empty on any failure.
  Bytes sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_MECHANISM mech, const Bytes& data) {
    if (CK_RV rv = f_->C_SignInit(s, &mech, key); rv != CKR_OK) {
      ADD_FAILURE() << "C_SignInit " << rv;
      return {};
    }
    CK_ULONG len = 0;
    Bytes in = data;
    if (CK_RV rv = f_->C_Sign(s, in.data(), in.size(), nullptr, &len); rv != CKR_OK) {
      ADD_FAILURE() << "C_Sign size query " << rv;
      return {};
    }
    Bytes sig(len);
    if (CK_RV rv = f_->C_Sign(s, in.data(), in.size(), sig.data(), &len); rv != CKR_OK) {
      ADD_FAILURE() << "C_Sign " << rv;
      return {};
    }
    sig.resize(len);
    return sig;
  }

  CK_FUNCTION_LIST* f_ = nullptr;
};

TEST_F(MockPkcs11, FunctionListAndInitialization) {
  CK_FUNCTION_LIST* exported = nullptr;
  ASSERT_EQ(C_GetFunctionList(&exported), CKR_OK);
  EXPECT_EQ(exported, f_);
  EXPECT_EQ(f_->version.major, 2);
  EXPECT_EQ(f_->version.minor, 40);
  EXPECT_EQ(f_->C_Initialize(nullptr), CKR_CRYPTOKI_ALREADY_INITIALIZED);

  CK_INFO info{};
  ASSERT_EQ(f_->C_GetInfo(&info), CKR_OK);
  EXPECT_EQ(info.cryptokiVersion.major, 2);
  EXPECT_EQ(info.cryptokiVersion.minor, 40);

  ASSERT_EQ(f_->C_Finalize(nullptr), CKR_OK);
  EXPECT_EQ(f_->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
  EXPECT_EQ(f_->C_Finalize(nullptr), CKR_CRYPTOKI_NOT_INITIALIZED);

  CK_C_INITIALIZE_ARGS args{};
  args.pReserved = &args;
  EXPECT_EQ(f_->C_Initialize(&args), CKR_ARGUMENTS_BAD);
  args.pReserved = nullptr;
  args.flags = CKF_OS_LOCKING_OK;
  EXPECT_EQ(f_->C_Initialize(&args), CKR_OK);
  EXPECT_EQ(f_->C_Initialize(&args), CKR_CRYPTOKI_ALREADY_INITIALIZED);
  EXPECT_EQ(mock::call_count("C_Initialize"), 5);
  EXPECT_EQ(f_->C_InitToken(0, nullptr, 0, nullptr), CKR_FUNCTION_NOT_SUPPORTED);
  EXPECT_EQ(mock::call_count("C_InitToken"), 1);
}

TEST_F(MockPkcs11, SlotListSizeQueryAndPresenceFilter) {
  CK_ULONG n = 0;
  ASSERT_EQ(f_->C_GetSlotList(CK_TRUE, nullptr, &n), CKR_OK);
  EXPECT_EQ(n, 2u);
  CK_SLOT_ID slots[2] = {99, 99};
  n = 1;
  EXPECT_EQ(f_->C_GetSlotList(CK_TRUE, slots, &n), CKR_BUFFER_TOO_SMALL);
  EXPECT_EQ(n, 2u);
  ASSERT_EQ(f_->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
  EXPECT_EQ(slots[0], kSlotA);
  EXPECT_EQ(slots[1], kSlotB);

  mock::set_token_present(kSlotA, false);
  ASSERT_EQ(f_->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(slots[0], kSlotB);
  n = 2;
  ASSERT_EQ(f_->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK);
  EXPECT_EQ(n, 2u);

  CK_SLOT_INFO si{};
  ASSERT_EQ(f_->C_GetSlotInfo(kSlotA, &si), CKR_OK);
  EXPECT_EQ(si.flags & CKF_TOKEN_PRESENT, 0u);
  EXPECT_EQ(f_->C_GetSlotInfo(7, &si), CKR_SLOT_ID_INVALID);
}

TEST_F(MockPkcs11, TokenInfoAndMechanisms) {
  CK_TOKEN_INFO ti{};
  ASSERT_EQ(f_->C_GetTokenInfo(kSlotA, &ti), CKR_OK);
  EXPECT_EQ(trimmed(ti.label, sizeof ti.label), "mock-a");
  EXPECT_EQ(trimmed(ti.serialNumber, sizeof ti.serialNumber), "MOCKSERIAL0001");
  EXPECT_EQ(ti.ulMaxSessionCount, 4u);
  EXPECT_EQ(
      ti.flags & (CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_RNG),
      CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_RNG);
  ASSERT_EQ(f_->C_GetTokenInfo(kSlotB, &ti), CKR_OK);
  EXPECT_EQ(trimmed(ti.label, sizeof ti.label), "mock-b");
  EXPECT_EQ(trimmed(ti.serialNumber, sizeof ti.serialNumber), "MOCKSERIAL0002");
  EXPECT_EQ(ti.ulMaxSessionCount, CK_EFFECTIVELY_INFINITE);

  CK_ULONG n = 0;
  ASSERT_EQ(f_->C_GetMechanismList(kSlotA, nullptr, &n), CKR_OK);
  ASSERT_EQ(n, 5u);
  std::vector<CK_MECHANISM_TYPE> mechs(n);
  n = 2;
  EXPECT_EQ(f_->C_GetMechanismList(kSlotA, mechs.data(), &n), CKR_BUFFER_TOO_SMALL);
  ASSERT_EQ(f_->C_GetMechanismList(kSlotA, mechs.data(), &n), CKR_OK);
  for (CK_MECHANISM_TYPE m : {CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_ECDSA, CKM_RSA_PKCS_KEY_PAIR_GEN,
                              CKM_EC_KEY_PAIR_GEN}) {
    EXPECT_NE(std::find(mechs.begin(), mechs.end(), m), mechs.end()) << m;
  }
  CK_MECHANISM_INFO mi{};
  ASSERT_EQ(f_->C_GetMechanismInfo(kSlotA, CKM_ECDSA, &mi), CKR_OK);
  EXPECT_NE(mi.flags & CKF_SIGN, 0u);
  ASSERT_EQ(f_->C_GetMechanismInfo(kSlotA, CKM_RSA_PKCS_KEY_PAIR_GEN, &mi), CKR_OK);
  EXPECT_NE(mi.flags & CKF_GENERATE_KEY_PAIR, 0u);
  EXPECT_EQ(f_->C_GetMechanismInfo(kSlotA, CKM_AES_CBC, &mi), CKR_MECHANISM_INVALID);
}

TEST_F(MockPkcs11, LoginRightWrongAlreadyAndLocked) {
  CK_SESSION_HANDLE s1 = open(kSlotA);
  CK_SESSION_HANDLE s2 = open(kSlotA, CKF_SERIAL_SESSION);
  EXPECT_EQ(login(s1, "0000"), CKR_PIN_INCORRECT);
  EXPECT_FALSE(mock::logged_in(kSlotA));
  ASSERT_EQ(login(s1, kPin), CKR_OK);
  EXPECT_TRUE(mock::logged_in(kSlotA));
  EXPECT_FALSE(mock::logged_in(kSlotB));
  // Login state belongs to the token: the other session is logged in too.
  EXPECT_EQ(login(s2, kPin), CKR_USER_ALREADY_LOGGED_IN);
  CK_SESSION_INFO info{};
  ASSERT_EQ(f_->C_GetSessionInfo(s1, &info), CKR_OK);
  EXPECT_EQ(info.state, CKS_RW_USER_FUNCTIONS);
  ASSERT_EQ(f_->C_GetSessionInfo(s2, &info), CKR_OK);
  EXPECT_EQ(info.state, CKS_RO_USER_FUNCTIONS);
  EXPECT_EQ(info.slotID, kSlotA);

  ASSERT_EQ(f_->C_Logout(s2), CKR_OK);
  ASSERT_EQ(f_->C_GetSessionInfo(s1, &info), CKR_OK);
  EXPECT_EQ(info.state, CKS_RW_PUBLIC_SESSION);
  EXPECT_EQ(f_->C_Logout(s1), CKR_USER_NOT_LOGGED_IN);
  EXPECT_EQ(login(s1, kPin, 77), CKR_USER_TYPE_INVALID);

  // Three wrong PINs lock the user PIN; then even the right PIN is refused.
  EXPECT_EQ(login(s1, "1111"), CKR_PIN_INCORRECT);
  EXPECT_EQ(login(s1, "2222"), CKR_PIN_INCORRECT);
  CK_TOKEN_INFO ti{};
  ASSERT_EQ(f_->C_GetTokenInfo(kSlotA, &ti), CKR_OK);
  EXPECT_NE(ti.flags & CKF_USER_PIN_FINAL_TRY, 0u);
  EXPECT_EQ(login(s1, "3333"), CKR_PIN_INCORRECT);
  EXPECT_EQ(login(s1, kPin), CKR_PIN_LOCKED);
  ASSERT_EQ(f_->C_GetTokenInfo(kSlotA, &ti), CKR_OK);
  EXPECT_NE(ti.flags & CKF_USER_PIN_LOCKED, 0u);
  EXPECT_FALSE(mock::logged_in(kSlotA));

  // The lock is per token.
  CK_SESSION_HANDLE b = open(kSlotB);
  EXPECT_EQ(login(b, kPin), CKR_OK);
}

TEST_F(MockPkcs11, SuccessfulLoginResetsRetryCounterAndSoLogin) {
  CK_SESSION_HANDLE s = open(kSlotA);
  EXPECT_EQ(login(s, "1111"), CKR_PIN_INCORRECT);
  EXPECT_EQ(login(s, "2222"), CKR_PIN_INCORRECT);
  ASSERT_EQ(login(s, kPin), CKR_OK);
  ASSERT_EQ(f_->C_Logout(s), CKR_OK);
  EXPECT_EQ(login(s, "1111"), CKR_PIN_INCORRECT);
  EXPECT_EQ(login(s, kPin), CKR_OK);
  EXPECT_EQ(login(s, kSoPin, CKU_SO), CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
  ASSERT_EQ(f_->C_Logout(s), CKR_OK);
  ASSERT_EQ(login(s, kSoPin, CKU_SO), CKR_OK);
  CK_SESSION_INFO info{};
  ASSERT_EQ(f_->C_GetSessionInfo(s, &info), CKR_OK);
  EXPECT_EQ(info.state, CKS_RW_SO_FUNCTIONS);
}

TEST_F(MockPkcs11, SessionCapAndLastCloseLogsOut) {
  std::vector<CK_SESSION_HANDLE> sessions;
  for (int i = 0; i < 4; ++i) sessions.push_back(open(kSlotA));
  EXPECT_EQ(mock::open_session_count(kSlotA), 4);
  CK_SESSION_HANDLE extra = CK_INVALID_HANDLE;
  EXPECT_EQ(f_->C_OpenSession(kSlotA, CKF_SERIAL_SESSION, nullptr, nullptr, &extra),
            CKR_SESSION_COUNT);
  ASSERT_EQ(f_->C_CloseSession(sessions.back()), CKR_OK);
  sessions.pop_back();
  EXPECT_EQ(f_->C_OpenSession(kSlotA, CKF_SERIAL_SESSION, nullptr, nullptr, &extra), CKR_OK);
  sessions.push_back(extra);
  EXPECT_EQ(f_->C_OpenSession(kSlotA, 0, nullptr, nullptr, &extra),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED);

  // Slot 1 has no cap.
  for (int i = 0; i < 32; ++i) open(kSlotB);
  EXPECT_EQ(mock::open_session_count(kSlotB), 32);
  ASSERT_EQ(f_->C_CloseAllSessions(kSlotB), CKR_OK);
  EXPECT_EQ(mock::open_session_count(kSlotB), 0);

  ASSERT_EQ(login(sessions[0], kPin), CKR_OK);
  for (size_t i = 1; i < sessions.size(); ++i) ASSERT_EQ(f_->C_CloseSession(sessions[i]), CKR_OK);
  EXPECT_TRUE(mock::logged_in(kSlotA));
  ASSERT_EQ(f_->C_CloseSession(sessions[0]), CKR_OK);
  EXPECT_FALSE(mock::logged_in(kSlotA));
  EXPECT_EQ(f_->C_CloseSession(sessions[0]), CKR_SESSION_HANDLE_INVALID);
}

TEST_F(MockPkcs11, FindHidesPrivateObjectsUntilLogin) {
  const CK_OBJECT_HANDLE priv =
      mock::add_key(kSlotA, rsa_key(), kRsaId, "signer", self_signed_cert(rsa_key(), "signer"));
  mock::add_key(kSlotA, ec_key("P-256"), kEcId, "ec", {});
  CK_SESSION_HANDLE s = open(kSlotA);

  EXPECT_EQ(find(s, {}).size(), 3u);  // RSA public + cert, EC public
  const CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY;
  EXPECT_TRUE(find(s, {attr(CKA_CLASS, priv_class)}).empty());

  ASSERT_EQ(login(s, kPin), CKR_OK);
  EXPECT_EQ(find(s, {}).size(), 5u);
  EXPECT_EQ(find(s, {attr(CKA_CLASS, priv_class), attr(CKA_ID, kRsaId)}),
            std::vector<CK_OBJECT_HANDLE>{priv});
  const std::string label = "signer";
  EXPECT_EQ(find(s, {attr(CKA_LABEL, label.data(), label.size())}).size(), 3u);
  const CK_OBJECT_CLASS cert_class = CKO_CERTIFICATE;
  EXPECT_EQ(find(s, {attr(CKA_CLASS, cert_class), attr(CKA_ID, kEcId)}).size(), 0u);

  // Other tokens' objects are never visible.
  CK_SESSION_HANDLE b = open(kSlotB);
  EXPECT_TRUE(find(b, {}).empty());
  EXPECT_EQ(f_->C_FindObjects(b, nullptr, 0, nullptr), CKR_OPERATION_NOT_INITIALIZED);
  ASSERT_EQ(f_->C_FindObjectsInit(b, nullptr, 0), CKR_OK);
  EXPECT_EQ(f_->C_FindObjectsInit(b, nullptr, 0), CKR_OPERATION_ACTIVE);
}

TEST_F(MockPkcs11, AttributesConventionsAndValues) {
  const Bytes cert = self_signed_cert(rsa_key(), "attrs");
  const CK_OBJECT_HANDLE priv = mock::add_key(kSlotA, rsa_key(), kRsaId, "attrs", cert);
  CK_SESSION_HANDLE s = open(kSlotA);
  ASSERT_EQ(login(s, kPin), CKR_OK);

  const CK_OBJECT_CLASS cert_class = CKO_CERTIFICATE;
  auto certs = find(s, {attr(CKA_CLASS, cert_class)});
  ASSERT_EQ(certs.size(), 1u);
  EXPECT_EQ(get(s, certs[0], CKA_VALUE), cert);
  EXPECT_EQ(get(s, certs[0], CKA_ID), kRsaId);
  EXPECT_FALSE(get(s, certs[0], CKA_SUBJECT).empty());

  // Modulus and exponent match the OpenSSL key.
  BIGNUM* n_raw = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(rsa_key(), OSSL_PKEY_PARAM_RSA_N, &n_raw), 1);
  std::unique_ptr<BIGNUM, BnFree> n(n_raw);
  Bytes expected_n(static_cast<size_t>(BN_num_bytes(n.get())));
  BN_bn2bin(n.get(), expected_n.data());
  EXPECT_EQ(get(s, priv, CKA_MODULUS), expected_n);
  EXPECT_EQ(get(s, priv, CKA_PUBLIC_EXPONENT), (Bytes{0x01, 0x00, 0x01}));

  CK_OBJECT_CLASS cls = 0;
  CK_KEY_TYPE kt = 0;
  CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, sign = CK_FALSE, token = CK_FALSE,
           priv_flag = CK_FALSE, always = CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {attr(CKA_CLASS, cls),           attr(CKA_KEY_TYPE, kt),
                         attr(CKA_SENSITIVE, sensitive), attr(CKA_EXTRACTABLE, extractable),
                         attr(CKA_SIGN, sign),           attr(CKA_TOKEN, token),
                         attr(CKA_PRIVATE, priv_flag),   attr(CKA_ALWAYS_AUTHENTICATE, always)};
  ASSERT_EQ(f_->C_GetAttributeValue(s, priv, tmpl, 8), CKR_OK);
  EXPECT_EQ(cls, CKO_PRIVATE_KEY);
  EXPECT_EQ(kt, CKK_RSA);
  EXPECT_EQ(sensitive, CK_TRUE);
  EXPECT_EQ(extractable, CK_FALSE);
  EXPECT_EQ(sign, CK_TRUE);
  EXPECT_EQ(token, CK_TRUE);
  EXPECT_EQ(priv_flag, CK_TRUE);
  EXPECT_EQ(always, CK_FALSE);

  // Sensitive component, unknown attribute, and a short buffer, each in a mixed template.
  Bytes label(64);
  CK_ATTRIBUTE mixed[] = {{CKA_PRIVATE_EXPONENT, nullptr, 0}, {CKA_LABEL, label.data(), 64}};
  EXPECT_EQ(f_->C_GetAttributeValue(s, priv, mixed, 2), CKR_ATTRIBUTE_SENSITIVE);
  EXPECT_EQ(mixed[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
  EXPECT_EQ(mixed[1].ulValueLen, 5u);  // the rest is still filled in
  CK_ATTRIBUTE unknown{CKA_EC_POINT, nullptr, 0};
  EXPECT_EQ(f_->C_GetAttributeValue(s, priv, &unknown, 1), CKR_ATTRIBUTE_TYPE_INVALID);
  EXPECT_EQ(unknown.ulValueLen, CK_UNAVAILABLE_INFORMATION);
  CK_ATTRIBUTE small{CKA_MODULUS, label.data(), 8};
  EXPECT_EQ(f_->C_GetAttributeValue(s, priv, &small, 1), CKR_BUFFER_TOO_SMALL);
  EXPECT_EQ(small.ulValueLen, CK_UNAVAILABLE_INFORMATION);

  EXPECT_EQ(f_->C_GetAttributeValue(s, 0xdead, &small, 1), CKR_OBJECT_HANDLE_INVALID);
  EXPECT_EQ(f_->C_GetAttributeValue(0xbeef, priv, &small, 1), CKR_SESSION_HANDLE_INVALID);
}

TEST_F(MockPkcs11, ExtractableKeyRevealsPrivateExponent) {
  const CK_OBJECT_HANDLE priv =
      mock::add_key(kSlotB, rsa_key(), kRsaId, "soft", {}, /*sensitive=*/false,
                    /*extractable=*/true);
  CK_SESSION_HANDLE s = open(kSlotB);
  ASSERT_EQ(login(s, kPin), CKR_OK);
  BIGNUM* d_raw = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(rsa_key(), OSSL_PKEY_PARAM_RSA_D, &d_raw), 1);
  std::unique_ptr<BIGNUM, BnFree> d(d_raw);
  const Bytes value = get(s, priv, CKA_PRIVATE_EXPONENT);
  std::unique_ptr<BIGNUM, BnFree> got(
      BN_bin2bn(value.data(), static_cast<int>(value.size()), nullptr));
  EXPECT_EQ(BN_cmp(d.get(), got.get()), 0);
}

TEST_F(MockPkcs11, EcAttributesAreDerLikeSoftHsm) {
  mock::add_key(kSlotA, ec_key("P-384"), kEcId, "ec384", {});
  CK_SESSION_HANDLE s = open(kSlotA);
  const CK_OBJECT_CLASS pub_class = CKO_PUBLIC_KEY;
  auto pubs = find(s, {attr(CKA_CLASS, pub_class)});
  ASSERT_EQ(pubs.size(), 1u);

  const Bytes params = get(s, pubs[0], CKA_EC_PARAMS);
  const unsigned char* p = params.data();
  ASN1_OBJECT* oid = d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(params.size()));
  ASSERT_NE(oid, nullptr);
  EXPECT_EQ(OBJ_obj2nid(oid), NID_secp384r1);
  ASN1_OBJECT_free(oid);

  const Bytes point = get(s, pubs[0], CKA_EC_POINT);
  p = point.data();
  std::unique_ptr<ASN1_OCTET_STRING, Asn1StringFree> os(
      d2i_ASN1_OCTET_STRING(nullptr, &p, static_cast<long>(point.size())));
  ASSERT_NE(os, nullptr);
  Bytes raw(ASN1_STRING_get0_data(os.get()),
            ASN1_STRING_get0_data(os.get()) + ASN1_STRING_length(os.get()));
  Bytes expected(97);
  size_t len = 0;
  ASSERT_EQ(EVP_PKEY_get_octet_string_param(ec_key("P-384"), OSSL_PKEY_PARAM_PUB_KEY,
                                            expected.data(), expected.size(), &len),
            1);
  EXPECT_EQ(len, 97u);
  EXPECT_EQ(raw, expected);
  EXPECT_EQ(raw[0], 0x04);  // uncompressed
}

TEST_F(MockPkcs11, RsaPkcs1SignatureVerifiesWithOpenSsl) {
  const CK_OBJECT_HANDLE key = mock::add_key(kSlotA, rsa_key(), kRsaId, "rsa", {});
  CK_SESSION_HANDLE s = open(kSlotA);
  ASSERT_EQ(login(s, kPin), CKR_OK);
  const std::string msg = "MSMQ message body";
  CK_MECHANISM mech{CKM_RSA_PKCS, nullptr, 0};
  Bytes di = sha256_digest_info(msg);

  // Length query and CKR_BUFFER_TOO_SMALL keep the operation alive.
  ASSERT_EQ(f_->C_SignInit(s, &mech, key), CKR_OK);
  EXPECT_EQ(f_->C_SignInit(s, &mech, key), CKR_OPERATION_ACTIVE);
  CK_ULONG len = 0;
  ASSERT_EQ(f_->C_Sign(s, di.data(), di.size(), nullptr, &len), CKR_OK);
  EXPECT_EQ(len, 256u);
  Bytes sig(len);
  CK_ULONG short_len = 10;
  EXPECT_EQ(f_->C_Sign(s, di.data(), di.size(), sig.data(), &short_len), CKR_BUFFER_TOO_SMALL);
  EXPECT_EQ(short_len, 256u);
  ASSERT_EQ(f_->C_Sign(s, di.data(), di.size(), sig.data(), &len), CKR_OK);
  EXPECT_TRUE(verify_digest_sign(rsa_key(), EVP_sha256(), msg, sig));
  EXPECT_FALSE(verify_digest_sign(rsa_key(), EVP_sha256(), msg + "!", sig));
  // A completed C_Sign ends the operation.
  EXPECT_EQ(f_->C_Sign(s, di.data(), di.size(), sig.data(), &len), CKR_OPERATION_NOT_INITIALIZED);

  // Too much data for PKCS#1 v1.5 padding; the error ends the operation too.
  Bytes big(300, 0xab);
  ASSERT_EQ(f_->C_SignInit(s, &mech, key), CKR_OK);
  EXPECT_EQ(f_->C_Sign(s, big.data(), big.size(), sig.data(), &len), CKR_DATA_LEN_RANGE);
  EXPECT_EQ(f_->C_Sign(s, di.data(), di.size(), sig.data(), &len), CKR_OPERATION_NOT_INITIALIZED);

  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  EXPECT_EQ(f_->C_SignInit(s, &ecdsa, key), CKR_KEY_TYPE_INCONSISTENT);
  EXPECT_EQ(f_->C_SignInit(s, &mech, 0xdead), CKR_KEY_HANDLE_INVALID);
}

TEST_F(MockPkcs11, RsaPssSignatureVerifiesWithOpenSsl) {
  const CK_OBJECT_HANDLE key = mock::add_key(kSlotA, rsa_key(), kRsaId, "rsa", {});
  CK_SESSION_HANDLE s = open(kSlotA);
  ASSERT_EQ(login(s, kPin), CKR_OK);
  const Bytes digest = sha(EVP_sha256(), "pss message");
  CK_RSA_PKCS_PSS_PARAMS params{CKM_SHA256, CKG_MGF1_SHA256, 32};
  const Bytes sig = sign(s, key, CK_MECHANISM{CKM_RSA_PKCS_PSS, &params, sizeof params}, digest);
  ASSERT_EQ(sig.size(), 256u);
  EXPECT_TRUE(verify_pss(rsa_key(), digest, sig, 32));
  EXPECT_FALSE(verify_pss(rsa_key(), sha(EVP_sha256(), "other"), sig, 32));

  CK_MECHANISM no_params{CKM_RSA_PKCS_PSS, nullptr, 0};
  EXPECT_EQ(f_->C_SignInit(s, &no_params, key), CKR_MECHANISM_PARAM_INVALID);
  // The input must be a digest of the announced hash.
  CK_MECHANISM mech{CKM_RSA_PKCS_PSS, &params, sizeof params};
  ASSERT_EQ(f_->C_SignInit(s, &mech, key), CKR_OK);
  Bytes short_digest(20, 1), out(256);
  CK_ULONG len = out.size();
  EXPECT_EQ(f_->C_Sign(s, short_digest.data(), short_digest.size(), out.data(), &len),
            CKR_DATA_LEN_RANGE);
}

TEST_F(MockPkcs11, EcdsaSignatureIsRawRsAndVerifies) {
  const CK_OBJECT_HANDLE k256 = mock::add_key(kSlotA, ec_key("P-256"), kEcId, "p256", {});
  const CK_OBJECT_HANDLE k384 = mock::add_key(kSlotA, ec_key("P-384"), {0x38}, "p384", {});
  CK_SESSION_HANDLE s = open(kSlotA);
  ASSERT_EQ(login(s, kPin), CKR_OK);
  const std::string msg = "ecdsa message";
  const CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};

  // Several signatures, so a missing left-pad of short r or s would show up sooner or later.
  for (int i = 0; i < 8; ++i) {
    const Bytes sig = sign(s, k256, mech, sha(EVP_sha256(), msg));
    ASSERT_EQ(sig.size(), 64u);
    EXPECT_TRUE(verify_digest_sign(ec_key("P-256"), EVP_sha256(), msg, ecdsa_raw_to_der(sig)));
  }
  const Bytes sig384 = sign(s, k384, mech, sha(EVP_sha384(), msg));
  ASSERT_EQ(sig384.size(), 96u);
  const Bytes der = ecdsa_raw_to_der(sig384);
  EXPECT_TRUE(verify_digest_sign(ec_key("P-384"), EVP_sha384(), msg, der));
  EXPECT_FALSE(verify_digest_sign(ec_key("P-384"), EVP_sha384(), msg + "x", der));
}

TEST_F(MockPkcs11, SigningNeedsLogin) {
  const CK_OBJECT_HANDLE key = mock::add_key(kSlotA, rsa_key(), kRsaId, "rsa", {});
  CK_SESSION_HANDLE s = open(kSlotA);
  CK_MECHANISM mech{CKM_RSA_PKCS, nullptr, 0};
  EXPECT_EQ(f_->C_SignInit(s, &mech, key), CKR_USER_NOT_LOGGED_IN);

  // Logging out between C_SignInit and C_Sign also fails the signature.
  ASSERT_EQ(login(s, kPin), CKR_OK);
  ASSERT_EQ(f_->C_SignInit(s, &mech, key), CKR_OK);
  ASSERT_EQ(f_->C_Logout(s), CKR_OK);
  Bytes di = sha256_digest_info("x"), sig(256);
  CK_ULONG len = sig.size();
  EXPECT_EQ(f_->C_Sign(s, di.data(), di.size(), sig.data(), &len), CKR_USER_NOT_LOGGED_IN);
}

TEST_F(MockPkcs11, AlwaysAuthenticateNeedsContextLoginPerOperation) {
  const CK_OBJECT_HANDLE key =
      mock::add_key(kSlotA, ec_key("P-256"), kEcId, "aa", {}, true, false, /*always=*/true);
  CK_SESSION_HANDLE s = open(kSlotA);
  ASSERT_EQ(login(s, kPin), CKR_OK);
  CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
  Bytes digest = sha(EVP_sha256(), "aa"), sig(64);
  CK_ULONG len = sig.size();

  EXPECT_EQ(login(s, kPin, CKU_CONTEXT_SPECIFIC), CKR_OPERATION_NOT_INITIALIZED);
  ASSERT_EQ(f_->C_SignInit(s, &mech, key), CKR_OK);
  EXPECT_EQ(f_->C_Sign(s, digest.data(), digest.size(), sig.data(), &len), CKR_USER_NOT_LOGGED_IN);

  ASSERT_EQ(f_->C_SignInit(s, &mech, key), CKR_OK);
  EXPECT_EQ(login(s, "9999", CKU_CONTEXT_SPECIFIC), CKR_PIN_INCORRECT);
  ASSERT_EQ(login(s, kPin, CKU_CONTEXT_SPECIFIC), CKR_OK);
  ASSERT_EQ(f_->C_Sign(s, digest.data(), digest.size(), nullptr, &len), CKR_OK);
  ASSERT_EQ(f_->C_Sign(s, digest.data(), digest.size(), sig.data(), &len), CKR_OK);
  EXPECT_TRUE(verify_digest_sign(ec_key("P-256"), EVP_sha256(), "aa", ecdsa_raw_to_der(sig)));

  // The context login was for that one operation only.
  ASSERT_EQ(f_->C_SignInit(s, &mech, key), CKR_OK);
  EXPECT_EQ(f_->C_Sign(s, digest.data(), digest.size(), sig.data(), &len), CKR_USER_NOT_LOGGED_IN);
}

TEST_F(MockPkcs11, InjectedFailuresNthAndPersistent) {
  CK_SESSION_HANDLE s = open(kSlotB);
  CK_SESSION_INFO info{};
  mock::fail("C_GetSessionInfo", CKR_DEVICE_ERROR, 2);
  EXPECT_EQ(f_->C_GetSessionInfo(s, &info), CKR_OK);
  EXPECT_EQ(f_->C_GetSessionInfo(s, &info), CKR_DEVICE_ERROR);
  EXPECT_EQ(f_->C_GetSessionInfo(s, &info), CKR_OK);
  EXPECT_EQ(mock::call_count("C_GetSessionInfo"), 3);

  mock::fail("C_GetSessionInfo", CKR_DEVICE_REMOVED, 2, /*persistent=*/true);
  EXPECT_EQ(f_->C_GetSessionInfo(s, &info), CKR_OK);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f_->C_GetSessionInfo(s, &info), CKR_DEVICE_REMOVED);
  mock::clear_failures();
  EXPECT_EQ(f_->C_GetSessionInfo(s, &info), CKR_OK);
  EXPECT_EQ(mock::call_count("C_GetSessionInfo"), 10);

  // An injected failure does not perform the call: no session is opened.
  mock::fail("C_OpenSession", CKR_SESSION_COUNT);
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  EXPECT_EQ(f_->C_OpenSession(kSlotB, CKF_SERIAL_SESSION, nullptr, nullptr, &h), CKR_SESSION_COUNT);
  EXPECT_EQ(mock::open_session_count(kSlotB), 1);

  // Injection into signing.
  const CK_OBJECT_HANDLE key = mock::add_key(kSlotB, ec_key("P-256"), kEcId, "k", {});
  ASSERT_EQ(login(s, kPin), CKR_OK);
  mock::fail("C_Sign", CKR_FUNCTION_FAILED);
  CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
  Bytes digest = sha(EVP_sha256(), "m"), sig(64);
  CK_ULONG len = sig.size();
  ASSERT_EQ(f_->C_SignInit(s, &mech, key), CKR_OK);
  EXPECT_EQ(f_->C_Sign(s, digest.data(), digest.size(), sig.data(), &len), CKR_FUNCTION_FAILED);
  EXPECT_THROW(mock::fail("C_Sign", CKR_OK, 0), std::invalid_argument);
}

TEST_F(MockPkcs11, TokenRemovalClosesSessionsAndLogsOut) {
  const CK_OBJECT_HANDLE key = mock::add_key(kSlotA, rsa_key(), kRsaId, "rsa", {});
  CK_SESSION_HANDLE s = open(kSlotA);
  CK_SESSION_HANDLE b = open(kSlotB);
  ASSERT_EQ(login(s, kPin), CKR_OK);

  mock::set_token_present(kSlotA, false);
  EXPECT_EQ(mock::open_session_count(kSlotA), 0);
  EXPECT_FALSE(mock::logged_in(kSlotA));
  CK_SESSION_INFO info{};
  EXPECT_EQ(f_->C_GetSessionInfo(s, &info), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(f_->C_GetSessionInfo(b, &info), CKR_OK);  // other slot unaffected
  CK_TOKEN_INFO ti{};
  EXPECT_EQ(f_->C_GetTokenInfo(kSlotA, &ti), CKR_TOKEN_NOT_PRESENT);
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  EXPECT_EQ(f_->C_OpenSession(kSlotA, CKF_SERIAL_SESSION, nullptr, nullptr, &h),
            CKR_TOKEN_NOT_PRESENT);

  // Re-inserted: the key is still on the token, the login is not.
  mock::set_token_present(kSlotA, true);
  s = open(kSlotA);
  CK_MECHANISM mech{CKM_RSA_PKCS, nullptr, 0};
  EXPECT_EQ(f_->C_SignInit(s, &mech, key), CKR_USER_NOT_LOGGED_IN);
  ASSERT_EQ(login(s, kPin), CKR_OK);
  EXPECT_EQ(sign(s, key, mech, sha256_digest_info("again")).size(), 256u);
  EXPECT_THROW(mock::set_token_present(9, false), std::invalid_argument);
}

TEST_F(MockPkcs11, InvalidHandlesNeverCrash) {
  CK_SESSION_INFO info{};
  EXPECT_EQ(f_->C_GetSessionInfo(0, &info), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(f_->C_GetSessionInfo(~CK_SESSION_HANDLE{0}, &info), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(f_->C_CloseSession(12345), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(f_->C_Logout(12345), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(f_->C_FindObjectsInit(12345, nullptr, 0), CKR_SESSION_HANDLE_INVALID);
  CK_SESSION_HANDLE s = open(kSlotA);
  EXPECT_EQ(f_->C_DestroyObject(s, 77), CKR_OBJECT_HANDLE_INVALID);
  // A session handle is not an object handle, and an object on another token is not visible.
  EXPECT_EQ(f_->C_DestroyObject(s, s), CKR_OBJECT_HANDLE_INVALID);
  const CK_OBJECT_HANDLE other = mock::add_key(kSlotB, ec_key("P-256"), kEcId, "b", {});
  ASSERT_EQ(login(s, kPin), CKR_OK);
  CK_ATTRIBUTE a{CKA_CLASS, nullptr, 0};
  EXPECT_EQ(f_->C_GetAttributeValue(s, other, &a, 1), CKR_OBJECT_HANDLE_INVALID);
  CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
  EXPECT_EQ(f_->C_SignInit(s, &mech, other), CKR_KEY_HANDLE_INVALID);
  CK_ULONG len = 0;
  EXPECT_EQ(f_->C_Sign(s, nullptr, 0, nullptr, &len), CKR_OPERATION_NOT_INITIALIZED);

  // Handles from before reset() stay invalid afterwards.
  mock::reset();
  ASSERT_EQ(f_->C_Initialize(nullptr), CKR_OK);
  EXPECT_EQ(f_->C_GetSessionInfo(s, &info), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(mock::call_count("C_GetSessionInfo"), 1);
}

TEST_F(MockPkcs11, CreateAndDestroyObjects) {
  CK_SESSION_HANDLE ro = open(kSlotA, CKF_SERIAL_SESSION);
  CK_SESSION_HANDLE rw = open(kSlotA);
  const Bytes der = self_signed_cert(ec_key("P-256"), "created");
  const CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
  const CK_CERTIFICATE_TYPE ct = CKC_X_509;
  const CK_BBOOL yes = CK_TRUE;
  std::vector<CK_ATTRIBUTE> tmpl = {attr(CKA_CLASS, cls), attr(CKA_CERTIFICATE_TYPE, ct),
                                    attr(CKA_VALUE, der), attr(CKA_ID, kEcId),
                                    attr(CKA_TOKEN, yes)};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  EXPECT_EQ(f_->C_CreateObject(ro, tmpl.data(), tmpl.size(), &h), CKR_SESSION_READ_ONLY);
  ASSERT_EQ(f_->C_CreateObject(rw, tmpl.data(), tmpl.size(), &h), CKR_OK);
  EXPECT_EQ(find(ro, {attr(CKA_ID, kEcId)}), std::vector<CK_OBJECT_HANDLE>{h});
  EXPECT_EQ(get(ro, h, CKA_VALUE), der);
  EXPECT_FALSE(get(ro, h, CKA_SUBJECT).empty());

  std::vector<CK_ATTRIBUTE> incomplete = {attr(CKA_CLASS, cls)};
  CK_OBJECT_HANDLE h2 = CK_INVALID_HANDLE;
  EXPECT_EQ(f_->C_CreateObject(rw, incomplete.data(), incomplete.size(), &h2),
            CKR_TEMPLATE_INCOMPLETE);

  // A private data object needs login; a session object dies with its session.
  const CK_OBJECT_CLASS data_cls = CKO_DATA;
  const std::string app = "mqsec";
  std::vector<CK_ATTRIBUTE> data = {attr(CKA_CLASS, data_cls), attr(CKA_PRIVATE, yes),
                                    attr(CKA_APPLICATION, app.data(), app.size())};
  EXPECT_EQ(f_->C_CreateObject(rw, data.data(), data.size(), &h2), CKR_USER_NOT_LOGGED_IN);
  ASSERT_EQ(login(rw, kPin), CKR_OK);
  ASSERT_EQ(f_->C_CreateObject(rw, data.data(), data.size(), &h2), CKR_OK);
  EXPECT_EQ(find(ro, {attr(CKA_CLASS, data_cls)}).size(), 1u);
  ASSERT_EQ(f_->C_CloseSession(rw), CKR_OK);  // ro is still open, so still logged in
  EXPECT_TRUE(find(ro, {attr(CKA_CLASS, data_cls)}).empty());

  EXPECT_EQ(f_->C_DestroyObject(ro, h), CKR_SESSION_READ_ONLY);
  rw = open(kSlotA);
  ASSERT_EQ(f_->C_DestroyObject(rw, h), CKR_OK);
  EXPECT_EQ(f_->C_DestroyObject(rw, h), CKR_OBJECT_HANDLE_INVALID);
  EXPECT_TRUE(find(rw, {attr(CKA_CLASS, cls)}).empty());
}

// Rebuilds an OpenSSL public key from what the token publishes, as mqsec would.
PkeyPtr public_key_from_token(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub,
                              bool rsa) {
  auto get = [&](CK_ATTRIBUTE_TYPE t) {
    CK_ATTRIBUTE a{t, nullptr, 0};
    if (f->C_GetAttributeValue(s, pub, &a, 1) != CKR_OK) return Bytes{};
    Bytes v(a.ulValueLen);
    a.pValue = v.data();
    if (f->C_GetAttributeValue(s, pub, &a, 1) != CKR_OK) return Bytes{};
    return v;
  };
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  std::unique_ptr<BIGNUM, BnFree> n, e;
  Bytes point;
  std::string group;
  if (rsa) {
    Bytes nb = get(CKA_MODULUS), eb = get(CKA_PUBLIC_EXPONENT);
    n.reset(BN_bin2bn(nb.data(), static_cast<int>(nb.size()), nullptr));
    e.reset(BN_bin2bn(eb.data(), static_cast<int>(eb.size()), nullptr));
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
  } else {
    Bytes params = get(CKA_EC_PARAMS), der_point = get(CKA_EC_POINT);
    const unsigned char* p = params.data();
    ASN1_OBJECT* oid = d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(params.size()));
    if (oid == nullptr) return nullptr;
    group = OBJ_nid2sn(OBJ_obj2nid(oid));
    ASN1_OBJECT_free(oid);
    p = der_point.data();
    std::unique_ptr<ASN1_OCTET_STRING, Asn1StringFree> os(
        d2i_ASN1_OCTET_STRING(nullptr, &p, static_cast<long>(der_point.size())));
    if (!os) return nullptr;
    point.assign(ASN1_STRING_get0_data(os.get()),
                 ASN1_STRING_get0_data(os.get()) + ASN1_STRING_length(os.get()));
    OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group.c_str(), 0);
    OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                     point.size());
  }
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, rsa ? "RSA" : "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return nullptr;
  }
  return PkeyPtr(key);
}

TEST_F(MockPkcs11, GenerateKeyPairHonoursTemplates) {
  CK_SESSION_HANDLE s = open(kSlotB);
  CK_MECHANISM rsa_gen{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  const CK_ULONG bits = 2048;
  const Bytes exponent = {0x01, 0x00, 0x01};
  const Bytes id = {0xaa, 0xbb};
  const std::string label = "generated";
  const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  std::vector<CK_ATTRIBUTE> pub_t = {
      attr(CKA_MODULUS_BITS, bits), attr(CKA_PUBLIC_EXPONENT, exponent), attr(CKA_ID, id),
      attr(CKA_LABEL, label.data(), label.size()), attr(CKA_TOKEN, yes)};
  std::vector<CK_ATTRIBUTE> priv_t = {attr(CKA_ID, id), attr(CKA_LABEL, label.data(), label.size()),
                                      attr(CKA_TOKEN, yes), attr(CKA_SENSITIVE, no),
                                      attr(CKA_EXTRACTABLE, yes)};
  CK_OBJECT_HANDLE pub = 0, priv = 0;
  EXPECT_EQ(f_->C_GenerateKeyPair(s, &rsa_gen, pub_t.data(), pub_t.size(), priv_t.data(),
                                  priv_t.size(), &pub, &priv),
            CKR_USER_NOT_LOGGED_IN);
  ASSERT_EQ(login(s, kPin), CKR_OK);
  ASSERT_EQ(f_->C_GenerateKeyPair(s, &rsa_gen, pub_t.data(), pub_t.size(), priv_t.data(),
                                  priv_t.size(), &pub, &priv),
            CKR_OK);
  EXPECT_EQ(get(s, priv, CKA_ID), id);
  EXPECT_EQ(get(s, pub, CKA_LABEL), Bytes(label.begin(), label.end()));
  EXPECT_EQ(get(s, priv, CKA_SENSITIVE), Bytes{CK_FALSE});
  EXPECT_EQ(get(s, priv, CKA_EXTRACTABLE), Bytes{CK_TRUE});
  EXPECT_EQ(get(s, priv, CKA_MODULUS).size(), 256u);
  EXPECT_FALSE(get(s, priv, CKA_PRIVATE_EXPONENT).empty());
  PkeyPtr rsa_pub = public_key_from_token(f_, s, pub, true);
  ASSERT_NE(rsa_pub, nullptr);
  const Bytes sig = sign(s, priv, CK_MECHANISM{CKM_RSA_PKCS, nullptr, 0}, sha256_digest_info("g"));
  EXPECT_TRUE(verify_digest_sign(rsa_pub.get(), EVP_sha256(), "g", sig));

  // EC P-384 as session objects (CKA_TOKEN defaults to false): gone with the session.
  CK_MECHANISM ec_gen{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  const Bytes p384_oid = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
  std::vector<CK_ATTRIBUTE> ec_pub_t = {attr(CKA_EC_PARAMS, p384_oid), attr(CKA_ID, id)};
  std::vector<CK_ATTRIBUTE> ec_priv_t = {attr(CKA_ID, id)};
  ASSERT_EQ(f_->C_GenerateKeyPair(s, &ec_gen, ec_pub_t.data(), ec_pub_t.size(), ec_priv_t.data(),
                                  ec_priv_t.size(), &pub, &priv),
            CKR_OK);
  CK_ATTRIBUTE secret{CKA_VALUE, nullptr, 0};
  EXPECT_EQ(f_->C_GetAttributeValue(s, priv, &secret, 1), CKR_ATTRIBUTE_SENSITIVE);
  PkeyPtr ec_pub = public_key_from_token(f_, s, pub, false);
  ASSERT_NE(ec_pub, nullptr);
  const Bytes ec_sig = sign(s, priv, CK_MECHANISM{CKM_ECDSA, nullptr, 0}, sha(EVP_sha384(), "e"));
  ASSERT_EQ(ec_sig.size(), 96u);
  EXPECT_TRUE(verify_digest_sign(ec_pub.get(), EVP_sha384(), "e", ecdsa_raw_to_der(ec_sig)));
  CK_SESSION_HANDLE keep = open(kSlotB);  // keeps the login while s closes
  ASSERT_EQ(f_->C_CloseSession(s), CKR_OK);
  EXPECT_EQ(find(keep, {attr(CKA_ID, id)}).size(), 2u);  // only the RSA token objects

  const Bytes bad_oid = {0x06, 0x03, 0x2b, 0x65, 0x70};  // Ed25519: not offered
  ec_pub_t = {attr(CKA_EC_PARAMS, bad_oid)};
  EXPECT_EQ(f_->C_GenerateKeyPair(keep, &ec_gen, ec_pub_t.data(), ec_pub_t.size(), nullptr, 0, &pub,
                                  &priv),
            CKR_CURVE_NOT_SUPPORTED);
}

TEST_F(MockPkcs11, RandomAndAddKeyValidation) {
  CK_SESSION_HANDLE s = open(kSlotA);
  Bytes a(32), b(32);
  ASSERT_EQ(f_->C_GenerateRandom(s, a.data(), a.size()), CKR_OK);
  ASSERT_EQ(f_->C_GenerateRandom(s, b.data(), b.size()), CKR_OK);
  EXPECT_NE(a, b);
  EXPECT_EQ(f_->C_SeedRandom(s, a.data(), a.size()), CKR_OK);
  EXPECT_EQ(f_->C_GenerateRandom(999, a.data(), a.size()), CKR_SESSION_HANDLE_INVALID);

  EXPECT_THROW(mock::add_key(5, rsa_key(), {}, "x", {}), std::invalid_argument);
  EXPECT_THROW(mock::add_key(kSlotA, nullptr, {}, "x", {}), std::invalid_argument);
}

TEST_F(MockPkcs11, ConcurrentSigningFromManyThreads) {
  const CK_OBJECT_HANDLE key = mock::add_key(kSlotB, ec_key("P-256"), kEcId, "mt", {});
  CK_SESSION_HANDLE main = open(kSlotB);
  ASSERT_EQ(login(main, kPin), CKR_OK);
  const Bytes digest = sha(EVP_sha256(), "threads");
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
      if (f_->C_OpenSession(kSlotB, CKF_SERIAL_SESSION, nullptr, nullptr, &s) != CKR_OK) return;
      for (int i = 0; i < 25; ++i) {
        CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
        Bytes in = digest, sig(64);
        CK_ULONG len = sig.size();
        if (f_->C_SignInit(s, &mech, key) == CKR_OK &&
            f_->C_Sign(s, in.data(), in.size(), sig.data(), &len) == CKR_OK &&
            verify_digest_sign(ec_key("P-256"), EVP_sha256(), "threads", ecdsa_raw_to_der(sig))) {
          ++good;
        }
      }
      f_->C_CloseSession(s);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 8 * 25);
  EXPECT_EQ(mock::call_count("C_Sign"), 8 * 25);
  EXPECT_EQ(mock::open_session_count(kSlotB), 1);
}

}  // namespace
