// The store's VFS (wal_vfs.hpp): WAL writes gathered per commit, WAL reads from a mapping.
//
// What is gathered: only new frames, told by their offsets (a frame's 24-byte header at
// 32 + k * (page size + 24), then exactly its page right after it) and the log's 32-byte header at
// offset 0; any other write (a checksum rewrite of wal.c walRewriteChecksums, a write split at a
// sector for synchronous=FULL's padding) first writes what is gathered, then goes through. Once
// a commit frame's page has been written, every write goes through until the connection next
// takes the WAL write lock: after its commit frame SQLite may still rewrite frame headers
// (walRewriteChecksums) before it publishes the commit, and those must fail the commit if they
// fail.
//
// Where what is gathered may go, and when (the rules this file keeps):
// - It is written (flushed) when the commit's own frame has its page appended, when it would
//   outgrow kGatherMax, before any write that is not gathered, before a sync or a truncation, and
//   before a read that overlaps part of it. Each of these reports an error to SQLite as the
//   write it stood for would have (a failed commit, rolled back). As a last net, the barrier
//   SQLite calls on the database file between writing a commit and publishing it (wal.c
//   walIndexWriteHdr) writes what the write lock's holder still gathers (never anything, with
//   SQLite's writes as wal.c makes them: counted, and tested to stay 0); if that write fails,
//   the process aborts rather than publish a commit whose frames are not in the file (the
//   wal-index's second header copy is not written yet, so the next opener recovers without it).
// - It is thrown away, never written, when the connection gives up the WAL write lock (a
//   rollback leaves nothing else behind: after the release another connection may write frames
//   at the same offsets) and when the file is closed.
// - Reads of bytes still gathered are answered from memory.
// The database file's wrapper finds its WAL files by name: every connection of this process to
// one database (the store's and a test's second one) shares a group; the lock's holder is the
// only one that can have gathered anything, and only its own barrier acts.
#include "src/transport/local/wal_vfs.hpp"

#include "src/transport/local/forwarding_vfs.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace mqsec::transport::local {

