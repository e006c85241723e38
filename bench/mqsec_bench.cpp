// mqsec-bench: issue 4's benchmark. Measures, in one run and on a temporary SoftHSM token it
// provisions itself, how fast mqsec signs, sends and verifies compared with the token's own
// C_Sign rate, with libp11's EVP signing (the alternative a user would build) and with
// OpenSSL's verify; plus memory per security context and peak RSS while sending.
//
//   mqsec-bench [--quick] [--json FILE] [--chart FILE.png] [--seconds S] [--messages N] [--keep]
//               [--remote | --no-remote] [--remote-messages N] [--token URI [--module PATH]]
//
// --token runs the local cases on an existing token instead (a smartcard, an HSM): the keys are
// the token's own certificates with their private keys, nothing is written to the token.
//
// The remote cases (issue 10) run two "machines" on this host (two configurations and stores,
// the same token) and a private RabbitMQ node the bench starts and stops itself.
//
// docs/performance.md explains the method and how to read the numbers.
#include <fcntl.h>
#include <libp11.h>
#include <malloc.h>
#include <mq.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness.hpp"
#include "bench/remote.hpp"
#include "mqsec/error.hpp"
#include "pkcs11/cryptoki.hpp"
#include "pkcs11/error.hpp"
#include "pkcs11/module.hpp"
#include "pkcs11/pin.hpp"
#include "pkcs11/signer.hpp"
#include "pkcs11/token.hpp"
#include "pkcs11/uri.hpp"
#include "src/core/destination.hpp"
#include "src/core/outgoing.hpp"
#include "src/core/runtime.hpp"
#include "src/core/registration.hpp"
#include "src/security/context.hpp"
#include "src/security/enroll.hpp"
#include "src/security/envelope.hpp"
#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"
#include "transport/amqp/address.hpp"
#include "transport/amqp/connection.hpp"
#include "transport/amqp/settings.hpp"

namespace fs = std::filesystem;
using namespace mqsec;
using namespace mqsec::bench;

namespace {

constexpr const char* kModule = "/usr/lib/softhsm/libsofthsm2.so";
constexpr const char* kLabel = "mqsec-bench";
constexpr size_t kBodySize = 1024;
constexpr int kRssThreads = 2;  // the peak RSS phase

struct Options {
  bool quick = false;
  bool keep = false;
  std::string json, chart;
  double seconds = 2.0;
  uint64_t messages = 1000000;  // for the peak RSS phase (0: skip it)
  int contexts = 1000;          // for the bytes-per-context measurement (0: skip it)
  double budget = 280;          // seconds for the whole run; the peak RSS phase gets the rest
  std::string keys, cases;      // comma-separated filters; empty = all
  // Remote cases: on when a broker can be started, unless --no-remote (or MQSEC_BENCH_REMOTE=0,
  // for `mqsec bench`); --remote makes a broker that cannot be started an error.
  enum class Remote { Auto, On, Off } remote = Remote::Auto;
  uint64_t remote_messages = 3000;  // per remote slice (quick: 300)
  // --token: an existing token (RFC 7512 URI with its pin-source) instead of the bench's own
  // SoftHSM token; --module: its PKCS#11 module when the URI names none.
  std::string token, module;
  // Thread counts of the local cases (--threads 1,4; default 1,2).
  std::vector<int> threads = {1, 2};
  // Slice length of the interleaved local cases (0.5 s; 2.5 s on a slow token or --token).
  double slice = 0.5;
  // --sign-delay-ms: the bench's own SoftHSM token reached through the fault module
  // (tests/fault), every C_Sign that many ms slower: a slow card on demand.
  int sign_delay_ms = 0;
  // Batch cases ([signing] of the batch configuration; batch_latency's offered rate).
  uint32_t batch_max = 1000;
  int batch_delay_ms = 10;
  double batch_rate = 1000;
  // Signed messages made for the receive cases (distinct ids, one per received message of a
  // round): 1,000 on the bench's own token (quick 250), 64 on a slow token or --token.
  int receive_pool = 1000;
};

int max_threads(const Options& o) {
  int m = kRssThreads;
  for (int t : o.threads) m = std::max(m, t);
  return m;
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

void check_hr(HRESULT hr, const char* what) {
  if (FAILED(hr)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(hr));
    fail(std::string(what) + " failed: " + buf);
  }
}

void check_rv(CK_RV rv, const char* what) {
  if (rv != CKR_OK) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%08lX", static_cast<unsigned long>(rv));
    fail(std::string(what) + " failed: " + buf);
  }
}

void write_private_file(const fs::path& p, const std::string& content) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail("cannot create " + p.string());
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(fd);
  if (!ok) fail("cannot write " + p.string());
}

void write_file(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::trunc);
  out << content;
  if (!out.flush()) fail("cannot write " + p.string());
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string random_pin() {
  unsigned char raw[12];
  if (RAND_bytes(raw, sizeof raw) != 1) fail("RAND_bytes failed");
  static const char* hex = "0123456789abcdef";
  std::string pin;
  for (unsigned char c : raw) {
    pin += hex[c >> 4];
    pin += hex[c & 15];
  }
  OPENSSL_cleanse(raw, sizeof raw);
  return pin;
}

// ---------------------------------------------------------------------------------------------
// The sandbox: a temporary SoftHSM token, system config and store, removed at exit.

struct Sandbox {
  fs::path dir, pin_file, store, profile_file, config;
  bool keep = false;
  bool external = false;         // --token: a token of the user's, not a SoftHSM token of our own
  std::string token_uri;         // the system config's [token] uri
  std::string pin_source;        // its pin-source (for raw_sign's per-signature login and libp11)
  std::string module = kModule;  // the PKCS#11 module of the bench's own token
  fs::path batch_config;         // the same configuration with [signing] batching on
  ~Sandbox() {
    std::error_code ec;
    if (!keep && !dir.empty()) fs::remove_all(dir, ec);
  }
};

// C_InitToken + C_InitPIN like tests/support/init_token.cpp, with PINs from files.
void init_token(const std::string& module, const fs::path& pin_file, const fs::path& so_pin_file) {
  auto m = pkcs11::Module::load(module);
  CK_FUNCTION_LIST* f = m->fn();
  auto slots = [&] {
    CK_ULONG n = 0;
    check_rv(f->C_GetSlotList(CK_TRUE, nullptr, &n), "C_GetSlotList");
    std::vector<CK_SLOT_ID> v(n);
    check_rv(f->C_GetSlotList(CK_TRUE, v.data(), &n), "C_GetSlotList");
    v.resize(n);
    return v;
  };
  pkcs11::SecretString so = pkcs11::read_pin("file:" + so_pin_file.string());
  pkcs11::SecretString pin = pkcs11::read_pin("file:" + pin_file.string());
  auto bytes = [](const pkcs11::SecretString& p) {
    return reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(p.str().data()));
  };
  CK_UTF8CHAR padded[32];
  std::memset(padded, ' ', sizeof padded);
  std::memcpy(padded, kLabel, std::strlen(kLabel));
  for (CK_SLOT_ID s : slots()) {
    CK_TOKEN_INFO ti{};
    if (f->C_GetTokenInfo(s, &ti) != CKR_OK || (ti.flags & CKF_TOKEN_INITIALIZED)) continue;
    check_rv(f->C_InitToken(s, bytes(so), so.str().size(), padded), "C_InitToken");
    // SoftHSM moves the new token to another slot: find it again by label.
    for (CK_SLOT_ID t : slots()) {
      if (f->C_GetTokenInfo(t, &ti) != CKR_OK) continue;
      if (pkcs11::padded_string(ti.label, sizeof ti.label) != kLabel ||
          (ti.flags & CKF_USER_PIN_INITIALIZED))
        continue;
      CK_SESSION_HANDLE h;
      check_rv(f->C_OpenSession(t, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h),
               "C_OpenSession");
      check_rv(f->C_Login(h, CKU_SO, bytes(so), so.str().size()), "C_Login(SO)");
      check_rv(f->C_InitPIN(h, bytes(pin), pin.str().size()), "C_InitPIN");
      f->C_Logout(h);
      f->C_CloseSession(h);
      return;
    }
    fail("the new SoftHSM token did not appear");
  }
  fail("SoftHSM offers no free slot");
}

// A system configuration: the sandbox's token, profiles and identity, and the store `store`.
std::string config_text(const Sandbox& sb, const fs::path& store) {
  return "[token]\nuri = \"" + sb.token_uri + "\"\n[store]\npath = \"" + store.string() +
         "\"\n[profiles]\ndir = \"" + (sb.dir / "users").string() +
         "/%u\"\n[identity]\nsid = \"unix\"\n";
}

// --token [--module]: the URI the configuration names (module-path= added from --module when
// the URI names no module). Checks its form; the token itself is found when the keys are.
std::string external_token_uri(const Options& o) {
  pkcs11::Uri uri = pkcs11::Uri::parse(o.token);
  std::string text = o.token;
  if (uri.module_path().empty() && uri.module_name().empty()) {
    if (o.module.empty()) fail("--token names no module: add module-path= or --module PATH");
    text +=
        (text.find('?') == std::string::npos ? "?" : "&") + std::string("module-path=") + o.module;
  } else if (!o.module.empty()) {
    fail("--module and a module in the --token URI: give one of them");
  }
  return text;
}

// The sandbox's directory, store, configuration and profile path, for the token `sb.token_uri`.
// The batch cases open their queues under sb.batch_config: the same, plus [signing] batching.
void write_sandbox_config(Sandbox& sb, const Options& o) {
  sb.store = sb.dir / "store";
  sb.config = sb.dir / "mqsec.toml";
  write_file(sb.config, config_text(sb, sb.store));
  setenv("MQSEC_CONFIG", sb.config.c_str(), 1);
  sb.batch_config = sb.dir / "mqsec-batch.toml";
  write_file(sb.batch_config, config_text(sb, sb.store) +
                                  "[signing]\nbatch-max-messages = " + std::to_string(o.batch_max) +
                                  "\nbatch-max-delay-ms = " + std::to_string(o.batch_delay_ms) +
                                  "\n");

  struct passwd* pw = getpwuid(geteuid());
  if (pw == nullptr) fail("the effective user has no password database entry");
  sb.profile_file = sb.dir / "users" / pw->pw_name / "profile.toml";
}

