// Queue security descriptors (src/security/security_descriptor.hpp): Windows' self-relative
// layout, merging, the access check, and hostile bytes (truncated, lying offsets and counts).
#include "src/security/security_descriptor.hpp"

#include <gtest/gtest.h>
#include <mq.h>

#include <random>
#include <vector>

#include "mqsec/error.hpp"

namespace mqsec::security {
namespace {

Sid sid(const char* s) { return Sid::from_string(s); }

// O:S-1-5-32-544 G:S-1-5-18 D:(A;;0x4;;;S-1-1-0)(D;;0x2;;;S-1-5-7), laid out as Windows'
// MakeSelfRelativeSD does (header, SACL, DACL, owner, group), written out byte by byte.
const std::vector<uint8_t> kWindowsBytes = {
    // header: revision 1, sbz1, control 0x8004 (self-relative, DACL present)
    0x01, 0x00, 0x04, 0x80,
    // owner at 0x44, group at 0x54, no SACL, DACL at 0x14
    0x44, 0x00, 0x00, 0x00, 0x54, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
    // DACL: revision 2, sbz1, size 0x30, 2 ACEs, sbz2
    0x02, 0x00, 0x30, 0x00, 0x02, 0x00, 0x00, 0x00,
    // ACE 1: allowed, flags 0, size 0x14, mask 4, S-1-1-0
    0x00, 0x00, 0x14, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x00,
    // ACE 2: denied, flags 0, size 0x14, mask 2, S-1-5-7
    0x01, 0x00, 0x14, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x07, 0x00, 0x00, 0x00,
    // owner S-1-5-32-544 at 0x44
    0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00,
    // group S-1-5-18 at 0x54
    0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x12, 0x00, 0x00, 0x00};

constexpr uint32_t kAll =
    kOwnerSecurityInformation | kGroupSecurityInformation | kDaclSecurityInformation;

HRESULT parse_code(std::span<const uint8_t> b) {
  try {
    parse_security_descriptor(b);
    return MQ_OK;
  } catch (const Error& e) {
    return e.code();
  }
}

TEST(SecurityDescriptor, ParsesWindowsLayout) {
  const SecurityDescriptor sd = parse_security_descriptor(kWindowsBytes);
  ASSERT_TRUE(sd.owner);
  EXPECT_EQ(sd.owner->str(), "S-1-5-32-544");
  ASSERT_TRUE(sd.group);
  EXPECT_EQ(sd.group->str(), "S-1-5-18");
  ASSERT_TRUE(sd.dacl_present);
  ASSERT_TRUE(sd.dacl);
  ASSERT_EQ(sd.dacl->size(), 2u);
  EXPECT_EQ((*sd.dacl)[0], (Ace{Ace::Type::Allowed, 0, 4, sid("S-1-1-0")}));
  EXPECT_EQ((*sd.dacl)[1], (Ace{Ace::Type::Denied, 0, 2, sid("S-1-5-7")}));
}

TEST(SecurityDescriptor, SerializeRoundTripsAndFiltersByInformation) {
  const SecurityDescriptor sd = parse_security_descriptor(kWindowsBytes);
  EXPECT_EQ(parse_security_descriptor(serialize_security_descriptor(sd, kAll)), sd);

  const SecurityDescriptor owner_only =
      parse_security_descriptor(serialize_security_descriptor(sd, kOwnerSecurityInformation));
  EXPECT_EQ(owner_only.owner, sd.owner);
  EXPECT_FALSE(owner_only.group);
  EXPECT_FALSE(owner_only.dacl_present);

  const SecurityDescriptor dacl_only =
      parse_security_descriptor(serialize_security_descriptor(sd, kDaclSecurityInformation));
  EXPECT_FALSE(dacl_only.owner);
  EXPECT_EQ(dacl_only.dacl, sd.dacl);

  SecurityDescriptor null_dacl;
  null_dacl.dacl_present = true;  // NULL DACL: present, no list
  const SecurityDescriptor back =
      parse_security_descriptor(serialize_security_descriptor(null_dacl, kAll));
  EXPECT_TRUE(back.dacl_present);
  EXPECT_FALSE(back.dacl);
}

TEST(SecurityDescriptor, RefusesWhatIsNotASelfRelativeDescriptor) {
  auto code_with = [](size_t at, uint8_t v) {
    std::vector<uint8_t> b = kWindowsBytes;
    b[at] = v;
    return parse_code(b);
  };
  EXPECT_EQ(parse_code({}), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);
  EXPECT_EQ(code_with(0, 2), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);        // revision
  EXPECT_EQ(code_with(3, 0x00), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);     // absolute format
  EXPECT_EQ(code_with(4, 0x10), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);     // owner inside header
  EXPECT_EQ(code_with(7, 0x01), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);     // owner far outside
  EXPECT_EQ(code_with(0x14, 3), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);     // ACL revision
  EXPECT_EQ(code_with(0x16, 0xff), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);  // ACL size too big
  EXPECT_EQ(code_with(0x18, 3), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);     // one ACE too many
  EXPECT_EQ(code_with(0x1c, 5), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);     // object ACE
  EXPECT_EQ(code_with(0x1e, 0x40), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);  // ACE size
  EXPECT_EQ(code_with(0x25, 9), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);     // SID count > ACE
  EXPECT_EQ(code_with(0x45, 16), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);    // 16 sub-authorities
  EXPECT_EQ(code_with(0x44, 2), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);     // SID revision
  // A SACL (control SE_SACL_PRESENT, offset 0x14: the DACL's bytes are a valid ACL) is checked
  // and dropped; one whose offset lies is refused.
  std::vector<uint8_t> with_sacl = kWindowsBytes;
  with_sacl[2] |= 0x10;
  with_sacl[12] = 0x14;
  EXPECT_EQ(parse_code(with_sacl), MQ_OK);
  with_sacl[12] = 0xf0;
  EXPECT_EQ(parse_code(with_sacl), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);
}

// Every prefix, every byte set to values that make offsets, sizes and counts lie, and random
// mutations: each parse either succeeds or throws MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR. Run
// under AddressSanitizer (docs/security.md lists how) it also proves nothing outside the
// buffer is read. Each input is a vector of exactly its size, so ASan sees one byte too far.
TEST(SecurityDescriptor, HostileBytesNeverReadOutOfBounds) {
  size_t parsed = 0, refused = 0;
  auto check = [&](const std::vector<uint8_t>& input) {
    const std::vector<uint8_t> b(input.begin(), input.end());  // exact capacity
    const HRESULT hr = parse_code(b);
    if (hr == MQ_OK) {
      ++parsed;
    } else {
      ASSERT_EQ(hr, MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);
      ++refused;
    }
  };
  for (size_t n = 0; n < kWindowsBytes.size(); ++n) {
    check(std::vector<uint8_t>(kWindowsBytes.begin(), kWindowsBytes.begin() + n));
  }
  const uint8_t values[] = {0x00, 0x01, 0x02, 0x04, 0x0f, 0x10, 0x14, 0x3f,
                            0x40, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0xfe, 0xff};
  for (size_t at = 0; at < kWindowsBytes.size(); ++at) {
    for (uint8_t v : values) {
      std::vector<uint8_t> b = kWindowsBytes;
      b[at] = v;
      check(b);
      b.pop_back();  // the same lie in a buffer one byte shorter
      check(b);
    }
  }
  std::mt19937 rng(13);
  for (int round = 0; round < 20000; ++round) {
    std::vector<uint8_t> b = kWindowsBytes;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < edits; ++i) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    b.resize(rng() % (b.size() + 1));
    check(b);
  }
  EXPECT_GT(parsed, 0u);
  EXPECT_GT(refused, 0u);
}

TEST(SecurityDescriptor, LengthOfADescriptorGivenByPointer) {
  EXPECT_EQ(self_relative_length(kWindowsBytes.data()), kWindowsBytes.size());
  const auto ours = serialize_security_descriptor(
      default_queue_descriptor(Sid::unix_user(7), unix_group_sid(7)), kAll);
  EXPECT_EQ(self_relative_length(ours.data()), ours.size());
  const auto dacl_only = serialize_security_descriptor(
      default_queue_descriptor(Sid::unix_user(7), unix_group_sid(7)), kDaclSecurityInformation);
  EXPECT_EQ(self_relative_length(dacl_only.data()), dacl_only.size());
  auto code = [](std::vector<uint8_t> b) {
    try {
      self_relative_length(b.data());
      return MQ_OK;
    } catch (const Error& e) {
      return e.code();
    }
  };
  std::vector<uint8_t> b = kWindowsBytes;
  b[3] = 0;  // absolute: holds pointers, not offsets
  EXPECT_EQ(code(b), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);
  b = kWindowsBytes;
  b[7] = 0x7f;  // an owner offset far away is refused before anything is read there
  EXPECT_EQ(code(b), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);
  EXPECT_EQ(code(std::vector<uint8_t>(kWindowsBytes.size(), 0)),
            MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);
}

TEST(SecurityDescriptor, MergeTakesOnlyTheNamedParts) {
  const Sid alice = Sid::unix_user(1001), bob = Sid::unix_user(1002);
  const SecurityDescriptor current = default_queue_descriptor(alice, unix_group_sid(100));
  SecurityDescriptor change;
  change.owner = bob;
  change.dacl_present = true;
  change.dacl = std::vector<Ace>{};

  SecurityDescriptor m = merge_security_descriptor(current, change, kOwnerSecurityInformation);
  EXPECT_EQ(m.owner, bob);
  EXPECT_EQ(m.dacl, current.dacl);
  EXPECT_EQ(m.group, current.group);

  m = merge_security_descriptor(current, change, kDaclSecurityInformation);
  EXPECT_EQ(m.owner, alice);
  ASSERT_TRUE(m.dacl);
  EXPECT_TRUE(m.dacl->empty());

  SecurityDescriptor no_dacl;  // DACL_SECURITY_INFORMATION without SE_DACL_PRESENT: NULL DACL
  m = merge_security_descriptor(current, no_dacl, kDaclSecurityInformation);
  EXPECT_TRUE(m.dacl_present);
  EXPECT_FALSE(m.dacl);

  try {
    merge_security_descriptor(current, no_dacl, kGroupSecurityInformation);
    FAIL() << "a GROUP change without a group was taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR);
  }
}

TEST(SecurityDescriptor, AccessCheckFollowsWindowsRules) {
  const Sid alice = Sid::unix_user(1001), bob = Sid::unix_user(1002);
  const std::vector<Sid> as_alice{alice, everyone_sid()};
  const std::vector<Sid> as_bob{bob, everyone_sid()};
  const std::vector<Sid> anonymous{anonymous_logon_sid()};

  const SecurityDescriptor d = default_queue_descriptor(alice, unix_group_sid(100));
  EXPECT_TRUE(access_allowed(d, as_alice, MQSEC_QUEUE_GENERIC_ALL));
  EXPECT_TRUE(access_allowed(d, as_alice, kGenericAll));
  EXPECT_TRUE(access_allowed(d, as_bob, MQSEC_WRITE_MESSAGE | MQSEC_GET_QUEUE_PROPERTIES));
  EXPECT_TRUE(access_allowed(d, as_bob, kGenericWrite));
  EXPECT_FALSE(access_allowed(d, as_bob, MQSEC_RECEIVE_MESSAGE));
  EXPECT_FALSE(access_allowed(d, as_bob, MQSEC_PEEK_MESSAGE));
  EXPECT_FALSE(access_allowed(d, as_bob, kGenericRead));
  EXPECT_FALSE(access_allowed(d, as_bob, MQSEC_DELETE_QUEUE));
  EXPECT_TRUE(access_allowed(d, anonymous, MQSEC_WRITE_MESSAGE));
  EXPECT_FALSE(access_allowed(d, anonymous, MQSEC_GET_QUEUE_PROPERTIES));
  EXPECT_TRUE(access_allowed(d, as_bob, 0));

  // Order matters: a deny before an allow refuses, after it does not.
  SecurityDescriptor s = d;
  s.dacl = std::vector<Ace>{Ace{Ace::Type::Denied, 0, MQSEC_WRITE_MESSAGE, everyone_sid()},
                            Ace{Ace::Type::Allowed, 0, MQSEC_WRITE_MESSAGE, bob}};
  EXPECT_FALSE(access_allowed(s, as_bob, MQSEC_WRITE_MESSAGE));
  std::swap((*s.dacl)[0], (*s.dacl)[1]);
  EXPECT_TRUE(access_allowed(s, as_bob, MQSEC_WRITE_MESSAGE));
  // Rights add up over ACEs; a deny of a right not asked for does not matter.
  s.dacl = std::vector<Ace>{Ace{Ace::Type::Allowed, 0, MQSEC_PEEK_MESSAGE, bob},
                            Ace{Ace::Type::Denied, 0, MQSEC_DELETE_QUEUE, bob},
                            Ace{Ace::Type::Allowed, 0, MQSEC_DELETE_MESSAGE, everyone_sid()}};
  EXPECT_TRUE(access_allowed(s, as_bob, MQSEC_RECEIVE_MESSAGE));
  EXPECT_FALSE(access_allowed(s, as_bob, MQSEC_RECEIVE_MESSAGE | MQSEC_DELETE_QUEUE));
  // Inherit-only ACEs do not apply to the queue itself.
  s.dacl = std::vector<Ace>{Ace{Ace::Type::Allowed, kInheritOnlyAce, MQSEC_WRITE_MESSAGE, bob}};
  EXPECT_FALSE(access_allowed(s, as_bob, MQSEC_WRITE_MESSAGE));
  // Empty DACL: nobody, except the owner's READ_CONTROL and WRITE_DAC.
  s.dacl = std::vector<Ace>{};
  EXPECT_FALSE(access_allowed(s, as_bob, MQSEC_WRITE_MESSAGE));
  EXPECT_FALSE(access_allowed(s, as_alice, MQSEC_WRITE_MESSAGE));
  EXPECT_TRUE(
      access_allowed(s, as_alice, MQSEC_GET_QUEUE_PERMISSIONS | MQSEC_CHANGE_QUEUE_PERMISSIONS));
  EXPECT_FALSE(access_allowed(s, as_bob, MQSEC_GET_QUEUE_PERMISSIONS));
  // ... even when the DACL denies them to the owner.
  s.dacl = std::vector<Ace>{Ace{Ace::Type::Denied, 0, MQSEC_QUEUE_GENERIC_ALL, alice}};
  EXPECT_TRUE(access_allowed(s, as_alice, MQSEC_CHANGE_QUEUE_PERMISSIONS));
  EXPECT_FALSE(access_allowed(s, as_alice, MQSEC_TAKE_QUEUE_OWNERSHIP));
  // NULL DACL: everyone, everything.
  s.dacl = std::nullopt;
  EXPECT_TRUE(access_allowed(s, anonymous, MQSEC_QUEUE_GENERIC_ALL));
  // Generic rights in an ACE are mapped too.
  s.dacl = std::vector<Ace>{Ace{Ace::Type::Allowed, 0, kGenericRead, bob}};
  EXPECT_TRUE(access_allowed(s, as_bob, MQSEC_RECEIVE_MESSAGE | MQSEC_RECEIVE_JOURNAL_MESSAGE));
  EXPECT_FALSE(access_allowed(s, as_bob, MQSEC_WRITE_MESSAGE));
}

TEST(SecurityDescriptor, CreationTakesSuppliedPartsAndDefaultsTheRest) {
  const Sid alice = Sid::unix_user(1001), bob = Sid::unix_user(1002);
  const Sid group = unix_group_sid(100);
  EXPECT_EQ(unix_group_sid(100).str(), "S-1-22-2-100");
  SecurityDescriptor supplied;
  supplied.dacl_present = true;
  supplied.dacl = std::vector<Ace>{Ace{Ace::Type::Allowed, 0, MQSEC_WRITE_MESSAGE, bob}};
  SecurityDescriptor sd = creation_descriptor(supplied, alice, group);
  EXPECT_EQ(sd.owner, alice);
  EXPECT_EQ(sd.group, group);
  EXPECT_EQ(sd.dacl, supplied.dacl);

  sd = creation_descriptor(SecurityDescriptor{}, alice, group);
  EXPECT_EQ(sd, default_queue_descriptor(alice, group));
  supplied.owner = bob;
  EXPECT_EQ(creation_descriptor(supplied, alice, group).owner, bob);
}

}  // namespace
}  // namespace mqsec::security
