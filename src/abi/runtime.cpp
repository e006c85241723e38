// Runtime wiring: the store per directory and certificate registration.
#include "src/abi/runtime.hpp"

#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "pkcs11/error.hpp"
#include "src/security/log.hpp"
#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"
#include "src/security/possession.hpp"
#include "src/security/system_registry.hpp"

namespace mqsec::abi {

namespace {

// Stores and their writers, per process: a forked child must not use the parent's SQLite
// connection (SQLite forbids it) nor wait on locks a parent thread held at the fork, so the
// child builds its own and leaves the parent's alone (never destroyed: immortal).
std::mutex g_runtime_mu;
std::map<std::pair<pid_t, std::filesystem::path>, std::unique_ptr<transport::local::Store>>* g_stores =
    nullptr;
std::map<std::tuple<pid_t, std::filesystem::path, bool>, std::unique_ptr<transport::local::BatchWriter>>*
    g_writers = nullptr;

// Lock order: the Cryptoki call gate, runtime map, writers, stores (a writer thread holds only
// a store's lock while it commits, never a writer's). The gate comes first because a receiving
// thread inside a call scope (verifying) may wait for a store's lock: taking that lock first and
// then waiting for the scope to end would deadlock.
void runtime_prepare_fork() {
  pkcs11::fork_prepare();
  g_runtime_mu.lock();
  if (g_writers) {
    for (auto& [key, w] : *g_writers) w->prepare_fork();
    for (auto& [key, st] : *g_stores) st->prepare_fork();
  }
}
void runtime_parent_after_fork() {
  if (g_writers) {
    for (auto& [key, st] : *g_stores) st->after_fork();
    for (auto& [key, w] : *g_writers) w->parent_after_fork();
  }
  g_runtime_mu.unlock();
  pkcs11::fork_parent();
}
void runtime_child_after_fork() {
  if (g_writers) {
    for (auto& [key, st] : *g_stores) st->after_fork();
    for (auto& [key, w] : *g_writers) w->child_after_fork();
  }
  g_runtime_mu.unlock();
  pkcs11::fork_child();
}

void init_locked() {
  if (g_stores != nullptr) return;
  g_stores = new std::remove_pointer_t<decltype(g_stores)>();
  g_writers = new std::remove_pointer_t<decltype(g_writers)>();
  pthread_atfork(runtime_prepare_fork, runtime_parent_after_fork, runtime_child_after_fork);
  std::atexit([] { flush_express_writers(); });
}

transport::local::Store& store_locked(const std::filesystem::path& dir) {
  init_locked();
  auto& slot = (*g_stores)[{getpid(), dir}];
  if (!slot) slot = std::make_unique<transport::local::Store>(dir);
  return *slot;
}

}  // namespace

transport::local::Store& store_at(const std::filesystem::path& dir) {
  std::lock_guard lock(g_runtime_mu);
  return store_locked(dir);
}

transport::local::BatchWriter& writer_at(const std::filesystem::path& dir, bool durable) {
  std::lock_guard lock(g_runtime_mu);
  transport::local::Store& store = store_locked(dir);
  auto& slot = (*g_writers)[{getpid(), dir, durable}];
  if (!slot) {
    slot = std::make_unique<transport::local::BatchWriter>(
        store, [](const std::string& why) { log(LogLevel::Error, why); }, durable);
  }
  return *slot;
}

transport::local::BatchWriter& express_writer_at(const std::filesystem::path& dir) {
  return writer_at(dir, false);
}

transport::local::BatchWriter& recoverable_writer_at(const std::filesystem::path& dir) {
  return writer_at(dir, true);
}

void flush_express_writers() noexcept {
  std::vector<transport::local::BatchWriter*> writers;
  {
    std::lock_guard lock(g_runtime_mu);
    if (g_writers == nullptr) return;
    for (auto& [key, w] : *g_writers) {
      if (std::get<0>(key) == getpid()) writers.push_back(w.get());
    }
  }
  for (auto* w : writers) w->flush();
}

namespace {

struct RegistryCache {
  std::mutex mu;
  std::map<std::pair<transport::local::Store*, security::Bytes>,
           std::pair<std::optional<security::Bytes>, std::chrono::steady_clock::time_point>>
      entries;
};
RegistryCache& registry_cache() {
  static auto* c = [] {
    auto* cache = new RegistryCache();
    pkcs11::register_fork_mutex(cache->mu);  // a forked child may receive too
    return cache;
  }();
  return *c;
}

}  // namespace

std::optional<security::Bytes> registered_sid(transport::local::Store& store,
                                              const security::Bytes& cert_sha256) {
  auto now = std::chrono::steady_clock::now();
  RegistryCache& c = registry_cache();
  {
    std::lock_guard lock(c.mu);
    auto it = c.entries.find({&store, cert_sha256});
    if (it != c.entries.end() && now - it->second.second < std::chrono::seconds(2)) {
      return it->second.first;
    }
  }
  std::optional<security::Bytes> sid = store.certificate_sid(cert_sha256);
  std::lock_guard lock(c.mu);
  if (c.entries.size() >= 4096) c.entries.clear();
  c.entries[{&store, cert_sha256}] = {sid, now};
  return sid;
}

namespace {

// One cached view per registry directory, for the life of the process (a forked child keeps
// using it: it holds no descriptor, and its lock is a registered fork lock).
struct SystemRegistries {
  std::mutex mu;
  std::map<std::filesystem::path, std::unique_ptr<security::SystemRegistry>> by_dir;
};
SystemRegistries& system_registries() {
  static auto* r = [] {
    auto* regs = new SystemRegistries();
    pkcs11::register_fork_mutex(regs->mu);
    return regs;
  }();
  return *r;
}

}  // namespace

std::optional<security::Bytes> system_registered_sid(const std::filesystem::path& dir,
                                                     const security::Bytes& cert_sha256) {
  if (dir.empty()) return std::nullopt;
  SystemRegistries& r = system_registries();
  security::SystemRegistry* reg = nullptr;
  {
    std::lock_guard lock(r.mu);
    if (auto it = r.by_dir.find(dir); it != r.by_dir.end()) reg = it->second.get();
  }
  if (reg == nullptr) {
    // Built (and, when another thread was first, destroyed) outside r.mu: a SystemRegistry
    // registers its own fork lock, and the fork handlers take that registry's lock before r.mu.
    auto fresh = std::make_unique<security::SystemRegistry>(dir);
    {
      std::lock_guard lock(r.mu);
      auto& slot = r.by_dir[dir];
      if (!slot) slot = std::move(fresh);
      reg = slot.get();
    }
  }
  return reg->lookup(cert_sha256);
}

namespace {
std::string subject_of_der(std::span<const uint8_t> der) {
  security::X509Ptr cert = security::parse_der_strict(der);
  return cert ? security::subject_string(cert.get()) : std::string("(unparsable certificate)");
}
}  // namespace

Registered register_certificate(std::span<const uint8_t> der, bool if_not_exist,
                                const security::EnrollOptions& opts) {
  std::string profile_error;
  security::UserSetup setup = security::resolve_user(&profile_error);
  Registered out;
  out.sid = setup.user.sid.str();

  security::PersonalStore personal(setup);
  security::X509Ptr cert;
  if (der.empty()) {
    if (!profile_error.empty()) {
      log(LogLevel::Error, "cannot read the user profile: " + profile_error);
      throw Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE,
                  "cannot read the user profile: " + profile_error);
    }
    if (if_not_exist && !setup.profile.internal_certificate.empty()) {
      if (auto existing = personal.find_certificate(setup.profile.internal_certificate)) {
        // It exists: registered again below (idempotent), so a recreated store still knows it.
        out.code = MQ_INFORMATION_INTERNAL_USER_CERT_EXIST;
        out.der = std::move(*existing);
        out.object_uri = setup.profile.internal_certificate;
      }
    }
    if (out.der.empty()) {
      security::Enrolled e = security::enroll_internal(setup, personal, opts);
      out.der = std::move(e.der);
      out.object_uri = std::move(e.object_uri);
    }
  } else {
    cert = security::parse_der_strict(der);
    if (!cert) {
      throw Error(MQ_ERROR_INVALID_CERTIFICATE,
                  "the buffer is not exactly one DER-encoded X.509 certificate");
    }
    out.der.assign(der.begin(), der.end());
  }

