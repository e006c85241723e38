#!/usr/bin/env bash
# Lists, for each MSMQ SDK sample, the names of MSMQ's C API it uses that mqsec's headers do not
# define: the identifiers of the sample's sources that Microsoft's MSMQ headers define (mq.h;
# transact.h, which mq.h includes, listed apart) and that no header in mqsec's include/ has.
# Names of a sample's own (a local variable that happens to share a name) are not MSMQ's and
# cannot match: the reference is the headers' text, comments and strings removed.
#   msmq_names.sh REFERENCE_INCLUDE_DIR MQSEC_INCLUDE_DIR SAMPLE_DIR...
# REFERENCE_INCLUDE_DIR holds Microsoft's mq.h and transact.h, or mingw-w64's public-domain
# versions of them (Debian: mingw-w64-common, /usr/share/mingw-w64/include); they are read,
# never compiled against. Prints "sample: mq.h: NAMES" and "sample: transact.h: NAMES" lines.
#   msmq_names.sh --defines FILE...   prints only the names these headers define.
set -euo pipefail

# C or C++ text without comments and string or character literals.
strip() {
  for f in "$@"; do
    tr -d '\r' <"$f" | sed -E 's@//.*$@@'
  done | perl -0777 -pe 's@/\*.*?\*/@ @gs; s@"(\\.|[^"\\\n])*"@ @g; s@'"'"'(\\.|[^'"'"'\\\n])*'"'"'@ @g'
}

# The identifiers of a source (numbers such as 0x1F are not identifiers).
identifiers() { strip "$@" | perl -ne 'print "$1\n" while /(?<![\w.])([A-Za-z_]\w*)/g' | sort -u; }

# The names a header defines: macros, functions and methods, typedef names, struct, enum and
# interface tags, enumerators and interface ids (the parameter and member names it only
# mentions are not names a program gets from it).
defined_names() {
  strip "$@" | perl -0777 -ne '
    my %n;
    $n{$1} = 1 while /^\s*#\s*define\s+(\w+)/mg;
    $n{$1} = 1 while /\b(?:WINAPI|APIENTRY|STDMETHODCALLTYPE)\s*\*?\s*(\w+)\s*\)?\s*\(/g;
    $n{$1} = 1 while /\btypedef\b[^;{}()]*?\b(\w+)\s*;/g;
    $n{$1} = 1 while /\b(?:struct|union|enum|interface|class)\s+(\w+)/g;
    while (/\}\s*([\w\s,*]+);/g) { my $d = $1; $n{$1} = 1 while $d =~ /(\w+)/g; }
    while (/\benum\b[^{;]*\{([^}]*)\}/g) {
      my $b = $1; $n{$1} = 1 while $b =~ /(?:^|,)\s*(\w+)\s*(?:=[^,]*)?(?=,|$)/g;
    }
    $n{$1} = 1 while /\b(IID_\w+|CLSID_\w+)\b/g;
    $n{$1} = 1 while /^[ \t]*(?!typedef\b)(?:[A-Za-z_]\w*[ \t*]+)+(\w+)\s*\([^;{}]*\)\s*;/mg;
    print "$_\n" for sort keys %n;' |
    grep -vxE 'struct|union|enum|const|unsigned|signed|long|short|int|char|void|typedef' | sort -u
}

if [ "${1:-}" = --defines ]; then
  shift
  defined_names "$@"
  exit 0
fi
ref=${1:?usage: msmq_names.sh REFERENCE_INCLUDE_DIR MQSEC_INCLUDE_DIR SAMPLE_DIR...}
ours=${2:?usage: msmq_names.sh REFERENCE_INCLUDE_DIR MQSEC_INCLUDE_DIR SAMPLE_DIR...}
shift 2

t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
defined_names "$ref/mq.h" >"$t/ref_mq"
# IUnknown's methods, which transact.h's interfaces repeat, are COM's, not MSMQ's.
defined_names "$ref/transact.h" | grep -vxE 'QueryInterface|AddRef|Release' |
  comm -23 - "$t/ref_mq" >"$t/ref_transact"
identifiers "$ours"/*.h >"$t/ours"
for dir in "$@"; do
  name=$(basename "$dir")
  find "$dir" -type f \( -iname '*.c' -o -iname '*.cpp' -o -iname '*.h' \) -print0 |
    xargs -0 cat /dev/null >"$t/all"
  identifiers "$t/all" >"$t/used"
  for hdr in mq transact; do
    missing=$(comm -12 "$t/used" "$t/ref_$hdr" | comm -23 - "$t/ours" | tr '\n' ' ')
    missing=${missing% }
    echo "$name: $hdr.h: ${missing:-(none)}"
  done
done
