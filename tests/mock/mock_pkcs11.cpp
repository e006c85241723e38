// The mock PKCS#11 module behind mock_pkcs11.hpp: slots, sessions, login, objects, signing
// with OpenSSL software keys, and the knobs tests use to inject failures.
//
// Behaviour follows the PKCS#11 2.40 base specification; where the spec leaves a choice, the
// mock does what SoftHSM 2.6 does (mqsec's integration tests run on SoftHSM), so code that
// passes against the mock has no surprises on the real token. Known simplifications:
// - Handles of private objects stay valid across C_Logout (as in SoftHSM).
// - Mutex callbacks in CK_C_INITIALIZE_ARGS are never used: the mock has its own lock, so
//   callbacks without CKF_OS_LOCKING_OK give CKR_CANT_LOCK.
// - No multi-part signing, no C_SetAttributeValue. A PIN pad (set_pin_pad) is simulated: the
//   PIN "typed" on it is right or wrong as the test says.
#include "tests/mock/mock_pkcs11.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>

namespace mqsec::mock {
namespace {

using Bytes = std::vector<uint8_t>;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const noexcept { BN_free(p); }
};
struct X509Free {
  void operator()(X509* p) const noexcept { X509_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const noexcept { ECDSA_SIG_free(p); }
};
struct Asn1ObjFree {
  void operator()(ASN1_OBJECT* p) const noexcept { ASN1_OBJECT_free(p); }
};
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
// Shared, not unique: a signing operation keeps the key alive even if the object that held it
// is destroyed meanwhile (the operation was initialized with a valid key).
using SharedPkey = std::shared_ptr<EVP_PKEY>;

constexpr CK_SLOT_ID kSlotCount = 2;
constexpr int kMaxPinTries = 3;
constexpr CK_ULONG kNotLoggedIn = CK_UNAVAILABLE_INFORMATION;

struct Slot {
  std::string label;
  std::string serial;
  std::string user_pin;
  std::string so_pin;
  CK_ULONG max_sessions = CK_EFFECTIVELY_INFINITE;
  bool present = true;
  CK_ULONG login = kNotLoggedIn;  // CKU_USER, CKU_SO or kNotLoggedIn
  int user_pin_failures = 0;
  int so_pin_failures = 0;
  // Like a PIV card: a context-specific login (a PIN verification) is good for the next
  // signature with a PIN-always key on the token, whichever session makes it.
  bool pin_always_verified = false;
  int fail_context_logins = 0;  // the next n CKU_CONTEXT_SPECIFIC logins fail (fail_context_login)
  CK_RV context_login_rv = CKR_OK;
  KeyGeneration key_generation = KeyGeneration::Supported;
  // CKF_PROTECTED_AUTHENTICATION_PATH: C_Login with a NULL PIN, answered with pin_pad_rv (what
  // the user typed on the reader's PIN pad; CKR_OK is the right PIN).
  bool pin_pad = false;
  CK_RV pin_pad_rv = CKR_OK;
};

// Object::slot of the token objects of a card that is out of every reader (insert_card).
constexpr CK_SLOT_ID kAway = ~static_cast<CK_SLOT_ID>(0);

struct Object {
  CK_SLOT_ID slot = 0;  // kAway: on a card that is out; away_serial says which
  std::string away_serial;
  CK_SESSION_HANDLE owner = CK_INVALID_HANDLE;  // session objects only
  std::map<CK_ATTRIBUTE_TYPE, Bytes> attrs;
  // Secret components (CKA_PRIVATE_EXPONENT, EC CKA_VALUE): readable only when the key is
  // neither sensitive nor unextractable, and never matched by C_FindObjects.
  std::map<CK_ATTRIBUTE_TYPE, Bytes> secrets;
  SharedPkey key;  // private key objects only
};

struct SignOp {
  CK_MECHANISM_TYPE mechanism = 0;
  SharedPkey key;
  bool key_private = true;
  CK_RSA_PKCS_PSS_PARAMS pss{};
  bool needs_context_login = false;
  bool context_login_done = false;
};

struct FindOp {
  std::vector<CK_OBJECT_HANDLE> results;
  size_t next = 0;
};

struct Session {
  CK_SLOT_ID slot = 0;
  CK_FLAGS flags = 0;
  std::optional<SignOp> sign;
  std::optional<FindOp> find;
};

struct Injection {
  std::string fn;
  CK_RV rv = CKR_OK;
  int at_call = 0;  // the call number (call_count after counting) that fails
  bool persistent = false;
};

struct State {
  bool initialized = false;
  std::array<Slot, kSlotCount> slots;
  std::map<CK_SESSION_HANDLE, Session> sessions;
  std::map<CK_OBJECT_HANDLE, Object> objects;
  std::map<std::string, int> calls;
  std::vector<Injection> injections;
  // Never reset (see reset()). Different ranges so a session handle passed as an object
  // handle, or the other way round, is caught.
  CK_SESSION_HANDLE next_session = 0x1000;
  CK_OBJECT_HANDLE next_object = 0x100000;
};

std::mutex g_mutex;
// set_card_latency(): slept after a context-specific login, outside g_mutex, like a card's APDU
// round trips during which other threads run.
std::atomic<long> g_card_latency_us{0};

// on_next_close_session(): run once, outside g_mutex.
std::mutex g_hook_mutex;
std::function<void()> g_close_hook;

void card_latency() {
  if (long us = g_card_latency_us.load(); us > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(us));
  }
}

void init_slots(State& s) {
  s.slots[0] = Slot{"mock-a", "MOCKSERIAL0001", "1234", "5678", 4};
  s.slots[1] = Slot{"mock-b", "MOCKSERIAL0002", "1234", "5678", CK_EFFECTIVELY_INFINITE};
}

void apply_env_setup(State& s);
void write_counts_at_exit();

// The first use sees the same tokens as after reset(), so the .so build needs no set-up call;
// a program that loads the .so as its module (the mqsec command in a CLI test) gets the set-up
// of $MQSEC_MOCK_SETUP on top (see mock_pkcs11.hpp). Immortal: the exit handler that writes
// $MQSEC_MOCK_COUNTS reads it.
State& state() {
  static State& s = *[] {
    auto* fresh = new State;
    init_slots(*fresh);
    apply_env_setup(*fresh);
    if (std::getenv("MQSEC_MOCK_COUNTS") != nullptr) std::atexit(write_counts_at_exit);
    return fresh;
  }();
  return s;
}

// ---- attribute encoding ----------------------------------------------------------------

Bytes ulong_bytes(CK_ULONG v) {
  Bytes b(sizeof v);
  std::memcpy(b.data(), &v, sizeof v);
  return b;
}
Bytes bool_bytes(bool v) { return Bytes{static_cast<uint8_t>(v ? CK_TRUE : CK_FALSE)}; }
Bytes str_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

bool attr_bool(const Object& o, CK_ATTRIBUTE_TYPE t, bool dflt = false) {
  auto it = o.attrs.find(t);
  if (it == o.attrs.end() || it->second.size() != 1) return dflt;
  return it->second[0] != CK_FALSE;
}

std::optional<CK_ULONG> attr_ulong(const Object& o, CK_ATTRIBUTE_TYPE t) {
  auto it = o.attrs.find(t);
  if (it == o.attrs.end() || it->second.size() != sizeof(CK_ULONG)) return std::nullopt;
  CK_ULONG v;
  std::memcpy(&v, it->second.data(), sizeof v);
  return v;
}

// A template as a map; later duplicates win. Returns false on a null value with a length.
bool read_template(CK_ATTRIBUTE_PTR tmpl, CK_ULONG count, std::map<CK_ATTRIBUTE_TYPE, Bytes>& out) {
  if (count > 0 && tmpl == nullptr) return false;
  for (CK_ULONG i = 0; i < count; ++i) {
    const auto* p = static_cast<const uint8_t*>(tmpl[i].pValue);
    if (p == nullptr && tmpl[i].ulValueLen != 0) return false;
    out[tmpl[i].type] = p ? Bytes(p, p + tmpl[i].ulValueLen) : Bytes{};
  }
  return true;
}

// CK_BBOOL attributes in a template must be one byte; CK_ULONG ones sizeof(CK_ULONG).
CK_RV check_template_types(const std::map<CK_ATTRIBUTE_TYPE, Bytes>& t) {
  static const std::set<CK_ATTRIBUTE_TYPE> bools = {
      CKA_TOKEN,   CKA_PRIVATE,      CKA_MODIFIABLE, CKA_SENSITIVE, CKA_EXTRACTABLE,
      CKA_SIGN,    CKA_VERIFY,       CKA_DECRYPT,    CKA_ENCRYPT,   CKA_ALWAYS_AUTHENTICATE,
      CKA_TRUSTED, CKA_SIGN_RECOVER, CKA_DERIVE,     CKA_WRAP,      CKA_UNWRAP};
  static const std::set<CK_ATTRIBUTE_TYPE> ulongs = {CKA_CLASS, CKA_KEY_TYPE, CKA_CERTIFICATE_TYPE,
                                                     CKA_MODULUS_BITS, CKA_CERTIFICATE_CATEGORY};
  for (const auto& [type, value] : t) {
    if (bools.count(type) && value.size() != 1) return CKR_ATTRIBUTE_VALUE_INVALID;
    if (ulongs.count(type) && value.size() != sizeof(CK_ULONG)) return CKR_ATTRIBUTE_VALUE_INVALID;
  }
  return CKR_OK;
}

bool tmpl_bool(const std::map<CK_ATTRIBUTE_TYPE, Bytes>& t, CK_ATTRIBUTE_TYPE type, bool dflt) {
  auto it = t.find(type);
  return it == t.end() || it->second.size() != 1 ? dflt : it->second[0] != CK_FALSE;
}

Bytes der_length(size_t len) {
  if (len < 0x80) return Bytes{static_cast<uint8_t>(len)};
  Bytes digits;
  for (size_t l = len; l != 0; l >>= 8) digits.insert(digits.begin(), static_cast<uint8_t>(l));
  Bytes out{static_cast<uint8_t>(0x80 | digits.size())};
  out.insert(out.end(), digits.begin(), digits.end());
  return out;
}

// ---- OpenSSL key components ------------------------------------------------------------

Bytes bn_param(const EVP_PKEY* key, const char* name, size_t pad_to = 0) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) throw std::runtime_error("key component");
  BnPtr bn(raw);
  Bytes out(std::max(static_cast<size_t>(BN_num_bytes(bn.get())), pad_to));
  if (BN_bn2binpad(bn.get(), out.data(), static_cast<int>(out.size())) < 0) {
    throw std::runtime_error("key component");
  }
  return out;
}

