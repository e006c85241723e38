// The store's settings-change signal (settings_signal.hpp).
#include "src/transport/local/settings_signal.hpp"

#include "src/transport/local/real_ids.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace mqsec::transport::local {

namespace {

constexpr size_t kSize = 4096;  // one page; only the first 16 bytes are used

// The counters synchronise processes only if their atomics are lock-free (no lock private to a
// process, as libatomic's fallback would be).
static_assert(__atomic_always_lock_free(sizeof(uint64_t), nullptr));

}  // namespace

SettingsSignal::SettingsSignal(const std::filesystem::path& dir) noexcept {
  RealFsIds real_ids;  // the store's files belong to the process's user
  const std::filesystem::path path = dir / kFileName;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd >= 0) {
    (void)::fchmod(fd, 0600);  // whatever the umask; checked below
  } else if (errno == EEXIST) {
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  }
  if (fd < 0) return;
  struct stat sb {};
  // Same rule as the database (store.cpp, check_owner): ours, and nobody else may write it (the
  // counters are not secret: group or others may read it). One link only: a hard link to
  // another file of the store (the database) must not get its first bytes counted up. Extended
  // to its size when shorter (a new file; two processes may both do it: harmless, the added
  // bytes are zero), never shrunk, and its blocks allocated now: a page of a hole touched later
  // on a full file system would be SIGBUS instead of an error (review 5, finding 2).
  const bool usable = ::fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == ::getuid() &&
                      sb.st_nlink == 1 && (sb.st_mode & (S_IWGRP | S_IWOTH)) == 0 &&
                      (sb.st_size >= static_cast<off_t>(kSize) ||
                       (sb.st_size == 0 && ::ftruncate(fd, kSize) == 0)) &&
                      ::posix_fallocate(fd, 0, kSize) == 0;
  if (usable) {
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) words_ = static_cast<uint64_t*>(p);
  }
  ::close(fd);
}

SettingsSignal::~SettingsSignal() {
  if (words_ != nullptr) ::munmap(words_, kSize);
}

// Either order of the two loads is safe: a change that begins and ends between them moves the
// second one, so they differ. The loads are acquire loads: the caller's store read comes after.
std::optional<uint64_t> SettingsSignal::stable() const noexcept {
  if (words_ == nullptr) return std::nullopt;
  const uint64_t started = __atomic_load_n(&words_[0], __ATOMIC_SEQ_CST);
  const uint64_t finished = __atomic_load_n(&words_[1], __ATOMIC_SEQ_CST);
  if (started != finished) return std::nullopt;
  return finished;
}

// Sequentially consistent read-modify-writes (full barriers on every target GCC and Clang
// build this for): `started` is visible before anything of the commit, and the commit before
// `finished`. (No separate fences: TSan does not support atomic_thread_fence.)
void SettingsSignal::begin() noexcept {
  if (words_ == nullptr) return;
  __atomic_fetch_add(&words_[0], 1, __ATOMIC_SEQ_CST);
}

void SettingsSignal::end() noexcept {
  if (words_ == nullptr) return;
  __atomic_fetch_add(&words_[1], 1, __ATOMIC_SEQ_CST);
}

}  // namespace mqsec::transport::local
