// The messages this process's receivers are verifying and offering right now, per queue of a
// store. Two threads receiving from one queue would otherwise both read the message at its
// head, both verify it, and one of them lose the removal (the store's single writer decides:
// exactly once) having verified for nothing; with two threads that halved the receive rate.
// A receive (not a peek, not at a cursor) skips a message another thread of this process is
// offering and goes on to the next. Other processes are not seen here; between them the store
// alone still decides who gets a message.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <utility>

namespace mqsec::core {

class Offering {
 public:
  Offering();
  Offering(const Offering&) = delete;
  Offering& operator=(const Offering&) = delete;

  // Marks message `seq` of queue `queue_key` as offered by the calling thread; false when
  // another thread of this process offers it now.
  bool begin(const std::string& queue_key, int64_t seq);
  void end(const std::string& queue_key, int64_t seq) noexcept;

  // Ends an offer when it goes out of scope.
  class Guard {
   public:
    Guard() = default;
    Guard(Offering* o, const std::string* key, int64_t seq) : o_(o), key_(key), seq_(seq) {}
    Guard(Guard&& g) noexcept : o_(std::exchange(g.o_, nullptr)), key_(g.key_), seq_(g.seq_) {}
    Guard& operator=(Guard&& g) noexcept {
      if (this != &g) {
        release();
        o_ = std::exchange(g.o_, nullptr);
        key_ = g.key_;
        seq_ = g.seq_;
      }
      return *this;
    }
    ~Guard() { release(); }
    void release() noexcept {
      if (o_) o_->end(*key_, seq_);
      o_ = nullptr;
    }

   private:
    Offering* o_ = nullptr;
    const std::string* key_ = nullptr;
    int64_t seq_ = 0;
  };

 private:
  std::mutex mu_;  // leaf lock, registered with the fork locks
  pid_t pid_;      // a forked child starts empty (the parent's receivers are not its own)
  std::set<std::pair<std::string, int64_t>> offered_;
};

}  // namespace mqsec::core