// NID of an EC key's named curve, or NID_undef.
int ec_curve_nid(const EVP_PKEY* key) {
  char name[80] = {};
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, nullptr) !=
      1) {
    return NID_undef;
  }
  return OBJ_txt2nid(name);
}

Bytes ec_params_der(int nid) {
  ASN1_OBJECT* obj = OBJ_nid2obj(nid);  // static table entry, not freed
  int len = obj ? i2d_ASN1_OBJECT(obj, nullptr) : -1;
  if (len <= 0) throw std::runtime_error("curve OID");
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  i2d_ASN1_OBJECT(obj, &p);
  return out;
}

// CKA_EC_POINT as SoftHSM stores it: DER OCTET STRING around the uncompressed point.
Bytes ec_point_der(const EVP_PKEY* key) {
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0, &len) != 1) {
    throw std::runtime_error("EC point");
  }
  Bytes point(len);
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point.data(), len, &len) != 1) {
    throw std::runtime_error("EC point");
  }
  point.resize(len);
  Bytes out{0x04};
  Bytes l = der_length(point.size());
  out.insert(out.end(), l.begin(), l.end());
  out.insert(out.end(), point.begin(), point.end());
  return out;
}

bool key_supported(const EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA")) return true;
  if (!EVP_PKEY_is_a(key, "EC")) return false;
  int nid = ec_curve_nid(key);
  return nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 || nid == NID_secp521r1;
}

bool key_has_private_part(const EVP_PKEY* key) {
  BIGNUM* raw = nullptr;
  const char* name = EVP_PKEY_is_a(key, "RSA") ? OSSL_PKEY_PARAM_RSA_D : OSSL_PKEY_PARAM_PRIV_KEY;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) return false;
  BN_free(raw);
  return true;
}

struct KeyOptions {
  Bytes id;
  Bytes label;
  bool token = true;
  bool priv = true;
  bool sensitive = true;
  bool extractable = false;
  bool always_authenticate = false;
  bool local = false;
  CK_MECHANISM_TYPE gen_mechanism = CK_UNAVAILABLE_INFORMATION;
};

// Builds the private and public key objects of `key` (both not yet in the table).
std::pair<Object, Object> key_objects(CK_SLOT_ID slot, SharedPkey key, const KeyOptions& priv_opt,
                                      const KeyOptions& pub_opt) {
  const bool rsa = EVP_PKEY_is_a(key.get(), "RSA");
  Object priv, pub;
  priv.slot = pub.slot = slot;
  for (Object* o : {&priv, &pub}) {
    const KeyOptions& opt = o == &priv ? priv_opt : pub_opt;
    o->attrs[CKA_KEY_TYPE] = ulong_bytes(rsa ? CKK_RSA : CKK_EC);
    o->attrs[CKA_ID] = opt.id;
    o->attrs[CKA_LABEL] = opt.label;
    o->attrs[CKA_TOKEN] = bool_bytes(opt.token);
    o->attrs[CKA_MODIFIABLE] = bool_bytes(true);
    o->attrs[CKA_LOCAL] = bool_bytes(opt.local);
    o->attrs[CKA_KEY_GEN_MECHANISM] = ulong_bytes(opt.gen_mechanism);
    o->attrs[CKA_DERIVE] = bool_bytes(false);
  }
  priv.attrs[CKA_CLASS] = ulong_bytes(CKO_PRIVATE_KEY);
  priv.attrs[CKA_PRIVATE] = bool_bytes(priv_opt.priv);
  priv.attrs[CKA_SENSITIVE] = bool_bytes(priv_opt.sensitive);
  priv.attrs[CKA_ALWAYS_SENSITIVE] = bool_bytes(priv_opt.sensitive);
  priv.attrs[CKA_EXTRACTABLE] = bool_bytes(priv_opt.extractable);
  priv.attrs[CKA_NEVER_EXTRACTABLE] = bool_bytes(!priv_opt.extractable);
  priv.attrs[CKA_ALWAYS_AUTHENTICATE] = bool_bytes(priv_opt.always_authenticate);
  priv.attrs[CKA_SIGN] = bool_bytes(true);
  priv.attrs[CKA_SIGN_RECOVER] = bool_bytes(false);
  priv.attrs[CKA_DECRYPT] = bool_bytes(false);
  priv.attrs[CKA_UNWRAP] = bool_bytes(false);
  pub.attrs[CKA_CLASS] = ulong_bytes(CKO_PUBLIC_KEY);
  pub.attrs[CKA_PRIVATE] = bool_bytes(false);
  pub.attrs[CKA_VERIFY] = bool_bytes(true);
  pub.attrs[CKA_ENCRYPT] = bool_bytes(false);
  pub.attrs[CKA_WRAP] = bool_bytes(false);
  if (rsa) {
    Bytes n = bn_param(key.get(), OSSL_PKEY_PARAM_RSA_N);
    Bytes e = bn_param(key.get(), OSSL_PKEY_PARAM_RSA_E);
    priv.attrs[CKA_MODULUS] = pub.attrs[CKA_MODULUS] = n;
    priv.attrs[CKA_PUBLIC_EXPONENT] = pub.attrs[CKA_PUBLIC_EXPONENT] = e;
    pub.attrs[CKA_MODULUS_BITS] = ulong_bytes(static_cast<CK_ULONG>(EVP_PKEY_get_bits(key.get())));
    priv.secrets[CKA_PRIVATE_EXPONENT] = bn_param(key.get(), OSSL_PKEY_PARAM_RSA_D, n.size());
  } else {
    Bytes params = ec_params_der(ec_curve_nid(key.get()));
    priv.attrs[CKA_EC_PARAMS] = pub.attrs[CKA_EC_PARAMS] = params;
    pub.attrs[CKA_EC_POINT] = ec_point_der(key.get());
    const size_t field = static_cast<size_t>((EVP_PKEY_get_bits(key.get()) + 7) / 8);
    priv.secrets[CKA_VALUE] = bn_param(key.get(), OSSL_PKEY_PARAM_PRIV_KEY, field);
  }
  priv.key = std::move(key);
  return {std::move(priv), std::move(pub)};
}

// Fills CKA_SUBJECT/ISSUER/SERIAL_NUMBER from a DER certificate where the caller left them out
// and the DER parses; a malformed certificate is kept as it is.
void add_certificate_fields(Object& o, const Bytes& der) {
  const unsigned char* p = der.data();
  std::unique_ptr<X509, X509Free> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) {
    ERR_clear_error();
    return;
  }
  auto put = [&](CK_ATTRIBUTE_TYPE type, int len, auto encode) {
    if (o.attrs.count(type) || len <= 0) return;
    Bytes v(static_cast<size_t>(len));
    unsigned char* q = v.data();
    encode(&q);
    o.attrs[type] = std::move(v);
  };
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME* issuer = X509_get_issuer_name(cert.get());
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
  put(CKA_SUBJECT, i2d_X509_NAME(subject, nullptr),
      [&](unsigned char** q) { i2d_X509_NAME(subject, q); });
  put(CKA_ISSUER, i2d_X509_NAME(issuer, nullptr),
      [&](unsigned char** q) { i2d_X509_NAME(issuer, q); });
  put(CKA_SERIAL_NUMBER, i2d_ASN1_INTEGER(serial, nullptr),
      [&](unsigned char** q) { i2d_ASN1_INTEGER(serial, q); });
}

Object certificate_object(CK_SLOT_ID slot, const Bytes& id, const Bytes& label, const Bytes& der) {
  Object c;
  c.slot = slot;
  c.attrs[CKA_CLASS] = ulong_bytes(CKO_CERTIFICATE);
  c.attrs[CKA_CERTIFICATE_TYPE] = ulong_bytes(CKC_X_509);
  c.attrs[CKA_ID] = id;
  c.attrs[CKA_LABEL] = label;
  c.attrs[CKA_VALUE] = der;
  c.attrs[CKA_TOKEN] = bool_bytes(true);
  c.attrs[CKA_PRIVATE] = bool_bytes(false);
  c.attrs[CKA_MODIFIABLE] = bool_bytes(true);
  c.attrs[CKA_TRUSTED] = bool_bytes(false);
  c.attrs[CKA_CERTIFICATE_CATEGORY] = ulong_bytes(0);
  add_certificate_fields(c, der);
  return c;
}