void provision(Sandbox& sb, const Options& o) {
  char tmpl[] = "/tmp/mqsec-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) fail("cannot create a temporary directory");
  sb.dir = tmpl;
  if (!o.token.empty()) {
    sb.external = true;
    sb.token_uri = external_token_uri(o);
    sb.pin_source = pkcs11::Uri::parse(sb.token_uri).pin_source();
    write_sandbox_config(sb, o);
    return;
  }
  if (o.sign_delay_ms > 0) {
    // A slow token: SoftHSM behind the fault module, which sleeps before each C_Sign. Every
    // Cryptoki call of the run (provisioning, runtime, raw_sign, libp11) goes through it.
    const char* env = std::getenv("MQSEC_FAULT_MODULE");
#ifdef MQSEC_BENCH_FAULT_MODULE
    sb.module = env != nullptr && *env ? env : MQSEC_BENCH_FAULT_MODULE;
#else
    if (env == nullptr || *env == '\0')
      fail(
          "--sign-delay-ms needs the fault module (build with MQSEC_TESTS=ON or set "
          "MQSEC_FAULT_MODULE)");
    sb.module = env;
#endif
    // Read by the fault module at its first C_Initialize, which is below.
    setenv("MQSEC_FAULT_TARGET", kModule, 1);
    setenv("MQSEC_FAULT_SIGN_DELAY_MS", std::to_string(o.sign_delay_ms).c_str(), 1);
  }
  fs::create_directories(sb.dir / "tokens");
  fs::path conf = sb.dir / "softhsm2.conf";
  write_file(conf, "directories.tokendir = " + (sb.dir / "tokens").string() +
                       "\nobjectstore.backend = file\nlog.level = ERROR\n");
  // Before anything loads SoftHSM: it reads the variable in C_Initialize.
  setenv("SOFTHSM2_CONF", conf.c_str(), 1);

  sb.pin_file = sb.dir / "user.pin";
  fs::path so_pin_file = sb.dir / "so.pin";
  {
    std::string pin = random_pin(), so = random_pin();
    write_private_file(sb.pin_file, pin);
    write_private_file(so_pin_file, so);
    OPENSSL_cleanse(pin.data(), pin.size());
    OPENSSL_cleanse(so.data(), so.size());
  }
  init_token(sb.module, sb.pin_file, so_pin_file);
  fs::remove(so_pin_file);
  sb.token_uri = "pkcs11:token=" + std::string(kLabel) + "?module-path=" + sb.module +
                 "&pin-source=file:" + sb.pin_file.string();
  sb.pin_source = "file:" + sb.pin_file.string();
  write_sandbox_config(sb, o);
}

// ---------------------------------------------------------------------------------------------
// Keys: enrolled through the runtime, each with the contexts the cases use.

struct Key {
  std::string name;  // "rsa2048" | "p256"
  security::KeyKind kind = security::KeyKind::Rsa2048;
  std::string profile;             // profile.toml pointing at this key's certificate
  HANDLE shared_ctx = nullptr;     // signed_send_shared, the reference context
  std::vector<HANDLE> thread_ctx;  // signed_send: one per thread
  std::shared_ptr<security::SecurityContext> sc;
  std::vector<security::Bytes> envelopes;  // signed messages for the receive cases
  EVP_PKEY* libp11_key = nullptr;          // not freed: libp11 stays loaded until exit
  std::string pin_source;  // for raw_sign's context-specific login of a PIN-always key
  std::map<std::string, std::string> notes;  // case -> why it did not run (--token only)
};

HANDLE new_context() {
  HANDLE h = nullptr;
  check_hr(MQGetSecurityContextEx(nullptr, 0, &h), "MQGetSecurityContextEx");
  return h;
}

// This key's contexts, from the profile now in place; remembers the profile so that
// uncached_send and context_per_send (which read it per message, or per cache check) can be pointed
// back at this key.
void take_contexts(Key& k, const Sandbox& sb, int threads) {
  k.pin_source = sb.pin_source;
  k.profile = read_file(sb.profile_file);
  k.shared_ctx = new_context();
  for (int t = 0; t < threads; ++t) k.thread_ctx.push_back(new_context());
  k.sc = core::runtime().contexts().get(
      static_cast<uint32_t>(reinterpret_cast<uintptr_t>(k.shared_ctx)));
  if (!k.sc) fail("the new security context is not in the table");
}

void enroll(Key& k, const Sandbox& sb, int threads) {
  security::EnrollOptions opts;
  opts.kind = k.kind;
  opts.subject = "CN=mqsec-bench " + k.name;
  core::register_certificate({}, false, opts);  // replaces the profile's internal certificate
  take_contexts(k, sb, threads);
}

// "rsa2048", "p256", ... for a certificate's public key; "" for kinds the bench does not name.
std::string key_name(const security::Bytes& der) {
  security::X509Ptr cert = security::parse_der_strict(der);
  EVP_PKEY* pub = cert ? X509_get0_pubkey(cert.get()) : nullptr;
  if (pub == nullptr) return "";
  if (EVP_PKEY_base_id(pub) == EVP_PKEY_RSA) return "rsa" + std::to_string(EVP_PKEY_bits(pub));
  if (EVP_PKEY_base_id(pub) == EVP_PKEY_EC) {
    switch (EVP_PKEY_bits(pub)) {
      case 256:
        return "p256";
      case 384:
        return "p384";
      case 521:
        return "p521";
    }
  }
  return "";
}

// --token: the token's own certificates with their private keys (what `mqsec enroll --adopt`
// could adopt), the first of each key kind, each made the internal certificate in turn.
// Nothing is generated or written on the token.
std::vector<Key> token_keys(const Sandbox& sb, int threads) {
  security::UserSetup setup = security::resolve_user();
  security::PersonalStore store(setup);
  std::vector<std::string> skipped;
  std::vector<Key> keys;
  for (const security::Adoptable& a : security::adoptable_certificates(store, "", &skipped)) {
    std::string name = key_name(a.der);
    if (name.empty()) {
      skipped.push_back(a.describe() + ": a key kind the bench does not measure");
      continue;
    }
    bool have = false;
    for (const Key& k : keys) have = have || k.name == name;
    if (have) continue;
    fs::create_directories(sb.profile_file.parent_path());
    fs::permissions(sb.profile_file.parent_path(), fs::perms::owner_all);
    write_file(sb.profile_file, "internal-certificate = \"" + a.object_uri + "\"\n");
    Key k;
    k.name = name;
    take_contexts(k, sb, threads);
    std::fprintf(stderr, "  %s: %s\n", name.c_str(), a.describe().c_str());
    keys.push_back(std::move(k));
  }
  if (keys.empty()) {
    std::string why;
    for (const auto& line : skipped) why += "\n  " + line;
    fail("no certificate with its private key on the token" + why);
  }
  return keys;
}

void select_profile(const Key& k, const Sandbox& sb) { write_file(sb.profile_file, k.profile); }

std::vector<uint8_t> body_bytes() {
  std::vector<uint8_t> b(kBodySize);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 31 + 7);
  return b;
}

// ---------------------------------------------------------------------------------------------
// raw_sign: C_SignInit + C_Sign on the same key, one session per thread. A PIN-always key
// (CKA_ALWAYS_AUTHENTICATE, e.g. PIV slot 9C) needs C_Login(CKU_CONTEXT_SPECIFIC) between them,
// and a card's verification is consumed by the next signature whichever session makes it, so
// those three calls are made one thread at a time, as the runtime makes them.

// Whether the key of `k`'s context is CKA_ALWAYS_AUTHENTICATE (PIN-always).
bool always_authenticate(const Key& k) {
  const pkcs11::Token& tok = k.sc->token();
  CK_FUNCTION_LIST* f = tok.fn();
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  check_rv(f->C_OpenSession(tok.slot(), CKF_SERIAL_SESSION, nullptr, nullptr, &h), "C_OpenSession");
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  security::Bytes id = k.sc->key_id();
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, id.data(), id.size()}};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  CK_ULONG n = 0;
  CK_BBOOL always = CK_FALSE;
  CK_ATTRIBUTE aa = {CKA_ALWAYS_AUTHENTICATE, &always, sizeof always};
  if (f->C_FindObjectsInit(h, tmpl, 2) == CKR_OK) {
    if (f->C_FindObjects(h, &key, 1, &n) != CKR_OK) n = 0;
    f->C_FindObjectsFinal(h);
  }
  bool yes = n == 1 && f->C_GetAttributeValue(h, key, &aa, 1) == CKR_OK && always == CK_TRUE;
  f->C_CloseSession(h);
  return yes;
}

Op raw_sign_op(const Key& k) {
  struct State {
    CK_FUNCTION_LIST* f = nullptr;
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    CK_MECHANISM mech{};
    security::Bytes data, sig;
    std::shared_ptr<pkcs11::SecretString> pin;  // set for a PIN-always key
    ~State() {
      if (h != CK_INVALID_HANDLE) f->C_CloseSession(h);
    }
  };
  auto s = std::make_shared<State>();
  const pkcs11::Token& tok = k.sc->token();
  s->f = tok.fn();
  check_rv(s->f->C_OpenSession(tok.slot(), CKF_SERIAL_SESSION, nullptr, nullptr, &s->h),
           "C_OpenSession");
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  security::Bytes id = k.sc->key_id();
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, id.data(), id.size()}};
  check_rv(s->f->C_FindObjectsInit(s->h, tmpl, 2), "C_FindObjectsInit");
  CK_ULONG n = 0;
  CK_RV rv = s->f->C_FindObjects(s->h, &s->key, 1, &n);
  s->f->C_FindObjectsFinal(s->h);
  check_rv(rv, "C_FindObjects");
  if (n != 1) fail("raw_sign: the private key is not on the token");
  if (always_authenticate(k)) {
    if (k.pin_source.empty()) fail("raw_sign: a PIN-always key and no pin-source");
    s->pin = std::make_shared<pkcs11::SecretString>(pkcs11::read_pin(k.pin_source));
  }

  std::vector<uint8_t> body = body_bytes();
  security::Bytes digest = security::sha256(body);
  if (k.sc->scheme() == pkcs11::Scheme::Ecdsa) {
    s->mech = {CKM_ECDSA, nullptr, 0};
    s->data = digest;
  } else {
    s->mech = {CKM_RSA_PKCS, nullptr, 0};
    s->data = pkcs11::digest_info(pkcs11::Hash::Sha256, digest);
  }
  s->sig.resize(512);
  return [s] {
    static std::mutex pin_always;  // one token per run
    std::unique_lock<std::mutex> lock(pin_always, std::defer_lock);
    if (s->pin) lock.lock();
    check_rv(s->f->C_SignInit(s->h, &s->mech, s->key), "C_SignInit");
    if (s->pin) {
      auto* p = reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(s->pin->str().data()));
      check_rv(s->f->C_Login(s->h, CKU_CONTEXT_SPECIFIC, p, s->pin->str().size()),
               "C_Login(CKU_CONTEXT_SPECIFIC)");
    }
    CK_ULONG len = s->sig.size();
    check_rv(s->f->C_Sign(s->h, s->data.data(), s->data.size(), s->sig.data(), &len), "C_Sign");
    return true;
  };
}

// ---------------------------------------------------------------------------------------------
// libp11_sign: libp11's EVP_PKEY for the same key, EVP_DigestSign over the 1 KiB body.
//
// libp11 loads the same SoftHSM library (dlopen returns the same instance) and tolerates
// CKR_CRYPTOKI_ALREADY_INITIALIZED, so it shares the module with the runtime in-process. Its
// context is never unloaded: PKCS11_CTX_unload calls C_Finalize, which would end the
// runtime's sessions too.

struct Libp11 {
  PKCS11_CTX* ctx = nullptr;
  PKCS11_SLOT* slots = nullptr;
  unsigned nslots = 0;
  PKCS11_SLOT* slot = nullptr;
};