namespace {

constexpr int kWalHeaderBytes = 32;    // the log's header, at offset 0 (wal.c WAL_HDRSIZE)
constexpr int kFrameHeaderBytes = 24;  // each frame's header (WAL_FRAME_HDRSIZE)
constexpr int kWalWriteLock = 0;       // the wal-index lock slot of the writer (WAL_WRITE_LOCK)
// At most this much is gathered before it is written: a claim of 64 signed messages with its
// deliveries is about 100 frames (400 KiB).
constexpr size_t kGatherMax = size_t{1} << 20;
// The most one write passes to the default VFS: SQLite's unix VFS writes at most 17 bits' worth
// per call (os_unix.c seekAndWriteFd masks the length with 0x1ffff) and takes a write it could
// not finish for a full disk.
constexpr size_t kWriteMax = 0x1f000;
// The mapping grows in steps of this much.
constexpr size_t kMapStep = size_t{16} << 20;
// After this much was read through the mapping, its pages are let go (MADV_DONTNEED: the next
// read of one faults it in again), so that they add at most this much to the process's resident
// set (file pages) however much of the WAL it reads between checkpoints.
constexpr size_t kMapResidentMax = size_t{2} << 20;

struct Counts {
  std::atomic<uint64_t> gathered{0}, flushes{0}, barrier_flushes{0}, discarded{0}, mapped_reads{0},
      file_reads{0};
};
constinit Counts g_counts;

constinit thread_local int t_reads_from_file = 0;  // WalReadsFromFile objects of this thread

constinit sqlite3_vfs* g_real = nullptr;
constinit sqlite3_vfs g_vfs{};

struct WalFile;

// The WAL files of one database in this process.
struct Group {
  std::mutex mu;
  std::vector<WalFile*> wals;
  std::atomic<int> gathering{0};  // WAL files of the group holding gathered bytes
};

using Groups = std::map<std::string, std::weak_ptr<Group>>;
// Not held at a fork() by another thread: the runtime's fork handlers hold the stores' set and
// every store's connection lock across it (core/runtime.cpp, Stores::prepare_fork), and every
// call into this VFS is made under one of them. (A handler of our own that took this lock
// before the runtime's would deadlock with a store being opened.)
constinit std::mutex g_groups_mu;
// Built on first use: a store may be opened while the program's statics are constructed.
constinit Groups* g_groups = nullptr;

// The group of a database's files opened by this process (a child of fork() starts groups of
// its own: the copies of its parent's files it inherits are only ever closed, see wal_close).
std::shared_ptr<Group> group_of(const std::string& db_name) {
  const std::string key = db_name + '\0' + std::to_string(::getpid());
  std::lock_guard lock(g_groups_mu);
  if (g_groups == nullptr) g_groups = new Groups;
  Groups* groups = g_groups;
  std::shared_ptr<Group> g = (*groups)[key].lock();
  if (!g) {
    g = std::make_shared<Group>();
    (*groups)[key] = g;
  }
  for (auto it = groups->begin(); it != groups->end();) {
    it = it->second.expired() ? groups->erase(it) : std::next(it);
  }
  return g;
}

// What SQLite sees of a file of ours: its methods, then the default VFS's file, which follows
// the wrapper in the same allocation.
struct Wrapped {
  sqlite3_file base{};
  sqlite3_file* real = nullptr;
};

// A WAL file.
struct WalFile : Wrapped {
  std::shared_ptr<Group> group;
  pid_t pid = 0;  // the process that opened it
  std::mutex mu;  // the fields below (a database's barrier or unlock may come from another thread)
  std::vector<uint8_t> gathered;
  sqlite3_int64 gathered_at = 0;  // the file offset of gathered[0]
  int page_size = 0;              // the log's, from its header (0: not known yet)
  bool page_next = false;         // the last write was a frame's header: its page comes next
  bool commit_frame = false;      // ... and that frame is a commit's
  bool write_through = false;     // a commit frame was written: nothing is gathered (above)
  bool header_checked = false;    // the mapping was checked to show the file SQLite writes
  int fd = -1;                    // read-only, for the mapping (no locks are taken on a WAL)
  const uint8_t* map = nullptr;
  size_t map_len = 0;
  size_t map_read = 0;     // bytes read through the mapping since its pages were last let go
  sqlite3_int64 size = 0;  // the file's size as this process last knew it
};

// A database file.
struct DbFile : Wrapped {
  std::shared_ptr<Group> group;
  pid_t pid = 0;  // the process that opened it
  // This connection holds the WAL write lock (only its thread reads or writes this).
  bool holds_write_lock = false;
};

constexpr size_t align8(size_t n) { return (n + 7) & ~size_t{7}; }
constexpr size_t kWrapperBytes = std::max(align8(sizeof(WalFile)), align8(sizeof(DbFile)));

WalFile& wal(sqlite3_file* f) { return *reinterpret_cast<WalFile*>(f); }
DbFile& dbf(sqlite3_file* f) { return *reinterpret_cast<DbFile*>(f); }
sqlite3_file* real_of(sqlite3_file* f) { return reinterpret_cast<Wrapped*>(f)->real; }

uint32_t read_big_endian32(const void* p) {
  const auto* b = static_cast<const uint8_t*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

// The page size a WAL header names (wal.c: big-endian at bytes 8..11; 65536 is stored as is),
// or 0 unless it is one SQLite can have.
int page_size_of(const uint8_t* header) {
  const uint32_t v = read_big_endian32(header + 8);
  return v >= 512 && v <= 65536 && (v & (v - 1)) == 0 ? static_cast<int>(v) : 0;
}

// Writes what `w` gathered (w.mu held). What was gathered is gone either way: on an error the
// caller reports it, and the transaction it belonged to is rolled back.
int flush_locked(WalFile& w) {
  if (w.gathered.empty()) return SQLITE_OK;
  int rc = SQLITE_OK;
  for (size_t done = 0; done < w.gathered.size() && rc == SQLITE_OK; done += kWriteMax) {
    const size_t n = std::min(kWriteMax, w.gathered.size() - done);
    rc = w.real->pMethods->xWrite(w.real, w.gathered.data() + done, static_cast<int>(n),
                                  w.gathered_at + static_cast<sqlite3_int64>(done));
  }
  if (rc == SQLITE_OK) {
    w.size = std::max<sqlite3_int64>(w.size,
                                     w.gathered_at + static_cast<sqlite3_int64>(w.gathered.size()));
  }
  w.gathered.clear();
  w.group->gathering.fetch_sub(1, std::memory_order_relaxed);
  g_counts.flushes.fetch_add(1, std::memory_order_relaxed);
  return rc;
}

void discard_locked(WalFile& w) {
  w.page_next = false;
  if (w.gathered.empty()) return;
  w.gathered.clear();
  w.group->gathering.fetch_sub(1, std::memory_order_relaxed);
  g_counts.discarded.fetch_add(1, std::memory_order_relaxed);
}

void unmap_locked(WalFile& w) {
  if (w.map != nullptr) ::munmap(const_cast<uint8_t*>(w.map), w.map_len);
  w.map = nullptr;
  w.map_len = 0;
  w.map_read = 0;
}

// For every WAL file of the group, under its lock.
template <typename F>
void each_wal(Group& g, F f) {
  std::lock_guard lock(g.mu);
  for (WalFile* w : g.wals) {
    std::lock_guard wl(w->mu);
    f(*w);
  }
}

// ---- the WAL file ----

int wal_close(sqlite3_file* f) {
  WalFile& w = wal(f);
  if (w.pid != ::getpid()) {
    // A child of fork() closing its copy of the parent's connection (Store::close_in_child): a
    // thread of the parent may have held a lock here at the fork, and no thread of the child
    // uses the copy. Its group is its parent's, which the child never joins.
    if (w.map != nullptr) ::munmap(const_cast<uint8_t*>(w.map), w.map_len);
    if (w.fd >= 0) ::close(w.fd);
    const int rc = w.real->pMethods->xClose(w.real);
    w.~WalFile();
    return rc;
  }
  {
    std::lock_guard lock(w.group->mu);
    std::erase(w.group->wals, &w);
  }
  int rc = SQLITE_OK;
  {
    std::lock_guard lock(w.mu);
    discard_locked(w);  // nothing committed is ever left here (see the file's comment)
    unmap_locked(w);
    if (w.fd >= 0) ::close(w.fd);
    w.fd = -1;
    rc = w.real->pMethods->xClose(w.real);
  }
  w.~WalFile();
  return rc;
}

// No more reads through the mapping for this file (w.mu held).
void stop_mapping_locked(WalFile& w) {
  unmap_locked(w);
  if (w.fd >= 0) ::close(w.fd);
  w.fd = -1;
}

// Copies [off, off + n) from the mapping if the file is known to hold it (w.mu held).
bool read_mapped_locked(WalFile& w, void* out, int n, sqlite3_int64 off) {
  if (w.fd < 0 || off < 0) return false;
  const sqlite3_int64 end = off + n;
  if (end > w.size) {
    struct stat st {};
    if (::fstat(w.fd, &st) != 0) return false;
    if (st.st_nlink == 0) {
      stop_mapping_locked(w);  // removed: not the file SQLite has open any more
      return false;
    }
    w.size = st.st_size;
    if (end > w.size) return false;
  }
  if (static_cast<size_t>(end) > w.map_len) {
    const size_t len = (static_cast<size_t>(end) + kMapStep - 1) / kMapStep * kMapStep;
    void* p = w.map == nullptr
                  ? ::mmap(nullptr, len, PROT_READ, MAP_SHARED, w.fd, 0)
                  : ::mremap(const_cast<uint8_t*>(w.map), w.map_len, len, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) {
      unmap_locked(w);
      return false;
    }
    w.map = static_cast<const uint8_t*>(p);
    w.map_len = len;
    if (!w.header_checked) {
      // The descriptor was opened by name after SQLite opened the file: the log's header, as
      // SQLite reads it and as mapped, must be the same bytes (it cannot change while SQLite
      // reads frames of its snapshot).
      uint8_t header[kWalHeaderBytes];
      if (w.size < kWalHeaderBytes ||
          w.real->pMethods->xRead(w.real, header, kWalHeaderBytes, 0) != SQLITE_OK ||
          std::memcmp(header, w.map, kWalHeaderBytes) != 0) {
        stop_mapping_locked(w);
        return false;
      }
      w.header_checked = true;
    }
  }
  w.map_read += static_cast<size_t>(n);
  if (w.map_read > kMapResidentMax) {
    (void)::madvise(const_cast<uint8_t*>(w.map), w.map_len, MADV_DONTNEED);
    w.map_read = static_cast<size_t>(n);
  }
  std::memcpy(out, w.map + off, static_cast<size_t>(n));
  return true;
}

int wal_read(sqlite3_file* f, void* out, int n, sqlite3_int64 off) {
  WalFile& w = wal(f);
  std::lock_guard lock(w.mu);
  if (!w.gathered.empty()) {
    const sqlite3_int64 g0 = w.gathered_at;
    const sqlite3_int64 g1 = g0 + static_cast<sqlite3_int64>(w.gathered.size());
    if (off >= g0 && off + n <= g1) {
      std::memcpy(out, w.gathered.data() + (off - g0), static_cast<size_t>(n));
      return SQLITE_OK;
    }
    if (off < g1 && off + n > g0) {
      // Partly gathered (SQLite does not read like this): write it out first.
      if (int rc = flush_locked(w); rc != SQLITE_OK) return rc;
    }
  }
  if (t_reads_from_file > 0) {
    unmap_locked(w);
  } else if (read_mapped_locked(w, out, n, off)) {
    g_counts.mapped_reads.fetch_add(1, std::memory_order_relaxed);
    return SQLITE_OK;
  }
  g_counts.file_reads.fetch_add(1, std::memory_order_relaxed);
  return w.real->pMethods->xRead(w.real, out, n, off);
}

// Writes `n` bytes at `off` through the default VFS (w.mu held).
int write_through_locked(WalFile& w, const void* p, int n, sqlite3_int64 off) {
  const int rc = w.real->pMethods->xWrite(w.real, p, n, off);
  if (rc == SQLITE_OK) w.size = std::max<sqlite3_int64>(w.size, off + n);
  return rc;
}

// The log's page size: known from its header once this connection wrote or read it (w.mu held).
int page_size_locked(WalFile& w) {
  if (w.page_size == 0 && w.gathered.empty()) {
    uint8_t header[kWalHeaderBytes];
    if (w.real->pMethods->xRead(w.real, header, kWalHeaderBytes, 0) == SQLITE_OK) {
      w.page_size = page_size_of(header);
    }
  }
  return w.page_size;
}

int wal_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  WalFile& w = wal(f);
  std::lock_guard lock(w.mu);
  const sqlite3_int64 end =
      w.gathered_at + static_cast<sqlite3_int64>(w.gathered.size());  // valid if gathered
  const bool follows = !w.gathered.empty() && off == end;
  // What this write is: the log's header, a new frame's header, that frame's page, or something
  // else (written through, after what was gathered).
  bool gather = false;
  bool commit_written = false;
  if (!w.write_through) {
    if (n == kWalHeaderBytes && off == 0) {
      w.page_size = page_size_of(static_cast<const uint8_t*>(p));
      gather = w.page_size != 0;
      w.page_next = false;
    } else if (w.page_next && follows && n == w.page_size) {
      gather = true;
      commit_written = w.commit_frame;
      w.page_next = false;
    } else if (n == kFrameHeaderBytes && off >= kWalHeaderBytes && page_size_locked(w) != 0 &&
               (off - kWalHeaderBytes) % (w.page_size + kFrameHeaderBytes) == 0 &&
               (w.gathered.empty() || follows)) {
      gather = true;
      w.page_next = true;
      w.commit_frame = read_big_endian32(static_cast<const uint8_t*>(p) + 4) != 0;
    } else {
      w.page_next = false;
    }
  }
  // Gathered bytes are one contiguous run: anything else writes them first.
  if (!gather || (!w.gathered.empty() && !follows) ||
      w.gathered.size() + static_cast<size_t>(n) > kGatherMax) {
    if (int rc = flush_locked(w); rc != SQLITE_OK) {
      w.page_next = false;
      return rc;
    }
  }
  if (gather) {
    try {
      if (w.gathered.capacity() < kGatherMax) w.gathered.reserve(kGatherMax);
    } catch (const std::bad_alloc&) {
      gather = false;  // written through instead
      w.page_next = false;
    }
  }
  if (!gather) return write_through_locked(w, p, n, off);
  if (w.gathered.empty()) {
    w.gathered_at = off;
    w.group->gathering.fetch_add(1, std::memory_order_relaxed);
  }
  const auto* b = static_cast<const uint8_t*>(p);
  w.gathered.insert(w.gathered.end(), b, b + n);  // within the capacity reserved: no allocation
  g_counts.gathered.fetch_add(1, std::memory_order_relaxed);
  if (!commit_written) return SQLITE_OK;
  // The commit frame's page: its frames go to the file now, and what SQLite writes until it
  // next takes the write lock goes through (a checksum rewrite may follow).
  w.write_through = true;
  return flush_locked(w);
}

int wal_truncate(sqlite3_file* f, sqlite3_int64 size) {
  WalFile& w = wal(f);
  std::lock_guard lock(w.mu);
  if (int rc = flush_locked(w); rc != SQLITE_OK) return rc;
  const int rc = w.real->pMethods->xTruncate(w.real, size);
  if (rc == SQLITE_OK) w.size = size;
  return rc;
}

int wal_sync(sqlite3_file* f, int flags) {
  WalFile& w = wal(f);
  std::lock_guard lock(w.mu);
  if (int rc = flush_locked(w); rc != SQLITE_OK) return rc;
  return w.real->pMethods->xSync(w.real, flags);
}

int wal_file_size(sqlite3_file* f, sqlite3_int64* out) {
  WalFile& w = wal(f);
  std::lock_guard lock(w.mu);
  const int rc = w.real->pMethods->xFileSize(w.real, out);
  if (rc != SQLITE_OK) return rc;
  w.size = *out;
  if (!w.gathered.empty()) {
    *out = std::max<sqlite3_int64>(*out,
                                   w.gathered_at + static_cast<sqlite3_int64>(w.gathered.size()));
  }
  return SQLITE_OK;
}

// ---- passed through, for both kinds of file ----

int pass_read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) {
  return real_of(f)->pMethods->xRead(real_of(f), p, n, off);
}
int pass_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  return real_of(f)->pMethods->xWrite(real_of(f), p, n, off);
}
int pass_truncate(sqlite3_file* f, sqlite3_int64 size) {
  return real_of(f)->pMethods->xTruncate(real_of(f), size);
}
int pass_sync(sqlite3_file* f, int flags) { return real_of(f)->pMethods->xSync(real_of(f), flags); }
int pass_file_size(sqlite3_file* f, sqlite3_int64* out) {
  return real_of(f)->pMethods->xFileSize(real_of(f), out);
}
int pass_lock(sqlite3_file* f, int level) { return real_of(f)->pMethods->xLock(real_of(f), level); }
int pass_unlock(sqlite3_file* f, int level) {
  return real_of(f)->pMethods->xUnlock(real_of(f), level);
}
int pass_check_reserved(sqlite3_file* f, int* out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
int pass_file_control(sqlite3_file* f, int op, void* arg) {
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
int pass_sector_size(sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int pass_device(sqlite3_file* f) {
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
int pass_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return real_of(f)->pMethods->xShmMap(real_of(f), region, size, extend, out);
}
int pass_shm_unmap(sqlite3_file* f, int remove) {
  return real_of(f)->pMethods->xShmUnmap(real_of(f), remove);
}
int pass_fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
  return real_of(f)->pMethods->xFetch(real_of(f), off, n, out);
}
int pass_unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

// Version 1: SQLite maps and locks shared memory, and fetches pages, on the database file only.
const sqlite3_io_methods kWalMethods = {1,
                                        wal_close,
                                        wal_read,
                                        wal_write,
                                        wal_truncate,
                                        wal_sync,
                                        wal_file_size,
                                        pass_lock,
                                        pass_unlock,
                                        pass_check_reserved,
                                        pass_file_control,
                                        pass_sector_size,
                                        pass_device,
                                        nullptr,
                                        nullptr,
                                        nullptr,
                                        nullptr,
                                        nullptr,
                                        nullptr};

// ---- the database file: everything passed through; the write lock's release and the barrier
// seen on the way ----

int db_close(sqlite3_file* f) {
  DbFile& d = dbf(f);
  const int rc = d.real->pMethods->xClose(d.real);
  d.~DbFile();
  return rc;
}
int db_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  DbFile& d = dbf(f);
  const bool write_slot = offset <= kWalWriteLock && kWalWriteLock < offset + n;
  const bool child = d.pid != ::getpid();  // a copy a child of fork() only closes
  if (write_slot && !child && flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE)) {
    // Still ours: nothing gathered outlives the write lock (a commit wrote its frames already);
    // and nothing is written through any more, until the lock is taken again.
    d.holds_write_lock = false;
    each_wal(*d.group, [](WalFile& w) {
      discard_locked(w);
      w.write_through = false;
    });
  }
  const int rc = d.real->pMethods->xShmLock(d.real, offset, n, flags);
  if (write_slot && !child && rc == SQLITE_OK &&
      flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE)) {
    d.holds_write_lock = true;
    each_wal(*d.group, [](WalFile& w) {
      w.write_through = false;
      w.page_next = false;
    });
  }
  return rc;
}
void db_shm_barrier(sqlite3_file* f) {
  DbFile& d = dbf(f);
  if (d.holds_write_lock && d.group->gathering.load(std::memory_order_relaxed) > 0 &&
      d.pid == ::getpid()) {
    // Not reached with SQLite's writes as wal.c makes them (a commit frame's page wrote them).
    // If it ever is, the frames reach the file before the commit is published, or the process
    // ends before it is (its second header copy not written yet: the next opener recovers).
    each_wal(*d.group, [](WalFile& w) {
      if (w.gathered.empty()) return;
      g_counts.barrier_flushes.fetch_add(1, std::memory_order_relaxed);
      if (flush_locked(w) != SQLITE_OK) {
        static const char kMsg[] =
            "mqsec: writing a commit's WAL frames failed after SQLite wrote them; stopping the "
            "process before the commit is published\n";
        (void)!::write(2, kMsg, sizeof kMsg - 1);
        std::abort();
      }
    });
  }
  d.real->pMethods->xShmBarrier(d.real);
}
const sqlite3_io_methods kDbMethods3 = {3,
                                        db_close,
                                        pass_read,
                                        pass_write,
                                        pass_truncate,
                                        pass_sync,
                                        pass_file_size,
                                        pass_lock,
                                        pass_unlock,
                                        pass_check_reserved,
                                        pass_file_control,
                                        pass_sector_size,
                                        pass_device,
                                        pass_shm_map,
                                        db_shm_lock,
                                        db_shm_barrier,
                                        pass_shm_unmap,
                                        pass_fetch,
                                        pass_unfetch};

