// A fault-injection PKCS#11 module for mqsec's reliability tests (issue 5, item 1).
//
// Loaded like any Cryptoki library, it dlopens the real module named by MQSEC_FAULT_TARGET
// (default: SoftHSM) and forwards every call to it, except when the test, through the control
// API of tests/fault/fault_control.h (or MQSEC_FAULT_SPEC), asked a call to fail or pulled the
// token out. Only C_GetFunctionList and the mqsec_fault_* functions are exported.
//
// Sessions get handles of our own (a counter that never reuses a value), mapped to the real
// module's. That keeps a session opened before a removal distinguishable from a new one even
// when the real module reuses handle numbers (SoftHSM does), which is exactly the confusion a
// real card removal causes and our layer must survive.
//
// Locking: one mutex guards the control state and is never held while a call is forwarded.
// Removal waits for forwarded session calls already in progress before it closes the real
// sessions, because SoftHSM does not tolerate a session being closed under a running call.
#include "tests/fault/fault_control.h"

#include "pkcs11/cryptoki.hpp"

#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <thread>
#include <vector>

#define MQSEC_FAULT_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr const char* kDefaultTarget = "/usr/lib/softhsm/libsofthsm2.so";
constexpr CK_SLOT_ID kMovedSlotOffset = 1000;
constexpr CK_SESSION_HANDLE kFirstHandle = 0x10001;  // distinct from SoftHSM's small numbers

struct Rule {
  std::string fn;
  CK_RV rv;
  long at;  // the call number (of fn) at which the rule starts to fire
  bool persistent;
};

struct SessionRecord {
  CK_SESSION_HANDLE real;
  CK_SLOT_ID real_slot;
  bool removed;  // the token went away under it: the next call reports CKR_DEVICE_REMOVED
};

struct State {
  std::mutex mu;
  std::condition_variable idle;  // in_flight dropped to 0
  std::map<std::string, long, std::less<>> counts;
  std::vector<Rule> rules;
  std::unordered_map<CK_SESSION_HANDLE, SessionRecord> sessions;
  CK_SESSION_HANDLE next_handle = kFirstHandle;
  bool removed = false;
  uint64_t removals = 0;       // bumped by each removal (for C_OpenSession racing with one)
  CK_SLOT_ID slot_offset = 0;  // virtual slot id = real slot id + slot_offset
  int in_flight = 0;           // forwarded session calls in progress
  bool spec_read = false;
};

// Immortal: the module may be used from other libraries' static destructors at exit.
State& st() {
  static State* s = new State;
  return *s;
}

std::mutex g_load_mu;
std::atomic<CK_FUNCTION_LIST*> g_real{nullptr};
CK_FUNCTION_LIST g_list;  // ours, filled in by fill_list()

CK_FUNCTION_LIST* real() { return g_real.load(std::memory_order_acquire); }

// Milliseconds every C_Sign sleeps before it is forwarded (a slow card; 0: none).
std::atomic<int> g_sign_delay_ms{0};

// A fork() while another thread holds the mutex would leave it locked forever in the child.
void register_atfork() {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork([] { st().mu.lock(); }, [] { st().mu.unlock(); },
                   [] {
                     st().in_flight = 0;  // the threads that had calls running are gone
                     st().mu.unlock();
                   });
  });
}

// dlopens the target once. Returns CKR_OK or CKR_GENERAL_ERROR (with a line on stderr: the
// test would otherwise only see an opaque Cryptoki error).
CK_RV load_real() {
  register_atfork();
  if (real() != nullptr) return CKR_OK;
  std::lock_guard lock(g_load_mu);
  if (real() != nullptr) return CKR_OK;
  const char* env = std::getenv("MQSEC_FAULT_TARGET");
  const char* path = (env != nullptr && *env != '\0') ? env : kDefaultTarget;
  void* dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (dl == nullptr) {
    const char* why = dlerror();
    std::fprintf(stderr, "mqsec_fault_pkcs11: cannot load target module '%s': %s\n", path,
                 why != nullptr ? why : "unknown error");
    return CKR_GENERAL_ERROR;
  }
  auto get = reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl, "C_GetFunctionList"));
  CK_FUNCTION_LIST* list = nullptr;
  if (get == nullptr || get(&list) != CKR_OK || list == nullptr) {
    std::fprintf(stderr, "mqsec_fault_pkcs11: '%s' has no usable C_GetFunctionList\n", path);
    dlclose(dl);
    return CKR_GENERAL_ERROR;
  }
  g_real.store(list, std::memory_order_release);  // never dlclosed: forwarders may be running
  return CKR_OK;
}

