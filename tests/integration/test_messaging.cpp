// Integration tests of issue 3's messaging rules through the MSMQ C API (mq.h, libmqrt) on a
// temporary SoftHSM token: queue management, receive order and cursors, property checking and
// buffer sizes, signing with security contexts, verification and rejection of tampered or
// unsigned messages (audit record + NACK), durability across SIGKILL, two processes on one
// store, and an independent check of the signature with the `openssl` command line.
//
// Only the public C API is used on the mqsec side. The store database is opened directly with
// SQLite to tamper with messages at rest and to read the rejection audit records, and the
// token is provisioned with `mqsec-init-token`, `pkcs11-tool` and `openssl` (opensc, openssl).
// Child processes are this executable re-executed with MQSEC_MSG_CHILD set (fork + exec, so
// that no SQLite connection or PKCS#11 session is inherited across fork).
#include <mq.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cwchar>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef MQSEC_INIT_TOKEN
#error "MQSEC_INIT_TOKEN must name the mqsec-init-token executable"
#endif

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

constexpr const char* kModule = "/usr/lib/softhsm/libsofthsm2.so";
constexpr DWORD kWait = 5000;  // ms: generous upper bound for a message that must arrive

// ---------------------------------------------------------------------------------------------
// Small utilities

std::string hex(HRESULT hr) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(hr));
  return buf;
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

void check_hr(HRESULT hr, const std::string& what) {
  if (FAILED(hr)) fail(what + " failed with " + hex(hr));
}

Bytes read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("cannot read " + p.string());
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, const void* data, size_t n, mode_t mode = 0600) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) fail("cannot create " + p.string());
  const char* c = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w <= 0) {
      ::close(fd);
      fail("cannot write " + p.string());
    }
    c += w;
    n -= static_cast<size_t>(w);
  }
  ::fchmod(fd, mode);
  ::close(fd);
}
void write_text(const fs::path& p, const std::string& s, mode_t mode = 0600) {
  write_bytes(p, s.data(), s.size(), mode);
}
void write_bytes(const fs::path& p, const Bytes& b) { write_bytes(p, b.data(), b.size()); }

// Runs a shell command, returns its exit status and (stdout + stderr) in *output.
int run(const std::string& cmd, std::string* output = nullptr) {
  std::string full = cmd + " 2>&1";
  FILE* f = ::popen(full.c_str(), "r");
  if (f == nullptr) fail("popen failed for: " + cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int status = ::pclose(f);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
void run_ok(const std::string& cmd) {
  std::string out;
  if (run(cmd, &out) != 0) fail("command failed: " + cmd + "\n" + out);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string host_name() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

std::wstring widen(const std::string& s) { return std::wstring(s.begin(), s.end()); }
std::string narrow(const std::wstring& s) {
  std::string out;
  for (wchar_t c : s) out.push_back(static_cast<char>(c));
  return out;
}
Bytes bytes_of(const std::string& s) { return Bytes(s.begin(), s.end()); }
std::string string_of(const Bytes& b) { return std::string(b.begin(), b.end()); }

// The direct format name mqsec gives a local private queue (host lower-cased).
std::wstring format_of(const std::string& queue) {
  return widen("DIRECT=OS:" + lower(host_name()) + "\\private$\\" + queue);
}
std::wstring local_format(const std::string& queue) {
  return widen("DIRECT=OS:.\\private$\\" + queue);
}

// Samba's SID for a Unix user, S-1-22-1-<uid>, in binary SID form.
Bytes unix_sid(uid_t uid) {
  Bytes b = {1, 2, 0, 0, 0, 0, 0, 22, 1, 0, 0, 0};
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(uid >> (8 * i)));
  return b;
}

Bytes sha256(const Bytes& in) {
  Bytes out(32);
  unsigned int n = 0;
  if (EVP_Digest(in.data(), in.size(), out.data(), &n, EVP_sha256(), nullptr) != 1 || n != 32)
    fail("SHA-256 failed");
  return out;
}

// ---------------------------------------------------------------------------------------------
// The per-process token environment: a SoftHSM token directory, PIN files, mqsec.toml, a store
// and a profile directory under one temporary directory; SOFTHSM2_CONF and MQSEC_CONFIG point
// there. The user's internal certificate is enrolled and registered once.

struct ExternalKey {
  Bytes cert_der;
  fs::path pub_pem;  // the token's public key, read back from the token
  bool ec = false;
};

class TokenEnv {
 public:
  void create() {
    std::string tmpl = (fs::temp_directory_path() / "mqsec-msg-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp failed");
    dir_ = tmpl;
    label_ = "msg" + std::to_string(::getpid());
    fs::create_directories(dir_ / "tokens");
    write_text(dir_ / "softhsm2.conf", "directories.tokendir = " + (dir_ / "tokens").string() +
                                           "\nobjectstore.backend = file\nlog.level = ERROR\n");
    // Random-enough throwaway PINs for a throwaway token.
    pin_ = std::to_string(100000 + (static_cast<unsigned long>(::getpid()) * 7919) % 900000);
    write_text(dir_ / "user.pin", pin_);
    write_text(dir_ / "so.pin", pin_ + "so");
    ::setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    ::setenv("MQSEC_CONFIG", (dir_ / "mqsec.toml").c_str(), 1);
    write_config(false);
    run_ok(std::string(MQSEC_INIT_TOKEN) + " --module " + kModule + " --label " + label_ +
           " --pin-file " + (dir_ / "user.pin").string() + " --so-pin-file " +
           (dir_ / "so.pin").string());
    check_hr(MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0),
             "MQRegisterCertificate(ALWAYS, NULL)");
    internal_cert_ = read_internal_cert();
  }

  void destroy() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  void write_config(bool allow_weak_hash) {
    std::string toml = "[token]\nuri = \"pkcs11:token=" + label_ + "?module-path=" + kModule +
                       "&pin-source=file:" + (dir_ / "user.pin").string() + "\"\n" +
                       "[store]\npath = \"" + store_dir().string() + "\"\n" +
                       "[profiles]\ndir = \"" + (dir_ / "users" / "%u").string() + "\"\n" +
                       "[identity]\nsid = \"unix\"\n";
    if (allow_weak_hash) toml += "[security]\nallow-weak-hash = true\n";
    write_text(dir_ / "mqsec.toml.new", toml, 0644);
    fs::rename(dir_ / "mqsec.toml.new", dir_ / "mqsec.toml");
  }

  // A key pair generated on the token by pkcs11-tool (RSA-2048 or P-256) with a certificate
  // for its public key issued by a software test CA (openssl), stored on the token too.
  ExternalKey make_external_key(bool ec, const std::string& id_hex) {
    std::string p11 = std::string("pkcs11-tool --module ") + kModule + " --token-label " + label_;
    std::string login = " --login --pin " + pin_;  // throwaway PIN of a throwaway token
    fs::path d = dir_ / ("ext-" + id_hex);
    fs::create_directories(d);
    run_ok(p11 + login + " --keypairgen --key-type " + (ec ? "EC:prime256v1" : "rsa:2048") +
           " --id " + id_hex + " --label ext" + id_hex);
    run_ok(p11 + " --read-object --type pubkey --id " + id_hex + " -o " + (d / "pub.der").string());
    run_ok("openssl pkey -pubin -inform DER -in " + (d / "pub.der").string() + " -out " +
           (d / "pub.pem").string());
    if (!fs::exists(dir_ / "ca.key")) {
      run_ok("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
             (dir_ / "ca.key").string() + " -subj /CN=mqsec-test-ca -days 30 -out " +
             (dir_ / "ca.pem").string());
    }
    run_ok("openssl req -new -key " + (dir_ / "ca.key").string() + " -subj /CN=ext-" + id_hex +
           " -out " + (d / "req.pem").string());
    run_ok("openssl x509 -req -in " + (d / "req.pem").string() + " -CA " +
           (dir_ / "ca.pem").string() + " -CAkey " + (dir_ / "ca.key").string() +
           " -set_serial 0x" + id_hex + " -force_pubkey " + (d / "pub.pem").string() +
           " -days 30 -outform DER -out " + (d / "cert.der").string());
    run_ok(p11 + login + " --write-object " + (d / "cert.der").string() + " --type cert --id " +
           id_hex + " --label ext" + id_hex);
    return ExternalKey{read_bytes(d / "cert.der"), d / "pub.pem", ec};
  }

  const fs::path& dir() const { return dir_; }
  fs::path store_dir() const { return dir_ / "store"; }
  fs::path db_path() const { return store_dir() / "mqsec.db"; }
  const Bytes& internal_cert() const { return internal_cert_; }

 private:
  // The enrolled certificate as the token holds it (read with pkcs11-tool, not mqsec).
  Bytes read_internal_cert() {
    std::string p11 = std::string("pkcs11-tool --module ") + kModule + " --token-label " + label_;
    std::string out;
    if (run(p11 + " --list-objects --type cert", &out) != 0) fail("listing certificates: " + out);
    auto at = out.find("ID:");
    if (at == std::string::npos || out.find("ID:", at + 1) != std::string::npos)
      fail("expected exactly one certificate on the token after enrollment:\n" + out);
    std::istringstream line(out.substr(at + 3));
    std::string id;
    line >> id;
    run_ok(p11 + " --read-object --type cert --id " + id + " -o " +
           (dir_ / "internal.der").string());
    return read_bytes(dir_ / "internal.der");
  }

  fs::path dir_;
  std::string label_, pin_;
  Bytes internal_cert_;
};

TokenEnv& env() {
  static TokenEnv* e = new TokenEnv();
  return *e;
}

class TokenEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { env().create(); }
  void TearDown() override { env().destroy(); }
};

// ---------------------------------------------------------------------------------------------
// MQMSGPROPS / MQQUEUEPROPS builders (the variants point into storage owned by the builder).

