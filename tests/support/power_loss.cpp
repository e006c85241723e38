// Power-loss tools (power_loss.hpp).
#include "tests/support/power_loss.hpp"

#include "src/transport/local/forwarding_vfs.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace mqsec::testing {
namespace {

namespace fs = std::filesystem;

// A journal: a header record (kind Path: the file's path), then one record per write or
// truncation since the file's last fsync, each appended with one write() before the change is
// made (so a kill between the two leaves a record of a change not made: power_loss then may
// apply it, as if the process had gone on a moment longer).
enum Kind : uint32_t { Path = 1, Write = 2, Truncate = 3 };
constexpr uint32_t kMagic = 0x504C4A31;  // "PLJ1"
constexpr size_t kSector = 512;

struct RecordHeader {
  uint32_t magic = kMagic;
  uint32_t kind = 0;
  int64_t offset = 0;    // Write: where; Truncate: the new size
  int64_t size = 0;      // Write: bytes written (after the old ones); Path: the path's length
  int64_t old_size = 0;  // the file's size before
  int64_t old_len = 0;   // bytes it replaced (Write: within the old size; Truncate: cut off)
};

struct Journal {
  int fd = -1;
  off_t header_end = 0;
};

std::mutex g_mu;
fs::path g_dir;
std::map<std::string, Journal> g_journals;  // by the file's path; never closed (tests)
sqlite3_vfs* g_real = nullptr;

void write_all(int fd, const std::vector<uint8_t>& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::system_error(errno, std::generic_category(), "power-loss journal");
    done += static_cast<size_t>(n);
  }
}

void append_record(std::vector<uint8_t>& out, const RecordHeader& h, const void* a, size_t alen,
                   const void* b, size_t blen) {
  const auto* hp = reinterpret_cast<const uint8_t*>(&h);
  out.insert(out.end(), hp, hp + sizeof h);
  if (alen != 0)
    out.insert(out.end(), static_cast<const uint8_t*>(a), static_cast<const uint8_t*>(a) + alen);
  if (blen != 0)
    out.insert(out.end(), static_cast<const uint8_t*>(b), static_cast<const uint8_t*>(b) + blen);
}

// The journal of `path`, made with its header at the first change (under g_mu).
Journal& journal_of(const std::string& path) {
  auto it = g_journals.find(path);
  if (it != g_journals.end()) return it->second;
  std::string name = path;
  std::replace(name.begin(), name.end(), '/', '%');
  const fs::path file = g_dir / (name + ".journal");
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), file.string());
  RecordHeader h;
  h.kind = Path;
  h.size = static_cast<int64_t>(path.size());
  std::vector<uint8_t> rec;
  append_record(rec, h, path.data(), path.size(), nullptr, 0);
  try {
    write_all(fd, rec);
  } catch (...) {
    ::close(fd);
    throw;
  }
  Journal& j = g_journals[path];
  j.fd = fd;
  j.header_end = static_cast<off_t>(rec.size());
  return j;
}

// Our file: the real one's object follows it in the same allocation (szOsFile).
struct File {
  sqlite3_file base;
  sqlite3_file* real;
  std::string path;  // empty: not journaled (temporary files)
};

sqlite3_file* real_of(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }

