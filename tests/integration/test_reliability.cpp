// Reliability tests of issue 5 through the MSMQ C API (mq.h, libmqrt) on a temporary SoftHSM
// token reached through the fault-injection PKCS#11 module (tests/fault/fault_pkcs11.cpp):
//
// - token removed while sending: MQSendMessage fails with MQ_ERROR_CANNOT_SIGN_DATA_EX, nothing
//   is stored, nothing crashes or hangs (also with several threads sending when it goes);
// - token re-inserted (same or new slot ids): the same security context handle signs again, and
//   the message verifies on receive;
// - CKR_SESSION_HANDLE_INVALID / CKR_SESSION_CLOSED on C_SignInit or C_Sign: transparent;
// - CKR_USER_NOT_LOGGED_IN: one login again; CKR_PIN_INCORRECT / CKR_PIN_LOCKED: never retried;
// - CKR_SESSION_COUNT: a send waits for a pooled session; a transient one does not disable the
//   token for good;
// - fork: a child that uses an inherited context works or fails clearly, never deadlocks (also
//   when another thread is signing at the fork); and, as DESIGN.md promises (lazy
//   re-initialisation after fork), it signs. SoftHSM runs with library.reset_on_fork = true, so
//   that it forgets its parent's sessions and login in a child as the PKCS#11 spec allows and
//   real card modules (OpenSC) do;
// - exactly once: THREADS x MESSAGES signed sends (default 8 x 5,000 with P-256; environment
//   MQSEC_REL_THREADS, MQSEC_REL_MESSAGES, and MQSEC_REL_KEY=rsa for the internal RSA-2048
//   certificate) on one shared and on separate contexts, drained by two receiver processes:
//   every message received exactly once and authenticated;
// - SIGKILL of a sender process during a stream of RECOVERABLE messages: every message whose
//   MQSendMessage returned MQ_OK (acknowledged through a pipe after MQ_OK) is in the queue exactly
//   once and verifies; nothing partial is delivered;
// - SIGKILL of a receiver process in the middle of a stream of receives (reading, verifying,
//   inside its removal transaction or just after it), several times: the next receiver is not
//   held up by the dead one's store locks, no message is received twice, and every message is
//   received except at most the one per kill that the killed receiver had removed but not yet
//   reported (a non-transactional receive is at most once to a receiver that dies with it).
//
// Every wait is bounded: a watchdog aborts the test process when a test hangs, children have an
// alarm(), and child processes are waited for with a deadline and killed after it.
//
// Child processes are this executable re-executed with MQSEC_REL_CHILD=<role> (fork + exec, so no
// SQLite connection or PKCS#11 session crosses the fork), except in the fork tests, whose point
// is the inherited state.
#include <mq.h>

#include "pkcs11/cryptoki.hpp"

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/fault/fault_control.h"
#include "tests/support/softhsm_env.hpp"

#ifndef MQSEC_FAULT_MODULE
#error "MQSEC_FAULT_MODULE must name the fault-injection module (libmqsec_fault_pkcs11.so)"
#endif

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using mqsec::testing::ConfigOptions;
using mqsec::testing::SoftHsmEnv;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kChildRole = "MQSEC_REL_CHILD";
constexpr DWORD kWait = 10000;  // ms: upper bound for a message that must already be there

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

std::string getenv_str(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// A positive integer from the environment, or `fallback`.
int env_int(const char* name, int fallback) {
  std::string v = getenv_str(name);
  if (v.empty()) return fallback;
  int n = std::atoi(v.c_str());
  return n > 0 ? n : fallback;
}

std::wstring widen(const std::string& s) { return std::wstring(s.begin(), s.end()); }
std::string narrow(const std::wstring& s) {
  std::string out;
  for (wchar_t c : s) out.push_back(static_cast<char>(c));
  return out;
}
Bytes bytes_of(const std::string& s) { return Bytes(s.begin(), s.end()); }
std::string string_of(const Bytes& b) { return std::string(b.begin(), b.end()); }

Bytes read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("cannot read " + p.string());
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

// Samba's SID for a Unix user, S-1-22-1-<uid>, in binary form (the configuration says "unix").
Bytes unix_sid(uid_t uid) {
  Bytes b = {1, 2, 0, 0, 0, 0, 0, 22, 1, 0, 0, 0};
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(uid >> (8 * i)));
  return b;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Aborts the process (so the test fails with a message instead of hanging CI) when the scope
// it guards has not ended within `limit`.
class Watchdog {
 public:
  Watchdog(std::chrono::seconds limit, std::string what)
      : what_(std::move(what)), thread_([this, limit] { watch(limit); }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void watch(std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
      std::fprintf(stderr, "WATCHDOG: '%s' did not finish within %lld s: a hang; aborting\n",
                   what_.c_str(), static_cast<long long>(limit.count()));
      std::fflush(stderr);
      std::abort();
    }
  }
  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

// ---------------------------------------------------------------------------------------------
// Property arrays (the variants point into storage owned by the builder)

class Props {
 public:
  size_t ui1(PROPID id, UCHAR v) {
    MQPROPVARIANT p{};
    p.vt = VT_UI1;
    p.bVal = v;
    return add(id, p);
  }
  size_t ui4(PROPID id, ULONG v) {
    MQPROPVARIANT p{};
    p.vt = VT_UI4;
    p.ulVal = v;
    return add(id, p);
  }
  size_t null(PROPID id) {
    MQPROPVARIANT p{};
    p.vt = VT_NULL;
    return add(id, p);
  }
  // Content to send, or an output buffer of b.size() bytes.
  size_t bytes(PROPID id, Bytes b) {
    buffers_.push_back(std::move(b));
    Bytes& buf = buffers_.back();
    MQPROPVARIANT p{};
    p.vt = VT_UI1 | VT_VECTOR;
    p.caub.cElems = static_cast<ULONG>(buf.size());
    p.caub.pElems = buf.empty() ? nullptr : buf.data();
    return add(id, p);
  }
  size_t wstr(PROPID id, const std::wstring& s) {
    strings_.push_back(s);
    MQPROPVARIANT p{};
    p.vt = VT_LPWSTR;
    p.pwszVal = strings_.back().data();
    return add(id, p);
  }
  const MQPROPVARIANT& var(size_t i) const { return vars_[i]; }
  // The first `n` bytes of output buffer `i`.
  Bytes out(size_t i, size_t n) const {
    const CAUB& v = vars_[i].caub;
    return Bytes(v.pElems, v.pElems + std::min<size_t>(n, buffers_size(i)));
  }
  MQMSGPROPS* msg() {
    status_.assign(ids_.size(), 0);
    msg_ = MQMSGPROPS{static_cast<DWORD>(ids_.size()), ids_.data(), vars_.data(), status_.data()};
    return &msg_;
  }
  MQQUEUEPROPS* queue() {
    status_.assign(ids_.size(), 0);
    q_ = MQQUEUEPROPS{static_cast<DWORD>(ids_.size()), ids_.data(), vars_.data(), status_.data()};
    return &q_;
  }

 private:
  size_t add(PROPID id, const MQPROPVARIANT& v) {
    ids_.push_back(id);
    vars_.push_back(v);
    capacity_.push_back(v.vt == (VT_UI1 | VT_VECTOR) ? v.caub.cElems : 0);
    return ids_.size() - 1;
  }
  size_t buffers_size(size_t i) const { return capacity_[i]; }

  std::vector<PROPID> ids_;
  std::vector<MQPROPVARIANT> vars_;
  std::vector<HRESULT> status_;
  std::vector<size_t> capacity_;
  std::deque<Bytes> buffers_;  // deque: growing it never moves existing buffers
  std::deque<std::wstring> strings_;
  MQMSGPROPS msg_{};
  MQQUEUEPROPS q_{};
};

// ---------------------------------------------------------------------------------------------
// Queues, contexts, send and receive

// A fresh private queue per call; returns its format name.
std::wstring create_queue(const std::string& tag) {
  static std::atomic<int> counter{0};
  std::string path = ".\\private$\\rel-" + tag + "-" + std::to_string(::getpid()) + "-" +
                     std::to_string(++counter);
  Props p;
  p.wstr(PROPID_Q_PATHNAME, widen(path));
  WCHAR buf[256] = {};
  DWORD len = 256;
  check_hr(MQCreateQueue(nullptr, p.queue(), buf, &len), "MQCreateQueue(" + path + ")");
  return buf;
}

class Queue {
 public:
  Queue(const std::wstring& format, DWORD access) {
    check_hr(MQOpenQueue(format.c_str(), access, MQ_DENY_NONE, &h_),
             "MQOpenQueue(" + narrow(format) + ")");
  }
  ~Queue() {
    if (h_ != nullptr) MQCloseQueue(h_);
  }
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;
  QUEUEHANDLE get() const { return h_; }

 private:
  QUEUEHANDLE h_ = nullptr;
};

// A security context (the user's internal certificate when `cert` is empty), freed at scope end.
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

 private:
  HANDLE h_ = nullptr;
};

HRESULT send_signed(QUEUEHANDLE q, HANDLE ctx, const Bytes& body,
                    UCHAR delivery = MQMSG_DELIVERY_EXPRESS) {
  Props p;
  p.bytes(PROPID_M_BODY, body);
  p.ui4(PROPID_M_AUTH_LEVEL, MQMSG_AUTH_LEVEL_ALWAYS);
  p.ui4(PROPID_M_SECURITY_CONTEXT, static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx)));
  p.ui1(PROPID_M_DELIVERY, delivery);
  return MQSendMessage(q, p.msg(), nullptr);
}
HRESULT send_signed(QUEUEHANDLE q, HANDLE ctx, const std::string& body) {
  return send_signed(q, ctx, bytes_of(body));
}

