/*
 * abi_utf16: libmqrt.dll.so (the UTF-16 build for .NET, docs/dotnet.md) from plain C11 with
 * mq.h's opt-in MQSEC_UTF16 (WCHAR is char16_t, u"..." literals): lengths and limits in UTF-16
 * units, characters outside the BMP as surrogate pairs, unpaired surrogates refused with MSMQ's
 * codes, buffers too small with the needed length in units, allocated strings freed with
 * MQFreeMemory. The C# tests (tests/dotnet) check the same through Mono; this one also runs in
 * the sanitizer builds, which Mono cannot load an instrumented library into.
 * Run under mqsec-with-softhsm (a store and configuration; nothing is signed here).
 * Prints "N passed, N failed" and exits non-zero if anything failed.
 */
#include <mq.h>

#include <stdio.h>
#include <string.h>

#include "abi_check.h"

_Static_assert(sizeof(WCHAR) == 2, "MQSEC_UTF16: WCHAR is a UTF-16 unit");
_Static_assert(sizeof(MQPROPVARIANT) == 24, "MQPROPVARIANT keeps its layout");

static size_t units(const WCHAR* s) {
  size_t n = 0;
  while (s[n] != 0) ++n;
  return n;
}

static int same(const WCHAR* a, const WCHAR* b) {
  return units(a) == units(b) && memcmp(a, b, units(a) * sizeof(WCHAR)) == 0;
}

static const WCHAR kPath[] = u".\\private$\\utf16-queue";
/* 2 + 1 + 2 + 1 + 2 units: a G clef and a grinning face are surrogate pairs. */
static const WCHAR kLabel[] = u"\u00fc \U0001D11E \U0001F600";

static HRESULT create(const WCHAR* path, const WCHAR* label, WCHAR* format, DWORD* len) {
  QUEUEPROPID id[2] = {PROPID_Q_PATHNAME, PROPID_Q_LABEL};
  MQPROPVARIANT v[2];
  memset(v, 0, sizeof v);
  v[0].vt = VT_LPWSTR;
  v[0].pwszVal = (LPWSTR)path;
  v[1].vt = VT_LPWSTR;
  v[1].pwszVal = (LPWSTR)label;
  MQQUEUEPROPS props = {label != NULL ? 2 : 1, id, v, NULL};
  return MQCreateQueue(NULL, &props, format, len);
}

static HRESULT set_label(const WCHAR* format, const WCHAR* label) {
  QUEUEPROPID id[1] = {PROPID_Q_LABEL};
  MQPROPVARIANT v[1];
  memset(v, 0, sizeof v);
  v[0].vt = VT_LPWSTR;
  v[0].pwszVal = (LPWSTR)label;
  MQQUEUEPROPS props = {1, id, v, NULL};
  return MQSetQueueProperties(format, &props);
}

static HRESULT send_label(QUEUEHANDLE q, const WCHAR* label) {
  MSGPROPID id[2] = {PROPID_M_LABEL, PROPID_M_BODY};
  MQPROPVARIANT v[2];
  static UCHAR body[] = "utf16";
  memset(v, 0, sizeof v);
  v[0].vt = VT_LPWSTR;
  v[0].pwszVal = (LPWSTR)label;
  v[1].vt = VT_UI1 | VT_VECTOR;
  v[1].caub.pElems = body;
  v[1].caub.cElems = 5;
  MQMSGPROPS props = {2, id, v, NULL};
  return MQSendMessage(q, &props, MQ_NO_TRANSACTION);
}

/* Receives (or peeks) with a label buffer of `capacity` units; *len: LABEL_LEN afterwards. */
static HRESULT receive_label(QUEUEHANDLE q, DWORD action, WCHAR* label, ULONG capacity,
                             ULONG* len) {
  MSGPROPID id[2] = {PROPID_M_LABEL, PROPID_M_LABEL_LEN};
  MQPROPVARIANT v[2];
  memset(v, 0, sizeof v);
  v[0].vt = VT_LPWSTR;
  v[0].pwszVal = label;
  v[1].vt = VT_UI4;
  v[1].ulVal = capacity;
  MQMSGPROPS props = {2, id, v, NULL};
  HRESULT hr = MQReceiveMessage(q, 0, action, &props, NULL, NULL, NULL, MQ_NO_TRANSACTION);
  *len = v[1].ulVal;
  return hr;
}

