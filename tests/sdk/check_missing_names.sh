#!/usr/bin/env bash
# What the MSMQ SDK samples lack from mqsec's headers is what missing-names.txt records, and no
# more: fails when a sample uses a name of Microsoft's mq.h or transact.h that include/ does not
# define and missing-names.txt does not list (a name lost from mq.h, or a sample added without
# its record); names listed there that include/ now defines are reported, not failed.
# Exit 77 (skipped) without the reference headers (mingw-w64's, Debian: mingw-w64-common),
# 1 when CI is set.
#   check_missing_names.sh MQSEC_INCLUDE_DIR SDK_DIR [REFERENCE_INCLUDE_DIR]
set -euo pipefail
inc=${1:?usage: check_missing_names.sh MQSEC_INCLUDE_DIR SDK_DIR [REFERENCE_INCLUDE_DIR]}
sdk=${2:?usage: check_missing_names.sh MQSEC_INCLUDE_DIR SDK_DIR [REFERENCE_INCLUDE_DIR]}
ref=${3:-/usr/share/mingw-w64/include}
if [ ! -e "$ref/mq.h" ] || [ ! -e "$ref/transact.h" ]; then
  # scripts/deps.sh installs it, so under CI its absence is a failure, not a skip.
  echo "SKIP: no reference $ref/mq.h and transact.h (install mingw-w64-common)"
  [ -z "${CI:-}" ] || exit 1
  exit 77
fi
# "sample: header: NAME..." -> "sample header NAME", one name a line.
expand() { awk -F': ' '/^[^#]/ { n = split($3, a, " "); for (i = 1; i <= n; i++)
  if (a[i] != "(none)") print $1, $2, a[i] }' | sort -u; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
bash "$sdk/msmq_names.sh" "$ref" "$inc" "$sdk"/samples/*/ | expand >"$t/now"
expand <"$sdk/missing-names.txt" >"$t/recorded"
new=$(comm -23 "$t/now" "$t/recorded")
done_=$(comm -13 "$t/now" "$t/recorded")
[ -z "$done_" ] || printf 'now defined by mqsec (remove from missing-names.txt):\n%s\n' "$done_"
if [ -n "$new" ]; then
  printf 'FAIL: samples use MSMQ names that include/ does not define:\n%s\n' "$new"
  exit 1
fi
echo "samples lack $(wc -l <"$t/now") MSMQ names, all recorded in missing-names.txt"
