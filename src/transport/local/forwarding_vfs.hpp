// A SQLite VFS that passes every VFS-level call but xOpen to another VFS: the frame of the store's
// WAL VFS (wal_vfs.cpp) and of the tests' power-loss VFS (tests/support/power_loss.cpp). The
// files it opens are the caller's business (xOpen).
#pragma once

#include <sqlite3.h>

namespace mqsec::transport::local {

using VfsOpen = int (*)(sqlite3_vfs*, sqlite3_filename, sqlite3_file*, int, int*);

// A version-2 VFS named `name` whose files take `file_bytes` bytes and are opened by `open`;
// `real` (kept in its pAppData) answers everything else. Register it with sqlite3_vfs_register;
// it must outlive every connection that uses it.
sqlite3_vfs forwarding_vfs(sqlite3_vfs* real, const char* name, int file_bytes, VfsOpen open);

}  // namespace mqsec::transport::local
