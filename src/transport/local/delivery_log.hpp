// Claimed receives (issue 14): a claim owner's delivery log.
//
// A receiver (a Store of a process: claim_owner.hpp) claims several messages of a queue in one
// write transaction (table `claims` of the store) and returns them one by one. Each message it
// returns is recorded in its delivery log, outside SQLite; the rows are deleted (and their ids
// recorded as delivered) later, in batches. A claim whose owner is dead (or whose lease ran out)
// is released by another owner, after it applied the owner's log under the log's lock: what the
// owner returned is deleted, never redelivered.
//
// The owner checks that its claim still holds and appends to its log while it holds the same
// lock, so a recoverer either sees the entry or the owner sees its claim gone: a message is
// returned by exactly one owner whatever the timing (docs/performance.md, "Claimed receives").
//
// Two kinds of log, chosen by the store's schema when the store is created (never mixed in one
// store: every process of it uses the same kind):
// - Flock (schema 6): <owner>.log, one write() per record under flock (flock_delivery_log.hpp).
// - Shared (schema 7): <owner>.shm, a file mapped shared with a robust process-shared mutex; an
//   append is a store to memory, no system call (shared_delivery_log.hpp).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "src/transport/local/claim_owner.hpp"

namespace mqsec::transport::local {

// One returned message, as the log keeps it (fixed 80-byte records, both kinds).
struct DeliveryRecord {
  int64_t queue_id = 0;
  int64_t seq = 0;
  int64_t sent_time = 0;
  std::vector<uint8_t> msg_id;
};
inline constexpr size_t kMaxLoggedIdSize = 48;
inline constexpr size_t kDeliveryRecordSize = 4 + 4 + 8 + 8 + 8 + kMaxLoggedIdSize;
// A record's bytes (kDeliveryRecordSize at `out`); an id longer than a record holds is refused
// (Error MQ_ERROR_MESSAGE_STORAGE_FAILED).
void encode_delivery_record(const DeliveryRecord& r, uint8_t* out);
// The record at `in`; false when the bytes are not a record (a torn or foreign one).
bool decode_delivery_record(const uint8_t* in, DeliveryRecord& r);

enum class DeliveryLogKind { Flock, Shared };

// The delivery log of one owner, in <store>/claims/, mode 0600. Its lock belongs to the thread
// that took it: unlock on the same thread.
class DeliveryLog {
 public:
  // Opens (creating when `create`) the log of `owner` under store directory `dir`; without
  // `create` a missing log leaves the object closed (is_open() false). Throws
  // Error(MQ_ERROR_MESSAGE_STORAGE_FAILED) when it cannot be opened, or when the file is not a
  // log of this kind (a recoverer must never take that for "no log").
  static std::unique_ptr<DeliveryLog> open(DeliveryLogKind kind, const std::filesystem::path& dir,
                                           const std::string& owner, bool create);
  static std::filesystem::path path_of(DeliveryLogKind kind, const std::filesystem::path& dir,
                                       const std::string& owner);

  virtual ~DeliveryLog() = default;
  DeliveryLog(const DeliveryLog&) = delete;
  DeliveryLog& operator=(const DeliveryLog&) = delete;

  virtual bool is_open() const noexcept = 0;
  // The log's lock (exclusive). lock() waits; try_lock() gives up after `tries` polls 0.2 ms
  // apart (a recoverer must not hang on a stopped owner).
  virtual void lock() = 0;
  virtual bool try_lock(int tries) = 0;
  virtual void unlock() noexcept = 0;
  // Under the lock. Atomic against a SIGKILL: the record is in the log whole or not at all.
  virtual void append(const DeliveryRecord& r) = 0;
  // Under the lock: every record.
  virtual std::vector<DeliveryRecord> read_all() = 0;
  // Under the lock: no record.
  virtual void truncate() = 0;
  // Under the lock: makes the log hold `kept` alone, in its order (the owner's records not
  // applied yet, which it knows: no read of the log). Killed at any point, the log still holds
  // every kept record whole (with the flock kind also some twice, and applied ones: applying a
  // record again changes nothing).
  virtual void keep_only(std::span<const DeliveryRecord> kept) = 0;
  // Unlinks the log (a dead owner's, once applied), if its path still names this file (a new
  // holder of the owner string may have moved it aside and made another).
  virtual void remove_file() noexcept = 0;
  // Whether the log's path still names this log's file: false once someone removed it (or
  // replaced it). A Store checks its own log under the lock before it commits claims
  // (Store::keep_log_named_locked).
  virtual bool still_named() const noexcept = 0;
  // Whether the log was made in an earlier boot of the machine: its owner died with it, and a
  // power loss may have left on disk its lock taken (nobody will ever release it) or its window
  // past records that never reached the disk. Such a log is read with read_salvage(), without
  // its lock. A log that does not record its boot (the flock kind, whose lock does not outlive
  // a boot; a shared log made before mqsec recorded it): false.
  virtual bool from_earlier_boot() const noexcept { return false; }
  // Without the lock: every record of the live window that decodes and can be trusted, the
  // window cut at the file's end (what a power loss left). A record that does not decode, or
  // that a power loss may have torn (the shared kind: one crossing a 512-byte sector), is not
  // applied: its message is returned again (a duplicate, which a power loss allows).
  virtual std::vector<DeliveryRecord> read_salvage() { return read_all(); }

 protected:
  DeliveryLog() = default;
};

// This boot of the machine (/proc/sys/kernel/random/boot_id; empty when it cannot be read),
// recorded in a shared log when it is made (from_earlier_boot).
const std::string& current_boot_id();
// Tests: makes current_boot_id() return `id` (a reboot without one); empty: the real one again.
// Process-wide; set it while no log is made or read.
void set_boot_id_for_test(std::string id);
// Tests: set_boot_id_for_test(id) for its scope, the real boot id again after it.
class BootIdForTest {
 public:
  explicit BootIdForTest(std::string id) { set_boot_id_for_test(std::move(id)); }
  ~BootIdForTest() { set_boot_id_for_test({}); }
  BootIdForTest(const BootIdForTest&) = delete;
  BootIdForTest& operator=(const BootIdForTest&) = delete;
};
// Tests: `hook` runs in keep_only after the kept records are written and before they are made
// the log's content (flock: before the cut; shared: before the window is published); a test
// kills the process there. Process-wide; nullptr: none.
void set_delivery_log_rewrite_hook_for_test(void (*hook)()) noexcept;
// The hook as set (for the two kinds' keep_only).
void run_delivery_log_rewrite_hook();
// The owner whose log (or log being created) a file of <store>/claims/ is: "<owner>.log",
// "<owner>.shm" or ".<owner>.shm.new", the owner string with '-' for ':' ("<pid>-<start>" or
// "<pid>-<start>-<slot>", claim_owner.hpp); nullopt for any other name.
std::optional<std::string> delivery_log_owner(const std::string& file_name);
// Whether `path` names the file (dev, ino), without following a symbolic link (both kinds'
// still_named).
bool path_names_file(const std::filesystem::path& path, dev_t dev, ino_t ino) noexcept;
// <dir>/claims/<owner with ':' as '-'><suffix> (both kinds' path_of).
std::filesystem::path delivery_log_path(const std::filesystem::path& dir, const std::string& owner,
                                        const char* suffix);

}  // namespace mqsec::transport::local
