/* Consumer test (issue 15): an MSMQ-style C program built against an *installed* libmqrt with
 * `pkg-config --cflags --libs mqrt` only. On the token of $MQSEC_CONFIG it registers the internal
 * certificate, obtains a security context, sends one signed message to an authenticated queue
 * and receives it back authenticated. Exit 0 when all of that worked. */
#include <mq.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int fail(const char* what, HRESULT hr) {
  fprintf(stderr, "c consumer: %s failed: 0x%08lX\n", what, (unsigned long)(ULONG)hr);
  return 1;
}

int main(void) {
  static const char body[] = "signed by a C consumer";
  WCHAR format[256];
  DWORD len = 256;
  HANDLE ctx = NULL;
  QUEUEHANDLE out = NULL, in = NULL;
  HRESULT hr;

  hr = MQRegisterCertificate(MQCERT_REGISTER_IF_NOT_EXIST, NULL, 0);
  if (FAILED(hr)) return fail("MQRegisterCertificate", hr);
  hr = MQGetSecurityContextEx(NULL, 0, &ctx);
  if (FAILED(hr)) return fail("MQGetSecurityContextEx", hr);

  {
    QUEUEPROPID id[2] = {PROPID_Q_PATHNAME, PROPID_Q_AUTHENTICATE};
    MQPROPVARIANT v[2];
    MQQUEUEPROPS props;
    memset(v, 0, sizeof v);
    v[0].vt = VT_LPWSTR;
    v[0].pwszVal = (LPWSTR)L".\\private$\\consumer-c";
    v[1].vt = VT_UI1;
    v[1].bVal = MQ_AUTHENTICATE;
    props.cProp = 2;
    props.aPropID = id;
    props.aPropVar = v;
    props.aStatus = NULL;
    hr = MQCreateQueue(NULL, &props, format, &len);
    if (FAILED(hr)) return fail("MQCreateQueue", hr);
  }

  hr = MQOpenQueue(format, MQ_SEND_ACCESS, MQ_DENY_NONE, &out);
  if (FAILED(hr)) return fail("MQOpenQueue (send)", hr);
  {
    MSGPROPID id[3] = {PROPID_M_BODY, PROPID_M_AUTH_LEVEL, PROPID_M_SECURITY_CONTEXT};
    MQPROPVARIANT v[3];
    MQMSGPROPS props;
    memset(v, 0, sizeof v);
    v[0].vt = VT_UI1 | VT_VECTOR;
    v[0].caub.pElems = (UCHAR*)body;
    v[0].caub.cElems = (ULONG)strlen(body);
    v[1].vt = VT_UI4;
    v[1].ulVal = MQMSG_AUTH_LEVEL_ALWAYS;
    v[2].vt = VT_UI4;
    v[2].ulVal = (ULONG)(uintptr_t)ctx; /* a 32-bit handle, as in MSMQ */
    props.cProp = 3;
    props.aPropID = id;
    props.aPropVar = v;
    props.aStatus = NULL;
    hr = MQSendMessage(out, &props, MQ_NO_TRANSACTION);
    if (FAILED(hr)) return fail("MQSendMessage", hr);
  }
  MQCloseQueue(out);
  MQFreeSecurityContext(ctx);

  hr = MQOpenQueue(format, MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &in);
  if (FAILED(hr)) return fail("MQOpenQueue (receive)", hr);
  {
    char got[128];
    MSGPROPID id[3] = {PROPID_M_BODY, PROPID_M_BODY_SIZE, PROPID_M_AUTHENTICATED};
    MQPROPVARIANT v[3];
    MQMSGPROPS props;
    memset(v, 0, sizeof v);
    v[0].vt = VT_UI1 | VT_VECTOR;
    v[0].caub.pElems = (UCHAR*)got;
    v[0].caub.cElems = sizeof got - 1;
    v[1].vt = VT_NULL;
    v[2].vt = VT_NULL;
    props.cProp = 3;
    props.aPropID = id;
    props.aPropVar = v;
    props.aStatus = NULL;
    hr = MQReceiveMessage(in, 5000, MQ_ACTION_RECEIVE, &props, NULL, NULL, NULL, NULL);
    if (FAILED(hr)) return fail("MQReceiveMessage", hr);
    got[v[1].ulVal < sizeof got ? v[1].ulVal : 0] = '\0';
    if (strcmp(got, body) != 0 || v[2].bVal != 1) {
      fprintf(stderr, "c consumer: received '%s', authenticated %u\n", got, (unsigned)v[2].bVal);
      return 1;
    }
  }
  MQCloseQueue(in);
  hr = MQDeleteQueue(format);
  if (FAILED(hr)) return fail("MQDeleteQueue", hr);
  printf("c consumer: signed message sent and received authenticated\n");
  return 0;
}
