// `mqsec agent`: this machine's long-running forwarder and receiver for remote queues
// (docs/remote.md, docs/operations.md "The agent"). Three threads:
//   - arrival: transport::amqp::Inbound consumes this machine's broker queue (mqsec.in.<machine>)
//     and hands each message to core::Arrivals (verify with the destination queue's policy,
//     dedupe by the signed message id, store; or reject, record and NACK);
//   - forwarding: core::forward_outgoing empties this store's outgoing queues into the broker;
//   - remote reads: core::serve_remote_reads answers readers on other machines (MQOpenQueue
//     with receive or peek access on a queue of this one) for the queues [agent] remote-read
//     names, and refuses every other queue (MQ_ERROR_ACCESS_DENIED);
//   - expiry: core::ExpirySweeper takes out expired messages every [agent] expiry-sweep-seconds
//     (none when 0), and reads the whole store again every kRescanEvery.
// SIGTERM and SIGINT are blocked in every thread and taken with sigtimedwait by the main thread
// (no signal handler, no work in signal context); it requests a stop through a
// std::stop_source, which the loops watch, and joins them.
//
// Exit codes: 0 stopped by SIGTERM/SIGINT; 1 a loop failed for good (the store cannot be
// opened, ...); 2 usage; 3 configuration (unreadable or malformed file, no [broker], no valid
// machine name, unusable broker password source or URL).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <exception>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include "mqsec/error.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/output.hpp"
#include "src/core/arrival.hpp"
#include "src/core/expiry_sweep.hpp"
#include "src/core/forwarding.hpp"
#include "src/core/remote_read.hpp"
#include "src/core/runtime.hpp"
#include "src/security/log.hpp"
#include "transport/amqp/inbound.hpp"
#include "transport/amqp/settings.hpp"

namespace mqsec::cli {
namespace {

namespace amqp = transport::amqp;
using namespace std::chrono_literals;

// How often the agent logs its counters (when they changed).
constexpr auto kStatusEvery = 60s;
// How often the expiry sweep forgets what it read and reads the whole store again (messages that
// came back under an old seq: a transaction's receive put back by its abort).
constexpr auto kRescanEvery = 600s;

// The expiry thread: a sweep every `every`, until `stop`. A failed pass (the store busy, say) is
// logged and tried again at the next one.
void sweep_expired(const security::SystemConfig& cfg, std::chrono::seconds every,
                   std::stop_token stop) {
  core::ExpirySweeper sweeper(cfg);
  auto next = std::chrono::steady_clock::now();
  auto next_rescan = next + kRescanEvery;
  while (!stop.stop_requested()) {
    const auto now = std::chrono::steady_clock::now();
    if (now < next) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(next - now, 200ms));
      continue;
    }
    next = now + every;
    if (now >= next_rescan) {
      next_rescan = now + kRescanEvery;
      sweeper.rescan();
    }
    try {
      const core::SweepCounts c = sweeper.sweep(static_cast<int64_t>(std::time(nullptr)));
      if (c.expired > 0) {
        log(LogLevel::Info, "agent: expired " + std::to_string(c.expired) + " message" +
                                (c.expired == 1 ? "" : "s") + " (time to be received)");
      }
    } catch (const std::exception& e) {
      log(LogLevel::Warning, std::string("agent: expiry sweep failed: ") + e.what());
    }
  }
}

[[noreturn]] void config_failure(const std::string& reason, HRESULT code, const std::string& hint) {
  throw Failure("agent", reason, code, hint, kExitConfig);
}

// The first fatal failure of a loop (the other loop is stopped, the agent exits 1).
struct Fatal {
  std::mutex mu;
  std::optional<std::string> reason;
  void set(const std::string& r) {
    std::lock_guard lock(mu);
    if (!reason) reason = r;
  }
  std::optional<std::string> get() {
    std::lock_guard lock(mu);
    return reason;
  }
};

