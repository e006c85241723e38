// The delivery log of schema 6 stores: <store>/claims/<owner with ':' as '-'>.log, one write()
// per record, its lock a flock on the file (delivery_log.hpp says what the log is for).
#pragma once

#include "src/transport/local/delivery_log.hpp"

namespace mqsec::transport::local {

class FlockDeliveryLog final : public DeliveryLog {
 public:
  FlockDeliveryLog(const std::filesystem::path& dir, const std::string& owner, bool create);
  ~FlockDeliveryLog() override;

  bool is_open() const noexcept override { return fd_ >= 0; }
  void lock() override;
  bool try_lock(int tries) override;
  void unlock() noexcept override;
  // One write() of one record (atomic against a SIGKILL: it is in the page cache or not at all).
  void append(const DeliveryRecord& r) override;
  // Every whole record (a torn tail, only possible after a power failure, is ignored).
  std::vector<DeliveryRecord> read_all() override;
  void truncate() override;
  // The kept records over the first slots in one write, then the cut: killed in between, the log
  // holds the kept records, some twice, and applied ones.
  void keep_only(std::span<const DeliveryRecord> kept) override;
  void remove_file() noexcept override;
  bool still_named() const noexcept override;

  static std::filesystem::path path_of(const std::filesystem::path& dir, const std::string& owner);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace mqsec::transport::local
