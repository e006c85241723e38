// The caller's identity: SID codec (MS-DTYP 2.4.2), the thread's credentials, the password
// database, and the SSSD / winbind SID lookups. Both directory libraries are optional at run
// time, so they are loaded with dlopen instead of being link-time dependencies.
#include "src/security/identity.hpp"

#include "mqsec/error.hpp"

#include <dlfcn.h>
#include <pwd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace mqsec::security {

namespace {

constexpr size_t kSidHeader = 8;
constexpr size_t kMaxSubAuthorities = 15;
constexpr uint64_t kMaxAuthority = 0xFFFFFFFFFFFFULL;  // 48 bits

[[noreturn]] void bad_sid(std::string_view s, const std::string& why) {
  // SIDs are not secret; quote (a bounded prefix of) the input so the caller can find it.
  constexpr size_t kQuote = 80;
  std::string shown(s.substr(0, kQuote));
  if (s.size() > kQuote) shown += "...";
  throw std::invalid_argument("invalid SID '" + shown + "': " + why);
}

template <typename T>
std::optional<T> parse_number(std::string_view field, int base) {
  T value{};
  if (field.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value, base);
  if (ec != std::errc() || end != field.data() + field.size()) return std::nullopt;
  return value;
}

}  // namespace

Sid Sid::from_bytes(std::span<const uint8_t> b) {
  if (b.size() < kSidHeader)
    throw std::invalid_argument("invalid binary SID: " + std::to_string(b.size()) +
                                " bytes, at least 8 needed");
  if (b[0] != 1)
    throw std::invalid_argument("invalid binary SID: revision " + std::to_string(b[0]) +
                                ", only revision 1 exists");
  if (b[1] > kMaxSubAuthorities)
    throw std::invalid_argument("invalid binary SID: " + std::to_string(b[1]) +
                                " sub-authorities, at most 15 allowed");
  const size_t expected = kSidHeader + 4 * size_t{b[1]};
  if (b.size() != expected)
    throw std::invalid_argument("invalid binary SID: " + std::to_string(b.size()) + " bytes, but " +
                                std::to_string(b[1]) + " sub-authorities need exactly " +
                                std::to_string(expected));
  Sid sid;
  sid.bytes_.assign(b.begin(), b.end());
  return sid;
}

Sid Sid::from_string(std::string_view s) {
  if (s.size() < 2 || (s[0] != 'S' && s[0] != 's') || s[1] != '-')
    bad_sid(s, "must start with \"S-\"");
  // Split the rest on '-': revision, authority, sub-authorities.
  std::vector<std::string_view> fields;
  std::string_view rest = s.substr(2);
  while (true) {
    const size_t dash = rest.find('-');
    fields.push_back(rest.substr(0, dash));
    if (dash == std::string_view::npos) break;
    rest.remove_prefix(dash + 1);
  }
  if (fields.size() < 2) bad_sid(s, "missing identifier authority");
  if (fields[0] != "1") bad_sid(s, "revision must be 1");
  if (fields.size() - 2 > kMaxSubAuthorities) bad_sid(s, "more than 15 sub-authorities");

  std::optional<uint64_t> authority;
  const std::string_view auth = fields[1];
  if (auth.size() > 2 && auth[0] == '0' && (auth[1] == 'x' || auth[1] == 'X')) {
    if (auth.size() - 2 <= 12) authority = parse_number<uint64_t>(auth.substr(2), 16);
  } else {
    authority = parse_number<uint64_t>(auth, 10);
  }
  if (!authority || *authority > kMaxAuthority)
    bad_sid(s, "identifier authority must be a 48-bit decimal or 0x-hex number");

  Sid sid;
  sid.bytes_.reserve(kSidHeader + 4 * (fields.size() - 2));
  sid.bytes_.push_back(1);
  sid.bytes_.push_back(static_cast<uint8_t>(fields.size() - 2));
  for (int shift = 40; shift >= 0; shift -= 8)
    sid.bytes_.push_back(static_cast<uint8_t>(*authority >> shift));
  for (size_t i = 2; i < fields.size(); ++i) {
    const auto sub = parse_number<uint32_t>(fields[i], 10);
    if (!sub)
      bad_sid(s, "sub-authority " + std::to_string(i - 1) + " is not a 32-bit decimal number");
    for (int shift = 0; shift < 32; shift += 8)
      sid.bytes_.push_back(static_cast<uint8_t>(*sub >> shift));
  }
  return sid;
}

