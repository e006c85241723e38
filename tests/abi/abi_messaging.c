/*
 * abi_messaging: issue 3's messaging rules exercised from plain C11, as an MSMQ program would:
 * only <mq.h> from mqsec, linked only with libmqrt. It checks the C view of the ABI (struct
 * layout of MQPROPVARIANT on LP64) and the main rules end to end on a temporary SoftHSM token:
 * queue creation and its errors, format names, sharing, signed send with a security context,
 * receive of the sender's identity, too-small buffers, property errors, bad contexts, cursors
 * and rejection of unsigned messages on an authenticated queue.
 *
 * usage: abi_messaging /path/to/mqsec-init-token
 * The token, configuration and store live in a temporary directory that is removed at exit.
 * Prints "N passed, N failed" and exits non-zero if anything failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <mq.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "abi_check.h"

static char dir[256];

static void cleanup(void) {
  char cmd[512];
  if (dir[0] == '\0') return;
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static int write_file(const char* path, const char* text, mode_t mode) {
  FILE* f = fopen(path, "w");
  if (f == NULL) return -1;
  fputs(text, f);
  fclose(f);
  return chmod(path, mode);
}

/* A temporary token, PIN files, mqsec.toml; SOFTHSM2_CONF and MQSEC_CONFIG set. */
static int setup(const char* init_token) {
  char path[512], text[2048], cmd[2048];
  const char* module = "/usr/lib/softhsm/libsofthsm2.so";
  snprintf(dir, sizeof dir, "/tmp/mqsec-abi-msg-XXXXXX");
  if (mkdtemp(dir) == NULL) return -1;
  snprintf(path, sizeof path, "%s/tokens", dir);
  if (mkdir(path, 0700) != 0) return -1;
  snprintf(path, sizeof path, "%s/softhsm2.conf", dir);
  snprintf(text, sizeof text,
           "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
           dir);
  if (write_file(path, text, 0600) != 0) return -1;
  setenv("SOFTHSM2_CONF", path, 1);
  snprintf(path, sizeof path, "%s/user.pin", dir);
  if (write_file(path, "246810", 0600) != 0) return -1;
  snprintf(path, sizeof path, "%s/so.pin", dir);
  if (write_file(path, "13579111", 0600) != 0) return -1;
  snprintf(cmd, sizeof cmd,
           "'%s' --module %s --label abimsg --pin-file %s/user.pin --so-pin-file %s/so.pin "
           ">/dev/null",
           init_token, module, dir, dir);
  if (system(cmd) != 0) return -1;
  snprintf(path, sizeof path, "%s/mqsec.toml", dir);
  snprintf(text, sizeof text,
           "[token]\nuri = \"pkcs11:token=abimsg?module-path=%s&pin-source=file:%s/user.pin\"\n"
           "[store]\npath = \"%s/store\"\n[profiles]\ndir = \"%s/users/%%u\"\n"
           "[identity]\nsid = \"unix\"\n",
           module, dir, dir, dir);
  if (write_file(path, text, 0644) != 0) return -1;
  setenv("MQSEC_CONFIG", path, 1);
  return 0;
}

/* Creates .\private$\<name> with an optional AUTHENTICATE flag; returns the HRESULT. */
static HRESULT create(const wchar_t* path, int authenticate, WCHAR* format, DWORD* len) {
  QUEUEPROPID id[2] = {PROPID_Q_PATHNAME, PROPID_Q_AUTHENTICATE};
  MQPROPVARIANT v[2];
  MQQUEUEPROPS props;
  memset(v, 0, sizeof v);
  v[0].vt = VT_LPWSTR;
  v[0].pwszVal = (LPWSTR)path;
  v[1].vt = VT_UI1;
  v[1].bVal = (UCHAR)authenticate;
  props.cProp = 2;
  props.aPropID = id;
  props.aPropVar = v;
  props.aStatus = NULL;
  return MQCreateQueue(NULL, &props, format, len);
}

/* Sends `body`; auth != 0 signs with AUTH_LEVEL ALWAYS and the context `ctx` (if non-zero). */
static HRESULT send_body(QUEUEHANDLE q, const char* body, int auth, ULONG ctx, UCHAR* msgid) {
  MSGPROPID id[4];
  MQPROPVARIANT v[4];
  MQMSGPROPS props;
  DWORD n = 0;
  memset(v, 0, sizeof v);
  id[n] = PROPID_M_BODY;
  v[n].vt = VT_UI1 | VT_VECTOR;
  v[n].caub.pElems = (UCHAR*)body;
  v[n].caub.cElems = (ULONG)strlen(body);
  ++n;
  if (auth) {
    id[n] = PROPID_M_AUTH_LEVEL;
    v[n].vt = VT_UI4;
    v[n].ulVal = MQMSG_AUTH_LEVEL_ALWAYS;
    ++n;
    if (ctx != 0) {
      id[n] = PROPID_M_SECURITY_CONTEXT;
      v[n].vt = VT_UI4;
      v[n].ulVal = ctx;
      ++n;
    }
  }
  if (msgid != NULL) {
    id[n] = PROPID_M_MSGID;
    v[n].vt = VT_UI1 | VT_VECTOR;
    v[n].caub.pElems = msgid;
    v[n].caub.cElems = PROPID_M_MSGID_SIZE;
    ++n;
  }
  props.cProp = n;
  props.aPropID = id;
  props.aPropVar = v;
  props.aStatus = NULL;
  return MQSendMessage(q, &props, MQ_NO_TRANSACTION);
}

