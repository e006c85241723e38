#!/usr/bin/env bash
# The README's test command (and CI's, through .ci/run): installs what is missing, builds, runs
# the whole test suite, then the sanitizer runs: the whole suite again under ASan+UBSan
# (build-asan/) and the concurrency tests under TSan (build-tsan/), see scripts/sanitize.sh.
#
#   MQSEC_SANITIZERS=0 ./scripts/test.sh   skip the sanitizer runs (a quicker local check;
#                                          CI always runs them)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
start=$SECONDS
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
(cd "${MQSEC_BUILD_DIR:-$root/build}" && ctest --output-on-failure -j"$(nproc)" --timeout 600)
echo "test: build and suite took $((SECONDS - start)) s"
if [ "${MQSEC_SANITIZERS:-1}" != 0 ]; then
  "$root/scripts/sanitize.sh" all
else
  echo "test: sanitizer runs skipped (MQSEC_SANITIZERS=0)"
fi
echo "test: all green in $((SECONDS - start)) s"
