// A queue's security descriptor (MQGetQueueSecurity, MQSetQueueSecurity, MQCreateQueue's
// pSecurityDescriptor): Windows' self-relative SECURITY_DESCRIPTOR bytes (MS-DTYP 2.4.6) parsed,
// validated, merged and written back, and the Windows access check against its DACL. Pure: no
// store, no MSMQ handles; the caller supplies the SIDs and the rights it wants.
//
// What is kept: the owner SID, the group SID and the DACL (ACCESS_ALLOWED_ACE and
// ACCESS_DENIED_ACE, in order). A SACL (auditing) is validated when present and then dropped:
// mqsec does not audit queue access, and no caller holds the privilege MSMQ needs to read or
// write one (SE_SECURITY_NAME), so MQGet/SetQueueSecurity refuse SACL_SECURITY_INFORMATION.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "src/security/identity.hpp"

namespace mqsec::security {

// SECURITY_INFORMATION bits (winnt.h).
inline constexpr uint32_t kOwnerSecurityInformation = 0x00000001;
inline constexpr uint32_t kGroupSecurityInformation = 0x00000002;
inline constexpr uint32_t kDaclSecurityInformation = 0x00000004;
inline constexpr uint32_t kSaclSecurityInformation = 0x00000008;

// SECURITY_DESCRIPTOR_CONTROL bits (MS-DTYP 2.4.6) mqsec reads or writes.
inline constexpr uint16_t kSeDaclPresent = 0x0004;
inline constexpr uint16_t kSeSaclPresent = 0x0010;
inline constexpr uint16_t kSeSelfRelative = 0x8000;

// Generic rights and what they mean on a queue (MQSEC_QUEUE_GENERIC_* of mq.h).
inline constexpr uint32_t kGenericRead = 0x80000000;
inline constexpr uint32_t kGenericWrite = 0x40000000;
inline constexpr uint32_t kGenericExecute = 0x20000000;
inline constexpr uint32_t kGenericAll = 0x10000000;
// Replaces generic bits by the queue rights they stand for.
uint32_t map_generic_queue_rights(uint32_t mask) noexcept;

// ACE flags (MS-DTYP 2.4.4.1) that matter here.
inline constexpr uint8_t kInheritOnlyAce = 0x08;

struct Ace {
  enum class Type : uint8_t { Allowed = 0, Denied = 1 };  // ACCESS_ALLOWED/DENIED_ACE_TYPE
  Type type = Type::Allowed;
  uint8_t flags = 0;
  uint32_t mask = 0;
  Sid sid;
  friend bool operator==(const Ace&, const Ace&) = default;
};

struct SecurityDescriptor {
  std::optional<Sid> owner;
  std::optional<Sid> group;
  // SE_DACL_PRESENT. Present with no list (dacl == nullopt) is a NULL DACL: everyone has every
  // right. Present with an empty list: nobody has any (except the owner's implicit rights).
  bool dacl_present = false;
  std::optional<std::vector<Ace>> dacl;
  friend bool operator==(const SecurityDescriptor&, const SecurityDescriptor&) = default;
};

// Parses a self-relative descriptor: revision 1, SE_SELF_RELATIVE set, every offset and count
// inside `bytes`, SIDs of revision 1 with at most 15 sub-authorities, ACL revision 2 or 4,
// DACL ACEs of type ACCESS_ALLOWED_ACE or ACCESS_DENIED_ACE only (anything else, such as object
// or callback ACEs, is refused rather than ignored). A SACL is checked for its bounds and ACE
// sizes, then dropped. Never reads outside `bytes`. Throws
// mqsec::Error(MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR, why).
SecurityDescriptor parse_security_descriptor(std::span<const uint8_t> bytes);

// The length of the self-relative descriptor at `p`, for the C API's PSECURITY_DESCRIPTOR that
// comes without one (MQCreateQueue, MQSetQueueSecurity): the end of its furthest part, read
// from the header, each SID's sub-authority count and each ACL's size. Like Windows it trusts
// the caller that `p` is a descriptor; it reads only the header and the few bytes those fields
// are in, and refuses (MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR) a wrong revision, a descriptor that
// is not self-relative (an absolute one holds pointers) and any offset beyond 64 KiB, before
// reading there. The bytes must then still pass parse_security_descriptor.
size_t self_relative_length(const uint8_t* p);

// The self-relative bytes of the parts of `sd` that `information` names (OWNER, GROUP, DACL
// bits; others ignored): header, owner, group, DACL (ACL revision 2).
std::vector<uint8_t> serialize_security_descriptor(const SecurityDescriptor& sd,
                                                   uint32_t information);

// `current` with the parts `information` names taken from `change` (SetSecurityInfo's rule: a
// DACL_SECURITY_INFORMATION change without SE_DACL_PRESENT sets a NULL DACL). Throws
// MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR when OWNER or GROUP is named and `change` has none.
SecurityDescriptor merge_security_descriptor(const SecurityDescriptor& current,
                                             const SecurityDescriptor& change,
                                             uint32_t information);

// Windows' access check: true when `caller` (the user's SID first, then its groups such as
// Everyone) is granted every right of `desired` (generic bits mapped first). The owner has
// READ_CONTROL (MQSEC_GET_QUEUE_PERMISSIONS) and WRITE_DAC (MQSEC_CHANGE_QUEUE_PERMISSIONS)
// whatever the DACL says; then the DACL's ACEs are taken in order (inherit-only ones skipped):
// a deny ACE for a right not granted yet refuses, an allow ACE grants. A NULL or absent DACL
// grants everything; an empty one nothing. desired == 0 is allowed.
bool access_allowed(const SecurityDescriptor& sd, std::span<const Sid> caller, uint32_t desired);

// Well-known SIDs.
Sid everyone_sid();             // S-1-1-0
Sid anonymous_logon_sid();      // S-1-5-7
Sid authenticated_users_sid();  // S-1-5-11
// S-1-22-2-<gid>: Samba's SID for a Unix group, the group of descriptors mqsec makes.
Sid unix_group_sid(uint32_t gid);

// What MSMQ gives a new queue without a descriptor (MQCreateQueue): `owner` and `group` as
// owner and group; DACL: the owner full control (MQSEC_QUEUE_GENERIC_ALL), Everyone get
// properties, get permissions and send, Anonymous Logon send only (MSMQ 3.0 and later).
SecurityDescriptor default_queue_descriptor(const Sid& owner, const Sid& group);

// MQCreateQueue with a descriptor: `supplied`'s owner, group and DACL where it has them, the
// default's (default_queue_descriptor(creator, creator_group)) otherwise.
SecurityDescriptor creation_descriptor(const SecurityDescriptor& supplied, const Sid& creator,
                                       const Sid& creator_group);

}  // namespace mqsec::security