/* Receives (or peeks) the body only; returns the HRESULT, body NUL-terminated. */
static HRESULT recv_body(QUEUEHANDLE q, DWORD timeout, DWORD action, HANDLE cursor, char* body,
                         ULONG cap) {
  MSGPROPID id[2] = {PROPID_M_BODY, PROPID_M_BODY_SIZE};
  MQPROPVARIANT v[2];
  MQMSGPROPS props;
  HRESULT hr;
  memset(v, 0, sizeof v);
  v[0].vt = VT_UI1 | VT_VECTOR;
  v[0].caub.pElems = (UCHAR*)body;
  v[0].caub.cElems = cap - 1;
  v[1].vt = VT_NULL;
  props.cProp = 2;
  props.aPropID = id;
  props.aPropVar = v;
  props.aStatus = NULL;
  hr = MQReceiveMessage(q, timeout, action, &props, NULL, NULL, cursor, NULL);
  body[SUCCEEDED(hr) && v[1].ulVal < cap ? v[1].ulVal : 0] = '\0';
  return hr;
}

static void test_layout(void) {
  /* MSMQ's PROPVARIANT on 64-bit: 8-byte header, 16-byte union. */
  CHECK(sizeof(HRESULT) == 4 && sizeof(ULONG) == 4 && sizeof(DWORD) == 4);
  CHECK(sizeof(MQPROPVARIANT) == 24);
  CHECK(offsetof(MQPROPVARIANT, ulVal) == 8);
  CHECK(offsetof(MQPROPVARIANT, caub) == 8);
  CHECK(sizeof(CAUB) == 16);
  CHECK(MQMSG_CLASS_NACK_BAD_SIGNATURE == 0x8006);
}

static void test_queues(void) {
  WCHAR format[256], small[4], expected[256];
  DWORD len = 256;
  char host[256] = {0};
  size_t i;
  QUEUEHANDLE q = NULL, q2 = NULL;

  gethostname(host, sizeof host - 1);
  swprintf(expected, 256, L"DIRECT=OS:%s\\private$\\abi-queue", host);
  for (i = 0; expected[i]; ++i)
    if (expected[i] >= L'A' && expected[i] <= L'Z' && i >= 10) expected[i] += 32;

  len = 4;
  CHECK_HR(create(L".\\private$\\abi-queue", 0, small, &len),
           MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL);
  CHECK(len == wcslen(expected) + 1);
  len = 256;
  CHECK_HR(create(L".\\private$\\abi-queue", 0, format, &len), MQ_ERROR_QUEUE_EXISTS);
  CHECK_HR(create(L".\\public\\abi-queue", 0, format, &len), MQ_ERROR_ILLEGAL_QUEUE_PATHNAME);

  len = 256;
  CHECK_HR(MQPathNameToFormatName(L".\\private$\\abi-queue", format, &len), MQ_OK);
  CHECK(wcscmp(format, expected) == 0);
  CHECK(len == wcslen(expected) + 1);

  CHECK_HR(MQOpenQueue(L"DIRECT=OS:.\\private$\\abi-nothing", MQ_SEND_ACCESS, MQ_DENY_NONE, &q),
           MQ_ERROR_QUEUE_NOT_FOUND);
  CHECK_HR(MQOpenQueue(L"NOT A FORMAT NAME", MQ_SEND_ACCESS, MQ_DENY_NONE, &q),
           MQ_ERROR_ILLEGAL_FORMATNAME);
  CHECK_HR(MQOpenQueue(format, MQ_RECEIVE_ACCESS, MQ_DENY_RECEIVE_SHARE, &q), MQ_OK);
  CHECK_HR(MQOpenQueue(format, MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &q2), MQ_ERROR_SHARING_VIOLATION);
  CHECK_HR(MQCloseQueue(q), MQ_OK);
  CHECK_HR(MQCloseQueue(q), MQ_ERROR_INVALID_HANDLE);
  CHECK_HR(MQCloseQueue(NULL), MQ_ERROR_INVALID_HANDLE);

  CHECK_HR(MQDeleteQueue(format), MQ_OK);
  CHECK_HR(MQOpenQueue(format, MQ_SEND_ACCESS, MQ_DENY_NONE, &q), MQ_ERROR_QUEUE_NOT_FOUND);
}

