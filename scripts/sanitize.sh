#!/usr/bin/env bash
# Sanitizer runs (issue 5): builds mqsec with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/ and runs the whole test suite there, then with ThreadSanitizer into build-tsan/ and
# runs the concurrency tests (threads, forks, several processes) there. Under ASan the remote
# end-to-end test streams 2,000 messages instead of 10,000 (MQSEC_REMOTE_MESSAGES; the normal
# suite runs the full 10,000), the two exactly-once tests send 8 x 2,000 messages under ASan and
# 8 x 1,000 under TSan instead of 8 x 5,000 (MQSEC_REL_MESSAGES; the instrumented code paths are
# the same at any count, and the normal suite runs the full load), and the broker fixture's own
# tests (BrokerNode.*: shell scripts and RabbitMQ, none of our instrumented code) are left to the
# normal suite. Any sanitizer report fails the run. Suppressions live in tests/sanitizers/ and
# cover SoftHSM only. What is left out of the instrumentation, for the build's time: UBSan's
# null check wherever ASan is on (CMakeLists.txt), UBSan and ASan's use-after-scope in test code
# (tests/CMakeLists.txt); each place says why.
#
#   scripts/sanitize.sh            both
#   scripts/sanitize.sh asan|tsan  one of them
# Build directories: $MQSEC_ASAN_DIR and $MQSEC_TSAN_DIR (default build-asan/, build-tsan/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
jobs=$(nproc)
supp=$root/tests/sanitizers

# The concurrency tests, by GoogleTest name (ctest -R), plus anything labelled "concurrency";
# test_amqp_transport is the AMQP client's own threads (Proton's container thread, the forwarder
# and inbound loops) against a private broker.
concurrency='test_amqp_transport|CallGate|Concurren|Thread|Fork|Parallel|ManyThreads|TwoProcesses|Processes|Race|Reliability|BatchWriter|BatchPipeline|HandleTable|ExactlyOnce|OcspAnswersAreCached'

# -O1 -g1 rather than RelWithDebInfo's -O2 -g: the sanitizers' own recommendation (-O1), line
# tables and function names for the reports' stack traces (-g1), and a much quicker build of the
# instrumented code (the -O2 -g ASan+UBSan build took the largest share of CI's time).
# MQSEC_UNITY=ON (CMakeLists.txt): each library's files compiled in batches, which parses the
# headers once per batch; the normal build (scripts/build.sh) stays file by file, so that every
# file still compiles on its own.
configure() {  # <dir> <sanitizers>
  cmake -S "$root" -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQSEC_WERROR=ON -DMQSEC_SANITIZE="$2" \
    -DMQSEC_UNITY=ON -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DMQSEC_BENCH=OFF \
    -DMQSEC_LINKER="$("$root/scripts/linker.sh" "$1")" >/dev/null
}

configure_and_build() {  # <dir> <sanitizers>
  configure "$1" "$2"
  cmake --build "$1" -j"$jobs"
}

# How many tests `ctest -R $concurrency` plus `-L concurrency` select in a build directory.
count_concurrency_tests() {  # <dir>
  local by_name by_label
  by_name=$(ctest --test-dir "$1" -N -R "$concurrency" | sed -n 's/^Total Tests: //p')
  by_label=$(ctest --test-dir "$1" -N -L concurrency | sed -n 's/^Total Tests: //p')
  echo $((by_name + by_label))
}

# The TSan build: only what the concurrency tests need when the normal build directory (built
# by scripts/test.sh just before) says which test programs hold them (scripts/tsan-targets.py);
# the whole tree otherwise. Either way the TSan build must then list as many concurrency tests
# as the normal build, or the stage fails: a test left unbuilt would otherwise be skipped.
build_tsan() {  # <dir>
  local normal=${MQSEC_BUILD_DIR:-$root/build} targets
  configure "$1" thread
  if [ -f "$normal/CTestTestfile.cmake" ] && [ "$(count_concurrency_tests "$normal")" -gt 0 ]; then
    targets=$("$root/scripts/tsan-targets.py" "$normal" "$1" "$concurrency" concurrency)
    # shellcheck disable=SC2086  # one target per word
    cmake --build "$1" -j"$jobs" --target $targets
    local want have
    want=$(count_concurrency_tests "$normal")
    have=$(count_concurrency_tests "$1")
    if [ "$want" != "$have" ]; then
      echo "sanitize: the TSan build lists $have concurrency tests, the normal build $want:" \
        "scripts/tsan-targets.py left a test program out" >&2
      exit 1
    fi
    echo "sanitize: TSan build of the $want concurrency tests' programs (not the whole tree)"
  else
    cmake --build "$1" -j"$jobs"
  fi
}

run_asan() {
  local dir=${MQSEC_ASAN_DIR:-$root/build-asan}
  local start=$SECONDS
  configure_and_build "$dir" address,undefined
  # halt_on_error: UBSan otherwise reports and carries on, and the test would still pass.
  # detect_stack_use_after_return stays off: SoftHSM and p11-kit are not instrumented and
  # OpenSSL/SoftHSM callbacks would make the fake stacks very slow for no gain.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_odr_violation=1} \
  LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  MQSEC_REMOTE_MESSAGES=${MQSEC_REMOTE_MESSAGES:-2000} MQSEC_REL_MESSAGES=${MQSEC_REL_MESSAGES:-2000} \
    ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 1800 -E '^BrokerNode\.'
  echo "sanitize: ASan+UBSan build and whole suite took $((SECONDS - start)) s"
}

run_tsan() {
  local dir=${MQSEC_TSAN_DIR:-$root/build-tsan}
  local start=$SECONDS
  build_tsan "$dir"
  # die_after_fork=0: the fork tests start threads in the child (the batch writer's thread,
  # renewed after fork), which TSan refuses by default as unsupported; we want those tests
  # run, and they are also run clean under ASan.
  export TSAN_OPTIONS="suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1:print_suppressions=0:die_after_fork=0"
  export MQSEC_REL_MESSAGES=${MQSEC_REL_MESSAGES:-1000}
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 1800 -R "$concurrency"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 1800 -L concurrency \
    --no-tests=ignore
  echo "sanitize: TSan build and concurrency tests took $((SECONDS - start)) s"
}

case "$what" in
  asan) run_asan ;;
  tsan) run_tsan ;;
  all) run_asan; run_tsan ;;
  *) echo "usage: $0 [asan|tsan|all]" >&2; exit 2 ;;
esac