struct Received {
  Bytes body, sender_id, sender_cert;
  UCHAR authenticated = 0xFF, authenticated_ex = 0xFF;
};

HRESULT receive(QUEUEHANDLE q, DWORD timeout, Received* m, DWORD action = MQ_ACTION_RECEIVE) {
  Props p;
  size_t body = p.bytes(PROPID_M_BODY, Bytes(64 * 1024));
  size_t body_size = p.null(PROPID_M_BODY_SIZE);
  size_t sid = p.bytes(PROPID_M_SENDERID, Bytes(256));
  size_t sid_len = p.null(PROPID_M_SENDERID_LEN);
  size_t cert = p.bytes(PROPID_M_SENDER_CERT, Bytes(16 * 1024));
  size_t cert_len = p.null(PROPID_M_SENDER_CERT_LEN);
  size_t auth = p.null(PROPID_M_AUTHENTICATED);
  size_t auth_ex = p.null(PROPID_M_AUTHENTICATED_EX);
  HRESULT hr = MQReceiveMessage(q, timeout, action, p.msg(), nullptr, nullptr, nullptr, nullptr);
  if (m == nullptr || FAILED(hr)) return hr;
  m->body = p.out(body, p.var(body_size).ulVal);
  m->sender_id = p.out(sid, p.var(sid_len).ulVal);
  m->sender_cert = p.out(cert, p.var(cert_len).ulVal);
  m->authenticated = p.var(auth).bVal;
  m->authenticated_ex = p.var(auth_ex).bVal;
  return hr;
}

// Receives every message now in the queue (a receive with timeout 0 ends it).
std::vector<Received> drain(QUEUEHANDLE q) {
  std::vector<Received> out;
  for (;;) {
    Received m;
    HRESULT hr = receive(q, 0, &m);
    if (hr == MQ_ERROR_IO_TIMEOUT) return out;
    check_hr(hr, "MQReceiveMessage (drain)");
    out.push_back(std::move(m));
  }
}

// A message the test sent is authentic: signature verified, SID and certificate as expected.
::testing::AssertionResult verifies(const Received& m, const Bytes& cert) {
  if (m.authenticated != 1 || m.authenticated_ex != MQMSG_AUTHENTICATED_SIG20) {
    return ::testing::AssertionFailure()
           << "'" << string_of(m.body) << "' is not authenticated (" << int{m.authenticated} << "/"
           << int{m.authenticated_ex} << ")";
  }
  if (m.sender_id != unix_sid(::geteuid())) {
    return ::testing::AssertionFailure() << "'" << string_of(m.body) << "' has another SENDERID";
  }
  if (!cert.empty() && m.sender_cert != cert) {
    return ::testing::AssertionFailure() << "'" << string_of(m.body) << "' has another certificate";
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// The fault module's control API, from the instance libmqrt loaded (module-path of the config).

struct Control {
  mqsec_fault_reset_fn reset;
  mqsec_fault_fail_fn fail;
  mqsec_fault_clear_fn clear;
  mqsec_fault_remove_token_fn remove_token;
  mqsec_fault_insert_token_fn insert_token;
  mqsec_fault_call_count_fn call_count;
  CK_FUNCTION_LIST* fn;  // its Cryptoki entry points (for a real logout)
};

template <typename F>
F sym(void* dl, const char* name) {
  auto f = reinterpret_cast<F>(::dlsym(dl, name));
  if (f == nullptr) fail(std::string("the fault module lacks ") + name);
  return f;
}

Control load_control() {
  // RTLD_NOLOAD: the very instance mqsec loaded, not a second copy.
  void* dl = ::dlopen(MQSEC_FAULT_MODULE, RTLD_NOW | RTLD_NOLOAD);
  if (dl == nullptr) fail("the fault module is not loaded: is it the configured module-path?");
  Control c{sym<mqsec_fault_reset_fn>(dl, "mqsec_fault_reset"),
            sym<mqsec_fault_fail_fn>(dl, "mqsec_fault_fail"),
            sym<mqsec_fault_clear_fn>(dl, "mqsec_fault_clear"),
            sym<mqsec_fault_remove_token_fn>(dl, "mqsec_fault_remove_token"),
            sym<mqsec_fault_insert_token_fn>(dl, "mqsec_fault_insert_token"),
            sym<mqsec_fault_call_count_fn>(dl, "mqsec_fault_call_count"),
            nullptr};
  auto get = sym<CK_C_GetFunctionList>(dl, "C_GetFunctionList");
  if (get(&c.fn) != CKR_OK || c.fn == nullptr) fail("the fault module has no function list");
  return c;
}

// Set up once per test process by the environment below.
Control g_ctl{};
Bytes g_p256_cert;      // certificate of a P-256 key generated on the token (pkcs11-tool)
Bytes g_internal_cert;  // the user's internal certificate (enrolled by MQRegisterCertificate)
fs::path g_p256_cert_file, g_internal_cert_file;

class ReliabilityEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // Before the first MQ call: SOFTHSM2_CONF and MQSEC_CONFIG for this process.
    SoftHsmEnv& env = SoftHsmEnv::instance();
    // SoftHSM keeps its state (sessions, login, locks) in a forked child unless told to start
    // afresh. With it, SoftHSM behaves like the modules PKCS#11 v2.40 section 6.6.1 describes
    // (the child must C_Initialize again and owns no session or login of its parent), which
    // is what the runtime's lazy re-initialisation after fork is for; and a child does not
    // inherit SoftHSM-internal mutexes that another thread of the parent held at the fork.
    // Read at C_Initialize: before anything in this process loads the module.
    {
      std::ofstream conf(env.softhsm_conf(), std::ios::app);
      conf << "library.reset_on_fork = true\n";
      ASSERT_TRUE(conf.good());
    }
    ConfigOptions o;
    o.module_path = MQSEC_FAULT_MODULE;  // every token call of libmqrt goes through it
    env.write_config(o);
    // Provisioned with the command-line tools, before this process opens the token.
    const std::string id = SoftHsmEnv::new_id();
    env.keypairgen(SoftHsmEnv::kPrimaryToken, "EC:prime256v1", id, "rel-p256");
    g_p256_cert = env.certificate_for_token_key(SoftHsmEnv::kPrimaryToken, id, "mqsec-rel-p256");
    g_p256_cert_file = env.dir() / "rel-p256.der";
    mqsec::testing::write_file(g_p256_cert_file, string_of(g_p256_cert), 0644);
    HRESULT hr = MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0);
    ASSERT_TRUE(SUCCEEDED(hr)) << hex(hr);
    g_ctl = load_control();
    // The internal certificate as a receiver sees it.
    std::wstring format = create_queue("setup");
    Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
    Context ctx;
    ASSERT_EQ(send_signed(q.get(), ctx.get(), "setup"), MQ_OK);
    Received m;
    ASSERT_EQ(receive(qr.get(), kWait, &m), MQ_OK);
    ASSERT_TRUE(verifies(m, {}));
    g_internal_cert = m.sender_cert;
    g_internal_cert_file = env.dir() / "rel-internal.der";
    mqsec::testing::write_file(g_internal_cert_file, string_of(g_internal_cert), 0644);
  }
};

