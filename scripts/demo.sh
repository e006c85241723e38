#!/usr/bin/env bash
# The README's demo command: installs what is missing, builds, and shows the whole story on a
# throwaway SoftHSM token and a local store:
#   enroll an internal certificate (key generated on the token) -> whoami -> a security context
#   obtained and freed -> an authenticated queue -> signed messages sent with ONE cached
#   context -> received with the sender's SID and certificate subject -> a signature checked
#   by plain `openssl` -> a tampered and an unsigned message rejected, with NACKs.
# Then two machines on this host (when rabbitmq-server is installed; else one line says the part
# is skipped): configs hosta and hostb with their own stores and the same token, a private
# RabbitMQ node on 127.0.0.1 (scripts/broker.sh, with its watchdog), an `mqsec agent` each ->
# 3 messages signed on hosta (MQSendMessage to DIRECT=OS:hostb\private$\inbox) -> hosta's
# outgoing queue draining -> received on hostb, authenticated, with the sender's SID -> one
# message altered on the broker (scripts/demo-tamper.py) rejected on hostb, its NACK back in
# hosta's admin queue.
# Everything lives in a fresh temporary directory; nothing outside it is touched (the broker
# listens on 127.0.0.1 only; agents and broker are stopped at the end).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh" >/dev/null
exec "$root/scripts/demo-run.sh" "${MQSEC_BUILD_DIR:-$root/build}"
