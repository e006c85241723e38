// A VFS that passes its calls to another one (forwarding_vfs.hpp).
#include "src/transport/local/forwarding_vfs.hpp"

namespace mqsec::transport::local {

namespace {

sqlite3_vfs* real_of(sqlite3_vfs* v) { return static_cast<sqlite3_vfs*>(v->pAppData); }

int x_delete(sqlite3_vfs* v, const char* name, int sync_dir) {
  return real_of(v)->xDelete(real_of(v), name, sync_dir);
}
int x_access(sqlite3_vfs* v, const char* name, int flags, int* out) {
  return real_of(v)->xAccess(real_of(v), name, flags, out);
}
int x_full_pathname(sqlite3_vfs* v, const char* name, int n, char* out) {
  return real_of(v)->xFullPathname(real_of(v), name, n, out);
}
void* x_dl_open(sqlite3_vfs* v, const char* name) { return real_of(v)->xDlOpen(real_of(v), name); }
void x_dl_error(sqlite3_vfs* v, int n, char* out) { real_of(v)->xDlError(real_of(v), n, out); }
void (*x_dl_sym(sqlite3_vfs* v, void* h, const char* sym))(void) {
  return real_of(v)->xDlSym(real_of(v), h, sym);
}
void x_dl_close(sqlite3_vfs* v, void* h) { real_of(v)->xDlClose(real_of(v), h); }
int x_randomness(sqlite3_vfs* v, int n, char* out) {
  return real_of(v)->xRandomness(real_of(v), n, out);
}
int x_sleep(sqlite3_vfs* v, int us) { return real_of(v)->xSleep(real_of(v), us); }
int x_current_time(sqlite3_vfs* v, double* out) {
  return real_of(v)->xCurrentTime(real_of(v), out);
}
int x_last_error(sqlite3_vfs* v, int n, char* out) {
  return real_of(v)->xGetLastError(real_of(v), n, out);
}
int x_current_time64(sqlite3_vfs* v, sqlite3_int64* out) {
  sqlite3_vfs* real = real_of(v);
  return real->iVersion >= 2 && real->xCurrentTimeInt64 != nullptr
             ? real->xCurrentTimeInt64(real, out)
             : SQLITE_ERROR;
}

}  // namespace

sqlite3_vfs forwarding_vfs(sqlite3_vfs* real, const char* name, int file_bytes, VfsOpen open) {
  sqlite3_vfs v{};
  v.iVersion = 2;
  v.szOsFile = file_bytes;
  v.mxPathname = real->mxPathname;
  v.zName = name;
  v.pAppData = real;
  v.xOpen = open;
  v.xDelete = x_delete;
  v.xAccess = x_access;
  v.xFullPathname = x_full_pathname;
  v.xDlOpen = x_dl_open;
  v.xDlError = x_dl_error;
  v.xDlSym = x_dl_sym;
  v.xDlClose = x_dl_close;
  v.xRandomness = x_randomness;
  v.xSleep = x_sleep;
  v.xCurrentTime = x_current_time;
  v.xGetLastError = x_last_error;
  v.xCurrentTimeInt64 = x_current_time64;
  return v;
}

}  // namespace mqsec::transport::local
