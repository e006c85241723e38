#!/bin/sh
# mqsec(1) documents every verb: each subcommand `mqsec --help` lists appears as a verb
# (*verb* at the start of a line) in docs/man/mqsec.1.scd, and queue's and registry's own
# subcommands as "*queue create*" and so on (issue 15).
#   man_test.sh MQSEC SOURCE_DIR
set -u
mqsec=${1:?usage: man_test.sh MQSEC SOURCE_DIR}
page=${2:?usage: man_test.sh MQSEC SOURCE_DIR}/docs/man/mqsec.1.scd
status=0
verbs=$("$mqsec" --help | awk '/^Subcommands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
[ -n "$verbs" ] || { echo "no subcommands in mqsec --help" >&2; exit 1; }
for v in $verbs; do
  subs=$("$mqsec" "$v" --help | awk '/^Subcommands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
  if [ -z "$subs" ]; then
    grep -q "^\*$v\*" "$page" || grep -q "^\*$v " "$page" ||
      { echo "mqsec.1 does not document the verb '$v'" >&2; status=1; }
  else
    for s in $subs; do
      grep -q "^\*$v $s\*" "$page" ||
        { echo "mqsec.1 does not document '$v $s'" >&2; status=1; }
    done
  fi
done
[ $status -eq 0 ] && echo "mqsec.1 documents every verb: $(echo $verbs)"
exit $status