// Each test starts with the card freshly moved to a new reader: no session or login left by an
// earlier test, and a slot id the runtime has not seen, so contexts made by this test get a new
// Token object (a refused PIN remembered by an earlier test's Token does not leak into this one).
class Reliability : public ::testing::Test {
 protected:
  void SetUp() override {
    g_ctl.reset();
    g_ctl.remove_token();
    g_ctl.insert_token(1);
    g_ctl.reset();
  }
  void TearDown() override { g_ctl.reset(); }
  static int calls(const char* fn) { return g_ctl.call_count(fn); }
};

// ---------------------------------------------------------------------------------------------
// Child processes

// Runs this executable again with `vars` added to the environment. `keep_fd`, if >= 0, is
// passed as file descriptor 3.
pid_t spawn(const std::map<std::string, std::string>& vars, int keep_fd = -1) {
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) envs.emplace_back(*e);
  for (const auto& [k, v] : vars) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envs) envp.push_back(s.data());
  envp.push_back(nullptr);
  char self[] = "/proc/self/exe";
  char* argv[] = {self, nullptr};
  pid_t pid = ::fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec: the parent has threads.
    if (keep_fd >= 0 && ::dup2(keep_fd, 3) < 0) ::_exit(126);
    ::execve(self, argv, envp.data());
    ::_exit(127);
  }
  return pid;
}

// Waits up to `limit` for `pid` to end; returns its wait status, or nullopt after killing it
// with SIGKILL when it did not end in time (a hang).
std::optional<int> wait_for(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (Clock::now() > deadline) {
      // A hung child is the bug being looked for: show where it is stuck before killing it.
      if (std::system("command -v gdb >/dev/null 2>&1") == 0) {
        std::fprintf(stderr, "[ info ] process %d hung; its threads:\n", static_cast<int>(pid));
        const std::string cmd = "gdb -p " + std::to_string(pid) +
                                " -batch -ex 'thread apply all bt' 2>&1 | head -200 >&2";
        [[maybe_unused]] int rc = std::system(cmd.c_str());
      }
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return std::nullopt;
    }
    std::this_thread::sleep_for(5ms);
  }
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + ::strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// The body of stream message `i`: "k <i> " then 100..4100 bytes derived from i, so that a
// truncated or mixed-up body cannot pass for a whole one.
Bytes stream_body(long i) {
  std::string b = "k " + std::to_string(i) + " ";
  size_t n = 100 + static_cast<size_t>(i * 7919 % 4001);
  for (size_t k = 0; k < n; ++k)
    b.push_back(static_cast<char>('a' + (i + static_cast<long>(k)) % 26));
  return bytes_of(b);
}

// Writes all of `s` to `fd` (a pipe: one write() for lines shorter than PIPE_BUF).
bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

// Receives until MQSEC_REL_DONE exists and the queue is empty; writes one line per message:
// "<body up to the first padding> OK|BAD". Messages must be authenticated, carry the user's
// SID and the certificate in MQSEC_REL_CERT.
int child_receiver() {
  ::alarm(900);  // never outlive a hung parent
  Queue q(widen(getenv_str("MQSEC_REL_QUEUE")), MQ_RECEIVE_ACCESS);
  const fs::path done = getenv_str("MQSEC_REL_DONE");
  const Bytes cert = read_bytes(getenv_str("MQSEC_REL_CERT"));
  std::ofstream out(getenv_str("MQSEC_REL_OUT"));
  int errors = 0;
  for (;;) {
    Received m;
    HRESULT hr = receive(q.get(), 200, &m);
    if (hr == MQ_ERROR_IO_TIMEOUT) {
      if (fs::exists(done) &&
          receive(q.get(), 0, nullptr, MQ_ACTION_PEEK_CURRENT) == MQ_ERROR_IO_TIMEOUT) {
        break;
      }
      continue;
    }
    if (FAILED(hr)) {
      out << "ERR " << hex(hr) << "\n";
      if (++errors > 20) break;
      continue;
    }
    std::string body = string_of(m.body);
    body = body.substr(0, body.find(" x"));
    out << body << (verifies(m, cert) ? " OK" : " BAD") << "\n";
  }
  out.flush();
  return out ? 0 : 5;
}

// Sends RECOVERABLE stream messages 0, 1, 2, ... with the P-256 certificate's context until
// killed; after each MQ_OK writes "<i>\n" to fd 3 (a pipe to the parent).
int child_stream_sender() {
  ::alarm(300);
  Queue q(widen(getenv_str("MQSEC_REL_QUEUE")), MQ_SEND_ACCESS);
  Context ctx(read_bytes(getenv_str("MQSEC_REL_CERT")));
  for (long i = 0; i < 1000000; ++i) {
    HRESULT hr = send_signed(q.get(), ctx.get(), stream_body(i), MQMSG_DELIVERY_RECOVERABLE);
    if (hr != MQ_OK) {
      write_all(3, "E " + hex(hr) + "\n");
      return 3;
    }
    if (!write_all(3, std::to_string(i) + "\n")) return 4;
  }
  return 0;
}

// Receives stream messages until killed (or the queue stays empty for 30 s); after each MQ_OK
// writes "<i>\n" (the body's number) to fd 3, or "B <i>\n" when it did not verify.
int child_stream_receiver() {
  ::alarm(300);
  Queue q(widen(getenv_str("MQSEC_REL_QUEUE")), MQ_RECEIVE_ACCESS);
  const Bytes cert = read_bytes(getenv_str("MQSEC_REL_CERT"));
  for (;;) {
    Received m;
    HRESULT hr = receive(q.get(), 30000, &m);
    if (hr == MQ_ERROR_IO_TIMEOUT) return 0;
    if (FAILED(hr)) {
      write_all(3, "E " + hex(hr) + "\n");
      return 3;
    }
    std::istringstream in(string_of(m.body));
    std::string k;
    long i = -1;
    in >> k >> i;
    const bool ok = k == "k" && m.body == stream_body(i) && verifies(m, cert);
    if (!write_all(3, (ok ? "" : "B ") + std::to_string(i) + "\n")) return 4;
  }
}

