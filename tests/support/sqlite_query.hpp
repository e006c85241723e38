// Test support: one integer read straight from an SQLite database (a store file), the way a
// test looks behind the API at what was stored.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

namespace mqsec::testing {

// The first column of the first row `sql` yields on `db`; -1 when it yields no row or fails.
inline int64_t query_int64(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return v;
}

}  // namespace mqsec::testing
