// Claim owners and delivery logs (delivery_log.hpp).
#include "src/transport/local/delivery_log.hpp"

#include <mqsec/error.hpp>

#include "src/transport/local/process_identity.hpp"
#include "src/transport/local/real_ids.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace mqsec::transport::local {

namespace {

constexpr uint32_t kMagic = 0x3147'4C44;  // "DLG1"
constexpr size_t kRecordSize = 4 + 4 + 8 + 8 + 8 + kMaxLoggedIdSize;

void (*rewrite_hook)() = nullptr;  // DeliveryLog::set_rewrite_hook_for_test

[[noreturn]] void log_failed(const std::string& what, const std::filesystem::path& path) {
  throw Error(MQ_ERROR_MESSAGE_STORAGE_FAILED,
              what + " of delivery log " + path.string() + " failed: " + std::strerror(errno));
}

void put64(uint8_t* p, int64_t v) { std::memcpy(p, &v, 8); }
int64_t get64(const uint8_t* p) {
  int64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

std::string claim_owner_of(pid_t pid) {
  const uint64_t start = pid == ::getpid() ? own_start_time() : process_start_time(pid).value_or(0);
  return std::to_string(pid) + ":" + std::to_string(start);
}

bool claim_owner_alive(const std::string& owner) {
  const size_t colon = owner.find(':');
  if (colon == std::string::npos) return false;
  pid_t pid = 0;
  uint64_t start = 0;
  const char* p = owner.data();
  const char* e = p + owner.size();
  const auto a = std::from_chars(p, p + colon, pid);
  const auto b = std::from_chars(p + colon + 1, e, start);
  if (a.ec != std::errc() || a.ptr != p + colon || b.ec != std::errc() || b.ptr != e) {
    return false;  // never written by mqsec
  }
  return process_may_run(pid, start);
}

std::filesystem::path DeliveryLog::path_of(const std::filesystem::path& dir,
                                           const std::string& owner) {
  std::string name = owner;
  for (char& c : name) {
    if (c == ':') c = '-';
  }
  return dir / "claims" / (name + ".log");
}

DeliveryLog::DeliveryLog(const std::filesystem::path& dir, const std::string& owner, bool create)
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

DeliveryLog::~DeliveryLog() {
  if (fd_ >= 0) ::close(fd_);
}

void DeliveryLog::lock() {
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) log_failed("locking", path_);
  }
}

bool DeliveryLog::try_lock(int tries) {
  for (int i = 0; i < tries; ++i) {
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK && errno != EINTR) log_failed("locking", path_);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return false;
}

void DeliveryLog::unlock() noexcept { (void)::flock(fd_, LOCK_UN); }

namespace {

// A record's bytes; an id longer than a record holds is refused.
void encode(const DeliveryRecord& r, uint8_t* rec) {
  if (r.msg_id.size() > kMaxLoggedIdSize) {
    throw Error(MQ_ERROR_MESSAGE_STORAGE_FAILED, "message id too long for the delivery log");
  }
  std::memset(rec, 0, kRecordSize);
  std::memcpy(rec, &kMagic, 4);
  const auto len = static_cast<uint32_t>(r.msg_id.size());
  std::memcpy(rec + 4, &len, 4);
  put64(rec + 8, r.queue_id);
  put64(rec + 16, r.seq);
  put64(rec + 24, r.sent_time);
  if (len != 0) std::memcpy(rec + 32, r.msg_id.data(), len);
}

}  // namespace

void DeliveryLog::append(const DeliveryRecord& r) {
  uint8_t rec[kRecordSize];
  encode(r, rec);
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

std::vector<DeliveryRecord> DeliveryLog::read_all() {
  std::vector<DeliveryRecord> out;
  uint8_t rec[kRecordSize];
  off_t at = 0;
  for (;;) {
    const ssize_t n = ::pread(fd_, rec, sizeof rec, at);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_failed("reading", path_);
    }
    if (n != static_cast<ssize_t>(sizeof rec)) break;  // end (or a torn tail)
    at += n;
    uint32_t magic = 0;
    uint32_t len = 0;
    std::memcpy(&magic, rec, 4);
    std::memcpy(&len, rec + 4, 4);
    if (magic != kMagic || len > kMaxLoggedIdSize) break;
    DeliveryRecord r;
    r.queue_id = get64(rec + 8);
    r.seq = get64(rec + 16);
    r.sent_time = get64(rec + 24);
    r.msg_id.assign(rec + 32, rec + 32 + len);
    out.push_back(std::move(r));
  }
  return out;
}

void DeliveryLog::truncate() {
  if (::ftruncate(fd_, 0) != 0) log_failed("truncating", path_);
}

void DeliveryLog::keep_only(std::span<const DeliveryRecord> kept_records) {
  if (kept_records.empty()) {
    truncate();
    return;
  }
  std::vector<uint8_t> kept(kept_records.size() * kRecordSize);
  for (size_t i = 0; i < kept_records.size(); ++i) {
    encode(kept_records[i], kept.data() + i * kRecordSize);
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
  if (rewrite_hook != nullptr) rewrite_hook();
  if (::ftruncate(fd_, static_cast<off_t>(kept.size())) != 0) log_failed("truncating", path_);
}

void DeliveryLog::set_rewrite_hook_for_test(void (*hook)()) noexcept { rewrite_hook = hook; }

void DeliveryLog::remove_file() noexcept {
  RealFsIds real_ids;
  (void)::unlink(path_.c_str());
}

}  // namespace mqsec::transport::local
