#!/bin/sh
# mqsec-bench on the virtual smartcard (issue 11, "Measure"): starts the test suite's card bed
# (tests/card/card_bed.py: a private pcscd with vsmartcard's vpcd and our PIV card emulator, in
# its own mount, network and PID namespaces; docs/operations.md, "The virtual smartcard test
# bed"), runs mqsec-bench --token on card A through OpenSC's opensc-pkcs11.so, and stops the bed
# again, also when the bench fails or this script is interrupted.
#
#   scripts/bench-card.sh [BUILD_DIR] [-- BENCH ARGS...]
#
# BUILD_DIR defaults to build (it must hold bench/mqsec-bench). Default bench arguments:
#   --threads 1,4 --cases raw_sign,signed_send,signed_send_shared --seconds 10
# Arguments after -- replace them (--token and --module are always given). Card A holds an
# RSA-2048 key in slot 9A and a P-256 PIN-always key in slot 9C; the bench measures both.
# The card's PIN (123456, the emulator's) goes to a 0600 file in the temporary directory, never
# on a command line. Needs what the card tests need: pcscd, vsmartcard-vpcd, opensc,
# python3-cryptography (scripts/deps.sh), unshare, and root or user namespaces.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  build=$1
  shift
fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then
  shift
else
  set -- --threads 1,4 --cases raw_sign,signed_send,signed_send_shared --seconds 10
fi
bench=$build/bench/mqsec-bench
module=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so
python=/usr/bin/python3 # Debian's, with python3-cryptography
[ -x "$bench" ] || { echo "bench-card: no $bench (cmake --build $build --target mqsec-bench)" >&2; exit 1; }
[ -r "$module" ] || { echo "bench-card: no $module (install opensc)" >&2; exit 1; }

d=$(mktemp -d /tmp/mqsec-bench-card-XXXXXX)
bed_pid=
bench_pid=
cleanup() {
  status=$?
  trap - EXIT INT TERM HUP
  if [ -n "$bench_pid" ]; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  # The bed ends at EOF on its stdin (our fd 3 was the fifo's only writer). If it has not
  # within 5 s, unshare is killed, and its --kill-child sends the bed SIGTERM (unshare itself
  # ignores SIGTERM while it waits for its child).
  exec 3>&-
  if [ -n "$bed_pid" ]; then
    i=0
    while kill -0 "$bed_pid" 2>/dev/null && [ $i -lt 50 ]; do
      sleep 0.1
      i=$((i + 1))
    done
    kill -KILL "$bed_pid" 2>/dev/null || true
    wait "$bed_pid" 2>/dev/null || true
  fi
  rm -rf "$d"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

"$here/tests/pki/make-pki.sh" "$d/pki" >/dev/null
mkfifo "$d/bed.in"
# Opened read-write so that the open does not wait for the bed; the bed sees EOF when this
# script (the only writer) ends, however it ends.
exec 3<>"$d/bed.in"
ns="$(readlink /proc/self/ns/mnt),$(readlink /proc/self/ns/net)"
userns=-r
[ "$(id -u)" = 0 ] && userns=
# shellcheck disable=SC2086
unshare $userns -m -n -p -f --kill-child=SIGTERM "$python" "$here/tests/card/card_bed.py" \
  --dir "$d/bed" --ca-cert "$d/pki/inter.pem" --ca-key "$d/pki/inter.key" \
  --sid "S-1-22-1-$(id -u)" --host-ns "$ns" --insert A:0 \
  <"$d/bed.in" >"$d/bed.out" 2>"$d/bed.log" 3>&- &
bed_pid=$!

i=0
until grep -q '^ready' "$d/bed.out" 2>/dev/null; do
  if ! kill -0 "$bed_pid" 2>/dev/null || grep -q '^err' "$d/bed.out" 2>/dev/null || [ $i -ge 1200 ]; then
    echo "bench-card: the card bed did not start:" >&2
    cat "$d/bed.out" "$d/bed.log" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
  i=$((i + 1))
done

(umask 077 && printf '%s' 123456 >"$d/pin")
serial=$(cat "$d/bed/cards/A/serial")
export PCSCLITE_CSOCK_NAME="$d/bed/run/pcscd.comm" OPENSC_CONF="$d/bed/opensc.conf"
echo "bench-card: card A (serial $serial) in the bed's reader 0; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# In the background, so that a signal to this script is handled at once (sh runs traps only
# between commands), and the bench is stopped with the bed.
"$bench" --token "pkcs11:serial=$serial?pin-source=file:$d/pin" --module "$module" "$@" &
bench_pid=$!
wait "$bench_pid"
bench_pid=
echo "bench-card: load after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# What the card saw over the whole run (APDUs, VERIFYs, signatures made and refused).
echo "bench-card: card A: $("$python" "$here/tests/card/card_bed.py" ctl "$d/bed" stats A)" >&2
