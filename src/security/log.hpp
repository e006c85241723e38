// The runtime's diagnostic log. MSMQ's API returns bare HRESULTs; the reason behind a
// failure (which PKCS#11 call failed, which file was malformed) goes here.
//
// Destination from $MQSEC_LOG: unset or "syslog" -> syslog (ident "mqsec"), "stderr",
// "file:<path>" (appended; never through a symbolic link; created with mode 0600 whatever the
// umask), "off". MQSEC_LOG and MQSEC_DEBUG are read with secure_getenv: a setuid or setgid
// program ignores them (syslog). Messages never contain PINs.
#pragma once

#include <mq.h>

#include <string>

#include "mqsec/error.hpp"

namespace mqsec {

enum class LogLevel { Error, Warning, Info, Debug };

void log(LogLevel level, const std::string& message) noexcept;

// The last message logged at Error or Warning level by the calling thread (for the CLI,
// which prints the reason next to the MQ_ERROR code).
std::string last_error_message();
// Which token failure that last error was (TokenError::None when none or not known).
TokenError last_token_error() noexcept;
// Records `message` as the calling thread's last error without logging it (the ABI guard uses
// it for expected failures, which are logged at debug level only).
void set_last_error(const std::string& message, TokenError token_error = TokenError::None) noexcept;

// Logs `reason` at Error level and throws mqsec::Error(code, reason, token_error): the one way
// the security layer reports a failure that an MQ* call returns.
[[noreturn]] void fail(HRESULT code, const std::string& reason,
                       TokenError token_error = TokenError::None);

}  // namespace mqsec