class Props {
 public:
  size_t ui1(PROPID id, UCHAR v) {
    return add(id, VT_UI1, [&](MQPROPVARIANT& p) { p.bVal = v; });
  }
  size_t ui2(PROPID id, USHORT v) {
    return add(id, VT_UI2, [&](MQPROPVARIANT& p) { p.uiVal = v; });
  }
  size_t ui4(PROPID id, ULONG v) {
    return add(id, VT_UI4, [&](MQPROPVARIANT& p) { p.ulVal = v; });
  }
  size_t null(PROPID id) {
    return add(id, VT_NULL, [](MQPROPVARIANT&) {});
  }
  // A byte vector: the content to send, or an output buffer of `b.size()` bytes.
  size_t bytes(PROPID id, Bytes b) {
    buffers_.push_back(std::move(b));
    Bytes& buf = buffers_.back();
    return add(id, VT_UI1 | VT_VECTOR, [&](MQPROPVARIANT& p) {
      p.caub.cElems = static_cast<ULONG>(buf.size());
      p.caub.pElems = buf.empty() ? nullptr : buf.data();
    });
  }
  size_t out_bytes(PROPID id, size_t capacity) { return bytes(id, Bytes(capacity)); }
  // A string: the content to send, or an output buffer of `capacity` WCHARs.
  size_t wstr(PROPID id, const std::wstring& s) {
    strings_.push_back(s);
    std::wstring& w = strings_.back();
    return add(id, VT_LPWSTR, [&](MQPROPVARIANT& p) { p.pwszVal = w.data(); });
  }
  size_t out_wstr(PROPID id, size_t capacity) { return wstr(id, std::wstring(capacity, L'\0')); }
  size_t raw(PROPID id, VARTYPE vt) {
    return add(id, vt, [](MQPROPVARIANT&) {});
  }

  MQPROPVARIANT& var(size_t i) { return vars_[i]; }
  HRESULT status(size_t i) const { return status_[i]; }
  Bytes out_bytes_of(size_t i) const {
    const CAUB& v = vars_[i].caub;
    return Bytes(v.pElems, v.pElems + v.cElems);
  }
  std::wstring out_wstr_of(size_t i) const { return std::wstring(vars_[i].pwszVal); }

  MQMSGPROPS* msg() {
    sync();
    msg_ = MQMSGPROPS{static_cast<DWORD>(ids_.size()), ids_.data(), vars_.data(), status_.data()};
    return &msg_;
  }
  MQQUEUEPROPS* queue() {
    sync();
    q_ = MQQUEUEPROPS{static_cast<DWORD>(ids_.size()), ids_.data(), vars_.data(), status_.data()};
    return &q_;
  }

 private:
  template <typename F>
  size_t add(PROPID id, VARTYPE vt, F&& fill) {
    MQPROPVARIANT v{};
    v.vt = vt;
    fill(v);
    ids_.push_back(id);
    vars_.push_back(v);
    return ids_.size() - 1;
  }
  void sync() { status_.assign(ids_.size(), static_cast<HRESULT>(0x7777)); }

  std::vector<PROPID> ids_;
  std::vector<MQPROPVARIANT> vars_;
  std::vector<HRESULT> status_;
  std::deque<Bytes> buffers_;  // deque: growing it never moves existing buffers
  std::deque<std::wstring> strings_;
  MQMSGPROPS msg_{};
  MQQUEUEPROPS q_{};
};

// ---------------------------------------------------------------------------------------------
// Queue and message helpers

struct QueueSpec {
  std::string name;
  std::optional<std::wstring> label;
  std::optional<UCHAR> authenticate, transactional;
};

HRESULT create_queue_raw(const QueueSpec& s, std::wstring* format = nullptr) {
  Props p;
  p.wstr(PROPID_Q_PATHNAME, widen(".\\private$\\" + s.name));
  if (s.label) p.wstr(PROPID_Q_LABEL, *s.label);
  if (s.authenticate) p.ui1(PROPID_Q_AUTHENTICATE, *s.authenticate);
  if (s.transactional) p.ui1(PROPID_Q_TRANSACTION, *s.transactional);
  WCHAR buf[256] = {};
  DWORD len = 256;
  HRESULT hr = MQCreateQueue(nullptr, p.queue(), buf, &len);
  if (format) *format = buf;
  return hr;
}

std::wstring create_queue(const std::string& name, bool authenticate = false) {
  QueueSpec s{name, std::nullopt, std::nullopt, std::nullopt};
  if (authenticate) s.authenticate = MQ_AUTHENTICATE;
  std::wstring format;
  check_hr(create_queue_raw(s, &format), "MQCreateQueue(" + name + ")");
  return format;
}

