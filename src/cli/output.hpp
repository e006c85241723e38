// Shared plumbing of the `mqsec` command: how failures are reported (one `mqsec: ...` line with
// the MQ_ERROR name and value, an optional `hint:` line, and an exit code), HRESULT names, and
// the small text helpers every verb needs (JSON strings, hex, certificates from files).
#pragma once

#include <mq.h>

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "src/security/config.hpp"
#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"

namespace mqsec::cli {

// Exit codes of the command (docs/cli.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // an operation failed (an MQ error)
inline constexpr int kExitUsage = 2;   // bad command line (CLI11's parse errors)
inline constexpr int kExitConfig = 3;  // the system configuration or a profile is unusable

// A failure of a verb. main() prints it as
//   mqsec: <what>: <reason> (<MQ_ERROR_NAME> 0x<hex>)
//   hint: <hint>                                   (only when hint is not empty)
// and exits with `exit_code`.
class Failure : public std::runtime_error {
 public:
  Failure(std::string what, std::string reason, HRESULT code, std::string hint = {},
          int exit_code = kExitFailed);
  const std::string& what_failed() const noexcept { return what_; }
  const std::string& reason() const noexcept { return reason_; }
  HRESULT code() const noexcept { return code_; }
  const std::string& hint() const noexcept { return hint_; }
  int exit_code() const noexcept { return exit_code_; }

 private:
  std::string what_, reason_;
  HRESULT code_;
  std::string hint_;
  int exit_code_;
};

// "MQ_ERROR_QUEUE_NOT_FOUND" for a value of mq.h; "HRESULT" for unknown values.
std::string hresult_name(HRESULT hr);
// "0xC00E0003".
std::string hresult_hex(HRESULT hr);
// A short description of an HRESULT, used when the runtime left no reason.
std::string hresult_text(HRESULT hr);
// What to do about an HRESULT in general ("" when there is nothing useful to say); `reason`, the
// failure's text, tells a broker problem from a store problem (both
// MQ_ERROR_SERVICE_NOT_AVAILABLE).
std::string default_hint(HRESULT hr, std::string_view reason = {});

// Calls of the C API return bare HRESULTs; the runtime logs the reason of most failures, and
// mqsec::last_error_message() gives the calling thread's last one. A ReasonProbe taken before
// a call tells whether the call logged a new reason.
class ReasonProbe {
 public:
  ReasonProbe();
  // The reason logged since construction, else hresult_text(hr).
  std::string reason(HRESULT hr) const;

 private:
  std::string before_;
};

// Throws Failure(what, reason, hr, hint or default_hint(hr)) when FAILED(hr).
void check_hr(HRESULT hr, const std::string& what, const ReasonProbe& probe,
              const std::string& hint = {});

// Loads the system configuration; a malformed or unreadable file is a Failure with exit code
// kExitConfig (MQ_ERROR_CORRUPTED_SECURITY_DATA, the code the runtime reports for it).
security::SystemConfig load_config_or_fail();

// The calling user's setup (security::resolve_user) after load_config_or_fail(). When
// need_profile, a malformed user profile is a Failure with kExitConfig
// (MQ_ERROR_CANNOT_OPEN_CERT_STORE); a user without identity is a Failure with exit code 1.
security::UserSetup resolve_user_or_fail(bool need_profile);

// The whole file. Throws Failure(what, reason, MQ_ERROR_INVALID_PARAMETER).
std::vector<uint8_t> read_file(const std::filesystem::path& path, const std::string& what);
// Writes the whole file (mode 0644 via the umask), replacing it. Throws Failure.
void write_file(const std::filesystem::path& path, std::span<const uint8_t> data);

// A certificate file, DER or PEM (detected by the "-----BEGIN" marker): returns the DER.
// Throws Failure(MQ_ERROR_INVALID_CERTIFICATE) when it holds no single certificate.
std::vector<uint8_t> read_certificate_file(const std::filesystem::path& path);
// The subject of a DER certificate, or "" when it does not parse.
std::string subject_of(std::span<const uint8_t> der);

// A JSON string literal (with the quotes), escaping as RFC 8259 requires.
std::string json_string(std::string_view s);
// Text with control characters escaped (\n, \t, \xNN) for one-line display.
std::string one_line(std::string_view s);
// True when `b` is valid UTF-8 without control characters other than tab, CR and LF.
bool printable_utf8(std::span<const uint8_t> b);
using security::hex;  // lower-case hex of bytes
// "2024-05-01T12:00:00Z".
std::string iso_time(std::time_t t);
// The canonical string of a binary SID, or "(malformed SID, N bytes)".
std::string sid_string(std::span<const uint8_t> sid);

// ".\private$\NAME" for a bare queue name given on the command line, and the store's
// (lower-cased) name of it. The latter throws Failure(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME).
std::wstring queue_path(const std::string& name);
std::string store_queue_name(const std::string& name);

}  // namespace mqsec::cli
