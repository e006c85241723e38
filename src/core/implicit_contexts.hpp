// Implicit security contexts: the context a signed send uses when the caller passes no
// PROPID_M_SECURITY_CONTEXT (MSMQ programs commonly do; Microsoft's own samples do). Building a
// context reads the system configuration and the user's profile, resolves the user and its
// SID, logs in (or proves the PIN) and finds the certificate and key on the token, so doing it
// per send costs far more than the signature. The contexts are kept here instead, per
// effective identity of the calling thread (uid and gid, which an impersonating thread has
// switched) and certificate (PROPID_M_SENDER_CERT, or the profile's internal one).
//
// A cached context is used only while nothing it was built from may have changed: the system
// configuration (MQSEC_CONFIG's path and its file), the user's profile file, this process's
// registrations (MQRegisterCertificate), the token's generation (removal, recovery) and the
// process (a forked child builds its own). Every use re-checks these (two stat calls, the
// rest in memory); an entry is also rebuilt after kMaxAge at most, as the registry cache is
// (what no stat shows: a new SID mapping, a certificate object replaced on the token), and
// the cache holds at most kMaxEntries entries.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "src/security/context.hpp"

namespace mqsec::core {

class ImplicitContexts {
 public:
  static constexpr size_t kMaxEntries = 64;
  static constexpr std::chrono::seconds kMaxAge{2};

  explicit ImplicitContexts(size_t max_entries = kMaxEntries,
                            std::chrono::steady_clock::duration max_age = kMaxAge);
  ~ImplicitContexts();
  ImplicitContexts(const ImplicitContexts&) = delete;
  ImplicitContexts& operator=(const ImplicitContexts&) = delete;

  // The context for the calling thread's effective identity and `der` (empty: the internal
  // certificate): the cached one while it is still valid, else a new one
  // (security::acquire_context, whose errors are thrown and never cached).
  std::shared_ptr<security::SecurityContext> get(std::span<const uint8_t> der);
  // Drops the entry holding `ctx` (a send with it failed: the next one builds afresh).
  void forget(const security::SecurityContext* ctx) noexcept;
  // Drops every entry (a registration changed in this process).
  void clear() noexcept;
  size_t size();

 private:
  struct Key {
    uint32_t uid = 0, gid = 0;
    security::Bytes der;
    bool operator<(const Key& o) const {
      if (uid != o.uid) return uid < o.uid;
      if (gid != o.gid) return gid < o.gid;
      return der < o.der;
    }
  };
  // What stat() says of a file: errno when it failed, else identity, size and times.
  struct FileStamp {
    int error = 0;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0, ctime_ns = 0;
    bool operator==(const FileStamp&) const = default;
    static FileStamp of(const std::filesystem::path& p) noexcept;
  };
  struct Entry {
    std::shared_ptr<security::SecurityContext> ctx;
    std::filesystem::path config_path, profile_file;
    FileStamp config, profile;
    uint64_t epoch = 0, token_generation = 0;
    std::chrono::steady_clock::time_point made;
  };

  bool still_valid(const Entry& e, const std::filesystem::path& config_path,
                   std::chrono::steady_clock::time_point now) const;

  const size_t max_entries_;
  const std::chrono::steady_clock::duration max_age_;
  std::mutex mu_;  // leaf lock, registered with the fork locks
  pid_t pid_;
  uint64_t epoch_ = 0;  // bumped by clear(); entries of an older epoch are stale
  std::map<Key, std::shared_ptr<const Entry>> entries_;
};

}  // namespace mqsec::core