[[maybe_unused]] const int child_dispatch = [] {
  std::string role = getenv_str(kChildRole);
  if (role.empty()) return 0;
  int rc = 2;
  try {
    if (role == "receiver") rc = child_receiver();
    if (role == "stream-sender") rc = child_stream_sender();
    if (role == "stream-receiver") rc = child_stream_receiver();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child %s: %s\n", role.c_str(), e.what());
    rc = 6;
  }
  std::fflush(nullptr);
  ::_exit(rc);
}();

[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new ReliabilityEnvironment);

// =============================================================================================
// Token removal

TEST_F(Reliability, TokenRemovedSendFailsWithCannotSignAndStoresNothing) {
  Watchdog wd(120s, "send with the token removed");
  std::wstring format = create_queue("removed");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  ASSERT_EQ(send_signed(q.get(), ctx.get(), "before"), MQ_OK);
  ASSERT_EQ(drain(qr.get()).size(), 1u);

  g_ctl.remove_token();
  for (int i = 0; i < 3; ++i) {
    auto t0 = Clock::now();
    EXPECT_EQ(send_signed(q.get(), ctx.get(), "while removed " + std::to_string(i)),
              MQ_ERROR_CANNOT_SIGN_DATA_EX)
        << "attempt " << i;
    std::printf("[ time ] failed send with the token removed: %.3f s\n", seconds_since(t0));
  }
  // Also with a context acquired while the token is out: a clear error, not a crash.
  HANDLE h = nullptr;
  HRESULT hr = MQGetSecurityContextEx(nullptr, 0, &h);
  EXPECT_TRUE(FAILED(hr)) << hex(hr);
  if (SUCCEEDED(hr)) MQFreeSecurityContext(h);
  Received m;
  EXPECT_EQ(receive(qr.get(), 0, &m), MQ_ERROR_IO_TIMEOUT) << "stored: " << string_of(m.body);
}

TEST_F(Reliability, TokenRemovedDuringConcurrentSendsStoresExactlyTheAcknowledged) {
  Watchdog wd(180s, "concurrent sends with the token pulled");
  std::wstring format = create_queue("removed-mt");
  Context ctx;
  constexpr int kThreads = 4;
  std::atomic<int> ok_total{0};
  std::atomic<bool> removed{false};
  std::vector<std::vector<std::string>> ok(kThreads);
  std::vector<std::vector<HRESULT>> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Queue q(format, MQ_SEND_ACCESS);
      int failures_after_removal = 0;
      for (int i = 0; i < 3000 && failures_after_removal < 3; ++i) {
        std::string body = "c " + std::to_string(t) + " " + std::to_string(i);
        const bool was_removed = removed.load();
        HRESULT hr = send_signed(q.get(), ctx.get(), body);
        if (hr == MQ_OK) {
          ok[t].push_back(body);
          ok_total.fetch_add(1);
        } else {
          errors[t].push_back(hr);
          if (was_removed) ++failures_after_removal;
        }
      }
    });
  }
  while (ok_total.load() < 40) std::this_thread::sleep_for(1ms);
  g_ctl.remove_token();
  removed.store(true);
  for (auto& th : threads) th.join();

  std::multiset<std::string> acknowledged;
  for (int t = 0; t < kThreads; ++t) {
    acknowledged.insert(ok[t].begin(), ok[t].end());
    EXPECT_FALSE(errors[t].empty()) << "thread " << t << " never saw the removal";
    for (HRESULT hr : errors[t]) EXPECT_EQ(hr, MQ_ERROR_CANNOT_SIGN_DATA_EX) << hex(hr);
  }
  Queue r(format, MQ_RECEIVE_ACCESS);
  std::multiset<std::string> stored;
  for (const Received& m : drain(r.get())) {
    EXPECT_TRUE(verifies(m, g_internal_cert));
    stored.insert(string_of(m.body));
  }
  EXPECT_EQ(stored, acknowledged) << stored.size() << " stored, " << acknowledged.size()
                                  << " acknowledged";

  // Back in (another reader): the same context signs again.
  g_ctl.insert_token(1);
  Queue s(format, MQ_SEND_ACCESS);
  ASSERT_EQ(send_signed(s.get(), ctx.get(), "after"), MQ_OK);
  Received m;
  ASSERT_EQ(receive(r.get(), kWait, &m), MQ_OK);
  EXPECT_EQ(string_of(m.body), "after");
  EXPECT_TRUE(verifies(m, g_internal_cert));
}

// ---------------------------------------------------------------------------------------------
// Re-insertion: the same context handle signs again, without the application doing anything.

struct ReinsertCase {
  const char* name;
  bool p256;                // the P-256 certificate's context, else the internal certificate's
  bool new_slot_ids;        // re-inserted in another reader
  bool send_while_removed;  // a send failed while the token was out
};
void PrintTo(const ReinsertCase& c, std::ostream* os) { *os << c.name; }

class Reinsertion : public Reliability, public ::testing::WithParamInterface<ReinsertCase> {};

TEST_P(Reinsertion, SameContextSignsAgainAndVerifies) {
  const ReinsertCase& c = GetParam();
  Watchdog wd(120s, "re-insertion");
  const Bytes& cert = c.p256 ? g_p256_cert : g_internal_cert;
  std::wstring format = create_queue("reinsert");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx(c.p256 ? g_p256_cert : Bytes{});
  ASSERT_EQ(send_signed(q.get(), ctx.get(), "first"), MQ_OK);

  g_ctl.remove_token();
  if (c.send_while_removed) {
    EXPECT_EQ(send_signed(q.get(), ctx.get(), "lost"), MQ_ERROR_CANNOT_SIGN_DATA_EX);
  }
  g_ctl.insert_token(c.new_slot_ids ? 1 : 0);
  const int logins = calls("C_Login");
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "second"), MQ_OK);
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "third"), MQ_OK);
  EXPECT_EQ(calls("C_Login"), logins + 1) << "logged in again from the PIN source, once";

  auto got = drain(qr.get());
  ASSERT_EQ(got.size(), 3u);
  const char* bodies[] = {"first", "second", "third"};
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(string_of(got[i].body), bodies[i]);
    EXPECT_TRUE(verifies(got[i], cert));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Token, Reinsertion,
    ::testing::Values(ReinsertCase{"InternalSameSlot", false, false, false},
                      ReinsertCase{"InternalNewSlot", false, true, false},
                      ReinsertCase{"InternalSameSlotAfterFailedSend", false, false, true},
                      ReinsertCase{"InternalNewSlotAfterFailedSend", false, true, true},
                      ReinsertCase{"P256SameSlot", true, false, false},
                      ReinsertCase{"P256NewSlot", true, true, false},
                      ReinsertCase{"P256SameSlotAfterFailedSend", true, false, true},
                      ReinsertCase{"P256NewSlotAfterFailedSend", true, true, true}),
    [](const auto& tp) { return std::string(tp.param.name); });

// ---------------------------------------------------------------------------------------------
// Lost sessions: transparent

struct SessionLossCase {
  const char* name;
  const char* fn;
  CK_RV rv;
};
void PrintTo(const SessionLossCase& c, std::ostream* os) { *os << c.name; }

class SessionLoss : public Reliability, public ::testing::WithParamInterface<SessionLossCase> {};

TEST_P(SessionLoss, InjectedOnceIsTransparent) {
  const SessionLossCase& c = GetParam();
  Watchdog wd(60s, "session loss");
  std::wstring format = create_queue("session-loss");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  ASSERT_EQ(send_signed(q.get(), ctx.get(), "warm"), MQ_OK);
  const int before = calls(c.fn);
  g_ctl.fail(c.fn, c.rv, 1, 0);
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "recovered"), MQ_OK);
  EXPECT_GE(calls(c.fn), before + 2) << "the injected failure fired and the call was retried";
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "after"), MQ_OK);
  auto got = drain(qr.get());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(string_of(got[1].body), "recovered");
  for (const auto& m : got) EXPECT_TRUE(verifies(m, g_internal_cert));
}

