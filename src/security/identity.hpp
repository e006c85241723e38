// The caller's identity: who the calling *thread* is (Linux credentials are per thread, so a
// thread that switched its effective uid with the raw setresuid syscall impersonates another
// user) and that user's Windows SID, which mqsec puts in PROPID_M_SENDERID. The SID comes from
// the system's identity services (SSSD, winbind) or Samba's S-1-22-1-<uid> convention, never
// from a file the user can edit.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mqsec::security {

// A Windows SID in its binary MS-DTYP 2.4.2.2 layout: revision (1), sub-authority count (0-15),
// 6-byte big-endian identifier authority, then little-endian 32-bit sub-authorities. This is
// the byte string MSMQ carries in PROPID_M_SENDERID.
class Sid {
 public:
  // An empty SID (no bytes, str() is ""). Only a placeholder: every SID mqsec hands out
  // comes from one of the factories below.
  Sid() = default;

  // Parses "S-1-<authority>-<sub>..." (MS-DTYP 2.4.2.1): authority in decimal or as 0x plus up
  // to 12 hex digits, at most 15 sub-authorities of 32 bits each. Throws std::invalid_argument
  // for anything else (other revisions, empty or signed fields, overflow, trailing text).
  static Sid from_string(std::string_view s);
  // Takes a binary SID; the length must be exactly 8 + 4 * count. Throws std::invalid_argument.
  static Sid from_bytes(std::span<const uint8_t> b);
  // S-1-22-1-<uid>: Samba's SID for a Unix user that no directory maps to a domain SID.
  static Sid unix_user(uint32_t uid);

  const std::vector<uint8_t>& bytes() const noexcept { return bytes_; }
  bool empty() const noexcept { return bytes_.empty(); }
  // Canonical string form: decimal authority below 2^32, else "0x" and 12 upper-case hex
  // digits (as Windows' ConvertSidToStringSid prints it). "" for an empty SID.
  std::string str() const;

  friend bool operator==(const Sid&, const Sid&) = default;

 private:
  std::vector<uint8_t> bytes_;
};

// Where current_user() takes the SID from ([identity] sid in the system config).
enum class SidSource { Auto, Unix, Sssd, Winbind };

// "auto", "unix", "sssd" or "winbind": the spelling used in the config file.
std::string_view to_string(SidSource source) noexcept;

struct UserIdentity {
  uint32_t uid = 0;            // the thread's effective uid
  uint32_t gid = 0;            // the thread's effective gid
  std::string name;            // from the password database
  std::filesystem::path home;  // from the password database, never $HOME
  Sid sid;
};

// The calling thread's effective uid/gid, read with the raw getresuid/getresgid syscalls:
// glibc's wrappers are fine for reading too, but the raw call makes it explicit that the
// answer is this thread's credentials, which may differ from other threads'.
uint32_t thread_effective_uid() noexcept;
uint32_t thread_effective_gid() noexcept;

// The calling thread's effective user: name and home from getpwuid_r, SID from `source`:
//   Unix    -> S-1-22-1-<uid>
//   Sssd    -> sss_nss_getsidbyuid (or sss_nss_getsidbyid) from libsss_nss_idmap.so.0 (dlopen)
//   Winbind -> wbcUidToSid from libwbclient.so.0 (dlopen)
//   Auto    -> sssd, then winbind, then unix. A service that is not installed, not running or
//              does not know the uid is skipped; a service that knows the user but cannot answer
//              now (e.g. SSSD reports its servers unreachable) is an error, so that a user's
//              messages never go out under a different SID just because the network is down.
// Throws mqsec::Error(MQ_ERROR_COULD_NOT_GET_USER_SID, reason) when the uid has no passwd entry,
// the password database cannot be read, or the configured (non-auto) source is not installed
// or fails.
UserIdentity current_user(SidSource source);
// The SID `source` gives uid (as current_user does for the thread's uid), for another user
// such as the store's owner. Throws like current_user.
Sid user_sid(SidSource source, uint32_t uid);

}  // namespace mqsec::security
