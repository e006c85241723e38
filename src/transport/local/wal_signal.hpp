// A free signal that something was committed to the store (issue 14, docs/design/claim-check.md):
// SQLite's WAL-index header, read from the connection's own shared mapping of the -shm file.
//
// Every commit of every connection to a WAL database, whatever program or SQLite version makes
// it, publishes a new header there (wal.c walIndexWriteHdr: copy 1, a barrier, then copy 0, under
// the WAL write lock; its iChange counts commits), and every SQLite reader depends on that to see
// new commits, so the format has been frozen since SQLite 3.7.0. WAL restarts and recovery
// rewrite it too; passive checkpoints and rollbacks do not. So two equal readings mean that no
// commit was published in between, and what a read transaction saw just after the first is still
// the database's content. Reading it takes no lock and no system call: 24 loads.
//
// Store::deliver_claimed uses it to skip its per-message read transaction while nothing was
// committed since an anchored validation read (store.cpp, validate_locked). Any doubt means no
// reading (nullopt), and the caller reads the store as before.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

struct sqlite3;

namespace mqsec::transport::local {

class WalSignal {
 public:
  // The 48-byte WalIndexHdr (wal.c), as 12 native 32-bit words.
  using Header = std::array<uint32_t, 12>;

  // Maps region 0 of the wal-index of `db`'s main database through the connection's own
  // sqlite3_file (SQLITE_FCNTL_FILE_POINTER, then xShmMap without extending it): the mapping
  // SQLite already uses, so no new file descriptor (closing one would drop this process's POSIX
  // locks on the -shm file). Off (read() always nullopt) when the connection is not in WAL mode
  // with the normal locking mode (an exclusive one keeps the wal-index in heap memory), or
  // when the VFS has no shared memory. Never throws. Must be destroyed before `db` is closed.
  explicit WalSignal(sqlite3* db) noexcept;
  // Off: for a store whose fast path is switched off (MQSEC_CLAIM_FASTPATH=0).
  WalSignal() noexcept = default;
  WalSignal(const WalSignal&) = delete;
  WalSignal& operator=(const WalSignal&) = delete;

  bool on() const noexcept { return region_ != nullptr; }
  // The current header, or nullopt when off, while the two copies differ (a commit being
  // published, or a writer that died half-way: SQLite's next reader recovers), or when it is not
  // an initialised header of the known version with a valid checksum.
  std::optional<Header> read() const noexcept { return read_at(region_); }
  // The same for any region (nullptr: nullopt); for tests with crafted buffers.
  static std::optional<Header> read_at(const void* region) noexcept;

  // The header's commit counter (WalIndexHdr.iChange, word 2): walFrames increments it once per
  // commit, before it publishes the header; a WAL restart (walRestartHdr) publishes a new header
  // without changing it (Store::claim_batch_locked's anchor, with one_commit_between).
  static uint32_t change_counter(const Header& h) noexcept { return h[2]; }
  // The header's WAL frame count (WalIndexHdr.mxFrame, word 4): after a commit, the number of
  // frames SQLite passes to the connection's WAL hook.
  static uint32_t frame_count(const Header& h) noexcept { return h[4]; }
  // Whether `after` is the header published by exactly one commit after `before`, the commit
  // that left `frames_after` frames in the WAL (what the committing connection's WAL hook was
  // passed): its counter is exactly one more and its frame count is that commit's. The frame
  // count guards the one way the counter alone could mislead: WAL-index recovery (after a writer
  // died between the header's two copies) rebuilds the header with the counter from 0, so that
  // a run of later commits could bring it back to exactly one more.
  static bool one_commit_between(const Header& before, const Header& after,
                                 uint32_t frames_after) noexcept {
    return change_counter(after) == change_counter(before) + 1 &&
           frame_count(after) == frames_after;
  }

  // WALINDEX_MAX_VERSION and the page size of the wal-index's regions (wal.c).
  static constexpr uint32_t kVersion = 3007000;
  static constexpr int kRegionSize = 32768;

 private:
  const void* region_ = nullptr;
};

}  // namespace mqsec::transport::local