// ---- set-up from the environment (CLI tests) ------------------------------------------

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

Bytes file_bytes(const std::string& path) {
  Bytes out;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    unsigned char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
    std::fclose(f);
  }
  return out;
}

Bytes hex_bytes(const std::string& hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// $MQSEC_MOCK_SETUP: entries separated by ';', each "<slot>:<setting>,<setting>,...". Settings:
// label=, serial=, pin=, pin-failures=<n>, pin-pad=ok|wrong, keygen=unsupported|not-offered,
// and for a key: key=<PEM private key file>, cert=<DER certificate file>, id=<hex>,
// object=<label>, always-auth. A malformed entry is ignored (this is a test module).
void apply_env_setup(State& s) {
  const char* env = std::getenv("MQSEC_MOCK_SETUP");
  if (env == nullptr) return;
  for (const std::string& entry : split(env, ';')) {
    try {
      const size_t colon = entry.find(':');
      if (colon == std::string::npos) continue;
      const CK_SLOT_ID slot = std::stoul(entry.substr(0, colon));
      if (slot >= kSlotCount) continue;
      Slot& sl = s.slots[slot];
      KeyOptions opt;
      opt.token = true;
      std::string key_file, cert_file;
      for (const std::string& setting : split(entry.substr(colon + 1), ',')) {
        const size_t eq = setting.find('=');
        const std::string k = setting.substr(0, eq);
        const std::string v = eq == std::string::npos ? std::string() : setting.substr(eq + 1);
        if (k == "label") sl.label = v;
        if (k == "serial") sl.serial = v;
        if (k == "pin") sl.user_pin = v;
        if (k == "pin-failures") sl.user_pin_failures = std::stoi(v);
        if (k == "pin-pad") {
          sl.pin_pad = true;
          sl.pin_pad_rv = v == "wrong" ? CKR_PIN_INCORRECT : CKR_OK;
        }
        if (k == "keygen") {
          sl.key_generation =
              v == "not-offered" ? KeyGeneration::NotOffered : KeyGeneration::FunctionNotSupported;
        }
        if (k == "key") key_file = v;
        if (k == "cert") cert_file = v;
        if (k == "id") opt.id = hex_bytes(v);
        if (k == "object") opt.label = str_bytes(v);
        if (k == "always-auth") opt.always_authenticate = true;
      }
      if (key_file.empty()) continue;
      FILE* f = std::fopen(key_file.c_str(), "r");
      if (f == nullptr) continue;
      SharedPkey key(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr), PkeyFree());
      std::fclose(f);
      if (!key || !key_supported(key.get())) continue;
      KeyOptions pub_opt = opt;
      pub_opt.priv = false;
      auto [priv, pub] = key_objects(slot, key, opt, pub_opt);
      s.objects.emplace(s.next_object++, std::move(priv));
      s.objects.emplace(s.next_object++, std::move(pub));
      if (!cert_file.empty()) {
        s.objects.emplace(s.next_object++,
                          certificate_object(slot, opt.id, opt.label, file_bytes(cert_file)));
      }
    } catch (const std::exception&) {
      // ignored, as documented
    }
  }
}

// $MQSEC_MOCK_COUNTS: at exit, "<entry point> <calls>" per line, so that a CLI test can tell
// whether the command called C_Login at all.
void write_counts_at_exit() {
  const char* path = std::getenv("MQSEC_MOCK_COUNTS");
  if (path == nullptr) return;
  std::lock_guard lock(g_mutex);
  if (FILE* f = std::fopen(path, "w")) {
    for (const auto& [fn, n] : state().calls) std::fprintf(f, "%s %d\n", fn.c_str(), n);
    std::fclose(f);
  }
}

// ---- common checks ---------------------------------------------------------------------

bool valid_slot(CK_SLOT_ID id) { return id < kSlotCount; }

CK_STATE session_state(const State& s, const Session& sess) {
  const bool rw = (sess.flags & CKF_RW_SESSION) != 0;
  switch (s.slots[sess.slot].login) {
    case CKU_USER:
      return rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
    case CKU_SO:
      return CKS_RW_SO_FUNCTIONS;
    default:
      return rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
  }
}

Session* find_session(State& s, CK_SESSION_HANDLE h) {
  auto it = s.sessions.find(h);
  return it == s.sessions.end() ? nullptr : &it->second;
}

bool user_logged_in(const State& s, CK_SLOT_ID slot) { return s.slots[slot].login == CKU_USER; }

// The object `h` as seen from `sess`: CKR_OBJECT_HANDLE_INVALID if it does not exist or lives
// on another token, CKR_USER_NOT_LOGGED_IN if it is private and the user is not logged in
// (SoftHSM's answer, for a handle the application got while logged in).
CK_RV access_object(State& s, const Session& sess, CK_OBJECT_HANDLE h, Object*& out) {
  auto it = s.objects.find(h);
  if (it == s.objects.end() || it->second.slot != sess.slot) return CKR_OBJECT_HANDLE_INVALID;
  if (attr_bool(it->second, CKA_PRIVATE) && !user_logged_in(s, sess.slot)) {
    return CKR_USER_NOT_LOGGED_IN;
  }
  out = &it->second;
  return CKR_OK;
}

// Whether `sess` may write an object with these CKA_TOKEN/CKA_PRIVATE values.
CK_RV check_write(const State& s, const Session& sess, bool token, bool priv) {
  if (token && !(sess.flags & CKF_RW_SESSION)) return CKR_SESSION_READ_ONLY;
  if (priv && !user_logged_in(s, sess.slot)) return CKR_USER_NOT_LOGGED_IN;
  return CKR_OK;
}

void destroy_session_objects(State& s, CK_SESSION_HANDLE h) {
  std::erase_if(s.objects, [h](const auto& kv) { return kv.second.owner == h; });
}

void logout_slot(State& s, CK_SLOT_ID slot) {
  s.slots[slot].login = kNotLoggedIn;
  s.slots[slot].pin_always_verified = false;
  // Logout destroys the application's private session objects (PKCS#11 2.40, C_Logout).
  std::erase_if(s.objects, [slot](const auto& kv) {
    return kv.second.slot == slot && kv.second.owner != CK_INVALID_HANDLE &&
           attr_bool(kv.second, CKA_PRIVATE);
  });
}

void close_session(State& s, CK_SESSION_HANDLE h) {
  auto it = s.sessions.find(h);
  if (it == s.sessions.end()) return;
  const CK_SLOT_ID slot = it->second.slot;
  destroy_session_objects(s, h);
  s.sessions.erase(it);
  const bool last = std::none_of(s.sessions.begin(), s.sessions.end(),
                                 [slot](const auto& kv) { return kv.second.slot == slot; });
  if (last) logout_slot(s, slot);
}

void close_all_sessions(State& s, CK_SLOT_ID slot) {
  std::vector<CK_SESSION_HANDLE> victims;
  for (const auto& [h, sess] : s.sessions) {
    if (sess.slot == slot) victims.push_back(h);
  }
  for (CK_SESSION_HANDLE h : victims) close_session(s, h);
  logout_slot(s, slot);
}

int sessions_on(const State& s, CK_SLOT_ID slot, bool rw_only = false) {
  return static_cast<int>(std::count_if(s.sessions.begin(), s.sessions.end(), [&](const auto& kv) {
    return kv.second.slot == slot && (!rw_only || (kv.second.flags & CKF_RW_SESSION));
  }));
}

void pad_copy(unsigned char* dst, size_t n, const std::string& src) {
  std::memset(dst, ' ', n);
  std::memcpy(dst, src.data(), std::min(n, src.size()));
}

// ---- the entry-point wrapper -----------------------------------------------------------

// Every entry point goes through here: take the lock, count the call, apply injected
// failures, require C_Initialize (unless the function works without it), then run the body.
// No exception may cross the C ABI, so they become Cryptoki codes.
template <typename Body>
CK_RV entry(const char* fn, bool needs_init, Body&& body) noexcept {
  try {
    std::lock_guard lock(g_mutex);
    State& s = state();
    const int call = ++s.calls[fn];
    std::optional<CK_RV> injected;
    for (auto it = s.injections.begin(); it != s.injections.end();) {
      const bool hit =
          it->fn == fn && (call == it->at_call || (it->persistent && call > it->at_call));
      if (hit && !injected) injected = it->rv;
      if (hit && !it->persistent) {
        it = s.injections.erase(it);
      } else {
        ++it;
      }
    }
    if (injected) return *injected;
    if (needs_init && !s.initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    return body(s);
  } catch (const std::bad_alloc&) {
    return CKR_HOST_MEMORY;
  } catch (...) {
    return CKR_GENERAL_ERROR;
  }
}

// ---- general purpose -------------------------------------------------------------------

CK_RV mock_Initialize(CK_VOID_PTR pInitArgs) {
  return entry("C_Initialize", false, [&](State& s) -> CK_RV {
    if (pInitArgs != nullptr) {
      const auto* args = static_cast<const CK_C_INITIALIZE_ARGS*>(pInitArgs);
      if (args->pReserved != nullptr) return CKR_ARGUMENTS_BAD;
      const int given = (args->CreateMutex != nullptr) + (args->DestroyMutex != nullptr) +
                        (args->LockMutex != nullptr) + (args->UnlockMutex != nullptr);
      if (given != 0 && given != 4) return CKR_ARGUMENTS_BAD;
      // The mock locks with its own mutex; it cannot promise to use only the callbacks.
      if (given == 4 && !(args->flags & CKF_OS_LOCKING_OK)) return CKR_CANT_LOCK;
    }
    if (s.initialized) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    s.initialized = true;
    return CKR_OK;
  });
}

CK_RV mock_Finalize(CK_VOID_PTR pReserved) {
  return entry("C_Finalize", true, [&](State& s) -> CK_RV {
    if (pReserved != nullptr) return CKR_ARGUMENTS_BAD;
    for (CK_SLOT_ID slot = 0; slot < kSlotCount; ++slot) close_all_sessions(s, slot);
    s.initialized = false;
    return CKR_OK;
  });
}

CK_RV mock_GetInfo(CK_INFO_PTR pInfo) {
  return entry("C_GetInfo", true, [&](State&) -> CK_RV {
    if (pInfo == nullptr) return CKR_ARGUMENTS_BAD;
    *pInfo = CK_INFO{};
    pInfo->cryptokiVersion = {CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR};
    pad_copy(pInfo->manufacturerID, sizeof pInfo->manufacturerID, "mqsec");
    pInfo->flags = 0;
    pad_copy(pInfo->libraryDescription, sizeof pInfo->libraryDescription, "mqsec mock PKCS#11");
    pInfo->libraryVersion = {1, 0};
    return CKR_OK;
  });
}

CK_RV mock_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList) {
  return entry("C_GetFunctionList", false, [&](State&) -> CK_RV {
    if (ppFunctionList == nullptr) return CKR_ARGUMENTS_BAD;
    *ppFunctionList = function_list();
    return CKR_OK;
  });
}

