#!/usr/bin/env bash
# The demo itself, on an already built tree: scripts/demo-run.sh BUILD_DIR. scripts/demo.sh
# installs and builds first; the test suite runs this directly (tests/cli/demo_test.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: demo-run.sh BUILD_DIR}" && pwd)
mqsec="$build/src/cli/mqsec"

demo=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-demo.XXXXXX")
trap 'rm -rf "$demo"' EXIT
umask 077
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
one=$(ls -d "$demo"/export/*/ | head -n 1)
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
echo "Demo finished: signed on the token, verified on receive, forgeries rejected."
