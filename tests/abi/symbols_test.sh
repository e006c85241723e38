#!/bin/sh
# ABI test (issue 15): libmqrt's soname and its exported symbols are exactly those recorded in
# debian/libmqrt0.symbols, the Debian symbols file, which is the versioned list of the ABI: each
# symbol with the version that introduced it. A removed or renamed export fails (an ABI break:
# the soname must change), and so does an export the list does not have (a new function is
# ABI too: record it, with the version that introduces it).
#   symbols_test.sh <path to libmqrt.so> <debian/libmqrt0.symbols>
# To record a deliberate addition, add a line " MQNewFunction@Base <version>" to the symbols
# file (sorted), for example the next release's project version from CMakeLists.txt.
# The file has one section per library of the package (libmqrt.so.0, and libmqrt.dll.so, the
# UTF-16 build for .NET): the library is compared with the section of its soname.
set -u
lib=${1:?usage: symbols_test.sh LIBMQRT SYMBOLS_FILE}
list=${2:?usage: symbols_test.sh LIBMQRT SYMBOLS_FILE}
t=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-symbols.XXXXXX") || exit 1
trap 'rm -rf "$t"' EXIT
status=0

soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
sonames=$(awk '/^[^ #|*]/ { print $1 }' "$list")
if ! printf '%s\n' "$sonames" | grep -qxF "$soname"; then
  echo "$lib's soname is '$soname'; $list has sections for:" $sonames >&2
  status=1
fi

# Exported: defined dynamic symbols, without their version suffix.
nm -D --defined-only "$lib" | awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' | sort -u \
  > "$t/exported" || { echo "nm -D failed on $lib" >&2; exit 1; }
# Recorded: the symbol lines (" name@Base version") of the soname's section.
awk -v soname="$soname" '/^[^ #|*]/ { mine = ($1 == soname); next }
  mine && /^ / { sub(/@.*/, "", $1); print $1 }' "$list" | sort -u > "$t/recorded"

added=$(comm -23 "$t/exported" "$t/recorded")
removed=$(comm -13 "$t/exported" "$t/recorded")
if [ -n "$removed" ]; then
  echo "ABI break: $soname no longer exports these symbols of $list:" >&2
  printf '  %s\n' $removed >&2
  echo "(removing or renaming an export needs a new soname; restore them)" >&2
  status=1
fi
if [ -n "$added" ]; then
  echo "$soname exports symbols that $list does not record:" >&2
  printf '  %s\n' $added >&2
  echo "(if deliberate, add ' <name>@Base <version>' lines for them to $list)" >&2
  status=1
fi
[ $status -eq 0 ] && echo "$lib ($soname) exports exactly the $(wc -l < "$t/recorded") symbols of $list"
exit $status