// ---- slots and tokens ------------------------------------------------------------------

CK_RV mock_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount) {
  return entry("C_GetSlotList", true, [&](State& s) -> CK_RV {
    if (pulCount == nullptr) return CKR_ARGUMENTS_BAD;
    std::vector<CK_SLOT_ID> ids;
    for (CK_SLOT_ID id = 0; id < kSlotCount; ++id) {
      if (!tokenPresent || s.slots[id].present) ids.push_back(id);
    }
    if (pSlotList == nullptr) {
      *pulCount = ids.size();
      return CKR_OK;
    }
    if (*pulCount < ids.size()) {
      *pulCount = ids.size();
      return CKR_BUFFER_TOO_SMALL;
    }
    std::copy(ids.begin(), ids.end(), pSlotList);
    *pulCount = ids.size();
    return CKR_OK;
  });
}

CK_RV mock_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo) {
  return entry("C_GetSlotInfo", true, [&](State& s) -> CK_RV {
    if (!valid_slot(slotID)) return CKR_SLOT_ID_INVALID;
    if (pInfo == nullptr) return CKR_ARGUMENTS_BAD;
    *pInfo = CK_SLOT_INFO{};
    pad_copy(pInfo->slotDescription, sizeof pInfo->slotDescription,
             "mqsec mock slot " + std::to_string(slotID));
    pad_copy(pInfo->manufacturerID, sizeof pInfo->manufacturerID, "mqsec");
    pInfo->flags = CKF_REMOVABLE_DEVICE | (s.slots[slotID].present ? CKF_TOKEN_PRESENT : 0);
    pInfo->hardwareVersion = {1, 0};
    pInfo->firmwareVersion = {1, 0};
    return CKR_OK;
  });
}

CK_RV mock_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) {
  return entry("C_GetTokenInfo", true, [&](State& s) -> CK_RV {
    if (!valid_slot(slotID)) return CKR_SLOT_ID_INVALID;
    if (pInfo == nullptr) return CKR_ARGUMENTS_BAD;
    const Slot& slot = s.slots[slotID];
    if (!slot.present) return CKR_TOKEN_NOT_PRESENT;
    *pInfo = CK_TOKEN_INFO{};
    pad_copy(pInfo->label, sizeof pInfo->label, slot.label);
    pad_copy(pInfo->manufacturerID, sizeof pInfo->manufacturerID, "mqsec");
    pad_copy(pInfo->model, sizeof pInfo->model, "mock");
    pad_copy(pInfo->serialNumber, sizeof pInfo->serialNumber, slot.serial);
    CK_FLAGS flags =
        CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_RNG;
    if (slot.user_pin_failures > 0) flags |= CKF_USER_PIN_COUNT_LOW;
    if (slot.user_pin_failures == kMaxPinTries - 1) flags |= CKF_USER_PIN_FINAL_TRY;
    if (slot.user_pin_failures >= kMaxPinTries) flags |= CKF_USER_PIN_LOCKED;
    if (slot.so_pin_failures > 0) flags |= CKF_SO_PIN_COUNT_LOW;
    if (slot.so_pin_failures == kMaxPinTries - 1) flags |= CKF_SO_PIN_FINAL_TRY;
    if (slot.so_pin_failures >= kMaxPinTries) flags |= CKF_SO_PIN_LOCKED;
    if (slot.pin_pad) flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
    pInfo->flags = flags;
    pInfo->ulMaxSessionCount = slot.max_sessions;
    pInfo->ulSessionCount = static_cast<CK_ULONG>(sessions_on(s, slotID));
    pInfo->ulMaxRwSessionCount = slot.max_sessions;
    pInfo->ulRwSessionCount = static_cast<CK_ULONG>(sessions_on(s, slotID, true));
    pInfo->ulMaxPinLen = 64;
    pInfo->ulMinPinLen = 4;
    pInfo->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->hardwareVersion = {1, 0};
    pInfo->firmwareVersion = {1, 0};
    pad_copy(pInfo->utcTime, sizeof pInfo->utcTime, "");
    return CKR_OK;
  });
}

struct MechanismEntry {
  CK_MECHANISM_TYPE type;
  CK_MECHANISM_INFO info;
};
constexpr std::array<MechanismEntry, 5> kMechanisms = {{
    {CKM_RSA_PKCS, {1024, 4096, CKF_SIGN}},
    {CKM_RSA_PKCS_PSS, {1024, 4096, CKF_SIGN}},
    {CKM_ECDSA, {256, 521, CKF_SIGN | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS}},
    {CKM_RSA_PKCS_KEY_PAIR_GEN, {1024, 4096, CKF_GENERATE_KEY_PAIR}},
    {CKM_EC_KEY_PAIR_GEN,
     {256, 384, CKF_GENERATE_KEY_PAIR | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS}},
}};

// Whether the token of `slot` lists mechanism `m` (set_key_generation(NotOffered) hides the
// key-pair generators).
bool offers(const Slot& slot, const MechanismEntry& m) {
  return slot.key_generation != KeyGeneration::NotOffered ||
         !(m.info.flags & CKF_GENERATE_KEY_PAIR);
}

CK_RV mock_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pList, CK_ULONG_PTR pulCount) {
  return entry("C_GetMechanismList", true, [&](State& s) -> CK_RV {
    if (!valid_slot(slotID)) return CKR_SLOT_ID_INVALID;
    if (pulCount == nullptr) return CKR_ARGUMENTS_BAD;
    if (!s.slots[slotID].present) return CKR_TOKEN_NOT_PRESENT;
    std::vector<CK_MECHANISM_TYPE> list;
    for (const auto& m : kMechanisms) {
      if (offers(s.slots[slotID], m)) list.push_back(m.type);
    }
    if (pList == nullptr) {
      *pulCount = list.size();
      return CKR_OK;
    }
    if (*pulCount < list.size()) {
      *pulCount = list.size();
      return CKR_BUFFER_TOO_SMALL;
    }
    std::copy(list.begin(), list.end(), pList);
    *pulCount = list.size();
    return CKR_OK;
  });
}

CK_RV mock_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type,
                            CK_MECHANISM_INFO_PTR pInfo) {
  return entry("C_GetMechanismInfo", true, [&](State& s) -> CK_RV {
    if (!valid_slot(slotID)) return CKR_SLOT_ID_INVALID;
    if (pInfo == nullptr) return CKR_ARGUMENTS_BAD;
    if (!s.slots[slotID].present) return CKR_TOKEN_NOT_PRESENT;
    for (const auto& m : kMechanisms) {
      if (m.type == type && offers(s.slots[slotID], m)) {
        *pInfo = m.info;
        return CKR_OK;
      }
    }
    return CKR_MECHANISM_INVALID;
  });
}

// ---- sessions and login ----------------------------------------------------------------

CK_RV mock_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR, CK_NOTIFY,
                       CK_SESSION_HANDLE_PTR phSession) {
  return entry("C_OpenSession", true, [&](State& s) -> CK_RV {
    if (!valid_slot(slotID)) return CKR_SLOT_ID_INVALID;
    if (phSession == nullptr) return CKR_ARGUMENTS_BAD;
    const Slot& slot = s.slots[slotID];
    if (!slot.present) return CKR_TOKEN_NOT_PRESENT;
    if (!(flags & CKF_SERIAL_SESSION)) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    if (slot.max_sessions != CK_EFFECTIVELY_INFINITE &&
        static_cast<CK_ULONG>(sessions_on(s, slotID)) >= slot.max_sessions) {
      return CKR_SESSION_COUNT;
    }
    if (!(flags & CKF_RW_SESSION) && slot.login == CKU_SO) return CKR_SESSION_READ_WRITE_SO_EXISTS;
    Session sess;
    sess.slot = slotID;
    sess.flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
    const CK_SESSION_HANDLE h = s.next_session++;
    s.sessions.emplace(h, std::move(sess));
    *phSession = h;
    return CKR_OK;
  });
}