int x_close(sqlite3_file* f) {
  File* p = reinterpret_cast<File*>(f);
  const int rc = p->real->pMethods != nullptr ? p->real->pMethods->xClose(p->real) : SQLITE_OK;
  p->path.~basic_string();
  return rc;
}
int x_read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  return real_of(f)->pMethods->xRead(real_of(f), buf, amt, off);
}
// Appends to the file's journal what a change of `kind` at `at` (Write: `amt` bytes of `buf`;
// Truncate: to the size `at`) replaces; false when it cannot (the change must not be made).
bool journal_change(File* p, Kind kind, sqlite3_int64 at, const void* buf, int amt) {
  sqlite3_file* r = p->real;
  sqlite3_int64 size = 0;
  if (r->pMethods->xFileSize(r, &size) != SQLITE_OK) return false;
  RecordHeader h;
  h.kind = kind;
  h.offset = at;
  h.size = kind == Write ? amt : 0;
  h.old_size = size;
  h.old_len =
      kind == Write ? std::clamp<int64_t>(size - at, 0, amt) : std::max<int64_t>(0, size - at);
  std::vector<uint8_t> old(static_cast<size_t>(h.old_len));
  if (h.old_len != 0 &&
      r->pMethods->xRead(r, old.data(), static_cast<int>(h.old_len), at) != SQLITE_OK) {
    return false;
  }
  std::vector<uint8_t> rec;
  append_record(rec, h, old.data(), old.size(), buf, static_cast<size_t>(h.size));
  try {
    std::lock_guard lock(g_mu);
    write_all(journal_of(p->path).fd, rec);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

int x_write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  File* p = reinterpret_cast<File*>(f);
  if (!p->path.empty() && !journal_change(p, Write, off, buf, amt)) return SQLITE_IOERR_WRITE;
  return p->real->pMethods->xWrite(p->real, buf, amt, off);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  File* p = reinterpret_cast<File*>(f);
  if (!p->path.empty() && !journal_change(p, Truncate, size, nullptr, 0)) {
    return SQLITE_IOERR_TRUNCATE;
  }
  return p->real->pMethods->xTruncate(p->real, size);
}
int x_sync(sqlite3_file* f, int flags) {
  File* p = reinterpret_cast<File*>(f);
  const int rc = p->real->pMethods->xSync(p->real, flags);
  if (rc == SQLITE_OK && !p->path.empty()) {
    // Durable now: what the journal holds can no longer be lost.
    std::lock_guard lock(g_mu);
    auto it = g_journals.find(p->path);
    if (it != g_journals.end() && ::ftruncate(it->second.fd, it->second.header_end) != 0) {
      return SQLITE_IOERR_FSYNC;
    }
  }
  return rc;
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real_of(f)->pMethods->xFileSize(real_of(f), size);
}
int x_lock(sqlite3_file* f, int l) { return real_of(f)->pMethods->xLock(real_of(f), l); }
int x_unlock(sqlite3_file* f, int l) { return real_of(f)->pMethods->xUnlock(real_of(f), l); }
int x_check_reserved(sqlite3_file* f, int* out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
int x_sector_size(sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int x_device(sqlite3_file* f) { return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f)); }
int x_shm_map(sqlite3_file* f, int pg, int pgsz, int extend, void volatile** pp) {
  return real_of(f)->pMethods->xShmMap(real_of(f), pg, pgsz, extend, pp);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) { real_of(f)->pMethods->xShmBarrier(real_of(f)); }
int x_shm_unmap(sqlite3_file* f, int del) {
  return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}
int x_fetch(sqlite3_file* f, sqlite3_int64 off, int amt, void** pp) {
  return real_of(f)->pMethods->xFetch(real_of(f), off, amt, pp);
}
int x_unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

const sqlite3_io_methods g_methods = {
    3,           x_close,   x_read,     x_write,          x_truncate,     x_sync,
    x_file_size, x_lock,    x_unlock,   x_check_reserved, x_file_control, x_sector_size,
    x_device,    x_shm_map, x_shm_lock, x_shm_barrier,    x_shm_unmap,    x_fetch,
    x_unfetch,
};

int x_open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  File* p = reinterpret_cast<File*>(f);
  p->base.pMethods = nullptr;
  p->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<uint8_t*>(f) + sizeof(File));
  new (&p->path) std::string();
  (void)vfs;
  const int rc = g_real->xOpen(g_real, name, p->real, flags, out_flags);
  if (p->real->pMethods == nullptr) {
    p->path.~basic_string();
    return rc;
  }
  if (p->real->pMethods->iVersion < 3) {  // our methods forward the shm and fetch calls
    p->real->pMethods->xClose(p->real);
    p->path.~basic_string();
    return SQLITE_CANTOPEN;
  }
  if (name != nullptr && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) != 0) p->path = name;
  p->base.pMethods = &g_methods;
  return rc;
}

sqlite3_vfs g_vfs;

// A journal's records, read whole.
struct Record {
  RecordHeader h;
  std::vector<uint8_t> old_bytes;
  std::vector<uint8_t> new_bytes;
};

std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("power_loss: cannot read " + p.string());
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void put(std::vector<uint8_t>& image, int64_t offset, const uint8_t* bytes, size_t n) {
  if (image.size() < static_cast<size_t>(offset) + n) image.resize(static_cast<size_t>(offset) + n);
  std::memcpy(image.data() + offset, bytes, n);
}

}  // namespace

void install_power_loss_vfs(const std::filesystem::path& journal_dir) {
  std::lock_guard lock(g_mu);
  g_dir = journal_dir;
  fs::create_directories(g_dir);
  g_real = sqlite3_vfs_find("unix");
  if (g_real == nullptr) throw std::runtime_error("SQLite has no \"unix\" VFS");
  g_vfs = transport::local::forwarding_vfs(
      g_real, "mqsec-power-loss", static_cast<int>(sizeof(File)) + g_real->szOsFile, x_open);
  if (sqlite3_vfs_register(&g_vfs, 1) != SQLITE_OK) {
    throw std::runtime_error("registering the power-loss VFS failed");
  }
}

