#!/usr/bin/env bash
# Builds mqsec in the configurations a packager or a user may choose, each with -DMQSEC_WERROR=ON,
# so that a warning anywhere fails: Release (-O3), RelWithDebInfo, Debug, and Debian's hardened
# flags (dpkg-buildflags with hardening=+all, build type None, as debhelper builds the package),
# with GCC and with clang. Not part of scripts/test.sh (CI's time budget): run it before a
# release or after a compiler upgrade. Each configuration builds in its own directory.
#
#   scripts/build-matrix.sh                       all 8 (gcc and clang x 4 configurations)
#   scripts/build-matrix.sh gcc-release clang-hardened ...   chosen ones
#   MQSEC_MATRIX_LIB_ONLY=1 scripts/build-matrix.sh   the library and the command only (no
#                                                  tests, no bench): much quicker
# Build directories: $MQSEC_MATRIX_DIR/<name> (default build-matrix/<name>). Needs clang for the
# clang configurations (Debian's clang package) and dpkg-dev for the hardened ones.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=${MQSEC_MATRIX_DIR:-$root/build-matrix}
jobs=$(nproc)
all=(gcc-release gcc-relwithdebinfo gcc-debug gcc-hardened
  clang-release clang-relwithdebinfo clang-debug clang-hardened)
if [ $# -gt 0 ]; then names=("$@"); else names=("${all[@]}"); fi

extra=()
if [ "${MQSEC_MATRIX_LIB_ONLY:-0}" = 1 ]; then extra+=(-DMQSEC_TESTS=OFF -DMQSEC_BENCH=OFF); fi

build_one() {  # <name>
  local name=$1 cc cxx type flags=() dir=$base/$1
  case "$name" in
    gcc-*) cc=gcc cxx=g++ ;;
    clang-*) cc=clang cxx=clang++ ;;
    *) echo "build-matrix: unknown configuration $name (one of: ${all[*]})" >&2; return 2 ;;
  esac
  case "$name" in
    *-release) type=Release ;;
    *-relwithdebinfo) type=RelWithDebInfo ;;
    *-debug) type=Debug ;;
    *-hardened)
      type=None
      # What debhelper passes to CMake: CPPFLAGS folded into the compiler flags.
      local cppflags cflags cxxflags ldflags
      cppflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)
      cflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS)
      cxxflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CXXFLAGS)
      ldflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)
      flags=("-DCMAKE_C_FLAGS=$cflags $cppflags" "-DCMAKE_CXX_FLAGS=$cxxflags $cppflags"
        "-DCMAKE_EXE_LINKER_FLAGS=$ldflags" "-DCMAKE_SHARED_LINKER_FLAGS=$ldflags"
        "-DCMAKE_MODULE_LINKER_FLAGS=$ldflags")
      ;;
    *) echo "build-matrix: unknown configuration $name (one of: ${all[*]})" >&2; return 2 ;;
  esac
  command -v "$cxx" >/dev/null || { echo "build-matrix: $cxx not found" >&2; return 1; }
  if [ -f "$dir/CMakeCache.txt" ] &&
    ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$root" "$dir/CMakeCache.txt"; then
    echo "build-matrix: $dir was configured from another source tree; remove it" >&2
    return 1
  fi
  local start=$SECONDS
  # Explicit returns: build_one runs as `build_one ... || failed+=`, where set -e does not apply.
  CC=$cc CXX=$cxx cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=$type -DMQSEC_WERROR=ON \
    "${flags[@]}" "${extra[@]}" >/dev/null || return 1
  cmake --build "$dir" -j"$jobs" || { echo "build-matrix: $name FAILED" >&2; return 1; }
  echo "build-matrix: $name clean in $((SECONDS - start)) s"
}

failed=()
for n in "${names[@]}"; do
  build_one "$n" || failed+=("$n")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "build-matrix: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "build-matrix: all clean: ${names[*]}"
