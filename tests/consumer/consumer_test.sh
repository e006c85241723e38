#!/usr/bin/env bash
# Consumer test (issue 15): builds a C program with `pkg-config mqrt` and a C++ program with
# `find_package(mqsec)` against an INSTALLED mqsec, and runs both against a SoftHSM token set up
# here (then removed). The installed copy is `cmake --install BUILD_DIR` into a temporary
# prefix, or, with PREFIX, an existing installation (the Debian packages: PREFIX=/usr).
#   consumer_test.sh SOURCE_DIR BUILD_DIR [PREFIX]
# BUILD_DIR also provides mqsec-init-token (a test tool, not installed) to initialise the token.
set -euo pipefail
src=$(cd "${1:?usage: consumer_test.sh SOURCE_DIR BUILD_DIR [PREFIX]}" && pwd)
build=$(cd "${2:?usage: consumer_test.sh SOURCE_DIR BUILD_DIR [PREFIX]}" && pwd)
prefix=${3:-}

t=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-consumer.XXXXXX")
trap 'rm -rf "$t"' EXIT
umask 077

if [ -z "$prefix" ]; then
  prefix=$t/prefix
  cmake --install "$build" --prefix "$prefix" >"$t/install.log" 2>&1 ||
    { cat "$t/install.log"; exit 1; }
fi
pc=$(find "$prefix"/lib* -name mqrt.pc -path '*pkgconfig*' 2>/dev/null | head -n 1)
[ -n "$pc" ] || { echo "FAIL: no mqrt.pc under $prefix" >&2; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
for f in "$prefix/include/mq.h" "$prefix/include/mqsec/mqsec.hpp" \
    "$libdir/cmake/mqsec/mqsecConfig.cmake" "$prefix/bin/mqsec"; do
  [ -e "$f" ] || { echo "FAIL: $f is not installed" >&2; exit 1; }
done
if [ "$prefix" != /usr ] && [ -d "$build/man" ]; then  # man pages: built when scdoc is there
  for f in "$prefix/share/man/man1/mqsec.1" "$prefix/share/man/man5/mqsec.toml.5" \
      "$prefix/share/man/man3/libmqrt.3"; do
    [ -e "$f" ] || { echo "FAIL: $f is not installed" >&2; exit 1; }
  done
fi

# C: pkg-config only. The link is checked to need nothing but libmqrt.
export PKG_CONFIG_PATH=$(dirname "$pc")
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$t/c_consumer" "$src/tests/consumer/consumer.c" \
  $(pkg-config --cflags --libs mqrt) -Wl,-rpath,"$libdir"
# C++: find_package(mqsec) from a separate CMake project.
cmake -S "$src/tests/consumer" -B "$t/cxx" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_RPATH="$libdir" >"$t/cxx.log" 2>&1 || { cat "$t/cxx.log"; exit 1; }
cmake --build "$t/cxx" >>"$t/cxx.log" 2>&1 || { cat "$t/cxx.log"; exit 1; }
want=$(readlink -f "$libdir/libmqrt.so.0")
for exe in "$t/c_consumer" "$t/cxx/cxx_consumer"; do
  got=$(ldd "$exe" | awk '$1 == "libmqrt.so.0" { print $3 }')
  [ -n "$got" ] && [ "$(readlink -f "$got")" = "$want" ] ||
    { echo "FAIL: $exe does not use the installed libmqrt ($want)"; ldd "$exe"; exit 1; }
done

# A throwaway SoftHSM token (PINs in 0600 files, never on a command line) and a configuration.
# shellcheck source=tests/cli/softhsm_token.sh
. "$src/tests/cli/softhsm_token.sh"
softhsm_token "$t" consumer "$build/tests/mqsec-init-token"
softhsm_config "$t" "pkcs11:token=consumer?module-path=$module&pin-source=file:$t/user.pin"
trap 'echo "FAIL; the runtime'"'"'s log:"; cat "$t/mqsec.log" 2>/dev/null' ERR

# The installed command enrolls (a P-256 key generated on the token); the programs sign with it.
"$prefix/bin/mqsec" enroll --key p256 >/dev/null
"$t/c_consumer"
"$t/cxx/cxx_consumer"
echo "consumer: C (pkg-config) and C++ (find_package) programs built against $prefix and ran"
