#!/usr/bin/env bash
# The command line of issue 9 end to end on a throwaway SoftHSM token:
#  - `mqsec registry add|list|remove` round trip (files, modes, --json), and its refusals:
#    not root, an invalid SID, a certificate already bound to another SID, an unsafe directory;
#  - `mqsec queue create --signer ... --trust ...`: the policy is in `queue list` (and --json);
#    a message from the authorized signer (a CA-issued certificate of the test PKI on the token)
#    is delivered, one from a self-signed certificate with the same subject is rejected (kind
#    "signer"); --signer is refused without [trust] anchors;
#  - `mqsec rejected --json` is one JSON document with queue, time, kind, reason, size and
#    truncated for each record.
# Usage: registry_test.sh SOURCE_DIR BUILD_DIR. Needs root (exit 77: skipped otherwise).
set -uo pipefail
src=${1:?usage: registry_test.sh SOURCE_DIR BUILD_DIR}
build=$(cd "${2:?usage: registry_test.sh SOURCE_DIR BUILD_DIR}" && pwd)
mqsec="$build/src/cli/mqsec"
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: needs root (the system registry is root-owned)"
  exit 77
fi

t=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-cli-reg.XXXXXX")
trap 'rm -rf "$t"' EXIT
chmod 755 "$t"
umask 077
# shellcheck source=tests/cli/softhsm_token.sh
. "$(dirname "${BASH_SOURCE[0]}")/softhsm_token.sh"
softhsm_token "$t" mqsec "$build/tests/mqsec-init-token" || exit 1
# allow-extractable-keys: the test PKI's leaf key is imported into the token
softhsm_config "$t" "pkcs11:token=mqsec?module-path=$module&pin-source=file:$t/user.pin" \
  "allow-extractable-keys = true"
cat >> "$t/mqsec.toml" <<CONF
[trust]
registry = "$t/etc/registry.d"
CONF
cp "$t/mqsec.toml" "$t/no-anchors.toml"
bash "$src/pki/make-pki.sh" "$t/pki" >/dev/null 2>&1 || { echo "make-pki.sh failed"; exit 1; }
cat >> "$t/mqsec.toml" <<CONF
anchors = ["$t/pki/root.pem"]
intermediates = ["$t/pki/inter.pem"]
require = "signature"   # so that the queue's signer list, not the chain, turns mallory away
CONF
# The CA-issued leaf "plain" on the token (the PIN on pkcs11-tool's argv: a throwaway token).
openssl pkcs8 -topk8 -nocrypt -in "$t/pki/plain.key" -outform DER -out "$t/pki/plain.p8.der"
openssl x509 -in "$t/pki/plain.pem" -outform DER -out "$t/pki/plain.der"
for obj in "privkey $t/pki/plain.p8.der" "cert $t/pki/plain.der"; do
  set -- $obj
  pkcs11-tool --module "$module" --token-label mqsec --login --pin "$(cat "$t/user.pin")" \
    --write-object "$2" --type "$1" --id 7701 --label plain >/dev/null 2>&1 ||
    { echo "importing the $1 of plain failed"; exit 1; }
done

fail=0 passed=0
ok() { passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; fail=1; }
# expect CODE DESCRIPTION -- command...: runs it, keeps its output in $out, checks the exit code.
expect() {
  local code=$1 what=$2
  shift 3
  out=$("$@" 2>&1)
  local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$what: exit $rc, expected $code"; printf '%s\n' "$out"; else ok; fi
}
has() { grep -qE -- "$1" <<<"$out" && ok || { bad "$2: output lacks '$1'"; printf '%s\n' "$out"; }; }
json() { python3 -m json.tool <<<"$out" >/dev/null && ok || { bad "$1: not JSON"; printf '%s\n' "$out"; }; }

# ---- registry -------------------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$t/a.key" \
  -subj "/O=Payroll/CN=alice" -days 30 -out "$t/a.pem" 2>/dev/null || exit 1
openssl x509 -in "$t/a.pem" -outform DER -out "$t/a.der"
sha=$(openssl x509 -in "$t/a.pem" -outform DER | sha256sum | cut -c1-64)
sid=S-1-5-21-1004336348-1177238915-682003330-1001
reg="$t/etc/registry.d"

