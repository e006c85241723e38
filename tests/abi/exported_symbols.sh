#!/bin/sh
# ABI test: libmqrt exports MSMQ's API (MQ*) and nothing else; a stray export (a C++ symbol,
# OpenSSL, toml++) would clash with the application's own copies and become ABI by accident.
#   exported_symbols.sh <path to libmqrt.so>
set -u
lib=${1:?usage: exported_symbols.sh LIBMQRT}
syms=$(nm -D --defined-only "$lib") || { echo "nm -D failed on $lib" >&2; exit 1; }
# nm lines: "<address> <type> <name>[@version]"; skip blank lines.
names=$(printf '%s\n' "$syms" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//')
status=0
bad=$(printf '%s\n' "$names" | grep -v '^MQ' | grep -v '^$')
if [ -n "$bad" ]; then
  echo "libmqrt exports symbols that do not start with MQ:" >&2
  printf '%s\n' "$bad" >&2
  status=1
fi
for required in MQGetSecurityContextEx MQGetSecurityContext MQFreeSecurityContext \
    MQRegisterCertificate MQCreateQueue MQDeleteQueue MQOpenQueue MQCloseQueue \
    MQPathNameToFormatName MQHandleToFormatName MQSendMessage MQReceiveMessage \
    MQReceiveMessageByLookupId MQCreateCursor MQCloseCursor MQFreeMemory MQGetQueueProperties \
    MQSetQueueProperties MQPurgeQueue MQGetPrivateComputerInformation MQMgmtGetInfo \
    MQGetOverlappedResult MQGetMachineProperties MQMgmtAction MQBeginTransaction \
    MQLocateBegin MQLocateNext MQLocateEnd MQInstanceToFormatName MQADsPathToFormatName \
    MQMoveMessage MQMarkMessageRejected MQGetQueueSecurity MQSetQueueSecurity; do
  if ! printf '%s\n' "$names" | grep -qx "$required"; then
    echo "libmqrt does not export $required" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "libmqrt exports $(printf '%s\n' "$names" | grep -c '^MQ') MQ* symbols and nothing else"
exit $status
