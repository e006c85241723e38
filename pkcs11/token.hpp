// One token (smartcard, HSM partition, SoftHSM token) of a module, found by URI.
//
// A Token owns a pool of read-only sessions capped by the token's ulMaxSessionCount, and
// the application's login state (PKCS#11 login is per application and token, shared by all
// its sessions). Tokens are shared process-wide: Token::open returns the same object for
// the same module and token serial, so every security context on a token shares one pool
// and one login.
//
// That one login is not lent to whoever asks: Linux credentials are per thread, and a service
// may impersonate users. Each identity (the calling thread's effective uid and its PIN source)
// must prove the PIN once: the identity that logged the token in did; any other reads its own
// PIN source with its own credentials, and the PIN must equal the one the token was logged in
// with (compared as salted digests; the PIN itself is never kept).
#pragma once

#include "pkcs11/cryptoki.hpp"

#include <sys/types.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pkcs11/module.hpp"
#include "pkcs11/uri.hpp"

namespace mqsec::pkcs11 {

using Bytes = std::vector<uint8_t>;

class Token : public std::enable_shared_from_this<Token> {
 public:
  // A session leased from the pool; returned to it on destruction. Move-only.
  class Session {
   public:
    Session() = default;
    Session(Session&& o) noexcept;
    Session& operator=(Session&& o) noexcept;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session();
    CK_SESSION_HANDLE handle() const noexcept { return handle_; }
    // Marks the session broken (e.g. CKR_SESSION_HANDLE_INVALID): it is closed, not pooled.
    void discard() noexcept { broken_ = true; }
    // The token generation this session belongs to (see Token::recover).
    uint64_t generation() const noexcept { return generation_; }

   private:
    friend class Token;
    Session(std::shared_ptr<Token> t, CK_SESSION_HANDLE h, uint64_t g)
        : token_(std::move(t)), handle_(h), generation_(g) {}
    std::shared_ptr<Token> token_;
    CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
    bool broken_ = false;
    uint64_t generation_ = 0;
  };

  // Finds the single token of `module` that matches the URI's token attributes. Throws
  // pkcs11::Error when none or several match ("no token matches ..."), or a call fails.
  static std::shared_ptr<Token> open(std::shared_ptr<Module> module, const Uri& uri);

  const std::string& label() const noexcept { return label_; }
  const std::string& serial() const noexcept { return serial_; }
  CK_SLOT_ID slot() const noexcept { return slot_; }
  CK_FLAGS flags() const noexcept { return flags_; }
  CK_FUNCTION_LIST* fn() const noexcept { return module_->fn(); }
  const std::shared_ptr<Module>& module() const noexcept { return module_; }

  // A session from the pool, opening one if the pool has none and the cap allows. At the
  // cap (or on CKR_SESSION_COUNT) waits up to `wait_ms` for a session to come back, then
  // throws pkcs11::Error(C_OpenSession, CKR_SESSION_COUNT).
  //
  // A token is its card, never its slot: a new session is used only after C_GetTokenInfo of its
  // slot shows this token's serial and label. Another card in the reader (ours was pulled and
  // another inserted) is closed at once and reported as Problem::CardReplaced (rv
  // CKR_TOKEN_NOT_PRESENT, so callers recover, which looks for our card in every slot); no
  // object handle of ours and no PIN ever reach it. Pooled sessions were checked when opened,
  // and a module closes them when their card goes.
  Session session(unsigned wait_ms = 5000);
  // A read-write session (not pooled): for creating objects and generating keys. Checked like
  // a new session().
  Session rw_session();