INSTANTIATE_TEST_SUITE_P(
    Session, SessionLoss,
    ::testing::Values(SessionLossCase{"SignInitHandleInvalid", "C_SignInit",
                                      CKR_SESSION_HANDLE_INVALID},
                      SessionLossCase{"SignInitClosed", "C_SignInit", CKR_SESSION_CLOSED},
                      SessionLossCase{"SignHandleInvalid", "C_Sign", CKR_SESSION_HANDLE_INVALID},
                      SessionLossCase{"SignClosed", "C_Sign", CKR_SESSION_CLOSED}),
    [](const auto& tp) { return std::string(tp.param.name); });

// ---------------------------------------------------------------------------------------------
// Login

TEST_F(Reliability, UserNotLoggedInOnceIsRetriedWithOneLogin) {
  Watchdog wd(60s, "relogin");
  std::wstring format = create_queue("relogin");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  ASSERT_EQ(send_signed(q.get(), ctx.get(), "warm"), MQ_OK);
  const int sign_inits = calls("C_SignInit"), logins = calls("C_Login");
  g_ctl.fail("C_SignInit", CKR_USER_NOT_LOGGED_IN, 1, 0);
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "relogged"), MQ_OK);
  EXPECT_EQ(calls("C_SignInit"), sign_inits + 2);
  // The token still holds the real login (only the answer was faked), so the layer may find it
  // logged in without calling C_Login; it must never call it more than once.
  EXPECT_LE(calls("C_Login"), logins + 1);
  auto got = drain(qr.get());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(verifies(got[1], g_internal_cert));
}

// The token really logged the application out (another part of the process called C_Logout):
// the next send logs in again, exactly once.
TEST_F(Reliability, RealLogoutLogsInAgainExactlyOnce) {
  Watchdog wd(60s, "real logout");
  std::wstring format = create_queue("logout");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  ASSERT_EQ(send_signed(q.get(), ctx.get(), "warm"), MQ_OK);
  {
    CK_FUNCTION_LIST* f = g_ctl.fn;
    CK_ULONG n = 0;
    ASSERT_EQ(f->C_GetSlotList(CK_TRUE, nullptr, &n), CKR_OK);
    std::vector<CK_SLOT_ID> slots(n);
    ASSERT_EQ(f->C_GetSlotList(CK_TRUE, slots.data(), &n), CKR_OK);
    bool done = false;
    for (CK_SLOT_ID s : slots) {
      CK_TOKEN_INFO ti{};
      if (f->C_GetTokenInfo(s, &ti) != CKR_OK) continue;
      std::string label(reinterpret_cast<const char*>(ti.label), sizeof ti.label);
      if (label.substr(0, label.find_last_not_of(' ') + 1) != SoftHsmEnv::kPrimaryToken) continue;
      CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
      ASSERT_EQ(f->C_OpenSession(s, CKF_SERIAL_SESSION, nullptr, nullptr, &h), CKR_OK);
      ASSERT_EQ(f->C_Logout(h), CKR_OK);
      ASSERT_EQ(f->C_CloseSession(h), CKR_OK);
      done = true;
    }
    ASSERT_TRUE(done) << "token " << SoftHsmEnv::kPrimaryToken << " not found";
  }
  const int logins = calls("C_Login");
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "after logout"), MQ_OK);
  EXPECT_EQ(calls("C_Login"), logins + 1);
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "and again"), MQ_OK);
  EXPECT_EQ(calls("C_Login"), logins + 1);
  auto got = drain(qr.get());
  ASSERT_EQ(got.size(), 3u);
  for (const auto& m : got) EXPECT_TRUE(verifies(m, g_internal_cert));
}

TEST_F(Reliability, UserNotLoggedInForeverFailsAfterBoundedRetries) {
  Watchdog wd(60s, "persistent CKR_USER_NOT_LOGGED_IN");
  std::wstring format = create_queue("never-logged-in");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  ASSERT_EQ(send_signed(q.get(), ctx.get(), "warm"), MQ_OK);
  ASSERT_EQ(drain(qr.get()).size(), 1u);
  const int sign_inits = calls("C_SignInit"), logins = calls("C_Login");
  g_ctl.fail("C_SignInit", CKR_USER_NOT_LOGGED_IN, 1, 1);
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "cannot"), MQ_ERROR_CANNOT_SIGN_DATA_EX);
  std::printf(
      "[ info ] one send under persistent CKR_USER_NOT_LOGGED_IN: %d C_SignInit, %d "
      "C_Login\n",
      calls("C_SignInit") - sign_inits, calls("C_Login") - logins);
  // Relogin once in the signer, one recovery (which logs in) and its own relogin once: no loop.
  EXPECT_LE(calls("C_SignInit") - sign_inits, 4);
  EXPECT_LE(calls("C_Login") - logins, 2);
  Received m;
  EXPECT_EQ(receive(qr.get(), 0, &m), MQ_ERROR_IO_TIMEOUT);
  g_ctl.clear();
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "again"), MQ_OK);
}

struct PinCase {
  const char* name;
  CK_RV rv;
};
void PrintTo(const PinCase& c, std::ostream* os) { *os << c.name; }

class PinFailure : public Reliability, public ::testing::WithParamInterface<PinCase> {};

// After a removal the login is gone; the token now refuses the PIN. The PIN is submitted once
// per send at most, never in a retry loop; a PIN the token called incorrect is never submitted
// again (the card would lock).
TEST_P(PinFailure, IsNeverRetried) {
  const PinCase& c = GetParam();
  Watchdog wd(60s, "PIN failure");
  std::wstring format = create_queue("pin");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  ASSERT_EQ(send_signed(q.get(), ctx.get(), "warm"), MQ_OK);
  ASSERT_EQ(drain(qr.get()).size(), 1u);
  g_ctl.remove_token();
  g_ctl.insert_token(0);
  g_ctl.fail("C_Login", c.rv, 1, 1);
  const int logins = calls("C_Login");
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "refused 1"), MQ_ERROR_CANNOT_SIGN_DATA_EX);
  EXPECT_EQ(calls("C_Login"), logins + 1) << "the PIN was submitted more than once";
  const int after_first = calls("C_Login");
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "refused 2"), MQ_ERROR_CANNOT_SIGN_DATA_EX);
  if (c.rv == CKR_PIN_INCORRECT) {
    EXPECT_EQ(calls("C_Login"), after_first) << "an incorrect PIN was submitted again";
    // Even once the token would take it: the same PIN is not tried again until it changes.
    g_ctl.clear();
    EXPECT_EQ(send_signed(q.get(), ctx.get(), "refused 3"), MQ_ERROR_CANNOT_SIGN_DATA_EX);
    EXPECT_EQ(calls("C_Login"), after_first);
  } else {
    EXPECT_LE(calls("C_Login"), after_first + 1) << "more than one C_Login in one send";
  }
  Received m;
  EXPECT_EQ(receive(qr.get(), 0, &m), MQ_ERROR_IO_TIMEOUT) << "stored: " << string_of(m.body);
}

INSTANTIATE_TEST_SUITE_P(Login, PinFailure,
                         ::testing::Values(PinCase{"PinIncorrect", CKR_PIN_INCORRECT},
                                           PinCase{"PinLocked", CKR_PIN_LOCKED}),
                         [](const auto& tp) { return std::string(tp.param.name); });

// ---------------------------------------------------------------------------------------------
// CKR_SESSION_COUNT

