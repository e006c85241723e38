#!/usr/bin/env bash
# The Win32 shim defines no MSMQ name (issue 13): every name that shim/windows.h, shim/tchar.h,
# shim/win32.c and shim/mfc/*.h define and mqsec's headers (mq.h, and transact.h where there is
# one) also define is one of the Windows base types and macros both need (below, each a name of
# windef.h, winnt.h, basetsd.h, winerror.h or guiddef.h, not of MSMQ's mq.h), declared
# identically or guarded, so that either header may come first. Where mingw-w64's copy of
# Microsoft's mq.h and transact.h is installed (Debian: mingw-w64-common), the shim is also
# checked to define none of the names those define.
#   check_shim.sh MQSEC_INCLUDE_DIR SHIM_DIR [REFERENCE_INCLUDE_DIR]
set -euo pipefail
inc=${1:?usage: check_shim.sh MQSEC_INCLUDE_DIR SHIM_DIR [REFERENCE_INCLUDE_DIR]}
shim=${2:?usage: check_shim.sh MQSEC_INCLUDE_DIR SHIM_DIR [REFERENCE_INCLUDE_DIR]}
ref=${3:-/usr/share/mingw-w64/include}
names=$(dirname "$0")/msmq_names.sh

shared="APIENTRY BOOL BYTE CHAR CLSID DWORD FAILED FALSE FLOAT GUID GUID_DEFINED HANDLE HRESULT
IID INFINITE INT LONG LONGLONG LPCLSID LPCSTR LPCWSTR LPDWORD LPGUID LPSTR LPVOID LPWSTR PHANDLE
PVOID SHORT SUCCEEDED TRUE UCHAR UINT ULONG ULONGLONG USHORT UUID VOID WCHAR WORD _GUID
ULONG_PTR S_OK S_FALSE E_FAIL E_INVALIDARG E_OUTOFMEMORY NOERROR"

t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
bash "$names" --defines "$shim"/*.h "$shim"/*.c "$shim"/mfc/*.h >"$t/shim"
[ -s "$t/shim" ] || { echo "FAIL: no names found in $shim"; exit 1; }
headers=("$inc/mq.h")
[ -e "$inc/transact.h" ] && headers+=("$inc/transact.h")
bash "$names" --defines "${headers[@]}" >"$t/mq"
tr -s ' \n' '\n' <<<"$shared" | grep . | sort -u >"$t/shared"
status=0
extra=$(comm -12 "$t/shim" "$t/mq" | comm -23 - "$t/shared" | tr '\n' ' ')
if [ -n "$extra" ]; then
  echo "FAIL: the shim defines names of mqsec's ${headers[*]##*/}: $extra"
  status=1
fi
if [ -e "$ref/mq.h" ] && [ -e "$ref/transact.h" ]; then
  bash "$names" --defines "$ref/mq.h" "$ref/transact.h" >"$t/ref"
  msmq=$(comm -12 "$t/shim" "$t/ref" | tr '\n' ' ')
  if [ -n "$msmq" ]; then
    echo "FAIL: the shim defines names of Microsoft's mq.h or transact.h: $msmq"
    status=1
  fi
  checked=" and none of the $(wc -l <"$t/ref") names of $ref/{mq,transact}.h"
else
  checked=" ($ref/mq.h not installed: not compared with Microsoft's header)"
fi
[ "$status" -eq 0 ] &&
  echo "shim: $(wc -l <"$t/shim") names; those ${headers[*]##*/} also define are $(comm -12 "$t/shim" "$t/mq" | wc -l) of the $(wc -l <"$t/shared") shared Win32 ones$checked"
exit "$status"