int main(void) {
  WCHAR format[256];
  WCHAR small[4];
  DWORD len = 4;
  WCHAR pairs[300];
  QUEUEHANDLE q = NULL;

  /* Create with a format name buffer too small: created, the needed length in units. */
  CHECK_HR(create(kPath, kLabel, small, &len), MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL);
  DWORD needed = len;
  len = 256;
  CHECK_HR(MQPathNameToFormatName(kPath, format, &len), MQ_OK);
  CHECK(len == units(format) + 1 && len == needed);
  CHECK(memcmp(format, u"DIRECT=OS:", 10 * sizeof(WCHAR)) == 0);
  len = 3;
  CHECK_HR(MQPathNameToFormatName(kPath, small, &len), MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
  CHECK(len == needed);
  len = 256;
  CHECK_HR(MQPathNameToFormatName(u".\\private$\\bad\xD800", small, &len),
           MQ_ERROR_ILLEGAL_QUEUE_PATHNAME);
  len = 56;
  CHECK_HR(create(u".\\private$\\lone\xDC00", NULL, format + 200, &len),
           MQ_ERROR_ILLEGAL_QUEUE_PATHNAME);

  /* The queue label, allocated in UTF-16; 124 units at most. */
  QUEUEPROPID qid[1] = {PROPID_Q_LABEL};
  MQPROPVARIANT qv[1];
  memset(qv, 0, sizeof qv);
  qv[0].vt = VT_NULL;
  MQQUEUEPROPS qprops = {1, qid, qv, NULL};
  CHECK_HR(MQGetQueueProperties(format, &qprops), MQ_OK);
  CHECK(qv[0].vt == VT_LPWSTR && qv[0].pwszVal != NULL && same(qv[0].pwszVal, kLabel));
  MQFreeMemory(qv[0].pwszVal);
  for (int i = 0; i < 124; i += 2) {
    pairs[i] = 0xD83D;
    pairs[i + 1] = 0xDE00;
  }
  pairs[124] = 0;
  CHECK_HR(set_label(format, pairs), MQ_OK);
  pairs[124] = u'x';
  pairs[125] = 0;
  CHECK_HR(set_label(format, pairs), MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
  CHECK_HR(set_label(format, u"half \xD83D pair"), MQ_ERROR_ILLEGAL_PROPERTY_VALUE);

  /* Queue security in the UTF-16 flavour: the descriptor back, the owner writing it again. */
  {
    unsigned char sd[512];
    DWORD sd_len = 0;
    CHECK_HR(MQGetQueueSecurity(format, OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                                NULL, 0, &sd_len),
             MQ_ERROR_SECURITY_DESCRIPTOR_TOO_SMALL);
    CHECK(sd_len > 20 && sd_len <= sizeof sd);
    CHECK_HR(MQGetQueueSecurity(format, OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION, sd,
                                sizeof sd, &sd_len),
             MQ_OK);
    CHECK(sd[0] == 1 && (sd[3] & 0x80) != 0); /* revision 1, self-relative */
    CHECK_HR(MQSetQueueSecurity(format, DACL_SECURITY_INFORMATION, sd), MQ_OK);
    CHECK_HR(MQGetQueueSecurity(u"\xD800", DACL_SECURITY_INFORMATION, sd, sizeof sd, &sd_len),
             MQ_ERROR_ILLEGAL_FORMATNAME);
  }

  /* Format names with unpaired surrogates. */
  CHECK_HR(MQOpenQueue(u"DIRECT=OS:.\\private$\\x\xDFFF", MQ_SEND_ACCESS, MQ_DENY_NONE, &q),
           MQ_ERROR_ILLEGAL_FORMATNAME);
  CHECK_HR(MQDeleteQueue(u"\xD800"), MQ_ERROR_ILLEGAL_FORMATNAME);

  /* Message labels: 250 units at most; unpaired surrogates refused. */
  CHECK_HR(MQOpenQueue(format, MQ_SEND_ACCESS, MQ_DENY_NONE, &q), MQ_OK);
  for (int i = 0; i < 250; i += 2) {
    pairs[i] = 0xD834;
    pairs[i + 1] = 0xDD1E;
  }
  pairs[250] = 0;
  CHECK_HR(send_label(q, kLabel), MQ_OK);
  CHECK_HR(send_label(q, pairs), MQ_OK);
  pairs[250] = u'x';
  pairs[251] = 0;
  CHECK_HR(send_label(q, pairs), MQ_ERROR_LABEL_TOO_LONG);
  CHECK_HR(send_label(q, u"ends high \xD83D"), MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
  CHECK_HR(send_label(q, u"\xDE00 starts low"), MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
  WCHAR hformat[256];
  len = 5;
  CHECK_HR(MQHandleToFormatName(q, hformat, &len), MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
  CHECK(len == needed);
  CHECK_HR(MQCloseQueue(q), MQ_OK);

  /* Receive: a label buffer too small keeps the message and says how many units it needs. */
  CHECK_HR(MQOpenQueue(format, MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &q), MQ_OK);
  WCHAR label[300];
  ULONG label_len = 0;
  const ULONG want = (ULONG)units(kLabel) + 1;
  CHECK_HR(receive_label(q, MQ_ACTION_RECEIVE, label, want - 1, &label_len),
           MQ_ERROR_LABEL_BUFFER_TOO_SMALL);
  CHECK(label_len == want);
  CHECK_HR(receive_label(q, MQ_ACTION_RECEIVE, label, want, &label_len), MQ_OK);
  CHECK(label_len == want && same(label, kLabel));
  CHECK_HR(receive_label(q, MQ_ACTION_RECEIVE, label, 300, &label_len), MQ_OK);
  pairs[250] = 0;
  CHECK(label_len == 251 && same(label, pairs));
  CHECK_HR(receive_label(q, MQ_ACTION_RECEIVE, label, 300, &label_len), MQ_ERROR_IO_TIMEOUT);
  CHECK_HR(MQCloseQueue(q), MQ_OK);
  CHECK_HR(MQCloseQueue(q), MQ_ERROR_INVALID_HANDLE);

  /* The private queue list, allocated in UTF-16. */
  MSGPROPID mid[1] = {PROPID_MGMT_MSMQ_PRIVATEQ};
  MQPROPVARIANT mv[1];
  memset(mv, 0, sizeof mv);
  mv[0].vt = VT_NULL;
  MQMGMTPROPS mprops = {1, mid, mv, NULL};
  CHECK_HR(MQMgmtGetInfo(NULL, u"MACHINE", &mprops), MQ_OK);
  CHECK(mv[0].vt == (VT_LPWSTR | VT_VECTOR) && mv[0].calpwstr.cElems == 1);
  if (mv[0].vt == (VT_LPWSTR | VT_VECTOR)) {
    for (ULONG i = 0; i < mv[0].calpwstr.cElems; ++i) {
      const WCHAR* s = mv[0].calpwstr.pElems[i];
      size_t n = units(s);
      CHECK(n > 11 && same(s + n - 11, u"utf16-queue"));
      MQFreeMemory(mv[0].calpwstr.pElems[i]);
    }
    MQFreeMemory(mv[0].calpwstr.pElems);
  }
  CHECK_HR(MQMgmtGetInfo(NULL, u"MACH\xD800", &mprops), MQ_ERROR_INVALID_PARAMETER);
  CHECK_HR(MQDeleteQueue(format), MQ_OK);

  printf("abi_utf16: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
