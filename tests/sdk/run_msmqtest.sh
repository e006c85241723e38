#!/usr/bin/env bash
# Runs Microsoft's MSMQTest sample (samples/msmqtest/MSMQTest.c, compiled unchanged against
# mq.h and the Win32 shim) against libmqrt in a throwaway store, as its ReadMe says to use it:
# a receiver (-r) that creates the private queue <computer>\private$\MSMQTest and prints every
# message until "quit", then deletes the queue; a sender (-s) that asks for the receiver's
# computer name and sends each line it reads. stdin plays the user.
#   run_msmqtest.sh MSMQTEST_EXE MQSEC_CLI
# Round 1: receiver first, sender second (the ReadMe's order). Round 2: the queue exists before
# the receiver starts (made with `mqsec queue create`) and the sender's messages are already in
# it ("The queue already exists. Open it anyway."). Asserts what each side prints, the order of
# the messages, and that the receiver deleted the queue.
set -euo pipefail
exe=${1:?usage: run_msmqtest.sh MSMQTEST_EXE MQSEC_CLI}
cli=${2:?usage: run_msmqtest.sh MSMQTEST_EXE MQSEC_CLI}

t=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-sdk-msmqtest.XXXXXX")
receiver=
cleanup() {
  if [ -n "$receiver" ]; then kill "$receiver" 2>/dev/null || true; fi
  rm -rf "$t"
}
trap cleanup EXIT
umask 077

# No token: MSMQTest sends unsigned messages to a queue that does not demand signatures.
cat >"$t/mqsec.toml" <<CONF
[store]
path = "$t/store"
[profiles]
dir = "$t/users/%u"
[identity]
sid = "unix"
[machine]
name = "sdkhost"
CONF
export MQSEC_CONFIG=$t/mqsec.toml MQSEC_LOG=file:$t/mqsec.log MQSEC_STATE_DIR=$t/state
# The shim's GetComputerName answers $COMPUTERNAME, as Windows' environment has it; it is the
# runtime's [machine] name, so the path names MSMQTest builds name this machine's queues.
export COMPUTERNAME=SDKHOST

fail() {
  echo "FAIL: $*"
  for f in receiver.out sender.out mqsec.log; do
    [ -e "$t/$f" ] && { echo "--- $f"; cat "$t/$f"; }
  done
  exit 1
}

# Waits (up to 30 s) for the receiver to have created its queue (its output goes to a file, so
# it is buffered until it exits).
wait_ready() {
  for _ in $(seq 300); do
    [ "$(queue_count)" -eq 1 ] && return 0
    kill -0 "$receiver" 2>/dev/null || fail "the receiver exited before it was ready"
    sleep 0.1
  done
  fail "the receiver did not get ready in 30 s"
}

# Waits (up to 30 s) for the receiver to exit; fails unless it exited with 0.
wait_receiver() {
  for _ in $(seq 300); do
    kill -0 "$receiver" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$receiver" 2>/dev/null && fail "the receiver did not exit after \"quit\""
  local rc=0
  wait "$receiver" || rc=$?
  receiver=
  [ "$rc" -eq 0 ] || fail "the receiver exited with $rc"
}

# The receiver's message lines ("<label> : <body>"), in order.
received() { grep ' : ' "$t/receiver.out" | tr -d '\r' || true; }

queue_count() { "$cli" queue list --json | grep -o '"name": *"[^"]*msmqtest"' | wc -l || true; }

# ---- round 1: receiver, then sender -------------------------------------------------------
timeout 120 "$exe" -r </dev/null >"$t/receiver.out" 2>&1 &  # bounded: never outlives a killed test
receiver=$!
wait_ready

printf 'SDKHOST\nhello from MSMQTest\nsecond message, with spaces\nquit\n' |
  "$exe" -s >"$t/sender.out" 2>&1 || fail "the sender exited with $?"
wait_receiver

grep -q 'Receiver Mode on Machine: SDKHOST' "$t/receiver.out" || fail "receiver banner"
grep -q 'Working in workgroup (direct) mode' "$t/receiver.out" ||
  fail "the receiver did not choose direct mode (PROPID_PC_DS_ENABLED should be false)"
grep -q 'Enter receiver computer name:' "$t/sender.out" || fail "sender prompt"
grep -q '^OK$' "$t/sender.out" || fail "the sender did not finish with OK"
grep -qi 'failed' "$t/sender.out" && fail "the sender reported a failure"
want=$'Message from SDKHOST : hello from MSMQTest\nMessage from SDKHOST : second message, with spaces\nMessage from SDKHOST : quit'
[ "$(received)" = "$want" ] || fail "round 1 received:
$(received)
expected:
$want"
grep -q '^OK$' "$t/receiver.out" || fail "the receiver did not finish with OK"
[ "$(queue_count)" -eq 0 ] || fail "the receiver did not delete its queue"

# ---- round 2: the queue exists and holds the messages before the receiver starts -----------
"$cli" queue create MSMQTest --label "made before the receiver" >/dev/null
printf 'sdkhost\nwaiting in the queue\nquit\n' | "$exe" -s >"$t/sender.out" 2>&1 ||
  fail "the sender (round 2) exited with $?"
"$cli" queue list --json | grep -q '"messages": *2' || fail "the queue does not hold 2 messages"
timeout 120 "$exe" -r </dev/null >"$t/receiver.out" 2>&1 &  # bounded: never outlives a killed test
receiver=$!
wait_receiver
grep -q 'The queue already exists. Open it anyway.' "$t/receiver.out" ||
  fail "round 2: the receiver did not find the existing queue"
want=$'Message from SDKHOST : waiting in the queue\nMessage from SDKHOST : quit'
[ "$(received)" = "$want" ] || fail "round 2 received:
$(received)
expected:
$want"
[ "$(queue_count)" -eq 0 ] || fail "round 2: the receiver did not delete its queue"

echo "msmqtest: 5 messages sent by MSMQTest -s and received in order by MSMQTest -r (2 rounds)"
