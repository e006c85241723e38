#!/usr/bin/env bash
# The README's demo command: installs what is missing, builds, and shows the whole story on a
# throwaway SoftHSM token and a local store:
#   enroll an internal certificate (key generated on the token) -> whoami -> a security context
#   obtained and freed -> an authenticated queue -> signed messages sent with ONE cached
#   context -> received with the sender's SID and certificate subject -> a signature checked
#   by plain `openssl` -> a tampered and an unsigned message rejected, with NACKs.
# Everything lives in a fresh temporary directory; nothing outside it is touched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh" >/dev/null
exec "$root/scripts/demo-run.sh" "${MQSEC_BUILD_DIR:-$root/build}"
