// Claimed receives (issue 14): who a receiver process is, and its delivery log.
//
// A receiver process claims several messages of a queue in one write transaction (table
// `claims` of the store) and returns them one by one. Each message it returns is recorded in
// this process's delivery log, one small write() per receive, outside SQLite; the rows are
// deleted (and their ids recorded as delivered) later, in batches. A claim whose owner is dead
// (or whose lease ran out) is released by another process, after it applied the owner's
// log under the log's lock (flock): what the owner returned is deleted, never redelivered.
//
// The owner checks that its claim still holds and appends to its log while it holds the same
// lock, so a recoverer either sees the entry or the owner sees its claim gone: a message is
// returned by exactly one process whatever the timing (docs/performance.md, "Claimed receives").
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mqsec::transport::local {

// A process as a claim owner: "<pid>:<start time>" (field 22 of /proc/<pid>/stat, in clock
// ticks since boot), so that a reused pid is not taken for the owner.
std::string claim_owner_of(pid_t pid);
// Whether the process `owner` names is still running (its pid exists with that start time).
// An owner string that does not parse is dead.
bool claim_owner_alive(const std::string& owner);

// One returned message, as the log keeps it (fixed 80-byte records).
struct DeliveryRecord {
  int64_t queue_id = 0;
  int64_t seq = 0;
  int64_t sent_time = 0;
  std::vector<uint8_t> msg_id;
};
inline constexpr size_t kMaxLoggedIdSize = 48;

// The delivery log of one owner: <store>/claims/<owner with ':' as '-'>.log, mode 0600.
class DeliveryLog {
 public:
  // Opens (creating when `create`) the log of `owner` under store directory `dir`; without
  // `create` a missing log leaves the object closed (is_open() false). Throws
  // Error(MQ_ERROR_MESSAGE_STORAGE_FAILED) when it cannot be opened.
  DeliveryLog(const std::filesystem::path& dir, const std::string& owner, bool create);
  ~DeliveryLog();
  DeliveryLog(const DeliveryLog&) = delete;
  DeliveryLog& operator=(const DeliveryLog&) = delete;

  bool is_open() const noexcept { return fd_ >= 0; }
  // The log's lock (flock, exclusive). lock() waits; try_lock() gives up after `tries` polls
  // 0.2 ms apart (a recoverer must not hang on a stopped owner).
  void lock();
  bool try_lock(int tries);
  void unlock() noexcept;
  // One write() of one record (atomic against a SIGKILL: it is in the page cache or not at all).
  void append(const DeliveryRecord& r);
  // Every whole record (a torn tail, only possible after a power failure, is ignored).
  std::vector<DeliveryRecord> read_all();
  void truncate();
  // Under the lock: makes the log hold `kept` alone, in its order (the owner's records not
  // applied yet, which it knows: no read of the log). Killed at any point, the log still holds
  // every kept record whole (some twice, and applied ones: applying a record again changes
  // nothing).
  void keep_only(std::span<const DeliveryRecord> kept);
  void remove_file() noexcept;  // unlink (a dead owner's log, once applied)
  // Tests: runs in keep_only between writing the kept records and cutting the file (a test
  // kills the process there). Process-wide; nullptr: none.
  static void set_rewrite_hook_for_test(void (*hook)()) noexcept;

  static std::filesystem::path path_of(const std::filesystem::path& dir, const std::string& owner);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace mqsec::transport::local
