/* mq.h compiles as C99 and C++17 (-Wall -Wextra -Wpedantic -Werror), both spellings of its name
 * are found, and its structs keep Windows x64's layout, on which .NET ports (P/Invoke
 * declarations written for mqrt.dll) rely. Built twice: abi_header_c99 and abi_header_cxx17. */
#include <Mq.h>
#include <mq.h>
#include <stddef.h>
#include <transact.h> /* and transact.h after mq.h (it includes mq.h itself too) */
#include <stdio.h>

static int failures = 0;

static void expect(const char* what, size_t ours, size_t windows) {
  if (ours != windows) {
    printf("%s: %zu here, %zu on Windows x64\n", what, ours, windows);
    ++failures;
  }
}

#define SIZE(T, n) expect("sizeof(" #T ")", sizeof(T), n)
#define OFFSET(T, m, n) expect("offsetof(" #T ", " #m ")", offsetof(T, m), n)

int main(void) {
  /* transact.h: OLE's transaction structures and winerror.h's values. */
  SIZE(BOID, 16);
  SIZE(XACTTRANSINFO, 40);
  OFFSET(XACTTRANSINFO, isoLevel, 16);
  OFFSET(XACTTRANSINFO, grfRMSupportedRetaining, 36);
  expect("XACT_E_NOTRANSACTION", (size_t)(uint32_t)XACT_E_NOTRANSACTION, 0x8004D00E);
  expect("XACT_E_CANTRETAIN", (size_t)(uint32_t)XACT_E_CANTRETAIN, 0x8004D001);
  expect("XACT_E_NOTSUPPORTED", (size_t)(uint32_t)XACT_E_NOTSUPPORTED, 0x8004D00F);
  expect("XACT_E_ABORTED", (size_t)(uint32_t)XACT_E_ABORTED, 0x8004D019);
  expect("XACTTC_SYNC", XACTTC_SYNC, 2);
  expect("XACTTC_ASYNC", XACTTC_ASYNC, 4);
  SIZE(MQPROPVARIANT, 24);
  OFFSET(MQPROPVARIANT, vt, 0);
  OFFSET(MQPROPVARIANT, ulVal, 8);
  OFFSET(MQPROPVARIANT, caub, 8);
  OFFSET(MQPROPVARIANT, blob, 8);
  OFFSET(MQPROPVARIANT, uhVal, 8);
  OFFSET(MQPROPVARIANT, puuid, 8);
  OFFSET(MQPROPVARIANT, calpwstr, 8);
  SIZE(CAUB, 16);
  OFFSET(CAUB, pElems, 8);
  SIZE(BLOB, 16);
  OFFSET(BLOB, pBlobData, 8);
  SIZE(ULARGE_INTEGER, 8);
  SIZE(LARGE_INTEGER, 8);
  SIZE(GUID, 16);
  SIZE(OBJECTID, 20);
  SIZE(FILETIME, 8);
  SIZE(MQMSGPROPS, 32);
  OFFSET(MQMSGPROPS, aPropID, 8);
  OFFSET(MQMSGPROPS, aPropVar, 16);
  OFFSET(MQMSGPROPS, aStatus, 24);
  SIZE(MQQUEUEPROPS, 32);
  SIZE(MQQMPROPS, 32);
  SIZE(MQPRIVATEPROPS, 32);
  SIZE(MQMGMTPROPS, 32);
  OFFSET(MQMGMTPROPS, aStatus, 24);
  SIZE(MQPROPERTYRESTRICTION, 32);
  OFFSET(MQPROPERTYRESTRICTION, prop, 4);
  OFFSET(MQPROPERTYRESTRICTION, prval, 8);
  SIZE(MQRESTRICTION, 16);
  OFFSET(MQRESTRICTION, paPropRes, 8);
  SIZE(MQCOLUMNSET, 16);
  SIZE(MQSORTKEY, 8);
  SIZE(MQSORTSET, 16);
  SIZE(SEQUENCE_INFO, 16);
  SIZE(HRESULT, 4);
  SIZE(ULONG, 4);
  SIZE(LONG, 4);
  SIZE(DWORD, 4);
  SIZE(VARTYPE, 2);
  SIZE(PROPID, 4);
  SIZE(HANDLE, 8);

  /* The members MSMQ programs use, by name (a missing one fails the build). */
  {
    MQPROPVARIANT v;
    GUID g = MQ_QTYPE_REPORT;
    LPWSTR names[1] = {NULL};
    v.vt = VT_BLOB;
    v.blob.cbSize = 0;
    v.blob.pBlobData = NULL;
    v.bstrVal = NULL;
    v.puuid = &g;
    v.cauuid.cElems = 1;
    v.cauuid.pElems = &g;
    v.calpwstr.cElems = 1;
    v.calpwstr.pElems = names;
    v.hVal.QuadPart = -1;
    v.uhVal.QuadPart = 1;
    v.uhVal.LowPart = 2;
    v.uhVal.u.HighPart = 3;
    v.date = 0.0;
    v.boolVal = -1;
    v.pwszVal = NULL;
    v.capropvar.cElems = 0;
    v.filetime.dwLowDateTime = 0;
    (void)v;
  }
  {
    ITransaction* tx[4] = {MQ_NO_TRANSACTION, MQ_MTS_TRANSACTION, MQ_XA_TRANSACTION,
                           MQ_SINGLE_MESSAGE};
    (void)tx;
  }
  printf("%d layout differences from Windows x64\n", failures);
  return failures == 0 ? 0 : 1;
}