// A queue handle closed at scope exit.
class Queue {
 public:
  Queue() = default;
  Queue(const std::wstring& format, DWORD access, DWORD share = MQ_DENY_NONE) {
    check_hr(MQOpenQueue(format.c_str(), access, share, &h_),
             "MQOpenQueue(" + narrow(format) + ")");
  }
  Queue(Queue&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
  Queue& operator=(Queue&& o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  ~Queue() {
    if (h_) MQCloseQueue(h_);
  }
  QUEUEHANDLE get() const { return h_; }

 private:
  QUEUEHANDLE h_ = nullptr;
};

// A security context freed at scope exit.
class Context {
 public:
  explicit Context(const Bytes& cert = {}) {
    void* buf = cert.empty() ? nullptr : const_cast<uint8_t*>(cert.data());
    check_hr(MQGetSecurityContextEx(buf, static_cast<DWORD>(cert.size()), &h_),
             "MQGetSecurityContextEx");
  }
  ~Context() { MQFreeSecurityContext(h_); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  HANDLE get() const { return h_; }
  ULONG value() const { return static_cast<ULONG>(reinterpret_cast<uintptr_t>(h_)); }

 private:
  HANDLE h_ = nullptr;
};

struct SendSpec {
  Bytes body = bytes_of("hello");
  std::optional<std::wstring> label;
  std::optional<UCHAR> priority, delivery, acknowledge, journal;
  std::optional<ULONG> auth_level, context, hash_alg, senderid_type, app_specific, body_type;
  std::optional<Bytes> sender_cert, correlation_id;
  std::optional<std::wstring> admin_queue, response_queue;
  Bytes* msgid_out = nullptr;
};

HRESULT send(QUEUEHANDLE q, const SendSpec& s) {
  Props p;
  p.bytes(PROPID_M_BODY, s.body);
  if (s.label) p.wstr(PROPID_M_LABEL, *s.label);
  if (s.priority) p.ui1(PROPID_M_PRIORITY, *s.priority);
  if (s.delivery) p.ui1(PROPID_M_DELIVERY, *s.delivery);
  if (s.acknowledge) p.ui1(PROPID_M_ACKNOWLEDGE, *s.acknowledge);
  if (s.journal) p.ui1(PROPID_M_JOURNAL, *s.journal);
  if (s.auth_level) p.ui4(PROPID_M_AUTH_LEVEL, *s.auth_level);
  if (s.context) p.ui4(PROPID_M_SECURITY_CONTEXT, *s.context);
  if (s.hash_alg) p.ui4(PROPID_M_HASH_ALG, *s.hash_alg);
  if (s.senderid_type) p.ui4(PROPID_M_SENDERID_TYPE, *s.senderid_type);
  if (s.app_specific) p.ui4(PROPID_M_APPSPECIFIC, *s.app_specific);
  if (s.body_type) p.ui4(PROPID_M_BODY_TYPE, *s.body_type);
  if (s.sender_cert) p.bytes(PROPID_M_SENDER_CERT, *s.sender_cert);
  if (s.correlation_id) p.bytes(PROPID_M_CORRELATIONID, *s.correlation_id);
  if (s.admin_queue) p.wstr(PROPID_M_ADMIN_QUEUE, *s.admin_queue);
  if (s.response_queue) p.wstr(PROPID_M_RESP_QUEUE, *s.response_queue);
  std::optional<size_t> msgid;
  if (s.msgid_out) msgid = p.out_bytes(PROPID_M_MSGID, PROPID_M_MSGID_SIZE);
  HRESULT hr = MQSendMessage(q, p.msg(), nullptr);
  if (msgid && SUCCEEDED(hr)) *s.msgid_out = p.out_bytes_of(*msgid);
  return hr;
}

// A signed send with a security context (AUTH_LEVEL ALWAYS).
SendSpec signed_with(const Context& ctx, const std::string& body = "hello") {
  SendSpec s;
  s.body = bytes_of(body);
  s.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
  s.context = ctx.value();
  return s;
}

// Everything a receiver can learn, with buffers large enough for any test message.
struct Message {
  Bytes body, msgid, correlation_id, sender_id, sender_cert, signature;
  std::wstring label, admin_queue, response_queue, dest_queue;
  USHORT msg_class = 0xFFFF;
  UCHAR priority = 0xFF, delivery = 0xFF, acknowledge = 0xFF, journal = 0xFF;
  UCHAR authenticated = 0xFF, authenticated_ex = 0xFF, confirmed = 0xFF;
  ULONG app_specific = 0, body_type = 0, body_size = 0, sender_id_len = 0, sender_id_type = 0xFF;
  ULONG sender_cert_len = 0, auth_level = 0, hash_alg = 0, sent_time = 0, arrived_time = 0;
};

HRESULT receive(QUEUEHANDLE q, DWORD timeout, Message* m = nullptr,
                DWORD action = MQ_ACTION_RECEIVE, HANDLE cursor = nullptr) {
  Props p;
  size_t body = p.out_bytes(PROPID_M_BODY, 64 * 1024);
  size_t body_size = p.null(PROPID_M_BODY_SIZE);
  size_t label = p.out_wstr(PROPID_M_LABEL, 256);
  size_t label_len = p.ui4(PROPID_M_LABEL_LEN, 256);
  size_t msgid = p.out_bytes(PROPID_M_MSGID, 20);
  size_t corr = p.out_bytes(PROPID_M_CORRELATIONID, 20);
  size_t cls = p.null(PROPID_M_CLASS);
  size_t prio = p.null(PROPID_M_PRIORITY);
  size_t delivery = p.null(PROPID_M_DELIVERY);
  size_t ack = p.null(PROPID_M_ACKNOWLEDGE);
  size_t journal = p.null(PROPID_M_JOURNAL);
  size_t app = p.null(PROPID_M_APPSPECIFIC);
  size_t body_type = p.null(PROPID_M_BODY_TYPE);
  size_t admin = p.out_wstr(PROPID_M_ADMIN_QUEUE, 256);
  size_t admin_len = p.ui4(PROPID_M_ADMIN_QUEUE_LEN, 256);
  size_t resp = p.out_wstr(PROPID_M_RESP_QUEUE, 256);
  size_t resp_len = p.ui4(PROPID_M_RESP_QUEUE_LEN, 256);
  size_t dest = p.out_wstr(PROPID_M_DEST_QUEUE, 256);
  size_t dest_len = p.ui4(PROPID_M_DEST_QUEUE_LEN, 256);
  size_t sid = p.out_bytes(PROPID_M_SENDERID, 256);
  size_t sid_len = p.null(PROPID_M_SENDERID_LEN);
  size_t sid_type = p.null(PROPID_M_SENDERID_TYPE);
  size_t cert = p.out_bytes(PROPID_M_SENDER_CERT, 16 * 1024);
  size_t cert_len = p.null(PROPID_M_SENDER_CERT_LEN);
  size_t sig = p.out_bytes(PROPID_M_SIGNATURE, 1024);
  size_t auth = p.null(PROPID_M_AUTHENTICATED);
  size_t auth_ex = p.null(PROPID_M_AUTHENTICATED_EX);
  size_t confirmed = p.null(PROPID_M_MQSEC_SENDER_CONFIRMED);
  size_t level = p.null(PROPID_M_AUTH_LEVEL);
  size_t hash = p.null(PROPID_M_HASH_ALG);
  size_t sent = p.null(PROPID_M_SENTTIME);
  size_t arrived = p.null(PROPID_M_ARRIVEDTIME);
  (void)label_len, (void)admin_len, (void)resp_len, (void)dest_len;
  HRESULT hr = MQReceiveMessage(q, timeout, action, p.msg(), nullptr, nullptr, cursor, nullptr);
  if (m == nullptr || FAILED(hr)) return hr;
  m->body = p.out_bytes_of(body);
  m->body_size = p.var(body_size).ulVal;
  m->label = p.out_wstr_of(label);
  m->msgid = p.out_bytes_of(msgid);
  m->correlation_id = p.out_bytes_of(corr);
  m->msg_class = p.var(cls).uiVal;
  m->priority = p.var(prio).bVal;
  m->delivery = p.var(delivery).bVal;
  m->acknowledge = p.var(ack).bVal;
  m->journal = p.var(journal).bVal;
  m->app_specific = p.var(app).ulVal;
  m->body_type = p.var(body_type).ulVal;
  m->admin_queue = p.out_wstr_of(admin);
  m->response_queue = p.out_wstr_of(resp);
  m->dest_queue = p.out_wstr_of(dest);
  m->sender_id = p.out_bytes_of(sid);
  m->sender_id_len = p.var(sid_len).ulVal;
  m->sender_id_type = p.var(sid_type).ulVal;
  m->sender_cert = p.out_bytes_of(cert);
  m->sender_cert_len = p.var(cert_len).ulVal;
  m->signature = p.out_bytes_of(sig);
  m->authenticated = p.var(auth).bVal;
  m->authenticated_ex = p.var(auth_ex).bVal;
  m->confirmed = p.var(confirmed).bVal;
  m->auth_level = p.var(level).ulVal;
  m->hash_alg = p.var(hash).ulVal;
  m->sent_time = p.var(sent).ulVal;
  m->arrived_time = p.var(arrived).ulVal;
  return hr;
}

Message receive_ok(QUEUEHANDLE q, DWORD timeout = kWait) {
  Message m;
  check_hr(receive(q, timeout, &m), "MQReceiveMessage");
  return m;
}

// True when the queue has no message (peeks with timeout 0).
bool queue_empty(const std::wstring& format) {
  Queue q(format, MQ_PEEK_ACCESS);
  HRESULT hr = receive(q.get(), 0, nullptr, MQ_ACTION_PEEK_CURRENT);
  if (hr != MQ_ERROR_IO_TIMEOUT && FAILED(hr)) fail("peek failed with " + hex(hr));
  return hr == MQ_ERROR_IO_TIMEOUT;
}

// A test-specific queue name (MQ_MAX_Q_NAME_LEN allows 124 characters).
std::string queue_name(const std::string& suffix = "") {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string n = lower(std::string(info->test_suite_name()) + "-" + info->name());
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') c = '_';
  n = n.substr(0, 100);
  return suffix.empty() ? n : n + "-" + suffix;
}

// ---------------------------------------------------------------------------------------------
// Direct access to the store database (tampering, audit records) with SQLite's C API.

class Db {
 public:
  Db() {
    if (sqlite3_open_v2(env().db_path().c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
      fail("cannot open " + env().db_path().string());
    sqlite3_busy_timeout(db_, 10000);
  }
  ~Db() { sqlite3_close(db_); }

  struct Row {
    int64_t seq;
    Bytes envelope;
  };
  std::vector<Row> messages(const std::string& queue) {
    Stmt st(db_,
            "SELECT m.seq, m.envelope FROM messages m JOIN queues q ON q.id = m.queue_id "
            "WHERE q.name = ?1 ORDER BY m.seq");
    sqlite3_bind_text(st.s, 1, queue.c_str(), -1, SQLITE_TRANSIENT);
    std::vector<Row> out;
    while (sqlite3_step(st.s) == SQLITE_ROW)
      out.push_back({sqlite3_column_int64(st.s, 0), blob(st.s, 1)});
    return out;
  }
  void set_envelope(int64_t seq, const Bytes& e) {
    Stmt st(db_, "UPDATE messages SET envelope = ?1 WHERE seq = ?2");
    sqlite3_bind_blob(st.s, 1, e.data(), static_cast<int>(e.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st.s, 2, seq);
    if (sqlite3_step(st.s) != SQLITE_DONE || sqlite3_changes(db_) != 1) fail("UPDATE failed");
  }
  struct Rejection {
    std::string reason;
    Bytes envelope;
  };
  std::vector<Rejection> rejections(const std::string& queue) {
    Stmt st(db_, "SELECT reason, envelope FROM rejections WHERE queue = ?1 ORDER BY id");
    sqlite3_bind_text(st.s, 1, queue.c_str(), -1, SQLITE_TRANSIENT);
    std::vector<Rejection> out;
    while (sqlite3_step(st.s) == SQLITE_ROW) {
      out.push_back({reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0)), blob(st.s, 1)});
    }
    return out;
  }
  struct QueueRow {
    std::string label;
    int authenticate, transactional;
  };
  std::optional<QueueRow> queue(const std::string& name) {
    Stmt st(db_, "SELECT label, authenticate, transactional FROM queues WHERE name = ?1");
    sqlite3_bind_text(st.s, 1, name.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st.s) != SQLITE_ROW) return std::nullopt;
    return QueueRow{reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0)),
                    sqlite3_column_int(st.s, 1), sqlite3_column_int(st.s, 2)};
  }

 private:
  struct Stmt {
    Stmt(sqlite3* db, const char* sql) {
      if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
        fail(std::string("prepare failed: ") + sqlite3_errmsg(db));
    }
    ~Stmt() { sqlite3_finalize(s); }
    sqlite3_stmt* s = nullptr;
  };
  static Bytes blob(sqlite3_stmt* s, int col) {
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s, col));
    return Bytes(p, p + sqlite3_column_bytes(s, col));
  }
  sqlite3* db_ = nullptr;
};

// Where each field's value sits in an envelope (docs/signature-format.md, section 2),
// parsed here independently of mqsec's codec.
struct FieldPos {
  size_t offset;
  uint32_t length;
};
std::map<int, FieldPos> envelope_fields(const Bytes& b) {
  if (b.size() < 6 || std::memcmp(b.data(), "MQEV\x00\x01", 6) != 0) fail("not an envelope v1");
  std::map<int, FieldPos> out;
  size_t pos = 6;
  for (int tag = 1; tag <= 23; ++tag) {
    if (pos + 5 > b.size() || b[pos] != tag) fail("envelope field " + std::to_string(tag));
    uint32_t len = (uint32_t{b[pos + 1]} << 24) | (uint32_t{b[pos + 2]} << 16) |
                   (uint32_t{b[pos + 3]} << 8) | b[pos + 4];
    out[tag] = {pos + 5, len};
    pos += 5 + len;
  }
  if (pos != b.size()) fail("trailing bytes in envelope");
  return out;
}

// ---------------------------------------------------------------------------------------------
// Child processes: this executable re-executed with MQSEC_MSG_CHILD=<role>.

pid_t spawn(const std::map<std::string, std::string>& vars) {
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  for (const auto& [k, v] : vars) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envs) envp.push_back(s.data());
  envp.push_back(nullptr);
  char self[] = "/proc/self/exe";
  char* argv[] = {self, nullptr};
  pid_t pid = ::fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    ::execve(self, argv, envp.data());
    ::_exit(127);
  }
  return pid;
}