PowerLossResult power_loss(const std::filesystem::path& journal_dir, uint32_t seed, double keep) {
  PowerLossResult result;
  std::mt19937 rng(seed);
  std::bernoulli_distribution kept(keep);
  std::vector<fs::path> journals;
  for (const auto& e : fs::directory_iterator(journal_dir)) {
    if (e.path().extension() == ".journal") journals.push_back(e.path());
  }
  std::sort(journals.begin(), journals.end());  // the same choices for the same seed
  for (const fs::path& jp : journals) {
    const std::vector<uint8_t> bytes = read_file(jp);
    size_t pos = 0;
    auto take = [&](void* out, size_t n) {
      if (bytes.size() - pos < n) return false;
      if (n != 0) std::memcpy(out, bytes.data() + pos, n);
      pos += n;
      return true;
    };
    RecordHeader h;
    if (!take(&h, sizeof h) || h.magic != kMagic || h.kind != Path || h.size <= 0) {
      throw std::runtime_error("power_loss: not a journal: " + jp.string());
    }
    std::string path(static_cast<size_t>(h.size), '\0');
    if (!take(path.data(), path.size())) throw std::runtime_error("power_loss: cut " + jp.string());
    std::vector<Record> records;
    for (;;) {
      Record r;
      if (!take(&r.h, sizeof r.h)) break;  // the end (a record cut by the kill: never made)
      if (r.h.magic != kMagic || (r.h.kind != Write && r.h.kind != Truncate) || r.h.offset < 0 ||
          r.h.old_size < 0 || r.h.old_len < 0 || r.h.size < 0) {
        throw std::runtime_error("power_loss: a bad record in " + jp.string());
      }
      r.old_bytes.resize(static_cast<size_t>(r.h.old_len));
      r.new_bytes.resize(r.h.kind == Write ? static_cast<size_t>(r.h.size) : 0);
      if (!take(r.old_bytes.data(), r.old_bytes.size()) ||
          !take(r.new_bytes.data(), r.new_bytes.size())) {
        break;
      }
      records.push_back(std::move(r));
    }
    // The -shm is memory that a reboot wipes (journaled file or not): SQLite rebuilds it.
    std::error_code ec;
    const std::string base = path.ends_with("-wal") ? path.substr(0, path.size() - 4) : path;
    fs::remove(base + "-shm", ec);
    if (records.empty()) {
      fs::remove(jp);
      continue;
    }
    ++result.files;
    std::vector<uint8_t> image = fs::exists(path, ec) ? read_file(path) : std::vector<uint8_t>{};
    // Back to the last fsync: each change undone, the last first.
    for (auto it = records.rbegin(); it != records.rend(); ++it) {
      const Record& r = *it;
      image.resize(static_cast<size_t>(std::max<int64_t>(r.h.old_size, 0)));
      if (!r.old_bytes.empty()) put(image, r.h.offset, r.old_bytes.data(), r.old_bytes.size());
    }
    // Forward again, each piece whole or absent.
    for (const Record& r : records) {
      if (r.h.kind == Truncate) {
        if (kept(rng)) {
          image.resize(static_cast<size_t>(r.h.offset));
          ++result.sectors_kept;
        } else {
          ++result.sectors_lost;
        }
        continue;
      }
      int64_t at = r.h.offset;
      const int64_t end = r.h.offset + r.h.size;
      while (at < end) {
        const int64_t next =
            std::min<int64_t>(end, (at / static_cast<int64_t>(kSector) + 1) * kSector);
        if (kept(rng)) {
          put(image, at, r.new_bytes.data() + (at - r.h.offset), static_cast<size_t>(next - at));
          ++result.sectors_kept;
        } else {
          ++result.sectors_lost;
        }
        at = next;
      }
    }
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(image.data()),
                static_cast<std::streamsize>(image.size()));
      if (!out) throw std::runtime_error("power_loss: cannot rewrite " + path);
    }
    fs::remove(jp);
  }
  return result;
}

size_t power_loss_mapped(const std::filesystem::path& file, const std::filesystem::path& flushed,
                         uint32_t seed, double keep) {
  std::mt19937 rng(seed);
  std::bernoulli_distribution kept(keep);
  std::vector<uint8_t> now = read_file(file);
  const std::vector<uint8_t> then = read_file(flushed);
  size_t set_back = 0;
  for (size_t at = 0; at < now.size(); at += kSector) {
    if (kept(rng)) continue;
    const size_t end = std::min(now.size(), at + kSector);
    for (size_t i = at; i < end; ++i) now[i] = i < then.size() ? then[i] : 0;
    ++set_back;
  }
  std::ofstream out(file, std::ios::binary | std::ios::in | std::ios::out);
  out.write(reinterpret_cast<const char*>(now.data()), static_cast<std::streamsize>(now.size()));
  if (!out) throw std::runtime_error("power_loss_mapped: cannot rewrite " + file.string());
  return set_back;
}

}  // namespace mqsec::testing