// The runtime's token (same module file, same serial) through libp11, logged in.
Libp11& libp11(const Sandbox& sb, const pkcs11::Token& token) {
  static Libp11 l;
  if (l.slot) return l;
  l.ctx = PKCS11_CTX_new();
  if (l.ctx == nullptr || PKCS11_CTX_load(l.ctx, token.module()->path().c_str()) != 0)
    fail("PKCS11_CTX_load failed");
  if (PKCS11_enumerate_slots(l.ctx, &l.slots, &l.nslots) != 0)
    fail("PKCS11_enumerate_slots failed");
  for (unsigned i = 0; i < l.nslots; ++i) {
    PKCS11_SLOT* s = &l.slots[i];
    if (s->token && s->token->initialized && s->token->serialnr != nullptr &&
        token.serial() == s->token->serialnr)
      l.slot = s;
  }
  if (l.slot == nullptr) fail("libp11 does not see the token");
  pkcs11::SecretString pin = pkcs11::read_pin(sb.pin_source);
  if (PKCS11_login(l.slot, 0, pin.str().c_str()) != 0) fail("PKCS11_login failed");
  return l;
}

void load_libp11_key(Key& k, const Sandbox& sb) {
  Libp11& l = libp11(sb, k.sc->token());
  PKCS11_KEY* keys = nullptr;
  unsigned n = 0;
  if (PKCS11_enumerate_keys(l.slot->token, &keys, &n) != 0) fail("PKCS11_enumerate_keys failed");
  const security::Bytes& id = k.sc->key_id();
  for (unsigned i = 0; i < n; ++i) {
    if (keys[i].isPrivate && keys[i].id_len == id.size() &&
        std::memcmp(keys[i].id, id.data(), id.size()) == 0) {
      k.libp11_key = PKCS11_get_private_key(&keys[i]);
    }
  }
  if (k.libp11_key == nullptr) fail("libp11 does not find the private key by CKA_ID");
}

Op libp11_sign_op(const Key& k) {
  struct State {
    EVP_PKEY* key = nullptr;
    security::MdCtxPtr md{EVP_MD_CTX_new()};
    std::vector<uint8_t> body = body_bytes(), sig = std::vector<uint8_t>(512);
  };
  auto s = std::make_shared<State>();
  s->key = k.libp11_key;
  if (!s->md) fail("EVP_MD_CTX_new failed");
  return [s] {
    EVP_MD_CTX_reset(s->md.get());
    size_t len = s->sig.size();
    if (EVP_DigestSignInit(s->md.get(), nullptr, EVP_sha256(), nullptr, s->key) != 1 ||
        EVP_DigestSign(s->md.get(), s->sig.data(), &len, s->body.data(), s->body.size()) != 1)
      fail("libp11: EVP_DigestSign failed");
    return true;
  };
}

// ---------------------------------------------------------------------------------------------
// Queues: each case gets its own queue, deleted afterwards so the store does not grow.

// MQCreateQueue of .\private$\<name>; its format name in `format`.
HRESULT create_private_queue(const std::string& name, std::wstring& format) {
  std::wstring path = L".\\private$\\" + std::wstring(name.begin(), name.end());
  QUEUEPROPID id[1] = {PROPID_Q_PATHNAME};
  MQPROPVARIANT v[1];
  v[0].vt = VT_LPWSTR;
  v[0].pwszVal = path.data();
  MQQUEUEPROPS qp = {1, id, v, nullptr};
  WCHAR fmt[256];
  DWORD len = 256;
  const HRESULT hr = MQCreateQueue(nullptr, &qp, fmt, &len);
  if (SUCCEEDED(hr)) format = fmt;
  return hr;
}

class TempQueue {
 public:
  explicit TempQueue(const std::string& name) : name_(name) {
    check_hr(create_private_queue(name, format_), "MQCreateQueue");
  }
  ~TempQueue() {
    for (QUEUEHANDLE h : handles_) MQCloseQueue(h);
    MQDeleteQueue(format_.c_str());  // removes its messages too
  }
  TempQueue(const TempQueue&) = delete;
  TempQueue& operator=(const TempQueue&) = delete;

  // A handle that lives as long as the queue (closed by the destructor).
  QUEUEHANDLE open(DWORD access) {
    QUEUEHANDLE h = nullptr;
    check_hr(MQOpenQueue(format_.c_str(), access, MQ_DENY_NONE, &h), "MQOpenQueue");
    std::lock_guard lock(mu_);
    handles_.push_back(h);
    return h;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::wstring format_;
  std::mutex mu_;
  std::vector<QUEUEHANDLE> handles_;
};

std::string unique_queue_name(const std::string& what) {
  static std::atomic<int> n{0};
  return "bench-" + what + "-" + std::to_string(++n);
}

enum class SendKind { Plain, Signed, Implicit, ContextPerSend };

// One MQSendMessage of a 1 KiB body. Signed: AUTH_LEVEL_ALWAYS with `ctx`; Implicit:
// AUTH_LEVEL_ALWAYS without PROPID_M_SECURITY_CONTEXT (the runtime's implicit context);
// ContextPerSend: a fresh context per message (MQGetSecurityContextEx + send +
// MQFreeSecurityContext).
Op send_op(QUEUEHANDLE queue, SendKind kind, HANDLE ctx, bool recoverable) {
  struct State {
    QUEUEHANDLE q = nullptr;
    std::vector<uint8_t> body = body_bytes();
    MSGPROPID id[4] = {PROPID_M_BODY, PROPID_M_DELIVERY, PROPID_M_AUTH_LEVEL,
                       PROPID_M_SECURITY_CONTEXT};
    MQPROPVARIANT v[4];
    MQMSGPROPS props{};
    SendKind kind = SendKind::Plain;
  };
  auto s = std::make_shared<State>();
  s->q = queue;
  s->kind = kind;
  s->v[0].vt = VT_UI1 | VT_VECTOR;
  s->v[0].caub.pElems = s->body.data();
  s->v[0].caub.cElems = static_cast<ULONG>(s->body.size());
  s->v[1].vt = VT_UI1;
  s->v[1].bVal = recoverable ? MQMSG_DELIVERY_RECOVERABLE : MQMSG_DELIVERY_EXPRESS;
  s->v[2].vt = VT_UI4;
  s->v[2].ulVal = kind == SendKind::Plain ? MQMSG_AUTH_LEVEL_NONE : MQMSG_AUTH_LEVEL_ALWAYS;
  s->v[3].vt = VT_UI4;
  s->v[3].ulVal = static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx));
  s->props = {kind == SendKind::Plain || kind == SendKind::Implicit ? 3u : 4u, s->id, s->v,
              nullptr};
  return [s] {
    if (s->kind == SendKind::ContextPerSend) {
      HANDLE h = new_context();
      s->v[3].ulVal = static_cast<ULONG>(reinterpret_cast<uintptr_t>(h));
      HRESULT hr = MQSendMessage(s->q, &s->props, nullptr);
      MQFreeSecurityContext(h);
      check_hr(hr, "MQSendMessage");
    } else {
      check_hr(MQSendMessage(s->q, &s->props, nullptr), "MQSendMessage");
    }
    return true;
  };
}

Op send_op(TempQueue& q, SendKind kind, HANDLE ctx, bool recoverable) {
  return send_op(q.open(MQ_SEND_ACCESS), kind, ctx, recoverable);
}

// ---------------------------------------------------------------------------------------------
// Batch signing (issue 12): the same signed express sends with [signing] batching on, so that
// one device signature covers many messages (deferred signing: MQSendMessage returns once the
// message is queued for signing; it is stored, so receivable, once its batch is signed).

// A send handle of `q` opened under the batch configuration: a queue takes its [signing]
// settings when it is opened (the configuration is re-read then).
QUEUEHANDLE open_batched(TempQueue& q, const Sandbox& sb) {
  setenv("MQSEC_CONFIG", sb.batch_config.c_str(), 1);
  QUEUEHANDLE h = nullptr;
  try {
    h = q.open(MQ_SEND_ACCESS);
  } catch (...) {
    setenv("MQSEC_CONFIG", sb.config.c_str(), 1);
    throw;
  }
  setenv("MQSEC_CONFIG", sb.config.c_str(), 1);
  return h;
}

// Waits until every batch queued so far is signed and handed to its queue, and the express
// writer has committed it.
void flush_batches(const char* what) {
  if (!core::runtime().batch_signers().flush(
          nullptr, std::chrono::steady_clock::now() + std::chrono::seconds(120)))
    fail(std::string(what) + ": the batch signers did not finish within 120 s");
  core::runtime().stores().flush_express();
}

// The store's message count of `q` must be `want`: a message whose batch could not be signed
// is a rejection record instead, and must not pass for a sent one.
void expect_stored(const Sandbox& sb, const TempQueue& q, uint64_t want, const char* what) {
  transport::local::Store& store = core::runtime().stores().store_at(sb.store);
  auto info = store.find_queue(q.name());
  if (!info) fail(std::string(what) + ": the queue is not in the store");
  const size_t have = store.message_count(info->id);
  if (have != want) {
    std::string why;
    for (const auto& r : store.rejections(q.name())) {
      why = " (" + r.kind + ": " + r.reason + ")";
      break;
    }
    fail(std::string(what) + ": " + std::to_string(have) + " of " + std::to_string(want) +
         " messages stored" + why);
  }
}

// batch_send: as signed_send (express, one cached context per thread), with batching. The
// slice ends when every message sent in it is signed and committed.
Timing batch_send(const Key& k, const Sandbox& sb, int threads, double seconds) {
  TempQueue q(unique_queue_name("batch"));
  std::vector<QUEUEHANDLE> tx;
  for (int t = 0; t < threads; ++t) tx.push_back(open_batched(q, sb));
  const uint64_t sig0 = core::runtime().batch_signers().signatures();
  Timing t = measure(
      threads, seconds,
      [&](int th) {
        return send_op(tx[static_cast<size_t>(th)], SendKind::Signed,
                       k.thread_ctx[static_cast<size_t>(th)], false);
      },
      [] { flush_batches("batch_send"); });
  t.signatures = core::runtime().batch_signers().signatures() - sig0;
  expect_stored(sb, q, t.ops, "batch_send");
  return t;
}

// How long threads of this process waited for a CPU while ready (ns, the second field of
// schedstat): of the calling thread, or per thread id of the whole process.
uint64_t runqueue_wait_ns(const std::string& schedstat = "/proc/thread-self/schedstat") {
  return static_cast<uint64_t>(thread_times(schedstat).runnable * 1e9);
}

std::map<std::string, uint64_t> runqueue_waits() {
  std::map<std::string, uint64_t> w;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/self/task", ec))
    w[e.path().filename().string()] = runqueue_wait_ns((e.path() / "schedstat").string());
  return w;
}

