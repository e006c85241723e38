// A mock PKCS#11 (Cryptoki 2.40) module for mqsec's unit tests.
//
// It has two fixed slots with software tokens whose keys are real OpenSSL keys, so signatures it
// makes verify with OpenSSL. Tests drive it through the ordinary CK_FUNCTION_LIST and steer it
// with the helpers below: put keys and certificates on a token, inject failures into any entry
// point, pull a token out, and look at call counts, open sessions and login state.
//
// The same source also builds a loadable module (.so): C_GetFunctionList is exported with C
// linkage and default visibility. A program that loads it as its module (the mqsec command in
// a CLI test) is set up from the environment when the mock is first used:
//   MQSEC_MOCK_SETUP   entries separated by ';', each "<slot>:<setting>,<setting>,...":
//                      label=, serial=, pin=, pin-failures=<n> (as set_user_pin_failures),
//                      pin-pad=ok|wrong (as set_pin_pad), keygen=unsupported|not-offered (as
//                      set_key_generation), and a key: key=<PEM private key file>,
//                      cert=<DER certificate file>, id=<hex>, object=<label>, always-auth.
//                      E.g.
//                      "0:keygen=unsupported,pin-failures=1;0:key=/t/k.pem,cert=/t/c.der,id=9c"
//   MQSEC_MOCK_COUNTS  a file: at exit, "<entry point> <calls>" per line (C_Login 0 ...).
//
// All state is process-wide and guarded by one mutex, so every entry point and helper may be
// called from any thread. Entry points never throw; the helpers throw only where they say so.
#pragma once

#include "pkcs11/cryptoki.hpp"
#include <openssl/evp.h>

#include <chrono>
#include <functional>
#include <cstdint>
#include <string>
#include <vector>

