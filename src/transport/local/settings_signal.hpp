// A cheap cross-process signal that a queue's settings changed (issue 14): two 64-bit counters in
// a small file of the store directory, mapped shared by every process that opens the store.
//
// Every send to a local queue asks whether the queue has a quota (Queue::over_quota). Reading
// that from SQLite is a read transaction under the store's mutex, the largest host cost of a
// send (docs/performance.md, "The per-send quota read"). With this signal the store reads it
// only when a change may have happened since it last did: a writer of queue settings counts
// `started` inside its write transaction, before the commit, and `finished` after it (commit or
// rollback). A reader may keep what it read while both counters are equal and unchanged since;
// while they differ (a change in flight, or a writer that died in between) it reads the store
// every time. So a quota another process set is seen by the next send that starts after that
// process's MQSetQueueProperties returned (docs/msmq-api.md, "Quotas").
//
// The file, <store>/settings.gen, is created with mode 0600 like the database and must belong to
// the process's user, have one link and not be writable by group or others (docs/security.md);
// its 4 KiB are allocated when it is opened (a hole touched on a full file system would be
// SIGBUS). When it cannot be opened or allocated, has the wrong owner, mode or link count, or is
// too short, the signal is off: stable() is always nullopt and readers read the store, as
// before, and a writer of queue settings refuses the change (Store::update_queue:
// MQ_ERROR_SERVICE_NOT_AVAILABLE), since processes with a working mapping would not see it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

namespace mqsec::transport::local {

class SettingsSignal {
 public:
  // Opens (creating) dir/"settings.gen" with the thread's real ids. Never throws.
  explicit SettingsSignal(const std::filesystem::path& dir) noexcept;
  ~SettingsSignal();
  SettingsSignal(const SettingsSignal&) = delete;
  SettingsSignal& operator=(const SettingsSignal&) = delete;

  bool on() const noexcept { return words_ != nullptr; }
  // The generation to keep a reading under: nullopt when off or while a change is in flight
  // (or was interrupted). Load it BEFORE reading the store.
  std::optional<uint64_t> stable() const noexcept;
  // A writer of queue settings: begin() inside its write transaction, before committing;
  // end() once the transaction committed or rolled back. Both no-ops when off.
  void begin() noexcept;
  void end() noexcept;

  static constexpr const char* kFileName = "settings.gen";

 private:
  uint64_t* words_ = nullptr;  // [0] started, [1] finished; a shared mapping
};

}  // namespace mqsec::transport::local