// The token opens no more sessions (CKR_SESSION_COUNT on every C_OpenSession from now on):
// 8 threads sharing a context take turns with the sessions already in the pool; none fails.
TEST_F(Reliability, SessionCountMakesSendsWaitForAPooledSession) {
  Watchdog wd(180s, "sends at the session limit");
  std::wstring format = create_queue("session-count");
  Context ctx;
  {
    Queue q(format, MQ_SEND_ACCESS);
    ASSERT_EQ(send_signed(q.get(), ctx.get(), "warm"), MQ_OK);  // one session in the pool
  }
  const int opens = calls("C_OpenSession");
  g_ctl.fail("C_OpenSession", CKR_SESSION_COUNT, 1, 1);
  constexpr int kThreads = 8, kEach = 25;
  std::vector<std::vector<HRESULT>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Queue q(format, MQ_SEND_ACCESS);
      for (int i = 0; i < kEach; ++i) {
        results[t].push_back(send_signed(q.get(), ctx.get(), "s " + std::to_string(t)));
      }
    });
  }
  for (auto& th : threads) th.join();
  const int refused = calls("C_OpenSession") - opens;
  g_ctl.clear();
  int ok = 0;
  for (const auto& r : results) {
    for (HRESULT hr : r) {
      EXPECT_EQ(hr, MQ_OK) << hex(hr);
      ok += hr == MQ_OK;
    }
  }
  std::printf("[ info ] %d C_OpenSession refused with CKR_SESSION_COUNT, %d sends waited\n",
              refused, ok);
  EXPECT_GE(refused, 1) << "no thread hit the session limit: the test proved nothing";
  Queue r(format, MQ_RECEIVE_ACCESS);
  auto got = drain(r.get());
  EXPECT_EQ(got.size(), static_cast<size_t>(1 + kThreads * kEach));
  for (const auto& m : got) EXPECT_TRUE(verifies(m, g_internal_cert));
}

// One CKR_SESSION_COUNT while the pool is empty (its session was discarded after a failed
// C_Sign): that send may fail after its bounded wait, but the token must not stay unusable.
TEST_F(Reliability, TransientSessionCountDoesNotDisableTheToken) {
  Watchdog wd(120s, "transient CKR_SESSION_COUNT");
  std::wstring format = create_queue("session-count-once");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  ASSERT_EQ(send_signed(q.get(), ctx.get(), "warm"), MQ_OK);
  g_ctl.fail("C_Sign", CKR_DEVICE_ERROR, 1, 0);  // the pooled session is closed, not reused
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "device error"), MQ_ERROR_CANNOT_SIGN_DATA_EX);
  g_ctl.fail("C_OpenSession", CKR_SESSION_COUNT, 1, 0);  // once
  auto t0 = Clock::now();
  HRESULT hr = send_signed(q.get(), ctx.get(), "at the limit");
  std::printf("[ info ] send with CKR_SESSION_COUNT and an empty pool: %s after %.3f s\n",
              hex(hr).c_str(), seconds_since(t0));
  EXPECT_TRUE(hr == MQ_OK || hr == MQ_ERROR_INSUFFICIENT_RESOURCES) << hex(hr);
  // Sessions are available again: the following sends must work.
  for (int i = 0; i < 3; ++i) {
    t0 = Clock::now();
    HRESULT again = send_signed(q.get(), ctx.get(), "later " + std::to_string(i));
    EXPECT_EQ(again, MQ_OK) << "send " << i << " after the limit went away: " << hex(again)
                            << " after " << seconds_since(t0) << " s";
  }
  auto got = drain(qr.get());
  for (const auto& m : got) EXPECT_TRUE(verifies(m, g_internal_cert));
}

// ---------------------------------------------------------------------------------------------
// fork

// Exit codes of a forked child that sent one message with the inherited context.
constexpr int kChildSent = 0, kChildCannotSign = 10, kChildOtherError = 20;

int child_send_once(const std::wstring& format, HANDLE ctx, const std::string& body,
                    unsigned alarm_seconds = 20) {
  ::alarm(alarm_seconds);  // a deadlock ends as SIGALRM, which the parent reports
  QUEUEHANDLE q = nullptr;
  if (MQOpenQueue(format.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &q) != MQ_OK) return 30;
  HRESULT hr = send_signed(q, ctx, body);
  MQCloseQueue(q);
  if (hr == MQ_OK) return kChildSent;
  std::fprintf(stderr, "forked child: MQSendMessage returned %s\n", hex(hr).c_str());
  return hr == MQ_ERROR_CANNOT_SIGN_DATA_EX ? kChildCannotSign : kChildOtherError;
}

TEST_F(Reliability, ForkedChildUsesInheritedContextOrFailsClearly) {
  Watchdog wd(120s, "fork");
  std::wstring format = create_queue("fork");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  // RECOVERABLE: committed by this thread, so no express writer is busy at the fork and the
  // test is about the security context alone (ForkWhileAnotherThreadSignsNeverDeadlocks covers
  // a busy process).
  ASSERT_EQ(send_signed(q.get(), ctx.get(), bytes_of("parent before"), MQMSG_DELIVERY_RECOVERABLE),
            MQ_OK);  // sessions and login live
  std::fflush(nullptr);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(child_send_once(format, ctx.get(), "child"));
  auto status = wait_for(pid, 60s);
  ASSERT_TRUE(status.has_value()) << "the forked child hung (deadlock) and was killed";
  ASSERT_TRUE(WIFEXITED(*status)) << describe(*status);
  const int code = WEXITSTATUS(*status);
  EXPECT_TRUE(code == kChildSent || code == kChildCannotSign) << describe(*status);
  std::printf("[ info ] forked child: %s\n", code == kChildSent ? "signed and sent" : "failed");

  // The parent is unaffected by what its child did with the token.
  EXPECT_EQ(send_signed(q.get(), ctx.get(), "parent after"), MQ_OK);
  auto got = drain(qr.get());
  std::vector<std::string> bodies;
  for (const auto& m : got) {
    EXPECT_TRUE(verifies(m, g_internal_cert));
    bodies.push_back(string_of(m.body));
  }
  std::vector<std::string> want = {"parent before", "parent after"};
  if (code == kChildSent) want.insert(want.begin() + 1, "child");
  EXPECT_EQ(bodies, want);
}

// The runtime's promise (DESIGN.md, docs): the module is re-initialised lazily after fork, and
// the inherited context finds its token, logs in and finds its key again, so the child signs.
TEST_F(Reliability, ForkedChildSignsWithTheInheritedContext) {
  Watchdog wd(120s, "fork");
  std::wstring format = create_queue("fork-signs");
  Queue q(format, MQ_SEND_ACCESS), qr(format, MQ_RECEIVE_ACCESS);
  Context ctx;
  ASSERT_EQ(send_signed(q.get(), ctx.get(), bytes_of("parent"), MQMSG_DELIVERY_RECOVERABLE), MQ_OK);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Exit code: bit 0 set when the first send failed, bit 1 when the second did.
    int first = child_send_once(format, ctx.get(), "child 1");
    int second = child_send_once(format, ctx.get(), "child 2");
    ::_exit((first != kChildSent ? 1 : 0) | (second != kChildSent ? 2 : 0));
  }
  auto status = wait_for(pid, 60s);
  ASSERT_TRUE(status.has_value()) << "the forked child hung (deadlock) and was killed";
  ASSERT_TRUE(WIFEXITED(*status)) << describe(*status);
  const int failed = WEXITSTATUS(*status);
  EXPECT_EQ(failed & 1, 0) << "the child's first send with the inherited context failed";
  EXPECT_EQ(failed & 2, 0) << "the child's second send with the inherited context failed";
  std::vector<std::string> bodies;
  for (const auto& m : drain(qr.get())) {
    EXPECT_TRUE(verifies(m, g_internal_cert));
    bodies.push_back(string_of(m.body));
  }
  std::vector<std::string> want = {"parent"};
  if (!(failed & 1)) want.push_back("child 1");
  if (!(failed & 2)) want.push_back("child 2");
  EXPECT_EQ(bodies, want) << "what the child reported sent is exactly what arrived";
}

