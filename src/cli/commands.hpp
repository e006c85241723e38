// The verbs of the `mqsec` command, registered on a CLI11 app. Each verb's parse callback only
// stores what to run in `action`; main() runs it after parsing, so that CLI11 reports usage
// errors (exit 2) and a verb's failures are reported as cli::Failure (exit 1 or 3).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace mqsec::cli {

// Runs a verb; returns the exit code, or throws cli::Failure / mqsec::Error.
using Action = std::function<int()>;

// enroll, register, whoami, doctor, context.
void add_security_commands(CLI::App& app, Action& action);
// queue create|delete|list, send, receive, rejected.
void add_queue_commands(CLI::App& app, Action& action);
// registry add|remove|list (the root-owned system registry).
void add_registry_commands(CLI::App& app, Action& action);
// bench (runs bench/'s mqsec-bench).
void add_bench_command(CLI::App& app, Action& action);
// agent (this machine's forwarder and receiver for remote queues).
void add_agent_command(CLI::App& app, Action& action);

// CLI11 validator for a SID in text form: "" when valid, else what is wrong.
std::string validate_sid(const std::string& s);

}  // namespace mqsec::cli