Sid Sid::unix_user(uint32_t uid) {
  // S-1-22-1-<uid>: authority 22 ("Unix users" in Samba), sub-authorities 1 and uid.
  Sid sid;
  sid.bytes_ = {1, 2, 0, 0, 0, 0, 0, 22, 1, 0, 0, 0};
  for (int shift = 0; shift < 32; shift += 8)
    sid.bytes_.push_back(static_cast<uint8_t>(uid >> shift));
  return sid;
}

std::string Sid::str() const {
  if (bytes_.empty()) return {};
  uint64_t authority = 0;
  for (size_t i = 2; i < kSidHeader; ++i) authority = (authority << 8) | bytes_[i];
  std::string out = "S-1-";
  if (authority <= std::numeric_limits<uint32_t>::max()) {
    out += std::to_string(authority);
  } else {
    static constexpr char kHex[] = "0123456789ABCDEF";
    out += "0x";
    for (size_t i = 2; i < kSidHeader; ++i) {
      out += kHex[bytes_[i] >> 4];
      out += kHex[bytes_[i] & 0xF];
    }
  }
  for (size_t i = kSidHeader; i + 4 <= bytes_.size(); i += 4) {
    const uint32_t sub = uint32_t{bytes_[i]} | uint32_t{bytes_[i + 1]} << 8 |
                         uint32_t{bytes_[i + 2]} << 16 | uint32_t{bytes_[i + 3]} << 24;
    out += '-';
    out += std::to_string(sub);
  }
  return out;
}

std::string_view to_string(SidSource source) noexcept {
  switch (source) {
    case SidSource::Auto:
      return "auto";
    case SidSource::Unix:
      return "unix";
    case SidSource::Sssd:
      return "sssd";
    case SidSource::Winbind:
      return "winbind";
  }
  return "unknown";
}

// On 32-bit x86 and ARM the plain getresuid syscall uses 16-bit ids; the *32 variants are the
// real ones there. 64-bit ABIs only have the 32-bit-id call under the plain name.
uint32_t thread_effective_uid() noexcept {
  uid_t r = 0, e = 0, s = 0;
#ifdef SYS_getresuid32
  syscall(SYS_getresuid32, &r, &e, &s);
#else
  syscall(SYS_getresuid, &r, &e, &s);
#endif
  return e;  // getresuid cannot fail with valid pointers
}

uint32_t thread_effective_gid() noexcept {
  gid_t r = 0, e = 0, s = 0;
#ifdef SYS_getresgid32
  syscall(SYS_getresgid32, &r, &e, &s);
#else
  syscall(SYS_getresgid, &r, &e, &s);
#endif
  return e;
}

namespace {

[[noreturn]] void no_sid(const std::string& reason) {
  throw Error(MQ_ERROR_COULD_NOT_GET_USER_SID, reason);
}

// Outcome of asking one directory service.
struct Lookup {
  enum Kind { Found, NotApplicable, Failed } kind;
  Sid sid;
  std::string reason;  // why not Found
};

// dlopen handles are kept for the life of the process: unloading NSS-style client libraries
// that may have threads or atfork handlers registered is not safe, and a retry is cheap.
void* open_library(const char* name, std::string& error) {
  void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    error = e != nullptr ? e : name;
  }
  return handle;
}

// --- SSSD ------------------------------------------------------------------------------------
// From sss_nss_idmap.h (stable C ABI): the SID is returned as a malloc'ed string.
enum SssIdType { kSssNotSpecified = 0, kSssUid = 1, kSssGid = 2, kSssBoth = 3 };
using SssGetSid = int (*)(uint32_t id, char** sid, int* type);

struct SssdLib {
  std::string error;           // non-empty when not usable
  SssGetSid by_uid = nullptr;  // sss_nss_getsidbyuid (SSSD >= 2.x): users only
  SssGetSid by_id = nullptr;   // sss_nss_getsidbyid: users or groups, needs a type check
};

