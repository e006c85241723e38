#include "src/security/security_descriptor.hpp"

#include <mq.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "mqsec/error.hpp"

namespace mqsec::security {
namespace {

constexpr size_t kHeaderSize = 20;  // SECURITY_DESCRIPTOR_RELATIVE
constexpr size_t kAclHeaderSize = 8;
constexpr size_t kAceHeaderSize = 4;
constexpr size_t kSidHeaderSize = 8;
constexpr uint8_t kAclRevision = 2;
constexpr uint8_t kAclRevisionDs = 4;

[[noreturn]] void illegal(const std::string& why) {
  throw Error(MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR, "security descriptor: " + why);
}

uint16_t u16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>(b[at] | (b[at + 1] << 8));
}
uint32_t u32(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint32_t>(b[at]) | static_cast<uint32_t>(b[at + 1]) << 8 |
         static_cast<uint32_t>(b[at + 2]) << 16 | static_cast<uint32_t>(b[at + 3]) << 24;
}
void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
void set32(std::vector<uint8_t>& out, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// The SID that starts at `at` and ends no later than `end` (both within b).
Sid sid_at(std::span<const uint8_t> b, size_t at, size_t end, const char* what) {
  if (at > end || end - at < kSidHeaderSize) illegal(std::string(what) + " SID is truncated");
  const size_t count = b[at + 1];
  if (b[at] != 1 || count > 15) illegal(std::string(what) + " SID is not a revision-1 SID");
  const size_t size = kSidHeaderSize + 4 * count;
  if (end - at < size) illegal(std::string(what) + " SID is truncated");
  try {
    return Sid::from_bytes(b.subspan(at, size));
  } catch (const std::invalid_argument& e) {
    illegal(std::string(what) + " SID: " + e.what());
  }
}

// The ACL at `offset` (its bounds checked against b): its ACEs when `keep`, else only checked.
std::vector<Ace> acl_at(std::span<const uint8_t> b, uint32_t offset, const char* what, bool keep) {
  if (offset < kHeaderSize || offset > b.size() || b.size() - offset < kAclHeaderSize) {
    illegal(std::string(what) + " offset is outside the descriptor");
  }
  const uint8_t revision = b[offset];
  const size_t acl_size = u16(b, offset + 2);
  const size_t count = u16(b, offset + 4);
  if (revision != kAclRevision && revision != kAclRevisionDs) {
    illegal(std::string(what) + " has ACL revision " + std::to_string(revision));
  }
  if (acl_size < kAclHeaderSize || acl_size > b.size() - offset) {
    illegal(std::string(what) + " size runs outside the descriptor");
  }
  const size_t end = offset + acl_size;
  size_t at = offset + kAclHeaderSize;
  std::vector<Ace> aces;
  for (size_t i = 0; i < count; ++i) {
    if (end - at < kAceHeaderSize) illegal(std::string(what) + " has more ACEs than bytes");
    const uint8_t type = b[at];
    const uint8_t flags = b[at + 1];
    const size_t ace_size = u16(b, at + 2);
    if (ace_size < kAceHeaderSize + 4 + kSidHeaderSize || ace_size > end - at || ace_size % 4) {
      illegal(std::string(what) + " has an ACE of a wrong size");
    }
    if (keep) {
      if (type != 0 && type != 1) {
        illegal(std::string(what) + " has an ACE of type " + std::to_string(type) +
                " (only access-allowed and access-denied ACEs are supported)");
      }
      Ace ace;
      ace.type = type == 0 ? Ace::Type::Allowed : Ace::Type::Denied;
      ace.flags = flags;
      ace.mask = u32(b, at + 4);
      ace.sid = sid_at(b, at + 8, at + ace_size, "an ACE's");
      aces.push_back(std::move(ace));
    }
    at += ace_size;
  }
  return aces;
}

void put_sid(std::vector<uint8_t>& out, const Sid& sid) {
  out.insert(out.end(), sid.bytes().begin(), sid.bytes().end());
}

void put_acl(std::vector<uint8_t>& out, const std::vector<Ace>& aces) {
  const size_t start = out.size();
  out.push_back(kAclRevision);
  out.push_back(0);
  put16(out, 0);  // size, set below
  put16(out, static_cast<uint16_t>(aces.size()));
  put16(out, 0);
  for (const Ace& ace : aces) {
    out.push_back(static_cast<uint8_t>(ace.type));
    out.push_back(ace.flags);
    put16(out, static_cast<uint16_t>(kAceHeaderSize + 4 + ace.sid.bytes().size()));
    put32(out, ace.mask);
    put_sid(out, ace.sid);
  }
  const size_t size = out.size() - start;
  out[start + 2] = static_cast<uint8_t>(size);
  out[start + 3] = static_cast<uint8_t>(size >> 8);
}

Sid sid_of(const char* s) { return Sid::from_string(s); }

}  // namespace

uint32_t map_generic_queue_rights(uint32_t mask) noexcept {
  uint32_t out = mask & ~(kGenericRead | kGenericWrite | kGenericExecute | kGenericAll);
  if (mask & kGenericRead) out |= MQSEC_QUEUE_GENERIC_READ;
  if (mask & kGenericWrite) out |= MQSEC_QUEUE_GENERIC_WRITE;
  if (mask & kGenericExecute) out |= MQSEC_QUEUE_GENERIC_EXECUTE;
  if (mask & kGenericAll) out |= MQSEC_QUEUE_GENERIC_ALL;
  return out;
}

SecurityDescriptor parse_security_descriptor(std::span<const uint8_t> b) {
  if (b.size() < kHeaderSize) illegal("shorter than its 20-byte header");
  if (b[0] != 1) illegal("revision " + std::to_string(b[0]) + " (only 1 exists)");
  const uint16_t control = u16(b, 2);
  if (!(control & kSeSelfRelative)) illegal("not self-relative (SE_SELF_RELATIVE is not set)");
  const uint32_t owner = u32(b, 4), group = u32(b, 8), sacl = u32(b, 12), dacl = u32(b, 16);
  SecurityDescriptor sd;
  auto sid_field = [&](uint32_t offset, const char* what) -> std::optional<Sid> {
    if (offset == 0) return std::nullopt;
    if (offset < kHeaderSize || offset >= b.size()) {
      illegal(std::string(what) + " offset is outside the descriptor");
    }
    return sid_at(b, offset, b.size(), what);
  };
  sd.owner = sid_field(owner, "the owner");
  sd.group = sid_field(group, "the group");
  if ((control & kSeSaclPresent) && sacl != 0) acl_at(b, sacl, "the SACL", false);
  sd.dacl_present = (control & kSeDaclPresent) != 0;
  if (sd.dacl_present && dacl != 0) sd.dacl = acl_at(b, dacl, "the DACL", true);
  return sd;
}

size_t self_relative_length(const uint8_t* p) {
  if (p == nullptr) illegal("NULL");
  const std::span<const uint8_t> header(p, kHeaderSize);
  if (header[0] != 1) illegal("revision " + std::to_string(header[0]) + " (only 1 exists)");
  const uint16_t control = u16(header, 2);
  if (!(control & kSeSelfRelative)) illegal("not self-relative (SE_SELF_RELATIVE is not set)");
  constexpr size_t kMaxOffset = 0x10000;
  size_t end = kHeaderSize;
  auto component = [&](size_t field, bool present, bool acl) {
    const size_t offset = u32(header, field);
    if (!present || offset == 0) return;
    if (offset < kHeaderSize || offset > kMaxOffset) illegal("an offset is out of range");
    const std::span<const uint8_t> at(p + offset, 4);
    const size_t size = acl ? u16(at, 2) : kSidHeaderSize + 4 * size_t{at[1]};
    end = std::max(end, offset + size);
  };
  component(4, true, false);
  component(8, true, false);
  component(12, (control & kSeSaclPresent) != 0, true);
  component(16, (control & kSeDaclPresent) != 0, true);
  return end;
}

std::vector<uint8_t> serialize_security_descriptor(const SecurityDescriptor& sd,
                                                   uint32_t information) {
  const bool with_owner = (information & kOwnerSecurityInformation) && sd.owner;
  const bool with_group = (information & kGroupSecurityInformation) && sd.group;
  const bool with_dacl = (information & kDaclSecurityInformation) && sd.dacl_present;
  std::vector<uint8_t> out;
  out.reserve(128);
  out.push_back(1);
  out.push_back(0);
  put16(out, static_cast<uint16_t>(kSeSelfRelative | (with_dacl ? kSeDaclPresent : 0)));
  out.resize(kHeaderSize, 0);
  if (with_owner) {
    set32(out, 4, static_cast<uint32_t>(out.size()));
    put_sid(out, *sd.owner);
  }
  if (with_group) {
    set32(out, 8, static_cast<uint32_t>(out.size()));
    put_sid(out, *sd.group);
  }
  if (with_dacl && sd.dacl) {
    set32(out, 16, static_cast<uint32_t>(out.size()));
    put_acl(out, *sd.dacl);
  }
  return out;
}

SecurityDescriptor merge_security_descriptor(const SecurityDescriptor& current,
                                             const SecurityDescriptor& change,
                                             uint32_t information) {
  SecurityDescriptor out = current;
  if (information & kOwnerSecurityInformation) {
    if (!change.owner) illegal("OWNER_SECURITY_INFORMATION without an owner");
    out.owner = change.owner;
  }
  if (information & kGroupSecurityInformation) {
    if (!change.group) illegal("GROUP_SECURITY_INFORMATION without a group");
    out.group = change.group;
  }
  if (information & kDaclSecurityInformation) {
    out.dacl_present = true;
    out.dacl = change.dacl_present ? change.dacl : std::nullopt;
  }
  return out;
}

bool access_allowed(const SecurityDescriptor& sd, std::span<const Sid> caller, uint32_t desired) {
  desired = map_generic_queue_rights(desired);
  if (desired == 0) return true;
  auto is_caller = [&](const Sid& s) {
    return std::find(caller.begin(), caller.end(), s) != caller.end();
  };
  uint32_t granted = 0;
  if (sd.owner && is_caller(*sd.owner)) {
    granted |= MQSEC_GET_QUEUE_PERMISSIONS | MQSEC_CHANGE_QUEUE_PERMISSIONS;
  }
  if (!sd.dacl_present || !sd.dacl) return true;  // NULL DACL: everyone, everything
  for (const Ace& ace : *sd.dacl) {
    if ((desired & ~granted) == 0) break;
    if ((ace.flags & kInheritOnlyAce) || !is_caller(ace.sid)) continue;
    const uint32_t mask = map_generic_queue_rights(ace.mask);
    if (ace.type == Ace::Type::Denied) {
      if (mask & desired & ~granted) return false;
    } else {
      granted |= mask & desired;
    }
  }
  return (desired & ~granted) == 0;
}

Sid everyone_sid() { return sid_of("S-1-1-0"); }
Sid anonymous_logon_sid() { return sid_of("S-1-5-7"); }
Sid authenticated_users_sid() { return sid_of("S-1-5-11"); }
Sid unix_group_sid(uint32_t gid) { return sid_of(("S-1-22-2-" + std::to_string(gid)).c_str()); }

SecurityDescriptor default_queue_descriptor(const Sid& owner, const Sid& group) {
  SecurityDescriptor sd;
  sd.owner = owner;
  sd.group = group;
  sd.dacl_present = true;
  sd.dacl = std::vector<Ace>{
      Ace{Ace::Type::Allowed, 0, MQSEC_QUEUE_GENERIC_ALL, owner},
      Ace{Ace::Type::Allowed, 0,
          MQSEC_GET_QUEUE_PROPERTIES | MQSEC_GET_QUEUE_PERMISSIONS | MQSEC_WRITE_MESSAGE,
          everyone_sid()},
      Ace{Ace::Type::Allowed, 0, MQSEC_WRITE_MESSAGE, anonymous_logon_sid()},
  };
  return sd;
}

SecurityDescriptor creation_descriptor(const SecurityDescriptor& supplied, const Sid& creator,
                                       const Sid& creator_group) {
  SecurityDescriptor sd = default_queue_descriptor(
      supplied.owner ? *supplied.owner : creator, supplied.group ? *supplied.group : creator_group);
  if (supplied.dacl_present) sd.dacl = supplied.dacl;
  return sd;
}

}  // namespace mqsec::security
