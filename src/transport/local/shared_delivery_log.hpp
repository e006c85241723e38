// The delivery log of schema 7 stores: <store>/claims/<owner with ':' as '-'>.shm, a file mapped
// shared (delivery_log.hpp says what the log is for).
//
// Layout: one 4 KiB header page, then 80-byte record slots.
// - The header holds a magic, the record size, a PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST
//   mutex (the log's lock) and one 64-bit word naming the live records: (start, count), slots
//   start .. start + count - 1.
// - append() writes the slot after the live ones and then publishes count + 1 with one release
//   store; keep_only() writes the kept records outside the live window and publishes (start, k)
//   with one store; truncate() publishes (0, 0). A SIGKILL at any point leaves the old window or
//   the new one, never a part of either.
// - Lock and unlock are user-space atomics when nobody waits: a delivery makes no system call.
//   An owner that dies holding the lock leaves EOWNERDEAD to the next locker, which takes the
//   lock (the window is consistent whenever the lock is free or its holder died); a stopped owner
//   makes try_lock() fail, as flock does.
// - The file never shrinks while it is in use, so writing through a mapping cannot fault on a
//   cut; it grows with posix_fallocate (so that a full disk is an error, not a SIGBUS).
// - One mapping per file per process: objects of one file (two Stores of one directory, or a
//   recoverer opening a log its own process has open) share it, so the process holds one mutex
//   object per log.
#pragma once

#include "src/transport/local/delivery_log.hpp"

#include <memory>

namespace mqsec::transport::local {

class SharedDeliveryLog final : public DeliveryLog {
 public:
  SharedDeliveryLog(const std::filesystem::path& dir, const std::string& owner, bool create);
  ~SharedDeliveryLog() override;

  bool is_open() const noexcept override { return file_ != nullptr; }
  void lock() override;
  bool try_lock(int tries) override;
  void unlock() noexcept override;
  void append(const DeliveryRecord& r) override;
  std::vector<DeliveryRecord> read_all() override;
  void truncate() override;
  void keep_only(std::span<const DeliveryRecord> kept) override;
  void remove_file() noexcept override;
  bool still_named() const noexcept override;
  bool from_earlier_boot() const noexcept override;
  std::vector<DeliveryRecord> read_salvage() override;

  static std::filesystem::path path_of(const std::filesystem::path& dir, const std::string& owner);

  struct File;  // one mapped log file of this process (shared_delivery_log.cpp)

 private:
  std::filesystem::path path_;
  std::shared_ptr<File> file_;
};

}  // namespace mqsec::transport::local