CK_RV mock_CloseSession(CK_SESSION_HANDLE hSession) {
  CK_RV rv = entry("C_CloseSession", true, [&](State& s) -> CK_RV {
    if (!find_session(s, hSession)) return CKR_SESSION_HANDLE_INVALID;
    close_session(s, hSession);
    return CKR_OK;
  });
  std::function<void()> hook;
  {
    std::lock_guard lock(g_hook_mutex);
    hook.swap(g_close_hook);
  }
  if (hook) hook();
  return rv;
}

CK_RV mock_CloseAllSessions(CK_SLOT_ID slotID) {
  return entry("C_CloseAllSessions", true, [&](State& s) -> CK_RV {
    if (!valid_slot(slotID)) return CKR_SLOT_ID_INVALID;
    if (!s.slots[slotID].present) return CKR_TOKEN_NOT_PRESENT;
    close_all_sessions(s, slotID);
    return CKR_OK;
  });
}

CK_RV mock_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo) {
  return entry("C_GetSessionInfo", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (pInfo == nullptr) return CKR_ARGUMENTS_BAD;
    pInfo->slotID = sess->slot;
    pInfo->state = session_state(s, *sess);
    pInfo->flags = sess->flags;
    pInfo->ulDeviceError = 0;
    return CKR_OK;
  });
}

// Compares a PIN and keeps the retry counter; the counter is per token and survives logout.
// A NULL `pin` was entered on the PIN pad: `pad_rv` says whether it was the right one.
CK_RV check_pin(int& failures, const std::string& expected, CK_UTF8CHAR_PTR pin, CK_ULONG len,
                CK_RV pad_rv = CKR_OK) {
  if (failures >= kMaxPinTries) return CKR_PIN_LOCKED;
  const bool ok = pin == nullptr
                      ? pad_rv == CKR_OK
                      : len == expected.size() && std::memcmp(pin, expected.data(), len) == 0;
  if (!ok) {
    ++failures;
    return CKR_PIN_INCORRECT;
  }
  failures = 0;
  return CKR_OK;
}

CK_RV mock_Login_body(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                      CK_ULONG ulPinLen) {
  return entry("C_Login", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    Slot& slot = s.slots[sess->slot];
    // A NULL PIN is typed on the reader's PIN pad, where there is one (set_pin_pad).
    if (pPin == nullptr && (!slot.pin_pad || ulPinLen != 0)) return CKR_ARGUMENTS_BAD;
    switch (userType) {
      case CKU_USER: {
        if (slot.login == CKU_USER) return CKR_USER_ALREADY_LOGGED_IN;
        if (slot.login == CKU_SO) return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
        CK_RV rv =
            check_pin(slot.user_pin_failures, slot.user_pin, pPin, ulPinLen, slot.pin_pad_rv);
        if (rv == CKR_OK) slot.login = CKU_USER;
        return rv;
      }
      case CKU_SO: {
        if (slot.login == CKU_SO) return CKR_USER_ALREADY_LOGGED_IN;
        if (slot.login == CKU_USER) return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
        for (const auto& [h, other] : s.sessions) {
          if (other.slot == sess->slot && !(other.flags & CKF_RW_SESSION)) {
            return CKR_SESSION_READ_ONLY_EXISTS;
          }
        }
        CK_RV rv = check_pin(slot.so_pin_failures, slot.so_pin, pPin, ulPinLen, slot.pin_pad_rv);
        if (rv == CKR_OK) slot.login = CKU_SO;
        return rv;
      }
      case CKU_CONTEXT_SPECIFIC: {
        if (!sess->sign) return CKR_OPERATION_NOT_INITIALIZED;
        if (slot.login != CKU_USER) return CKR_USER_NOT_LOGGED_IN;
        // Like OpenSC, a failed context-specific login leaves the sign operation active.
        if (slot.fail_context_logins > 0) {
          --slot.fail_context_logins;
          return slot.context_login_rv;
        }
        CK_RV rv =
            check_pin(slot.user_pin_failures, slot.user_pin, pPin, ulPinLen, slot.pin_pad_rv);
        if (rv == CKR_OK) {
          sess->sign->context_login_done = true;
          slot.pin_always_verified = true;
        }
        return rv;
      }
      default:
        return CKR_USER_TYPE_INVALID;
    }
  });
}

CK_RV mock_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                 CK_ULONG ulPinLen) {
  CK_RV rv = mock_Login_body(hSession, userType, pPin, ulPinLen);
  if (userType == CKU_CONTEXT_SPECIFIC) card_latency();
  return rv;
}

CK_RV mock_Logout(CK_SESSION_HANDLE hSession) {
  return entry("C_Logout", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (s.slots[sess->slot].login == kNotLoggedIn) return CKR_USER_NOT_LOGGED_IN;
    logout_slot(s, sess->slot);
    return CKR_OK;
  });
}

// ---- objects ---------------------------------------------------------------------------

CK_RV mock_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
                        CK_OBJECT_HANDLE_PTR phObject) {
  return entry("C_CreateObject", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (phObject == nullptr) return CKR_ARGUMENTS_BAD;
    Object o;
    o.slot = sess->slot;
    if (!read_template(pTemplate, ulCount, o.attrs)) return CKR_ARGUMENTS_BAD;
    if (CK_RV rv = check_template_types(o.attrs); rv != CKR_OK) return rv;
    const auto cls = attr_ulong(o, CKA_CLASS);
    if (!cls) return CKR_TEMPLATE_INCOMPLETE;
    if (*cls == CKO_CERTIFICATE) {
      const auto type = attr_ulong(o, CKA_CERTIFICATE_TYPE);
      if (!type || !o.attrs.count(CKA_VALUE)) return CKR_TEMPLATE_INCOMPLETE;
      if (*type != CKC_X_509) return CKR_ATTRIBUTE_VALUE_INVALID;
      o.attrs.try_emplace(CKA_ID);
      o.attrs.try_emplace(CKA_TRUSTED, bool_bytes(false));
      o.attrs.try_emplace(CKA_CERTIFICATE_CATEGORY, ulong_bytes(0));
      add_certificate_fields(o, o.attrs[CKA_VALUE]);
    } else if (*cls == CKO_DATA) {
      o.attrs.try_emplace(CKA_APPLICATION);
      o.attrs.try_emplace(CKA_VALUE);
    } else {
      return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    o.attrs.try_emplace(CKA_TOKEN, bool_bytes(false));
    o.attrs.try_emplace(CKA_PRIVATE, bool_bytes(false));
    o.attrs.try_emplace(CKA_MODIFIABLE, bool_bytes(true));
    o.attrs.try_emplace(CKA_LABEL);
    const bool token = attr_bool(o, CKA_TOKEN);
    if (CK_RV rv = check_write(s, *sess, token, attr_bool(o, CKA_PRIVATE)); rv != CKR_OK) return rv;
    if (!token) o.owner = hSession;
    const CK_OBJECT_HANDLE h = s.next_object++;
    s.objects.emplace(h, std::move(o));
    *phObject = h;
    return CKR_OK;
  });
}

CK_RV mock_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject) {
  return entry("C_DestroyObject", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    Object* o = nullptr;
    if (CK_RV rv = access_object(s, *sess, hObject, o); rv != CKR_OK) return rv;
    if (CK_RV rv = check_write(s, *sess, attr_bool(*o, CKA_TOKEN), attr_bool(*o, CKA_PRIVATE));
        rv != CKR_OK) {
      return rv;
    }
    s.objects.erase(hObject);
    return CKR_OK;
  });
}

CK_RV mock_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                             CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) {
  return entry("C_GetAttributeValue", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (pTemplate == nullptr && ulCount > 0) return CKR_ARGUMENTS_BAD;
    Object* o = nullptr;
    if (CK_RV rv = access_object(s, *sess, hObject, o); rv != CKR_OK) return rv;
    const bool readable_secrets = !attr_bool(*o, CKA_SENSITIVE) && attr_bool(*o, CKA_EXTRACTABLE);
    // The spec lets any of several errors win; report the most informative one, and still
    // process every attribute as C_GetAttributeValue must.
    bool sensitive = false, invalid = false, too_small = false;
    for (CK_ULONG i = 0; i < ulCount; ++i) {
      CK_ATTRIBUTE& a = pTemplate[i];
      const Bytes* value = nullptr;
      if (auto it = o->attrs.find(a.type); it != o->attrs.end()) {
        value = &it->second;
      } else if (auto sit = o->secrets.find(a.type); sit != o->secrets.end()) {
        if (!readable_secrets) {
          a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
          sensitive = true;
          continue;
        }
        value = &sit->second;
      }
      if (value == nullptr) {
        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
        invalid = true;
      } else if (a.pValue == nullptr) {
        a.ulValueLen = value->size();
      } else if (a.ulValueLen < value->size()) {
        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
        too_small = true;
      } else {
        std::copy(value->begin(), value->end(), static_cast<uint8_t*>(a.pValue));
        a.ulValueLen = value->size();
      }
    }
    if (sensitive) return CKR_ATTRIBUTE_SENSITIVE;
    if (invalid) return CKR_ATTRIBUTE_TYPE_INVALID;
    if (too_small) return CKR_BUFFER_TOO_SMALL;
    return CKR_OK;
  });
}