const SssdLib& sssd() {
  static const SssdLib lib = [] {
    SssdLib l;
    void* h = open_library("libsss_nss_idmap.so.0", l.error);
    if (h == nullptr) return l;
    // enum sss_id_type is an int-sized C enum; the pointer type differs only in name.
    l.by_uid = reinterpret_cast<SssGetSid>(dlsym(h, "sss_nss_getsidbyuid"));
    l.by_id = reinterpret_cast<SssGetSid>(dlsym(h, "sss_nss_getsidbyid"));
    if (l.by_uid == nullptr && l.by_id == nullptr)
      l.error = "libsss_nss_idmap.so.0 exports neither sss_nss_getsidbyuid nor sss_nss_getsidbyid";
    return l;
  }();
  return lib;
}

Lookup sid_from_sssd(uint32_t uid) {
  const SssdLib& lib = sssd();
  if (!lib.error.empty())
    return {
        Lookup::NotApplicable,
        {},
        "SSSD's libsss_nss_idmap is not available (" + lib.error + "; install libsss-nss-idmap0)"};
  char* raw = nullptr;
  int type = kSssNotSpecified;
  const int rc = lib.by_uid != nullptr ? lib.by_uid(uid, &raw, &type) : lib.by_id(uid, &raw, &type);
  std::unique_ptr<char, decltype(&std::free)> text(raw, &std::free);
  const std::string prefix = "SSSD has no SID for uid " + std::to_string(uid) + ": ";
  if (rc != 0) {
    const std::string why = prefix + std::strerror(rc);
    // Not known to SSSD, SSSD not running or not configured for it: another source may apply.
    // EIO means SSSD knows the domain but cannot reach its servers: falling back would send
    // under a different SID than usual, so that is a hard failure.
    if (rc == EIO || rc == EFAULT) return {Lookup::Failed, {}, why};
    return {Lookup::NotApplicable, {}, why};
  }
  if (text == nullptr) return {Lookup::Failed, {}, prefix + "it returned no SID"};
  if (type != kSssUid && type != kSssBoth)
    return {Lookup::NotApplicable, {}, prefix + "the id belongs to a group, not a user"};
  try {
    return {Lookup::Found, Sid::from_string(text.get()), {}};
  } catch (const std::invalid_argument& e) {
    return {Lookup::Failed, {}, prefix + "it returned " + e.what()};
  }
}

// --- winbind ---------------------------------------------------------------------------------
// From wbclient.h (stable C ABI since Samba 3.2).
struct WbcDomainSid {
  uint8_t sid_rev_num;
  uint8_t num_auths;
  uint8_t id_auth[6];
  uint32_t sub_auths[15];  // host byte order
};
enum WbcErr {
  kWbcSuccess = 0,
  kWbcNotImplemented = 1,
  kWbcWinbindNotAvailable = 6,
  kWbcDomainNotFound = 7,
  kWbcUnknownUser = 11,
};
using WbcUidToSid = int (*)(uid_t uid, WbcDomainSid* sid);
using WbcErrorString = const char* (*)(int err);

struct WinbindLib {
  std::string error;
  WbcUidToSid uid_to_sid = nullptr;
  WbcErrorString error_string = nullptr;
};

const WinbindLib& winbind() {
  static const WinbindLib lib = [] {
    WinbindLib l;
    void* h = open_library("libwbclient.so.0", l.error);
    if (h == nullptr) return l;
    l.uid_to_sid = reinterpret_cast<WbcUidToSid>(dlsym(h, "wbcUidToSid"));
    l.error_string = reinterpret_cast<WbcErrorString>(dlsym(h, "wbcErrorString"));
    if (l.uid_to_sid == nullptr) l.error = "libwbclient.so.0 does not export wbcUidToSid";
    return l;
  }();
  return lib;
}