// The harder case: another thread is signing with the same context when the process forks, so
// locks of the runtime, the module or SoftHSM may be held at the fork. The child must still
// sign or fail clearly, never deadlock.
TEST_F(Reliability, ForkWhileAnotherThreadSignsNeverDeadlocks) {
  Watchdog wd(400s, "fork while signing");
  std::wstring format = create_queue("fork-busy");
  Context ctx;
  std::atomic<bool> stop{false};
  std::atomic<int> parent_sent{0}, parent_failed{0};
  std::thread busy([&] {
    Queue q(format, MQ_SEND_ACCESS);
    while (!stop.load()) {
      if (send_signed(q.get(), ctx.get(), "busy") == MQ_OK) {
        parent_sent.fetch_add(1);
      } else {
        parent_failed.fetch_add(1);
      }
    }
  });
  while (parent_sent.load() < 5) std::this_thread::sleep_for(1ms);
  // Stops at the first child that hangs (one deadlock is enough). A fork lands inside a short
  // critical section of another thread only now and then, so it takes many forks to show.
  constexpr int kForks = 100;
  int sent = 0, cannot_sign = 0;
  std::vector<std::string> bad;
  for (int i = 0; i < kForks; ++i) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    // The parent gives up first (and prints the child's stacks); the alarm is a backstop.
    if (pid == 0) ::_exit(child_send_once(format, ctx.get(), "child " + std::to_string(i), 60));
    auto status = wait_for(pid, 20s);
    if (!status) {
      bad.push_back("fork " + std::to_string(i) + ": hung (deadlock), killed");
    } else if (WIFEXITED(*status) && WEXITSTATUS(*status) == kChildSent) {
      ++sent;
    } else if (WIFEXITED(*status) && WEXITSTATUS(*status) == kChildCannotSign) {
      ++cannot_sign;
    } else {
      bad.push_back("fork " + std::to_string(i) + ": " + describe(*status));
    }
    if (!bad.empty()) break;
    std::this_thread::sleep_for(3ms);  // let the busy thread get into a different phase
  }
  stop.store(true);
  busy.join();
  std::printf("[ info ] forks while signing: %d children sent, %d could not sign, %zu bad\n", sent,
              cannot_sign, bad.size());
  for (const auto& b : bad) ADD_FAILURE() << b;
  EXPECT_EQ(parent_failed.load(), 0);
  Queue r(format, MQ_RECEIVE_ACCESS);
  int children = 0;
  for (const auto& m : drain(r.get())) {
    EXPECT_TRUE(verifies(m, g_internal_cert));
    children += string_of(m.body).rfind("child ", 0) == 0;
  }
  EXPECT_EQ(children, sent);
}

// ---------------------------------------------------------------------------------------------
// Exactly once: THREADS x MESSAGES signed sends, two receiver processes

void exactly_once(bool shared_context) {
  const int threads = env_int("MQSEC_REL_THREADS", 8);
  const int each = env_int("MQSEC_REL_MESSAGES", 5000);
  // P-256 by default (fast on SoftHSM); MQSEC_REL_KEY=rsa uses the internal RSA-2048 certificate.
  const bool rsa = getenv_str("MQSEC_REL_KEY") == "rsa";
  const fs::path& cert_file = rsa ? g_internal_cert_file : g_p256_cert_file;
  Watchdog wd(900s, "exactly-once run");
  std::wstring format = create_queue(shared_context ? "once-shared" : "once-separate");
  const fs::path dir =
      SoftHsmEnv::instance().dir() / (shared_context ? "once-shared" : "once-separate");
  fs::create_directories(dir);
  const fs::path done = dir / "done";
  std::vector<pid_t> receivers;
  for (int i = 0; i < 2; ++i) {
    receivers.push_back(spawn({{kChildRole, "receiver"},
                               {"MQSEC_REL_QUEUE", narrow(format)},
                               {"MQSEC_REL_DONE", done.string()},
                               {"MQSEC_REL_CERT", cert_file.string()},
                               {"MQSEC_REL_OUT", (dir / ("recv" + std::to_string(i))).string()}}));
  }

  std::vector<std::unique_ptr<Context>> contexts;
  for (int t = 0; t < (shared_context ? 1 : threads); ++t) {
    contexts.push_back(std::make_unique<Context>(rsa ? Bytes{} : g_p256_cert));
  }
  std::vector<std::vector<std::string>> errors(threads);
  auto t0 = Clock::now();
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t) {
    senders.emplace_back([&, t] {
      Queue q(format, MQ_SEND_ACCESS);
      HANDLE ctx = contexts[shared_context ? 0 : t]->get();
      for (int i = 0; i < each; ++i) {
        // "m <t> <i>", then a variable padding the receivers cut off at " x".
        std::string body = "m " + std::to_string(t) + " " + std::to_string(i) + " " +
                           std::string(static_cast<size_t>(1 + i % 17), 'x');
        HRESULT hr = send_signed(q.get(), ctx, body);
        if (hr != MQ_OK) errors[t].push_back("message " + std::to_string(i) + ": " + hex(hr));
      }
    });
  }
  for (auto& th : senders) th.join();
  const double send_time = seconds_since(t0);
  mqsec::testing::write_file(done, "done");
  std::vector<std::string> receiver_problems;
  for (pid_t pid : receivers) {
    auto status = wait_for(pid, 600s);
    if (!status) {
      receiver_problems.push_back("a receiver hung and was killed");
    } else if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      receiver_problems.push_back("a receiver ended with " + describe(*status));
    }
  }
  const double total_time = seconds_since(t0);
  for (const auto& p : receiver_problems) ADD_FAILURE() << p;
  std::printf(
      "[ time ] %d threads x %d signed messages (%s, %s context%s): sent in %.1f s "
      "(%.0f/s), all received in %.1f s\n",
      threads, each, rsa ? "RSA-2048" : "P-256", shared_context ? "one shared" : "separate",
      shared_context ? "" : "s", send_time, threads * each / send_time, total_time);

  size_t send_errors = 0;
  for (int t = 0; t < threads; ++t) {
    send_errors += errors[t].size();
    for (size_t k = 0; k < std::min<size_t>(errors[t].size(), 5); ++k)
      ADD_FAILURE() << "thread " << t << " " << errors[t][k];
  }
  EXPECT_EQ(send_errors, 0u);

  std::map<std::pair<int, int>, int> seen;
  std::vector<size_t> per_receiver;
  size_t bad = 0, duplicates = 0, foreign = 0;
  for (int i = 0; i < 2; ++i) {
    std::ifstream in(dir / ("recv" + std::to_string(i)));
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      std::istringstream ls(line);
      std::string m, verdict;
      int t = -1, k = -1;
      if (!(ls >> m >> t >> k >> verdict) || m != "m" || t < 0 || t >= threads || k < 0 ||
          k >= each) {
        if (++foreign <= 5) ADD_FAILURE() << "unexpected line from receiver " << i << ": " << line;
        continue;
      }
      if (verdict != "OK" && ++bad <= 5) ADD_FAILURE() << "not verified: " << line;
      if (++seen[{t, k}] == 2 && ++duplicates <= 5) ADD_FAILURE() << "received twice: " << line;
    }
    per_receiver.push_back(n);
  }
  const size_t want = static_cast<size_t>(threads) * static_cast<size_t>(each);
  EXPECT_EQ(seen.size(), want) << "distinct messages received";
  EXPECT_EQ(duplicates, 0u);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(foreign, 0u);
  std::printf("[ info ] receiver 1 got %zu, receiver 2 got %zu\n", per_receiver[0],
              per_receiver[1]);
  Queue r(format, MQ_RECEIVE_ACCESS);
  EXPECT_TRUE(drain(r.get()).empty()) << "messages left in the queue";
}

