// The shared delivery log (shared_delivery_log.hpp).
#include "src/transport/local/shared_delivery_log.hpp"

#include <mqsec/error.hpp>

#include "src/transport/local/real_ids.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace mqsec::transport::local {

namespace {

constexpr uint32_t kSharedLogMagic = 0x3153'4C44;  // "DLS1"
constexpr size_t kHeaderSize = 4096;
constexpr size_t kInitialSlots = 256;  // 20 KiB of records
constexpr size_t kMaxSlots = std::numeric_limits<uint32_t>::max();
constexpr size_t kSector = 512;  // the smallest unit a disk writes whole (read_salvage)

// The first page of the file.
struct Header {
  uint32_t magic;
  uint32_t record_size;
  uint32_t header_size;
  uint32_t abi;  // kAbi: the mutex's and a pointer's size (a build that lays them out otherwise)
  alignas(64) pthread_mutex_t mutex;
  alignas(64) uint64_t window;  // count << 32 | start; only with __atomic builtins
  // The boot it was made in (current_boot_id(), NUL-terminated; all zeros in a log made before
  // mqsec recorded it: read as "not known"). Read by from_earlier_boot().
  alignas(64) char boot[64];
};
static_assert(sizeof(Header) <= kHeaderSize);
constexpr uint32_t kAbi = static_cast<uint32_t>(sizeof(pthread_mutex_t) | sizeof(void*) << 16);

struct Window {
  size_t start = 0;
  size_t count = 0;
};

[[noreturn]] void log_failed(const std::string& what, const std::filesystem::path& path, int err) {
  throw Error(MQ_ERROR_MESSAGE_STORAGE_FAILED,
              what + " of delivery log " + path.string() + " failed: " + std::strerror(err));
}

[[noreturn]] void not_a_log(const std::filesystem::path& path, const std::string& why) {
  throw Error(MQ_ERROR_MESSAGE_STORAGE_FAILED,
              path.string() + " is not a delivery log (" + why +
                  "); the store's claims of its owner cannot be recovered until it is moved away");
}

void* map(int fd, size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// Writes a new log at a temporary name and links it in place, so that no process ever opens a
// log whose header is not whole. Returns the open log, or -1 with errno.
int create_log(const std::filesystem::path& path) {
  const std::filesystem::path tmp = path.parent_path() / ("." + path.filename().string() + ".new");
  // Only the owner creates its log (and only under the registry's mutex in its process), so
  // nothing of ours is at that name; whatever is (another file, a link) is removed, never
  // written through, and the new file is ours alone whatever the umask.
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 && errno == EEXIST && ::unlink(tmp.c_str()) == 0) {
    fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  }
  if (fd < 0) return -1;
  auto give_up = [&](int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    errno = err;
    return -1;
  };
  if (::fchmod(fd, 0600) != 0) return give_up(errno);
  if (const int rc = ::posix_fallocate(fd, 0, kHeaderSize + kInitialSlots * kDeliveryRecordSize);
      rc != 0) {
    return give_up(rc);
  }
  void* p = map(fd, kHeaderSize);
  if (p == nullptr) return give_up(errno);
  auto* h = static_cast<Header*>(p);
  h->magic = kSharedLogMagic;
  h->record_size = static_cast<uint32_t>(kDeliveryRecordSize);
  h->header_size = static_cast<uint32_t>(kHeaderSize);
  h->abi = kAbi;
  __atomic_store_n(&h->window, 0, __ATOMIC_RELEASE);
  const std::string& boot = current_boot_id();
  std::memset(h->boot, 0, sizeof h->boot);
  std::memcpy(h->boot, boot.data(), std::min(boot.size(), sizeof h->boot - 1));
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc == 0) rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutex_init(&h->mutex, &attr);
  (void)pthread_mutexattr_destroy(&attr);
  // On disk before it has its name: a log that a power loss left named but with its header
  // unwritten would be "not a log" to every recoverer (one flush per receiver process).
  if (rc == 0 && ::msync(p, kHeaderSize, MS_SYNC) != 0) rc = errno;
  ::munmap(p, kHeaderSize);
  if (rc == 0 && ::fdatasync(fd) != 0) rc = errno;
  if (rc != 0) return give_up(rc);
  if (::link(tmp.c_str(), path.c_str()) != 0) return give_up(errno);
  ::unlink(tmp.c_str());
  return fd;
}

}  // namespace

struct SharedDeliveryLog::File {
  std::filesystem::path path;
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  Header* header = nullptr;  // its own mapping: the mutex never moves while it may be held
  uint8_t* whole = nullptr;  // the whole file, remapped when it grows
  size_t slots = 0;          // record slots in `whole`
  // Threads of this process holding the lock (lock() .. unlock()).
  std::atomic<int> holders{0};
  // Its header page is all zeros: what a power loss leaves of a log whose header never reached
  // the disk (made by an mqsec that did not flush it first). Read as a log of an earlier boot
  // with no records.
  bool blank = false;

