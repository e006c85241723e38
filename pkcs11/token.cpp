// Token lookup, the session pool and login.
#include "pkcs11/token.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <map>
#include <tuple>

#include "pkcs11/call_gate.hpp"
#include "pkcs11/error.hpp"
#include "pkcs11/pin.hpp"
#include "pkcs11/pin_refusals.hpp"

namespace mqsec::pkcs11 {
namespace {

std::mutex g_tokens_mutex;
// Process-wide and immortal, like modules: a token keeps its login and warm sessions for
// the life of the process, so contexts created later do not pay for them again.
std::map<std::tuple<const Module*, std::string, std::string>, std::shared_ptr<Token>>* g_tokens =
    nullptr;

// Wipes a digest when it goes out of scope, whatever happens.
template <typename T>
struct Wiped {
  T value{};
  ~Wiped() { OPENSSL_cleanse(&value, sizeof value); }
};

}  // namespace

std::string padded_string(const CK_UTF8CHAR* p, size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

Token::Session::Session(Session&& o) noexcept
    : token_(std::move(o.token_)),
      handle_(o.handle_),
      broken_(o.broken_),
      generation_(o.generation_) {
  o.handle_ = CK_INVALID_HANDLE;
}

Token::Session& Token::Session::operator=(Session&& o) noexcept {
  if (this != &o) {
    if (token_ && handle_ != CK_INVALID_HANDLE) token_->give_back(handle_, broken_, generation_);
    token_ = std::move(o.token_);
    handle_ = o.handle_;
    broken_ = o.broken_;
    generation_ = o.generation_;
    o.handle_ = CK_INVALID_HANDLE;
  }
  return *this;
}

Token::Session::~Session() {
  if (token_ && handle_ != CK_INVALID_HANDLE) token_->give_back(handle_, broken_, generation_);
}

Token::Token(std::shared_ptr<Module> m, CK_SLOT_ID slot, const CK_TOKEN_INFO& info)
    : module_(std::move(m)),
      slot_(slot),
      label_(padded_string(info.label, sizeof info.label)),
      serial_(padded_string(info.serialNumber, sizeof info.serialNumber)),
      flags_(info.flags),
      fork_seen_(fork_generation()) {
  // CK_UNAVAILABLE_INFORMATION and CK_EFFECTIVELY_INFINITE (0) mean "no limit we know of";
  // we still keep the pool bounded.
  CK_ULONG max = info.ulMaxSessionCount;
  max_sessions_ = (max == CK_EFFECTIVELY_INFINITE || max == CK_UNAVAILABLE_INFORMATION)
                      ? 64
                      : std::max<CK_ULONG>(1, std::min<CK_ULONG>(max, 64));
  if (RAND_bytes(salt_.data(), static_cast<int>(salt_.size())) != 1) {
    throw Error("cannot get random bytes for the PIN digest key (OpenSSL RAND_bytes)");
  }
  // A sender takes mu_ briefly (outside any Cryptoki call) to pick a pooled session; a child
  // forked at that moment must not inherit it held (call_gate.hpp).
  register_fork_mutex(mu_);
}

Token::~Token() {
  OPENSSL_cleanse(salt_.data(), salt_.size());
  if (login_digest_) OPENSSL_cleanse(login_digest_->data(), login_digest_->size());
  unregister_fork_lock(&mu_);
  // Closing is best effort: a destructor cannot report, and the module may already be gone
  // from the slot.
  for (CK_SESSION_HANDLE h : idle_) fn()->C_CloseSession(h);
  if (anchor_ != CK_INVALID_HANDLE) fn()->C_CloseSession(anchor_);
}

std::shared_ptr<Token> Token::open(std::shared_ptr<Module> module, const Uri& uri) {
  CallScope scope;
  CK_FUNCTION_LIST* f = module->fn();
  CK_ULONG count = 0;
  check(f->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) check(f->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList");
  slots.resize(count);

  std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>> matches;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO info{};
    CK_RV rv = f->C_GetTokenInfo(s, &info);
    if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED) continue;
    check(rv, "C_GetTokenInfo");
    if (!(info.flags & CKF_TOKEN_INITIALIZED)) continue;
    if (uri.matches_token(info)) matches.emplace_back(s, info);
  }
  std::string wanted =
      uri.token_label().empty() ? std::string("any token") : "token '" + uri.token_label() + "'";
  if (!uri.token_serial().empty()) wanted += " serial '" + uri.token_serial() + "'";
  if (matches.empty()) {
    // No reader at all (OpenSC with pcscd down, or no reader plugged in, shows no slot, or
    // only its placeholder "Virtual hotplug slot") is another problem than a missing card.
    CK_ULONG all = 0;
    bool no_reader = f->C_GetSlotList(CK_FALSE, nullptr, &all) == CKR_OK && all == 0;
    if (!no_reader && slots.empty() && all > 0) {
      std::vector<CK_SLOT_ID> every(all);
      if (f->C_GetSlotList(CK_FALSE, every.data(), &all) == CKR_OK) {
        every.resize(all);
        no_reader = std::all_of(every.begin(), every.end(), [&](CK_SLOT_ID s) {
          CK_SLOT_INFO si{};
          return f->C_GetSlotInfo(s, &si) == CKR_OK &&
                 padded_string(si.slotDescription, sizeof si.slotDescription) ==
                     "Virtual hotplug slot";
        });
      }
    }
    if (no_reader) {
      throw Error("no " + wanted + ": module '" + module->path() +
                      "' sees no card reader (is the reader plugged in and pcscd running?)",
                  Problem::ReaderUnavailable);
    }
    throw Error("no " + wanted + " is present in module '" + module->path() +
                    "' (insert the card, or check the token= part of the URI; `mqsec doctor` "
                    "lists the tokens)",
                Problem::TokenAbsent);
  }
  if (matches.size() > 1) {
    throw Error(std::to_string(matches.size()) + " tokens match " + wanted +
                "; add token= or serial= to the URI");
  }
  auto [slot, info] = matches.front();
  std::string serial = padded_string(info.serialNumber, sizeof info.serialNumber);
  std::string label = padded_string(info.label, sizeof info.label);

  std::lock_guard lock(g_tokens_mutex);
  if (g_tokens == nullptr) g_tokens = new std::remove_pointer_t<decltype(g_tokens)>();
  auto key = std::make_tuple(module.get(), serial, label);
  if (auto it = g_tokens->find(key); it != g_tokens->end()) {
    if (it->second->slot_ == slot) return it->second;
    g_tokens->erase(it);  // the token moved to another slot: start afresh
  }
  std::shared_ptr<Token> token(new Token(std::move(module), slot, info));
  (*g_tokens)[key] = token;
  return token;
}

Token::Session Token::session(unsigned wait_ms) {
  after_fork_if_needed();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  std::unique_lock lock(mu_);
  for (;;) {
    if (!idle_.empty()) {
      CK_SESSION_HANDLE h = idle_.back();
      idle_.pop_back();
      leased_.push_back(h);
      return Session(shared_from_this(), h, generation_);
    }
    if (open_ < max_sessions_) {
      ++open_;
      uint64_t gen = generation_;
      CK_SLOT_ID slot = slot_;
      lock.unlock();
      CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
      CK_RV rv;
      {
        CallScope scope;  // not while waiting for a pooled session: that would delay fork()
        rv = fn()->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &h);
      }
      if (rv == CKR_OK) {
        check_new_session(slot, h, gen);
        return Session(shared_from_this(), h, gen);
      }
      lock.lock();
      if (gen == generation_) --open_;
      if (rv != CKR_SESSION_COUNT) throw Error("C_OpenSession", rv, "token '" + label_ + "'");
      if (open_ > 0) {
        // The token's real limit is lower than it said (other applications hold sessions):
        // lower our cap to what we hold and wait for one of ours to come back.
        max_sessions_ = open_;
      } else {
        // None of ours to wait for: the limit is someone else's; try again shortly.
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        lock.lock();
        if (std::chrono::steady_clock::now() >= deadline) {
          throw Error("C_OpenSession", CKR_SESSION_COUNT,
                      "token '" + label_ + "' has no free session");
        }
        continue;
      }
    }
    if (returned_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty()) {
      throw Error("C_OpenSession", CKR_SESSION_COUNT,
                  "no session of token '" + label_ + "' became free");
    }
  }
}