CK_RV mock_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate,
                           CK_ULONG ulCount) {
  return entry("C_FindObjectsInit", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (sess->find) return CKR_OPERATION_ACTIVE;
    std::map<CK_ATTRIBUTE_TYPE, Bytes> tmpl;
    if (!read_template(pTemplate, ulCount, tmpl)) return CKR_ARGUMENTS_BAD;
    FindOp op;
    const bool user = user_logged_in(s, sess->slot);
    for (const auto& entry : s.objects) {
      const auto& [h, o] = entry;
      const auto& obj = entry.second;  // a lambda cannot capture a structured binding in C++17
      if (o.slot != sess->slot) continue;
      if (attr_bool(o, CKA_PRIVATE) && !user) continue;  // invisible, as on a real token
      const bool match = std::all_of(tmpl.begin(), tmpl.end(), [&obj](const auto& kv) {
        auto it = obj.attrs.find(kv.first);
        return it != obj.attrs.end() && it->second == kv.second;
      });
      if (match) op.results.push_back(h);
    }
    sess->find = std::move(op);
    return CKR_OK;
  });
}

CK_RV mock_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
                       CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount) {
  return entry("C_FindObjects", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (!sess->find) return CKR_OPERATION_NOT_INITIALIZED;
    if (phObject == nullptr || pulObjectCount == nullptr) return CKR_ARGUMENTS_BAD;
    FindOp& op = *sess->find;
    CK_ULONG n = 0;
    while (n < ulMaxObjectCount && op.next < op.results.size()) {
      const CK_OBJECT_HANDLE h = op.results[op.next++];
      if (s.objects.count(h)) phObject[n++] = h;  // skip objects destroyed meanwhile
    }
    *pulObjectCount = n;
    return CKR_OK;
  });
}

CK_RV mock_FindObjectsFinal(CK_SESSION_HANDLE hSession) {
  return entry("C_FindObjectsFinal", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (!sess->find) return CKR_OPERATION_NOT_INITIALIZED;
    sess->find.reset();
    return CKR_OK;
  });
}

// ---- key generation --------------------------------------------------------------------

KeyOptions options_from(const std::map<CK_ATTRIBUTE_TYPE, Bytes>& t, bool private_key,
                        CK_MECHANISM_TYPE mech) {
  KeyOptions opt;
  if (auto it = t.find(CKA_ID); it != t.end()) opt.id = it->second;
  if (auto it = t.find(CKA_LABEL); it != t.end()) opt.label = it->second;
  opt.token = tmpl_bool(t, CKA_TOKEN, false);
  opt.priv = tmpl_bool(t, CKA_PRIVATE, private_key);
  opt.sensitive = tmpl_bool(t, CKA_SENSITIVE, true);
  opt.extractable = tmpl_bool(t, CKA_EXTRACTABLE, false);
  opt.always_authenticate = tmpl_bool(t, CKA_ALWAYS_AUTHENTICATE, false);
  opt.local = true;
  opt.gen_mechanism = mech;
  return opt;
}

CK_RV generate_rsa(const std::map<CK_ATTRIBUTE_TYPE, Bytes>& pub_t, SharedPkey& out) {
  auto bits_it = pub_t.find(CKA_MODULUS_BITS);
  if (bits_it == pub_t.end()) return CKR_TEMPLATE_INCOMPLETE;
  CK_ULONG bits = 0;
  std::memcpy(&bits, bits_it->second.data(), sizeof bits);
  if (bits < 1024 || bits > 4096) return CKR_KEY_SIZE_RANGE;
  BnPtr e(BN_new());
  if (!e) throw std::bad_alloc();
  if (auto it = pub_t.find(CKA_PUBLIC_EXPONENT); it != pub_t.end()) {
    if (!BN_bin2bn(it->second.data(), static_cast<int>(it->second.size()), e.get()) ||
        !BN_is_odd(e.get()) || BN_is_one(e.get())) {
      return CKR_ATTRIBUTE_VALUE_INVALID;
    }
  } else if (!BN_set_word(e.get(), RSA_F4)) {
    return CKR_GENERAL_ERROR;
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), static_cast<int>(bits)) != 1 ||
      EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx.get(), e.get()) != 1 ||
      EVP_PKEY_generate(ctx.get(), &raw) != 1) {
    ERR_clear_error();
    return CKR_FUNCTION_FAILED;
  }
  out.reset(raw, PkeyFree());
  return CKR_OK;
}

CK_RV generate_ec(const std::map<CK_ATTRIBUTE_TYPE, Bytes>& pub_t, SharedPkey& out) {
  auto it = pub_t.find(CKA_EC_PARAMS);
  if (it == pub_t.end()) return CKR_TEMPLATE_INCOMPLETE;
  const unsigned char* p = it->second.data();
  std::unique_ptr<ASN1_OBJECT, Asn1ObjFree> oid(
      d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(it->second.size())));
  if (!oid || p != it->second.data() + it->second.size()) {
    ERR_clear_error();
    return CKR_ATTRIBUTE_VALUE_INVALID;
  }
  const int nid = OBJ_obj2nid(oid.get());
  if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1) return CKR_CURVE_NOT_SUPPORTED;
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_group_name(ctx.get(), OBJ_nid2sn(nid)) != 1 ||
      EVP_PKEY_generate(ctx.get(), &raw) != 1) {
    ERR_clear_error();
    return CKR_FUNCTION_FAILED;
  }
  out.reset(raw, PkeyFree());
  return CKR_OK;
}

CK_RV mock_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                           CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
                           CK_ATTRIBUTE_PTR pPrivateKeyTemplate,
                           CK_ULONG ulPrivateKeyAttributeCount, CK_OBJECT_HANDLE_PTR phPublicKey,
                           CK_OBJECT_HANDLE_PTR phPrivateKey) {
  return entry("C_GenerateKeyPair", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (pMechanism == nullptr || phPublicKey == nullptr || phPrivateKey == nullptr) {
      return CKR_ARGUMENTS_BAD;
    }
    std::map<CK_ATTRIBUTE_TYPE, Bytes> pub_t, priv_t;
    if (!read_template(pPublicKeyTemplate, ulPublicKeyAttributeCount, pub_t) ||
        !read_template(pPrivateKeyTemplate, ulPrivateKeyAttributeCount, priv_t)) {
      return CKR_ARGUMENTS_BAD;
    }
    for (const auto* t : {&pub_t, &priv_t}) {
      if (CK_RV rv = check_template_types(*t); rv != CKR_OK) return rv;
    }
    const CK_MECHANISM_TYPE mech = pMechanism->mechanism;
    switch (s.slots[sess->slot].key_generation) {
      case KeyGeneration::Supported:
        break;
      case KeyGeneration::FunctionNotSupported:
        return CKR_FUNCTION_NOT_SUPPORTED;
      case KeyGeneration::NotOffered:
        return CKR_MECHANISM_INVALID;
    }
    if (mech != CKM_RSA_PKCS_KEY_PAIR_GEN && mech != CKM_EC_KEY_PAIR_GEN) {
      return CKR_MECHANISM_INVALID;
    }
    const KeyOptions pub_opt = options_from(pub_t, false, mech);
    const KeyOptions priv_opt = options_from(priv_t, true, mech);
    if (CK_RV rv = check_write(s, *sess, pub_opt.token, pub_opt.priv); rv != CKR_OK) return rv;
    if (CK_RV rv = check_write(s, *sess, priv_opt.token, priv_opt.priv); rv != CKR_OK) return rv;
    SharedPkey key;
    CK_RV rv =
        mech == CKM_RSA_PKCS_KEY_PAIR_GEN ? generate_rsa(pub_t, key) : generate_ec(pub_t, key);
    if (rv != CKR_OK) return rv;
    auto [priv, pub] = key_objects(sess->slot, std::move(key), priv_opt, pub_opt);
    if (!priv_opt.token) priv.owner = hSession;
    if (!pub_opt.token) pub.owner = hSession;
    const CK_OBJECT_HANDLE hpub = s.next_object++;
    const CK_OBJECT_HANDLE hpriv = s.next_object++;
    s.objects.emplace(hpub, std::move(pub));
    s.objects.emplace(hpriv, std::move(priv));
    *phPublicKey = hpub;
    *phPrivateKey = hpriv;
    return CKR_OK;
  });
}

// ---- signing ---------------------------------------------------------------------------

const EVP_MD* pss_hash(CK_MECHANISM_TYPE m) {
  switch (m) {
    case CKM_SHA_1:
      return EVP_sha1();
    case CKM_SHA224:
      return EVP_sha224();
    case CKM_SHA256:
      return EVP_sha256();
    case CKM_SHA384:
      return EVP_sha384();
    case CKM_SHA512:
      return EVP_sha512();
    default:
      return nullptr;
  }
}

const EVP_MD* mgf_hash(CK_RSA_PKCS_MGF_TYPE m) {
  switch (m) {
    case CKG_MGF1_SHA1:
      return EVP_sha1();
    case CKG_MGF1_SHA224:
      return EVP_sha224();
    case CKG_MGF1_SHA256:
      return EVP_sha256();
    case CKG_MGF1_SHA384:
      return EVP_sha384();
    case CKG_MGF1_SHA512:
      return EVP_sha512();
    default:
      return nullptr;
  }
}