// batch_latency: one thread sends batched signed express messages at a fixed rate (each body
// carries its sequence number; its send time is taken right before MQSendMessage), another
// thread of the process receives them (MQReceiveMessage, verification of each message on its
// own included) and takes send-to-received latencies. The rate is messages received per
// second from the first send to the last receive; every message must arrive authenticated.
Timing batch_latency(const Key& k, const Sandbox& sb, double rate, double seconds) {
  using clock = std::chrono::steady_clock;
  TempQueue q(unique_queue_name("batchlat"));
  QUEUEHANDLE tx = open_batched(q, sb);
  QUEUEHANDLE rx = q.open(MQ_RECEIVE_ACCESS);
  const auto planned = static_cast<uint64_t>(rate * seconds) + 1;
  std::unique_ptr<std::atomic<int64_t>[]> sent_at(new std::atomic<int64_t>[planned]);
  std::atomic<uint64_t> sent{0};
  std::atomic<bool> sender_done{false};
  const uint64_t sig0 = core::runtime().batch_signers().signatures();
  Timing t;
  std::exception_ptr rx_error;
  uint64_t bad = 0;
  // Where the latency goes when the machine is busy: CPU waits of the receiver, the sender
  // and the process's other threads alive at the slice's end (batch signer, store writer).
  const std::map<std::string, uint64_t> waits0 = runqueue_waits();
  const uint64_t tx_wait0 = runqueue_wait_ns();
  uint64_t rx_wait = 0;
  const auto t0 = clock::now();
  auto last_rx = t0;
  std::thread receiver([&] {
    const uint64_t rx_wait0 = runqueue_wait_ns();
    try {
      std::vector<uint8_t> body(2 * kBodySize);
      MSGPROPID id[3] = {PROPID_M_BODY, PROPID_M_BODY_SIZE, PROPID_M_AUTHENTICATED};
      MQPROPVARIANT v[3];
      clock::time_point give_up = clock::time_point::max();
      for (;;) {
        if (sender_done.load(std::memory_order_acquire)) {
          if (t.ops + bad >= sent.load()) break;
          if (give_up == clock::time_point::max())
            give_up = clock::now() + std::chrono::seconds(30);
          if (clock::now() > give_up) break;
        }
        v[0].vt = VT_UI1 | VT_VECTOR;
        v[0].caub.pElems = body.data();
        v[0].caub.cElems = static_cast<ULONG>(body.size());
        v[1].vt = VT_NULL;
        v[2].vt = VT_NULL;
        MQMSGPROPS p = {3, id, v, nullptr};
        HRESULT hr =
            MQReceiveMessage(rx, 100, MQ_ACTION_RECEIVE, &p, nullptr, nullptr, nullptr, nullptr);
        if (hr == MQ_ERROR_IO_TIMEOUT) continue;
        check_hr(hr, "MQReceiveMessage");
        const auto now = clock::now();
        uint64_t seq = 0;
        std::memcpy(&seq, body.data(), sizeof seq);
        // seq is checked against the plan, not against `sent`: with deferred signing a message
        // can be signed, stored and received before its sender got back to count it.
        if (v[2].bVal == 0 || v[1].ulVal != kBodySize || seq >= planned) {
          ++bad;
          continue;
        }
        const int64_t ns =
            now.time_since_epoch().count() - sent_at[seq].load(std::memory_order_acquire);
        t.latencies_ms.push_back(static_cast<double>(ns) / 1e6);
        ++t.ops;
        last_rx = now;
      }
    } catch (...) {
      rx_error = std::current_exception();
    }
    rx_wait = runqueue_wait_ns() - rx_wait0;
  });
  std::exception_ptr tx_error;
  try {
    std::vector<uint8_t> body = body_bytes();
    MSGPROPID id[4] = {PROPID_M_BODY, PROPID_M_DELIVERY, PROPID_M_AUTH_LEVEL,
                       PROPID_M_SECURITY_CONTEXT};
    MQPROPVARIANT v[4];
    v[0].vt = VT_UI1 | VT_VECTOR;
    v[0].caub.pElems = body.data();
    v[0].caub.cElems = static_cast<ULONG>(body.size());
    v[1].vt = VT_UI1;
    v[1].bVal = MQMSG_DELIVERY_EXPRESS;
    v[2].vt = VT_UI4;
    v[2].ulVal = MQMSG_AUTH_LEVEL_ALWAYS;
    v[3].vt = VT_UI4;
    v[3].ulVal = static_cast<ULONG>(reinterpret_cast<uintptr_t>(k.thread_ctx[0]));
    MQMSGPROPS props = {4, id, v, nullptr};
    for (uint64_t i = 0; i < planned; ++i) {
      std::this_thread::sleep_until(
          t0 + std::chrono::duration_cast<clock::duration>(
                   std::chrono::duration<double>(static_cast<double>(i) / rate)));
      std::memcpy(body.data(), &i, sizeof i);
      sent_at[i].store(clock::now().time_since_epoch().count(), std::memory_order_release);
      check_hr(MQSendMessage(tx, &props, nullptr), "MQSendMessage");
      sent.store(i + 1);
    }
    t.send_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  } catch (...) {
    tx_error = std::current_exception();
  }
  t.offered = sent.load();
  sender_done.store(true, std::memory_order_release);
  receiver.join();
  const uint64_t tx_wait = runqueue_wait_ns() - tx_wait0;
  uint64_t others = 0;
  const std::string self = std::to_string(::gettid());
  for (const auto& [tid, ns] : runqueue_waits()) {
    // A thread started during the slice (the batch signer, after an idle while) waited in it.
    auto it = waits0.find(tid);
    const uint64_t before = it == waits0.end() ? 0 : it->second;
    if (tid != self && ns >= before) others += ns - before;
  }
  t.sums["sender_cpu_wait_ms"] = static_cast<double>(tx_wait) / 1e6;
  t.sums["receiver_cpu_wait_ms"] = static_cast<double>(rx_wait) / 1e6;
  t.sums["other_threads_cpu_wait_ms"] = static_cast<double>(others) / 1e6;
  if (tx_error) std::rethrow_exception(tx_error);
  if (rx_error) std::rethrow_exception(rx_error);
  t.signatures = core::runtime().batch_signers().signatures() - sig0;
  t.seconds = std::chrono::duration<double>(last_rx - t0).count();
  if (bad > 0 || t.ops != t.offered)
    fail("batch_latency: " + std::to_string(t.ops) + " of " + std::to_string(t.offered) +
         " messages received authenticated (" + std::to_string(bad) + " not)");
  return t;
}

// ---------------------------------------------------------------------------------------------
// Receive side: signed envelopes made by the runtime, verified by MQReceiveMessage and by
// OpenSSL directly.

// The queue the receive cases' messages are signed for (the signature covers the destination).
std::string receive_queue_name(const Key& k) { return "bench-rx-" + k.name; }

// The queue receive_beside_sender's other process sends to.
constexpr const char* kNoiseQueue = "bench-noise";

// Sends `n` signed messages with the key's context to the queue receive_verify receives from
// and takes their envelopes out of the store: n distinct messages (message ids), each signed
// for that queue. A receiver delivers a message only from the queue it was signed for, and a
// message id only once per queue (issue 9's wrong-queue and replay checks), so receive_verify
// re-creates that queue for every round and puts each envelope in it once.
void make_envelopes(Key& k, const Sandbox& sb, int n) {
  TempQueue q(receive_queue_name(k));
  Op send = send_op(q, SendKind::Signed, k.shared_ctx, false);
  for (int i = 0; i < n; ++i) send();
  core::runtime().stores().flush_express();  // express messages are committed in the background
  transport::local::Store& store = core::runtime().stores().store_at(sb.store);
  auto info = store.find_queue(q.name());
  if (!info) fail("the source queue is not in the store");
  while (auto m = store.take_first(info->id)) k.envelopes.push_back(std::move(m->envelope));
  if (k.envelopes.size() != static_cast<size_t>(n)) fail("the source queue lost messages");
}

Op openssl_verify_op(const Key& k, int thread) {
  struct State {
    std::vector<security::Bytes> tbs, sig;
    security::X509Ptr cert;
    EVP_PKEY* pub = nullptr;
    security::MdCtxPtr md{EVP_MD_CTX_new()};
    size_t next = 0;
  };
  auto s = std::make_shared<State>();
  for (const auto& bytes : k.envelopes) {
    security::Envelope e = security::decode(bytes);
    if (!s->cert) s->cert = security::parse_der_strict(e.sender_cert);
    s->tbs.push_back(security::to_be_signed(e));
    s->sig.push_back(e.signature);
  }
  if (!s->cert || !s->md) fail("openssl_verify: no certificate");
  s->pub = X509_get0_pubkey(s->cert.get());
  s->next = static_cast<size_t>(thread);
  return [s] {
    size_t i = s->next++ % s->tbs.size();
    EVP_MD_CTX_reset(s->md.get());
    if (EVP_DigestVerifyInit(s->md.get(), nullptr, EVP_sha256(), nullptr, s->pub) != 1 ||
        EVP_DigestVerify(s->md.get(), s->sig[i].data(), s->sig[i].size(), s->tbs[i].data(),
                         s->tbs[i].size()) != 1)
      fail("openssl_verify: a signature does not verify");
    return true;
  };
}

// MQReceiveMessage (verification included) until the queue is empty, in rounds: a fresh queue
// of the name the envelopes were signed for (no message delivered from it yet), filled with
// each envelope once (untimed, one transaction); receive them all (timed). Every message must
// arrive authenticated: one the receiver refused (and recorded as rejected) fails the case
// rather than ending its round early and passing for a low rate.
//
// beside_sender (receive_beside_sender): the same while another process sends a small unsigned
// express message to another queue of the store about every millisecond, as a deployed receiver
// shares its store with senders. Each of that process's commits empties this process's SQLite
// page cache at its next transaction, so the claims read their pages again
// (docs/performance.md, session 28).
Timing receive_verify(const Key& k, const Sandbox& sb, int threads, double seconds,
                      bool beside_sender) {
  transport::local::Store& store = core::runtime().stores().store_at(sb.store);
  // One sending process per call (a case runs in slices; each slice calls this once).
  static int noise_senders = 0;
  std::optional<TempQueue> noise;
  std::unique_ptr<Child> sender;  // stopped before the noise queue is deleted
  if (beside_sender) {
    noise.emplace(kNoiseQueue);
    sender =
        std::make_unique<Child>(std::vector<std::string>{self_exe().string()},
                                std::map<std::string, std::string>{
                                    {"MQSEC_BENCH_ROLE", "noise-sender"}, {"MQSEC_LOG", "stderr"}},
                                sb.dir / ("noise-sender-" + k.name + "-" + std::to_string(threads) +
                                          "-" + std::to_string(++noise_senders) + ".log"),
                                true);
    auto line = sender->read_line(std::chrono::seconds(60));
    if (!line || *line != "ready")
      fail("receive_beside_sender: the sending process did not start (" +
           sender->describe_status() + "):\n" + sender->log_tail());
  }
  Timing total;
  while (total.seconds < seconds) {
    TempQueue q(receive_queue_name(k));
    auto info = store.find_queue(q.name());
    if (!info) fail("the receive queue is not in the store");
    std::vector<QUEUEHANDLE> rx;
    for (int t = 0; t < threads; ++t) rx.push_back(q.open(MQ_RECEIVE_ACCESS));
    std::vector<transport::Append> batch;
    for (const security::Bytes& e : k.envelopes) batch.push_back({info->id, 3, e});
    store.append_batch(batch, false);
    const double left = seconds - total.seconds;
    Timing t = measure(threads, left, [&](int th) -> Op {
      struct State {
        QUEUEHANDLE h = nullptr;
        std::vector<uint8_t> body = std::vector<uint8_t>(2 * kBodySize);
        MSGPROPID id[3] = {PROPID_M_BODY, PROPID_M_BODY_SIZE, PROPID_M_AUTHENTICATED};
        MQPROPVARIANT v[3];
      };
      auto s = std::make_shared<State>();
      s->h = rx[static_cast<size_t>(th)];
      return [s] {
        s->v[0].vt = VT_UI1 | VT_VECTOR;
        s->v[0].caub.pElems = s->body.data();
        s->v[0].caub.cElems = static_cast<ULONG>(s->body.size());
        s->v[1].vt = VT_NULL;
        s->v[2].vt = VT_NULL;
        MQMSGPROPS p = {3, s->id, s->v, nullptr};
        HRESULT hr =
            MQReceiveMessage(s->h, 0, MQ_ACTION_RECEIVE, &p, nullptr, nullptr, nullptr, nullptr);
        if (hr == MQ_ERROR_IO_TIMEOUT) return false;  // the round is done
        check_hr(hr, "MQReceiveMessage");
        if (s->v[2].bVal == 0 || s->v[1].ulVal != kBodySize)
          fail("receive_verify: a message arrived unauthenticated or truncated");
        return true;
      };
    });
    if (t.ops < k.envelopes.size() && t.seconds < left) {
      // The round ended with messages missing: the receiver refused them.
      std::string why;
      for (const auto& r : store.rejections(q.name())) {
        why = r.kind + ": " + r.reason;
        break;
      }
      fail("receive_verify: " + std::to_string(t.ops) + " of " +
           std::to_string(k.envelopes.size()) + " messages received; the others were refused (" +
           (why.empty() ? std::string("no rejection recorded") : why) + ")");
    }
    total.add(t);
  }
  if (sender) {
    if (!sender->running())
      fail("receive_beside_sender: the sending process ended during the case (" +
           sender->describe_status() + "):\n" + sender->log_tail());
    sender->stop(SIGTERM, std::chrono::seconds(5));
    auto info = store.find_queue(kNoiseQueue);
    if (!info || store.message_count(info->id) == 0)
      fail("receive_beside_sender: no message of the sending process reached the store");
  }
  return total;
}

