#!/usr/bin/env bash
# Configures and builds mqsec into build/ (or $MQSEC_BUILD_DIR). Extra arguments go to cmake.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MQSEC_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=${MQSEC_BUILD_TYPE:-RelWithDebInfo} \
  -DMQSEC_WERROR=ON "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