Token::Session Token::rw_session() {
  after_fork_if_needed();
  CallScope scope;
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  CK_SLOT_ID slot;
  uint64_t gen;
  {
    std::lock_guard lock(mu_);
    slot = slot_;
    gen = generation_;
  }
  check(fn()->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h),
        "C_OpenSession");
  {
    std::lock_guard lock(mu_);
    if (gen == generation_) ++open_;
  }
  check_new_session(slot, h, gen);
  Session s(shared_from_this(), h, gen);
  s.discard();  // read-write sessions are closed after use, not pooled
  return s;
}

void Token::give_back(CK_SESSION_HANDLE h, bool broken, uint64_t generation) noexcept {
  {
    // A session from before a recovery is not pooled. It is closed (it may still be open: a
    // recovery after a lost login, say) unless its handle number belongs to a new session now;
    // then the module had closed it already. Sessions from before a fork are only forgotten.
    std::unique_lock lock(mu_);
    if (generation != generation_) {
      auto it = std::find(stale_leased_.begin(), stale_leased_.end(), h);
      if (it == stale_leased_.end()) return;
      stale_leased_.erase(it);
      lock.unlock();
      CallScope scope;
      fn()->C_CloseSession(h);  // best effort
      return;
    }
    if (auto it = std::find(leased_.begin(), leased_.end(), h); it != leased_.end()) {
      leased_.erase(it);
    }
    if (!broken) {
      // Pooled in the same critical section as the generation check: a recovery in between
      // would otherwise put a handle of the old generation into the new pool.
      idle_.push_back(h);
      returned_.notify_one();
      return;
    }
  }
  {
    CallScope scope;
    fn()->C_CloseSession(h);  // best effort: the handle may already be invalid
  }
  {
    // A recovery while the session was being closed reset the count (open_ = 0) and started a
    // new generation that never counted this session: decrementing then would wrap the
    // unsigned count, and every later session() would wait at a "full" pool for ever.
    std::lock_guard lock(mu_);
    if (generation == generation_ && open_ > 0) --open_;
  }
  returned_.notify_one();
}

