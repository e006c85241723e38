// Background WAL checkpoints for one store.
//
// SQLite's default is to checkpoint from inside the commit that pushes the WAL past 1000 pages:
// that one send or receive then copies the pages back into the database and fsyncs it, which
// (measured with mqsec-bench) took about 40 % of a verified receive's time. The store instead
// turns automatic checkpoints off and its WAL hook asks this class to run a PASSIVE checkpoint
// on a thread and connection of its own, so commits never wait for one. A PASSIVE checkpoint
// never blocks readers or writers; SQLite restarts the WAL from the beginning once a checkpoint
// has caught up. If the thread cannot keep up (the WAL passes kSyncPages), the committing
// connection checkpoints itself, as SQLite would, so the WAL stays bounded.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

struct sqlite3;

namespace mqsec::queue {

class Checkpointer {
 public:
  static constexpr int kPages = 1000;       // ask for a checkpoint from this WAL size on
  static constexpr int kSyncPages = 20000;  // the committer checkpoints itself beyond this

  explicit Checkpointer(std::filesystem::path db_path);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Installs the WAL hook on `db` (which must outlive this object or be closed first).
  void attach(sqlite3* db);

  // fork() safety, from the store's: keeps the checkpoint (an SQLite call) out of the fork.
  void prepare_fork() { run_mu_.lock(); }
  void after_fork() { run_mu_.unlock(); }

  // Checkpoints run so far (for tests).
  unsigned long completed();

 private:
  static int on_commit(void* self, sqlite3* db, const char* schema, int pages);
  void request();
  void run();

  std::filesystem::path db_path_;
  pid_t owner_;
  std::mutex run_mu_;  // held while the thread's connection is in use
  sqlite3* db_ = nullptr;
  std::mutex mu_;  // guards the fields below
  std::condition_variable wake_;
  bool pending_ = false;
  bool stop_ = false;
  unsigned long completed_ = 0;
  std::thread* thread_ = nullptr;  // started by the first request
};

}  // namespace mqsec::queue