int wait_status(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

std::string getenv_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Sends one RECOVERABLE signed message and is killed by SIGKILL right after MQSendMessage.
int child_kill_sender() {
  Queue q(widen(getenv_str("MQSEC_MSG_QUEUE")), MQ_SEND_ACCESS);
  Context ctx;
  SendSpec s = signed_with(ctx, "survives SIGKILL");
  s.delivery = MQMSG_DELIVERY_RECOVERABLE;
  if (send(q.get(), s) != MQ_OK) return 3;
  ::raise(SIGKILL);
  return 4;
}

// Sends MQSEC_MSG_COUNT signed messages "msg-<i>-<padding>" with one context. The padding
// (0..12 bytes) varies the body length from one message to the next.
int child_sender() {
  Queue q(widen(getenv_str("MQSEC_MSG_QUEUE")), MQ_SEND_ACCESS);
  Context ctx;
  int n = std::stoi(getenv_str("MQSEC_MSG_COUNT"));
  for (int i = 0; i < n; ++i) {
    SendSpec s = signed_with(ctx, "msg-" + std::to_string(i) + "-" + std::string(i % 13, 'x'));
    s.delivery = MQMSG_DELIVERY_RECOVERABLE;
    HRESULT hr = send(q.get(), s);
    if (hr != MQ_OK) {
      std::fprintf(stderr, "sender: message %d: %s\n", i, hex(hr).c_str());
      return 3;
    }
  }
  return 0;
}

// Receives until MQSEC_MSG_COUNT messages arrived (or, with MQSEC_MSG_DONE, until that file
// exists and the queue stays empty), checks each and writes the message numbers, one per line.
int child_receiver() {
  Queue q(widen(getenv_str("MQSEC_MSG_QUEUE")), MQ_RECEIVE_ACCESS);
  std::string count = getenv_str("MQSEC_MSG_COUNT"), done = getenv_str("MQSEC_MSG_DONE");
  int want = count.empty() ? -1 : std::stoi(count);
  std::ofstream out(getenv_str("MQSEC_MSG_OUT"));
  const Bytes sid = unix_sid(::geteuid());
  int got = 0, bad = 0;
  while (want < 0 || got < want) {
    Message m;
    HRESULT hr = receive(q.get(), want < 0 ? 500 : 60000, &m);
    if (hr == MQ_ERROR_IO_TIMEOUT) {
      if (want < 0 && fs::exists(done)) {
        if (receive(q.get(), 0, nullptr, MQ_ACTION_PEEK_CURRENT) == MQ_ERROR_IO_TIMEOUT) break;
        continue;
      }
      if (want < 0) continue;
      std::fprintf(stderr, "receiver: timed out after %d messages\n", got);
      return 3;
    }
    if (hr != MQ_OK) {
      std::fprintf(stderr, "receiver: %s\n", hex(hr).c_str());
      return 3;
    }
    std::string body = string_of(m.body);
    if (m.authenticated != 1 || m.authenticated_ex != MQMSG_AUTHENTICATED_SIG20 ||
        m.sender_id != sid || body.rfind("msg-", 0) != 0) {
      std::fprintf(stderr, "receiver: bad message '%s' auth=%d\n", body.c_str(), m.authenticated);
      ++bad;
    }
    out << body.substr(4) << "\n";
    ++got;
  }
  out.flush();
  return bad == 0 && out ? 0 : 5;
}

[[maybe_unused]] const int child_dispatch = [] {
  std::string role = getenv_str("MQSEC_MSG_CHILD");
  if (role.empty()) return 0;
  int rc = 2;
  try {
    if (role == "kill-sender") rc = child_kill_sender();
    if (role == "sender") rc = child_sender();
    if (role == "receiver") rc = child_receiver();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child %s: %s\n", role.c_str(), e.what());
    rc = 6;
  }
  std::fflush(nullptr);
  ::_exit(rc);
}();

[[maybe_unused]] ::testing::Environment* const token_environment =
    ::testing::AddGlobalTestEnvironment(new TokenEnvironment());

// =============================================================================================
// Queues: create, delete, open, close, path names

TEST(Queues, CreateQueueStoresPathLabelAuthenticateAndTransactional) {
  std::string name = queue_name();
  QueueSpec s{name, L"the label", MQ_AUTHENTICATE, MQ_TRANSACTIONAL};
  std::wstring format;
  ASSERT_EQ(create_queue_raw(s, &format), MQ_OK);
  EXPECT_EQ(format, format_of(name));
  auto row = Db().queue(name);
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->label, "the label");
  EXPECT_EQ(row->authenticate, 1);
  EXPECT_EQ(row->transactional, 1);

  std::string plain = queue_name("plain");
  ASSERT_EQ(create_queue_raw({plain, std::nullopt, std::nullopt, std::nullopt}), MQ_OK);
  auto prow = Db().queue(plain);
  ASSERT_TRUE(prow.has_value());
  EXPECT_EQ(prow->label, "");
  EXPECT_EQ(prow->authenticate, 0);
  EXPECT_EQ(prow->transactional, 0);
  // The queue is usable through the returned format name.
  QUEUEHANDLE h = nullptr;
  EXPECT_EQ(MQOpenQueue(format.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &h), MQ_OK);
  EXPECT_EQ(MQCloseQueue(h), MQ_OK);
}

TEST(Queues, CreateExistingQueueFails) {
  std::string name = queue_name();
  create_queue(name);
  EXPECT_EQ(create_queue_raw({name, std::nullopt, std::nullopt, std::nullopt}),
            MQ_ERROR_QUEUE_EXISTS);
  // Queue names are case-insensitive.
  std::string upper = name;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(create_queue_raw({upper, std::nullopt, std::nullopt, std::nullopt}),
            MQ_ERROR_QUEUE_EXISTS);
}

TEST(Queues, CreateWithIllegalPathNameFails) {
  for (const wchar_t* path : {L"no-backslash", L".\\public\\q", L".\\private$\\", L"\\private$\\q",
                              L".\\private$\\a/b", L".\\private$\\a\\b"}) {
    Props p;
    p.wstr(PROPID_Q_PATHNAME, path);
    WCHAR buf[256];
    DWORD len = 256;
    EXPECT_EQ(MQCreateQueue(nullptr, p.queue(), buf, &len), MQ_ERROR_ILLEGAL_QUEUE_PATHNAME)
        << narrow(path);
  }
  std::string too_long(125, 'q');
  Props p;
  p.wstr(PROPID_Q_PATHNAME, widen(".\\private$\\" + too_long));
  WCHAR buf[256];
  DWORD len = 256;
  EXPECT_EQ(MQCreateQueue(nullptr, p.queue(), buf, &len), MQ_ERROR_ILLEGAL_QUEUE_PATHNAME);
}

TEST(Queues, FormatNameBufferTooSmallReportsNeededLength) {
  std::string name = queue_name();
  std::wstring expected = format_of(name);
  Props p;
  p.wstr(PROPID_Q_PATHNAME, widen(".\\private$\\" + name));
  WCHAR buf[8];
  std::wmemset(buf, L'#', 8);
  DWORD len = 8;
  EXPECT_EQ(MQCreateQueue(nullptr, p.queue(), buf, &len),
            MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL);
  EXPECT_EQ(len, expected.size() + 1);
  // MSMQ creates the queue all the same.
  EXPECT_EQ(create_queue_raw({name, std::nullopt, std::nullopt, std::nullopt}),
            MQ_ERROR_QUEUE_EXISTS);
  // Exactly the needed length is enough.
  std::string other = queue_name("exact");
  Props p2;
  p2.wstr(PROPID_Q_PATHNAME, widen(".\\private$\\" + other));
  std::vector<WCHAR> exact(format_of(other).size() + 1);
  DWORD n = static_cast<DWORD>(exact.size());
  EXPECT_EQ(MQCreateQueue(nullptr, p2.queue(), exact.data(), &n), MQ_OK);
  EXPECT_EQ(std::wstring(exact.data()), format_of(other));
}

TEST(Queues, DeleteQueueRemovesQueueAndMessages) {
  std::string name = queue_name();
  std::wstring format = create_queue(name);
  {
    Queue q(format, MQ_SEND_ACCESS);
    ASSERT_EQ(send(q.get(), SendSpec{}), MQ_OK);
  }
  EXPECT_EQ(MQDeleteQueue(format.c_str()), MQ_OK);
  QUEUEHANDLE h = nullptr;
  EXPECT_EQ(MQOpenQueue(format.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h),
            MQ_ERROR_QUEUE_NOT_FOUND);
  EXPECT_EQ(MQDeleteQueue(format.c_str()), MQ_ERROR_QUEUE_NOT_FOUND);
  EXPECT_TRUE(Db().messages(name).empty());
  // A new queue of the same name starts empty.
  create_queue(name);
  EXPECT_TRUE(queue_empty(format));
}

TEST(Queues, OpenUnknownQueueFails) {
  QUEUEHANDLE h = reinterpret_cast<QUEUEHANDLE>(0x1234);
  EXPECT_EQ(MQOpenQueue(local_format(queue_name()).c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h),
            MQ_ERROR_QUEUE_NOT_FOUND);
}

TEST(Queues, OpenWithIllegalFormatNameFails) {
  create_queue(queue_name());
  for (const wchar_t* f :
       {L"", L"PUBLIC=01234567-89ab-cdef-0123-45678", L"DIRECT=OS:", L"DIRECT=OS:noslash",
        L"DIRECT=OS:.\\public\\q", L".\\private$\\q", L"DIRECT=OS:.\\private$\\"}) {
    QUEUEHANDLE h = nullptr;
    EXPECT_EQ(MQOpenQueue(f, MQ_SEND_ACCESS, MQ_DENY_NONE, &h), MQ_ERROR_ILLEGAL_FORMATNAME)
        << narrow(f);
  }
}

TEST(Queues, DenyReceiveShareBlocksOtherReceivers) {
  std::wstring format = create_queue(queue_name());
  {
    Queue exclusive(format, MQ_RECEIVE_ACCESS, MQ_DENY_RECEIVE_SHARE);
    QUEUEHANDLE h = nullptr;
    EXPECT_EQ(MQOpenQueue(format.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h),
              MQ_ERROR_SHARING_VIOLATION);
    EXPECT_EQ(MQOpenQueue(format.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_RECEIVE_SHARE, &h),
              MQ_ERROR_SHARING_VIOLATION);
    // Senders are not receivers: they may still open the queue.
    Queue sender(format, MQ_SEND_ACCESS);
  }
  // Closed: others may receive again; and a shared receiver blocks an exclusive open.
  Queue shared(format, MQ_RECEIVE_ACCESS, MQ_DENY_NONE);
  QUEUEHANDLE h = nullptr;
  EXPECT_EQ(MQOpenQueue(format.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_RECEIVE_SHARE, &h),
            MQ_ERROR_SHARING_VIOLATION);
}

TEST(Queues, CloseQueueRejectsInvalidHandles) {
  std::wstring format = create_queue(queue_name());
  EXPECT_EQ(MQCloseQueue(nullptr), MQ_ERROR_INVALID_HANDLE);
  EXPECT_EQ(MQCloseQueue(reinterpret_cast<QUEUEHANDLE>(0xdeadbeefULL)), MQ_ERROR_INVALID_HANDLE);
  QUEUEHANDLE h = nullptr;
  ASSERT_EQ(MQOpenQueue(format.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &h), MQ_OK);
  EXPECT_EQ(MQCloseQueue(h), MQ_OK);
  EXPECT_EQ(MQCloseQueue(h), MQ_ERROR_INVALID_HANDLE);
  EXPECT_EQ(send(h, SendSpec{}), MQ_ERROR_INVALID_HANDLE);
}