bool Token::logged_in() const {
  std::lock_guard lock(mu_);
  return logged_in_;
}

Token::Digest Token::pin_digest(const std::string& pin) const {
  Digest d{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), salt_.data(), static_cast<int>(salt_.size()),
           reinterpret_cast<const unsigned char*>(pin.data()), pin.size(), d.data(),
           &len) == nullptr ||
      len != d.size()) {
    throw Error("cannot compute the PIN digest (OpenSSL HMAC)");
  }
  return d;
}

void Token::forget_login_locked() {
  logged_in_ = false;
  proven_.clear();
}

void Token::check_pin_state(CK_SESSION_HANDLE h, const std::string& pin_source) {
  CK_SLOT_ID slot;
  {
    std::lock_guard lock(mu_);
    slot = slot_;
  }
  CK_SESSION_INFO si{};
  if (fn()->C_GetSessionInfo(h, &si) == CKR_OK) slot = si.slotID;
  // The PIN goes to this token only; if it cannot say who it is, it gets no PIN.
  const CK_TOKEN_INFO info = identify(slot, "presenting the PIN");
  const std::string who = "token '" + label_ + "' (serial " + serial_ + ")";
  const std::string unlock =
      "unblock it with the card's PUK or the security officer PIN (the card vendor's tool, e.g. "
      "`yubico-piv-tool -a unblock-pin`, or `pkcs11-tool --login --login-type so --init-pin`)";
  if (info.flags & CKF_USER_PIN_LOCKED) {
    throw Error("C_Login", CKR_PIN_LOCKED,
                who +
                    ": the user PIN is locked (CKF_USER_PIN_LOCKED); mqsec did not present "
                    "the PIN: " +
                    unlock + ", then put the right PIN in the PIN source",
                Problem::PinLocked);
  }
  if ((info.flags & CKF_USER_PIN_FINAL_TRY) && !pin_source.empty()) {
    throw Error("C_Login", CKR_PIN_LOCKED,
                who +
                    ": only one user PIN try is left (CKF_USER_PIN_FINAL_TRY); mqsec does not "
                    "present a PIN that could lock the card. Check the PIN in " +
                    pin_source +
                    ", then log in once by hand with the right PIN (e.g. `pkcs11-tool "
                    "--login --test`), which resets the counter; or " +
                    unlock,
                Problem::PinFinalTry);
  }
  if (!(info.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY))) {
    warned_count_low_.store(false);
  } else if (warned_count_low_.exchange(true)) {
    return;  // said already; said again once the count was reset and runs low anew
  }
  if (info.flags & CKF_USER_PIN_FINAL_TRY) {
    warn(who +
         ": only one user PIN try is left (CKF_USER_PIN_FINAL_TRY); a wrong PIN on the "
         "PIN pad locks the card");
  } else if (info.flags & CKF_USER_PIN_COUNT_LOW) {
    warn(who +
         ": a wrong user PIN was entered since the last good login "
         "(CKF_USER_PIN_COUNT_LOW); check the PIN source before the card locks");
  }
}

