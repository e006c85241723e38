// The one runtime object of a process: everything libmqrt and the mqsec command keep between
// calls has an owner here (libmqrt has no init call, so it is reached through runtime(), the
// only process-wide singleton of the core). It owns:
//   - the local transport's stores and batch writers (per process and store directory),
//   - the verifier (its certificate cache),
//   - the handle tables: security contexts, open queues and cursors,
//   - the pending asynchronous receives and their events,
//   - the certificate-registry caches (the user registry's, the system registries'),
//   - the message-id generator,
//   - the background forwarders of this process (one per store, started by the first send to a
//     queue of another machine; see forwarding.hpp),
// and gives the current system configuration. It installs the core's one pthread_atfork handler
// (the Cryptoki call gate keeps its own, registered after the first module is loaded, and the
// two nest); see docs/architecture.md for why, and for the lock order they keep.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <utility>

#include "src/core/async_receive.hpp"
#include "src/core/batch_signing.hpp"
#include "src/core/implicit_contexts.hpp"
#include "src/core/locate.hpp"
#include "src/core/offering.hpp"
#include "src/core/queue.hpp"
#include "src/security/config.hpp"
#include "src/security/context.hpp"
#include "src/security/handle_table.hpp"
#include "src/security/message_auth.hpp"
#include "src/security/system_registry.hpp"
#include "src/transport/local/local_transport.hpp"

namespace mqsec::core {

class Runtime {
 public:
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // The system configuration as it is now (MQSEC_CONFIG, re-read on each call: an
  // administrator's change applies to queues opened afterwards). Throws
  // mqsec::Error(MQ_ERROR_SERVICE_NOT_AVAILABLE) when it cannot be read.
  security::SystemConfig config() const;

  security::Verifier& verifier() noexcept { return verifier_; }
  security::HandleTable<security::SecurityContext>& contexts() noexcept { return contexts_; }
  // The contexts of sends without PROPID_M_SECURITY_CONTEXT (implicit_contexts.hpp).
  ImplicitContexts& implicit_contexts() noexcept { return implicit_contexts_; }
  // The messages this process's receivers are offering now (offering.hpp).
  Offering& offering() noexcept { return offering_; }
  security::HandleTable<Queue>& queues() noexcept { return queues_; }
  security::HandleTable<Cursor>& cursors() noexcept { return cursors_; }
  security::HandleTable<QueueQuery>& queries() noexcept { return queries_; }  // MQLocateBegin
  transport::local::Stores& stores() noexcept { return stores_; }
  // The batch-signing pipeline's signers (batch_signing.hpp).
  BatchSigners& batch_signers() noexcept { return batch_signers_; }
  // Pending asynchronous receives and the events they signal (async_receive.hpp).
  AsyncReceives& async_receives() noexcept { return async_receives_; }

  // The transport of the queue `d` names in the queue manager whose store is `store_dir`,
  // with the queue's settings; nullopt when there is no such (local) queue. A local destination
  // is its queue of the store. A remote destination (another machine) is its outgoing queue in
  // the store (outgoing.hpp; created on first use), whose sends start this process's background
  // forwarder for the store; throws mqsec::Error(MQ_ERROR_SERVICE_NOT_AVAILABLE) when no
  // [broker] is configured (a message for another machine could never leave).
  struct Resolved {
    transport::QueueInfo info;
    std::shared_ptr<transport::QueueTransport> transport;
  };
  std::optional<Resolved> resolve(const Destination& d, const std::filesystem::path& store_dir);

  // Starts, once per process and store (cfg.store_path), a thread running forward_outgoing(cfg),
  // unless a forward_outgoing of this process serves that store already (mqsec agent). It never
  // keeps the process alive: stop_background_forwarders runs at exit; a forked child has none
  // (and starts its own on its first remote send). Errors are logged, not thrown.
  void start_background_forwarder(const security::SystemConfig& cfg) noexcept;
  // Asks this process's background forwarders to stop and waits at most `bound` for them (at
  // exit; a forwarder that does not stop in time is left running, detached). Messages not yet
  // forwarded stay in their outgoing queues for the next process or mqsec agent.
  void stop_background_forwarders(std::chrono::milliseconds bound) noexcept;

  // The SID a certificate (by SHA-256) is registered to in the user registry of the store
  // under `store_dir`, cached for two seconds per process: MSMQ applies a new registration to
  // processes started afterwards; we apply it within two seconds, and at once in the process
  // that registered it (forget_registrations).
  std::optional<security::Bytes> registered_sid(const std::filesystem::path& store_dir,
                                                const security::Bytes& cert_sha256);
  void forget_registrations();
  // The SID the root-owned system registry under `dir` ([trust] registry) binds a
  // certificate to; nullopt when it has no entry, or the registry is missing or not safely
  // owned (then it is ignored and a warning logged).
  std::optional<security::Bytes> system_registered_sid(const std::filesystem::path& dir,
                                                       const security::Bytes& cert_sha256);

  // A fresh MSMQ message id: this process's random 16-byte GUID and a 32-bit counter (no lock
  // on the send path). A forked child draws a new GUID, so parent and child never share ids.
  std::array<uint8_t, 20> new_message_id();

 private:
  friend Runtime& runtime();
  Runtime();
  ~Runtime() = delete;  // immortal: forked children, atexit handlers and detached threads use it

  static void prepare_fork() noexcept;
  static void parent_after_fork() noexcept;
  static void child_after_fork() noexcept;
  void renew_message_ids();

  // First: takes the fork locks over from the Cryptoki call gate before any member below
  // registers one (which would otherwise install the gate's handler before any module is
  // loaded; see pkcs11/call_gate.hpp).
  const bool fork_adopted_;
  transport::local::Stores stores_;
  BatchSigners batch_signers_;
  AsyncReceives async_receives_;
  security::Verifier verifier_;
  security::HandleTable<security::SecurityContext> contexts_;
  ImplicitContexts implicit_contexts_;
  Offering offering_;
  security::HandleTable<Queue> queues_;
  security::HandleTable<Cursor> cursors_;
  security::HandleTable<QueueQuery> queries_;

  // Leaf locks (registered with the call gate's fork locks).
  std::mutex registry_cache_mu_;
  // Keyed by the directory's string, then the certificate's digest: a lookup (one per
  // verified message) copies neither. At most 4096 digests per directory.
  struct RegisteredSid {
    std::optional<security::Bytes> sid;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, std::map<security::Bytes, RegisteredSid>, std::less<>> registry_cache_;
  std::mutex system_registries_mu_;
  std::map<std::string, std::unique_ptr<security::SystemRegistry>, std::less<>> system_registries_;

  // Background forwarders, per process and store (a forked child's map holds its parent's
  // entries, never touched there). Leaf lock, registered with the fork locks.
  struct BackgroundForwarder {
    std::jthread thread;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  std::mutex forwarders_mu_;
  std::map<std::pair<pid_t, std::filesystem::path>, std::shared_ptr<BackgroundForwarder>>
      forwarders_;

  std::array<uint8_t, 16> message_guid_{};
  std::atomic<uint32_t> message_counter_{0};
};

// The process's runtime, created on first use.
Runtime& runtime();

}  // namespace mqsec::core
