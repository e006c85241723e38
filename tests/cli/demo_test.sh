#!/usr/bin/env bash
# Runs the README demo on the built tree and checks that it shows the whole story: the
# round trip with SID and subject, an openssl-verified signature, both rejections and NACKs;
# then, when RabbitMQ is installed, the two machines: 3 messages signed on hosta received
# verified on hostb with the sender's SID, the message altered on the broker rejected on hostb
# and its NACK back in hosta's admin queue. Without RabbitMQ the demo must say it skipped that.
set -uo pipefail
out=$("$1/../scripts/demo-run.sh" "$2" 2>&1)
rc=$?
fail=0
check() { grep -qE -- "$1" <<<"$out" || { echo "demo output lacks: $1"; fail=1; }; }
[ $rc -eq 0 ] || { echo "demo exited $rc"; fail=1; }
local_part=$(sed -n '1,/^Local part finished/p' <<<"$out")
remote_part=$(sed -n '/^Local part finished/,$p' <<<"$out")
check "^enrolled: CN="
check 'security context 0x[0-9a-f]{8} obtained'
check 'freed'
check 'sent 3 messages to .orders., signed with sha256'
check 'authenticated: 3 \(MQMSG_AUTHENTICATED_SIG20\)'
check 'sender SID: +S-1-22-1-'
check 'confirmed: +yes'
check '^Verified OK$'
check 'MQ_ERROR_IO_TIMEOUT'
check '2 rejected messages'
check 'signature does not verify'
check 'unauthenticated message on a queue that requires authentication'
[ "$(grep -c 'class:         0x8006' <<<"$local_part")" -eq 2 ] || { echo "expected 2 NACKs"; fail=1; }
check '^Local part finished'

# The two machines. The sender's SID is the one enroll registered.
sid=$(sed -n 's/^  registered to SID: //p' <<<"$out" | head -n 1)
if skip=$(grep -m1 '^(two-machine part skipped: ' <<<"$remote_part"); then
  if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && grep -q 'rabbitmq-server is not installed' <<<"$skip"; then
    echo "RabbitMQ is installed but the demo says it is not: $skip"; fail=1
  else
    echo "note: $skip"
  fi
else
  rcheck() { grep -qE -- "$1" <<<"$remote_part" || { echo "two-machine part lacks: $1"; fail=1; }; }
  rcheck '^waiting for the broker .*amqp://127\.0\.0\.1:[0-9]+ '
  rcheck "^\[hostb\]\\$ mqsec queue create inbox --authenticate"
  rcheck '^\[hosta\] mqsec agent started'
  rcheck '^\[hostb\] mqsec agent started'
  rcheck '^MQSendMessage: MQ_OK x 3 to DIRECT=OS:hostb\\private\$\\inbox \(signed'
  rcheck '^DIRECT=OS:hostb\\private\$\\inbox +[0-3] +(forwarder-running|waiting)$'
  rcheck '^DIRECT=OS:hostb\\private\$\\inbox +0 +(forwarder-running|waiting)$'
  # Received on hostb: 3 messages, each authenticated, with the sender's SID.
  received=$(sed -n '/^\[hostb\]\$ mqsec receive inbox/,/^$/p' <<<"$remote_part")
  n_auth=$(grep -c '^  authenticated: 3 (MQMSG_AUTHENTICATED_SIG20)' <<<"$received")
  n_sid=$(grep -cF "  sender SID:    $sid" <<<"$received")
  n_body=$(grep -cE '^  body: +ship 20 pallets to Lyon$' <<<"$received")
  # --export rebuilds each envelope from the received fields, hosta's machine name included, and
  # fails unless the rebuilt bytes reproduce the signature.
  n_exp=$(grep -cE '^  exported to: +' <<<"$received")
  if [ -z "$sid" ] || [ "$n_auth" -ne 3 ] || [ "$n_sid" -ne 3 ] || [ "$n_body" -ne 3 ] ||
    [ "$n_exp" -ne 3 ]; then
    echo "hostb should receive 3 authenticated messages from SID '$sid' with the body sent," \
      "exported: $n_auth authenticated, $n_sid with the SID, $n_body with the body," \
      "$n_exp exported"
    fail=1
  fi
  rcheck '^\[hostb\] mqsec agent stopped'
  rcheck '^MQSendMessage: MQ_OK x 1 to DIRECT=OS:hostb\\private\$\\inbox \(signed.*NACKs'
  rcheck "^\(took message [0-9a-f]{40} off mqsec\.in\.hostb on the broker, changed 'ship 20' to 'ship 90'"
  # Rejected on hostb, never received there.
  rejected=$(sed -n '/^\[hostb\]\$ mqsec rejected inbox/,/^$/p' <<<"$remote_part")
  grep -q "^1 rejected message for queue 'inbox':" <<<"$rejected" \
    || { echo "hostb's rejected record should hold 1 message"; fail=1; }
  grep -qE '\[signature\] signature does not verify' <<<"$rejected" \
    || { echo "hostb should reject the altered message for its signature"; fail=1; }
  grep -q "label 'altered', from CN=" <<<"$rejected" \
    || { echo "hostb's rejection should name the altered message"; fail=1; }
  [ "$(grep -cE '^  label: +altered$' <<<"$received")" -eq 0 ] \
    || { echo "the altered message reached hostb's inbox"; fail=1; }
  # The NACK back on hosta: class 0x8006, about the altered message.
  nack=$(sed -n '/^\[hosta\]\$ mqsec receive admin/,$p' <<<"$remote_part")
  grep -q '^  class:         0x8006 (NACK_BAD_SIGNATURE)$' <<<"$nack" \
    || { echo "no NACK of class 0x8006 in hosta's admin queue"; fail=1; }
  grep -q '^  label:         altered$' <<<"$nack" \
    || { echo "the NACK on hosta should carry the altered message's label"; fail=1; }
  rcheck '^Demo finished: '
fi
if [ $fail -ne 0 ]; then printf '%s\n' "$out"; exit 1; fi
echo "demo: 1 passed, 0 failed"