TEST(Queues, PathNameToFormatNameWithDotAndHostName) {
  std::string name = queue_name();
  create_queue(name);
  const std::wstring expected = format_of(name);
  for (const std::string& host : {std::string("."), host_name()}) {
    std::wstring path = widen(host + "\\private$\\" + name);
    WCHAR buf[256] = {};
    DWORD len = 256;
    EXPECT_EQ(MQPathNameToFormatName(path.c_str(), buf, &len), MQ_OK) << host;
    EXPECT_EQ(std::wstring(buf), expected) << host;
    EXPECT_EQ(len, expected.size() + 1) << host;
    // The result opens the queue.
    QUEUEHANDLE h = nullptr;
    EXPECT_EQ(MQOpenQueue(buf, MQ_SEND_ACCESS, MQ_DENY_NONE, &h), MQ_OK);
    MQCloseQueue(h);
  }
  std::wstring path = widen(".\\private$\\" + name);
  WCHAR small[4];
  DWORD len = 4;
  EXPECT_EQ(MQPathNameToFormatName(path.c_str(), small, &len),
            MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
  EXPECT_EQ(len, expected.size() + 1);
  WCHAR buf[256];
  len = 256;
  EXPECT_EQ(MQPathNameToFormatName(widen(".\\private$\\" + queue_name("none")).c_str(), buf, &len),
            MQ_ERROR_QUEUE_NOT_FOUND);
}

// =============================================================================================
// Receiving

TEST(Receive, PriorityOrderThenArrivalOrder) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  const std::vector<std::pair<int, std::string>> sent = {{1, "a"}, {5, "b"}, {3, "c"}, {5, "d"},
                                                         {0, "e"}, {7, "f"}, {3, "g"}, {5, "h"}};
  for (const auto& [prio, body] : sent) {
    SendSpec spec;
    spec.body = bytes_of(body);
    spec.priority = static_cast<UCHAR>(prio);
    ASSERT_EQ(send(s.get(), spec), MQ_OK);
  }
  Queue r(format, MQ_RECEIVE_ACCESS);
  std::string order;
  std::string prios;
  for (size_t i = 0; i < sent.size(); ++i) {
    Message m = receive_ok(r.get());
    order += string_of(m.body);
    prios += std::to_string(m.priority);
  }
  EXPECT_EQ(order, "fbdhcgae");
  EXPECT_EQ(prios, "75553310");
  EXPECT_EQ(receive(r.get(), 0), MQ_ERROR_IO_TIMEOUT);
}

TEST(Receive, EmptyQueueTimesOut) {
  std::wstring format = create_queue(queue_name());
  Queue r(format, MQ_RECEIVE_ACCESS);
  EXPECT_EQ(receive(r.get(), 0), MQ_ERROR_IO_TIMEOUT);
  EXPECT_EQ(receive(r.get(), 200), MQ_ERROR_IO_TIMEOUT);
  EXPECT_EQ(receive(r.get(), 0, nullptr, MQ_ACTION_PEEK_CURRENT), MQ_ERROR_IO_TIMEOUT);
}

TEST(Receive, CursorPeekCurrentPeekNextAndReceive) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  for (const char* b : {"one", "two", "three"}) {
    SendSpec spec;
    spec.body = bytes_of(b);
    ASSERT_EQ(send(s.get(), spec), MQ_OK);
  }
  Queue r(format, MQ_RECEIVE_ACCESS);
  HANDLE c = nullptr;
  ASSERT_EQ(MQCreateCursor(r.get(), &c), MQ_OK);
  Message m;
  ASSERT_EQ(receive(r.get(), 0, &m, MQ_ACTION_PEEK_CURRENT, c), MQ_OK);
  EXPECT_EQ(string_of(m.body), "one");
  ASSERT_EQ(receive(r.get(), 0, &m, MQ_ACTION_PEEK_CURRENT, c), MQ_OK);
  EXPECT_EQ(string_of(m.body), "one") << "PEEK_CURRENT must not move the cursor";
  ASSERT_EQ(receive(r.get(), 0, &m, MQ_ACTION_PEEK_NEXT, c), MQ_OK);
  EXPECT_EQ(string_of(m.body), "two");
  ASSERT_EQ(receive(r.get(), 0, &m, MQ_ACTION_PEEK_CURRENT, c), MQ_OK);
  EXPECT_EQ(string_of(m.body), "two");
  // RECEIVE with the cursor takes the message under it.
  ASSERT_EQ(receive(r.get(), 0, &m, MQ_ACTION_RECEIVE, c), MQ_OK);
  EXPECT_EQ(string_of(m.body), "two");
  // The cursor then stands on the following message.
  ASSERT_EQ(receive(r.get(), 0, &m, MQ_ACTION_PEEK_CURRENT, c), MQ_OK);
  EXPECT_EQ(string_of(m.body), "three");
  EXPECT_EQ(receive(r.get(), 0, &m, MQ_ACTION_PEEK_NEXT, c), MQ_ERROR_IO_TIMEOUT);
  EXPECT_EQ(MQCloseCursor(c), MQ_OK);
  EXPECT_EQ(MQCloseCursor(c), MQ_ERROR_INVALID_HANDLE);
  // Peeks left "one" and "three" in place; "two" is gone.
  EXPECT_EQ(string_of(receive_ok(r.get(), 0).body), "one");
  EXPECT_EQ(string_of(receive_ok(r.get(), 0).body), "three");
  EXPECT_EQ(receive(r.get(), 0), MQ_ERROR_IO_TIMEOUT);
  // PEEK_NEXT needs a cursor.
  EXPECT_EQ(receive(r.get(), 0, nullptr, MQ_ACTION_PEEK_NEXT), MQ_ERROR_ILLEGAL_CURSOR_ACTION);
}

TEST(Receive, VtNullOutputsAreFilledWithTypeAndValue) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  SendSpec spec;
  spec.body = bytes_of("abcdef");
  spec.priority = 6;
  spec.app_specific = 0xA5A5A5A5u;
  spec.label = L"vt-null";
  ASSERT_EQ(send(s.get(), spec), MQ_OK);

  Queue r(format, MQ_RECEIVE_ACCESS);
  Props p;
  size_t size = p.null(PROPID_M_BODY_SIZE);
  size_t prio = p.null(PROPID_M_PRIORITY);
  size_t app = p.null(PROPID_M_APPSPECIFIC);
  size_t cls = p.null(PROPID_M_CLASS);
  size_t label_len = p.null(PROPID_M_LABEL_LEN);
  size_t auth = p.null(PROPID_M_AUTHENTICATED);
  size_t sent = p.null(PROPID_M_SENTTIME);
  size_t delivery = p.null(PROPID_M_DELIVERY);
  ASSERT_EQ(MQReceiveMessage(r.get(), kWait, MQ_ACTION_RECEIVE, p.msg(), nullptr, nullptr, nullptr,
                             nullptr),
            MQ_OK);
  EXPECT_EQ(p.var(size).vt, VT_UI4);
  EXPECT_EQ(p.var(size).ulVal, 6u);
  EXPECT_EQ(p.var(prio).vt, VT_UI1);
  EXPECT_EQ(p.var(prio).bVal, 6);
  EXPECT_EQ(p.var(app).vt, VT_UI4);
  EXPECT_EQ(p.var(app).ulVal, 0xA5A5A5A5u);
  EXPECT_EQ(p.var(cls).vt, VT_UI2);
  EXPECT_EQ(p.var(cls).uiVal, MQMSG_CLASS_NORMAL);
  EXPECT_EQ(p.var(label_len).vt, VT_UI4);
  EXPECT_EQ(p.var(label_len).ulVal, 8u);  // "vt-null" + NUL
  EXPECT_EQ(p.var(auth).vt, VT_UI1);
  EXPECT_EQ(p.var(auth).bVal, 0);
  EXPECT_EQ(p.var(sent).vt, VT_UI4);
  EXPECT_GT(p.var(sent).ulVal, 1600000000u);
  EXPECT_EQ(p.var(delivery).vt, VT_UI1);
  EXPECT_EQ(p.var(delivery).bVal, MQMSG_DELIVERY_EXPRESS);
}

void dummy_callback(HRESULT, QUEUEHANDLE, DWORD, DWORD, MQMSGPROPS*, LPOVERLAPPED, HANDLE) {}

TEST(Receive, AsynchronousReceiveRefusesABadEventAndTransactions) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  ASSERT_EQ(send(s.get(), SendSpec{}), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  ov.hEvent = reinterpret_cast<HANDLE>(uintptr_t{0x1234});  // not an event of MQSecCreateEvent
  Props p;
  p.null(PROPID_M_BODY_SIZE);
  EXPECT_EQ(
      MQReceiveMessage(r.get(), 0, MQ_ACTION_RECEIVE, p.msg(), &ov, nullptr, nullptr, nullptr),
      MQ_ERROR_INVALID_PARAMETER);
  EXPECT_EQ(MQReceiveMessage(r.get(), 0, MQ_ACTION_RECEIVE, p.msg(), nullptr, dummy_callback,
                             nullptr, MQ_SINGLE_MESSAGE),
            MQ_ERROR_TRANSACTION_USAGE);
  // Nothing was taken. (Asynchronous receive itself: test_msmq_async.)
  EXPECT_EQ(string_of(receive_ok(r.get(), 0).body), "hello");
}

// =============================================================================================
// Property checking

TEST(Properties, WrongVtOnSendFailsWithStatusAndStoresNothing) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Props p;
  p.bytes(PROPID_M_BODY, bytes_of("x"));
  size_t bad = p.ui4(PROPID_M_PRIORITY, 3);  // PRIORITY is VT_UI1
  MQMSGPROPS* mp = p.msg();
  EXPECT_EQ(MQSendMessage(s.get(), mp, nullptr), MQ_ERROR_ILLEGAL_PROPERTY_VT);
  EXPECT_EQ(mp->aStatus[bad], MQ_ERROR_ILLEGAL_PROPERTY_VT);
  EXPECT_TRUE(queue_empty(format));

  Props p2;
  size_t bad2 = p2.wstr(PROPID_M_BODY, L"text");  // BODY is VT_UI1 | VT_VECTOR
  EXPECT_EQ(MQSendMessage(s.get(), p2.msg(), nullptr), MQ_ERROR_ILLEGAL_PROPERTY_VT);
  EXPECT_EQ(p2.status(bad2), MQ_ERROR_ILLEGAL_PROPERTY_VT);
  EXPECT_TRUE(queue_empty(format));
}

