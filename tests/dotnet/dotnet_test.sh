#!/usr/bin/env bash
# .NET test (issue 16): C# programs that call mqrt.dll exactly as System.Messaging's ports do
# (tests/dotnet/*.cs), compiled with Mono's mcs and run with Mono, which finds libmqrt.dll.so
# (the UTF-16 build) for DllImport("mqrt.dll") through the loader path alone: no dllmap, no
# MONO_PATH, only LD_LIBRARY_PATH naming the build's library directory (an installed copy is in
# the loader's default path). On a throwaway SoftHSM token (PINs in 0600 files, never on a
# command line):
#   1. the C# tests (mqrt_tests.exe tests SID);
#   2. a message signed in C# is received by `mqsec receive` as authenticated, with the SID of
#      the enrolled user;
#   3. a message sent by a C program on mq.h (libmqrt.so, UTF-32 WCHAR) is received in C# with
#      its label (outside the BMP) intact.
#   dotnet_test.sh SOURCE_DIR MQSEC INIT_TOKEN C_SENDER LIBDIR
# Without Mono: skipped (exit 77) with a message saying what to install, except in CI (CI set),
# where scripts/deps.sh installs it and its absence is a failure.
set -euo pipefail
src=$(cd "${1:?usage: dotnet_test.sh SOURCE_DIR MQSEC INIT_TOKEN C_SENDER LIBDIR}" && pwd)
mqsec=${2:?}
init_token=${3:?}
c_sender=${4:?}
libdir=$(cd "${5:?}" && pwd)

if ! command -v mono >/dev/null || ! command -v mcs >/dev/null; then
  if [ -n "${CI:-}" ]; then
    echo "FAIL: mono or mcs is missing (scripts/deps.sh installs mono-mcs and mono-runtime)" >&2
    exit 1
  fi
  echo "SKIP: the .NET tests need Mono: apt-get install mono-mcs mono-runtime (scripts/deps.sh does)"
  exit 77
fi
[ -e "$libdir/libmqrt.dll.so" ] || { echo "FAIL: no libmqrt.dll.so in $libdir" >&2; exit 1; }

t=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-dotnet.XXXXXX")
trap 'rm -rf "$t"' EXIT
umask 077

mcs -nologo -warnaserror -out:"$t/mqrt_tests.exe" "$src"/tests/dotnet/*.cs

# shellcheck source=tests/cli/softhsm_token.sh
. "$src/tests/cli/softhsm_token.sh"
softhsm_token "$t" dotnet "$init_token"
softhsm_config "$t" "pkcs11:token=dotnet?module-path=$module&pin-source=file:$t/user.pin"
trap 'echo "FAIL; the runtime'"'"'s log:"; cat "$t/mqsec.log" 2>/dev/null' ERR

"$mqsec" enroll --key p256 >/dev/null
sid=$("$mqsec" whoami --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["sid"])')

# Only the loader path: Mono tries mqrt.dll, then libmqrt.dll.so, in the application's directory,
# its own lib directory and then through dlopen's search (LD_LIBRARY_PATH, ld.so.cache).
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mono "$t/mqrt_tests.exe" tests "$sid"

# 2. Signed in C#, received by the mqsec command.
label='signed in C# \xf0\x9f\x98\x80'
label_hex=$(printf "$label" | od -An -tx1 | tr -d ' \n')
mono "$t/mqrt_tests.exe" send-auth '.\private$\dotnet-to-cli' "$label_hex"
"$mqsec" receive dotnet-to-cli --json >"$t/received.json"
python3 - "$t/received.json" "$sid" "$(printf "$label")" <<'PY'
import json, sys
m = json.loads(open(sys.argv[1], encoding="utf-8").readline())
sid, label = sys.argv[2], sys.argv[3]
assert m["authenticated"] >= 1, f"not authenticated: {m}"
assert m["sender_sid"] == sid, f"sender SID {m['sender_sid']}, want {sid}"
assert m["label"] == label, f"label {m['label']!r}, want {label!r}"
assert m.get("body") == "signed in C#", f"body {m.get('body')!r}"
print(f"mqsec receive: authenticated ({m['authenticated_name']}) by {m['sender_sid']}, label {m['label']!r}")
PY

# 3. Sent by a C program on mq.h, received in C#.
want_hex=$("$c_sender" dotnet-from-c)
mono "$t/mqrt_tests.exe" receive-label '.\private$\dotnet-from-c' "$want_hex"
echo "dotnet: C# on Mono through libmqrt.dll.so: tests, C# -> mqsec receive, C -> C# passed"