// Counts a call of `fn` and returns the injected failure for it, or CKR_OK. mu held.
CK_RV count_and_match(State& s, std::string_view fn) {
  auto it = s.counts.find(fn);
  if (it == s.counts.end()) it = s.counts.emplace(std::string(fn), 0).first;
  long n = ++it->second;
  for (auto r = s.rules.begin(); r != s.rules.end(); ++r) {
    if (r->fn != fn) continue;
    if (r->persistent ? n >= r->at : n == r->at) {
      CK_RV rv = r->rv;
      if (!r->persistent) s.rules.erase(r);
      return rv;
    }
  }
  return CKR_OK;
}

void add_rule(State& s, std::string fn, CK_RV rv, int nth, bool persistent) {
  auto it = s.counts.find(fn);
  long now = it == s.counts.end() ? 0 : it->second;
  s.rules.push_back({std::move(fn), rv, now + (nth < 1 ? 1 : nth), persistent});
}

// --- MQSEC_FAULT_SPEC ------------------------------------------------------------------------

// clang-format off
#define MQSEC_FAULT_RV(name) {#name, name},
const std::map<std::string_view, CK_RV> kRvNames = {
    MQSEC_FAULT_RV(CKR_OK) MQSEC_FAULT_RV(CKR_CANCEL) MQSEC_FAULT_RV(CKR_HOST_MEMORY)
    MQSEC_FAULT_RV(CKR_SLOT_ID_INVALID) MQSEC_FAULT_RV(CKR_GENERAL_ERROR)
    MQSEC_FAULT_RV(CKR_FUNCTION_FAILED) MQSEC_FAULT_RV(CKR_ARGUMENTS_BAD)
    MQSEC_FAULT_RV(CKR_NO_EVENT) MQSEC_FAULT_RV(CKR_CANT_LOCK)
    MQSEC_FAULT_RV(CKR_ATTRIBUTE_SENSITIVE) MQSEC_FAULT_RV(CKR_ATTRIBUTE_TYPE_INVALID)
    MQSEC_FAULT_RV(CKR_DATA_INVALID) MQSEC_FAULT_RV(CKR_DATA_LEN_RANGE)
    MQSEC_FAULT_RV(CKR_DEVICE_ERROR) MQSEC_FAULT_RV(CKR_DEVICE_MEMORY)
    MQSEC_FAULT_RV(CKR_DEVICE_REMOVED) MQSEC_FAULT_RV(CKR_FUNCTION_CANCELED)
    MQSEC_FAULT_RV(CKR_FUNCTION_NOT_SUPPORTED) MQSEC_FAULT_RV(CKR_KEY_HANDLE_INVALID)
    MQSEC_FAULT_RV(CKR_KEY_SIZE_RANGE) MQSEC_FAULT_RV(CKR_KEY_TYPE_INCONSISTENT)
    MQSEC_FAULT_RV(CKR_KEY_FUNCTION_NOT_PERMITTED) MQSEC_FAULT_RV(CKR_MECHANISM_INVALID)
    MQSEC_FAULT_RV(CKR_MECHANISM_PARAM_INVALID) MQSEC_FAULT_RV(CKR_OBJECT_HANDLE_INVALID)
    MQSEC_FAULT_RV(CKR_OPERATION_ACTIVE) MQSEC_FAULT_RV(CKR_OPERATION_NOT_INITIALIZED)
    MQSEC_FAULT_RV(CKR_PIN_INCORRECT) MQSEC_FAULT_RV(CKR_PIN_INVALID)
    MQSEC_FAULT_RV(CKR_PIN_LEN_RANGE) MQSEC_FAULT_RV(CKR_PIN_EXPIRED) MQSEC_FAULT_RV(CKR_PIN_LOCKED)
    MQSEC_FAULT_RV(CKR_SESSION_CLOSED) MQSEC_FAULT_RV(CKR_SESSION_COUNT)
    MQSEC_FAULT_RV(CKR_SESSION_HANDLE_INVALID) MQSEC_FAULT_RV(CKR_SESSION_READ_ONLY)
    MQSEC_FAULT_RV(CKR_SESSION_EXISTS) MQSEC_FAULT_RV(CKR_SIGNATURE_INVALID)
    MQSEC_FAULT_RV(CKR_SIGNATURE_LEN_RANGE) MQSEC_FAULT_RV(CKR_TEMPLATE_INCOMPLETE)
    MQSEC_FAULT_RV(CKR_TEMPLATE_INCONSISTENT) MQSEC_FAULT_RV(CKR_TOKEN_NOT_PRESENT)
    MQSEC_FAULT_RV(CKR_TOKEN_NOT_RECOGNIZED) MQSEC_FAULT_RV(CKR_TOKEN_WRITE_PROTECTED)
    MQSEC_FAULT_RV(CKR_USER_ALREADY_LOGGED_IN) MQSEC_FAULT_RV(CKR_USER_NOT_LOGGED_IN)
    MQSEC_FAULT_RV(CKR_USER_PIN_NOT_INITIALIZED) MQSEC_FAULT_RV(CKR_USER_TYPE_INVALID)
    MQSEC_FAULT_RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN) MQSEC_FAULT_RV(CKR_USER_TOO_MANY_TYPES)
    MQSEC_FAULT_RV(CKR_RANDOM_NO_RNG) MQSEC_FAULT_RV(CKR_BUFFER_TOO_SMALL)
    MQSEC_FAULT_RV(CKR_CRYPTOKI_NOT_INITIALIZED) MQSEC_FAULT_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    MQSEC_FAULT_RV(CKR_MUTEX_BAD) MQSEC_FAULT_RV(CKR_FUNCTION_REJECTED)
};
// clang-format on
#undef MQSEC_FAULT_RV