  ~File() {
    if (holders.load(std::memory_order_acquire) != 0) {
      // Destroyed while one of our threads holds the lock (a process exiting while a thread
      // delivers): the mutex is on that thread's robust list, and the kernel marks it
      // EOWNERDEAD at the thread's death only if it is still mapped then. Unmapped, the lock
      // would stay held for good and the owner's claims never be recovered; so the mappings
      // stay (4 KiB and the records, until the process ends).
      if (fd >= 0) ::close(fd);
      return;
    }
    if (whole != nullptr) ::munmap(whole, kHeaderSize + slots * kDeliveryRecordSize);
    if (header != nullptr) ::munmap(header, kHeaderSize);
    if (fd >= 0) ::close(fd);
  }

  uint8_t* slot(size_t i) const { return whole + kHeaderSize + i * kDeliveryRecordSize; }

  Window window() const {
    const uint64_t w = __atomic_load_n(&header->window, __ATOMIC_ACQUIRE);
    return {static_cast<size_t>(w & 0xffff'ffffU), static_cast<size_t>(w >> 32)};
  }
  void publish(size_t start, size_t count) const {
    __atomic_store_n(&header->window, static_cast<uint64_t>(count) << 32 | start, __ATOMIC_RELEASE);
  }

  // Maps at least `n` slots; with `grow`, allocates them in the file first (else a window beyond
  // the file is not a log's).
  void ensure_slots(size_t n, bool grow) {
    if (n <= slots) return;
    struct stat st {};
    if (::fstat(fd, &st) != 0) log_failed("reading the size", path, errno);
    if (static_cast<size_t>(st.st_size) < kHeaderSize) not_a_log(path, "it was cut");
    size_t file_slots = (static_cast<size_t>(st.st_size) - kHeaderSize) / kDeliveryRecordSize;
    if (file_slots < n) {
      if (!grow) not_a_log(path, "its live records run past its end");
      if (n > kMaxSlots) log_failed("growing", path, EFBIG);
      const size_t want = std::min(kMaxSlots, std::max({n, 2 * file_slots, kInitialSlots}));
      const int rc =
          ::posix_fallocate(fd, static_cast<off_t>(kHeaderSize + file_slots * kDeliveryRecordSize),
                            static_cast<off_t>((want - file_slots) * kDeliveryRecordSize));
      if (rc != 0) log_failed("growing", path, rc);
      file_slots = want;
    }
    if (whole != nullptr) ::munmap(whole, kHeaderSize + slots * kDeliveryRecordSize);
    whole = nullptr;
    slots = 0;
    void* p = map(fd, kHeaderSize + file_slots * kDeliveryRecordSize);
    if (p == nullptr) log_failed("mapping", path, errno);
    whole = static_cast<uint8_t*>(p);
    slots = file_slots;
  }
};

namespace {

// The process's open logs (one File per file): two mutex objects for one lock in one process
// would be two locks to a thread sanitizer, and two mappings to keep in step.
std::mutex registry_mu;
std::vector<std::weak_ptr<SharedDeliveryLog::File>> registry;

}  // namespace

std::filesystem::path SharedDeliveryLog::path_of(const std::filesystem::path& dir,
                                                 const std::string& owner) {
  return delivery_log_path(dir, owner, ".shm");
}

SharedDeliveryLog::SharedDeliveryLog(const std::filesystem::path& dir, const std::string& owner,
                                     bool create)
    : path_(path_of(dir, owner)) {
  RealFsIds real_ids;  // the store's files belong to the process's user
  std::lock_guard g(registry_mu);
  if (create && ::mkdir(path_.parent_path().c_str(), 0700) != 0 && errno != EEXIST) {
    log_failed("creating the directory", path_, errno);
  }
  int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT) {
    if (!create) return;
    fd = create_log(path_);
    if (fd < 0 && errno == EEXIST) fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  }
  if (fd < 0) log_failed("opening", path_, errno);
  auto file = std::make_shared<File>();
  file->path = path_;
  file->fd = fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0) log_failed("reading the size", path_, errno);
  file->dev = st.st_dev;
  file->ino = st.st_ino;
  std::erase_if(registry, [](const std::weak_ptr<File>& w) { return w.expired(); });
  for (const std::weak_ptr<File>& w : registry) {
    if (auto f = w.lock(); f && f->dev == st.st_dev && f->ino == st.st_ino) {
      file_ = std::move(f);  // `file` closes its descriptor
      return;
    }
  }
  if (!S_ISREG(st.st_mode)) not_a_log(path_, "not a regular file");
  const auto size = static_cast<size_t>(st.st_size);
  if (size < kHeaderSize || (size - kHeaderSize) % kDeliveryRecordSize != 0) {
    not_a_log(path_, "its size is " + std::to_string(size) + " bytes");
  }
  void* p = map(fd, kHeaderSize);
  if (p == nullptr) log_failed("mapping", path_, errno);
  file->header = static_cast<Header*>(p);
  const Header& h = *file->header;
  const auto* page = reinterpret_cast<const unsigned char*>(file->header);
  file->blank =
      h.magic == 0 && std::all_of(page, page + kHeaderSize, [](unsigned char c) { return c == 0; });
  if (file->blank) {
    registry.push_back(file);
    file_ = std::move(file);
    return;
  }
  if (h.magic != kSharedLogMagic || h.record_size != kDeliveryRecordSize ||
      h.header_size != kHeaderSize) {
    not_a_log(path_, "its header is not one");
  }
  if (h.abi != kAbi) {
    not_a_log(path_, "written by a build whose lock is laid out otherwise (" +
                         std::to_string(h.abi & 0xffff) + "-byte mutex, " +
                         std::to_string(h.abi >> 16) + "-byte pointers)");
  }
  registry.push_back(file);
  file_ = std::move(file);
}

