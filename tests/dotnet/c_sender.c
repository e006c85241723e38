/* The C side of the .NET test (issue 16): a C program on mq.h (WCHAR = wchar_t, libmqrt.so)
 * creates .\private$\<name> if needed and sends one message whose label has characters outside
 * the BMP; it prints the label as UTF-8 hex, for the C# program to check what it receives.
 *   c_sender QUEUE_NAME */
#include <mq.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>

static const wchar_t kLabel[] = L"C API: Gr\u00fc\u00dfe \U0001D11E \U0001F600 \u65e5\u672c";

static void print_utf8_hex(const wchar_t* s) {
  for (; *s; ++s) {
    unsigned long c = (unsigned long)*s;
    unsigned char b[4];
    int n;
    if (c < 0x80) {
      b[0] = (unsigned char)c;
      n = 1;
    } else if (c < 0x800) {
      b[0] = (unsigned char)(0xC0 | (c >> 6));
      b[1] = (unsigned char)(0x80 | (c & 0x3F));
      n = 2;
    } else if (c < 0x10000) {
      b[0] = (unsigned char)(0xE0 | (c >> 12));
      b[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
      b[2] = (unsigned char)(0x80 | (c & 0x3F));
      n = 3;
    } else {
      b[0] = (unsigned char)(0xF0 | (c >> 18));
      b[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
      b[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
      b[3] = (unsigned char)(0x80 | (c & 0x3F));
      n = 4;
    }
    for (int i = 0; i < n; ++i) printf("%02x", b[i]);
  }
  printf("\n");
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: c_sender QUEUE_NAME\n");
    return 2;
  }
  wchar_t path[200];
  swprintf(path, 200, L".\\private$\\%s", argv[1]);
  WCHAR format[256];
  DWORD len = 256;
  QUEUEPROPID qid[1] = {PROPID_Q_PATHNAME};
  MQPROPVARIANT qv[1];
  memset(qv, 0, sizeof qv);
  qv[0].vt = VT_LPWSTR;
  qv[0].pwszVal = path;
  MQQUEUEPROPS qprops = {1, qid, qv, NULL};
  HRESULT hr = MQCreateQueue(NULL, &qprops, format, &len);
  if (hr == MQ_ERROR_QUEUE_EXISTS) {
    len = 256;
    hr = MQPathNameToFormatName(path, format, &len);
  }
  if (hr != MQ_OK) {
    fprintf(stderr, "c_sender: MQCreateQueue/MQPathNameToFormatName: 0x%08x\n", (unsigned)hr);
    return 1;
  }
  QUEUEHANDLE q;
  hr = MQOpenQueue(format, MQ_SEND_ACCESS, MQ_DENY_NONE, &q);
  if (hr != MQ_OK) {
    fprintf(stderr, "c_sender: MQOpenQueue: 0x%08x\n", (unsigned)hr);
    return 1;
  }
  static const char body[] = "sent by a C program";
  MSGPROPID id[2] = {PROPID_M_BODY, PROPID_M_LABEL};
  MQPROPVARIANT v[2];
  memset(v, 0, sizeof v);
  v[0].vt = VT_UI1 | VT_VECTOR;
  v[0].caub.pElems = (UCHAR*)body;
  v[0].caub.cElems = (ULONG)strlen(body);
  v[1].vt = VT_LPWSTR;
  v[1].pwszVal = (LPWSTR)kLabel;
  MQMSGPROPS props = {2, id, v, NULL};
  hr = MQSendMessage(q, &props, MQ_NO_TRANSACTION);
  MQCloseQueue(q);
  if (hr != MQ_OK) {
    fprintf(stderr, "c_sender: MQSendMessage: 0x%08x\n", (unsigned)hr);
    return 1;
  }
  print_utf8_hex(kLabel);
  return 0;
}
