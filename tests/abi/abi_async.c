/* ABI test of asynchronous receive (issue 13): a C11 program that includes only <mq.h> and
 * links only with libmqrt, as an MSMQ application would. It receives with a callback (which
 * signals an event of MQSecCreateEvent, the mqsec extension Linux needs for OVERLAPPED.hEvent)
 * and with an OVERLAPPED whose hEvent is set on completion and whose result
 * MQGetOverlappedResult reads; MQCloseQueue cancels a pending receive. Run by CTest under
 * mqsec-with-softhsm (a SoftHSM token and an mqsec configuration). Prints "N passed, N failed";
 * exit status 0 if every check passed. */
#include <mq.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "abi_check.h"

_Static_assert(sizeof(OVERLAPPED) == 32, "OVERLAPPED is Windows x64's");
_Static_assert(offsetof(OVERLAPPED, Internal) == 0, "Internal at 0");
_Static_assert(offsetof(OVERLAPPED, InternalHigh) == 8, "InternalHigh at 8");
_Static_assert(offsetof(OVERLAPPED, Offset) == 16, "Offset at 16");
_Static_assert(offsetof(OVERLAPPED, Pointer) == 16, "Pointer at 16");
_Static_assert(offsetof(OVERLAPPED, hEvent) == 24, "hEvent at 24");

static HANDLE callback_done;
static HRESULT callback_hr;
static QUEUEHANDLE callback_queue;
static LPOVERLAPPED callback_overlapped;

static void APIENTRY on_receive(HRESULT hr, QUEUEHANDLE hSource, DWORD dwTimeout, DWORD dwAction,
                                MQMSGPROPS* pMessageProps, LPOVERLAPPED lpOverlapped,
                                HANDLE hCursor) {
  (void)dwTimeout;
  (void)dwAction;
  (void)pMessageProps;
  (void)hCursor;
  callback_hr = hr;
  callback_queue = hSource;
  callback_overlapped = lpOverlapped;
  MQSecSetEvent(callback_done);
}

static HRESULT send_text(QUEUEHANDLE q, const char* text) {
  MSGPROPID id = PROPID_M_BODY;
  MQPROPVARIANT v;
  MQMSGPROPS props;
  memset(&v, 0, sizeof v);
  v.vt = VT_UI1 | VT_VECTOR;
  v.caub.cElems = (ULONG)strlen(text);
  v.caub.pElems = (UCHAR*)text;
  props.cProp = 1;
  props.aPropID = &id;
  props.aPropVar = &v;
  props.aStatus = NULL;
  return MQSendMessage(q, &props, MQ_NO_TRANSACTION);
}

int main(void) {
  WCHAR path[] = L".\\private$\\abi-async";
  WCHAR format[256];
  DWORD len = 256;
  QUEUEPROPID qid = PROPID_Q_PATHNAME;
  MQPROPVARIANT qv;
  MQQUEUEPROPS qprops;
  QUEUEHANDLE s = NULL, r = NULL;
  UCHAR body[64];
  MSGPROPID mids[2] = {PROPID_M_BODY, PROPID_M_BODY_SIZE};
  MQPROPVARIANT mvars[2];
  MQMSGPROPS mprops;
  OVERLAPPED ov;
  HANDLE ev;

  memset(&qv, 0, sizeof qv);
  qv.vt = VT_LPWSTR;
  qv.pwszVal = path;
  qprops.cProp = 1;
  qprops.aPropID = &qid;
  qprops.aPropVar = &qv;
  qprops.aStatus = NULL;
  CHECK_HR(MQCreateQueue(NULL, &qprops, format, &len), MQ_OK);
  CHECK_HR(MQOpenQueue(format, MQ_SEND_ACCESS, MQ_DENY_NONE, &s), MQ_OK);
  CHECK_HR(MQOpenQueue(format, MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &r), MQ_OK);

  memset(mvars, 0, sizeof mvars);
  mvars[0].vt = VT_UI1 | VT_VECTOR;
  mvars[0].caub.cElems = sizeof body;
  mvars[0].caub.pElems = body;
  mvars[1].vt = VT_NULL;
  mprops.cProp = 2;
  mprops.aPropID = mids;
  mprops.aPropVar = mvars;
  mprops.aStatus = NULL;

  /* A callback, for a message sent after the call. */
  callback_done = MQSecCreateEvent(TRUE, FALSE);
  CHECK(callback_done != NULL);
  CHECK_HR(MQReceiveMessage(r, INFINITE, MQ_ACTION_RECEIVE, &mprops, NULL, on_receive, NULL, NULL),
           MQ_INFORMATION_OPERATION_PENDING);
  CHECK(MQSecWaitForEvent(callback_done, 100) == MQSEC_WAIT_TIMEOUT);
  CHECK_HR(send_text(s, "by callback"), MQ_OK);
  CHECK(MQSecWaitForEvent(callback_done, 10000) == MQSEC_WAIT_OBJECT_0);
  CHECK_HR(callback_hr, MQ_OK);
  CHECK(callback_queue == r);
  CHECK(callback_overlapped == NULL);
  CHECK(mvars[1].ulVal == 11 && memcmp(body, "by callback", 11) == 0);

  /* An OVERLAPPED with an event, for a message already there. */
  ev = MQSecCreateEvent(FALSE, FALSE);
  CHECK(ev != NULL);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = ev;
  CHECK_HR(send_text(s, "overlapped"), MQ_OK);
  mvars[0].vt = VT_UI1 | VT_VECTOR;
  mvars[0].caub.cElems = sizeof body;
  mvars[0].caub.pElems = body;
  mvars[1].vt = VT_NULL;
  CHECK_HR(MQReceiveMessage(r, 5000, MQ_ACTION_RECEIVE, &mprops, &ov, NULL, NULL, NULL),
           MQ_INFORMATION_OPERATION_PENDING);
  CHECK(MQSecWaitForEvent(ev, 10000) == MQSEC_WAIT_OBJECT_0);
  CHECK_HR(MQGetOverlappedResult(&ov), MQ_OK);
  CHECK(mvars[1].ulVal == 10 && memcmp(body, "overlapped", 10) == 0);

  /* Pending when the queue is closed: cancelled. */
  CHECK_HR(MQReceiveMessage(r, INFINITE, MQ_ACTION_RECEIVE, NULL, &ov, NULL, NULL, NULL),
           MQ_INFORMATION_OPERATION_PENDING);
  CHECK_HR(MQGetOverlappedResult(&ov), MQ_INFORMATION_OPERATION_PENDING);
  CHECK_HR(MQCloseQueue(r), MQ_OK);
  CHECK_HR(MQGetOverlappedResult(&ov), MQ_ERROR_OPERATION_CANCELLED);
  CHECK(MQSecWaitForEvent(ev, 0) == MQSEC_WAIT_OBJECT_0);

  /* Bad input. */
  CHECK_HR(MQGetOverlappedResult(NULL), MQ_ERROR_INVALID_PARAMETER);
  CHECK_HR(MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, NULL, &ov, NULL, NULL, NULL),
           MQ_ERROR_INVALID_HANDLE);
  CHECK(MQSecCloseEvent(ev));
  CHECK(!MQSecCloseEvent(ev));
  CHECK(MQSecWaitForEvent(ev, 0) == MQSEC_WAIT_FAILED);
  CHECK(MQSecCloseEvent(callback_done));

  CHECK_HR(MQCloseQueue(s), MQ_OK);
  CHECK_HR(MQDeleteQueue(format), MQ_OK);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
