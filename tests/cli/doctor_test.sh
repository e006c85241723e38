#!/usr/bin/env bash
# `mqsec doctor` and the token errors of the command line (issue 11, items 4-6, 8):
#  - SoftHSM: a missing message store is a warning, not a failure (exit 0, "created when first
#    used"); doctor signs a test digest, with the context-specific login of a PIN-always key;
#    a wrong PIN is reported with what to do, and not presented again by the next run;
#  - the mock module (loaded by the command as its module, set up by $MQSEC_MOCK_SETUP, its
#    calls counted in $MQSEC_MOCK_COUNTS): the PIN's tries (COUNT_LOW warns; FINAL_TRY and
#    LOCKED fail without any C_Login), a reader with a PIN pad (no PIN source), and a card that
#    cannot generate keys: `mqsec enroll` says to provision it and adopt, never to run doctor,
#    doctor says to adopt, and `enroll --if-not-exists` adopts the card's certificate.
# Usage: doctor_test.sh BUILD_DIR MOCK_MODULE
set -uo pipefail
build=$(cd "${1:?usage: doctor_test.sh BUILD_DIR MOCK_MODULE}" && pwd)
mock=${2:?usage: doctor_test.sh BUILD_DIR MOCK_MODULE}
mqsec="$build/src/cli/mqsec"

t=$(mktemp -d "${TMPDIR:-/tmp}/mqsec-cli-doctor.XXXXXX")
trap 'rm -rf "$t"' EXIT
umask 077
# shellcheck source=tests/cli/softhsm_token.sh
. "$(dirname "${BASH_SOURCE[0]}")/softhsm_token.sh"
softhsm_token "$t" hsm "$build/tests/mqsec-init-token" || exit 1
printf 1234 > "$t/mock.pin"
printf 9999 > "$t/wrong.pin"
config() {  # config TOKEN_URI [ALLOW_EXTRACTABLE]: a fresh store and profile directory each time
  rm -rf "$t/store" "$t/users"
  softhsm_config "$t" "$1" "allow-extractable-keys = ${2:-false}"
}
hsm_uri() { echo "pkcs11:token=hsm?module-path=$module&pin-source=file:$t/${1:-user.pin}"; }
mock_uri() { echo "pkcs11:token=mock-a?module-path=$mock${1:+&pin-source=file:$t/$1}"; }
export MQSEC_MOCK_COUNTS="$t/counts"

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
logins() { awk '$1 == "C_Login" { n = $2 } END { print n + 0 }' "$t/counts"; }

# A P-256 key and certificate made in software (files in $t).
keypair() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -days 30 -keyout "$t/$1.key" -out "$t/$1.pem" 2>/dev/null &&
    openssl pkcs8 -topk8 -nocrypt -in "$t/$1.key" -outform DER -out "$t/$1.p8" &&
    openssl x509 -in "$t/$1.pem" -outform DER -out "$t/$1.der"
}

# ---- SoftHSM ----------------------------------------------------------------------------------
config "$(hsm_uri)"
expect 0 "enroll" -- "$mqsec" enroll --key p256
rm -rf "$t/store"
expect 0 "doctor without a store" -- "$mqsec" doctor
has "^warn  certificate registration +no message store yet at $t/store \(not a failure: it is created when first used\)" "doctor without a store"
has "fix: \`mqsec enroll --if-not-exists\` creates it" "doctor without a store"
has "^ok    test signature +signed a random digest on the token; the certificate verifies it$" "doctor without a store"
has "^ok    PIN state " "doctor without a store"
has "^all checks passed" "doctor without a store"
lacks "^FAIL" "doctor without a store"

# A PIN-always key (CKA_ALWAYS_AUTHENTICATE), provisioned by pkcs11-tool and adopted.
keypair pa "pin always" || { echo "openssl failed"; exit 1; }
for obj in "privkey $t/pa.p8 --always-auth" "cert $t/pa.der"; do
  set -- $obj
  pkcs11-tool --module "$module" --token-label hsm --login --pin "$(cat "$t/user.pin")" \
    --write-object "$2" --type "$1" ${3:-} --id 9c --label "pin always" >/dev/null 2>&1 ||
    { echo "pkcs11-tool failed"; exit 1; }
done
config "$(hsm_uri)" true
expect 0 "adopt the PIN-always key" -- "$mqsec" enroll --adopt 'pkcs11:id=%9c'
expect 0 "doctor on a PIN-always key" -- "$mqsec" doctor
has "always-authenticate" "doctor on a PIN-always key"
has "^ok    test signature .*PIN-always key: context-specific login with the PIN from file:$t/user.pin" "doctor on a PIN-always key"

# A wrong PIN: what to do, and the next run does not present it again.
config "$(hsm_uri wrong.pin)"
expect 1 "doctor with a wrong PIN" -- "$mqsec" doctor
has "^FAIL  login .*CKR_PIN_INCORRECT" "doctor with a wrong PIN"
has "fix: the PIN from file:$t/wrong.pin is wrong: correct the PIN in the PIN source" "doctor with a wrong PIN"
expect 1 "doctor with the same wrong PIN again" -- "$mqsec" doctor
has "^FAIL  login .*refused this PIN before" "doctor with the same wrong PIN again"
expect 1 "context with the same wrong PIN" -- "$mqsec" context --cert "$t/pa.der"
has "\[pin-refused-before\]" "context with the same wrong PIN"
has "^hint: put the right PIN in the PIN source" "context with the same wrong PIN"

