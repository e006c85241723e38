// The store's commit signal (wal_signal.hpp).
#include "src/transport/local/wal_signal.hpp"

#include <sqlite3.h>

#include <cstring>
#include <string>

namespace mqsec::transport::local {

namespace {

// The header's words are loaded one by one as atomics: other processes store them (with
// memcpy) while we read. The loads synchronise only if they are lock-free.
static_assert(__atomic_always_lock_free(sizeof(uint32_t), nullptr));

// The only answer of a one-row PRAGMA, lower-cased ("" on any error).
std::string pragma(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    if (p != nullptr) out = p;
  }
  sqlite3_finalize(st);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Copy `which` (0 or 1) of the header.
WalSignal::Header load(const void* region, int which) noexcept {
  WalSignal::Header h;
  const auto* words = static_cast<const uint32_t*>(region) + which * h.size();
  for (size_t i = 0; i < h.size(); ++i) {
    h[i] = __atomic_load_n(&words[i], __ATOMIC_SEQ_CST);
  }
  return h;
}

}  // namespace

WalSignal::WalSignal(sqlite3* db) noexcept {
  // An exclusive locking mode keeps the wal-index in heap memory (wal.c WAL_HEAPMEMORY_MODE):
  // mapping the -shm file then would show a header nobody updates.
  if (pragma(db, "PRAGMA journal_mode") != "wal" || pragma(db, "PRAGMA locking_mode") != "normal") {
    return;
  }
  sqlite3_file* f = nullptr;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK ||
      f == nullptr || f->pMethods == nullptr || f->pMethods->iVersion < 2 ||
      f->pMethods->xShmMap == nullptr) {
    return;
  }
  // Not extending (0): region 0 exists once the connection read the database in WAL mode (the
  // store's schema transaction did); a null answer leaves the signal off.
  void volatile* p = nullptr;
  if (f->pMethods->xShmMap(f, 0, kRegionSize, 0, &p) != SQLITE_OK || p == nullptr) return;
  // Only a live header: one the database's writers keep up to date.
  if (!read_at(const_cast<const void*>(p))) return;
  region_ = const_cast<const void*>(p);
}

// The order of SQLite's own reader (wal.c walIndexTryHdr): copy 0, then copy 1, which the writer
// stores first. Equal copies are a header that was completely published; a writer that stores a
// new one while we load makes them differ. The checksum (walChecksumBytes over the first 40
// bytes, native byte order) catches a torn word that happens to leave them equal.
std::optional<WalSignal::Header> WalSignal::read_at(const void* region) noexcept {
  if (region == nullptr) return std::nullopt;
  const Header h0 = load(region, 0);
  const Header h1 = load(region, 1);
  if (h0 != h1) return std::nullopt;
  uint8_t is_init = 0;
  std::memcpy(&is_init, reinterpret_cast<const uint8_t*>(h0.data()) + 12, 1);
  if (h0[0] != kVersion || is_init != 1) return std::nullopt;
  uint32_t s1 = 0, s2 = 0;
  for (size_t i = 0; i < 10; i += 2) {
    s1 += h0[i] + s2;
    s2 += h0[i + 1] + s1;
  }
  if (s1 != h0[10] || s2 != h0[11]) return std::nullopt;
  return h0;
}

}  // namespace mqsec::transport::local
