#!/usr/bin/env bash
# `mqsec send` to a queue on another machine, without a broker running (issue 10): a path or
# format name of another machine lands in the local outgoing queue (`queue list` shows its
# backlog), an admin queue may be a format name, and bad names fail with the right MSMQ code and
# a clear message. Nothing listens on the configured broker port, so nothing leaves the store.
# Usage: remote_send_test.sh BUILD_DIR
set -uo pipefail
build=$(cd "${1:?usage: remote_send_test.sh BUILD_DIR}" && pwd)
mqsec="$build/src/cli/mqsec"
t=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-cli-remote.XXXXXX")
trap 'rm -rf "$t"' EXIT
umask 077
mkdir "$t/store"
cat > "$t/mqsec.toml" <<CFG
[store]
path = "$t/store"
[machine]
name = "hosta"
[broker]
url = "amqp://127.0.0.1:9"
user = "mqsec"
password-source = "env:MQSEC_CLI_REMOTE_PW"
connect-timeout-ms = 200
CFG
export MQSEC_CONFIG="$t/mqsec.toml" MQSEC_CLI_REMOTE_PW=unused MQSEC_LOG=stderr
failures=0
expect() {  # <description> <expected exit> <pattern in output or ''> <command...>
  local what=$1 code=$2 pattern=$3 out rc
  shift 3
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$code" ]; then
    echo "FAIL: $what: exit $rc, expected $code; output:"; echo "$out"; failures=$((failures + 1))
  elif [ -n "$pattern" ] && ! grep -qF -- "$pattern" <<<"$out"; then
    echo "FAIL: $what: no '$pattern' in:"; echo "$out"; failures=$((failures + 1))
  else
    echo "ok: $what"
  fi
}
expect "format name of another machine" 0 "sent 2 messages to 'DIRECT=OS:hostb\\private\$\\inbox'" \
  "$mqsec" send 'DIRECT=OS:hostb\private$\inbox' --body one --count 2
expect "path name of another machine" 0 "sent 1 message to 'hostb\\private\$\\inbox'" \
  "$mqsec" send 'hostb\private$\inbox' --body two
expect "admin queue" 0 "" "$mqsec" queue create admin
expect "admin queue as a format name" 0 "sent 1 message" \
  "$mqsec" send 'DIRECT=OS:hostb\private$\inbox' --body three \
  --admin-queue 'DIRECT=OS:hosta\private$\admin' --nack
expect "outgoing backlog" 0 "DIRECT=OS:hostb\\private\$\\inbox                          4  " \
  "$mqsec" queue list
expect "local format name of a missing queue" 1 "MQ_ERROR_QUEUE_NOT_FOUND" \
  "$mqsec" send 'DIRECT=OS:.\private$\nosuch' --body x
expect "unsupported format name" 1 "MQ_ERROR_ILLEGAL_FORMATNAME" "$mqsec" send 'DIRECT=XYZ' --body x
expect "invalid machine name" 1 "not a valid machine name" \
  "$mqsec" send 'DIRECT=OS:bad..name\private$\q' --body x
expect "remote read with the broker unreachable" 1 "that the broker runs and [broker] url" \
  "$mqsec" receive 'DIRECT=OS:hostb\private$\inbox' --timeout 0
sed -i '/^\[broker\]/,$d' "$t/mqsec.toml"
expect "no [broker]" 1 "no [broker] is configured" \
  "$mqsec" send 'DIRECT=OS:hostb\private$\inbox' --body x
if [ "$failures" -ne 0 ]; then
  echo "remote_send_test: $failures failed"
  exit 1
fi
echo "remote_send_test: all passed"