expect 0 "list of a missing registry" -- "$mqsec" registry list
has "no system registry at $reg" "list of a missing registry"
expect 0 "registry add" -- "$mqsec" registry add "$t/a.pem" --sid "$sid"
has "^added to the system registry: CN=alice,O=Payroll" "registry add"
has "SHA-256: $sha" "registry add"
[ -f "$reg/$sha.toml" ] && ok || bad "no file $reg/$sha.toml"
[ "$(stat -c '%a %U' "$reg")" = "755 root" ] && ok || bad "registry dir: $(stat -c '%a %U' "$reg")"
[ "$(stat -c '%a %U' "$reg/$sha.toml")" = "644 root" ] && ok || bad "entry: $(stat -c '%a %U' "$reg/$sha.toml")"
grep -q "^sid = \"$sid\"" "$reg/$sha.toml" && ok || bad "entry file lacks the SID"
expect 0 "add again, same SID (DER file)" -- "$mqsec" registry add "$t/a.der" --sid "$sid"
has "already in the system registry with that SID" "add again"
expect 1 "add with another SID" -- "$mqsec" registry add "$t/a.pem" --sid S-1-5-21-1-2-3-1002
has "registered to $sid already; remove it first" "add with another SID"
has "MQ_ERROR_INVALID_CERTIFICATE" "add with another SID"
grep -q "^sid = \"$sid\"" "$reg/$sha.toml" && ok || bad "the entry was rebound"
expect 2 "add with an invalid SID" -- "$mqsec" registry add "$t/a.pem" --sid S-1-x
has "not a SID" "add with an invalid SID"
expect 2 "add without --sid" -- "$mqsec" registry add "$t/a.pem"
expect 1 "add as a user" -- setpriv --reuid=65534 --regid=65534 --clear-groups \
  "$mqsec" registry add "$t/a.pem" --sid "$sid" --dir "$t/other.d"
has "run as root: the system registry is root-owned" "add as a user"
expect 1 "remove as a user" -- setpriv --reuid=65534 --regid=65534 --clear-groups \
  "$mqsec" registry remove "$sha" --dir "$reg"
has "run as root" "remove as a user"
mkdir -p "$t/unsafe.d" && chmod 777 "$t/unsafe.d"
expect 1 "add into a world-writable directory" -- "$mqsec" registry add "$t/a.pem" --sid "$sid" \
  --dir "$t/unsafe.d"
has "writable by group or others" "add into a world-writable directory"

expect 0 "registry list" -- "$mqsec" registry list
has "1 entry \(trusted by receivers\)" "registry list"
has "$sha  $sid  CN=alice,O=Payroll" "registry list"
expect 0 "registry list --json" -- "$mqsec" registry list --json
json "registry list --json"
printf '%s' "$out" > "$t/out.json"
python3 - "$t/out.json" "$sha" "$sid" <<'PY' && ok || bad "registry list --json fields"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["trusted"] is True and d["exists"] is True and d["problem"] is None, d
[e] = d["entries"]
assert e["sha256"] == sys.argv[2] and e["sid"] == sys.argv[3], e
assert e["subject"] == "CN=alice,O=Payroll", e
PY
# Receivers' view: a group-writable registry is listed as ignored.
chmod 775 "$reg"
expect 0 "list of a group-writable registry" -- "$mqsec" registry list
has "WARNING: receivers ignore this registry: .* is writable by group or others" "list (unsafe)"
chmod 755 "$reg"

expect 0 "remove by SHA-256" -- "$mqsec" registry remove "$sha"
has "removed from the system registry: $sha \(CN=alice,O=Payroll, SID $sid\)" "remove"
[ ! -e "$reg/$sha.toml" ] && ok || bad "the entry file is still there"
expect 1 "remove again" -- "$mqsec" registry remove "$t/a.pem"
has "no entry for the certificate" "remove again"
expect 0 "add after remove, another SID" -- "$mqsec" registry add "$t/a.pem" --sid S-1-5-21-1-2-3-1002
expect 0 "remove by file" -- "$mqsec" registry remove "$t/a.der"