CK_RV mock_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                    CK_OBJECT_HANDLE hKey) {
  return entry("C_SignInit", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (pMechanism == nullptr) return CKR_ARGUMENTS_BAD;
    if (sess->sign) return CKR_OPERATION_ACTIVE;
    Object* o = nullptr;
    if (CK_RV rv = access_object(s, *sess, hKey, o); rv != CKR_OK) {
      return rv == CKR_OBJECT_HANDLE_INVALID ? CKR_KEY_HANDLE_INVALID : rv;
    }
    if (attr_ulong(*o, CKA_CLASS) != CKO_PRIVATE_KEY || !o->key) return CKR_KEY_TYPE_INCONSISTENT;
    if (!attr_bool(*o, CKA_SIGN)) return CKR_KEY_FUNCTION_NOT_PERMITTED;
    const bool rsa = attr_ulong(*o, CKA_KEY_TYPE) == CKK_RSA;
    SignOp op;
    op.mechanism = pMechanism->mechanism;
    switch (op.mechanism) {
      case CKM_RSA_PKCS:
        if (!rsa) return CKR_KEY_TYPE_INCONSISTENT;
        break;
      case CKM_RSA_PKCS_PSS: {
        if (!rsa) return CKR_KEY_TYPE_INCONSISTENT;
        if (pMechanism->pParameter == nullptr ||
            pMechanism->ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS)) {
          return CKR_MECHANISM_PARAM_INVALID;
        }
        std::memcpy(&op.pss, pMechanism->pParameter, sizeof op.pss);
        if (!pss_hash(op.pss.hashAlg) || !mgf_hash(op.pss.mgf)) return CKR_MECHANISM_PARAM_INVALID;
        break;
      }
      case CKM_ECDSA:
        if (rsa) return CKR_KEY_TYPE_INCONSISTENT;
        break;
      default:
        return CKR_MECHANISM_INVALID;
    }
    op.key = o->key;
    op.key_private = attr_bool(*o, CKA_PRIVATE);
    op.needs_context_login = attr_bool(*o, CKA_ALWAYS_AUTHENTICATE);
    sess->sign = std::move(op);
    return CKR_OK;
  });
}

// Computes the signature; `sig` is exactly the mechanism's signature length.
CK_RV compute_signature(const SignOp& op, const uint8_t* data, size_t len, Bytes& sig) {
  EVP_PKEY* key = op.key.get();
  const size_t out_len = sig.size();
  if (op.mechanism == CKM_RSA_PKCS && len > out_len - 11) return CKR_DATA_LEN_RANGE;
  const EVP_MD* md = op.mechanism == CKM_RSA_PKCS_PSS ? pss_hash(op.pss.hashAlg) : nullptr;
  if (md && len != static_cast<size_t>(EVP_MD_get_size(md))) return CKR_DATA_LEN_RANGE;
  if (op.mechanism == CKM_ECDSA && len == 0) return CKR_DATA_LEN_RANGE;

  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) return CKR_FUNCTION_FAILED;
  // No signature digest for CKM_RSA_PKCS: the caller's DigestInfo is padded and signed as is.
  if (op.mechanism == CKM_RSA_PKCS &&
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1) {
    return CKR_FUNCTION_FAILED;
  }
  if (op.mechanism == CKM_RSA_PKCS_PSS &&
      (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1 ||
       EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), mgf_hash(op.pss.mgf)) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), static_cast<int>(op.pss.sLen)) != 1)) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  size_t der_len = 0;
  if (EVP_PKEY_sign(ctx.get(), nullptr, &der_len, data, len) != 1) return CKR_FUNCTION_FAILED;
  Bytes out(der_len);
  if (EVP_PKEY_sign(ctx.get(), out.data(), &der_len, data, len) != 1) return CKR_FUNCTION_FAILED;
  out.resize(der_len);
  if (op.mechanism != CKM_ECDSA) {
    if (out.size() != out_len) return CKR_FUNCTION_FAILED;
    sig = std::move(out);
    return CKR_OK;
  }
  // OpenSSL gives DER; Cryptoki wants r||s, each left-padded to the field size.
  const unsigned char* p = out.data();
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> es(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(out.size())));
  if (!es) return CKR_FUNCTION_FAILED;
  const int half = static_cast<int>(out_len / 2);
  if (BN_bn2binpad(ECDSA_SIG_get0_r(es.get()), sig.data(), half) != half ||
      BN_bn2binpad(ECDSA_SIG_get0_s(es.get()), sig.data() + half, half) != half) {
    return CKR_FUNCTION_FAILED;
  }
  return CKR_OK;
}

CK_RV mock_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen) {
  return entry("C_Sign", true, [&](State& s) -> CK_RV {
    Session* sess = find_session(s, hSession);
    if (!sess) return CKR_SESSION_HANDLE_INVALID;
    if (!sess->sign) return CKR_OPERATION_NOT_INITIALIZED;
    // Any outcome but a length query or CKR_BUFFER_TOO_SMALL ends the operation.
    SignOp op = std::move(*sess->sign);
    sess->sign.reset();
    if (pulSignatureLen == nullptr || (pData == nullptr && ulDataLen != 0)) {
      return CKR_ARGUMENTS_BAD;
    }
    if (op.key_private && !user_logged_in(s, sess->slot)) return CKR_USER_NOT_LOGGED_IN;
    // Like SoftHSM: a CKA_ALWAYS_AUTHENTICATE key needs C_Login(CKU_CONTEXT_SPECIFIC) between
    // C_SignInit and the first C_Sign, even for a length query.
    if (op.needs_context_login && !op.context_login_done) return CKR_USER_NOT_LOGGED_IN;
    const int bits = EVP_PKEY_get_bits(op.key.get());
    const CK_ULONG needed = op.mechanism == CKM_ECDSA
                                ? 2 * static_cast<CK_ULONG>((bits + 7) / 8)
                                : static_cast<CK_ULONG>(EVP_PKEY_get_size(op.key.get()));
    if (pSignature == nullptr) {
      *pulSignatureLen = needed;
      sess->sign = std::move(op);
      return CKR_OK;
    }
    if (*pulSignatureLen < needed) {
      *pulSignatureLen = needed;
      sess->sign = std::move(op);
      return CKR_BUFFER_TOO_SMALL;
    }
    if (op.needs_context_login) {
      // The card: the verification was consumed by another signature since our login.
      if (!s.slots[sess->slot].pin_always_verified) return CKR_USER_NOT_LOGGED_IN;
      s.slots[sess->slot].pin_always_verified = false;
    }
    Bytes sig(needed);
    CK_RV rv = compute_signature(op, pData, ulDataLen, sig);
    ERR_clear_error();
    if (rv != CKR_OK) return rv;
    std::copy(sig.begin(), sig.end(), pSignature);
    *pulSignatureLen = needed;
    return CKR_OK;
  });
}

// ---- random ----------------------------------------------------------------------------

CK_RV mock_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen) {
  return entry("C_SeedRandom", true, [&](State& s) -> CK_RV {
    if (!find_session(s, hSession)) return CKR_SESSION_HANDLE_INVALID;
    if (pSeed == nullptr && ulSeedLen != 0) return CKR_ARGUMENTS_BAD;
    RAND_seed(pSeed, static_cast<int>(ulSeedLen));
    return CKR_OK;
  });
}

CK_RV mock_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulLen) {
  return entry("C_GenerateRandom", true, [&](State& s) -> CK_RV {
    if (!find_session(s, hSession)) return CKR_SESSION_HANDLE_INVALID;
    if (pRandomData == nullptr && ulLen != 0) return CKR_ARGUMENTS_BAD;
    if (ulLen != 0 && RAND_bytes(pRandomData, static_cast<int>(ulLen)) != 1) {
      ERR_clear_error();
      return CKR_FUNCTION_FAILED;
    }
    return CKR_OK;
  });
}

// ---- everything else -------------------------------------------------------------------

// A string usable as a template argument, so each unsupported entry point gets its own
// function that knows its name (for counting and injection).
template <size_t N>
struct FnName {
  char text[N];
  constexpr FnName(const char (&s)[N]) { std::copy_n(s, N, text); }
};

template <FnName Name, typename F>
struct Unsupported;

template <FnName Name, typename... Args>
struct Unsupported<Name, CK_RV (*)(Args...)> {
  static CK_RV call(Args...) {
    return entry(Name.text, true, [](State&) -> CK_RV { return CKR_FUNCTION_NOT_SUPPORTED; });
  }
};

#define MOCK_UNSUPPORTED(fn) l.fn = &Unsupported<#fn, decltype(l.fn)>::call