bool parse_rv(const std::string& text, CK_RV* rv) {
  if (auto it = kRvNames.find(text); it != kRvNames.end()) {
    *rv = it->second;
    return true;
  }
  if (text.empty() || text[0] < '0' || text[0] > '9') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(text.c_str(), &end, 0);
  if (errno != 0 || *end != '\0') return false;
  *rv = v;
  return true;
}

bool parse_int(const std::string& text, int* out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || errno != 0 || *end != '\0' || v < 0 || v > 1000000000) return false;
  *out = static_cast<int>(v);
  return true;
}

// Parses MQSEC_FAULT_SPEC into `out`. Returns false (nothing added) on any malformed rule.
bool parse_spec(const std::string& spec, std::vector<Rule>* out, std::string* bad) {
  std::vector<Rule> rules;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t comma = spec.find(',', pos);
    if (comma == std::string::npos) comma = spec.size();
    std::string item = spec.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) continue;
    std::vector<std::string> f;
    for (size_t p = 0;;) {
      size_t c = item.find(':', p);
      f.push_back(item.substr(p, c == std::string::npos ? std::string::npos : c - p));
      if (c == std::string::npos) break;
      p = c + 1;
    }
    CK_RV rv = 0;
    int nth = 0, persistent = 0;
    if (f.size() != 4 || f[0].rfind("C_", 0) != 0 || !parse_rv(f[1], &rv) ||
        !parse_int(f[2], &nth) || !parse_int(f[3], &persistent)) {
      *bad = item;
      return false;
    }
    rules.push_back({f[0], rv, nth, persistent != 0});  // `at` holds nth until add_rule()
  }
  *out = std::move(rules);
  return true;
}