# ---- queue create --signer, rejected --json -------------------------------------------------
# alice: the CA-issued certificate "plain"; mallory: a self-signed one with the same subject.
alice=$(openssl x509 -in "$t/pki/plain.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
[ -n "$alice" ] && ok || bad "no subject for plain.pem"
expect 1 "queue create --signer without anchors" -- env MQSEC_CONFIG="$t/no-anchors.toml" \
  "$mqsec" queue create nobody --signer "$alice"
has "--signer needs \[trust\] anchors" "queue create --signer without anchors"
expect 2 "queue create with an invalid signer SID" -- "$mqsec" queue create payroll --signer-sid S-1-nope
expect 2 "queue create with an unknown trust level" -- "$mqsec" queue create payroll --trust chains
expect 0 "queue create --signer" -- "$mqsec" queue create payroll --signer "$alice" \
  --signer-sid S-1-5-21-1-2-3-4242 --trust signature --label "signed by payroll only"
has "authenticate: yes" "queue create --signer"
has "signer: +$alice" "queue create --signer"
has "signer SID: +S-1-5-21-1-2-3-4242" "queue create --signer"
has "format name: +DIRECT=OS:.*\\\\private\\$\\\\payroll" "queue create --signer"
expect 1 "queue create of an existing name" -- "$mqsec" queue create payroll --signer "$alice"
has "MQ_ERROR_QUEUE_EXISTS" "queue create of an existing name"
expect 0 "queue list" -- "$mqsec" queue list
has "^payroll +yes +signature" "queue list"
has "signer: +$alice" "queue list"
has "signer SID: S-1-5-21-1-2-3-4242" "queue list"
expect 0 "queue list --json" -- "$mqsec" queue list --json
json "queue list --json"
printf '%s' "$out" > "$t/out.json"
python3 - "$t/out.json" "$alice" <<'PY' && ok || bad "queue list --json fields"
import json, sys
[q] = [q for q in json.load(open(sys.argv[1])) if q["name"] == "payroll"]
assert q["authenticate"] is True and q["trust"] == "signature", q
assert q["signer_subjects"] == [sys.argv[2]] and q["signer_sids"] == ["S-1-5-21-1-2-3-4242"], q
PY

expect 0 "send as alice" -- "$mqsec" send payroll --body "from alice" --label alice --auth \
  --cert "$t/pki/plain.der"
expect 0 "enroll mallory" -- "$mqsec" enroll --key p256 --subject "$alice"
mallory=$(sed -n 's/^enrolled: //p' <<<"$out")
[ "$mallory" = "$alice" ] && ok || bad "mallory's subject '$mallory' is not alice's '$alice'"
expect 0 "send as mallory" -- "$mqsec" send payroll --body "from mallory" --label mallory --auth
expect 0 "receive: alice's message" -- "$mqsec" receive payroll --timeout 2000 --json \
  --export "$t/export"
has '"label":"alice"' "receive alice"
has '"trust":\["signature","chain","signer-authorized"\]' "receive alice"
expect 1 "receive: mallory's message is rejected" -- "$mqsec" receive payroll --timeout 1000
has "MQ_ERROR_IO_TIMEOUT" "receive mallory"
# The system registry confirms too: alice's certificate bound to this user's SID by root.
expect 0 "registry add alice's token certificate" -- "$mqsec" registry add "$t/export/1/sender.der" \
  --sid "S-1-22-1-$(id -u)"
expect 0 "send as alice (external certificate)" -- "$mqsec" send payroll --body again --auth \
  --cert "$t/export/1/sender.der"
expect 0 "receive: confirmed by the system registry" -- "$mqsec" receive payroll --timeout 2000
has "confirmed: +yes \(the system registry binds the certificate to it\)" "receive (system registry)"
has "trust: +signature, chain, system-registry, signer-authorized" "receive (system registry)"
expect 0 "rejected" -- "$mqsec" rejected payroll
has "1 rejected message for queue 'payroll'" "rejected"
has "\[signer\] .*not an authorized signer" "rejected"
expect 0 "rejected --json" -- "$mqsec" rejected --json
json "rejected --json"
printf '%s' "$out" > "$t/out.json"
python3 - "$t/out.json" "$mallory" <<'PY' && ok || bad "rejected --json fields"
import json, sys
[r] = json.load(open(sys.argv[1]))
for k in ("queue", "time", "kind", "reason", "size", "truncated"):
    assert k in r, (k, r)
assert r["queue"] == "payroll" and r["kind"] == "signer", r
assert isinstance(r["size"], int) and r["size"] > 0 and r["truncated"] is False, r
assert r["label"] == "mallory" and r["certificate_subject"] == sys.argv[2], r
PY

if [ $fail -ne 0 ]; then
  echo "--- log"; cat "$t/mqsec.log" 2>/dev/null | tail -20
  echo "cli registry: $passed passed, failures above"
  exit 1
fi
echo "cli registry: $passed passed, 0 failed"
