// Background WAL checkpoints (see checkpointer.hpp).
#include "src/queue/checkpointer.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <utility>

namespace mqsec::queue {

Checkpointer::Checkpointer(std::filesystem::path db_path)
    : db_path_(std::move(db_path)), owner_(getpid()) {}

Checkpointer::~Checkpointer() {
  // In a forked child the thread does not exist and a parent thread may have held mu_ at the
  // fork: leave everything as it is (the child never uses its parent's store).
  if (getpid() != owner_) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_ != nullptr) {
    thread_->join();
    delete thread_;
  }
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

void Checkpointer::attach(sqlite3* db) { sqlite3_wal_hook(db, &Checkpointer::on_commit, this); }

// Runs inside the commit, on the committing connection (whose lock the caller holds).
int Checkpointer::on_commit(void* self, sqlite3* db, const char* schema, int pages) {
  auto* c = static_cast<Checkpointer*>(self);
  if (pages >= kSyncPages) {
    // The background thread is not keeping up: do what SQLite's own hook would have done.
    sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  } else if (pages >= kPages) {
    c->request();
  }
  return SQLITE_OK;
}

void Checkpointer::request() {
  {
    std::lock_guard lock(mu_);
    if (stop_ || getpid() != owner_) return;
    pending_ = true;
    if (thread_ == nullptr) thread_ = new std::thread([this] { run(); });
  }
  wake_.notify_one();
}

unsigned long Checkpointer::completed() {
  std::lock_guard lock(mu_);
  return completed_;
}

void Checkpointer::run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return pending_ || stop_; });
      if (stop_) return;
      pending_ = false;
    }
    bool done = false;
    {
      std::lock_guard run(run_mu_);
      if (db_ == nullptr) {
        // NOMUTEX: run_mu_ serialises this connection. A failure here is retried on the next
        // request; meanwhile the committers' kSyncPages limit keeps the WAL bounded.
        if (sqlite3_open_v2(db_path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                            nullptr) != SQLITE_OK) {
          sqlite3_close_v2(db_);
          db_ = nullptr;
          continue;
        }
        sqlite3_busy_timeout(db_, 1000);
      }
      done = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) ==
             SQLITE_OK;
    }
    if (done) {
      std::lock_guard lock(mu_);
      ++completed_;
    }
  }
}

}  // namespace mqsec::queue
