// The `mqsec` command: enrollment, identity, diagnostics, security contexts and queues from
// the shell. Verbs live in security_commands.cpp and queue_commands.cpp; this file parses the
// command line and turns failures into one `mqsec: ...` line and an exit code (docs/cli.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <new>

#include "mqsec/error.hpp"
#include "src/cli/commands.hpp"
#include "src/core/runtime.hpp"
#include "src/cli/output.hpp"

namespace {

using namespace mqsec;

void print_failure(const std::string& what, const std::string& reason, HRESULT code,
                   const std::string& hint) {
  std::fflush(stdout);  // keep what a verb printed before its failure in order
  std::cerr << "mqsec: " << what << ": " << reason;
  if (code != MQ_OK) {  // failures that are not an MQ call's (e.g. a missing program) have none
    std::cerr << " (" << cli::hresult_name(code) << ' ' << cli::hresult_hex(code) << ')';
  }
  std::cerr << '\n';
  if (!hint.empty()) std::cerr << "hint: " << hint << '\n';
}

}  // namespace

int main(int argc, char** argv) {
  mqsec::core::runtime();  // first: it installs the core's fork handler
  CLI::App app{"mqsec: MSMQ message authentication with keys that stay on a PKCS#11 token",
               "mqsec"};
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 success, 1 operation failed, 2 usage error, 3 configuration error.\n"
      "The system configuration is $MQSEC_CONFIG (default /etc/mqsec/mqsec.toml). "
      "See docs/cli.md.");
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    // The verb (and sub-verb) being parsed, for a precise hint.
    std::string verb;
    for (const CLI::App* sub = a; sub != nullptr;) {
      auto parsed = sub->get_subcommands();
      sub = parsed.empty() ? nullptr : parsed.front();
      if (sub != nullptr) verb += sub->get_name() + " ";
    }
    return std::string("mqsec: usage: ") + e.what() + "\nhint: run `mqsec " + verb + "--help`\n";
  });

  cli::Action action;
  cli::add_security_commands(app, action);
  cli::add_queue_commands(app, action);
  cli::add_registry_commands(app, action);
  cli::add_bench_command(app, action);
  cli::add_agent_command(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help, or the usage error
    return rc == 0 ? cli::kExitOk : cli::kExitUsage;
  }
  if (!action) return cli::kExitUsage;  // unreachable: require_subcommand(1)

  try {
    return action();
  } catch (const cli::Failure& f) {
    print_failure(f.what_failed(), f.reason(), f.code(), f.hint());
    return f.exit_code();
  } catch (const Error& e) {
    // Verbs wrap the runtime's errors with what they were doing; this is the safety net.
    print_failure("operation failed", e.what(), e.code(), cli::default_hint(e.code()));
    return cli::kExitFailed;
  } catch (const std::bad_alloc&) {
    print_failure("operation failed", "out of memory", MQ_ERROR_INSUFFICIENT_RESOURCES, {});
    return cli::kExitFailed;
  } catch (const std::exception& e) {
    print_failure("operation failed", e.what(), MQ_ERROR, {});
    return cli::kExitFailed;
  }
}
