// The flock delivery log (flock_delivery_log.hpp).
#include "src/transport/local/flock_delivery_log.hpp"

#include <mqsec/error.hpp>

#include "src/transport/local/real_ids.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace mqsec::transport::local {

namespace {

[[noreturn]] void log_failed(const std::string& what, const std::filesystem::path& path) {
  throw Error(MQ_ERROR_MESSAGE_STORAGE_FAILED,
              what + " of delivery log " + path.string() + " failed: " + std::strerror(errno));
}

}  // namespace

std::filesystem::path FlockDeliveryLog::path_of(const std::filesystem::path& dir,
                                                const std::string& owner) {
  return delivery_log_path(dir, owner, ".log");
}

FlockDeliveryLog::FlockDeliveryLog(const std::filesystem::path& dir, const std::string& owner,
                                   bool create)
    : path_(path_of(dir, owner)) {
  RealFsIds real_ids;  // the store's files belong to the process's user
  if (create) {
    if (::mkdir(path_.parent_path().c_str(), 0700) != 0 && errno != EEXIST) {
      log_failed("creating the directory", path_);
    }
  }
  const int flags = O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0);
  fd_ = ::open(path_.c_str(), flags, 0600);
  if (fd_ < 0) {
    if (!create && errno == ENOENT) return;
    log_failed("opening", path_);
  }
}

FlockDeliveryLog::~FlockDeliveryLog() {
  if (fd_ >= 0) ::close(fd_);
}

void FlockDeliveryLog::lock() {
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) log_failed("locking", path_);
  }
}

bool FlockDeliveryLog::try_lock(int tries) {
  for (int i = 0; i < tries; ++i) {
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK && errno != EINTR) log_failed("locking", path_);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return false;
}

void FlockDeliveryLog::unlock() noexcept { (void)::flock(fd_, LOCK_UN); }

void FlockDeliveryLog::append(const DeliveryRecord& r) {
  uint8_t rec[kDeliveryRecordSize];
  encode_delivery_record(r, rec);
  for (;;) {
    const ssize_t n = ::write(fd_, rec, sizeof rec);
    if (n == static_cast<ssize_t>(sizeof rec)) return;
    if (n < 0 && errno == EINTR) continue;
    if (n >= 0) {
      // A short write (disk full, a file size limit): the record is not whole. Take its part
      // back, so that the records appended later (when the append is retried) start on a
      // record boundary and are read back; read_all() stops at the first torn record. Under
      // the log's lock and with O_APPEND, the last n bytes are this record's.
      struct stat st {};
      if (n > 0 && ::fstat(fd_, &st) == 0 && st.st_size >= n) {
        (void)!::ftruncate(fd_, st.st_size - n);
      }
      errno = EIO;
    }
    log_failed("writing", path_);
  }
}

std::vector<DeliveryRecord> FlockDeliveryLog::read_all() {
  std::vector<DeliveryRecord> out;
  uint8_t rec[kDeliveryRecordSize];
  off_t at = 0;
  for (;;) {
    const ssize_t n = ::pread(fd_, rec, sizeof rec, at);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_failed("reading", path_);
    }
    if (n != static_cast<ssize_t>(sizeof rec)) break;  // end (or a torn tail)
    at += n;
    DeliveryRecord r;
    if (!decode_delivery_record(rec, r)) break;
    out.push_back(std::move(r));
  }
  return out;
}

void FlockDeliveryLog::truncate() {
  if (::ftruncate(fd_, 0) != 0) log_failed("truncating", path_);
}

void FlockDeliveryLog::keep_only(std::span<const DeliveryRecord> kept_records) {
  if (kept_records.empty()) {
    truncate();
    return;
  }
  std::vector<uint8_t> kept(kept_records.size() * kDeliveryRecordSize);
  for (size_t i = 0; i < kept_records.size(); ++i) {
    encode_delivery_record(kept_records[i], kept.data() + i * kDeliveryRecordSize);
  }
  // The kept records over the first slots, in one write (O_APPEND off for it: with it, Linux
  // appends whatever the offset), then the file cut after them. Killed in between, the log holds
  // the kept records, some twice, and applied ones: applying a record again changes nothing.
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_APPEND) != 0) log_failed("rewriting", path_);
  size_t done = 0;
  while (done < kept.size()) {
    const ssize_t n =
        ::pwrite(fd_, kept.data() + done, kept.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      (void)::fcntl(fd_, F_SETFL, flags);
      errno = err;
      log_failed("rewriting", path_);
    }
    done += static_cast<size_t>(n);
  }
  if (::fcntl(fd_, F_SETFL, flags) != 0) log_failed("rewriting", path_);
  run_delivery_log_rewrite_hook();
  if (::ftruncate(fd_, static_cast<off_t>(kept.size())) != 0) log_failed("truncating", path_);
}

void FlockDeliveryLog::remove_file() noexcept {
  RealFsIds real_ids;
  if (still_named()) (void)::unlink(path_.c_str());
}

bool FlockDeliveryLog::still_named() const noexcept {
  struct stat st {};
  return fd_ >= 0 && ::fstat(fd_, &st) == 0 && path_names_file(path_, st.st_dev, st.st_ino);
}

}  // namespace mqsec::transport::local