Lookup sid_from_winbind(uint32_t uid) {
  const WinbindLib& lib = winbind();
  if (!lib.error.empty())
    return {Lookup::NotApplicable,
            {},
            "Samba's libwbclient is not available (" + lib.error +
                "; install libwbclient0 and winbind)"};
  WbcDomainSid raw{};
  int rc;
  {
    // The context-less wbc* calls share one global winbindd connection; older libwbclient
    // versions do not lock it, so serialise our calls.
    static std::mutex mu;
    std::lock_guard lock(mu);
    rc = lib.uid_to_sid(static_cast<uid_t>(uid), &raw);
  }
  const std::string prefix = "winbind has no SID for uid " + std::to_string(uid) + ": ";
  if (rc != kWbcSuccess) {
    std::string why = prefix;
    const char* s = lib.error_string != nullptr ? lib.error_string(rc) : nullptr;
    why += s != nullptr ? s : "wbcErr " + std::to_string(rc);
    if (rc == kWbcNotImplemented || rc == kWbcWinbindNotAvailable || rc == kWbcDomainNotFound ||
        rc == kWbcUnknownUser)
      return {Lookup::NotApplicable, {}, why};
    return {Lookup::Failed, {}, why};
  }
  if (raw.num_auths > kMaxSubAuthorities)
    return {Lookup::Failed, {}, prefix + "it returned a SID with too many sub-authorities"};
  // Built with push_back only: GCC 12's -Warray-bounds misfires on insert() after an
  // initializer-list construction here.
  std::vector<uint8_t> bytes;
  bytes.reserve(8 + 4 * raw.num_auths);
  bytes.push_back(raw.sid_rev_num);
  bytes.push_back(raw.num_auths);
  for (uint8_t b : raw.id_auth) bytes.push_back(b);
  for (size_t i = 0; i < raw.num_auths; ++i)
    for (int shift = 0; shift < 32; shift += 8)
      bytes.push_back(static_cast<uint8_t>(raw.sub_auths[i] >> shift));
  try {
    return {Lookup::Found, Sid::from_bytes(bytes), {}};
  } catch (const std::invalid_argument& e) {
    return {Lookup::Failed, {}, prefix + "it returned " + e.what()};
  }
}

Sid resolve_sid(SidSource source, uint32_t uid) {
  switch (source) {
    case SidSource::Unix:
      return Sid::unix_user(uid);
    case SidSource::Sssd: {
      Lookup l = sid_from_sssd(uid);
      if (l.kind != Lookup::Found) no_sid("[identity] sid = \"sssd\": " + l.reason);
      return l.sid;
    }
    case SidSource::Winbind: {
      Lookup l = sid_from_winbind(uid);
      if (l.kind != Lookup::Found) no_sid("[identity] sid = \"winbind\": " + l.reason);
      return l.sid;
    }
    case SidSource::Auto:
      break;
  }
  for (Lookup (*ask)(uint32_t) : {&sid_from_sssd, &sid_from_winbind}) {
    Lookup l = ask(uid);
    if (l.kind == Lookup::Found) return l.sid;
    if (l.kind == Lookup::Failed) no_sid("[identity] sid = \"auto\": " + l.reason);
  }
  return Sid::unix_user(uid);
}

}  // namespace

Sid user_sid(SidSource source, uint32_t uid) { return resolve_sid(source, uid); }

UserIdentity current_user(SidSource source) {
  UserIdentity user;
  user.uid = thread_effective_uid();
  user.gid = thread_effective_gid();

  long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? static_cast<size_t>(hint) : 4096);
  passwd pw{};
  passwd* found = nullptr;
  int rc;
  while ((rc = getpwuid_r(user.uid, &pw, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (size_t{1} << 20))
    buf.resize(buf.size() * 2);
  // getpwuid_r(3): these codes (and a null result) all mean "no such user".
  const bool missing =
      found == nullptr && (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM);
  if (missing)
    no_sid("uid " + std::to_string(user.uid) +
           " has no entry in the password database (getpwuid_r), so it has no user name, home or "
           "SID");
  if (rc != 0 || found == nullptr)
    no_sid("cannot read the password database for uid " + std::to_string(user.uid) + ": " +
           std::strerror(rc));
  user.name = pw.pw_name != nullptr ? pw.pw_name : "";
  user.home = pw.pw_dir != nullptr ? pw.pw_dir : "";
  user.sid = resolve_sid(source, user.uid);
  return user;
}

}  // namespace mqsec::security