# ---- the mock module: PIN tries, PIN pad, a card that cannot generate keys ----------------------
keypair card "card holder" || { echo "openssl failed"; exit 1; }
card_key="0:key=$t/card.key,cert=$t/card.der,id=9c,object=SIGN key,always-auth"

config "$(mock_uri mock.pin)"
export MQSEC_MOCK_SETUP="0:pin-failures=2;$card_key"
expect 1 "doctor on the final try" -- "$mqsec" doctor
has "^FAIL  PIN state +one user PIN try is left \(CKF_USER_PIN_FINAL_TRY\); mqsec does not present the PIN" "doctor on the final try"
has "fix: one PIN try is left and mqsec will not risk it" "doctor on the final try"
has "^skip  login +no PIN is presented" "doctor on the final try"
[ "$(logins)" = 0 ] && ok || bad "doctor on the final try called C_Login $(logins) times"
expect 1 "context on the final try" -- "$mqsec" context --cert "$t/card.der"
has "\[pin-final-try\]" "context on the final try"
has "^hint: one PIN try is left" "context on the final try"
[ "$(logins)" = 0 ] && ok || bad "context on the final try called C_Login $(logins) times"

export MQSEC_MOCK_SETUP="0:pin-failures=3;$card_key"
expect 1 "doctor on a locked PIN" -- "$mqsec" doctor
has "^FAIL  PIN state +the user PIN is locked" "doctor on a locked PIN"
has "fix: unblock the PIN with the PUK" "doctor on a locked PIN"
[ "$(logins)" = 0 ] && ok || bad "doctor on a locked PIN called C_Login $(logins) times"

# COUNT_LOW warns; the card's certificate is adopted and signs (PIN-always) with the right PIN.
export MQSEC_MOCK_SETUP="0:pin-failures=1,keygen=unsupported;$card_key"
expect 0 "enroll --if-not-exists on a card that cannot generate keys" -- "$mqsec" enroll --if-not-exists
has "^adopted: CN=card holder" "enroll --if-not-exists on a card that cannot generate keys"
export MQSEC_MOCK_SETUP="0:pin-failures=1;$card_key"
expect 0 "doctor with a wasted try" -- "$mqsec" doctor
has "^warn  PIN state +a wrong user PIN was entered since the last good login" "doctor with a wasted try"
has "^ok    test signature .*PIN-always key" "doctor with a wasted try"

# No key generation and nothing on the card: enroll says what to do, and it is not doctor.
config "$(mock_uri mock.pin)"
export MQSEC_MOCK_SETUP="0:keygen=unsupported"
expect 1 "enroll on a card that cannot generate keys" -- "$mqsec" enroll
has "cannot generate key pairs" "enroll on a card that cannot generate keys"
has "vendor tool" "enroll on a card that cannot generate keys"
has "mqsec enroll --adopt" "enroll on a card that cannot generate keys"
lacks "doctor" "enroll on a card that cannot generate keys"
export MQSEC_MOCK_SETUP="0:keygen=not-offered"
expect 1 "doctor on a card that cannot generate keys" -- "$mqsec" doctor
has "^FAIL  internal certificate +the profile names none" "doctor on a card that cannot generate keys"
has "fix: token 'mock-a' cannot generate key pairs .*mqsec enroll --adopt" "doctor on a card that cannot generate keys"
export MQSEC_MOCK_SETUP="0:keygen=unsupported;$card_key"
expect 1 "enroll on a card with a certificate to adopt" -- "$mqsec" enroll
has "it holds 1 certificate\(s\) with their private key" "enroll on a card with a certificate to adopt"
has "^  'SIGN key' id=9c: CN=card holder" "enroll on a card with a certificate to adopt"
has "^hint: run \`mqsec enroll --adopt\`" "enroll on a card with a certificate to adopt"
lacks "doctor" "enroll on a card with a certificate to adopt"
expect 1 "doctor on a card with a certificate to adopt" -- "$mqsec" doctor
has "fix: run \`mqsec enroll --adopt\` to use the certificate on the token" "doctor on a card with a certificate to adopt"

# A PIN pad: no pin-source; the PIN is typed on the reader.
config "$(mock_uri)"
export MQSEC_MOCK_SETUP="0:pin-pad=ok"
expect 1 "doctor with a PIN pad" -- "$mqsec" doctor
has "^ok    PIN state .*PIN pad" "doctor with a PIN pad"
has "^ok    login +logged in \(protected authentication path\)" "doctor with a PIN pad"
[ "$(logins)" = 1 ] && ok || bad "doctor with a PIN pad called C_Login $(logins) times"
unset MQSEC_MOCK_SETUP

echo "doctor_test: $passed checks passed$([ $fail -ne 0 ] && echo ', some FAILED')"
exit $fail
