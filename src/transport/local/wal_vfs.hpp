// How the store's connections write and read SQLite's write-ahead log (issue 14): a SQLite VFS,
// "mqsec-wal", over the process's default one, that changes two things about the -wal file and
// passes everything else (the database, the -shm, locks) through untouched.
//
// - Writes. SQLite writes each WAL frame with two calls (its 24-byte header, then the page), so a
//   commit of 18 pages made 36 pwrite calls, each touching one or two page-cache pages partly.
//   Here a commit's new frames are gathered in memory and written with one call per 124 KiB
//   when the commit's own frame (the one whose header carries the database size, the WAL
//   format's commit mark) has its page appended, before SQLite publishes the commit in the
//   wal-index, so no reader, in this process or another, can look for a frame that is not in the
//   file yet, and a failed write fails the commit as it did (SQLite rolls it back). From then
//   until the connection next takes the write lock, writes go straight through (SQLite may
//   still rewrite frame headers before it publishes). A write that is not a new frame, a sync,
//   a truncation, or a read of part of what is gathered writes it first; what a rolled-back
//   transaction gathered is dropped when the connection gives up the write lock.
// - Reads. A page SQLite reads from the WAL (every page another process committed since this
//   connection last read: SQLite empties a connection's page cache whenever another connection
//   committed) is copied out of a read-only shared mapping of the file instead of read with a
//   pread call. SQLite only reads frames of the snapshot it holds, and its WAL locks keep those
//   in the file while it holds it; a read past the size this process last saw asks the file's
//   size again, and one past the end goes to the default VFS (which reports the short read).
//   The caveat SQLite's own PRAGMA mmap_size documents applies: a file truncated under the
//   mapping by something that ignores SQLite's locks ends the process with SIGBUS.
//
// Measured in docs/performance.md ("The WAL's writes gathered and its reads mapped").
// MQSEC_WAL_VFS=0 in the environment when a store is opened keeps the default VFS (for A/B
// measurements and diagnostics).
#pragma once

#include <cstdint>

namespace mqsec::transport::local {

// Registers the VFS on the first call (not as the default), over the default VFS of that moment,
// and returns its name; nullptr when it cannot (no default VFS, or registration failed), in
// which case the store opens with the default VFS. Thread-safe.
const char* wal_vfs_name() noexcept;

// While one lives, this thread's reads of a WAL go to the file, and a WAL they read from is
// unmapped: a checkpoint (Store::wal_committed) reads every frame once, and mapping them would
// only add the whole WAL to the process's resident set (file pages, RssFile). So the mapping
// holds at most what was read since this process's last checkpoint.
class WalReadsFromFile {
 public:
  WalReadsFromFile() noexcept;
  ~WalReadsFromFile();
  WalReadsFromFile(const WalReadsFromFile&) = delete;
  WalReadsFromFile& operator=(const WalReadsFromFile&) = delete;
};

// What the VFS did in this process, for tests and diagnostics.
struct WalVfsCounts {
  uint64_t gathered = 0;         // writes to a WAL file kept in memory
  uint64_t flushes = 0;          // writes of what was gathered (one per commit, when all goes well)
  uint64_t barrier_flushes = 0;  // of them, by the safety net (wal_vfs.cpp): 0 with this SQLite
  uint64_t discarded = 0;        // gathered writes dropped at the write lock's release (rollbacks)
  uint64_t mapped_reads = 0;     // reads served from the mapping
  uint64_t file_reads = 0;       // reads passed to the default VFS
};
WalVfsCounts wal_vfs_counts() noexcept;

}  // namespace mqsec::transport::local