SharedDeliveryLog::~SharedDeliveryLog() = default;

void SharedDeliveryLog::lock() {
  int rc = pthread_mutex_lock(&file_->header->mutex);
  // Its holder died: the window is whole (it changes by one store), so the lock is taken.
  if (rc == EOWNERDEAD) rc = pthread_mutex_consistent(&file_->header->mutex);
  if (rc != 0) log_failed("locking", path_, rc);
  file_->holders.fetch_add(1, std::memory_order_relaxed);
}

bool SharedDeliveryLog::try_lock(int tries) {
  for (int i = 0; i < tries; ++i) {
    int rc = pthread_mutex_trylock(&file_->header->mutex);
    if (rc == EOWNERDEAD) rc = pthread_mutex_consistent(&file_->header->mutex);
    if (rc == 0) {
      file_->holders.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (rc != EBUSY) log_failed("locking", path_, rc);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return false;
}

void SharedDeliveryLog::unlock() noexcept {
  file_->holders.fetch_sub(1, std::memory_order_release);
  (void)pthread_mutex_unlock(&file_->header->mutex);
}

void SharedDeliveryLog::append(const DeliveryRecord& r) {
  const Window w = file_->window();
  const size_t at = w.start + w.count;
  file_->ensure_slots(at + 1, /*grow=*/true);
  encode_delivery_record(r, file_->slot(at));
  file_->publish(w.start, w.count + 1);
}

std::vector<DeliveryRecord> SharedDeliveryLog::read_all() {
  const Window w = file_->window();
  file_->ensure_slots(w.start + w.count, /*grow=*/false);
  std::vector<DeliveryRecord> out(w.count);
  for (size_t i = 0; i < w.count; ++i) {
    if (!decode_delivery_record(file_->slot(w.start + i), out[i])) {
      not_a_log(path_, "live record " + std::to_string(w.start + i) + " is not a record");
    }
  }
  return out;
}

bool SharedDeliveryLog::from_earlier_boot() const noexcept {
  if (file_->blank) return true;
  const char* made = file_->header->boot;
  const size_t len = strnlen(made, sizeof file_->header->boot);
  const std::string& now = current_boot_id();
  return len != 0 && !now.empty() && std::string_view(made, len) != now;
}

std::vector<DeliveryRecord> SharedDeliveryLog::read_salvage() {
  struct stat st {};
  if (::fstat(file_->fd, &st) != 0) log_failed("reading the size", path_, errno);
  const size_t file_slots =
      static_cast<size_t>(st.st_size) < kHeaderSize
          ? 0
          : (static_cast<size_t>(st.st_size) - kHeaderSize) / kDeliveryRecordSize;
  const Window w = file_->window();
  const size_t start = std::min(w.start, file_slots);
  const size_t end = std::min(w.start + w.count, file_slots);
  file_->ensure_slots(end, /*grow=*/false);
  std::vector<DeliveryRecord> out;
  out.reserve(end - start);
  for (size_t i = start; i < end; ++i) {
    // A record that crosses a 512-byte sector of the file may have reached the disk in part (a
    // power loss tears a write at sector boundaries, and records carry no checksum): its halves
    // may come from two records, a made-up id recorded as delivered would refuse a real message
    // as a replay. Not applied: its message comes back, a duplicate, which a power loss allows.
    const size_t off = kHeaderSize + i * kDeliveryRecordSize;
    if (off / kSector != (off + kDeliveryRecordSize - 1) / kSector) continue;
    DeliveryRecord r;
    if (decode_delivery_record(file_->slot(i), r)) out.push_back(std::move(r));
  }
  return out;
}

void SharedDeliveryLog::truncate() { file_->publish(0, 0); }

void SharedDeliveryLog::keep_only(std::span<const DeliveryRecord> kept) {
  if (kept.empty()) {
    truncate();
    return;
  }
  // Outside the live window: before it when they fit there, else after it.
  const Window w = file_->window();
  const size_t at = kept.size() <= w.start ? 0 : w.start + w.count;
  file_->ensure_slots(at + kept.size(), /*grow=*/true);
  for (size_t i = 0; i < kept.size(); ++i) encode_delivery_record(kept[i], file_->slot(at + i));
  run_delivery_log_rewrite_hook();
  file_->publish(at, kept.size());
}

void SharedDeliveryLog::remove_file() noexcept {
  RealFsIds real_ids;
  if (still_named()) (void)::unlink(path_.c_str());
}

bool SharedDeliveryLog::still_named() const noexcept {
  return file_ != nullptr && path_names_file(path_, file_->dev, file_->ino);
}

}  // namespace mqsec::transport::local
