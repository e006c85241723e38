#!/usr/bin/env bash
# `mqsec enroll --adopt [URI]` end to end on a throwaway SoftHSM token (issue 11, item 4): keys
# and certificates provisioned on the token by another tool (pkcs11-tool, as a card vendor's
# tool would) become the internal certificate, are registered, and sign; several candidates are
# listed and chosen by URI; a refusal never points at `mqsec doctor`. (A card that cannot
# generate keys is covered on the mock module: test_enroll.)
# Usage: adopt_test.sh BUILD_DIR
set -uo pipefail
build=$(cd "${1:?usage: adopt_test.sh BUILD_DIR}" && pwd)
mqsec="$build/src/cli/mqsec"

t=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-cli-adopt.XXXXXX")
trap 'rm -rf "$t"' EXIT
umask 077
# shellcheck source=tests/cli/softhsm_token.sh
. "$(dirname "${BASH_SOURCE[0]}")/softhsm_token.sh"
softhsm_token "$t" card "$build/tests/mqsec-init-token" || exit 1
write_config() {  # $1: allow-extractable-keys
  softhsm_config "$t" "pkcs11:token=card?module-path=$module&pin-source=file:$t/user.pin" \
    "allow-extractable-keys = $1"
}

# provision ID CN: a P-256 key made in software and its self-signed certificate, written to the
# token with CKA_ID ID (the PIN on pkcs11-tool's argv: a throwaway token).
provision() {
  local id=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -days 30 -keyout "$t/$1.key" -out "$t/$1.pem" 2>/dev/null || return 1
  openssl pkcs8 -topk8 -nocrypt -in "$t/$1.key" -outform DER -out "$t/$1.p8" &&
    openssl x509 -in "$t/$1.pem" -outform DER -out "$t/$1.der" || return 1
  for obj in "privkey $t/$id.p8" "cert $t/$id.der"; do
    set -- $obj
    pkcs11-tool --module "$module" --token-label card --login --pin "$(cat "$t/user.pin")" \
      --write-object "$2" --type "$1" --id "$id" --label "slot $id" >/dev/null 2>&1 || return 1
  done
}

fail=0 passed=0
ok() { passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; fail=1; }
expect() {  # expect CODE DESCRIPTION -- command...
  local code=$1 what=$2
  shift 3
  out=$("$@" 2>&1)
  local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$what: exit $rc, expected $code"; printf '%s\n' "$out"; else ok; fi
}
has() { grep -qE -- "$1" <<<"$out" && ok || { bad "$2: output lacks '$1'"; printf '%s\n' "$out"; }; }
lacks() { grep -qE -- "$1" <<<"$out" && { bad "$2: output has '$1'"; printf '%s\n' "$out"; } || ok; }

provision 9a "alice auth" || { echo "provisioning failed"; exit 1; }

# An imported key (CKA_ALWAYS_SENSITIVE false) is refused as security contexts would refuse it.
write_config false
expect 1 "adopt an imported key" -- "$mqsec" enroll --adopt
has "cannot adopt 'CN=alice auth'" "adopt an imported key"
has "allow-extractable-keys" "adopt an imported key"
lacks "doctor" "adopt an imported key"

write_config true
expect 0 "adopt the only certificate" -- "$mqsec" enroll --adopt
has "^adopted: CN=alice auth" "adopt the only certificate"
has "certificate: pkcs11:token=card;serial=[0-9a-f]+;id=%9A;type=cert" "adopt the only certificate"
has "registered to SID: S-1-22-1-$(id -u)" "adopt the only certificate"
expect 0 "whoami after adopt" -- "$mqsec" whoami
has "CN=alice auth" "whoami after adopt"
expect 0 "context after adopt" -- "$mqsec" context
has "certificate: CN=alice auth" "context after adopt"

provision 9c "alice sign" || { echo "provisioning failed"; exit 1; }
expect 1 "adopt with two candidates" -- "$mqsec" enroll --adopt
has "2 certificates on token 'card'" "adopt with two candidates"
has "'slot 9a' id=9a: CN=alice auth" "adopt with two candidates"
has "'slot 9c' id=9c: CN=alice sign" "adopt with two candidates"
has "MQ_ERROR_INVALID_PARAMETER" "adopt with two candidates"
lacks "doctor" "adopt with two candidates"
expect 0 "adopt by id" -- "$mqsec" enroll --adopt 'pkcs11:id=%9c'
has "^adopted: CN=alice sign" "adopt by id"
expect 0 "adopt by object label" -- "$mqsec" enroll --adopt 'pkcs11:object=slot%209a'
has "^adopted: CN=alice auth" "adopt by object label"
expect 0 "if-not-exists keeps it" -- "$mqsec" enroll --adopt 'pkcs11:id=%9c' --if-not-exists
has "^already enrolled: CN=alice auth" "if-not-exists keeps it"
expect 1 "adopt a URI that selects nothing" -- "$mqsec" enroll --adopt 'pkcs11:id=%01'
has "MQ_ERROR_INVALID_CERTIFICATE" "adopt a URI that selects nothing"
expect 2 "--adopt with --key" -- "$mqsec" enroll --adopt --key p256

echo "adopt_test: $passed checks passed$([ $fail -ne 0 ] && echo ', some FAILED')"
exit $fail
