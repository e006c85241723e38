// Which process owns something the store keeps for it (claimed receives, delivery_log.hpp;
// transactions' holding queues, core/holding.hpp): a pid and that process's start time, so that
// a pid reused later by another process is not taken for the owner, and whether that process
// still runs.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace mqsec::transport::local {

// Field 22 of /proc/<pid>/stat: the start time in clock ticks after boot. The command name
// (field 2, in parentheses) may hold spaces, ')' and newlines: the fields are counted after the
// file's last ')'. nullopt when the file cannot be read or parsed.
std::optional<uint64_t> process_start_time(pid_t pid);

// This process's start time. Throws mqsec::Error(MQ_ERROR_SERVICE_NOT_AVAILABLE) when it cannot
// be read: an owner without one could not be told apart from a dead one.
uint64_t own_start_time();

// Whether process (pid, start) may still run. False only when that is certain: no process has
// the pid (kill(pid, 0) fails with ESRCH), or the pid's start time is readable and another (the
// pid was reused). /proc unreadable or unparsable, or a process we may not signal: alive, so a
// live owner's messages are never taken from it.
bool process_may_run(pid_t pid, uint64_t start);

}  // namespace mqsec::transport::local
