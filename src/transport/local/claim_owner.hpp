// Claimed receives (delivery_log.hpp): who owns a claim, and whether that owner still lives.
//
// A claim owner is one Store: one open store of one process. A process normally has one per
// store directory; it has more when two copies of the library are loaded in it (libmqrt.so and
// libmqrt.dll.so, each with its own set of Stores) or when it names one store by two paths. Two
// Stores must never share an owner string: a claim check compares strings, so one Store would
// take the other's claim for its own and both could return one message (review S2,
// docs/design/segment-store-review-s24.md).
//
// Each Store takes a slot: an open file description (OFD) lock on one byte of
// <store>/claims/owners.lock, held for the Store's life. Slot 0 is the string earlier versions
// used, "<pid>:<start>", on the pid's own byte; slots 1-63 are "<pid>:<start>:<slot>" on bytes
// above every pid. A lock goes with the descriptor: when the Store closes, when the process
// ends or execs (O_CLOEXEC), never at a fork (the child's copy is closed, the description stays
// the parent's).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mqsec::transport::local {

inline constexpr int kOwnerSlots = 64;

struct ClaimOwner {
  pid_t pid = 0;
  uint64_t start = 0;  // field 22 of /proc/<pid>/stat: clock ticks since boot
  int slot = 0;        // 0 .. kOwnerSlots - 1
};

// "<pid>:<start>" (slot 0) or "<pid>:<start>:<slot>".
std::string claim_owner_string(const ClaimOwner& o);
// The process `pid` (its start time read now) as the owner of slot `slot`.
std::string claim_owner_of(pid_t pid, int slot = 0);
// The owner a string names; nullopt when mqsec never writes such a string.
std::optional<ClaimOwner> parse_claim_owner(std::string_view owner);

// The byte of owners.lock that slot `slot` of process `pid` locks: the pid for slot 0 (as earlier
// versions did), 2^32 + pid * kOwnerSlots + slot above it (no pid reaches 2^32).
off_t claim_owner_lock_byte(pid_t pid, int slot);

// Takes the first free slot of this process in owners.lock (descriptor `fd`, open read-write):
// its slot number; -2 when the first slot cannot be locked for another reason than another
// holder (no lock support: slot 0's string is then used without a lock, as before slots); -1
// when every slot is held by other Stores of this process, or a later one fails after slot 0
// was held (errno says why): the Store must not open, since slot 0's string is another's.
// Throws nothing.
int take_claim_owner_slot(int fd);

// Whether `owner` may still run: its process is running (pid with that start time), and, for
// slots 1-63, its slot's byte is locked in owners.lock (descriptor `owners_fd`; -1, or a file
// system without OFD locks: the process alone decides). Slot 0 is decided by the process alone:
// earlier versions of mqsec did not always hold its byte. An unparsable string is dead.
bool claim_owner_alive(const std::string& owner, int owners_fd = -1);

}  // namespace mqsec::transport::local
