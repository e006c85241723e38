// PINs a token refused, remembered across processes.
//
// Inside one process Token keeps the digests of refused PINs in memory; a service restarted by
// systemd starts with an empty memory and would present the same wrong PIN again, one more try
// burnt per restart until the card locks. So a refusal (CKR_PIN_INCORRECT) is also written to a
// per-user file, and a PIN recorded there is not presented to that token again.
//
// The file is the calling thread's effective user's (credentials are per thread: a service that
// impersonates a user reads and writes that user's file with that user's rights):
//   $MQSEC_STATE_DIR/pin-refusals        when MQSEC_STATE_DIR is set (and the thread acts as the
//                                        process's own user; secure_getenv)
//   <home of the euid>/.local/state/mqsec/pin-refusals   otherwise
// One line per refusal: "<token serial, hex> <salt, hex> <PBKDF2-HMAC-SHA256(PIN, salt), hex>".
// The PIN itself is never written; the salt is random per line. Directory 0700, file 0600,
// opened with O_NOFOLLOW; a file that is not a regular file owned by the user is ignored (and
// never written). A successful login to a token removes that token's lines: a PIN source
// that now holds another PIN is simply not matched, so correcting the PIN is all it takes.
#pragma once

#include <string>

namespace mqsec::pkcs11 {

// The file used for the calling thread's effective user ("" when no home can be found).
std::string pin_refusal_file();
// Whether `pin` was refused by the token with this serial (recorded by remember_refused_pin).
// I/O problems count as "not recorded".
bool pin_refused_before(const std::string& serial, const std::string& pin);
// Records a refusal. Returns "" or the reason it could not be recorded (for a warning).
std::string remember_refused_pin(const std::string& serial, const std::string& pin);
// Drops every record of the token with this serial (after a successful login). Best effort.
void forget_refused_pins(const std::string& serial);

// Warnings of the pkcs11 layer (a PIN try counter running low, a refusal that could not be
// recorded). The default sink writes "mqsec: warning: <text>" to stderr; the application may
// route them to its log. The sink must be thread-safe and must not throw.
using WarningSink = void (*)(const std::string& text);
void set_warning_sink(WarningSink sink) noexcept;
void warn(const std::string& text) noexcept;

}  // namespace mqsec::pkcs11