// Reads MQSEC_FAULT_SPEC once per process lineage (a forked child that re-initialises keeps
// the rules it inherited rather than adding them twice).
CK_RV read_spec_once() {
  State& s = st();
  std::lock_guard lock(s.mu);
  if (s.spec_read) return CKR_OK;
  const char* env = std::getenv("MQSEC_FAULT_SPEC");
  std::vector<Rule> rules;
  std::string bad;
  if (env != nullptr && !parse_spec(env, &rules, &bad)) {
    std::fprintf(stderr,
                 "mqsec_fault_pkcs11: bad MQSEC_FAULT_SPEC rule '%s' (want "
                 "fn:rv:nth:persistent, e.g. C_Sign:CKR_DEVICE_ERROR:3:0)\n",
                 bad.c_str());
    return CKR_GENERAL_ERROR;
  }
  s.spec_read = true;
  if (const char* d = std::getenv("MQSEC_FAULT_SIGN_DELAY_MS"); d != nullptr) {
    int ms = 0;
    if (!parse_int(d, &ms)) {
      std::fprintf(stderr, "mqsec_fault_pkcs11: bad MQSEC_FAULT_SIGN_DELAY_MS '%s'\n", d);
      return CKR_GENERAL_ERROR;
    }
    g_sign_delay_ms = ms;
  }
  for (Rule& r : rules) add_rule(s, std::move(r.fn), r.rv, static_cast<int>(r.at), r.persistent);
  return CKR_OK;
}

// --- Entry checks ----------------------------------------------------------------------------

// A call that is not about a slot or a session: count it, apply rules.
CK_RV enter(const char* fn) {
  State& s = st();
  std::lock_guard lock(s.mu);
  CK_RV rv = count_and_match(s, fn);
  if (rv == CKR_OK && real() == nullptr) rv = CKR_CRYPTOKI_NOT_INITIALIZED;
  return rv;
}