// The role of the process beside receive_beside_sender's receivers (MQSEC_BENCH_ROLE=
// noise-sender): a 64-byte unsigned express message to the noise queue about every millisecond
// until it is stopped.
int noise_sender() {
  ::alarm(300);  // lives for one slice of a case; a hung bench does not keep it sending
  QUEUEHANDLE h = nullptr;
  const std::string name = kNoiseQueue;
  const std::wstring format = L"DIRECT=OS:.\\private$\\" + std::wstring(name.begin(), name.end());
  check_hr(MQOpenQueue(format.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &h), "MQOpenQueue(noise)");
  std::printf("ready\n");
  std::fflush(stdout);
  std::vector<uint8_t> body(64, 0x5a);
  for (;;) {
    MSGPROPID id[1] = {PROPID_M_BODY};
    MQPROPVARIANT v[1];
    v[0].vt = VT_UI1 | VT_VECTOR;
    v[0].caub.pElems = body.data();
    v[0].caub.cElems = static_cast<ULONG>(body.size());
    MQMSGPROPS p = {1, id, v, nullptr};
    check_hr(MQSendMessage(h, &p, MQ_NO_TRANSACTION), "MQSendMessage(noise)");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// ---------------------------------------------------------------------------------------------
// Memory.

uint64_t heap_in_use() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

ContextMemory context_memory(const Key& k, int n) {
  std::vector<HANDLE> ctx;
  ctx.reserve(static_cast<size_t>(n));
  uint64_t heap0 = heap_in_use(), rss0 = proc_status_kib("VmRSS");
  for (int i = 0; i < n; ++i) ctx.push_back(new_context());
  uint64_t heap1 = heap_in_use(), rss1 = proc_status_kib("VmRSS");
  for (HANDLE h : ctx) MQFreeSecurityContext(h);
  ContextMemory m;
  m.key = k.name;
  m.contexts = n;
  m.heap_bytes_per_context = (static_cast<double>(heap1) - static_cast<double>(heap0)) / n;
  m.rss_bytes_per_context = (static_cast<double>(rss1) - static_cast<double>(rss0)) * 1024.0 / n;
  return m;
}

// Sends `total` signed express messages with cached contexts on `threads` threads, sampling
// VmHWM and VmRSS every total/10 messages; the queue is emptied (deleted and re-created)
// after each sample so that only the sender's memory is observed, not the store's growth.
// Stops early, with a last sample at the count reached, when `budget` seconds run out.
std::vector<RssSample> peak_rss(const Key& k, int threads, uint64_t total, double budget) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(budget);
  // Reset VmHWM to the current RSS (Linux >= 4.0) so that earlier phases do not mask growth.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  std::vector<RssSample> out;
  out.push_back({k.name, threads, 0, proc_status_kib("VmHWM"), proc_status_kib("VmRSS")});
  const uint64_t step = std::max<uint64_t>(1, total / 10);
  uint64_t sent = 0;
  bool out_of_time = false;
  while (sent < total && !out_of_time) {
    TempQueue q(unique_queue_name("rss"));
    std::vector<std::thread> pool;
    std::atomic<bool> failed{false}, late{false};
    std::atomic<uint64_t> claimed{0}, done{0};
    const uint64_t want = std::min(step, total - sent);
    for (int t = 0; t < threads; ++t) {
      Op send = send_op(q, SendKind::Signed, k.thread_ctx[static_cast<size_t>(t)], false);
      pool.emplace_back([&, send] {
        try {
          while (!failed && !late) {
            if (claimed.fetch_add(1) >= want) break;
            send();
            done.fetch_add(1);
            if (std::chrono::steady_clock::now() >= deadline) late = true;
          }
        } catch (const std::exception& e) {
          std::fprintf(stderr, "mqsec-bench: peak RSS phase: %s\n", e.what());
          failed = true;
        }
      });
    }
    for (auto& th : pool) th.join();
    if (failed) fail("sending failed during the peak RSS phase");
    out_of_time = late;
    sent += done.load();
    out.push_back({k.name, threads, sent, proc_status_kib("VmHWM"), proc_status_kib("VmRSS")});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Remote queues (issue 10). Two machines on this host: A (hosta) sends, B (hostb) receives;
// each has its own system configuration ([machine] name, [store] path, [broker]) and store, and
// both use the sandbox's token. The bench process is A (MQSEC_CONFIG is switched to A's
// configuration for the remote slices and back afterwards, never while an MQ call runs);
// `mqsec agent` runs per machine; B's receiver is this program re-executed in a role.

constexpr const char* kRemoteFormat = "DIRECT=OS:hostb\\private$\\bench";
constexpr const char* kRemoteMachine = "hostb";
constexpr const char* kRawMachine = "bench-raw";  // the broker ceiling's queue: mqsec.in.bench-raw
constexpr uint64_t kWarmup = 20;                  // untimed messages before each remote slice
constexpr size_t kBrokerBatch = 500;              // as the Forwarder's default batch

struct Machine {
  std::string name;
  fs::path config, store;
};

struct Remote {
  std::unique_ptr<Broker> broker;
  fs::path dir;  // machines and logs, inside the sandbox
  Machine a, b;
  std::unique_ptr<Child> agent_a, agent_b;
  int serial = 0;
};

void use_config(const fs::path& cfg) { setenv("MQSEC_CONFIG", cfg.c_str(), 1); }

transport::amqp::BrokerSettings settings_of(const Broker& b) {
  transport::amqp::BrokerSettings s;
  s.url = b.url();
  s.user = b.user();
  s.password.assign(b.password());
  return s;
}

Machine write_machine(const Remote& rm, const Sandbox& sb, const std::string& name) {
  Machine m;
  m.name = name;
  fs::path dir = rm.dir / name;
  m.store = dir / "store";
  m.config = dir / "mqsec.toml";
  fs::create_directories(m.store);
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  fs::permissions(m.store, fs::perms::owner_all, fs::perm_options::replace);
  write_file(m.config,
             config_text(sb, m.store) + "[machine]\nname = \"" + name + "\"\n[broker]\nurl = \"" +
                 rm.broker->url() + "\"\nuser = \"" + rm.broker->user() +
                 "\"\npassword-source = \"file:" + rm.broker->password_file().string() + "\"\n");
  return m;
}

// `mqsec agent` of a machine; fails if it does not keep running for its first 1.5 s.
std::unique_ptr<Child> start_agent(Remote& rm, const Machine& m) {
  auto agent = std::make_unique<Child>(
      std::vector<std::string>{mqsec_cli().string(), "agent"},
      std::map<std::string, std::string>{{"MQSEC_CONFIG", m.config.string()},
                                         {"MQSEC_LOG", "stderr"}},
      rm.dir / (m.name + "-agent-" + std::to_string(++rm.serial) + ".log"), false);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  if (!agent->running())
    fail("mqsec agent of " + m.name + " ended (" + agent->describe_status() + "):\n" +
         agent->log_tail());
  return agent;
}

void stop_agent(std::unique_ptr<Child>& agent) {
  if (agent && !agent->stop(SIGTERM, std::chrono::seconds(20)))
    std::fprintf(stderr, "mqsec-bench: an mqsec agent did not stop cleanly (%s)\n",
                 agent->describe_status().c_str());
  agent.reset();
}

// Takes (accepts) everything in the broker queue of `machine`: at least `expect` messages, then
// until none comes for 0.5 s. Returns how many.
uint64_t drain(const Remote& rm, const std::string& machine, uint64_t expect) {
  transport::amqp::Connection c(settings_of(*rm.broker));
  c.open_receiver(transport::amqp::inbound_address(machine), 500);
  uint64_t n = 0;
  auto last = std::chrono::steady_clock::now();
  for (;;) {
    auto d = c.receive(std::chrono::milliseconds(n < expect ? 1000 : 500));
    if (!d) {
      if (n >= expect || std::chrono::steady_clock::now() - last > std::chrono::seconds(30)) break;
      continue;
    }
    c.accept(d->id);
    ++n;
    last = std::chrono::steady_clock::now();
  }
  c.close();
  return n;
}

std::unique_ptr<Remote> setup_remote(const Sandbox& sb, std::unique_ptr<Broker> broker) {
  auto rm = std::make_unique<Remote>();
  rm->broker = std::move(broker);
  rm->dir = sb.dir / "remote";
  fs::create_directories(rm->dir);
  rm->a = write_machine(*rm, sb, "hosta");
  rm->b = write_machine(*rm, sb, kRemoteMachine);
  // B's queue .\private$\bench, made in this process under B's configuration.
  use_config(rm->b.config);
  {
    std::wstring format;
    const HRESULT hr = create_private_queue("bench", format);
    use_config(sb.config);
    if (hr != MQ_ERROR_QUEUE_EXISTS) check_hr(hr, "MQCreateQueue on hostb");
  }
  rm->agent_a = start_agent(*rm, rm->a);
  return rm;
}

// The remote slices send as machine A through one handle to B's queue.
class RemoteSender {
 public:
  RemoteSender(const Remote& rm, const Sandbox& sb, const Key& k) : sb_(sb) {
    use_config(rm.a.config);
    HRESULT hr = MQOpenQueue(to_wide(kRemoteFormat).c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &h_);
    if (FAILED(hr)) use_config(sb.config);
    check_hr(hr, "MQOpenQueue(DIRECT=OS:hostb\\private$\\bench)");
    send_ = send_op(h_, SendKind::Signed, k.thread_ctx[0], false);
  }
  ~RemoteSender() {
    MQCloseQueue(h_);
    use_config(sb_.config);
  }
  RemoteSender(const RemoteSender&) = delete;
  RemoteSender& operator=(const RemoteSender&) = delete;
  void send(uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) send_();
    core::runtime().stores().flush_express();  // express messages are written in the background
  }

 private:
  static std::wstring to_wide(const std::string& s) { return std::wstring(s.begin(), s.end()); }
  const Sandbox& sb_;
  QUEUEHANDLE h_ = nullptr;
  Op send_;
};

// Waits until the broker has accepted everything A sent: A's outgoing queue for B's queue is
// empty (the forwarder removes a message only once the broker settled it accepted). Polls the
// store every 5 ms (a COUNT on A's SQLite store).
void wait_forwarded(const Remote& rm, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  transport::local::Store& store = core::runtime().stores().store_at(rm.a.store);
  const std::string name = core::outgoing_queue_name(core::destination_of_format(kRemoteFormat));
  auto info = store.find_queue(name);
  if (!info) fail("no outgoing queue '" + name + "' in A's store");
  for (;;) {
    size_t left = store.message_count(info->id);
    if (left == 0) return;
    if (std::chrono::steady_clock::now() > deadline)
      fail(std::to_string(left) + " messages still in A's outgoing queue; agent A:\n" +
           rm.agent_a->log_tail());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// remote_signed_send: n signed express MQSendMessage to DIRECT=OS:hostb\private$\bench from A,
// timed until the broker has accepted them all. B's agent is stopped, so they stay on the
// broker; they are taken off afterwards (untimed).
Timing remote_signed_send(Remote& rm, const Sandbox& sb, const Key& k, uint64_t n) {
  stop_agent(rm.agent_b);
  const std::string queue = transport::amqp::inbound_queue_name(kRemoteMachine);
  if (uint64_t left = rm.broker->queue_depth(queue).value_or(0); left > 0)
    drain(rm, kRemoteMachine, left);
  Timing t;
  {
    RemoteSender tx(rm, sb, k);
    tx.send(kWarmup);
    wait_forwarded(rm, std::chrono::seconds(120));
    auto t0 = std::chrono::steady_clock::now();
    tx.send(n);
    wait_forwarded(rm, std::chrono::seconds(120 + n / 20));
    t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t.ops = n;
  }
  uint64_t on_broker = rm.broker->queue_depth(queue).value_or(0);
  uint64_t taken = drain(rm, kRemoteMachine, on_broker);
  if (on_broker < kWarmup + n || taken < kWarmup + n)
    fail("remote_signed_send: the broker held " + std::to_string(on_broker) + " and gave " +
         std::to_string(taken) + " of " + std::to_string(kWarmup + n) + " messages");
  if (on_broker > kWarmup + n)
    std::fprintf(stderr, "mqsec-bench: remote_signed_send: %llu duplicates on the broker\n",
                 static_cast<unsigned long long>(on_broker - kWarmup - n));
  return t;
}

// broker_send / broker_send_express: the broker's own ceiling, measured with the transport's
// Connection as the Forwarder uses it: the key's real envelopes with the Forwarder's properties,
// pipelined in batches of 500, each batch settled before the next.
Timing broker_send(const Remote& rm, const Key& k, uint64_t n, bool durable) {
  Timing t;
  {
    transport::amqp::Connection c(settings_of(*rm.broker));
    const std::string address = transport::amqp::inbound_address(kRawMachine);
    std::vector<transport::amqp::OutboundMessage> batch(kBrokerBatch);
    uint64_t id = 0;
    auto fill = [&](size_t count) {
      for (size_t i = 0; i < count; ++i) {
        transport::amqp::OutboundMessage& m = batch[i];
        char hex[41];
        std::snprintf(hex, sizeof hex, "%040llx", static_cast<unsigned long long>(++id));
        m.address = address;
        m.message_id = hex;
        m.properties = {{std::string(transport::amqp::kPropertyQueue), "bench"},
                        {std::string(transport::amqp::kPropertySource), "hosta"},
                        {std::string(transport::amqp::kPropertyDestination), kRawMachine}};
        m.body = k.envelopes[id % k.envelopes.size()];
        m.durable = durable;
      }
    };
    auto send = [&](size_t count) {
      fill(count);
      transport::amqp::SendReport r =
          c.send(std::span<const transport::amqp::OutboundMessage>(batch.data(), count));
      if (!r.all_accepted()) fail("broker_send: not accepted: " + r.error_text);
    };
    send(kWarmup);  // attaches the link
    auto t0 = std::chrono::steady_clock::now();
    for (uint64_t sent = 0; sent < n;) {
      size_t count = static_cast<size_t>(std::min<uint64_t>(kBrokerBatch, n - sent));
      send(count);
      sent += count;
    }
    t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t.ops = n;
    c.close();
  }
  drain(rm, kRawMachine, kWarmup + n);
  return t;
}

// remote_end_to_end: n signed express messages from A to B's queue through the broker, B's
// agent verifying and storing them, a receiver process on B taking each with MQReceiveMessage
// (verified again, AUTHENTICATED checked); timed from the first send to the last receive.
Timing remote_end_to_end(Remote& rm, const Sandbox& sb, const Key& k, uint64_t n) {
  if (!rm.agent_b) rm.agent_b = start_agent(rm, rm.b);
  Child rx({self_exe().string()},
           {{"MQSEC_BENCH_ROLE", "remote-receiver"},
            {"MQSEC_CONFIG", rm.b.config.string()},
            {"MQSEC_LOG", "stderr"},
            {"MQSEC_BENCH_WARMUP", std::to_string(kWarmup)},
            {"MQSEC_BENCH_COUNT", std::to_string(n)}},
           rm.dir / ("receiver-" + std::to_string(++rm.serial) + ".log"), true);
  auto expect = [&](const std::string& what, std::chrono::seconds limit) -> std::string {
    auto line = rx.read_line(limit);
    if (!line || line->rfind(what, 0) != 0)
      fail("remote_end_to_end: the receiver on hostb did not report '" + what + "' (" +
           (line ? "said '" + *line + "'" : std::string("nothing within the limit")) + ", " +
           rx.describe_status() + "):\n" + rx.log_tail() + "\nagent A:\n" + rm.agent_a->log_tail() +
           "\nagent B:\n" + rm.agent_b->log_tail());
    return *line;
  };
  expect("ready", std::chrono::seconds(60));
  Timing t;
  {
    RemoteSender tx(rm, sb, k);
    tx.send(kWarmup);
    expect("warm", std::chrono::seconds(120));
    auto t0 = std::chrono::steady_clock::now();
    tx.send(n);
    std::string done = expect("done", std::chrono::seconds(120 + n / 20));
    t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t.ops = n;
    unsigned long long got = 0, bad = 1;
    if (std::sscanf(done.c_str(), "done %llu %llu", &got, &bad) != 2 || got != n || bad != 0)
      fail("remote_end_to_end: the receiver on hostb said '" + done + "'");
  }
  if (!rx.wait_exit(std::chrono::seconds(30)))
    fail("the receiver on hostb did not exit cleanly (" + rx.describe_status() + "):\n" +
         rx.log_tail());
  return t;
}

// The receiver role (MQSEC_BENCH_ROLE=remote-receiver, MQSEC_CONFIG = B): takes
// MQSEC_BENCH_WARMUP messages ("warm"), then MQSEC_BENCH_COUNT ("done <count> <bad>"); a message
// is bad unless authenticated with a 1 KiB body.
int remote_receiver() {
  ::alarm(1800);
  const uint64_t warm = std::stoull(std::getenv("MQSEC_BENCH_WARMUP"));
  const uint64_t count = std::stoull(std::getenv("MQSEC_BENCH_COUNT"));
  QUEUEHANDLE h = nullptr;
  check_hr(MQOpenQueue(L"DIRECT=OS:.\\private$\\bench", MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h),
           "MQOpenQueue(bench) on hostb");
  std::printf("ready\n");
  std::fflush(stdout);
  std::vector<uint8_t> body(2 * kBodySize);
  MSGPROPID id[3] = {PROPID_M_BODY, PROPID_M_BODY_SIZE, PROPID_M_AUTHENTICATED};
  MQPROPVARIANT v[3];
  uint64_t bad = 0;
  auto take = [&](uint64_t want) {
    for (uint64_t i = 0; i < want;) {
      v[0].vt = VT_UI1 | VT_VECTOR;
      v[0].caub.pElems = body.data();
      v[0].caub.cElems = static_cast<ULONG>(body.size());
      v[1].vt = VT_NULL;
      v[2].vt = VT_NULL;
      MQMSGPROPS p = {3, id, v, nullptr};
      HRESULT hr =
          MQReceiveMessage(h, 1000, MQ_ACTION_RECEIVE, &p, nullptr, nullptr, nullptr, nullptr);
      if (hr == MQ_ERROR_IO_TIMEOUT) continue;
      check_hr(hr, "MQReceiveMessage on hostb");
      if (v[2].bVal == 0 || v[1].ulVal != kBodySize) ++bad;
      ++i;
    }
  };
  take(warm);
  std::printf("warm\n");
  std::fflush(stdout);
  take(count);
  std::printf("done %llu %llu\n", static_cast<unsigned long long>(count),
              static_cast<unsigned long long>(bad));
  std::fflush(stdout);
  MQCloseQueue(h);
  return 0;
}

bool selected(const std::string& list, const std::string& item) {
  if (list.empty()) return true;
  std::stringstream in(list);
  std::string x;
  while (std::getline(in, x, ','))
    if (x == item) return true;
  return false;
}

// The remote slices of every key, in rounds (full: 2, quick: 1) so that a change in background
// load affects the cases of a round alike. Appends one record per (key, case), threads 1.
void run_remote(const Options& o, const Sandbox& sb, std::vector<Key>& keys, Remote& rm,
                Report& rep) {
  const int rounds = o.quick ? 1 : 2;
  const uint64_t n = o.remote_messages;
  const uint64_t n_broker = std::max<uint64_t>(n, 3000);
  const std::vector<std::string> names = {"remote_signed_send", "remote_end_to_end", "broker_send",
                                          "broker_send_express"};
  std::map<std::string, std::map<std::string, Timing>> sum;  // key -> case -> timing
  auto add = [&](const Key& k, const std::string& name, Timing t) {
    Timing& s = sum[k.name][name];
    s.ops += t.ops;
    s.seconds += t.seconds;
    std::fprintf(stderr, "  %-8s 1  %-19s %10.1f ops/s (%llu in %.2f s)\n", k.name.c_str(),
                 name.c_str(), t.per_second(), static_cast<unsigned long long>(t.ops), t.seconds);
  };
  for (int r = 0; r < rounds; ++r) {
    for (Key& k : keys) {
      if (!selected(o.keys, k.name)) continue;
      select_profile(k, sb);
      if (selected(o.cases, "remote_signed_send"))
        add(k, "remote_signed_send", remote_signed_send(rm, sb, k, n));
      if (selected(o.cases, "broker_send"))
        add(k, "broker_send", broker_send(rm, k, n_broker, true));
      if (selected(o.cases, "broker_send_express"))
        add(k, "broker_send_express", broker_send(rm, k, n_broker, false));
      if (selected(o.cases, "remote_end_to_end"))
        add(k, "remote_end_to_end", remote_end_to_end(rm, sb, k, n));
    }
  }
  stop_agent(rm.agent_b);
  stop_agent(rm.agent_a);
  for (Key& k : keys) {
    for (const std::string& name : names) {
      auto it = sum[k.name].find(name);
      if (it != sum[k.name].end())
        rep.records.push_back({k.name, 1, name, it->second.per_second(), 0, {}, {}, {}});
    }
  }
}

// Records saying why the remote cases did not run.
void remote_notes(const Options& o, const std::vector<Key>& keys, const std::string& why,
                  Report& rep) {
  for (const Key& k : keys) {
    if (!selected(o.keys, k.name)) continue;
    for (const char* name :
         {"remote_signed_send", "remote_end_to_end", "broker_send", "broker_send_express"}) {
      if (selected(o.cases, name)) rep.records.push_back({k.name, 1, name, 0, 0, why, {}, {}});
    }
  }
}

// ---------------------------------------------------------------------------------------------

Options parse(int argc, char** argv) {
  Options o;
  bool seconds_set = false, messages_set = false, budget_set = false, remote_messages_set = false,
       contexts_set = false, remote_set = false, threads_set = false, slice_set = false,
       pool_set = false;
  if (const char* e = std::getenv("MQSEC_BENCH_REMOTE"); e != nullptr && std::string(e) == "0")
    o.remote = Options::Remote::Off;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") {
      o.quick = true;
    } else if (a == "--json") {
      o.json = value();
    } else if (a == "--chart") {
      o.chart = value();
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--seconds") {
      o.seconds = std::stod(value());
      seconds_set = true;
    } else if (a == "--messages") {
      o.messages = std::stoull(value());
      messages_set = true;
    } else if (a == "--contexts") {
      o.contexts = std::stoi(value());
      contexts_set = true;
    } else if (a == "--budget") {
      o.budget = std::stod(value());
      budget_set = true;
    } else if (a == "--keys") {
      o.keys = value();
    } else if (a == "--cases") {
      o.cases = value();
    } else if (a == "--remote") {
      o.remote = Options::Remote::On;
      remote_set = true;
    } else if (a == "--no-remote") {
      o.remote = Options::Remote::Off;
    } else if (a == "--remote-messages") {
      o.remote_messages = std::stoull(value());
      remote_messages_set = true;
    } else if (a == "--token") {
      o.token = value();
    } else if (a == "--module") {
      o.module = value();
    } else if (a == "--threads") {
      o.threads.clear();
      std::stringstream in(value());
      std::string x;
      while (std::getline(in, x, ',')) {
        int n = std::stoi(x);
        if (n < 1 || n > 64) fail("--threads: each count 1..64");
        o.threads.push_back(n);
      }
      if (o.threads.empty()) fail("--threads needs a list such as 1,4");
      threads_set = true;
    } else if (a == "--slice") {
      o.slice = std::stod(value());
      slice_set = true;
    } else if (a == "--sign-delay-ms") {
      o.sign_delay_ms = std::stoi(value());
      if (o.sign_delay_ms < 1 || o.sign_delay_ms > 60000) fail("--sign-delay-ms: 1..60000");
    } else if (a == "--batch-max") {
      o.batch_max = static_cast<uint32_t>(std::stoul(value()));
      if (o.batch_max < 2 || o.batch_max > 65536) fail("--batch-max: 2..65536");
    } else if (a == "--batch-delay-ms") {
      o.batch_delay_ms = std::stoi(value());
      if (o.batch_delay_ms < 0 || o.batch_delay_ms > 10000) fail("--batch-delay-ms: 0..10000");
    } else if (a == "--batch-rate") {
      o.batch_rate = std::stod(value());
      if (!(o.batch_rate > 0)) fail("--batch-rate must be > 0");
    } else if (a == "--receive-messages") {
      o.receive_pool = std::stoi(value());
      if (o.receive_pool < 1) fail("--receive-messages must be > 0");
      pool_set = true;
    } else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: mqsec-bench [--quick] [--json FILE] [--chart FILE.png] [--seconds S]\n"
          "                   [--messages N] [--contexts N] [--budget S] [--keys LIST]\n"
          "                   [--cases LIST] [--keep] [--remote | --no-remote]\n"
          "                   [--remote-messages N] [--threads LIST] [--slice S]\n"
          "                   [--sign-delay-ms MS] [--batch-max N] [--batch-delay-ms MS]\n"
          "                   [--batch-rate N] [--receive-messages N]\n"
          "  --quick         0.3 s per case, 20,000 messages for peak RSS, 55 s budget (CI)\n"
          "  --json FILE     one record per (key, threads, case), plus memory records\n"
          "  --chart FILE    PNG bar chart of the ratios (needs gnuplot)\n"
          "  --seconds S     time per case (default 2, quick 0.3)\n"
          "  --messages N    messages in the peak RSS phase (default 1000000, quick 20000;\n"
          "                  0 skips it); the phase stops early when the budget runs out\n"
          "  --contexts N    contexts for bytes per context (default 1000; 0 skips it)\n"
          "  --budget S      seconds for the whole run (default 280, quick 55)\n"
          "  --keys LIST     e.g. p256 (default rsa2048,p256)\n"
          "  --cases LIST    e.g. raw_sign,signed_send (default all)\n"
          "  --keep          keep the temporary token, store and config (prints where)\n"
          "  --remote        remote cases (A -> RabbitMQ -> B); the default when a broker\n"
          "                  can be started (scripts/broker.sh, rabbitmq-server)\n"
          "  --no-remote     skip them (also MQSEC_BENCH_REMOTE=0)\n"
          "  --remote-messages N  messages per remote slice (default 3000, quick 300)\n"
          "  --token URI     measure on this token (RFC 7512 URI with its pin-source, e.g.\n"
          "                  'pkcs11:serial=...?pin-source=file:/path') instead of a SoftHSM\n"
          "                  token of its own: the keys are the token's certificates with\n"
          "                  their private keys (one per key kind), nothing is written to it;\n"
          "                  local cases only, no peak RSS or context memory unless asked for\n"
          "  --module PATH   the PKCS#11 module of --token, when the URI names none\n"
          "  --threads LIST  thread counts of the local cases (default 1,2; 1 with\n"
          "                  --sign-delay-ms), e.g. 1,4\n"
          "  --slice S       length of one interleaved slice (default 0.5 s; 2.5 s with\n"
          "                  --token or --sign-delay-ms)\n"
          "  --sign-delay-ms MS  the bench's own token through the fault module, every C_Sign\n"
          "                  MS slower (a slow card); default cases raw_sign, signed_send,\n"
          "                  batch_send, batch_latency\n"
          "  --batch-max N   [signing] batch-max-messages of the batch cases (default 1000)\n"
          "  --batch-delay-ms MS  [signing] batch-max-delay-ms of the batch cases (default 10)\n"
          "  --batch-rate N  messages per second batch_latency sends (default 1000)\n"
          "  --receive-messages N  distinct signed messages for the receive cases (default\n"
          "                  1000, quick 250, 64 with --token or --sign-delay-ms)\n");
      std::exit(0);
    } else {
      fail("unknown argument '" + a + "' (see --help)");
    }
  }
  if (o.quick) {
    if (!seconds_set) o.seconds = 0.3;
    if (!messages_set) o.messages = 20000;
    if (!budget_set) o.budget = 55;
    if (!remote_messages_set) o.remote_messages = 300;
    if (!pool_set) o.receive_pool = 250;
  }
  if (o.remote_messages == 0) fail("--remote-messages must be > 0");
  if (!o.module.empty() && o.token.empty())
    fail("--module needs --token URI (which token, and its PIN source)");
  if (!o.token.empty()) {
    // A card signs in milliseconds to seconds: a million messages or a thousand contexts only
    // when asked for; the remote cases need the bench's own token.
    if (remote_set) fail("--remote runs on the bench's own token only (not with --token)");
    o.remote = Options::Remote::Off;
    if (!messages_set) o.messages = 0;
    if (!contexts_set) o.contexts = 0;
  }
  if (o.sign_delay_ms > 0) {
    // A slow token: one signature per delay, so only what the batch cases are compared with.
    if (!o.token.empty()) fail("--sign-delay-ms slows the bench's own token (not with --token)");
    if (remote_set) fail("--remote runs at the token's full speed only (not with --sign-delay-ms)");
    o.remote = Options::Remote::Off;
    if (o.cases.empty()) o.cases = "raw_sign,signed_send,batch_send,batch_latency";
    if (!threads_set) o.threads = {1};
    if (!messages_set) o.messages = 0;
    if (!contexts_set) o.contexts = 0;
  }
  if (!o.token.empty() || o.sign_delay_ms > 0) {
    if (!slice_set) o.slice = 2.5;
    if (!pool_set) o.receive_pool = 64;
  }
  if (!(o.slice > 0)) fail("--slice must be > 0");
  if (o.seconds <= 0 || o.contexts < 0) fail("--seconds must be > 0 and --contexts >= 0");
  return o;
}