Token::LoginResult Token::login_locked(CK_USER_TYPE user, CK_SESSION_HANDLE h,
                                       const std::string& pin_source) {
  LoginResult result;
  CK_RV rv;
  bool accepted_at_login = false;
  if (pin_source.empty()) {
    if (!(flags_ & CKF_PROTECTED_AUTHENTICATION_PATH)) {
      throw Error("token '" + label_ +
                      "' needs a PIN but its URI has no pin-source; add "
                      "?pin-source=file:<path> or ?pin-source=env:<NAME> to the token URI",
                  Problem::PinSource);
    }
    check_pin_state(h, pin_source);
    rv = fn()->C_Login(h, user, nullptr, 0);  // the reader's PIN pad asks the user
  } else {
    SecretString pin;
    try {
      pin = read_pin(pin_source);
    } catch (const Error& e) {
      throw Error(e.what(), Problem::PinSource);
    }
    Wiped<Digest> digest;
    digest.value = pin_digest(pin.str());
    {
      std::lock_guard lock(mu_);
      if (std::find(rejected_pins_.begin(), rejected_pins_.end(), digest.value) !=
          rejected_pins_.end()) {
        throw Error("C_Login", CKR_PIN_INCORRECT,
                    "token '" + label_ +
                        "' already refused this PIN; not retrying it so the "
                        "card is not locked: correct the PIN at " +
                        pin_source,
                    Problem::PinRefusedBefore);
      }
      // A PIN-always signature with the PIN this token accepted at login: the token's PIN
      // state and the refusal file cannot object to it, so neither is read on every signature.
      accepted_at_login =
          user == CKU_CONTEXT_SPECIFIC && login_digest_ &&
          CRYPTO_memcmp(digest.value.data(), login_digest_->data(), digest.value.size()) == 0;
    }
    if (!accepted_at_login) check_pin_state(h, pin_source);
    if (!accepted_at_login && pin_refused_before(serial_, pin.str())) {
      {
        std::lock_guard lock(mu_);
        rejected_pins_.push_back(digest.value);
      }
      throw Error("C_Login", CKR_PIN_INCORRECT,
                  "token '" + label_ + "' (serial " + serial_ +
                      ") refused this PIN before (recorded in " + pin_refusal_file() +
                      "); not presenting it again so the card is not locked: correct the PIN "
                      "at " +
                      pin_source,
                  Problem::PinRefusedBefore);
    }
    rv = fn()->C_Login(h, user,
                       reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.str().data())),
                       pin.str().size());
    if (rv == CKR_PIN_INCORRECT) {
      {
        std::lock_guard lock(mu_);
        rejected_pins_.push_back(digest.value);
      }
      std::string problem = remember_refused_pin(serial_, pin.str());
      if (!problem.empty()) {
        warn("token '" + label_ + "' refused the PIN from " + pin_source +
             "; the refusal is not remembered across restarts (" + problem + ")");
      }
    }
    result.digest = digest.value;
  }
  if (rv == CKR_OK && !accepted_at_login) forget_refused_pins(serial_);
  if (rv == CKR_USER_ALREADY_LOGGED_IN) {
    rv = CKR_OK;
    result.already = true;
  }
  if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED) {
    throw Error(
        "C_Login", rv,
        "token '" + label_ + "' (serial " + serial_ + ") refused the PIN" +
            (pin_source.empty() ? std::string(" entered on the PIN pad") : " from " + pin_source) +
            (rv == CKR_PIN_LOCKED ? "; the user PIN is now locked" : ""));
  }
  check(rv, "C_Login");
  return result;
}