// A call about a slot: also translates the slot id and reports whether tokens are removed.
CK_RV enter_slot(const char* fn, CK_SLOT_ID slot, CK_SLOT_ID* real_slot, bool* removed,
                 uint64_t* removals = nullptr) {
  State& s = st();
  std::lock_guard lock(s.mu);
  CK_RV rv = count_and_match(s, fn);
  if (rv != CKR_OK) return rv;
  if (real() == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (slot < s.slot_offset) return CKR_SLOT_ID_INVALID;
  *real_slot = slot - s.slot_offset;
  *removed = s.removed;
  if (removals != nullptr) *removals = s.removals;
  return CKR_OK;
}

CK_SLOT_ID to_virtual(CK_SLOT_ID real_slot) {
  State& s = st();
  std::lock_guard lock(s.mu);
  return real_slot + s.slot_offset;
}

// A call on a session: maps the handle and, on success, registers the call as in flight
// (leave_session() must follow). Sessions from before a removal fail here.
CK_RV enter_session(const char* fn, CK_SESSION_HANDLE h, SessionRecord* rec) {
  State& s = st();
  std::lock_guard lock(s.mu);
  CK_RV rv = count_and_match(s, fn);
  if (rv != CKR_OK) return rv;
  if (real() == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
  auto it = s.sessions.find(h);
  if (it == s.sessions.end()) return CKR_SESSION_HANDLE_INVALID;
  if (it->second.removed) {
    s.sessions.erase(it);  // from now on the handle is simply unknown
    return CKR_DEVICE_REMOVED;
  }
  *rec = it->second;
  ++s.in_flight;
  return CKR_OK;
}

void leave_session() {
  State& s = st();
  std::lock_guard lock(s.mu);
  if (--s.in_flight == 0) s.idle.notify_all();
}

// Forwards a call on a session to the real module.
template <auto Member, typename... A>
CK_RV forward_session(const char* fn, CK_SESSION_HANDLE h, A... a) {
  SessionRecord rec{};
  if (CK_RV rv = enter_session(fn, h, &rec); rv != CKR_OK) return rv;
  // A slow card: each signature takes this long (mqsec_fault_set_sign_delay).
  if (const int ms = g_sign_delay_ms.load(std::memory_order_relaxed);
      ms > 0 && std::strcmp(fn, "C_Sign") == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
  CK_RV rv = (real()->*Member)(rec.real, a...);
  leave_session();
  return rv;
}

// --- Functions with special handling ---------------------------------------------------------

CK_RV fault_Initialize(void* args) {
  {
    State& s = st();
    std::lock_guard lock(s.mu);
    if (CK_RV rv = count_and_match(s, "C_Initialize"); rv != CKR_OK) return rv;
  }
  if (CK_RV rv = load_real(); rv != CKR_OK) return rv;
  if (CK_RV rv = read_spec_once(); rv != CKR_OK) return rv;
  CK_RV rv = real()->C_Initialize(args);
  if (rv == CKR_OK) {
    // A fresh initialisation (first, after C_Finalize, or in a forked child): no session
    // of before is valid any more.
    State& s = st();
    std::lock_guard lock(s.mu);
    s.sessions.clear();
  }
  return rv;
}

CK_RV fault_Finalize(void* reserved) {
  if (CK_RV rv = enter("C_Finalize"); rv != CKR_OK) return rv;
  CK_RV rv = real()->C_Finalize(reserved);
  if (rv == CKR_OK) {
    State& s = st();
    std::lock_guard lock(s.mu);
    s.sessions.clear();
  }
  return rv;
}

CK_RV fault_GetInfo(CK_INFO* info) {
  if (CK_RV rv = enter("C_GetInfo"); rv != CKR_OK) return rv;
  return real()->C_GetInfo(info);
}

CK_RV fault_GetFunctionList(CK_FUNCTION_LIST** list);

CK_RV fault_GetSlotList(CK_BBOOL present, CK_SLOT_ID* list, CK_ULONG* count) {
  {
    State& s = st();
    std::lock_guard lock(s.mu);
    if (CK_RV rv = count_and_match(s, "C_GetSlotList"); rv != CKR_OK) return rv;
    if (real() == nullptr) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (present && s.removed) {
      if (count == nullptr) return CKR_ARGUMENTS_BAD;
      *count = 0;
      return CKR_OK;
    }
  }
  CK_RV rv = real()->C_GetSlotList(present, list, count);
  if (rv == CKR_OK && list != nullptr) {
    for (CK_ULONG i = 0; i < *count; ++i) list[i] = to_virtual(list[i]);
  }
  return rv;
}

CK_RV fault_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO* info) {
  CK_SLOT_ID r = 0;
  bool removed = false;
  if (CK_RV rv = enter_slot("C_GetSlotInfo", slot, &r, &removed); rv != CKR_OK) return rv;
  CK_RV rv = real()->C_GetSlotInfo(r, info);
  if (rv == CKR_OK && removed && info != nullptr) info->flags &= ~CKF_TOKEN_PRESENT;
  return rv;
}

CK_RV fault_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO* info) {
  CK_SLOT_ID r = 0;
  bool removed = false;
  if (CK_RV rv = enter_slot("C_GetTokenInfo", slot, &r, &removed); rv != CKR_OK) return rv;
  if (removed) return CKR_TOKEN_NOT_PRESENT;
  return real()->C_GetTokenInfo(r, info);
}

CK_RV fault_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID* slot, void* reserved) {
  if (CK_RV rv = enter("C_WaitForSlotEvent"); rv != CKR_OK) return rv;
  CK_RV rv = real()->C_WaitForSlotEvent(flags, slot, reserved);
  if (rv == CKR_OK && slot != nullptr) *slot = to_virtual(*slot);
  return rv;
}

CK_RV fault_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE* list, CK_ULONG* count) {
  CK_SLOT_ID r = 0;
  bool removed = false;
  if (CK_RV rv = enter_slot("C_GetMechanismList", slot, &r, &removed); rv != CKR_OK) return rv;
  if (removed) return CKR_TOKEN_NOT_PRESENT;
  return real()->C_GetMechanismList(r, list, count);
}