  // Proof of possession, on every path (external, existing internal, newly enrolled): the
  // certificate's private key must be on the caller's token AND sign a fresh challenge that
  // the certificate verifies. Finding a key by CKA_ID or public key proves nothing by itself:
  // anyone can put someone else's certificate on their token next to a key of their own.
  if (!cert) {
    cert = security::parse_der_strict(out.der);
    if (!cert) {
      fail(MQ_ERROR_INVALID_CERTIFICATE, "cannot register the internal certificate '" +
                                             out.object_uri + "': the object on token '" +
                                             personal.token()->label() +
                                             "' is not exactly one DER-encoded X.509 certificate");
    }
  }
  try {
    auto key = personal.find_key_for(cert.get(), out.der);
    if (!key) {
      fail(MQ_ERROR_INVALID_CERTIFICATE,
           "cannot register '" + security::subject_string(cert.get()) +
               "': its private key is not in the caller's personal store (token '" +
               personal.token()->label() + "')");
    }
    security::prove_possession(personal, cert.get(), *key);
  } catch (const pkcs11::Error& e) {
    security::throw_mapped(e, MQ_ERROR_CORRUPTED_SECURITY_DATA, "certificate registration");
  }

  // Registrations are never last-writer-wins: a certificate bound to another SID stays bound
  // to it (MQ_ERROR_INVALID_CERTIFICATE, nothing changed). The store refuses the rebind inside
  // its transaction; the check before it gives the same answer with a clearer message.
  const security::Bytes digest = security::sha256(out.der);
  auto rebind_refused = [&](const std::string& detail) {
    std::string why = "cannot register '" + subject_of_der(out.der) + "' to " + out.sid +
                      ": it is registered to another SID" + detail +
                      " (a registration is never replaced; the owner of that SID keeps it)";
    log(LogLevel::Error, why);
    return Error(MQ_ERROR_INVALID_CERTIFICATE, why);
  };
  auto store_failed = [](const Error& e) {
    log(LogLevel::Error, std::string("certificate registry: ") + e.what());
    return Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE, std::string("certificate registry: ") + e.what());
  };
  transport::local::Store* registry = nullptr;
  std::optional<security::Bytes> bound;
  try {
    registry = &store_at(setup.config.store_path);
    bound = registry->certificate_sid(digest);
  } catch (const Error& e) {
    throw store_failed(e);
  }
  if (bound && *bound != setup.user.sid.bytes()) {
    std::string owner;
    try {
      owner = " (" + security::Sid::from_bytes(*bound).str() + ")";
    } catch (const std::invalid_argument&) {
    }
    throw rebind_refused(owner);
  }
  try {
    registry->bind_certificate(digest, out.der, setup.user.sid.bytes(), setup.user.uid);
  } catch (const Error& e) {
    // The store's own refusal: a registration to another SID committed since the check.
    if (e.code() == MQ_ERROR_INVALID_CERTIFICATE)
      throw rebind_refused(std::string(": ") + e.what());
    throw store_failed(e);
  }
  {
    std::lock_guard lock(registry_cache().mu);
    registry_cache().entries.clear();  // this process sees its own registration at once
  }
  return out;
}

}  // namespace mqsec::abi
