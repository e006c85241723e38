// A table of shared objects addressed by 32-bit handles.
//
// MSMQ carries a security context handle in PROPID_M_SECURITY_CONTEXT, a VT_UI4, so a
// handle must fit in 32 bits: it is (generation << 16) | slot. A freed slot's generation
// moves on, so stale, double-freed and forged handles are simply not found. Handle 0 is
// never issued. Lookups take a shared lock only; the send path never serialises on it.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <vector>

#include "pkcs11/call_gate.hpp"

namespace mqsec::security {

template <typename T>
class HandleTable {
 public:
  static constexpr uint32_t kMaxSlots = 0xFFFF;

  // fork(): another thread may be half-way through a lookup (holding the lock shared) when the
  // process forks; the child would then wait forever to insert. The fork handlers hold the lock
  // across the fork instead (pkcs11/call_gate.hpp).
  HandleTable() { pkcs11::register_fork_mutex(mu_); }
  ~HandleTable() { pkcs11::unregister_fork_lock(&mu_); }
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;

  // Returns the new handle, or 0 when all slots are in use.
  uint32_t insert(std::shared_ptr<T> obj) {
    std::unique_lock lock(mu_);
    uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      if (entries_.size() >= kMaxSlots) return 0;
      slot = static_cast<uint32_t>(entries_.size());
      entries_.push_back(Entry{});
    }
    Entry& e = entries_[slot];
    e.obj = std::move(obj);
    return (static_cast<uint32_t>(e.generation) << 16) | slot;
  }

  std::shared_ptr<T> get(uint32_t handle) const {
    std::shared_lock lock(mu_);
    const Entry* e = find(handle);
    return e ? e->obj : nullptr;
  }

  // Removes the object; false when the handle was not live.
  bool erase(uint32_t handle) {
    std::shared_ptr<T> doomed;  // destroyed after the lock is released
    std::unique_lock lock(mu_);
    Entry* e = const_cast<Entry*>(find(handle));
    if (e == nullptr) return false;
    doomed = std::move(e->obj);
    e->generation = static_cast<uint16_t>(e->generation == 0xFFFF ? 1 : e->generation + 1);
    free_.push_back(handle & 0xFFFF);
    return true;
  }

  size_t size() const {
    std::shared_lock lock(mu_);
    return entries_.size() - free_.size();
  }

 private:
  struct Entry {
    uint16_t generation = 1;
    std::shared_ptr<T> obj;
  };
  const Entry* find(uint32_t handle) const {
    uint32_t slot = handle & 0xFFFF;
    uint16_t gen = static_cast<uint16_t>(handle >> 16);
    if (slot >= entries_.size()) return nullptr;
    const Entry& e = entries_[slot];
    if (e.generation != gen || !e.obj) return nullptr;
    return &e;
  }

  mutable std::shared_mutex mu_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> free_;
};

}  // namespace mqsec::security