void Token::prove_locked(const Identity& me) {
  if (!(flags_ & CKF_LOGIN_REQUIRED)) {
    std::lock_guard lock(mu_);
    if (std::find(proven_.begin(), proven_.end(), me) == proven_.end()) proven_.push_back(me);
    return;
  }
  std::optional<Digest> login_digest;
  std::optional<uid_t> pad_uid;
  bool uid_known;
  {
    std::lock_guard lock(mu_);
    login_digest = login_digest_;
    pad_uid = pad_login_uid_;
    uid_known = std::any_of(proven_.begin(), proven_.end(),
                            [&](const Identity& i) { return i.uid == me.uid; });
  }
  struct WipeCopy {
    std::optional<Digest>& d;
    ~WipeCopy() {
      if (d) OPENSSL_cleanse(d->data(), d->size());
    }
  } wipe_copy{login_digest};
  const std::string who = "uid " + std::to_string(me.uid);
  if (me.pin_source.empty()) {
    if (!(flags_ & CKF_PROTECTED_AUTHENTICATION_PATH)) {
      throw Error("token '" + label_ +
                      "' needs a PIN but its URI has no pin-source; add "
                      "?pin-source=file:<path> or ?pin-source=env:<NAME> to the token URI",
                  Problem::PinSource);
    }
    if (!uid_known && !(pad_uid && *pad_uid == me.uid)) {
      throw Error(
          "token '" + label_ + "' is already logged in by another user of this process; " + who +
          " names no PIN source (PIN pad) and would use that login without entering "
          "the PIN: refused. Give " +
          who + " its own pin-source=file:<path>, or use the token from a process of its own");
    }
  } else {
    Wiped<Digest> digest;
    {
      SecretString pin;
      try {
        pin = read_pin(me.pin_source);
      } catch (const Error& e) {
        throw Error("token '" + label_ + "' is logged in by another user of this process; " + who +
                        " must prove the PIN from its own PIN source: " + e.what(),
                    Problem::PinSource);
      }
      digest.value = pin_digest(pin.str());
    }
    bool refused_before;
    {
      std::lock_guard lock(mu_);
      refused_before = std::find(rejected_pins_.begin(), rejected_pins_.end(), digest.value) !=
                       rejected_pins_.end();
    }
    if (refused_before) {
      throw Error("C_Login", CKR_PIN_INCORRECT,
                  "token '" + label_ + "' already refused the PIN from " + me.pin_source +
                      " (read as " + who + "); correct the PIN there",
                  Problem::PinRefusedBefore);
    }
    if (!login_digest) {
      if (!uid_known) {
        throw Error("token '" + label_ +
                    "' was logged in without a PIN mqsec could record (through its PIN pad, or "
                    "by other code in this process), so the PIN from " +
                    me.pin_source + " (" + who + ") cannot be checked against it: refused");
      }
    } else if (CRYPTO_memcmp(digest.value.data(), login_digest->data(), digest.value.size()) != 0) {
      {
        std::lock_guard lock(mu_);
        rejected_pins_.push_back(digest.value);
      }
      throw Error("C_Login", CKR_PIN_INCORRECT,
                  "the PIN from " + me.pin_source + " (read as " + who +
                      ") is not the PIN token '" + label_ +
                      "' is logged in with; refused without submitting it to the token");
    }
  }
  std::lock_guard lock(mu_);
  if (std::find(proven_.begin(), proven_.end(), me) == proven_.end()) proven_.push_back(me);
}

void Token::login(const std::string& pin_source) {
  after_fork_if_needed();
  CallScope scope;
  std::lock_guard login_lock(login_mu_);
  CK_SESSION_HANDLE anchor;
  bool was_logged_in;
  {
    std::lock_guard lock(mu_);
    anchor = anchor_;
    was_logged_in = logged_in_;
  }
  if (was_logged_in) {
    // A cached token may have been pulled and re-inserted since: check that our anchor session
    // still exists and still carries the login, else start afresh.
    CK_SESSION_INFO si{};
    bool healthy = anchor != CK_INVALID_HANDLE && fn()->C_GetSessionInfo(anchor, &si) == CKR_OK &&
                   (!(flags_ & CKF_LOGIN_REQUIRED) || si.state == CKS_RO_USER_FUNCTIONS ||
                    si.state == CKS_RW_USER_FUNCTIONS);
    if (!healthy) {
      recover_locked(pin_source);
      return;
    }
  }
  login_impl(pin_source);
}