  // Logs the application in as CKU_USER once. The PIN comes from `pin_source`; an empty
  // source uses the protected authentication path (PIN pad) when the token has one, and is
  // an error otherwise. CKR_USER_ALREADY_LOGGED_IN is success. A PIN that the token
  // rejected is remembered (as a digest) and never submitted again, so we cannot lock a
  // card by retrying. Throws pkcs11::Error.
  //
  // When the token is already logged in, the caller's identity (thread effective uid,
  // pin_source) must have logged it in or proved the PIN before; otherwise its PIN is read
  // from pin_source and compared with the PIN of the login (not submitted to the token). A
  // different PIN, an unreadable source, or a PIN-pad login of another uid is refused
  // (pkcs11::Error) and the login stays as it was.
  void login(const std::string& pin_source);
  bool logged_in() const;
  // Forgets the login state (the token logged us out: CKR_USER_NOT_LOGGED_IN) and logs in
  // again once from `pin_source`. Throws pkcs11::Error.
  void relogin(const std::string& pin_source);
  // Recovery after the token went away (removed and re-inserted, possibly in another slot),
  // its sessions were closed, or the process forked: forgets every session of generation
  // `seen` and older, finds the token again by serial and label, opens a fresh anchor session
  // and logs in again from `pin_source`. Does nothing if another thread already recovered
  // past `seen`. Throws pkcs11::Error (rv CKR_TOKEN_NOT_PRESENT when it is still absent:
  // Problem::CardReplaced when another card sits in its slot, TokenAbsent otherwise,
  // ReaderUnavailable when the module has no slot at all). Sessions other threads hold at
  // that moment are closed when they come back, unless the module has handed their handle
  // number out again since (then it was gone already).
  void recover(uint64_t seen, const std::string& pin_source);
  uint64_t generation();  // (first handles a fork, so the value is this process's)
  // Whether a Cryptoki result means "sessions/objects/login are gone, recover and retry".
  static bool needs_recovery(CK_RV rv) noexcept;

  // Context-specific login for CKA_ALWAYS_AUTHENTICATE keys, between C_SignInit and C_Sign.
  void context_login(Session& s, const std::string& pin_source);
  // Held across C_SignInit -> C_Login(CKU_CONTEXT_SPECIFIC) -> C_Sign of a
  // CKA_ALWAYS_AUTHENTICATE key. A card's PIN verification is consumed by the next signature
  // on the card, whatever session or key it is made with (OpenSC's card lock is not held
  // between the calls), so the sequences of all PIN-always keys of this token are serialized.
  // Take it after leasing the session (never wait for a session while holding it).
  std::mutex& pin_always_mutex() noexcept { return pin_always_mu_; }

  // Why this token cannot generate a key pair with `mechanism` as far as it says so itself (a
  // write-protected token, a mechanism it does not offer or offers without
  // CKF_GENERATE_KEY_PAIR); "" when it claims it can. A token that claims it can may still
  // answer C_GenerateKeyPair with CKR_FUNCTION_NOT_SUPPORTED (OpenSC's PIV driver does).
  std::string cannot_generate(CK_MECHANISM_TYPE mechanism);

  // Objects matching a template (at most `max`).
  std::vector<CK_OBJECT_HANDLE> find(Session& s, std::vector<CK_ATTRIBUTE> tmpl, size_t max = 64);
  // An attribute's bytes; nullopt when the token says it is sensitive or not present.
  std::optional<Bytes> attribute(Session& s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type);
  std::optional<CK_ULONG> ulong_attribute(Session& s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type);
  std::optional<bool> bool_attribute(Session& s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type);

  ~Token();

