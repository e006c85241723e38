# shellcheck shell=bash
# Sourced by the shell tests: a throwaway SoftHSM token and an mqsec configuration for it.
#
#   . "$src/tests/cli/softhsm_token.sh"
#   softhsm_token DIR LABEL INIT_TOKEN   (INIT_TOKEN: the build's tests/mqsec-init-token)
#   softhsm_config DIR TOKEN_URI [TOKEN_LINE]
#
# Creates the token LABEL in DIR/tokens with its own configuration (DIR/softhsm2.conf, exported
# as SOFTHSM2_CONF, so no system token is touched), random user and SO PINs in DIR/user.pin and
# DIR/so.pin (mode 0600; never on a command line), and sets $module to SoftHSM's module path.
# Returns non-zero (with mqsec-init-token's message) when the token cannot be made.
softhsm_token() {
  local dir=${1:?softhsm_token DIR LABEL INIT_TOKEN} label=${2:?} init_token=${3:?}
  module=/usr/lib/softhsm/libsofthsm2.so
  [ -e "$module" ] || module=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
  mkdir -p "$dir/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$dir/tokens" >"$dir/softhsm2.conf"
  export SOFTHSM2_CONF=$dir/softhsm2.conf
  (
    umask 077
    head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/user.pin"
    head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/so.pin"
  )
  "$init_token" --module "$module" --label "$label" \
    --pin-file "$dir/user.pin" --so-pin-file "$dir/so.pin" >/dev/null
}

# Writes DIR/mqsec.toml: [token] uri TOKEN_URI (plus TOKEN_LINE, e.g. "allow-extractable-keys =
# true", when given), the store in DIR/store, profiles in DIR/users/%u and Unix SIDs; exports
# MQSEC_CONFIG, MQSEC_LOG (DIR/mqsec.log) and MQSEC_STATE_DIR (DIR/state). A test appends its
# own sections (e.g. [trust]) to the file.
softhsm_config() {
  local dir=${1:?softhsm_config DIR TOKEN_URI [TOKEN_LINE]} uri=${2:?}
  cat >"$dir/mqsec.toml" <<CONF
[token]
uri = "$uri"
${3:-}
[store]
path = "$dir/store"
[profiles]
dir = "$dir/users/%u"
[identity]
sid = "unix"
CONF
  export MQSEC_CONFIG=$dir/mqsec.toml MQSEC_LOG=file:$dir/mqsec.log MQSEC_STATE_DIR=$dir/state
}