void set_ratios(Report& r) {
  auto rate = [&r](const std::string& key, int threads, const std::string& name) {
    for (const Record& b : r.records) {
      if (b.key == key && b.threads == threads && b.name == name && b.note.empty())
        return b.ops_per_s;
    }
    return 0.0;
  };
  for (Record& x : r.records) {
    if (!x.note.empty()) continue;
    std::string base = baseline_case(x.name);
    double b = rate(x.key, x.threads, base);
    if (b > 0) x.ratio = x.ops_per_s / b;
    // The remote cases also against the token and the broker of the same run.
    std::vector<std::string> also;
    if (x.name == "remote_signed_send" || x.name == "remote_end_to_end")
      also = {"raw_sign", "broker_send_express", "broker_send"};
    if (x.name == "remote_end_to_end") also.push_back("remote_signed_send");
    if (x.name == "batch_send" || x.name == "batch_latency") also = {"signed_send"};
    for (const std::string& name : also) {
      if (double v = rate(x.key, x.threads, name); v > 0) x.also.push_back({name, x.ops_per_s / v});
    }
  }
}

// The cases of one (key, threads) group, in table order. Each returns the Timing of one slice.
struct Case {
  const char* name;
  std::function<Timing(double)> run;
};

std::vector<Case> cases_for(Key& k, const Sandbox& sb, const Options& o, int threads) {
  auto send_case = [&k, threads](const char* what, SendKind kind, bool per_thread,
                                 bool recoverable) {
    return [&k, threads, what, kind, per_thread, recoverable](double secs) {
      TempQueue q(unique_queue_name(what));
      // Express sends return once the background writer has the message; the slice ends
      // when the writer has committed them all, so the rate is one the store sustains.
      return measure(
          threads, secs,
          [&](int t) {
            HANDLE ctx = kind == SendKind::Plain || kind == SendKind::Implicit ||
                                 kind == SendKind::ContextPerSend
                             ? nullptr
                         : per_thread ? k.thread_ctx[static_cast<size_t>(t)]
                                      : k.shared_ctx;
            return send_op(q, kind, ctx, recoverable);
          },
          [] { core::runtime().stores().flush_express(); });
    };
  };
  std::vector<Case> cases = {
      {"raw_sign",
       [&k, threads](double secs) {
         return measure(threads, secs, [&](int) { return raw_sign_op(k); });
       }},
      {"libp11_sign",
       [&k, threads](double secs) {
         return measure(threads, secs, [&](int) { return libp11_sign_op(k); });
       }},
      {"signed_send", send_case("signed", SendKind::Signed, true, false)},
      {"signed_send_shared", send_case("shared", SendKind::Signed, false, false)},
      {"uncached_send", send_case("uncached", SendKind::Implicit, false, false)},
      {"context_per_send", send_case("perctx", SendKind::ContextPerSend, false, false)},
      {"plain_send", send_case("plain", SendKind::Plain, false, false)},
      {"recoverable_send", send_case("recoverable", SendKind::Signed, true, true)},
      {"openssl_verify",
       [&k, threads](double secs) {
         return measure(threads, secs, [&](int t) { return openssl_verify_op(k, t); });
       }},
      {"receive_verify",
       [&k, &sb, threads](double secs) { return receive_verify(k, sb, threads, secs, false); }},
      {"receive_beside_sender",
       [&k, &sb, threads](double secs) { return receive_verify(k, sb, threads, secs, true); }},
      {"batch_send", [&k, &sb, threads](double secs) { return batch_send(k, sb, threads, secs); }},
  };
  // One sending process at a fixed rate: a 1-thread case.
  if (threads == 1)
    cases.push_back({"batch_latency", [&k, &sb, &o](double secs) {
                       return batch_latency(k, sb, o.batch_rate, secs);
                     }});
  return cases;
}