TEST_F(Reliability, ExactlyOnceWithOneSharedContextAndTwoReceiverProcesses) {
  exactly_once(/*shared_context=*/true);
}

TEST_F(Reliability, ExactlyOnceWithSeparateContextsAndTwoReceiverProcesses) {
  exactly_once(/*shared_context=*/false);
}

// ---------------------------------------------------------------------------------------------
// SIGKILL during a stream of RECOVERABLE messages

TEST_F(Reliability, SigkilledSenderLosesNoAcknowledgedMessageAndDeliversNothingPartial) {
  Watchdog wd(300s, "SIGKILL of a sender");
  constexpr int kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::wstring format = create_queue("sigkill");
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = spawn({{kChildRole, "stream-sender"},
                       {"MQSEC_REL_QUEUE", narrow(format)},
                       {"MQSEC_REL_CERT", g_p256_cert_file.string()}},
                      fds[1]);
    ::close(fds[1]);

    // Reads acknowledgements; SIGKILL once enough arrived (a different count each round).
    const size_t kill_after = 20 + 37 * static_cast<size_t>(round);
    std::vector<long> acked;
    std::string pending, child_error;
    bool killed = false;
    const auto deadline = Clock::now() + 120s;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EOF: the child is gone
      pending.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        if (!line.empty() && line[0] == 'E') {
          child_error = line;
        } else {
          acked.push_back(std::stol(line));
        }
      }
      if (!killed && (acked.size() >= kill_after || Clock::now() > deadline)) {
        ::kill(pid, SIGKILL);
        killed = true;
      }
    }
    ::close(fds[0]);
    auto status = wait_for(pid, 30s);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(child_error.empty()) << "the sender failed: " << child_error;
    ASSERT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << describe(*status);
    EXPECT_TRUE(pending.empty()) << "a partial acknowledgement line: " << pending;
    ASSERT_GE(acked.size(), kill_after);
    for (size_t i = 0; i < acked.size(); ++i) ASSERT_EQ(acked[i], static_cast<long>(i));

    // Every acknowledged message exactly once and verified; at most the one in flight besides.
    Queue r(format, MQ_RECEIVE_ACCESS);
    std::map<long, int> got;
    for (const Received& m : drain(r.get())) {
      std::istringstream in(string_of(m.body));
      std::string k;
      long i = -1;
      in >> k >> i;
      EXPECT_TRUE(k == "k" && i >= 0) << "not a stream message";
      EXPECT_EQ(m.body, stream_body(i)) << "message " << i << " is not whole";
      EXPECT_TRUE(verifies(m, g_p256_cert)) << "message " << i;
      ++got[i];
    }
    const long last = static_cast<long>(acked.size()) - 1;
    for (long i = 0; i <= last; ++i) {
      EXPECT_EQ(got.count(i) ? got[i] : 0, 1) << "acknowledged message " << i;
    }
    for (const auto& [i, n] : got) {
      EXPECT_LE(i, last + 1) << "message " << i << " was never sent";
      EXPECT_EQ(n, 1) << "message " << i << " delivered " << n << " times";
    }
    std::printf("[ info ] round %d: killed after %zu acknowledged, %zu in the queue\n", round,
                acked.size(), got.size());
  }
}

// ---------------------------------------------------------------------------------------------
// SIGKILL of a receiver in the middle of a stream of receives

TEST_F(Reliability, SigkilledReceiverDuplicatesNothingAndLosesAtMostItsMessageInFlight) {
  Watchdog wd(300s, "SIGKILL of a receiver");
  constexpr long kMessages = 1000;
  // After the receiver's report, wait a different time before each kill so that the kills land
  // in different phases of the next receive (reading, verifying, removing, reporting).
  constexpr int kDelayUs[] = {0, 50, 120, 200, 300, 450, 700, 1000};
  constexpr int kKills = static_cast<int>(std::size(kDelayUs));
  std::wstring format = create_queue("rx-sigkill");
  {
    Queue q(format, MQ_SEND_ACCESS);
    Context ctx(g_p256_cert);
    for (long i = 0; i < kMessages; ++i)
      ASSERT_EQ(send_signed(q.get(), ctx.get(), stream_body(i)), MQ_OK);
  }  // closing the handle commits this process's express messages
  std::map<long, int> got;
  size_t bad = 0;
  auto count = [&](long i, bool ok) {
    if (!ok) ++bad;
    if (++got[i] == 2) ADD_FAILURE() << "message " << i << " received twice";
  };
  size_t reported_before_kills = 0;
  for (int round = 0; round < kKills; ++round) {
    SCOPED_TRACE("kill " + std::to_string(round));
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = spawn({{kChildRole, "stream-receiver"},
                       {"MQSEC_REL_QUEUE", narrow(format)},
                       {"MQSEC_REL_CERT", g_p256_cert_file.string()}},
                      fds[1]);
    ::close(fds[1]);
    // SIGKILL once this receiver reported a different number of messages each round.
    const size_t kill_after = 10 + 15 * static_cast<size_t>(round);
    size_t reported = 0;
    std::string pending, child_error;
    bool killed = false;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EOF: the child is gone
      pending.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        if (!line.empty() && line[0] == 'E') {
          child_error = line;
        } else if (!line.empty() && line[0] == 'B') {
          count(std::stol(line.substr(2)), false);
          ++reported;
        } else {
          count(std::stol(line), true);
          ++reported;
        }
      }
      if (!killed && reported >= kill_after) {
        std::this_thread::sleep_for(std::chrono::microseconds(kDelayUs[round]));
        ::kill(pid, SIGKILL);
        killed = true;
      }
    }
    ::close(fds[0]);
    auto status = wait_for(pid, 60s);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(child_error.empty()) << "the receiver failed: " << child_error;
    ASSERT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << describe(*status);
    ASSERT_GE(reported, kill_after);
    reported_before_kills += reported;
  }
  ASSERT_LT(reported_before_kills, static_cast<size_t>(kMessages))
      << "no message left after the kills";
  // The rest, here: the dead receivers' store locks must not hold this receive up.
  {
    Queue r(format, MQ_RECEIVE_ACCESS);
    for (const Received& m : drain(r.get())) {
      std::istringstream in(string_of(m.body));
      std::string k;
      long i = -1;
      in >> k >> i;
      count(i, k == "k" && m.body == stream_body(i) && verifies(m, g_p256_cert));
    }
    EXPECT_TRUE(drain(r.get()).empty());
  }
  size_t missing = 0;
  for (long i = 0; i < kMessages; ++i) missing += got.count(i) ? 0 : 1;
  for (const auto& [i, n] : got)
    EXPECT_TRUE(i >= 0 && i < kMessages) << "message " << i << " was never sent";
  EXPECT_EQ(bad, 0u) << "messages not whole or not verified";
  // A receiver killed after its removal committed and before it reported takes that one
  // message with it; nothing else may go missing.
  EXPECT_LE(missing, static_cast<size_t>(kKills));
  std::printf(
      "[ info ] %d receivers killed after reporting %zu messages; %zu missing (each the "
      "killed receiver's message in flight)\n",
      kKills, reported_before_kills, missing);
}

}  // namespace
