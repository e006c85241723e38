// Runtime wiring: the store per directory and certificate registration.
#include "src/abi/runtime.hpp"

#include <pthread.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

#include "mqsec/error.hpp"
#include "src/security/log.hpp"
#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"

namespace mqsec::abi {

queue::Store& store_at(const std::filesystem::path& dir) {
  static std::mutex mu;
  // Immortal: stores are used by other threads until exit.
  static auto* stores = new std::map<std::filesystem::path, std::unique_ptr<queue::Store>>();
  std::lock_guard lock(mu);
  auto& slot = (*stores)[dir];
  if (!slot) slot = std::make_unique<queue::Store>(dir);
  return *slot;
}

namespace {

std::mutex g_writers_mu;
// Immortal, like the stores they write to.
std::map<std::filesystem::path, std::unique_ptr<queue::BatchWriter>>* g_writers = nullptr;

void writers_prepare_fork() {
  g_writers_mu.lock();
  if (g_writers) {
    for (auto& [dir, w] : *g_writers) w->prepare_fork();
  }
}
void writers_parent_after_fork() {
  if (g_writers) {
    for (auto& [dir, w] : *g_writers) w->parent_after_fork();
  }
  g_writers_mu.unlock();
}
void writers_child_after_fork() {
  if (g_writers) {
    for (auto& [dir, w] : *g_writers) w->child_after_fork();
  }
  g_writers_mu.unlock();
}

}  // namespace

queue::BatchWriter& express_writer_at(const std::filesystem::path& dir) {
  queue::Store& store = store_at(dir);
  std::lock_guard lock(g_writers_mu);
  if (g_writers == nullptr) {
    g_writers = new std::map<std::filesystem::path, std::unique_ptr<queue::BatchWriter>>();
    pthread_atfork(writers_prepare_fork, writers_parent_after_fork, writers_child_after_fork);
    std::atexit([] { flush_express_writers(); });
  }
  auto& slot = (*g_writers)[dir];
  if (!slot) {
    slot = std::make_unique<queue::BatchWriter>(
        store, [](const std::string& why) { log(LogLevel::Error, why); });
  }
  return *slot;
}

void flush_express_writers() noexcept {
  std::vector<queue::BatchWriter*> writers;
  {
    std::lock_guard lock(g_writers_mu);
    if (g_writers == nullptr) return;
    for (auto& [dir, w] : *g_writers) writers.push_back(w.get());
  }
  for (auto* w : writers) w->flush();
}

Registered register_certificate(std::span<const uint8_t> der, bool if_not_exist,
                                const security::EnrollOptions& opts) {
  std::string profile_error;
  security::UserSetup setup = security::resolve_user(&profile_error);
  Registered out;
  out.sid = setup.user.sid.str();

  security::PersonalStore personal(setup);
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
    security::X509Ptr cert = security::parse_der_strict(der);
    if (!cert) {
      throw Error(MQ_ERROR_INVALID_CERTIFICATE,
                  "the buffer is not exactly one DER-encoded X.509 certificate");
    }
    if (!personal.find_key_for(cert.get(), der)) {
      std::string why = "cannot register '" + security::subject_string(cert.get()) +
                        "': its private key is not in the caller's personal store (token '" +
                        personal.token()->label() + "')";
      log(LogLevel::Error, why);
      throw Error(MQ_ERROR_INVALID_CERTIFICATE, why);
    }
    out.der.assign(der.begin(), der.end());
  }

  try {
    queue::Store& registry = store_at(setup.config.store_path);
    registry.bind_certificate(security::sha256(out.der), out.der, setup.user.sid.bytes(),
                              setup.user.uid);
  } catch (const Error& e) {
    log(LogLevel::Error, std::string("certificate registry: ") + e.what());
    throw Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE, std::string("certificate registry: ") + e.what());
  }
  return out;
}

}  // namespace mqsec::abi
