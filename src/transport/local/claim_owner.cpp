// Claim owners (claim_owner.hpp).
#include "src/transport/local/claim_owner.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include "src/transport/local/process_identity.hpp"

namespace mqsec::transport::local {

namespace {

struct flock byte_lock(short type, off_t byte) {
  struct flock l {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = byte;
  l.l_len = 1;
  return l;
}

}  // namespace

std::string claim_owner_string(const ClaimOwner& o) {
  std::string s = std::to_string(o.pid) + ":" + std::to_string(o.start);
  if (o.slot != 0) s += ":" + std::to_string(o.slot);
  return s;
}

std::string claim_owner_of(pid_t pid, int slot) {
  const uint64_t start = pid == ::getpid() ? own_start_time() : process_start_time(pid).value_or(0);
  return claim_owner_string({pid, start, slot});
}

std::optional<ClaimOwner> parse_claim_owner(std::string_view owner) {
  // "<pid>:<start>" or "<pid>:<start>:<slot>", decimal, nothing else.
  auto number = [](std::string_view s, auto& out) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
  };
  ClaimOwner o;
  const size_t a = owner.find(':');
  if (a == std::string_view::npos || !number(owner.substr(0, a), o.pid) || o.pid <= 0) {
    return std::nullopt;
  }
  const std::string_view rest = owner.substr(a + 1);
  const size_t b = rest.find(':');
  if (!number(rest.substr(0, b), o.start)) return std::nullopt;
  if (b == std::string_view::npos) return o;
  // Slot 0 is written without its field.
  if (!number(rest.substr(b + 1), o.slot) || o.slot < 1 || o.slot >= kOwnerSlots) {
    return std::nullopt;
  }
  return o;
}

off_t claim_owner_lock_byte(pid_t pid, int slot) {
  if (slot == 0) return pid;
  return (off_t{1} << 32) + static_cast<off_t>(pid) * kOwnerSlots + slot;
}

int take_claim_owner_slot(int fd) {
  const pid_t pid = ::getpid();
  for (int slot = 0; slot < kOwnerSlots; ++slot) {
    struct flock l = byte_lock(F_WRLCK, claim_owner_lock_byte(pid, slot));
    if (::fcntl(fd, F_OFD_SETLK, &l) == 0) return slot;
    if (errno == EAGAIN || errno == EACCES) continue;  // another Store of this process
    // No lock support (the first slot): nobody can hold one, slot 0's string is ours as
    // before slots. Past a slot held by another Store: that one's string is taken.
    return slot == 0 ? -2 : -1;
  }
  errno = EAGAIN;
  return -1;
}

bool claim_owner_alive(const std::string& owner, int owners_fd) {
  const std::optional<ClaimOwner> o = parse_claim_owner(owner);
  if (!o) return false;  // never written by mqsec
  if (!process_may_run(o->pid, o->start)) return false;
  if (o->slot == 0 || owners_fd < 0) return true;
  // Another Store of a process that runs: alive while its slot's byte is locked. Our own
  // description's locks never conflict with this test, but our own string is never tested.
  struct flock l = byte_lock(F_WRLCK, claim_owner_lock_byte(o->pid, o->slot));
  if (::fcntl(owners_fd, F_OFD_GETLK, &l) != 0) return true;  // cannot tell: the process decides
  return l.l_type != F_UNLCK;
}

}  // namespace mqsec::transport::local