TEST(Properties, WrongVtOnReceiveFailsAndLeavesTheMessage) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  ASSERT_EQ(send(s.get(), SendSpec{}), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Props p;
  p.null(PROPID_M_BODY_SIZE);
  size_t bad = p.ui4(PROPID_M_AUTHENTICATED, 0);  // AUTHENTICATED is VT_UI1
  MQMSGPROPS* mp = p.msg();
  EXPECT_EQ(MQReceiveMessage(r.get(), 0, MQ_ACTION_RECEIVE, mp, nullptr, nullptr, nullptr, nullptr),
            MQ_ERROR_ILLEGAL_PROPERTY_VT);
  EXPECT_EQ(mp->aStatus[bad], MQ_ERROR_ILLEGAL_PROPERTY_VT);
  EXPECT_EQ(string_of(receive_ok(r.get(), 0).body), "hello");
}

TEST(Properties, UnknownPropertyIdFails) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Props p;
  p.bytes(PROPID_M_BODY, bytes_of("x"));
  size_t bad = p.ui4(9999, 1);
  EXPECT_EQ(MQSendMessage(s.get(), p.msg(), nullptr), MQ_ERROR_ILLEGAL_PROPID);
  EXPECT_EQ(p.status(bad), MQ_ERROR_ILLEGAL_PROPID);
  EXPECT_TRUE(queue_empty(format));

  ASSERT_EQ(send(s.get(), SendSpec{}), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Props rp;
  rp.null(PROPID_M_BODY_SIZE);
  size_t rbad = rp.null(0x7FFF0000);
  EXPECT_EQ(
      MQReceiveMessage(r.get(), 0, MQ_ACTION_RECEIVE, rp.msg(), nullptr, nullptr, nullptr, nullptr),
      MQ_ERROR_ILLEGAL_PROPID);
  EXPECT_EQ(rp.status(rbad), MQ_ERROR_ILLEGAL_PROPID);
  EXPECT_FALSE(queue_empty(format));

  // Queue properties too.
  Props qp;
  qp.wstr(PROPID_Q_PATHNAME, widen(".\\private$\\" + queue_name("q")));
  size_t qbad = qp.ui4(PROPID_Q_BASE + 99, 1);
  WCHAR buf[256];
  DWORD len = 256;
  EXPECT_EQ(MQCreateQueue(nullptr, qp.queue(), buf, &len), MQ_ERROR_ILLEGAL_PROPID);
  EXPECT_EQ(qp.status(qbad), MQ_ERROR_ILLEGAL_PROPID);
}

TEST(Properties, LabelOf251CharactersIsTooLong) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  SendSpec too_long;
  too_long.label = std::wstring(251, L'x');
  EXPECT_EQ(send(s.get(), too_long), MQ_ERROR_LABEL_TOO_LONG);
  EXPECT_TRUE(queue_empty(format));
  SendSpec longest;
  longest.label = std::wstring(250, L'y');
  ASSERT_EQ(send(s.get(), longest), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  EXPECT_EQ(receive_ok(r.get()).label, std::wstring(250, L'y'));
}

// Each too-small buffer fails the receive with its own code and the needed size, and leaves
// the message in the queue: a receive with large buffers then gets it whole.
TEST(Properties, TooSmallReceiveBuffersLeaveTheMessage) {
  std::wstring format = create_queue(queue_name());
  {
    Queue s(format, MQ_SEND_ACCESS);
    Context ctx;
    SendSpec spec = signed_with(ctx, std::string(100, 'B'));
    spec.label = L"a label of 26 characters!!";
    ASSERT_EQ(send(s.get(), spec), MQ_OK);
  }
  const Bytes& cert = env().internal_cert();
  Queue r(format, MQ_RECEIVE_ACCESS);
  {
    Props p;
    size_t body = p.out_bytes(PROPID_M_BODY, 10);
    size_t size = p.null(PROPID_M_BODY_SIZE);
    EXPECT_EQ(MQReceiveMessage(r.get(), 0, MQ_ACTION_RECEIVE, p.msg(), nullptr, nullptr, nullptr,
                               nullptr),
              MQ_ERROR_BUFFER_OVERFLOW);
    EXPECT_EQ(p.status(body), MQ_ERROR_BUFFER_OVERFLOW);
    EXPECT_EQ(p.var(size).ulVal, 100u);
  }
  {
    Props p;
    size_t c = p.out_bytes(PROPID_M_SENDER_CERT, 16);
    size_t len = p.null(PROPID_M_SENDER_CERT_LEN);
    EXPECT_EQ(MQReceiveMessage(r.get(), 0, MQ_ACTION_RECEIVE, p.msg(), nullptr, nullptr, nullptr,
                               nullptr),
              MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL);
    EXPECT_EQ(p.status(c), MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL);
    EXPECT_EQ(p.var(len).ulVal, cert.size());
  }
  {
    Props p;
    size_t sid = p.out_bytes(PROPID_M_SENDERID, 4);
    size_t len = p.null(PROPID_M_SENDERID_LEN);
    EXPECT_EQ(MQReceiveMessage(r.get(), 0, MQ_ACTION_RECEIVE, p.msg(), nullptr, nullptr, nullptr,
                               nullptr),
              MQ_ERROR_SENDERID_BUFFER_TOO_SMALL);
    EXPECT_EQ(p.status(sid), MQ_ERROR_SENDERID_BUFFER_TOO_SMALL);
    EXPECT_EQ(p.var(len).ulVal, 16u);
  }
  {
    Props p;
    size_t label = p.out_wstr(PROPID_M_LABEL, 5);
    size_t len = p.ui4(PROPID_M_LABEL_LEN, 5);
    EXPECT_EQ(MQReceiveMessage(r.get(), 0, MQ_ACTION_RECEIVE, p.msg(), nullptr, nullptr, nullptr,
                               nullptr),
              MQ_ERROR_LABEL_BUFFER_TOO_SMALL);
    EXPECT_EQ(p.status(label), MQ_ERROR_LABEL_BUFFER_TOO_SMALL);
    EXPECT_EQ(p.var(len).ulVal, 27u);
  }
  Message m = receive_ok(r.get(), 0);
  EXPECT_EQ(m.body, bytes_of(std::string(100, 'B')));
  EXPECT_EQ(m.label, L"a label of 26 characters!!");
  EXPECT_EQ(m.sender_cert, cert);
  EXPECT_EQ(m.sender_id, unix_sid(::geteuid()));
  EXPECT_EQ(m.authenticated, 1);
  EXPECT_EQ(receive(r.get(), 0), MQ_ERROR_IO_TIMEOUT);
}

// =============================================================================================
// Signing

TEST(Signing, ContextSignsWithTheEnrolledCertificateAndUnixSid) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Context ctx;
  ASSERT_EQ(send(s.get(), signed_with(ctx, "signed body")), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m = receive_ok(r.get());
  EXPECT_EQ(string_of(m.body), "signed body");
  EXPECT_EQ(m.authenticated, MQMSG_AUTHENTICATION_REQUESTED);
  EXPECT_EQ(m.authenticated_ex, MQMSG_AUTHENTICATED_SIG20);
  EXPECT_EQ(m.sender_id, unix_sid(::geteuid()));
  EXPECT_EQ(m.sender_id_len, 16u);
  EXPECT_EQ(m.sender_id_type, static_cast<ULONG>(MQMSG_SENDERID_TYPE_SID));
  EXPECT_EQ(m.sender_cert, env().internal_cert());
  EXPECT_EQ(m.sender_cert_len, env().internal_cert().size());
  EXPECT_EQ(m.hash_alg, static_cast<ULONG>(CALG_SHA_256));
  EXPECT_EQ(m.auth_level, static_cast<ULONG>(MQMSG_AUTH_LEVEL_ALWAYS));
  EXPECT_FALSE(m.signature.empty());
  // The internal certificate was registered by MQRegisterCertificate(ALWAYS, NULL, 0).
  EXPECT_EQ(m.confirmed, 1);
}

TEST(Signing, SenderConfirmedOnlyAfterRegisterCertificate) {
  ExternalKey k = env().make_external_key(false, "21");
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Queue r(format, MQ_RECEIVE_ACCESS);
  {
    Context ctx(k.cert_der);
    ASSERT_EQ(send(s.get(), signed_with(ctx)), MQ_OK);
    Message m = receive_ok(r.get());
    EXPECT_EQ(m.authenticated, 1);
    EXPECT_EQ(m.sender_cert, k.cert_der);
    EXPECT_EQ(m.confirmed, 0) << "not registered yet";
  }
  ASSERT_EQ(MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, const_cast<uint8_t*>(k.cert_der.data()),
                                  static_cast<DWORD>(k.cert_der.size())),
            MQ_OK);
  Context ctx(k.cert_der);
  ASSERT_EQ(send(s.get(), signed_with(ctx)), MQ_OK);
  Message m = receive_ok(r.get());
  EXPECT_EQ(m.authenticated, 1);
  EXPECT_EQ(m.confirmed, 1);
}

TEST(Signing, NoContextSignsWithTheInternalCertificate) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  SendSpec spec;
  spec.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
  ASSERT_EQ(send(s.get(), spec), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m = receive_ok(r.get());
  EXPECT_EQ(m.authenticated, 1);
  EXPECT_EQ(m.authenticated_ex, MQMSG_AUTHENTICATED_SIG20);
  EXPECT_EQ(m.sender_cert, env().internal_cert());
  EXPECT_EQ(m.sender_id, unix_sid(::geteuid()));
}

TEST(Signing, FreedOrForgedContextFailsAndStoresNothing) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  HANDLE h = nullptr;
  ASSERT_EQ(MQGetSecurityContextEx(nullptr, 0, &h), MQ_OK);
  ULONG freed = static_cast<ULONG>(reinterpret_cast<uintptr_t>(h));
  MQFreeSecurityContext(h);
  for (ULONG bad : {freed, freed ^ 0x00010000u, 0xDEADBEEFu, 0u, 1u}) {
    SendSpec spec;
    spec.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
    spec.context = bad;
    EXPECT_EQ(send(s.get(), spec), MQ_ERROR_BAD_SECURITY_CONTEXT) << std::hex << bad;
  }
  EXPECT_TRUE(queue_empty(format));
  EXPECT_TRUE(Db().messages(queue_name()).empty());
}