void Token::login_impl(const std::string& pin_source, bool may_recover) {
  const Identity me{thread_effective_uid(), pin_source};
  bool logged_in;
  {
    std::lock_guard lock(mu_);
    logged_in = logged_in_;
    if (logged_in && std::find(proven_.begin(), proven_.end(), me) != proven_.end()) return;
  }
  if (logged_in) {
    prove_locked(me);  // another identity's login: prove the PIN or be refused
    return;
  }
  Session s = session();
  CK_SESSION_INFO si{};
  const CK_RV si_rv = fn()->C_GetSessionInfo(s.handle(), &si);
  if (si_rv != CKR_OK && may_recover && needs_recovery(si_rv)) {
    // The pool held a session that is gone (the card was pulled, the module was reset): the
    // others of its generation are suspect too. Start a new generation rather than present the
    // PIN on a dead session.
    s.discard();
    { Session gone = std::move(s); }
    recover_locked(pin_source);
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (anchor_ == CK_INVALID_HANDLE) {
      CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
      // Not counted in open_: the pool's cap is for sessions that come back to it.
      if (fn()->C_OpenSession(slot_, CKF_SERIAL_SESSION, nullptr, nullptr, &h) == CKR_OK) {
        anchor_ = h;
      }
    }
  }
  // The token is logged in, but not by a C_Login of ours just now (we made it earlier and it
  // survived, or other code in this process made it): what we recorded of our last login
  // decides who may use it. With no record nobody can prove anything against it: it is lent
  // only to the process's own user (a thread that impersonates no one), never to an
  // impersonated identity, and to no other uid afterwards.
  auto found_logged_in = [&] {
    bool have_record;
    {
      std::lock_guard lock(mu_);
      have_record = login_digest_.has_value() || pad_login_uid_.has_value();
    }
    if (have_record) {
      prove_locked(me);
    } else if (me.uid != thread_real_uid()) {
      throw Error("token '" + label_ +
                  "' was logged in by other code in this process, so a thread acting for uid " +
                  std::to_string(me.uid) +
                  " cannot prove that it knows the PIN; obtain the context from a thread that "
                  "impersonates no one, or let mqsec make the first login");
    }
    std::lock_guard lock(mu_);
    logged_in_ = true;
    if (std::find(proven_.begin(), proven_.end(), me) == proven_.end()) proven_.push_back(me);
  };
  if (!(flags_ & CKF_LOGIN_REQUIRED)) {
    std::lock_guard lock(mu_);
    logged_in_ = true;
    proven_.assign(1, me);
    return;
  }
  if (si_rv == CKR_OK && (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS)) {
    found_logged_in();
    return;
  }
  // Errors name the token and, for a refused or locked PIN, what to do about it.
  LoginResult result = login_locked(CKU_USER, s.handle(), pin_source);
  if (result.already) {
    if (result.digest) OPENSSL_cleanse(result.digest->data(), result.digest->size());
    found_logged_in();
    return;
  }
  std::lock_guard lock(mu_);
  logged_in_ = true;
  proven_.assign(1, me);
  if (login_digest_) OPENSSL_cleanse(login_digest_->data(), login_digest_->size());
  login_digest_ = result.digest;
  if (result.digest) OPENSSL_cleanse(result.digest->data(), result.digest->size());
  pad_login_uid_.reset();
  if (!login_digest_) pad_login_uid_ = me.uid;
}

uint64_t Token::generation() {
  after_fork_if_needed();
  std::lock_guard lock(mu_);
  return generation_;
}

bool Token::needs_recovery(CK_RV rv) noexcept {
  switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_SLOT_ID_INVALID:  // re-inserted into another reader: the old slot is gone
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return true;
    default:
      return false;
  }
}

void Token::recover(uint64_t seen, const std::string& pin_source) {
  CallScope scope;
  std::lock_guard login_lock(login_mu_);
  bool recovered_already;
  {
    std::lock_guard lock(mu_);
    recovered_already = generation_ > seen;
  }
  if (recovered_already) {
    // Another thread (or the fork handling) started a new generation: make sure it is logged
    // in (a no-op when it is).
    login_impl(pin_source);
    return;
  }
  recover_locked(pin_source);
}