CK_FUNCTION_LIST make_function_list() {
  CK_FUNCTION_LIST l{};
  l.version = {2, 40};
  l.C_Initialize = mock_Initialize;
  l.C_Finalize = mock_Finalize;
  l.C_GetInfo = mock_GetInfo;
  l.C_GetFunctionList = mock_GetFunctionList;
  l.C_GetSlotList = mock_GetSlotList;
  l.C_GetSlotInfo = mock_GetSlotInfo;
  l.C_GetTokenInfo = mock_GetTokenInfo;
  l.C_GetMechanismList = mock_GetMechanismList;
  l.C_GetMechanismInfo = mock_GetMechanismInfo;
  MOCK_UNSUPPORTED(C_InitToken);
  MOCK_UNSUPPORTED(C_InitPIN);
  MOCK_UNSUPPORTED(C_SetPIN);
  l.C_OpenSession = mock_OpenSession;
  l.C_CloseSession = mock_CloseSession;
  l.C_CloseAllSessions = mock_CloseAllSessions;
  l.C_GetSessionInfo = mock_GetSessionInfo;
  MOCK_UNSUPPORTED(C_GetOperationState);
  MOCK_UNSUPPORTED(C_SetOperationState);
  l.C_Login = mock_Login;
  l.C_Logout = mock_Logout;
  l.C_CreateObject = mock_CreateObject;
  MOCK_UNSUPPORTED(C_CopyObject);
  l.C_DestroyObject = mock_DestroyObject;
  MOCK_UNSUPPORTED(C_GetObjectSize);
  l.C_GetAttributeValue = mock_GetAttributeValue;
  MOCK_UNSUPPORTED(C_SetAttributeValue);
  l.C_FindObjectsInit = mock_FindObjectsInit;
  l.C_FindObjects = mock_FindObjects;
  l.C_FindObjectsFinal = mock_FindObjectsFinal;
  MOCK_UNSUPPORTED(C_EncryptInit);
  MOCK_UNSUPPORTED(C_Encrypt);
  MOCK_UNSUPPORTED(C_EncryptUpdate);
  MOCK_UNSUPPORTED(C_EncryptFinal);
  MOCK_UNSUPPORTED(C_DecryptInit);
  MOCK_UNSUPPORTED(C_Decrypt);
  MOCK_UNSUPPORTED(C_DecryptUpdate);
  MOCK_UNSUPPORTED(C_DecryptFinal);
  MOCK_UNSUPPORTED(C_DigestInit);
  MOCK_UNSUPPORTED(C_Digest);
  MOCK_UNSUPPORTED(C_DigestUpdate);
  MOCK_UNSUPPORTED(C_DigestKey);
  MOCK_UNSUPPORTED(C_DigestFinal);
  l.C_SignInit = mock_SignInit;
  l.C_Sign = mock_Sign;
  MOCK_UNSUPPORTED(C_SignUpdate);
  MOCK_UNSUPPORTED(C_SignFinal);
  MOCK_UNSUPPORTED(C_SignRecoverInit);
  MOCK_UNSUPPORTED(C_SignRecover);
  MOCK_UNSUPPORTED(C_VerifyInit);
  MOCK_UNSUPPORTED(C_Verify);
  MOCK_UNSUPPORTED(C_VerifyUpdate);
  MOCK_UNSUPPORTED(C_VerifyFinal);
  MOCK_UNSUPPORTED(C_VerifyRecoverInit);
  MOCK_UNSUPPORTED(C_VerifyRecover);
  MOCK_UNSUPPORTED(C_DigestEncryptUpdate);
  MOCK_UNSUPPORTED(C_DecryptDigestUpdate);
  MOCK_UNSUPPORTED(C_SignEncryptUpdate);
  MOCK_UNSUPPORTED(C_DecryptVerifyUpdate);
  MOCK_UNSUPPORTED(C_GenerateKey);
  l.C_GenerateKeyPair = mock_GenerateKeyPair;
  MOCK_UNSUPPORTED(C_WrapKey);
  MOCK_UNSUPPORTED(C_UnwrapKey);
  MOCK_UNSUPPORTED(C_DeriveKey);
  l.C_SeedRandom = mock_SeedRandom;
  l.C_GenerateRandom = mock_GenerateRandom;
  MOCK_UNSUPPORTED(C_GetFunctionStatus);
  MOCK_UNSUPPORTED(C_CancelFunction);
  MOCK_UNSUPPORTED(C_WaitForSlotEvent);
  return l;
}

#undef MOCK_UNSUPPORTED

void check_slot(CK_SLOT_ID slot) {
  if (!valid_slot(slot)) throw std::invalid_argument("mock PKCS#11: no such slot");
}

}  // namespace

// ---- public helpers --------------------------------------------------------------------

CK_FUNCTION_LIST* function_list() noexcept {
  static CK_FUNCTION_LIST list = make_function_list();
  return &list;
}

void reset() noexcept {
  g_card_latency_us.store(0);
  {
    std::lock_guard lock(g_hook_mutex);
    g_close_hook = nullptr;
  }
  std::lock_guard lock(g_mutex);
  State& s = state();
  s.initialized = false;
  init_slots(s);
  s.sessions.clear();
  s.objects.clear();
  s.calls.clear();
  s.injections.clear();
}

CK_OBJECT_HANDLE add_key(CK_SLOT_ID slot, EVP_PKEY* key, std::vector<uint8_t> ckaid,
                         std::string label, std::vector<uint8_t> cert_der, bool sensitive,
                         bool extractable, bool always_authenticate) {
  check_slot(slot);
  if (key == nullptr || !key_supported(key) || !key_has_private_part(key)) {
    ERR_clear_error();
    throw std::invalid_argument("mock PKCS#11: need an RSA or P-256/384/521 EC private key");
  }
  if (EVP_PKEY_up_ref(key) != 1) throw std::runtime_error("mock PKCS#11: EVP_PKEY_up_ref");
  SharedPkey shared(key, PkeyFree());
  KeyOptions opt;
  opt.id = std::move(ckaid);
  opt.label = str_bytes(label);
  opt.sensitive = sensitive;
  opt.extractable = extractable;
  opt.always_authenticate = always_authenticate;
  KeyOptions pub_opt = opt;
  pub_opt.priv = false;
  auto [priv, pub] = key_objects(slot, std::move(shared), opt, pub_opt);

  std::lock_guard lock(g_mutex);
  State& s = state();
  const CK_OBJECT_HANDLE hpriv = s.next_object++;
  s.objects.emplace(hpriv, std::move(priv));
  s.objects.emplace(s.next_object++, std::move(pub));
  if (!cert_der.empty()) {
    s.objects.emplace(s.next_object++, certificate_object(slot, opt.id, opt.label, cert_der));
  }
  return hpriv;
}

void fail(const std::string& fn, CK_RV rv, int nth, bool persistent) {
  if (nth < 1) throw std::invalid_argument("mock PKCS#11: nth must be at least 1");
  std::lock_guard lock(g_mutex);
  State& s = state();
  s.injections.push_back(Injection{fn, rv, s.calls[fn] + nth, persistent});
}

void clear_failures() noexcept {
  std::lock_guard lock(g_mutex);
  state().injections.clear();
}

void set_token_present(CK_SLOT_ID slot, bool present) {
  check_slot(slot);
  std::lock_guard lock(g_mutex);
  State& s = state();
  if (!present) close_all_sessions(s, slot);
  s.slots[slot].present = present;
}

int call_count(const std::string& fn) noexcept {
  std::lock_guard lock(g_mutex);
  const auto& calls = state().calls;
  auto it = calls.find(fn);
  return it == calls.end() ? 0 : it->second;
}

int open_session_count(CK_SLOT_ID slot) noexcept {
  std::lock_guard lock(g_mutex);
  return valid_slot(slot) ? sessions_on(state(), slot) : 0;
}

void fail_context_login(CK_SLOT_ID slot, CK_RV rv, int count) {
  check_slot(slot);
  std::lock_guard lock(g_mutex);
  Slot& sl = state().slots[slot];
  sl.fail_context_logins = count;
  sl.context_login_rv = rv;
}

void on_next_close_session(std::function<void()> hook) {
  std::lock_guard lock(g_hook_mutex);
  g_close_hook = std::move(hook);
}

void set_card_latency(std::chrono::microseconds latency) noexcept {
  g_card_latency_us.store(static_cast<long>(latency.count()));
}

void set_user_pin_failures(CK_SLOT_ID slot, int failures) {
  check_slot(slot);
  std::lock_guard lock(g_mutex);
  state().slots[slot].user_pin_failures = failures;
}

void set_key_generation(CK_SLOT_ID slot, KeyGeneration g) {
  check_slot(slot);
  std::lock_guard lock(g_mutex);
  state().slots[slot].key_generation = g;
}

void set_pin_pad(CK_SLOT_ID slot, bool present, CK_RV entered) {
  check_slot(slot);
  std::lock_guard lock(g_mutex);
  Slot& sl = state().slots[slot];
  sl.pin_pad = present;
  sl.pin_pad_rv = entered;
}

void insert_card(CK_SLOT_ID slot, const Card& card) {
  check_slot(slot);
  std::lock_guard lock(g_mutex);
  State& s = state();
  Slot& sl = s.slots[slot];
  close_all_sessions(s, slot);
  // The card that was in the reader leaves with its token objects.
  for (auto& [h, o] : s.objects) {
    if (o.slot == slot) {
      o.slot = kAway;
      o.away_serial = sl.serial;
    }
  }
  // A card that is in another reader is taken out of it first.
  for (CK_SLOT_ID other = 0; other < kSlotCount; ++other) {
    if (other != slot && s.slots[other].present && s.slots[other].serial == card.serial) {
      close_all_sessions(s, other);
      for (auto& [h, o] : s.objects) {
        if (o.slot == other) {
          o.slot = kAway;
          o.away_serial = card.serial;
        }
      }
      s.slots[other].present = false;
    }
  }
  sl.label = card.label;
  sl.serial = card.serial;
  sl.user_pin = card.user_pin;
  sl.user_pin_failures = 0;
  sl.pin_always_verified = false;
  sl.present = true;
  for (auto& [h, o] : s.objects) {
    if (o.slot == kAway && o.away_serial == card.serial) {
      o.slot = slot;
      o.away_serial.clear();
    }
  }
}

bool logged_in(CK_SLOT_ID slot) noexcept {
  std::lock_guard lock(g_mutex);
  return valid_slot(slot) && state().slots[slot].login != kNotLoggedIn;
}

}  // namespace mqsec::mock

extern "C" CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList) {
  return mqsec::mock::function_list()->C_GetFunctionList(ppFunctionList);
}
