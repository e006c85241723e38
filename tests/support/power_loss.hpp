// Power-loss tools for tests of the store (docs/design/segment-store.md §10.6, stage 0).
//
// A process kill (SIGKILL) loses what a process held in memory; a power loss also loses what it
// wrote but the disk had not made durable: every write to a file after that file's last fsync
// may or may not have reached the disk, in pieces of a sector. This VFS records, next to what
// SQLite writes, what a power loss could undo: the process that writes installs it
// (install_power_loss_vfs) and is killed; another process then makes the files what one power
// loss could have left (power_loss) and opens them.
//
// Covered: every file SQLite writes through its VFS (the database and its WAL), and, with
// power_loss_mapped, a file written through a shared mapping whose image at its last flush the
// test kept (a delivery log). Not covered: SQLite's -shm (memory that a reboot wipes: SQLite
// rebuilds it from the WAL; power_loss removes it), other files written without SQLite
// (settings.gen), the directory (a file created or removed since the directory's last fsync
// is taken to stay as it is), a sector caught by writeback in a state between the flushed one
// and the last one, and reordering within a write's sectors beyond "each sector whole or
// absent".
//
// One writing process per journal directory, and its writes to a file serialised with that
// file's fsyncs (the Store's single connection does this): an fsync empties the file's whole
// journal, so a write made by another connection while the fsync ran would be taken as
// durable (too kind a model). Neither checkpoints nor WAL restarts are exercised by the tests
// yet (they write far less than the 10,000 pages of a checkpoint).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace mqsec::testing {

// Registers, as this process's default SQLite VFS, one over "unix" that appends each write and
// truncation to a journal of its file in `journal_dir` (one file per database file, the bytes
// the write replaced and the bytes it wrote), before making it; each fsync of the file empties
// the file's journal. Call once, before any connection opens, in the process that will be
// killed. Throws std::runtime_error when SQLite has no "unix" VFS.
void install_power_loss_vfs(const std::filesystem::path& journal_dir);

struct PowerLossResult {
  size_t files = 0;         // files with writes since their last fsync
  size_t sectors_kept = 0;  // pieces (512-byte sectors of a write) that reached the disk
  size_t sectors_lost = 0;  // and those that did not
};

// Once the writing process is dead: turns each journaled file into its image at its last fsync
// plus, in order, a random choice (by `seed`) of the pieces written since, each kept with
// probability `keep` (0..1; a truncation is one piece); removes the journals and the files'
// -shm. Throws std::runtime_error when a journal cannot be read or a file rewritten.
PowerLossResult power_loss(const std::filesystem::path& journal_dir, uint32_t seed,
                           double keep = 0.5);

// A file written through a shared mapping (no write calls to journal), whose image at its last
// flush (msync, fdatasync) is `flushed`: each 512-byte sector of it is left as it is now with
// probability `keep`, else set back to that image (beyond the image's end: zeros). The writing
// process must be dead. How many sectors were set back. Throws std::runtime_error when a file
// cannot be read or written.
size_t power_loss_mapped(const std::filesystem::path& file, const std::filesystem::path& flushed,
                         uint32_t seed, double keep = 0.5);

}  // namespace mqsec::testing