TEST(Signing, SenderCertOtherThanTheContextsWins) {
  ExternalKey k = env().make_external_key(false, "22");
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Context internal;  // the internal certificate's context
  SendSpec spec = signed_with(internal, "by the external key");
  spec.sender_cert = k.cert_der;
  ASSERT_EQ(send(s.get(), spec), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m = receive_ok(r.get());
  EXPECT_EQ(m.authenticated, 1);
  EXPECT_EQ(m.sender_cert, k.cert_der);
  EXPECT_NE(m.sender_cert, env().internal_cert());
  EXPECT_EQ(m.sender_id, unix_sid(::geteuid()));
  // The signature is the external key's: it verifies with that key.
  EXPECT_EQ(string_of(m.body), "by the external key");

  // And SENDER_CERT equal to the context's certificate simply uses the context.
  SendSpec same = signed_with(internal, "same");
  same.sender_cert = env().internal_cert();
  ASSERT_EQ(send(s.get(), same), MQ_OK);
  Message m2 = receive_ok(r.get());
  EXPECT_EQ(m2.authenticated, 1);
  EXPECT_EQ(m2.sender_cert, env().internal_cert());
}

TEST(Signing, Sha384AndSha512Verify) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  for (ULONG alg : {static_cast<ULONG>(CALG_SHA_384), static_cast<ULONG>(CALG_SHA_512),
                    static_cast<ULONG>(CALG_SHA_256)}) {
    SendSpec spec = signed_with(ctx);
    spec.hash_alg = alg;
    ASSERT_EQ(send(s.get(), spec), MQ_OK) << std::hex << alg;
    Message m = receive_ok(r.get());
    EXPECT_EQ(m.hash_alg, alg);
    EXPECT_EQ(m.authenticated, 1) << std::hex << alg;
    EXPECT_EQ(m.authenticated_ex, MQMSG_AUTHENTICATED_SIG20);
    EXPECT_EQ(m.signature.size(), 256u);  // RSA-2048
  }
}

TEST(Signing, WeakHashesAreRefusedByDefault) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Context ctx;
  for (ULONG alg : {static_cast<ULONG>(CALG_MD5), static_cast<ULONG>(CALG_SHA1)}) {
    SendSpec spec = signed_with(ctx);
    spec.hash_alg = alg;
    EXPECT_EQ(send(s.get(), spec), MQ_ERROR_ILLEGAL_PROPERTY_VALUE) << std::hex << alg;
  }
  SendSpec unknown = signed_with(ctx);
  unknown.hash_alg = 0x8001;
  EXPECT_EQ(send(s.get(), unknown), MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
  EXPECT_TRUE(queue_empty(format));
}

TEST(Signing, WeakHashesWithAllowWeakHash) {
  struct Restore {
    ~Restore() { env().write_config(false); }
  } restore;
  env().write_config(true);  // the configuration is read again by each open
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  for (ULONG alg : {static_cast<ULONG>(CALG_MD5), static_cast<ULONG>(CALG_SHA1)}) {
    SendSpec spec = signed_with(ctx);
    spec.hash_alg = alg;
    ASSERT_EQ(send(s.get(), spec), MQ_OK) << std::hex << alg;
    Message m = receive_ok(r.get());
    EXPECT_EQ(m.hash_alg, alg);
    EXPECT_EQ(m.authenticated, 1) << std::hex << alg;
  }
  // A receiver under the default policy refuses what the permissive sender signed.
  SendSpec md5 = signed_with(ctx, "md5");
  md5.hash_alg = CALG_MD5;
  ASSERT_EQ(send(s.get(), md5), MQ_OK);
  env().write_config(false);
  std::string name = queue_name();
  Queue strict(format, MQ_RECEIVE_ACCESS);
  EXPECT_EQ(receive(strict.get(), 200), MQ_ERROR_IO_TIMEOUT);
  EXPECT_EQ(Db().rejections(name).size(), 1u);
}