static void test_signed_roundtrip(void) {
  WCHAR format[256];
  DWORD len = 256;
  QUEUEHANDLE s = NULL, r = NULL;
  HANDLE ctx = NULL;
  UCHAR sent_id[20], got_id[20], sid[64], expected_sid[16] = {1, 2, 0, 0, 0, 0, 0, 22, 1, 0, 0, 0};
  UCHAR small[4], body[128];
  uid_t uid = geteuid();
  MSGPROPID id[7];
  MQPROPVARIANT v[7];
  HRESULT status[7];
  MQMSGPROPS props;
  int k;

  for (k = 0; k < 4; ++k) expected_sid[12 + k] = (UCHAR)(uid >> (8 * k));
  CHECK_HR(create(L".\\private$\\abi-signed", 0, format, &len), MQ_OK);
  CHECK_HR(MQOpenQueue(format, MQ_SEND_ACCESS, MQ_DENY_NONE, &s), MQ_OK);
  CHECK_HR(MQOpenQueue(format, MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &r), MQ_OK);
  CHECK_HR(MQGetSecurityContextEx(NULL, 0, &ctx), MQ_OK);
  CHECK_HR(send_body(s, "signed from C", 1, (ULONG)(uintptr_t)ctx, sent_id), MQ_OK);

  /* Body buffer too small: the error, the needed size, and the message stays. */
  memset(v, 0, sizeof v);
  id[0] = PROPID_M_BODY;
  v[0].vt = VT_UI1 | VT_VECTOR;
  v[0].caub.pElems = small;
  v[0].caub.cElems = sizeof small;
  id[1] = PROPID_M_BODY_SIZE;
  v[1].vt = VT_NULL;
  props.cProp = 2;
  props.aPropID = id;
  props.aPropVar = v;
  props.aStatus = status;
  CHECK_HR(MQReceiveMessage(r, 1000, MQ_ACTION_RECEIVE, &props, NULL, NULL, NULL, NULL),
           MQ_ERROR_BUFFER_OVERFLOW);
  CHECK(v[1].ulVal == 13);
  CHECK(status[0] == MQ_ERROR_BUFFER_OVERFLOW);

  memset(v, 0, sizeof v);
  id[0] = PROPID_M_BODY;
  v[0].vt = VT_UI1 | VT_VECTOR;
  v[0].caub.pElems = body;
  v[0].caub.cElems = sizeof body;
  id[1] = PROPID_M_BODY_SIZE;
  v[1].vt = VT_NULL;
  id[2] = PROPID_M_AUTHENTICATED;
  v[2].vt = VT_NULL;
  id[3] = PROPID_M_AUTHENTICATED_EX;
  v[3].vt = VT_NULL;
  id[4] = PROPID_M_SENDERID;
  v[4].vt = VT_UI1 | VT_VECTOR;
  v[4].caub.pElems = sid;
  v[4].caub.cElems = sizeof sid;
  id[5] = PROPID_M_SENDERID_LEN;
  v[5].vt = VT_NULL;
  id[6] = PROPID_M_MSGID;
  v[6].vt = VT_UI1 | VT_VECTOR;
  v[6].caub.pElems = got_id;
  v[6].caub.cElems = sizeof got_id;
  props.cProp = 7;
  CHECK_HR(MQReceiveMessage(r, 1000, MQ_ACTION_RECEIVE, &props, NULL, NULL, NULL, NULL), MQ_OK);
  CHECK(v[1].vt == VT_UI4 && v[1].ulVal == 13 && memcmp(body, "signed from C", 13) == 0);
  CHECK(v[2].vt == VT_UI1 && v[2].bVal == 1);
  CHECK(v[3].vt == VT_UI1 && v[3].bVal == MQMSG_AUTHENTICATED_SIG20);
  CHECK(v[5].ulVal == 16 && memcmp(sid, expected_sid, 16) == 0);
  CHECK(memcmp(sent_id, got_id, 20) == 0);

  /* A freed context is refused and nothing is stored. */
  MQFreeSecurityContext(ctx);
  CHECK_HR(send_body(s, "never", 1, (ULONG)(uintptr_t)ctx, NULL), MQ_ERROR_BAD_SECURITY_CONTEXT);
  CHECK_HR(recv_body(r, 0, MQ_ACTION_RECEIVE, NULL, (char*)body, sizeof body), MQ_ERROR_IO_TIMEOUT);
  MQCloseQueue(s);
  MQCloseQueue(r);
}