CK_RV fault_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO* info) {
  CK_SLOT_ID r = 0;
  bool removed = false;
  if (CK_RV rv = enter_slot("C_GetMechanismInfo", slot, &r, &removed); rv != CKR_OK) return rv;
  if (removed) return CKR_TOKEN_NOT_PRESENT;
  return real()->C_GetMechanismInfo(r, type, info);
}

CK_RV fault_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR* pin, CK_ULONG len, CK_UTF8CHAR* label) {
  CK_SLOT_ID r = 0;
  bool removed = false;
  if (CK_RV rv = enter_slot("C_InitToken", slot, &r, &removed); rv != CKR_OK) return rv;
  if (removed) return CKR_TOKEN_NOT_PRESENT;
  return real()->C_InitToken(r, pin, len, label);
}

CK_RV fault_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void* app, CK_NOTIFY notify,
                        CK_SESSION_HANDLE* out) {
  CK_SLOT_ID r = 0;
  bool removed = false;
  uint64_t removals = 0;
  if (CK_RV rv = enter_slot("C_OpenSession", slot, &r, &removed, &removals); rv != CKR_OK) {
    return rv;
  }
  if (removed) return CKR_TOKEN_NOT_PRESENT;
  if (out == nullptr) return CKR_ARGUMENTS_BAD;
  State& s = st();
  // Notification callbacks would receive the real handle; we do not translate them (SoftHSM
  // never calls them), so they are not passed on.
  (void)app;
  (void)notify;
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = real()->C_OpenSession(r, flags, nullptr, nullptr, &h);
  if (rv != CKR_OK) return rv;
  {
    std::lock_guard lock(s.mu);
    if (s.removals == removals) {
      *out = s.next_handle++;
      s.sessions.emplace(*out, SessionRecord{h, r, false});
      return CKR_OK;
    }
  }
  // The token was pulled while the session was being opened: it must not survive.
  real()->C_CloseSession(h);
  return CKR_TOKEN_NOT_PRESENT;
}

CK_RV fault_CloseSession(CK_SESSION_HANDLE h) {
  SessionRecord rec{};
  if (CK_RV rv = enter_session("C_CloseSession", h, &rec); rv != CKR_OK) return rv;
  CK_RV rv = real()->C_CloseSession(rec.real);
  State& s = st();
  std::lock_guard lock(s.mu);
  if (rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) {
    s.sessions.erase(h);
  }
  if (--s.in_flight == 0) s.idle.notify_all();
  return rv;
}

CK_RV fault_CloseAllSessions(CK_SLOT_ID slot) {
  CK_SLOT_ID r = 0;
  bool removed = false;
  if (CK_RV rv = enter_slot("C_CloseAllSessions", slot, &r, &removed); rv != CKR_OK) return rv;
  {
    State& s = st();
    std::lock_guard lock(s.mu);
    std::erase_if(s.sessions, [r](const auto& kv) { return kv.second.real_slot == r; });
  }
  return real()->C_CloseAllSessions(r);
}

CK_RV fault_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO* info) {
  CK_RV rv = forward_session<&CK_FUNCTION_LIST::C_GetSessionInfo>("C_GetSessionInfo", h, info);
  if (rv == CKR_OK && info != nullptr) info->slotID = to_virtual(info->slotID);
  return rv;
}

