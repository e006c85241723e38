#!/usr/bin/env bash
# Runs the README demo on the built tree and checks that it shows the whole story: the
# round trip with SID and subject, an openssl-verified signature, both rejections and NACKs.
set -uo pipefail
out=$("$1/../scripts/demo-run.sh" "$2" 2>&1)
rc=$?
fail=0
check() { grep -qE -- "$1" <<<"$out" || { echo "demo output lacks: $1"; fail=1; }; }
[ $rc -eq 0 ] || { echo "demo exited $rc"; fail=1; }
check "^enrolled: CN="
check 'security context 0x[0-9a-f]{8} obtained'
check 'freed'
check 'sent 3 messages to .orders., signed with sha256'
check 'authenticated: 3 \(MQMSG_AUTHENTICATED_SIG20\)'
check 'sender SID: +S-1-22-1-'
check 'confirmed: +yes'
check '^Verified OK$'
check 'MQ_ERROR_IO_TIMEOUT'
check '2 rejected messages'
check 'signature does not verify'
check 'unauthenticated message on a queue that requires authentication'
[ "$(grep -c 'class:         0x8006' <<<"$out")" -eq 2 ] || { echo "expected 2 NACKs"; fail=1; }
if [ $fail -ne 0 ]; then printf '%s\n' "$out"; exit 1; fi
echo "demo: 1 passed, 0 failed"
