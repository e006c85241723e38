// Forwarding a store's outgoing queues to the broker (docs/remote.md, "Outgoing queues"): the
// broker settings of the configuration, and the loop that `mqsec agent` and the background
// forwarder of a sending process (Runtime) run.
#pragma once

#include <filesystem>
#include <mutex>
#include <stop_token>

#include "src/security/config.hpp"
#include "transport/amqp/settings.hpp"

namespace mqsec::core {

// The broker settings of [broker] (password read with read_secret_source). Throws
// mqsec::Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, "no [broker] is configured: ...") when absent,
// and mqsec::Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, "broker password ...") when the password
// source is unusable (the message names the source, never the password).
transport::amqp::BrokerSettings broker_settings(const security::SystemConfig& cfg);

// Runs the forwarder over the outgoing queues of the store cfg.store_path until `stop` is
// requested (used by `mqsec agent` and by the background forwarder of sending processes).
// At most one forwarder per store at a time across processes (an flock on the file
// "forwarder.lock" in the store directory); while another process holds it, this waits
// (polling, stop-aware) to take over. Broker problems are logged (security/log.hpp) and retried
// with a back-off; returns when stop is requested. Throws mqsec::Error only for a configuration
// that cannot work (no [broker], unusable password source, store not openable).
void forward_outgoing(const security::SystemConfig& cfg, std::stop_token stop);

// Whether a forwarder (any process: mqsec agent, a sending process) holds the forwarder lock of
// `store_dir` now. What it is doing (connected, waiting for the broker) is not known outside it.
bool forwarder_running(const std::filesystem::path& store_dir);

// For the Runtime (background forwarding, fork handling):
// Whether a forward_outgoing of this process serves (or waits to serve) `store_dir`.
bool forwarding_here(const std::filesystem::path& store_dir);
// The leaf lock of that record; the runtime registers it with the fork locks.
std::mutex& forwarding_active_mutex() noexcept;
// In a forked child (with forwarding_active_mutex held across the fork): closes the child's copies
// of the forwarder lock files this process held (an flock belongs to the open file description the
// child shares, so a child that outlives its parent would keep the lock) and forgets the parent's
// forwarders. Async-signal-safe apart from clearing a vector.
void forwarding_child_after_fork() noexcept;

}  // namespace mqsec::core