// Every other function only takes a session handle first: a generic lambda converts to the
// exact function pointer type of the list entry, deducing the remaining parameters.
#define MQSEC_FAULT_SESSION_FN(NAME)                                 \
  l.NAME = [](CK_SESSION_HANDLE h, auto... a) -> CK_RV {             \
    return forward_session<&CK_FUNCTION_LIST::NAME>(#NAME, h, a...); \
  }

void fill_list() {
  CK_FUNCTION_LIST& l = g_list;
  l.version = {2, 40};
  l.C_Initialize = fault_Initialize;
  l.C_Finalize = fault_Finalize;
  l.C_GetInfo = fault_GetInfo;
  l.C_GetFunctionList = fault_GetFunctionList;
  l.C_GetSlotList = fault_GetSlotList;
  l.C_GetSlotInfo = fault_GetSlotInfo;
  l.C_GetTokenInfo = fault_GetTokenInfo;
  l.C_WaitForSlotEvent = fault_WaitForSlotEvent;
  l.C_GetMechanismList = fault_GetMechanismList;
  l.C_GetMechanismInfo = fault_GetMechanismInfo;
  l.C_InitToken = fault_InitToken;
  l.C_OpenSession = fault_OpenSession;
  l.C_CloseSession = fault_CloseSession;
  l.C_CloseAllSessions = fault_CloseAllSessions;
  l.C_GetSessionInfo = fault_GetSessionInfo;
  MQSEC_FAULT_SESSION_FN(C_InitPIN);
  MQSEC_FAULT_SESSION_FN(C_SetPIN);
  MQSEC_FAULT_SESSION_FN(C_GetOperationState);
  MQSEC_FAULT_SESSION_FN(C_SetOperationState);
  MQSEC_FAULT_SESSION_FN(C_Login);
  MQSEC_FAULT_SESSION_FN(C_Logout);
  MQSEC_FAULT_SESSION_FN(C_CreateObject);
  MQSEC_FAULT_SESSION_FN(C_CopyObject);
  MQSEC_FAULT_SESSION_FN(C_DestroyObject);
  MQSEC_FAULT_SESSION_FN(C_GetObjectSize);
  MQSEC_FAULT_SESSION_FN(C_GetAttributeValue);
  MQSEC_FAULT_SESSION_FN(C_SetAttributeValue);
  MQSEC_FAULT_SESSION_FN(C_FindObjectsInit);
  MQSEC_FAULT_SESSION_FN(C_FindObjects);
  MQSEC_FAULT_SESSION_FN(C_FindObjectsFinal);
  MQSEC_FAULT_SESSION_FN(C_EncryptInit);
  MQSEC_FAULT_SESSION_FN(C_Encrypt);
  MQSEC_FAULT_SESSION_FN(C_EncryptUpdate);
  MQSEC_FAULT_SESSION_FN(C_EncryptFinal);
  MQSEC_FAULT_SESSION_FN(C_DecryptInit);
  MQSEC_FAULT_SESSION_FN(C_Decrypt);
  MQSEC_FAULT_SESSION_FN(C_DecryptUpdate);
  MQSEC_FAULT_SESSION_FN(C_DecryptFinal);
  MQSEC_FAULT_SESSION_FN(C_DigestInit);
  MQSEC_FAULT_SESSION_FN(C_Digest);
  MQSEC_FAULT_SESSION_FN(C_DigestUpdate);
  MQSEC_FAULT_SESSION_FN(C_DigestKey);
  MQSEC_FAULT_SESSION_FN(C_DigestFinal);
  MQSEC_FAULT_SESSION_FN(C_SignInit);
  MQSEC_FAULT_SESSION_FN(C_Sign);
  MQSEC_FAULT_SESSION_FN(C_SignUpdate);
  MQSEC_FAULT_SESSION_FN(C_SignFinal);
  MQSEC_FAULT_SESSION_FN(C_SignRecoverInit);
  MQSEC_FAULT_SESSION_FN(C_SignRecover);
  MQSEC_FAULT_SESSION_FN(C_VerifyInit);
  MQSEC_FAULT_SESSION_FN(C_Verify);
  MQSEC_FAULT_SESSION_FN(C_VerifyUpdate);
  MQSEC_FAULT_SESSION_FN(C_VerifyFinal);
  MQSEC_FAULT_SESSION_FN(C_VerifyRecoverInit);
  MQSEC_FAULT_SESSION_FN(C_VerifyRecover);
  MQSEC_FAULT_SESSION_FN(C_DigestEncryptUpdate);
  MQSEC_FAULT_SESSION_FN(C_DecryptDigestUpdate);
  MQSEC_FAULT_SESSION_FN(C_SignEncryptUpdate);
  MQSEC_FAULT_SESSION_FN(C_DecryptVerifyUpdate);
  MQSEC_FAULT_SESSION_FN(C_GenerateKey);
  MQSEC_FAULT_SESSION_FN(C_GenerateKeyPair);
  MQSEC_FAULT_SESSION_FN(C_WrapKey);
  MQSEC_FAULT_SESSION_FN(C_UnwrapKey);
  MQSEC_FAULT_SESSION_FN(C_DeriveKey);
  MQSEC_FAULT_SESSION_FN(C_SeedRandom);
  MQSEC_FAULT_SESSION_FN(C_GenerateRandom);
  MQSEC_FAULT_SESSION_FN(C_GetFunctionStatus);
  MQSEC_FAULT_SESSION_FN(C_CancelFunction);
}
#undef MQSEC_FAULT_SESSION_FN

CK_RV fault_GetFunctionList(CK_FUNCTION_LIST** list) {
  {
    State& s = st();
    std::lock_guard lock(s.mu);
    if (CK_RV rv = count_and_match(s, "C_GetFunctionList"); rv != CKR_OK) return rv;
  }
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  if (CK_RV rv = load_real(); rv != CKR_OK) return rv;
  static std::once_flag once;
  std::call_once(once, fill_list);
  *list = &g_list;
  return CKR_OK;
}

}  // namespace