// SENDERID_TYPE NONE: the message is signed but carries no SID.
TEST(Signing, SenderIdTypeNoneSendsNoSid) {
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Context ctx;
  SendSpec spec = signed_with(ctx, "anonymous");
  spec.senderid_type = MQMSG_SENDERID_TYPE_NONE;
  ASSERT_EQ(send(s.get(), spec), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m;
  ASSERT_EQ(receive(r.get(), kWait, &m), MQ_OK)
      << "rejections: "
      << (Db().rejections(queue_name()).empty() ? "none" : Db().rejections(queue_name())[0].reason);
  EXPECT_EQ(string_of(m.body), "anonymous");
  EXPECT_EQ(m.sender_id_len, 0u);
  EXPECT_EQ(m.sender_id_type, static_cast<ULONG>(MQMSG_SENDERID_TYPE_NONE));
  EXPECT_EQ(m.authenticated, 1);
}

// The same with a certificate that is not registered (no registered SID to compare).
TEST(Signing, SenderIdTypeNoneWithUnregisteredCertificate) {
  ExternalKey k = env().make_external_key(false, "23");
  std::wstring format = create_queue(queue_name());
  Queue s(format, MQ_SEND_ACCESS);
  Context ctx(k.cert_der);
  SendSpec spec = signed_with(ctx, "anonymous");
  spec.senderid_type = MQMSG_SENDERID_TYPE_NONE;
  ASSERT_EQ(send(s.get(), spec), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m = receive_ok(r.get());
  EXPECT_EQ(m.sender_id_len, 0u);
  EXPECT_EQ(m.sender_id_type, static_cast<ULONG>(MQMSG_SENDERID_TYPE_NONE));
  EXPECT_EQ(m.authenticated, 1);
  EXPECT_EQ(m.confirmed, 0);
}

// =============================================================================================
// Verification and rejection

struct TamperCase {
  const char* name;
  int field;  // envelope tag whose value gets one byte flipped
};

// Test names in CTest show the case name, not the parameter's bytes.
void PrintTo(const TamperCase& c, std::ostream* os) { *os << c.name; }

class Tampering : public ::testing::TestWithParam<TamperCase> {};

TEST_P(Tampering, TamperedMessageIsRejectedRecordedAndNacked) {
  const std::string name = queue_name("q"), admin = queue_name("admin");
  std::wstring format = create_queue(name);
  std::wstring admin_format = create_queue(admin);
  Bytes msgid;
  {
    Queue s(format, MQ_SEND_ACCESS);
    Context ctx;
    SendSpec first = signed_with(ctx, "the body that will be altered");
    first.acknowledge = MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL;
    first.admin_queue = admin_format;
    first.msgid_out = &msgid;
    ASSERT_EQ(send(s.get(), first), MQ_OK);
    ASSERT_EQ(send(s.get(), signed_with(ctx, "second")), MQ_OK);
  }
  ASSERT_EQ(msgid.size(), 20u);
  Bytes tampered;
  {
    Db db;
    auto rows = db.messages(name);
    ASSERT_EQ(rows.size(), 2u);
    tampered = rows[0].envelope;
    auto fields = envelope_fields(tampered);
    FieldPos f = fields.at(GetParam().field);
    ASSERT_GT(f.length, 4u);
    tampered[f.offset + f.length / 2] ^= 0x01;
    db.set_envelope(rows[0].seq, tampered);
  }
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m = receive_ok(r.get());
  EXPECT_EQ(string_of(m.body), "second") << "the tampered message must never be delivered";
  EXPECT_EQ(receive(r.get(), 0), MQ_ERROR_IO_TIMEOUT);

  auto rej = Db().rejections(name);
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(rej[0].envelope, tampered);
  EXPECT_FALSE(rej[0].reason.empty());

  Queue a(admin_format, MQ_RECEIVE_ACCESS);
  Message nack = receive_ok(a.get());
  EXPECT_EQ(nack.msg_class, MQMSG_CLASS_NACK_BAD_SIGNATURE);
  EXPECT_EQ(nack.msg_class, 0x8006);
  EXPECT_EQ(nack.correlation_id, msgid);
  EXPECT_EQ(receive(a.get(), 0), MQ_ERROR_IO_TIMEOUT);
}

INSTANTIATE_TEST_SUITE_P(Rejection, Tampering,
                         ::testing::Values(TamperCase{"Body", 0x0a}, TamperCase{"Signature", 0x17}),
                         [](const auto& tp) { return std::string(tp.param.name); });

TEST(Rejection, UnsignedMessageOnAuthenticatedQueueIsRejected) {
  const std::string name = queue_name("q"), admin = queue_name("admin");
  std::wstring format = create_queue(name, /*authenticate=*/true);
  std::wstring admin_format = create_queue(admin);
  Bytes msgid;
  {
    Queue s(format, MQ_SEND_ACCESS);
    SendSpec spec;
    spec.body = bytes_of("unsigned");
    spec.acknowledge = MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL;
    spec.admin_queue = admin_format;
    spec.msgid_out = &msgid;
    ASSERT_EQ(send(s.get(), spec), MQ_OK);
    Context ctx;
    ASSERT_EQ(send(s.get(), signed_with(ctx, "signed")), MQ_OK);
  }
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m = receive_ok(r.get());
  EXPECT_EQ(string_of(m.body), "signed");
  EXPECT_EQ(m.authenticated, 1);
  EXPECT_EQ(receive(r.get(), 0), MQ_ERROR_IO_TIMEOUT);
  EXPECT_EQ(Db().rejections(name).size(), 1u);
  Queue a(admin_format, MQ_RECEIVE_ACCESS);
  Message nack = receive_ok(a.get());
  EXPECT_EQ(nack.msg_class, MQMSG_CLASS_NACK_BAD_SIGNATURE);
  EXPECT_EQ(nack.correlation_id, msgid);
}

TEST(Rejection, UnsignedMessageOnNormalQueueIsDeliveredUnauthenticated) {
  const std::string name = queue_name();
  std::wstring format = create_queue(name);
  Queue s(format, MQ_SEND_ACCESS);
  SendSpec spec;
  spec.body = bytes_of("unsigned");
  ASSERT_EQ(send(s.get(), spec), MQ_OK);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m = receive_ok(r.get());
  EXPECT_EQ(string_of(m.body), "unsigned");
  EXPECT_EQ(m.authenticated, 0);
  EXPECT_EQ(m.authenticated_ex, 0);
  EXPECT_TRUE(m.signature.empty());
  EXPECT_TRUE(Db().rejections(name).empty());
}

// =============================================================================================
// Delivery and processes

TEST(Delivery, RecoverableMessageSurvivesSigkillOfTheSender) {
  std::wstring format = create_queue(queue_name());
  pid_t pid = spawn({{"MQSEC_MSG_CHILD", "kill-sender"}, {"MQSEC_MSG_QUEUE", narrow(format)}});
  int status = wait_status(pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  ASSERT_EQ(WTERMSIG(status), SIGKILL);
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m = receive_ok(r.get());
  EXPECT_EQ(string_of(m.body), "survives SIGKILL");
  EXPECT_EQ(m.delivery, MQMSG_DELIVERY_RECOVERABLE);
  EXPECT_EQ(m.authenticated, 1);
}

std::multiset<int> read_numbers(const fs::path& p) {
  std::ifstream in(p);
  std::multiset<int> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.insert(std::stoi(line));
  return out;
}

TEST(TwoProcesses, SenderAndReceiverProcessesOnOneStore) {
  constexpr int kCount = 200;
  std::wstring format = create_queue(queue_name());
  fs::path out = env().dir() / (queue_name() + ".out");
  pid_t receiver = spawn({{"MQSEC_MSG_CHILD", "receiver"},
                          {"MQSEC_MSG_QUEUE", narrow(format)},
                          {"MQSEC_MSG_COUNT", std::to_string(kCount)},
                          {"MQSEC_MSG_OUT", out.string()}});
  pid_t sender = spawn({{"MQSEC_MSG_CHILD", "sender"},
                        {"MQSEC_MSG_QUEUE", narrow(format)},
                        {"MQSEC_MSG_COUNT", std::to_string(kCount)}});
  int ss = wait_status(sender), rs = wait_status(receiver);
  ASSERT_TRUE(WIFEXITED(ss) && WEXITSTATUS(ss) == 0) << "sender status " << ss;
  ASSERT_TRUE(WIFEXITED(rs) && WEXITSTATUS(rs) == 0) << "receiver status " << rs;
  auto got = read_numbers(out);
  ASSERT_EQ(got.size(), static_cast<size_t>(kCount));
  std::set<int> unique(got.begin(), got.end());
  EXPECT_EQ(unique.size(), static_cast<size_t>(kCount)) << "a message was received twice";
  EXPECT_EQ(*unique.begin(), 0);
  EXPECT_EQ(*unique.rbegin(), kCount - 1);
  EXPECT_TRUE(queue_empty(format));
}

TEST(TwoProcesses, TwoReceiverProcessesNeverGetTheSameMessage) {
  constexpr int kCount = 200;
  std::wstring format = create_queue(queue_name());
  fs::path out1 = env().dir() / (queue_name() + ".1"), out2 = env().dir() / (queue_name() + ".2");
  fs::path done = env().dir() / (queue_name() + ".done");
  auto receiver = [&](const fs::path& out) {
    return spawn({{"MQSEC_MSG_CHILD", "receiver"},
                  {"MQSEC_MSG_QUEUE", narrow(format)},
                  {"MQSEC_MSG_DONE", done.string()},
                  {"MQSEC_MSG_OUT", out.string()}});
  };
  pid_t r1 = receiver(out1), r2 = receiver(out2);
  pid_t sender = spawn({{"MQSEC_MSG_CHILD", "sender"},
                        {"MQSEC_MSG_QUEUE", narrow(format)},
                        {"MQSEC_MSG_COUNT", std::to_string(kCount)}});
  int ss = wait_status(sender);
  write_text(done, "done");
  int s1 = wait_status(r1), s2 = wait_status(r2);
  ASSERT_TRUE(WIFEXITED(ss) && WEXITSTATUS(ss) == 0) << "sender status " << ss;
  ASSERT_TRUE(WIFEXITED(s1) && WEXITSTATUS(s1) == 0) << "receiver 1 status " << s1;
  ASSERT_TRUE(WIFEXITED(s2) && WEXITSTATUS(s2) == 0) << "receiver 2 status " << s2;
  auto got = read_numbers(out1);
  auto got2 = read_numbers(out2);
  got.insert(got2.begin(), got2.end());
  ASSERT_EQ(got.size(), static_cast<size_t>(kCount));
  std::set<int> unique(got.begin(), got.end());
  EXPECT_EQ(unique.size(), static_cast<size_t>(kCount)) << "a message was received twice";
}

// =============================================================================================
// Independent verification: TBS rebuilt from the received properties as
// docs/signature-format.md section 3 says, checked with `openssl dgst -verify`.

void put_len(Bytes& out, size_t n) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(n >> s));
}
void item(Bytes& out, const Bytes& v) {
  put_len(out, v.size());
  out.insert(out.end(), v.begin(), v.end());
}
Bytes be(uint64_t v, int width) {
  Bytes b;
  for (int i = width - 1; i >= 0; --i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  return b;
}
Bytes utf16be(const std::wstring& s) {  // BMP text only in these tests
  Bytes b;
  for (wchar_t c : s) {
    b.push_back(static_cast<uint8_t>(c >> 8));
    b.push_back(static_cast<uint8_t>(c));
  }
  return b;
}

Bytes to_be_signed(const Message& m, const std::wstring& dest_queue, uint8_t sig_scheme) {
  static const char kDomain[] = "MQSEC-SIG-v1";  // with its NUL: 13 bytes
  Bytes t(kDomain, kDomain + sizeof kDomain);
  item(t, m.correlation_id);
  item(t, be(m.app_specific, 4));
  item(t, m.body);
  item(t, utf16be(m.label));
  item(t, utf16be(m.response_queue));
  item(t, utf16be(m.admin_queue));
  item(t, utf16be(widen(lower(host_name()))));
  item(t, be(m.delivery, 1));
  item(t, be(m.priority, 1));
  item(t, be(m.journal, 1));
  item(t, be(m.acknowledge, 1));
  item(t, be(m.msg_class, 2));
  item(t, be(m.body_type, 4));
  item(t, {});
  item(t, utf16be(dest_queue));
  item(t, m.msgid);
  item(t, be(m.sent_time, 8));
  item(t, be(m.auth_level, 4));
  item(t, be(m.hash_alg, 4));
  item(t, be(sig_scheme, 1));
  item(t, be(m.sender_id_type, 4));
  item(t, m.sender_id);
  item(t, sha256(m.sender_cert));
  return t;
}

struct VerifyCase {
  const char* name;
  const char* key_id;  // CKA_ID in hex, distinct per case
  bool ec;
  ULONG hash_alg;
  const char* openssl_digest;
};

void PrintTo(const VerifyCase& c, std::ostream* os) { *os << c.name; }

class IndependentVerification : public ::testing::TestWithParam<VerifyCase> {};

TEST_P(IndependentVerification, OpensslVerifiesTheRebuiltToBeSignedBytes) {
  const VerifyCase& c = GetParam();
  ExternalKey k = env().make_external_key(c.ec, c.key_id);
  const std::string name = queue_name();
  std::wstring format = create_queue(name);
  std::wstring reply = create_queue(queue_name("reply"));
  {
    Queue s(format, MQ_SEND_ACCESS);
    Context ctx(k.cert_der);
    SendSpec spec = signed_with(ctx, "independently verified body");
    spec.label = L"verify me";
    spec.priority = 5;
    spec.delivery = MQMSG_DELIVERY_RECOVERABLE;
    spec.journal = MQMSG_DEADLETTER;
    spec.acknowledge = MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL;
    spec.admin_queue = reply;
    spec.response_queue = reply;
    spec.app_specific = 0x01020304;
    spec.body_type = VT_UI1 | VT_VECTOR;
    spec.hash_alg = c.hash_alg;
    Bytes corr(20);
    for (size_t i = 0; i < corr.size(); ++i) corr[i] = static_cast<uint8_t>(0xC0 + i);
    spec.correlation_id = corr;
    ASSERT_EQ(send(s.get(), spec), MQ_OK);
  }
  Queue r(format, MQ_RECEIVE_ACCESS);
  Message m = receive_ok(r.get());
  ASSERT_EQ(m.authenticated, 1);
  EXPECT_EQ(m.sender_cert, k.cert_der);
  EXPECT_EQ(m.hash_alg, c.hash_alg);
  const std::wstring dest = widen("DIRECT=OS:" + lower(host_name()) + "\\private$\\" + name);
  EXPECT_EQ(m.dest_queue, dest);

  fs::path d = env().dir() / ("verify-" + std::string(c.name));
  fs::create_directories(d);
  Bytes tbs = to_be_signed(m, dest, c.ec ? 3 : 1);
  write_bytes(d / "tbs.bin", tbs);
  write_bytes(d / "signature.bin", m.signature);
  std::string cmd = std::string("openssl dgst -") + c.openssl_digest + " -verify " +
                    k.pub_pem.string() + " -signature " + (d / "signature.bin").string() + " ";
  std::string out;
  EXPECT_EQ(run(cmd + (d / "tbs.bin").string(), &out), 0) << out;
  EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;

  // Control: the same check on TBS with one bit changed must fail.
  tbs[tbs.size() / 2] ^= 0x01;
  write_bytes(d / "tbs-altered.bin", tbs);
  EXPECT_NE(run(cmd + (d / "tbs-altered.bin").string(), &out), 0) << out;
  EXPECT_EQ(out.find("Verified OK"), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(
    Openssl, IndependentVerification,
    ::testing::Values(VerifyCase{"Rsa2048Sha256", "31", false, CALG_SHA_256, "sha256"},
                      VerifyCase{"P256Sha256", "32", true, CALG_SHA_256, "sha256"},
                      VerifyCase{"Rsa2048Sha384", "33", false, CALG_SHA_384, "sha384"},
                      VerifyCase{"P256Sha512", "34", true, CALG_SHA_512, "sha512"}),
    [](const auto& tp) { return std::string(tp.param.name); });

}  // namespace
