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
  // without changing it. So a header whose counter is one more than an earlier one's was
  // published after exactly one commit in between (Store::claim_batch_locked's anchor).
  static uint32_t change_counter(const Header& h) noexcept { return h[2]; }

  // WALINDEX_MAX_VERSION and the page size of the wal-index's regions (wal.c).
  static constexpr uint32_t kVersion = 3007000;
  static constexpr int kRegionSize = 32768;

 private:
  const void* region_ = nullptr;
};

}  // namespace mqsec::transport::local