// The same for a default VFS whose files have older methods (no mapped pages; no shared memory).
constexpr sqlite3_io_methods with_version(sqlite3_io_methods m, int version) {
  m.iVersion = version;
  if (version < 3) m.xFetch = nullptr, m.xUnfetch = nullptr;
  if (version < 2) {
    m.xShmMap = nullptr, m.xShmLock = nullptr, m.xShmBarrier = nullptr, m.xShmUnmap = nullptr;
  }
  return m;
}
const sqlite3_io_methods kDbMethods2 = with_version(kDbMethods3, 2);
const sqlite3_io_methods kDbMethods1 = with_version(kDbMethods3, 1);

// ---- the VFS ----

sqlite3_file* real_part(sqlite3_file* f) {
  return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kWrapperBytes);
}

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  const bool is_wal = (flags & SQLITE_OPEN_WAL) != 0 && name != nullptr;
  const bool is_db = (flags & SQLITE_OPEN_MAIN_DB) != 0 && name != nullptr;
  if (!is_wal && !is_db) return g_real->xOpen(g_real, name, f, flags, out_flags);
  sqlite3_file* real = real_part(f);
  f->pMethods = nullptr;
  std::shared_ptr<Group> group;
  try {
    std::string db_name(name);
    constexpr std::string_view kSuffix = "-wal";
    if (is_wal && db_name.size() > kSuffix.size() && db_name.ends_with(kSuffix)) {
      db_name.resize(db_name.size() - kSuffix.size());
    }
    group = group_of(db_name);
    std::lock_guard lock(group->mu);
    group->wals.reserve(group->wals.size() + 1);  // so that the push_back below cannot throw
  } catch (...) {
    return SQLITE_NOMEM;
  }
  const int rc = g_real->xOpen(g_real, name, real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (real->pMethods != nullptr) real->pMethods->xClose(real);
    return rc;
  }
  if (is_db) {
    auto* d = new (f) DbFile;
    d->real = real;
    d->group = std::move(group);
    d->pid = ::getpid();
    const int version = real->pMethods->iVersion;
    d->base.pMethods = version >= 3 ? &kDbMethods3 : version == 2 ? &kDbMethods2 : &kDbMethods1;
    return SQLITE_OK;
  }
  auto* w = new (f) WalFile;
  w->real = real;
  w->group = std::move(group);
  w->pid = ::getpid();
  // A process that may not write the WAL may also lack the -shm's write access, and then reads
  // the WAL without the locks that keep its frames in the file (wal.c walBeginShmUnreliable):
  // it reads through the default VFS. Otherwise a descriptor for the mapping (none: reads go to
  // the file). The store's connections are read-write.
  const bool read_only = out_flags != nullptr && (*out_flags & SQLITE_OPEN_READONLY) != 0;
  if (!read_only) w->fd = ::open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  {
    std::lock_guard lock(w->group->mu);
    w->group->wals.push_back(w);
  }
  w->base.pMethods = &kWalMethods;
  return SQLITE_OK;
}

const char* register_vfs() noexcept {
  if (sqlite3_initialize() != SQLITE_OK) return nullptr;
  g_real = sqlite3_vfs_find(nullptr);
  if (g_real == nullptr) return nullptr;
  g_vfs = forwarding_vfs(g_real, "mqsec-wal", static_cast<int>(kWrapperBytes) + g_real->szOsFile,
                         x_open);
  if (sqlite3_vfs_register(&g_vfs, 0) != SQLITE_OK) return nullptr;
  return g_vfs.zName;
}

}  // namespace

const char* wal_vfs_name() noexcept {
  static const char* const name = register_vfs();
  return name;
}

WalReadsFromFile::WalReadsFromFile() noexcept { ++t_reads_from_file; }
WalReadsFromFile::~WalReadsFromFile() { --t_reads_from_file; }

WalVfsCounts wal_vfs_counts() noexcept {
  return {g_counts.gathered.load(),  g_counts.flushes.load(),      g_counts.barrier_flushes.load(),
          g_counts.discarded.load(), g_counts.mapped_reads.load(), g_counts.file_reads.load()};
}

}  // namespace mqsec::transport::local