void Token::recover_locked(const std::string& pin_source) {
  std::vector<CK_SESSION_HANDLE> stale;
  {
    std::lock_guard lock(mu_);
    stale.swap(idle_);
    if (anchor_ != CK_INVALID_HANDLE) stale.push_back(anchor_);
    anchor_ = CK_INVALID_HANDLE;
    open_ = 0;
    stale_leased_.insert(stale_leased_.end(), leased_.begin(), leased_.end());
    leased_.clear();
    forget_login_locked();
    ++generation_;
  }
  // Idle sessions are ours and unused; closing them is best effort (they are usually gone).
  for (CK_SESSION_HANDLE h : stale) fn()->C_CloseSession(h);
  module_->reinitialize_after_fork();

  // Find the token again by serial and label: a re-inserted card may sit in another slot.
  CK_FUNCTION_LIST* f = fn();
  CK_ULONG count = 0;
  check(f->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) check(f->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList");
  slots.resize(count);
  std::optional<CK_SLOT_ID> found;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO info{};
    if (f->C_GetTokenInfo(s, &info) != CKR_OK) continue;
    if (padded_string(info.serialNumber, sizeof info.serialNumber) == serial_ &&
        padded_string(info.label, sizeof info.label) == label_) {
      found = s;
      break;
    }
  }
  if (!found) {
    CK_SLOT_ID old_slot;
    {
      std::lock_guard lock(mu_);
      old_slot = slot_;
    }
    identify(old_slot, "recovering it");  // throws: another card there, or none
    // Our card is in its old slot after all (it came back between the two looks).
    found = old_slot;
  }
  {
    std::lock_guard lock(mu_);
    slot_ = *found;
  }
  login_impl(pin_source, false);
}

void Token::after_fork_if_needed() {
  uint64_t forks = fork_generation();
  if (fork_seen_.load(std::memory_order_acquire) == forks) return;
  module_->reinitialize_after_fork();
  fork_seen_.store(forks, std::memory_order_release);
  // In the child of a fork: the parent's sessions and login do not exist here. Forget them
  // without closing (closing would act on the parent's handle numbers).
  std::lock_guard lock(mu_);
  idle_.clear();
  leased_.clear();
  stale_leased_.clear();
  anchor_ = CK_INVALID_HANDLE;
  open_ = 0;
  forget_login_locked();
  ++generation_;
}

void Token::relogin(const std::string& pin_source) {
  {
    std::lock_guard lock(mu_);
    forget_login_locked();
  }
  login(pin_source);
}

void Token::context_login(Session& s, const std::string& pin_source) {
  CallScope scope;
  LoginResult r = login_locked(CKU_CONTEXT_SPECIFIC, s.handle(), pin_source);
  if (r.digest) OPENSSL_cleanse(r.digest->data(), r.digest->size());
}

CK_TOKEN_INFO Token::identify(CK_SLOT_ID slot, const std::string& before) {
  CallScope scope;
  const std::string ours = "token '" + label_ + "' (serial " + serial_ + ")";
  CK_TOKEN_INFO info{};
  CK_RV rv = fn()->C_GetTokenInfo(slot, &info);
  switch (rv) {
    case CKR_OK:
      break;
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_DEVICE_REMOVED:
    case CKR_SLOT_ID_INVALID:
      throw Error("C_GetTokenInfo", CKR_TOKEN_NOT_PRESENT,
                  ours + " is not present" +
                      (rv == CKR_SLOT_ID_INVALID ? std::string(" (its reader is gone)") : "") +
                      ": insert it (any reader will do)",
                  Problem::TokenAbsent);
    case CKR_DEVICE_ERROR:
      throw Error("C_GetTokenInfo", rv,
                  "the reader of " + ours + " does not answer (is pcscd running?)",
                  Problem::ReaderUnavailable);
    default:
      throw Error("C_GetTokenInfo", rv, ours + ", before " + before);
  }
  const std::string serial = padded_string(info.serialNumber, sizeof info.serialNumber);
  const std::string label = padded_string(info.label, sizeof info.label);
  if (serial != serial_ || label != label_) {
    throw Error("C_GetTokenInfo", CKR_TOKEN_NOT_PRESENT,
                "card replaced: slot " + std::to_string(slot) + " holds token '" + label +
                    "' (serial " + serial + "), not " + ours +
                    "; mqsec does not use another "
                    "card and presents no PIN to it (stopped before " +
                    before + "): insert " + ours,
                Problem::CardReplaced);
  }
  return info;
}

