#!/usr/bin/env bash
# Prints the linker our scripts configure a build directory with (-DMQSEC_LINKER, a -fuse-ld=
# name): the one its CMake cache already names, if it is installed (a developer's own choice,
# e.g. mold, is kept); else lld when it is installed (scripts/deps.sh installs it: it links a
# test program of the ASan build in 1.6 s against GNU ld's 3.9 s); else nothing (the compiler's
# default).
# scripts/build-matrix.sh does not use it: its builds are a user's, with the default linker.
#
#   scripts/linker.sh <build-dir>
set -euo pipefail
cached=$(sed -n 's/^MQSEC_LINKER:STRING=//p' "${1:?usage: linker.sh <build-dir>}/CMakeCache.txt" \
  2>/dev/null || true)
if [ -n "$cached" ] && command -v "ld.$cached" >/dev/null; then
  echo "$cached"
elif command -v ld.lld >/dev/null; then
  echo lld
fi