static void test_property_errors(void) {
  WCHAR format[256], label[252];
  DWORD len = 256;
  QUEUEHANDLE s = NULL;
  MSGPROPID id[2];
  MQPROPVARIANT v[2];
  HRESULT status[2];
  MQMSGPROPS props;
  int i;

  CHECK_HR(create(L".\\private$\\abi-props", 0, format, &len), MQ_OK);
  CHECK_HR(MQOpenQueue(format, MQ_SEND_ACCESS, MQ_DENY_NONE, &s), MQ_OK);
  memset(v, 0, sizeof v);
  props.cProp = 2;
  props.aPropID = id;
  props.aPropVar = v;
  props.aStatus = status;
  id[0] = PROPID_M_BODY;
  v[0].vt = VT_UI1 | VT_VECTOR;
  v[0].caub.pElems = (UCHAR*)"x";
  v[0].caub.cElems = 1;

  id[1] = PROPID_M_PRIORITY;
  v[1].vt = VT_UI4; /* must be VT_UI1 */
  v[1].ulVal = 3;
  CHECK_HR(MQSendMessage(s, &props, NULL), MQ_ERROR_ILLEGAL_PROPERTY_VT);
  CHECK(status[1] == MQ_ERROR_ILLEGAL_PROPERTY_VT);

  id[1] = 4242;
  v[1].vt = VT_UI4;
  CHECK_HR(MQSendMessage(s, &props, NULL), MQ_ERROR_ILLEGAL_PROPID);
  CHECK(status[1] == MQ_ERROR_ILLEGAL_PROPID);

  for (i = 0; i < 251; ++i) label[i] = L'L';
  label[251] = 0;
  id[1] = PROPID_M_LABEL;
  v[1].vt = VT_LPWSTR;
  v[1].pwszVal = label;
  CHECK_HR(MQSendMessage(s, &props, NULL), MQ_ERROR_LABEL_TOO_LONG);
  label[250] = 0;
  CHECK_HR(MQSendMessage(s, &props, NULL), MQ_OK);
  MQCloseQueue(s);
}

static void test_cursor_and_rejection(void) {
  WCHAR format[256];
  DWORD len = 256;
  QUEUEHANDLE s = NULL, r = NULL;
  HANDLE cursor = NULL;
  char body[64];

  CHECK_HR(create(L".\\private$\\abi-auth", 1, format, &len), MQ_OK);
  CHECK_HR(MQOpenQueue(format, MQ_SEND_ACCESS, MQ_DENY_NONE, &s), MQ_OK);
  CHECK_HR(send_body(s, "unsigned", 0, 0, NULL), MQ_OK);
  CHECK_HR(send_body(s, "first", 1, 0, NULL), MQ_OK); /* transient context */
  CHECK_HR(send_body(s, "second", 1, 0, NULL), MQ_OK);
  CHECK_HR(MQOpenQueue(format, MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &r), MQ_OK);
  CHECK_HR(MQCreateCursor(r, &cursor), MQ_OK);
  /* The unsigned message is rejected on arrival: the cursor starts at "first". */
  CHECK_HR(recv_body(r, 1000, MQ_ACTION_PEEK_CURRENT, cursor, body, sizeof body), MQ_OK);
  CHECK(strcmp(body, "first") == 0);
  CHECK_HR(recv_body(r, 0, MQ_ACTION_PEEK_NEXT, cursor, body, sizeof body), MQ_OK);
  CHECK(strcmp(body, "second") == 0);
  CHECK_HR(recv_body(r, 0, MQ_ACTION_PEEK_NEXT, cursor, body, sizeof body), MQ_ERROR_IO_TIMEOUT);
  CHECK_HR(MQCloseCursor(cursor), MQ_OK);
  CHECK_HR(recv_body(r, 0, MQ_ACTION_RECEIVE, NULL, body, sizeof body), MQ_OK);
  CHECK(strcmp(body, "first") == 0);
  CHECK_HR(recv_body(r, 0, MQ_ACTION_RECEIVE, NULL, body, sizeof body), MQ_OK);
  CHECK(strcmp(body, "second") == 0);
  CHECK_HR(recv_body(r, 0, MQ_ACTION_RECEIVE, NULL, body, sizeof body), MQ_ERROR_IO_TIMEOUT);
  MQCloseQueue(s);
  MQCloseQueue(r);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s /path/to/mqsec-init-token\n", argv[0]);
    return 2;
  }
  atexit(cleanup);
  test_layout();
  if (setup(argv[1]) != 0) {
    fprintf(stderr, "abi_messaging: could not set up the temporary token in %s\n", dir);
    return 1;
  }
  CHECK_HR(MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, NULL, 0), MQ_OK);
  test_queues();
  test_signed_roundtrip();
  test_property_errors();
  test_cursor_and_rejection();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