 private:
  Token(std::shared_ptr<Module> m, CK_SLOT_ID slot, const CK_TOKEN_INFO& info);
  void give_back(CK_SESSION_HANDLE h, bool broken, uint64_t generation) noexcept;
  using Digest = std::array<uint8_t, 32>;
  // Who uses the login: the thread's effective uid and the PIN source it named.
  struct Identity {
    uid_t uid;
    std::string pin_source;
    bool operator==(const Identity&) const = default;
  };
  struct LoginResult {
    std::optional<Digest> digest;  // of the PIN submitted (none for a PIN pad)
    bool already = false;          // CKR_USER_ALREADY_LOGGED_IN: this PIN was not checked
  };
  // login_mu_ held. may_recover: a dead pooled session starts a new generation (recover_locked,
  // which calls this again with false).
  void login_impl(const std::string& pin_source, bool may_recover = true);
  void recover_locked(const std::string& pin_source);  // login_mu_ held
  void after_fork_if_needed();
  // Throws unless the token in `slot` is this one (serial and label): Problem::CardReplaced
  // for another card, TokenAbsent for none, ReaderUnavailable for CKR_DEVICE_ERROR. Returns
  // what C_GetTokenInfo said. `before`: what would have followed ("opening a session", ...).
  CK_TOKEN_INFO identify(CK_SLOT_ID slot, const std::string& before);
  // A session just opened on `slot`: closes it and throws unless identify(slot) passes.
  void check_new_session(CK_SLOT_ID slot, CK_SESSION_HANDLE h, uint64_t generation);
  LoginResult login_locked(CK_USER_TYPE user, CK_SESSION_HANDLE h, const std::string& pin_source);
  // login_mu_ held, the token logged in: lets `me` share the login if it logged in, or proves
  // the PIN now; else throws.
  void prove_locked(const Identity& me);
  Digest pin_digest(const std::string& pin) const;  // salted (HMAC-SHA-256, per-token key)
  void forget_login_locked();                       // mu_ held: logged out, no one proven
  // Before a user PIN is presented (CKU_USER, or CKU_CONTEXT_SPECIFIC with a PIN other than
  // the one the token accepted at login): reads the token's flags; refuses (pkcs11::Error,
  // CKR_PIN_LOCKED) on CKF_USER_PIN_LOCKED, and on CKF_USER_PIN_FINAL_TRY unless the PIN is typed
  // on the reader's PIN pad; warns on CKF_USER_PIN_COUNT_LOW. The card in the session's slot
  // must be this token (identify): no PIN is presented to another card.
  void check_pin_state(CK_SESSION_HANDLE h, const std::string& pin_source);

  std::shared_ptr<Module> module_;
  CK_SLOT_ID slot_;
  std::string label_, serial_;
  CK_FLAGS flags_;
  size_t max_sessions_;

  mutable std::mutex mu_;
  std::condition_variable returned_;
  std::vector<CK_SESSION_HANDLE> idle_;
  size_t open_ = 0;  // sessions open (idle + leased)
  // Sessions handed out (this generation), and those handed out when recover() started a new
  // generation: the latter are closed when they come back, unless a new session got the same
  // handle number meanwhile (the module reused it: the old one was gone).
  std::vector<CK_SESSION_HANDLE> leased_, stale_leased_;
  bool logged_in_ = false;
  // A session held open for the token's lifetime: PKCS#11 logs the application out when its
  // last session closes, and pooled sessions are closed when they break.
  CK_SESSION_HANDLE anchor_ = CK_INVALID_HANDLE;
  uint64_t generation_ = 1;  // bumped by recover(); older sessions are dropped, never reused
  std::atomic<uint64_t> fork_seen_{0};  // fork_generation() this token's state belongs to
  std::vector<Digest> rejected_pins_;   // salted digests of PINs the token refused
  // Who may use the current login (guarded by mu_): the identity that logged in and those
  // that proved the PIN since. Cleared whenever the login is lost.
  std::vector<Identity> proven_;
  // The salted digest of the PIN that last logged the token in; a PIN-pad login records the
  // uid instead. Kept across a lost login until the next C_Login replaces it: a token found
  // still logged in carries the login we made.
  std::optional<Digest> login_digest_;
  std::optional<uid_t> pad_login_uid_;
  std::array<uint8_t, 32> salt_{};  // random per token: the key of pin_digest()
  std::mutex login_mu_;
  std::mutex pin_always_mu_;
  std::atomic<bool> warned_count_low_{false};  // warn once per episode, not per signature
};

// A template entry pointing at `n` bytes at `p` (Cryptoki's templates take non-const pointers).
inline CK_ATTRIBUTE attribute(CK_ATTRIBUTE_TYPE type, const void* p, size_t n) {
  return CK_ATTRIBUTE{type, const_cast<void*>(p), static_cast<CK_ULONG>(n)};
}

// Trims the blank padding of a fixed-width CK_TOKEN_INFO string.
std::string padded_string(const CK_UTF8CHAR* p, size_t n);

}  // namespace mqsec::pkcs11
