// `mqsec bench`: runs the benchmark program (bench/, built as mqsec-bench), which provisions
// its own temporary SoftHSM token (or uses the token of --token) and measures signing and
// messaging against the raw token.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "src/cli/commands.hpp"
#include "src/cli/output.hpp"

namespace mqsec::cli {
namespace {

namespace fs = std::filesystem;

// $MQSEC_BENCH_PROGRAM, else next to this executable (installed: same bin dir) or in the
// build tree (build/src/cli/mqsec -> build/bench/mqsec-bench).
std::string find_bench() {
  // secure_getenv: a setuid/setgid mqsec must not run a program its caller names.
  if (const char* p = secure_getenv("MQSEC_BENCH_PROGRAM"); p && *p) return p;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path candidate :
         {self.parent_path() / "mqsec-bench",
          self.parent_path().parent_path().parent_path() / "bench" / "mqsec-bench"}) {
      if (fs::exists(candidate, ec)) return candidate.string();
    }
  }
  return "mqsec-bench";  // from PATH
}

}  // namespace

void add_bench_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "bench",
      "Measure signing and messaging speed on a temporary SoftHSM token, or on --token URI");
  auto quick = std::make_shared<bool>(false);
  auto json = std::make_shared<std::string>();
  auto chart = std::make_shared<std::string>();
  auto token = std::make_shared<std::string>();
  auto module = std::make_shared<std::string>();
  auto threads = std::make_shared<std::string>();
  auto cases = std::make_shared<std::string>();
  auto seconds = std::make_shared<std::string>();
  auto sign_delay = std::make_shared<std::string>();
  cmd->add_flag("--quick", *quick, "Short run (under a minute); numbers are rougher");
  cmd->add_option("--json", *json, "Write one JSON record per (key, threads, case) to FILE");
  cmd->add_option("--chart", *chart, "Write a PNG chart of the ratios to FILE (needs gnuplot)");
  cmd->add_option("--token", *token,
                  "Measure on this token instead (a PKCS#11 URI with its pin-source): its own "
                  "certificates and keys, nothing written to it; local cases only")
      ->type_name("URI");
  cmd->add_option("--module", *module, "The PKCS#11 module of --token, if the URI names none")
      ->type_name("PATH");
  cmd->add_option("--threads", *threads,
                  "Thread counts of the local cases, comma-separated (default 1,2), e.g. 1,4")
      ->type_name("LIST");
  cmd->add_option("--cases", *cases,
                  "Only these cases, comma-separated (e.g. raw_sign,signed_send)")
      ->type_name("LIST");
  cmd->add_option("--seconds", *seconds, "Time per case (default 2, --quick 0.3)")->type_name("S");
  cmd->add_option("--sign-delay-ms", *sign_delay,
                  "Slow the bench's own token down: every C_Sign MS longer (through the test "
                  "suite's fault module); runs the batch-signing cases against it")
      ->type_name("MS");
  cmd->callback([&action, quick, json, chart, token, module, threads, cases, seconds, sign_delay] {
    action = [quick, json, chart, token, module, threads, cases, seconds, sign_delay]() -> int {
      std::string program = find_bench();
      std::vector<std::string> args{program};
      if (*quick) args.push_back("--quick");
      if (!json->empty()) args.insert(args.end(), {"--json", *json});
      if (!chart->empty()) args.insert(args.end(), {"--chart", *chart});
      if (!token->empty()) args.insert(args.end(), {"--token", *token});
      if (!module->empty()) args.insert(args.end(), {"--module", *module});
      if (!threads->empty()) args.insert(args.end(), {"--threads", *threads});
      if (!cases->empty()) args.insert(args.end(), {"--cases", *cases});
      if (!seconds->empty()) args.insert(args.end(), {"--seconds", *seconds});
      if (!sign_delay->empty()) args.insert(args.end(), {"--sign-delay-ms", *sign_delay});
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(program.c_str(), argv.data());
      throw Failure("bench", "cannot run '" + program + "': " + std::strerror(errno), MQ_OK,
                    "build the benchmark (cmake --build build --target mqsec-bench) or set "
                    "MQSEC_BENCH_PROGRAM");
    };
  });
}

}  // namespace mqsec::cli