// --- Exports ---------------------------------------------------------------------------------

MQSEC_FAULT_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST** list) {
  return fault_GetFunctionList(list);
}

MQSEC_FAULT_EXPORT void mqsec_fault_reset(void) {
  State& s = st();
  std::lock_guard lock(s.mu);
  s.rules.clear();
  s.counts.clear();
  s.removed = false;
  // Slot ids stay as they are: jumping back would itself look like the card moving.
}

MQSEC_FAULT_EXPORT void mqsec_fault_fail(const char* fn, unsigned long rv, int nth,
                                         int persistent) {
  if (fn == nullptr) return;
  State& s = st();
  std::lock_guard lock(s.mu);
  add_rule(s, fn, rv, nth, persistent != 0);
}

MQSEC_FAULT_EXPORT void mqsec_fault_clear(void) {
  State& s = st();
  std::lock_guard lock(s.mu);
  s.rules.clear();
}

MQSEC_FAULT_EXPORT void mqsec_fault_remove_token(void) {
  State& s = st();
  {
    std::unique_lock lock(s.mu);
    s.removed = true;
    ++s.removals;
    for (auto& [h, rec] : s.sessions) rec.removed = true;
    // From here no new call reaches a real session; wait for those already running.
    s.idle.wait(lock, [&s] { return s.in_flight == 0; });
  }
  CK_FUNCTION_LIST* f = real();
  if (f == nullptr) return;
  // Close the real sessions so the real login is gone too, as with a pulled card. Every slot,
  // present or not: closing nothing is harmless. Failures (e.g. the module is not initialised)
  // leave nothing to close.
  CK_ULONG n = 0;
  if (f->C_GetSlotList(CK_FALSE, nullptr, &n) != CKR_OK || n == 0) return;
  std::vector<CK_SLOT_ID> slots(n);
  if (f->C_GetSlotList(CK_FALSE, slots.data(), &n) != CKR_OK) return;
  slots.resize(n);
  for (CK_SLOT_ID slot : slots) f->C_CloseAllSessions(slot);
}

MQSEC_FAULT_EXPORT void mqsec_fault_insert_token(int new_slot_ids) {
  State& s = st();
  std::lock_guard lock(s.mu);
  s.removed = false;
  if (new_slot_ids != 0) s.slot_offset += kMovedSlotOffset;
}

MQSEC_FAULT_EXPORT void mqsec_fault_set_sign_delay(int milliseconds) {
  g_sign_delay_ms = milliseconds < 0 ? 0 : milliseconds;
}

MQSEC_FAULT_EXPORT int mqsec_fault_call_count(const char* fn) {
  if (fn == nullptr) return 0;
  State& s = st();
  std::lock_guard lock(s.mu);
  auto it = s.counts.find(std::string_view(fn));
  return it == s.counts.end() ? 0 : static_cast<int>(it->second);
}
