#!/usr/bin/env bash
# The demo itself, on an already built tree: scripts/demo-run.sh BUILD_DIR. scripts/demo.sh
# installs and builds first; the test suite runs this directly (tests/cli/demo_test.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: demo-run.sh BUILD_DIR}" && pwd)
mqsec="$build/src/cli/mqsec"

demo=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-demo.XXXXXX")
umask 077
broker="$root/scripts/broker.sh" broker_dir="$demo/broker" broker_job='' agent_a='' agent_b=''
# SIGTERM, then up to 20 s for it to exit, then SIGKILL.
stop_agent() {
  local pid=$1
  { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_agent "$agent_a"
  stop_agent "$agent_b"
  # A start under way finishes first (bounded by its own limit), then the node is stopped.
  if [ -n "$broker_job" ]; then wait "$broker_job" 2>/dev/null || true; fi
  if [ -f "$broker_dir/broker.env" ]; then "$broker" stop "$broker_dir" >/dev/null 2>&1 9>&- || true; fi
  rm -rf "$demo"
}
trap cleanup EXIT
# bash runs no EXIT trap when a signal's default action ends it: SIGTERM and SIGHUP exit instead.
trap 'exit 143' TERM
trap 'exit 129' HUP

# The two-machine part needs RabbitMQ (scripts/broker.sh) and Python's Qpid Proton (the
# tamperer). Its broker starts now, in the background, while the local part runs; a watchdog
# (fed by fd 9, which only this shell holds) stops it if this script dies without cleaning up.
remote_skip='' py=''
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import proton' 2>/dev/null; then py=$p; break; fi
done
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || ! command -v epmd >/dev/null; then
  remote_skip="rabbitmq-server is not installed (scripts/deps.sh installs it)"
elif ! command -v cc >/dev/null; then
  remote_skip="no C compiler (cc) for the sending application"
elif [ -z "$py" ]; then
  remote_skip="python3-qpid-proton is not installed (scripts/deps.sh installs it)"
else
  # Run as root, the node runs as the user rabbitmq, which must reach $broker_dir; everything
  # in $demo stays private (umask 077).
  if [ "$(id -u)" -eq 0 ]; then chmod 0711 "$demo"; fi
  mkdir "$broker_dir"
  exec 9> >(setsid -f "$broker" watch "$broker_dir" >/dev/null 2>&1)
  MQSEC_BROKER_START_TIMEOUT=90 "$broker" start "$broker_dir" >"$demo/broker-start.log" 2>&1 9>&- &
  broker_job=$!
fi

module=/usr/lib/softhsm/libsofthsm2.so
[ -e "$module" ] || module=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
mkdir -p "$demo/tokens"
cat > "$demo/softhsm2.conf" <<CONF
directories.tokendir = $demo/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF="$demo/softhsm2.conf"
# Random PINs, in 0600 files only: never on a command line, never printed.
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$demo/user.pin"
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$demo/so.pin"
"$build/tests/mqsec-init-token" --module "$module" --label mqsec \
  --pin-file "$demo/user.pin" --so-pin-file "$demo/so.pin" >/dev/null
cat > "$demo/mqsec.toml" <<CONF
[token]
uri = "pkcs11:token=mqsec?module-path=$module&pin-source=file:$demo/user.pin"
[store]
path = "$demo/store"
[profiles]
dir = "$demo/users/%u"
[identity]
sid = "unix"
CONF
export MQSEC_CONFIG="$demo/mqsec.toml" MQSEC_LOG="file:$demo/mqsec.log"

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "Enroll: key pair generated on the token, self-signed certificate, registered" \
  "$mqsec" enroll --key p256
step "Who am I" "$mqsec" whoami
step "A security context, obtained and freed" "$mqsec" context
step "An authenticated queue and an admin queue for NACKs" \
  "$mqsec" queue create orders --authenticate --label "Orders (signed only)"
"$mqsec" queue create orders-admin --label "NACKs" >/dev/null
step "Send 3 signed messages with one cached context" \
  "$mqsec" send orders --body "transfer 100 EUR to Bob" --label payment --auth --count 3 \
  --nack --admin-queue orders-admin
step "Receive them: verified, with the sender's SID and certificate subject" \
  "$mqsec" receive orders --count 3 --timeout 2000

step "Independent check: export one message and verify it with plain openssl" \
  "$mqsec" send orders --body "audit me" --label audit --auth >/dev/null
mkdir -p "$demo/export"
"$mqsec" receive orders --count 1 --timeout 2000 --export "$demo/export" >/dev/null
one=$(find "$demo/export" -mindepth 1 -maxdepth 1 -type d | sort | head -n 1)
openssl x509 -inform der -in "$one/sender.der" -pubkey -noout > "$demo/sender.pub.pem"
echo "\$ openssl dgst -sha256 -verify sender.pub.pem -signature signature.bin tbs.bin"
openssl dgst -sha256 -verify "$demo/sender.pub.pem" -signature "$one/signature.bin" "$one/tbs.bin"

step "Tamper: a signed message whose body is changed on disk after sending" \
  "$mqsec" send orders --body "transfer 100 EUR to Bob" --label tampered --auth --nack \
  --admin-queue orders-admin
python3 - "$demo/store/mqsec.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
seq, env = db.execute("SELECT seq, envelope FROM messages ORDER BY seq DESC LIMIT 1").fetchone()
forged = bytes(env).replace(b"transfer 100 EUR", b"transfer 999 EUR")
db.execute("UPDATE messages SET envelope = ? WHERE seq = ?", (forged, seq))
db.commit()
print("(changed 'transfer 100 EUR' to 'transfer 999 EUR' inside the stored message)")
PY
step "An unsigned message to the authenticated queue" \
  "$mqsec" send orders --body "trust me" --label unsigned --nack --admin-queue orders-admin
echo
echo "\$ mqsec receive orders --timeout 1000   (neither message reaches the application)"
"$mqsec" receive orders --timeout 1000 || true
step "The rejected-messages record" "$mqsec" rejected orders
step "The NACKs on the admin queue (class 0x8006 = MQMSG_CLASS_NACK_BAD_SIGNATURE)" \
  "$mqsec" receive orders-admin --count 2 --timeout 2000
echo
echo "Local part finished: signed on the token, verified on receive, forgeries rejected."

# ---------------------------------------------------------------------------------------------
# Two machines on this host: configurations hosta and hostb (own stores, the same token and
# profile), one private RabbitMQ node, an `mqsec agent` per machine.
printf '\n\033[1m=== Two machines: hosta and hostb, one broker\033[0m\n'
if [ -n "$remote_skip" ]; then
  echo "(two-machine part skipped: $remote_skip)"
  exit 0
fi

# Bounded waits: wait_for SECONDS WHAT COMMAND...; on timeout says so, shows the agents' logs.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local end=$((SECONDS + limit))
  until "$@"; do
    if [ "$SECONDS" -ge "$end" ]; then
      echo "demo: timed out after ${limit} s waiting for $what" >&2
      for f in "$demo"/host?/agent.log "$demo"/host?/agent.out "$demo"/host?/mqsec.log; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
      done
      return 1
    fi
    sleep 0.5
  done
}
# A command line for display: words with spaces or shell characters in single quotes.
show() {
  local w out=
  for w in "$@"; do
    if [[ $w =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=" $w"; else out+=" '$w'"; fi
  done
  echo "${out# }"
}
# on MACHINE mqsec ARGS...: runs mqsec with that machine's configuration.
on() {
  local m=$1
  shift
  MQSEC_CONFIG="$demo/$m/mqsec.toml" MQSEC_LOG="file:$demo/$m/mqsec.log" "$mqsec" "$@"
}
rstep() { printf '\n\033[1m== %s\033[0m\n[%s]$ %s\n' "$1" "$2" "$(show mqsec "${@:3}")"; on "$2" "${@:3}"; }
start_agent() {  # MACHINE; the pid in $started. It dies with this shell (parent-death signal).
  MQSEC_CONFIG="$demo/$1/mqsec.toml" MQSEC_LOG="file:$demo/$1/agent.log" \
    setpriv --pdeathsig TERM -- "$mqsec" agent >"$demo/$1/agent.out" 2>&1 </dev/null 9>&- &
  started=$!
  sleep 1
  kill -0 "$started" 2>/dev/null \
    || { echo "demo: mqsec agent of $1 exited at once:" >&2; cat "$demo/$1/agent.out" >&2; exit 1; }
  echo "[$1] mqsec agent started (pid $started)"
}

printf 'waiting for the broker (started in the background at the beginning) ... '
if ! wait "$broker_job"; then
  broker_job=
  echo "failed:"
  cat "$demo/broker-start.log" >&2
  exit 1
fi
broker_job=
env_get() { sed -n "s/^$1=//p" "$broker_dir/broker.env" | head -n 1; }
url=$(env_get URL)
echo "$url (a private RabbitMQ node on 127.0.0.1, user $(env_get USER), password in a 0600 file)"
for m in hosta hostb; do
  mkdir -p "$demo/$m"
  cat > "$demo/$m/mqsec.toml" <<CONF
[token]
uri = "pkcs11:token=mqsec?module-path=$module&pin-source=file:$demo/user.pin"
[store]
path = "$demo/$m/store"
[profiles]
dir = "$demo/users/%u"
[identity]
sid = "unix"
[machine]
name = "$m"
[broker]
url = "$url"
user = "$(env_get USER)"
password-source = "file:$(env_get PASSWORD_FILE)"
CONF
done
echo "configs: $demo/hosta/mqsec.toml and $demo/hostb/mqsec.toml (own stores; the same token)"

rstep "On hostb: an authenticated queue" hostb queue create inbox --authenticate --label "Inbox (signed only)"
rstep "On hosta: an admin queue for NACKs from hostb" hosta queue create admin --label NACKs
start_agent hosta
agent_a=$started
start_agent hostb
agent_b=$started

# The sending application on hosta: MSMQ's C API (`mqsec send` takes local queue names only).
cat > "$demo/send-signed.c" <<'C'
/* send-signed FORMAT_NAME BODY LABEL COUNT [ADMIN_FORMAT_NAME]: COUNT recoverable messages
   signed with one security context (the user's internal certificate), with a NACK request
   to the admin queue when one is given. */
#include <mq.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

static WCHAR* wide(const char* s) {
  size_t n = strlen(s) + 1;
  WCHAR* w = calloc(n, sizeof(WCHAR));
  if (w != NULL) mbstowcs(w, s, n);
  return w;
}

int main(int argc, char** argv) {
  if (argc < 5) return 2;
  HANDLE ctx;
  QUEUEHANDLE q;
  HRESULT hr = MQGetSecurityContextEx(NULL, 0, &ctx);
  if (hr != MQ_OK) { fprintf(stderr, "MQGetSecurityContextEx: 0x%08X\n", (unsigned)hr); return 1; }
  WCHAR* format = wide(argv[1]);
  hr = MQOpenQueue(format, MQ_SEND_ACCESS, MQ_DENY_NONE, &q);
  free(format);
  if (hr != MQ_OK) { fprintf(stderr, "MQOpenQueue: 0x%08X\n", (unsigned)hr); return 1; }
  MSGPROPID id[7];
  MQPROPVARIANT v[7];
  DWORD n = 0;
  id[n] = PROPID_M_BODY; v[n].vt = VT_UI1 | VT_VECTOR;
  v[n].caub.pElems = (UCHAR*)argv[2]; v[n++].caub.cElems = (ULONG)strlen(argv[2]);
  id[n] = PROPID_M_LABEL; v[n].vt = VT_LPWSTR; v[n++].pwszVal = wide(argv[3]);
  id[n] = PROPID_M_DELIVERY; v[n].vt = VT_UI1; v[n++].bVal = MQMSG_DELIVERY_RECOVERABLE;
  id[n] = PROPID_M_AUTH_LEVEL; v[n].vt = VT_UI4; v[n++].ulVal = MQMSG_AUTH_LEVEL_ALWAYS;
  id[n] = PROPID_M_SECURITY_CONTEXT; v[n].vt = VT_UI4; v[n++].ulVal = (ULONG)(uintptr_t)ctx;
  if (argc > 5) {
    id[n] = PROPID_M_ADMIN_QUEUE; v[n].vt = VT_LPWSTR; v[n++].pwszVal = wide(argv[5]);
    id[n] = PROPID_M_ACKNOWLEDGE; v[n].vt = VT_UI1; v[n++].bVal = MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE;
  }
  MQMSGPROPS props = {n, id, v, NULL};
  int count = atoi(argv[4]);
  for (int i = 0; i < count; ++i) {
    hr = MQSendMessage(q, &props, NULL);
    if (hr != MQ_OK) { fprintf(stderr, "MQSendMessage: 0x%08X\n", (unsigned)hr); return 1; }
  }
  printf("MQSendMessage: MQ_OK x %d to %s (signed, one security context%s)\n", count, argv[1],
         argc > 5 ? "; NACKs to the admin queue" : "");
  MQCloseQueue(q);
  MQFreeSecurityContext(ctx);
  free(v[1].pwszVal);                /* the label */
  if (argc > 5) free(v[5].pwszVal);  /* the admin queue */
  return 0;
}
C
# A sanitizer build's libmqrt needs its runtime first in the program (the test suite runs this
# demo on the ASan build too): compile the sender with the same sanitizers.
# ldd's output is read whole first: `ldd | grep -q` under pipefail fails now and then (grep
# stops at the match, ldd gets SIGPIPE), which left the sanitizers out in one CI run.
sanitize=()
mqrt_libs=$(ldd "$build/src/abi/libmqrt.so" 2>/dev/null || true)
if grep -q 'libasan' <<<"$mqrt_libs"; then
  sanitize=(-fsanitize=address,undefined)
elif grep -q 'libtsan' <<<"$mqrt_libs"; then
  sanitize=(-fsanitize=thread)
fi
cc -std=c11 -O1 "${sanitize[@]}" -I"$root/include" -o "$demo/send-signed" "$demo/send-signed.c" \
  -L"$build/src/abi" -lmqrt -Wl,-rpath,"$build/src/abi"
send_signed() {  # a step: MACHINE TITLE ARGS...
  printf '\n\033[1m== %s\033[0m\n[%s]$ %s\n' "$2" "$1" "$(show ./send-signed "${@:3}")"
  MQSEC_CONFIG="$demo/$1/mqsec.toml" MQSEC_LOG="file:$demo/$1/mqsec.log" "$demo/send-signed" "${@:3}"
}

remote_inbox='DIRECT=OS:hostb\private$\inbox'
remote_admin='DIRECT=OS:hosta\private$\admin'
echo
echo "(the sender on hosta is send-signed, 50 lines of C on mq.h: MQGetSecurityContextEx,"
echo " MQOpenQueue of the remote format name, MQSendMessage; \`mqsec send\` takes such names too)"
send_signed hosta "On hosta: 3 signed messages to a queue on hostb" \
  "$remote_inbox" "ship 20 pallets to Lyon" order 3
rstep "On hosta: the outgoing queue to hostb, draining through the broker" hosta queue list
drained() {
  on hosta queue list --json | "$py" -c 'import json, sys
out = [q for q in json.load(sys.stdin) if q.get("kind") == "outgoing"]
sys.exit(0 if out and all(q["messages"] == 0 for q in out) else 1)'
}
wait_for 60 "hosta's outgoing queue to drain" drained
echo "[hosta]\$ mqsec queue list   (again, once drained)"
on hosta queue list | sed -n '/^outgoing queues/,$p'
rstep "On hostb: received and verified, with the sender's SID (and exported for openssl)" \
  hostb receive inbox --count 3 --timeout 30000 --export "$demo/hostb/export"

printf '\n\033[1m== Tamper on the way: hostb'"'"'s agent stopped, one message altered on the broker\033[0m\n'
stop_agent "$agent_b"
agent_b=
echo "[hostb] mqsec agent stopped"
send_signed hosta "On hosta: a signed message asking for a NACK to hosta's admin queue" \
  "$remote_inbox" "ship 20 pallets to Lyon" altered 1 "$remote_admin"
"$py" "$root/scripts/demo-tamper.py" "$broker_dir/broker.env" mqsec.in.hostb "ship 20" "ship 90" 60 9>&-
start_agent hostb
agent_b=$started
rejected() {
  local out
  out=$(on hostb rejected inbox --json 2>/dev/null) || return 1
  grep -q '"label":"altered"' <<<"$out"
}
wait_for 60 "hostb to reject the altered message" rejected
rstep "On hostb: the rejected-messages record (it never reached inbox)" hostb rejected inbox
nacked() {
  on hosta queue list --json | "$py" -c 'import json, sys
sys.exit(0 if any(q["name"] == "admin" and q["messages"] > 0 for q in json.load(sys.stdin)) else 1)'
}
wait_for 60 "the NACK in hosta's admin queue" nacked
rstep "On hosta: the NACK back from hostb (class 0x8006 = MQMSG_CLASS_NACK_BAD_SIGNATURE)" \
  hosta receive admin --timeout 5000
echo
echo "Demo finished: signed on the token, verified on receive, forgeries rejected; across two"
echo "machines too: signed on hosta, verified on hostb, an altered message rejected on hostb with"
echo "a NACK back on hosta."