void Token::check_new_session(CK_SLOT_ID slot, CK_SESSION_HANDLE h, uint64_t generation) {
  CallScope scope;
  {
    // The module handed out `h`: a session of an earlier generation with that number is gone.
    std::lock_guard lock(mu_);
    if (auto it = std::find(stale_leased_.begin(), stale_leased_.end(), h);
        it != stale_leased_.end()) {
      stale_leased_.erase(it);
    }
  }
  try {
    identify(slot, "opening a session");
  } catch (...) {
    fn()->C_CloseSession(h);
    std::lock_guard lock(mu_);
    if (generation == generation_ && open_ > 0) --open_;
    returned_.notify_one();
    throw;
  }
  std::lock_guard lock(mu_);
  if (generation == generation_) {
    leased_.push_back(h);
  } else {
    stale_leased_.push_back(h);  // a recovery meanwhile: closed when it comes back
  }
}

std::string Token::cannot_generate(CK_MECHANISM_TYPE mechanism) {
  after_fork_if_needed();
  CallScope scope;
  CK_SLOT_ID slot;
  {
    std::lock_guard lock(mu_);
    slot = slot_;
  }
  CK_TOKEN_INFO info{};
  if (fn()->C_GetTokenInfo(slot, &info) == CKR_OK && (info.flags & CKF_WRITE_PROTECTED)) {
    return "the token is write-protected (CKF_WRITE_PROTECTED)";
  }
  const char* name = mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN ? "CKM_RSA_PKCS_KEY_PAIR_GEN"
                     : mechanism == CKM_EC_KEY_PAIR_GEN     ? "CKM_EC_KEY_PAIR_GEN"
                                                            : "the key-pair mechanism";
  CK_MECHANISM_INFO mi{};
  CK_RV rv = fn()->C_GetMechanismInfo(slot, mechanism, &mi);
  if (rv == CKR_MECHANISM_INVALID) return std::string("it does not offer ") + name;
  if (rv == CKR_OK && !(mi.flags & CKF_GENERATE_KEY_PAIR)) {
    return std::string("it offers ") + name + " without CKF_GENERATE_KEY_PAIR";
  }
  return {};  // it says it can (or cannot say: C_GenerateKeyPair will)
}

std::vector<CK_OBJECT_HANDLE> Token::find(Session& s, std::vector<CK_ATTRIBUTE> tmpl, size_t max) {
  CallScope scope;
  check(fn()->C_FindObjectsInit(s.handle(), tmpl.data(), tmpl.size()), "C_FindObjectsInit");
  std::vector<CK_OBJECT_HANDLE> out(max);
  CK_ULONG n = 0;
  CK_RV rv = fn()->C_FindObjects(s.handle(), out.data(), out.size(), &n);
  // Always end the operation, even after a failure, so the session stays usable.
  CK_RV rv_final = fn()->C_FindObjectsFinal(s.handle());
  check(rv, "C_FindObjects");
  check(rv_final, "C_FindObjectsFinal");
  out.resize(n);
  return out;
}

std::optional<Bytes> Token::attribute(Session& s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type) {
  CallScope scope;
  CK_ATTRIBUTE a{type, nullptr, 0};
  CK_RV rv = fn()->C_GetAttributeValue(s.handle(), obj, &a, 1);
  if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID) return std::nullopt;
  check(rv, "C_GetAttributeValue");
  if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return std::nullopt;
  Bytes v(a.ulValueLen);
  a.pValue = v.data();
  rv = fn()->C_GetAttributeValue(s.handle(), obj, &a, 1);
  if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID) return std::nullopt;
  check(rv, "C_GetAttributeValue");
  v.resize(a.ulValueLen);
  return v;
}

std::optional<CK_ULONG> Token::ulong_attribute(Session& s, CK_OBJECT_HANDLE obj,
                                               CK_ATTRIBUTE_TYPE type) {
  CallScope scope;
  CK_ULONG v = 0;
  CK_ATTRIBUTE a{type, &v, sizeof v};
  CK_RV rv = fn()->C_GetAttributeValue(s.handle(), obj, &a, 1);
  if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID) return std::nullopt;
  check(rv, "C_GetAttributeValue");
  return v;
}

std::optional<bool> Token::bool_attribute(Session& s, CK_OBJECT_HANDLE obj,
                                          CK_ATTRIBUTE_TYPE type) {
  CallScope scope;
  CK_BBOOL v = CK_FALSE;
  CK_ATTRIBUTE a{type, &v, sizeof v};
  CK_RV rv = fn()->C_GetAttributeValue(s.handle(), obj, &a, 1);
  if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID) return std::nullopt;
  check(rv, "C_GetAttributeValue");
  return v == CK_TRUE;
}

}  // namespace mqsec::pkcs11
