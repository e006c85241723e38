// Secrets named in the system configuration (the broker password): read from a source, with
// exactly the rules of PIN sources (pkcs11/pin.hpp), which this shares its implementation with.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "pkcs11/pin.hpp"

namespace mqsec::security {

// A secret source that names nothing usable or could not be read. what() names the source and
// the rule it breaks, never the secret.
class SecretSourceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "" when `spec` has the form of a secret source: "file:<absolute path>" (also "file:///path")
// or "env:<NAME>"; otherwise why not, without repeating a value that may be the secret itself.
// Checks the form only (the configuration parser's check); nothing is opened.
std::string secret_source_problem(const std::string& spec);

// Reads the secret named by `spec`. `what` says what it is, for messages ("broker password"
// gives "broker password file '/etc/mqsec/broker.pw' is accessible by group or others; ...").
//   file:<path>  a regular file owned by the calling thread's effective user, with no
//                permissions for group or others, opened with O_NOFOLLOW | O_NONBLOCK (a
//                symbolic link, FIFO, device or socket is refused at once, never blocks); at
//                most 256 bytes, trailing newlines dropped, empty refused. No %XX decoding: the
//                path is taken as written.
//   env:<NAME>   secure_getenv(NAME), set and not empty; refused in a thread whose effective
//                uid is not its real uid (its environment is the process's, not the user's).
// The result wipes itself when destroyed. Throws SecretSourceError.
pkcs11::SecretString read_secret_source(const std::string& spec, std::string_view what);

}  // namespace mqsec::security
