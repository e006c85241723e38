// The system registry: certificate -> SID bindings that only root can write, trusted by every
// receiver on the machine (the second confirmation source of a message's SENDERID, after a SID
// in a certificate whose chain validated, before the receiving user's own registry).
//
// A directory ([trust] registry, default /etc/mqsec/registry.d) holding one file per
// certificate, named "<sha256>.toml" (the lower-case hex SHA-256 of the certificate's DER):
//
//   # mqsec system registry entry (managed with `mqsec registry add|remove|list`)
//   sid = "S-1-5-21-1004336348-1177238915-682003330-512"
//   subject = "CN=alice,O=Payroll"        # informational; never trusted
//   certificate = """
//   -----BEGIN CERTIFICATE-----
//   ...
//   -----END CERTIFICATE-----
//   """
//
// A file counts only when its certificate hashes to its name. Receivers trust the registry only
// when the directory and every directory above it are owned by root and not writable by group
// or others (a directory with the sticky bit, such as /tmp, may be), and a file only when it is a
// regular file owned by root and not writable by group or others. An unsafe directory is
// ignored as a whole, with one warning in the log; a missing one is simply empty.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "src/security/bytes_less.hpp"
#include "src/security/identity.hpp"

namespace mqsec::security {

using Bytes = std::vector<uint8_t>;

class SystemRegistryError : public std::runtime_error {
 public:
  enum class Kind {
    Unsafe,     // the directory or a file may be written by someone other than root
    Malformed,  // a file that is not a valid entry (or not for the certificate it is named for)
    Conflict,   // add: the certificate is bound to another SID already
    Io,         // a system call failed
  };
  SystemRegistryError(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  Kind kind() const noexcept { return kind_; }

 private:
  Kind kind_;
};

struct SystemRegistryEntry {
  Bytes cert_sha256;
  Bytes cert_der;
  Sid sid;
  std::string subject;  // of the certificate (subject_string form)
  std::filesystem::path file;
};

// "<64 lower-case hex digits>.toml". Throws std::invalid_argument unless 32 bytes.
std::string system_registry_file_name(std::span<const uint8_t> cert_sha256);
// The digest a file name stands for; nullopt for any other name (temporary files, etc.).
std::optional<Bytes> system_registry_digest_of(std::string_view file_name);

// The text of an entry file. Throws std::invalid_argument when der is not one DER certificate.
std::string format_system_registry_entry(std::span<const uint8_t> cert_der, const Sid& sid);
// Parses an entry file's text; checks that the certificate's SHA-256 is expected_sha256.
// Throws SystemRegistryError(Malformed) naming `source`.
SystemRegistryEntry parse_system_registry_entry(std::string_view text,
                                                std::span<const uint8_t> expected_sha256,
                                                const std::string& source);

// Whether receivers may trust `dir`.
struct SystemRegistryDirState {
  bool exists = false;
  bool trusted = false;  // exists, and it and its ancestors are safely owned
  std::string problem;   // why not trusted (empty when trusted or missing)
  struct stat st {};     // of the directory, when it exists
};
SystemRegistryDirState check_system_registry_dir(const std::filesystem::path& dir);

// Reads dir/<name of cert_sha256> without following a symbolic link (O_NOFOLLOW | O_CLOEXEC |
// O_NONBLOCK, then fstat: a regular file owned by root, not writable by group or others, at
// most 64 KiB). nullopt when there is no such file. Does not check the directory (callers do).
// Throws SystemRegistryError(Unsafe or Malformed or Io).
std::optional<SystemRegistryEntry> read_system_registry_entry(const std::filesystem::path& dir,
                                                              std::span<const uint8_t> cert_sha256);

struct SystemRegistryListing {
  SystemRegistryDirState dir;
  std::vector<SystemRegistryEntry> entries;  // by file name
  // Files that are not valid, safe entries, with why (a receiver ignores them).
  std::vector<std::pair<std::filesystem::path, std::string>> problems;
};
SystemRegistryListing list_system_registry(const std::filesystem::path& dir);

// Administration (root only: the caller checks, the file system enforces).
enum class SystemRegistryAdd { Added, AlreadyPresent };
// Binds the certificate to `sid`. Creates `dir` (and missing parents) with mode 0755 owned by
// root when missing; refuses an existing directory receivers would not trust (Unsafe), and a
// certificate bound to another SID (Conflict: remove it first). The file is written to a
// temporary file in `dir` (mode 0644, owned by root:root), fsynced, then linked into place
// (never replacing another file) and the directory fsynced. Throws SystemRegistryError.
SystemRegistryAdd add_to_system_registry(const std::filesystem::path& dir,
                                         std::span<const uint8_t> cert_der, const Sid& sid);
// Removes the entry of that certificate; false when there was none. Throws SystemRegistryError.
bool remove_from_system_registry(const std::filesystem::path& dir,
                                 std::span<const uint8_t> cert_sha256);

// Receivers' view of one registry directory: lookups are cached per process. The directory is
// checked (stat of it and its ancestors) at most once per `recheck`; when it changed (any file
// added, removed or renamed changes its mtime) or its safety did, the cache is dropped. Entries
// are also re-read after `max_age`, which covers a file edited in place. An unsafe directory
// gives no entries and one warning in the log (again only if the problem changes).
// Thread-safe and fork-safe (its lock is a registered fork lock).
class SystemRegistry {
 public:
  explicit SystemRegistry(std::filesystem::path dir,
                          std::chrono::milliseconds recheck = std::chrono::seconds(1),
                          std::chrono::milliseconds max_age = std::chrono::seconds(60));
  ~SystemRegistry();
  SystemRegistry(const SystemRegistry&) = delete;
  SystemRegistry& operator=(const SystemRegistry&) = delete;

  // The SID bytes the registry binds the certificate to, or nullopt.
  std::optional<Bytes> lookup(const Bytes& cert_sha256);

  const std::filesystem::path& dir() const noexcept { return dir_; }
  // Number of entry files read so far (tests: lookups are cached).
  uint64_t reads() const;

 private:
  using Clock = std::chrono::steady_clock;
  void refresh_if_due();

  const std::filesystem::path dir_;
  const std::chrono::milliseconds recheck_, max_age_;
  mutable std::mutex mu_;
  bool checked_ = false;
  Clock::time_point last_check_{}, cache_since_{};
  bool trusted_ = false;
  struct stat dir_st_ {};
  std::string warned_;  // the last problem logged
  std::map<Bytes, std::optional<Bytes>, BytesLess> cache_;
  uint64_t reads_ = 0;
};

}  // namespace mqsec::security
