// Delivery records and the choice of delivery log (delivery_log.hpp).
#include "src/transport/local/delivery_log.hpp"

#include <mqsec/error.hpp>

#include "src/transport/local/flock_delivery_log.hpp"
#include "src/transport/local/shared_delivery_log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

namespace mqsec::transport::local {

namespace {

constexpr uint32_t kFlockLogMagic = 0x3147'4C44;  // "DLG1"

void (*rewrite_hook)() = nullptr;  // set_delivery_log_rewrite_hook_for_test

void put64(uint8_t* p, int64_t v) { std::memcpy(p, &v, 8); }
int64_t get64(const uint8_t* p) {
  int64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

void encode_delivery_record(const DeliveryRecord& r, uint8_t* rec) {
  if (r.msg_id.size() > kMaxLoggedIdSize) {
    throw Error(MQ_ERROR_MESSAGE_STORAGE_FAILED, "message id too long for the delivery log");
  }
  std::memset(rec, 0, kDeliveryRecordSize);
  std::memcpy(rec, &kFlockLogMagic, 4);
  const auto len = static_cast<uint32_t>(r.msg_id.size());
  std::memcpy(rec + 4, &len, 4);
  put64(rec + 8, r.queue_id);
  put64(rec + 16, r.seq);
  put64(rec + 24, r.sent_time);
  if (len != 0) std::memcpy(rec + 32, r.msg_id.data(), len);
}

bool decode_delivery_record(const uint8_t* rec, DeliveryRecord& r) {
  uint32_t magic = 0;
  uint32_t len = 0;
  std::memcpy(&magic, rec, 4);
  std::memcpy(&len, rec + 4, 4);
  if (magic != kFlockLogMagic || len > kMaxLoggedIdSize) return false;
  r.queue_id = get64(rec + 8);
  r.seq = get64(rec + 16);
  r.sent_time = get64(rec + 24);
  r.msg_id.assign(rec + 32, rec + 32 + len);
  return true;
}

namespace {
// Set by tests only, while nothing reads it. A function's static, not a global: a program's
// static initializers may receive before this file's globals are made (a test's child after an
// exec does).
std::string& boot_id_for_test() {
  static std::string id;
  return id;
}
}  // namespace

const std::string& current_boot_id() {
  if (const std::string& forced = boot_id_for_test(); !forced.empty()) return forced;
  static const std::string id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string line;
    std::getline(in, line);
    return line;
  }();
  return id;
}

void set_boot_id_for_test(std::string id) { boot_id_for_test() = std::move(id); }

std::unique_ptr<DeliveryLog> DeliveryLog::open(DeliveryLogKind kind,
                                               const std::filesystem::path& dir,
                                               const std::string& owner, bool create) {
  if (kind == DeliveryLogKind::Shared) {
    return std::make_unique<SharedDeliveryLog>(dir, owner, create);
  }
  return std::make_unique<FlockDeliveryLog>(dir, owner, create);
}

std::filesystem::path DeliveryLog::path_of(DeliveryLogKind kind, const std::filesystem::path& dir,
                                           const std::string& owner) {
  return kind == DeliveryLogKind::Shared ? SharedDeliveryLog::path_of(dir, owner)
                                         : FlockDeliveryLog::path_of(dir, owner);
}

std::filesystem::path delivery_log_path(const std::filesystem::path& dir, const std::string& owner,
                                        const char* suffix) {
  std::string name = owner;
  for (char& c : name) {
    if (c == ':') c = '-';
  }
  return dir / "claims" / (name + suffix);
}

bool path_names_file(const std::filesystem::path& path, dev_t dev, ino_t ino) noexcept {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

std::optional<std::string> delivery_log_owner(const std::string& file_name) {
  std::string_view name = file_name;
  auto strip = [&name](std::string_view prefix, std::string_view suffix) {
    if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) ||
        !name.ends_with(suffix)) {
      return false;
    }
    name = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    return true;
  };
  if (!strip("", ".log") && !strip("", ".shm") && !strip(".", ".shm.new")) return std::nullopt;
  // "<pid>-<start>" or "<pid>-<start>-<slot>": the owner string with '-' for ':', and only
  // as claim_owner_string writes it (no sign, no leading zeros).
  std::string owner(name);
  for (char& c : owner) {
    if (c == '-') c = ':';
  }
  const std::optional<ClaimOwner> parsed = parse_claim_owner(owner);
  if (!parsed || claim_owner_string(*parsed) != owner) return std::nullopt;
  return owner;
}

void set_delivery_log_rewrite_hook_for_test(void (*hook)()) noexcept { rewrite_hook = hook; }

void run_delivery_log_rewrite_hook() {
  if (rewrite_hook != nullptr) rewrite_hook();
}

}  // namespace mqsec::transport::local
