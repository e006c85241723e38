// Implicit security contexts, cached per identity and certificate.
#include "src/core/implicit_contexts.hpp"

#include <unistd.h>

#include <cerrno>
#include <utility>

#include "pkcs11/call_gate.hpp"
#include "src/security/config.hpp"
#include "src/security/identity.hpp"

namespace mqsec::core {

ImplicitContexts::FileStamp ImplicitContexts::FileStamp::of(
    const std::filesystem::path& p) noexcept {
  FileStamp s;
  struct stat st {};
  if (p.empty()) {
    s.error = ENOENT;
  } else if (::stat(p.c_str(), &st) != 0) {
    s.error = errno;
  } else {
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    s.size = st.st_size;
    s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
    s.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec;
  }
  return s;
}

ImplicitContexts::ImplicitContexts(size_t max_entries, std::chrono::steady_clock::duration max_age)
    : max_entries_(max_entries == 0 ? 1 : max_entries), max_age_(max_age), pid_(::getpid()) {
  pkcs11::register_fork_mutex(mu_);
}

ImplicitContexts::~ImplicitContexts() { pkcs11::unregister_fork_lock(&mu_); }

bool ImplicitContexts::still_valid(const Entry& e, const std::filesystem::path& config_path,
                                   std::chrono::steady_clock::time_point now) const {
  return now - e.made < max_age_ && e.config_path == config_path &&
         FileStamp::of(config_path) == e.config && FileStamp::of(e.profile_file) == e.profile &&
         e.ctx->token_generation() == e.token_generation;
}

std::shared_ptr<security::SecurityContext> ImplicitContexts::get(std::span<const uint8_t> der) {
  Key key{security::thread_effective_uid(), security::thread_effective_gid(),
          security::Bytes(der.begin(), der.end())};
  const std::filesystem::path config_path = security::system_config_path();
  const pid_t pid = ::getpid();
  std::map<Key, std::shared_ptr<const Entry>> parents;  // a forked child's, destroyed unlocked
  std::shared_ptr<const Entry> found;
  uint64_t epoch;
  {
    std::lock_guard lock(mu_);
    if (pid_ != pid) {
      parents.swap(entries_);
      pid_ = pid;
    }
    epoch = epoch_;
    if (auto it = entries_.find(key); it != entries_.end()) found = it->second;
  }
  // In a child, each token forgets the parent's sessions (its fork handling, run by
  // generation()) before the last reference to it can close them.
  for (auto& [k, e] : parents) (void)e->ctx->token_generation();
  parents.clear();

  const auto now = std::chrono::steady_clock::now();
  if (found && found->epoch == epoch && still_valid(*found, config_path, now)) {
    return found->ctx;
  }

  // Build a new one. The configuration is stamped before it is read, so a change during the
  // build shows as a change on the next use; the profile's path is known only afterwards
  // (kMaxAge bounds what a change of it during the build could leave cached).
  auto fresh = std::make_shared<Entry>();
  Entry& e = *fresh;
  e.config_path = config_path;
  e.config = FileStamp::of(config_path);
  e.epoch = epoch;
  e.ctx = security::acquire_context(der, &e.profile_file);
  e.profile = FileStamp::of(e.profile_file);
  // Its age counts from now, not from the lookup: a build slower than max_age (a PIN pad, a
  // slow token) would otherwise store an entry already too old, and every send would rebuild.
  e.made = std::chrono::steady_clock::now();
  e.token_generation = e.ctx->token_generation();
  std::shared_ptr<security::SecurityContext> ctx = e.ctx;
  std::shared_ptr<const Entry> replaced;  // released unlocked
  {
    std::lock_guard lock(mu_);
    if (pid_ != pid || epoch_ != epoch) return ctx;  // cleared meanwhile: use it, keep nothing
    auto it = entries_.find(key);
    if (it == entries_.end() && entries_.size() >= max_entries_) {
      auto oldest = entries_.begin();
      for (auto i = entries_.begin(); i != entries_.end(); ++i) {
        if (i->second->made < oldest->second->made) oldest = i;
      }
      replaced = std::move(oldest->second);
      entries_.erase(oldest);
      it = entries_.end();
    }
    if (it != entries_.end()) {
      replaced = std::move(it->second);
      it->second = std::move(fresh);
    } else {
      entries_.emplace(std::move(key), std::move(fresh));
    }
  }
  return ctx;
}

void ImplicitContexts::forget(const security::SecurityContext* ctx) noexcept {
  std::shared_ptr<const Entry> dropped;
  std::lock_guard lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->second->ctx.get() == ctx) {
      dropped = std::move(it->second);
      entries_.erase(it);
      break;
    }
  }
}

void ImplicitContexts::clear() noexcept {
  std::map<Key, std::shared_ptr<const Entry>> dropped;
  std::lock_guard lock(mu_);
  ++epoch_;
  if (pid_ == ::getpid()) dropped.swap(entries_);
}

size_t ImplicitContexts::size() {
  std::lock_guard lock(mu_);
  return pid_ == ::getpid() ? entries_.size() : 0;
}

}  // namespace mqsec::core