int run(const Options& o) {
  auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  Sandbox sb;
  sb.keep = o.keep;
  provision(sb, o);
  if (o.keep) std::fprintf(stderr, "mqsec-bench: sandbox in %s\n", sb.dir.c_str());
  // Declared after the sandbox: agents and the broker go before the sandbox is removed.
  std::unique_ptr<Remote> remote;
  std::string remote_skip;  // why the remote cases do not run ("" if they do)
  if (o.remote == Options::Remote::Off) {
    remote_skip = "off";
  } else {
    remote_skip = remote_unavailable();
    if (!remote_skip.empty() && o.remote == Options::Remote::On) fail("--remote: " + remote_skip);
  }

  std::vector<Key> keys;
  if (sb.external) {
    keys = token_keys(sb, max_threads(o));
  } else {
    keys.resize(2);
    keys[0].name = "rsa2048";
    keys[0].kind = security::KeyKind::Rsa2048;
    keys[1].name = "p256";
    keys[1].kind = security::KeyKind::P256;
    // Enroll every key first: libp11 reads the token's key list once.
    for (Key& k : keys) enroll(k, sb, max_threads(o));
  }
  // The receive cases' messages (and the broker cases' bodies), signed one by one.
  const bool need_envelopes = selected(o.cases, "openssl_verify") ||
                              selected(o.cases, "receive_verify") ||
                              selected(o.cases, "receive_beside_sender") || remote_skip.empty();
  for (Key& k : keys) {
    if (!selected(o.keys, k.name)) continue;
    if (need_envelopes) {
      std::fprintf(stderr, "  %s: signing %d messages for the receive cases...\n", k.name.c_str(),
                   o.receive_pool);
      make_envelopes(k, sb, o.receive_pool);
    }
    if (!selected(o.cases, "libp11_sign")) continue;
    try {
      // libp11 0.4 asks for a PIN-always key's PIN on the terminal at every signature.
      if (sb.external && always_authenticate(k))
        fail("not run on a PIN-always key (libp11 prompts for its PIN at each signature)");
      load_libp11_key(k, sb);
    } catch (const std::exception& e) {
      if (!sb.external) throw;
      k.notes["libp11_sign"] = std::string("libp11: ") + e.what();
    }
  }

  // The broker starts before the local cases, so that they run with the (idle) node present,
  // as the remote cases do.
  if (remote_skip.empty()) {
    std::fprintf(stderr, "  starting a RabbitMQ node for the remote cases...\n");
    auto t0 = std::chrono::steady_clock::now();
    try {
      remote = setup_remote(sb, Broker::start(kBrokerDirPrefix));
    } catch (const std::exception& e) {
      if (o.remote == Options::Remote::On) throw;
      remote_skip = std::string("no broker: ") + e.what();
      std::fprintf(stderr, "mqsec-bench: remote cases skipped: %s\n", e.what());
    }
    if (remote)
      std::fprintf(stderr, "  broker %s and agent of hosta up in %.1f s\n",
                   remote->broker->url().c_str(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  Report rep;
  rep.mode = o.quick ? "quick" : "full";
  rep.case_seconds = o.seconds;
  // Slices of at most 0.5 s, interleaved across the cases of a group, so that a change in
  // background load during the group affects every case alike instead of one case.
  const int rounds = std::max(2, static_cast<int>(o.seconds / o.slice + 0.5));
  for (Key& k : keys) {
    if (!selected(o.keys, k.name)) continue;
    select_profile(k, sb);  // uncached_send, context_per_send and the context memory use this key
    for (int threads : o.threads) {
      std::vector<Case> cases = cases_for(k, sb, o, threads);
      std::vector<Timing> sum(cases.size());
      for (int r = 0; r < rounds; ++r) {
        for (size_t j = 0; j < cases.size(); ++j) {
          // Each round starts at another case, so no case always follows the same one.
          size_t i = (j + static_cast<size_t>(r)) % cases.size();
          if (!selected(o.cases, cases[i].name)) continue;
          // Write back what the previous slice left dirty (deleted queues, WAL) now, untimed,
          // rather than in the kernel's background while the next case is measured.
          ::sync();
          if (k.notes.count(cases[i].name)) continue;
          Timing t;
          try {
            t = cases[i].run(o.seconds / rounds);
          } catch (const std::exception& e) {
            // On a token of the user's a case may not work at all (libp11 and a PIN-always
            // key): say so in its record rather than end the run. Our own token must work.
            if (!sb.external) throw;
            k.notes[cases[i].name] = e.what();
            std::fprintf(stderr, "  %-8s %d  %-19s did not run: %s\n", k.name.c_str(), threads,
                         cases[i].name, e.what());
            continue;
          }
          sum[i].add(t);
        }
      }
      for (size_t i = 0; i < cases.size(); ++i) {
        if (!selected(o.cases, cases[i].name)) continue;
        if (auto note = k.notes.find(cases[i].name); note != k.notes.end()) {
          rep.records.push_back({k.name, threads, cases[i].name, 0, 0, note->second, {}, {}});
          continue;
        }
        Record x{k.name, threads, cases[i].name, sum[i].per_second(), 0, {}, {}, {}};
        if (!sum[i].latencies_ms.empty()) {
          x.stats.push_back({"p50_ms", percentile(sum[i].latencies_ms, 50)});
          x.stats.push_back({"p99_ms", percentile(sum[i].latencies_ms, 99)});
          x.stats.push_back({"max_ms", percentile(sum[i].latencies_ms, 100)});
        }
        if (sum[i].offered > 0) {
          // What the paced sender reached (below the offered rate when MQSendMessage blocked).
          x.stats.push_back({"offered_per_s", o.batch_rate});
          x.stats.push_back(
              {"sent_per_s", static_cast<double>(sum[i].offered) / sum[i].send_seconds});
        }
        for (const auto& [name, v] : sum[i].sums) x.stats.push_back({name, v});
        if (sum[i].cpu_seconds > 0 && sum[i].ops > 0 && sum[i].seconds > 0) {
          // Where an operation's time goes, whatever the cores it was spread over: its CPU
          // (an in-process token's included) against the baseline's (docs/performance.md,
          // sessions 20-21). Cases timed by measure() only (not batch_latency).
          x.stats.push_back(
              {"cpu_us_per_op", 1e6 * sum[i].cpu_seconds / static_cast<double>(sum[i].ops)});
          x.stats.push_back({"cores", sum[i].cpu_seconds / sum[i].seconds});
        }
        if (sum[i].thread_seconds > 0) {
          // Of the measured threads' lives: on a CPU, runnable (waiting for one), blocked.
          const double alive = sum[i].thread_seconds;
          x.stats.push_back({"on_cpu", sum[i].thread_on_cpu / alive});
          x.stats.push_back({"runnable", sum[i].thread_runnable / alive});
          x.stats.push_back(
              {"blocked", (alive - sum[i].thread_on_cpu - sum[i].thread_runnable) / alive});
        }
        if (sum[i].signatures > 0)
          x.stats.push_back({"messages_per_signature", static_cast<double>(sum[i].ops) /
                                                           static_cast<double>(sum[i].signatures)});
        std::string stats;
        for (const auto& [name, v] : x.stats) stats += "  " + name + " " + std::to_string(v);
        std::fprintf(stderr, "  %-8s %d  %-19s %10.1f ops/s%s\n", k.name.c_str(), threads,
                     cases[i].name, sum[i].per_second(), stats.c_str());
        rep.records.push_back(std::move(x));
      }
    }
    if (o.contexts > 0) {
      rep.contexts.push_back(context_memory(k, o.contexts));
      std::fprintf(stderr, "  %-8s %.0f heap bytes per context\n", k.name.c_str(),
                   rep.contexts.back().heap_bytes_per_context);
    }
  }
  int status = 0;
  if (remote) {
    try {
      run_remote(o, sb, keys, *remote, rep);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mqsec-bench: remote cases failed: %s\n", e.what());
      std::string first_line = e.what();
      first_line = first_line.substr(0, first_line.find('\n'));
      for (char& c : first_line) {
        if (c == '"' || c == '\\') c = '\'';
      }
      std::vector<Record> kept;
      for (Record& x : rep.records) {
        if (x.name.rfind("remote_", 0) != 0 && x.name.rfind("broker_", 0) != 0) kept.push_back(x);
      }
      rep.records = std::move(kept);
      remote_notes(o, keys, "failed: " + first_line, rep);
      status = 2;
    }
    use_config(sb.config);
    remote.reset();  // agents and broker stopped
  } else if (remote_skip != "off") {
    remote_notes(o, keys, remote_skip, rep);
  }
  if (o.messages > 0) {
    // The rest of the run's time budget; the phase stops early (and says so) when the
    // sending rate cannot reach o.messages within it.
    double budget = std::max(10.0, o.budget - elapsed());
    std::fprintf(stderr, "  peak RSS: up to %llu signed express messages in %.0f s...\n",
                 static_cast<unsigned long long>(o.messages), budget);
    rep.rss = peak_rss(keys.back(), kRssThreads, o.messages, budget);
    rep.rss_target = o.messages;
  }

  for (Key& k : keys) {
    MQFreeSecurityContext(k.shared_ctx);
    for (HANDLE h : k.thread_ctx) MQFreeSecurityContext(h);
  }
  set_ratios(rep);
  rep.total_seconds = elapsed();
  print_table(rep);
  if (!o.json.empty()) write_json(rep, o.json);
  if (!o.chart.empty()) write_chart(rep, o.chart);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* role = std::getenv("MQSEC_BENCH_ROLE"); role != nullptr) {
    try {
      if (std::string(role) == "remote-receiver") return remote_receiver();
      if (std::string(role) == "noise-sender") return noise_sender();
      std::fprintf(stderr, "mqsec-bench: unknown role '%s'\n", role);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mqsec-bench (%s): %s\n", role, e.what());
    }
    return 1;
  }
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mqsec-bench: %s\n", e.what());
    return 1;
  }
}