int run_agent() {
  security::SystemConfig cfg = load_config_or_fail();
  if (!cfg.broker) {
    config_failure(
        "no [broker] is configured in " +
            (cfg.source.empty() ? std::string("the system configuration") : cfg.source.string()) +
            ": the agent has nothing to connect to",
        MQ_ERROR_SERVICE_NOT_AVAILABLE,
        "add a [broker] section (url, user, password-source; docs/configuration.md) "
        "or do not run the agent on a machine without remote queues");
  }
  const std::string machine = cfg.machine.name;
  if (machine.empty()) {
    config_failure("this machine has no valid name (the host name is not a valid machine name)",
                   MQ_ERROR_ILLEGAL_FORMATNAME, "set [machine] name in the system configuration");
  }
  amqp::BrokerSettings settings;
  try {
    settings = core::broker_settings(cfg);
    amqp::parse_broker_url(settings.url);
  } catch (const Error& e) {
    config_failure(e.what(), e.code(), "check [broker] in the system configuration");
  }

  // The store first: a store that cannot be opened (owner, mode) is reported before anything
  // runs (exit 1), and a new store directory exists before the forwarder takes its lock there.
  core::runtime().stores().store_at(cfg.store_path);

  // Block the stop signals before any thread starts: every thread inherits the mask, so only
  // the main thread's sigtimedwait takes them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (int rc = pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr); rc != 0) {
    throw Failure("agent", std::string("cannot block SIGTERM/SIGINT: ") + std::strerror(rc), MQ_OK);
  }

  core::Arrivals arrivals(cfg);
  core::RemoteReads reads(cfg);
  amqp::InboundOptions options;
  options.machine = machine;
  options.log = [](std::string_view line) { log(LogLevel::Info, std::string(line)); };
  options.on_malformed = [](const amqp::MalformedMessage& m) {
    log(LogLevel::Warning, "agent: dropped a broker message that is not an mqsec message (id '" +
                               m.message_id.substr(0, 64) + "', from '" +
                               m.source_machine.substr(0, 64) + "', " +
                               std::to_string(m.body_size) + " bytes): " + m.reason);
  };
  std::optional<amqp::Inbound> inbound;
  try {
    inbound.emplace(settings, options,
                    [&arrivals](const amqp::InboundMessage& m) { return arrivals.deliver(m); });
  } catch (const Error& e) {
    config_failure(e.what(), e.code(), "check [machine] name and [broker] url");
  }

  std::string served;
  for (const std::string& q : cfg.agent.remote_read) served += (served.empty() ? "" : ", ") + q;
  log(LogLevel::Info, "agent: machine '" + machine + "', broker " + settings.url + ", store " +
                          cfg.store_path.string() + ", remote reads of " +
                          (served.empty() ? std::string("no queue") : served) + ": started (pid " +
                          std::to_string(::getpid()) + ")");

  std::stop_source stop;
  Fatal fatal;
  std::jthread receiver([&] {
    try {
      inbound->run(stop.get_token());
    } catch (const std::exception& e) {
      fatal.set(std::string("arrival: ") + e.what());
      stop.request_stop();
    }
  });
  std::jthread forwarder([&] {
    try {
      core::forward_outgoing(cfg, stop.get_token());
    } catch (const std::exception& e) {
      fatal.set(std::string("forwarding: ") + e.what());
      stop.request_stop();
    }
  });

  std::jthread remote_reads([&] {
    try {
      core::serve_remote_reads(cfg, reads, stop.get_token());
    } catch (const std::exception& e) {
      fatal.set(std::string("remote reads: ") + e.what());
      stop.request_stop();
    }
  });

  std::jthread expiry;
  if (cfg.agent.expiry_sweep_seconds > 0) {
    expiry = std::jthread([&] {
      sweep_expired(cfg, std::chrono::seconds(cfg.agent.expiry_sweep_seconds), stop.get_token());
    });
  }

  core::ArrivalCounts last{};
  core::RemoteReadCounts last_reads{};
  auto next_status = std::chrono::steady_clock::now() + kStatusEvery;
  auto status_line = [&] {
    const core::ArrivalCounts c = arrivals.counts();
    const amqp::InboundStatus s = inbound->status();
    const core::RemoteReadCounts r = reads.counts();
    return "stored " + std::to_string(c.stored) + ", duplicates " + std::to_string(c.duplicates) +
           ", rejected " + std::to_string(c.rejected) + ", retried " + std::to_string(c.retried) +
           ", not mqsec " + std::to_string(s.malformed) + ", remote reads " +
           std::to_string(r.served) + " (refused " + std::to_string(r.denied) + ", failed " +
           std::to_string(r.failed) + "), connects " + std::to_string(s.connects) +
           (s.connected ? " (connected)" : " (not connected)");
  };
  int signal_taken = 0;
  while (!stop.stop_requested()) {
    const timespec slice{0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &slice);
    if (sig == SIGTERM || sig == SIGINT) {
      signal_taken = sig;
      break;
    }
    if (std::chrono::steady_clock::now() >= next_status) {
      next_status += kStatusEvery;
      const core::ArrivalCounts c = arrivals.counts();
      const core::RemoteReadCounts r = reads.counts();
      if (c.stored != last.stored || c.duplicates != last.duplicates ||
          c.rejected != last.rejected || c.retried != last.retried ||
          r.served != last_reads.served || r.denied != last_reads.denied ||
          r.failed != last_reads.failed) {
        log(LogLevel::Info, "agent: " + status_line());
        last = c;
        last_reads = r;
      }
    }
  }
  if (signal_taken != 0) {
    log(LogLevel::Info,
        std::string("agent: ") + (signal_taken == SIGTERM ? "SIGTERM" : "SIGINT") + ": stopping");
  }
  stop.request_stop();
  receiver.join();
  forwarder.join();
  remote_reads.join();
  if (expiry.joinable()) expiry.join();
  log(LogLevel::Info, "agent: stopped; " + status_line());
  if (auto reason = fatal.get()) {
    throw Failure("agent", *reason, MQ_ERROR_SERVICE_NOT_AVAILABLE,
                  "see the log above (journalctl -u mqsec-agent, or MQSEC_LOG=stderr)");
  }
  return kExitOk;
}

}  // namespace

void add_agent_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "agent",
      "Run this machine's forwarder and receiver for remote queues, and serve remote reads of "
      "the queues [agent] remote-read names, until SIGTERM/SIGINT (needs [broker]; logs to "
      "MQSEC_LOG, default syslog)");
  cmd->footer(
      "Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed while running, 3 configuration "
      "error (no [broker], bad machine name, broker password source). See "
      "docs/operations.md.");
  cmd->callback([&action] { action = [] { return run_agent(); }; });
}

}  // namespace mqsec::cli
