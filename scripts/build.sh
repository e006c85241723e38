#!/usr/bin/env bash
# Configures and builds mqsec into build/ (or $MQSEC_BUILD_DIR). Extra arguments go to cmake.
# RelWithDebInfo (the default here) is -O2 with line tables only (-g1), not -g: backtraces, perf
# and sanitizer reports still name function, file and line, and the build takes about a third
# less CPU (src/cli/queue_commands.cpp: 25 s at -O2 -g, 17 s at -O2 -g1). For local variables in
# a debugger: MQSEC_BUILD_TYPE=Debug, or pass -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g -DNDEBUG".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MQSEC_BUILD_DIR:-$root/build}
# The linker: scripts/linker.sh (lld when installed, unless the cache names another).
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=${MQSEC_BUILD_TYPE:-RelWithDebInfo} \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DMQSEC_WERROR=ON -DMQSEC_LINKER="$("$root/scripts/linker.sh" "$build")" "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