namespace mqsec::mock {

// The mock's function list (version 2.40). Never null; valid for the life of the process.
CK_FUNCTION_LIST* function_list() noexcept;

// Back to the initial state: not initialized, no objects, no injected failures, call counts
// zero, PIN retry counters cleared, both tokens present.
//   Slot 0: label "mock-a", serial "MOCKSERIAL0001", user PIN "1234", SO PIN "5678",
//           ulMaxSessionCount 4.
//   Slot 1: label "mock-b", serial "MOCKSERIAL0002", user PIN "1234", SO PIN "5678",
//           ulMaxSessionCount CK_EFFECTIVELY_INFINITE.
//   Both: CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_RNG.
// Handles are never reused, not even across reset(), so a stale handle from an earlier test
// is always invalid rather than silently naming a new object.
void reset() noexcept;

// Puts a key on the token of `slot` as token objects: a CKO_PRIVATE_KEY (CKA_PRIVATE true,
// CKA_SIGN true), its CKO_PUBLIC_KEY and, if cert_der is non-empty, a CKO_CERTIFICATE
// (CKC_X_509) whose CKA_VALUE is cert_der (CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER are
// filled in when cert_der parses as X.509; it is stored as given either way, so tests can use
// malformed certificates). All three share CKA_ID and CKA_LABEL.
// `key` is an RSA or EC (P-256, P-384, P-521) key with its private part; the mock takes its
// own reference, the caller keeps ownership of `key`.
// Works whether or not the module is initialized or the token present.
// Returns the private key's handle.
// Throws std::invalid_argument for an unknown slot or an unsupported or public-only key,
// std::runtime_error if OpenSSL fails to export the key's components.
CK_OBJECT_HANDLE add_key(CK_SLOT_ID slot, EVP_PKEY* key, std::vector<uint8_t> ckaid,
                         std::string label, std::vector<uint8_t> cert_der, bool sensitive = true,
                         bool extractable = false, bool always_authenticate = false);

// Error injection: the nth future call (1 = the next one) of entry point `fn` (e.g. "C_Sign")
// returns rv without doing anything else. With persistent=true that call and every later call
// of `fn` fail the same way until clear_failures() or reset(). Several injections may be
// pending at once; call counting is unaffected.
// Throws std::invalid_argument if nth < 1.
void fail(const std::string& fn, CK_RV rv, int nth = 1, bool persistent = false);
void clear_failures() noexcept;

// Inserts or removes the token of `slot`. Removal closes all of that slot's sessions
// (destroying their session objects) and logs out; token objects stay on the token and are
// there again after re-insertion.
// Throws std::invalid_argument for an unknown slot.
void set_token_present(CK_SLOT_ID slot, bool present);

// How often entry point `fn` ("C_Login", ...) was called since reset(), including calls that
// failed or had a failure injected.
int call_count(const std::string& fn) noexcept;

// Number of open sessions on `slot` (0 for an unknown slot).
int open_session_count(CK_SLOT_ID slot) noexcept;

// The next `count` C_Login(CKU_CONTEXT_SPECIFIC) calls on `slot` return rv without checking
// the PIN, and (like OpenSC) leave the session's sign operation active.
// A context-specific login that succeeds is good for the next signature with a PIN-always
// (CKA_ALWAYS_AUTHENTICATE) key on that token, from any session, as on a PIV card: another
// such signature in between consumes it, and the later C_Sign fails with
// CKR_USER_NOT_LOGGED_IN.
// Throws std::invalid_argument for an unknown slot.
void fail_context_login(CK_SLOT_ID slot, CK_RV rv, int count = 1);

// Makes each C_Login(CKU_CONTEXT_SPECIFIC) take `latency` more (slept after the login's work,
// outside the mock's lock, as a card's round trips would), so other threads run between a
// context login and its C_Sign. reset() sets it back to zero.
void set_card_latency(std::chrono::microseconds latency) noexcept;

// Runs `hook` once, in the next C_CloseSession, after the session is closed and outside the
// mock's lock (another thread's work during a card's round trip). reset() clears it.
void on_next_close_session(std::function<void()> hook);

// Sets the user PIN's failed-try counter of `slot` (3 tries: 1 gives CKF_USER_PIN_COUNT_LOW,
// 2 also CKF_USER_PIN_FINAL_TRY, 3 CKF_USER_PIN_LOCKED). Throws std::invalid_argument for an
// unknown slot.
void set_user_pin_failures(CK_SLOT_ID slot, int failures);

// How the token of `slot` treats key-pair generation (reset(): Supported).
enum class KeyGeneration {
  Supported,
  // C_GenerateKeyPair answers CKR_FUNCTION_NOT_SUPPORTED although the key-pair mechanisms are
  // listed with CKF_GENERATE_KEY_PAIR: what OpenSC's PIV driver does.
  FunctionNotSupported,
  // The key-pair mechanisms are not listed at all (C_GetMechanismInfo: CKR_MECHANISM_INVALID).
  NotOffered,
};
// Throws std::invalid_argument for an unknown slot.
void set_key_generation(CK_SLOT_ID slot, KeyGeneration g);

// Gives the token of `slot` a PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH) or takes it away.
// C_Login with a NULL PIN (length 0) is then "typed on the pad": `entered` CKR_OK stands for the
// right PIN, CKR_PIN_INCORRECT for a wrong one (counted like any wrong PIN). Without a pad a
// NULL PIN is CKR_ARGUMENTS_BAD. Throws std::invalid_argument for an unknown slot.
void set_pin_pad(CK_SLOT_ID slot, bool present, CK_RV entered = CKR_OK);

// A card of its own: what is in the reader of `slot` is pulled (its sessions closed, logged
// out, as set_token_present(slot, false)) and keeps its token objects, and `card` goes in, with
// the objects it had when it was last pulled (none for a card never seen; the same handles).
// A card that sits in another reader is taken out of that one first. PIN tries start afresh.
// Put the first card back with insert_card(slot, {"mock-a", "MOCKSERIAL0001", "1234"}).
// Throws std::invalid_argument for an unknown slot.
struct Card {
  std::string label;
  std::string serial;
  std::string user_pin;
};
void insert_card(CK_SLOT_ID slot, const Card& card);

// True while a user (CKU_USER) or the SO is logged in to the token of `slot`.
bool logged_in(CK_SLOT_ID slot) noexcept;

}  // namespace mqsec::mock

// The standard module entry point; returns mqsec::mock::function_list(). Declared by
// <p11-kit/pkcs11.h> as well; repeated here so the export is visible where it is defined.
extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(
    CK_FUNCTION_LIST_PTR_PTR ppFunctionList);
