/*
 * abi_transactions: MSMQ internal transactions from plain C99, as an MSMQ program would write
 * them: <transact.h> and <mq.h>, linked only with libmqrt, the ITransaction called through its
 * vtable (p->lpVtbl->Commit(p, 0, 0, 0)) and through transact.h's ITransaction_* macros.
 * Unsigned messages, a temporary store (no token needed); the directory is removed at exit.
 * Prints "N passed, N failed" and exits non-zero if anything failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <transact.h>
#include <mq.h>

#include <stdint.h>
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

static int setup(void) {
  char path[512], text[1024];
  FILE* f;
  snprintf(dir, sizeof dir, "/tmp/mqsec-abi-tx-XXXXXX");
  if (mkdtemp(dir) == NULL) return -1;
  snprintf(path, sizeof path, "%s/mqsec.toml", dir);
  snprintf(text, sizeof text, "[store]\npath = \"%s/store\"\n[identity]\nsid = \"unix\"\n", dir);
  f = fopen(path, "w");
  if (f == NULL) return -1;
  fputs(text, f);
  fclose(f);
  setenv("MQSEC_CONFIG", path, 1);
  return 0;
}

static HRESULT create(const wchar_t* path, UCHAR transactional) {
  QUEUEPROPID id[2] = {PROPID_Q_PATHNAME, PROPID_Q_TRANSACTION};
  MQPROPVARIANT v[2];
  MQQUEUEPROPS props;
  WCHAR format[256];
  DWORD len = 256;
  memset(v, 0, sizeof v);
  v[0].vt = VT_LPWSTR;
  v[0].pwszVal = (LPWSTR)path;
  v[1].vt = VT_UI1;
  v[1].bVal = transactional;
  props.cProp = 2;
  props.aPropID = id;
  props.aPropVar = v;
  props.aStatus = NULL;
  return MQCreateQueue(NULL, &props, format, &len);
}

static HRESULT send_body(QUEUEHANDLE q, const char* body, ITransaction* tx) {
  MSGPROPID id[1] = {PROPID_M_BODY};
  MQPROPVARIANT v[1];
  MQMSGPROPS props;
  memset(v, 0, sizeof v);
  v[0].vt = VT_UI1 | VT_VECTOR;
  v[0].caub.pElems = (UCHAR*)body;
  v[0].caub.cElems = (ULONG)strlen(body);
  props.cProp = 1;
  props.aPropID = id;
  props.aPropVar = v;
  props.aStatus = NULL;
  return MQSendMessage(q, &props, tx);
}

/* Receives (timeout 0) into `out` (NUL-terminated); the HRESULT. */
static HRESULT receive_body(QUEUEHANDLE q, ITransaction* tx, char* out, size_t size) {
  MSGPROPID id[1] = {PROPID_M_BODY};
  MQPROPVARIANT v[1];
  MQMSGPROPS props;
  UCHAR buf[128];
  HRESULT hr;
  memset(v, 0, sizeof v);
  v[0].vt = VT_UI1 | VT_VECTOR;
  v[0].caub.pElems = buf;
  v[0].caub.cElems = sizeof buf;
  props.cProp = 1;
  props.aPropID = id;
  props.aPropVar = v;
  props.aStatus = NULL;
  out[0] = '\0';
  hr = MQReceiveMessage(q, 0, MQ_ACTION_RECEIVE, &props, NULL, NULL, NULL, tx);
  if (SUCCEEDED(hr) && v[0].caub.cElems < size) {
    memcpy(out, buf, v[0].caub.cElems);
    out[v[0].caub.cElems] = '\0';
  }
  return hr;
}

int main(void) {
  const wchar_t* tpath = L".\\private$\\abi-tx";
  const wchar_t* tformat = L"DIRECT=OS:.\\private$\\abi-tx";
  const wchar_t* nformat = L"DIRECT=OS:.\\private$\\abi-plain";
  QUEUEHANDLE s = NULL, r = NULL, ns = NULL;
  ITransaction* tx = NULL;
  ITransaction* other = NULL;
  XACTTRANSINFO info;
  char body[128];
  const IID itx = MQSEC_IID_ITRANSACTION_INIT;
  void* same = NULL;

  if (setup() != 0) {
    fprintf(stderr, "setup failed\n");
    cleanup();
    return 2;
  }
  CHECK_HR(create(tpath, MQ_TRANSACTIONAL), MQ_OK);
  CHECK_HR(create(L".\\private$\\abi-plain", MQ_TRANSACTIONAL_NONE), MQ_OK);
  CHECK_HR(MQOpenQueue(tformat, MQ_SEND_ACCESS, MQ_DENY_NONE, &s), MQ_OK);
  CHECK_HR(MQOpenQueue(tformat, MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &r), MQ_OK);
  CHECK_HR(MQOpenQueue(nformat, MQ_SEND_ACCESS, MQ_DENY_NONE, &ns), MQ_OK);

  /* Commit through lpVtbl: both messages, in order, only after the commit. */
  CHECK_HR(MQBeginTransaction(NULL), MQ_ERROR_INVALID_PARAMETER);
  CHECK_HR(MQBeginTransaction(&tx), MQ_OK);
  CHECK(tx != NULL && tx->lpVtbl != NULL);
  CHECK_HR(tx->lpVtbl->GetTransactionInfo(tx, &info), S_OK);
  CHECK_HR(tx->lpVtbl->QueryInterface(tx, &itx, &same), S_OK);
  CHECK(same == (void*)tx);
  CHECK(tx->lpVtbl->Release(tx) == 1);
  CHECK_HR(send_body(s, "one", tx), MQ_OK);
  CHECK_HR(send_body(s, "two", tx), MQ_OK);
  CHECK_HR(send_body(s, "plain", MQ_NO_TRANSACTION), MQ_ERROR_TRANSACTION_USAGE);
  CHECK_HR(send_body(ns, "wrong queue", tx), MQ_ERROR_TRANSACTION_USAGE);
  CHECK_HR(send_body(s, "mts", MQ_MTS_TRANSACTION), MQ_ERROR_DTC_CONNECT);
  CHECK_HR(receive_body(r, MQ_NO_TRANSACTION, body, sizeof body), MQ_ERROR_IO_TIMEOUT);
  CHECK_HR(tx->lpVtbl->Commit(tx, TRUE, 0, 0), XACT_E_CANTRETAIN);
  CHECK_HR(tx->lpVtbl->Commit(tx, 0, 0, 0), S_OK);
  CHECK_HR(tx->lpVtbl->Commit(tx, 0, 0, 0), XACT_E_NOTRANSACTION);
  CHECK_HR(send_body(s, "late", tx), MQ_ERROR_TRANSACTION_USAGE);
  CHECK(tx->lpVtbl->Release(tx) == 0);

  /* Abort through the ITransaction_* macros: the received message is back first. */
  CHECK_HR(MQBeginTransaction(&other), MQ_OK);
  CHECK_HR(receive_body(r, other, body, sizeof body), MQ_OK);
  CHECK(strcmp(body, "one") == 0);
  CHECK_HR(ITransaction_Abort(other, NULL, FALSE, FALSE), S_OK);
  CHECK_HR(ITransaction_Abort(other, NULL, FALSE, FALSE), XACT_E_NOTRANSACTION);
  CHECK(ITransaction_Release(other) == 0);
  CHECK_HR(receive_body(r, MQ_NO_TRANSACTION, body, sizeof body), MQ_OK);
  CHECK(strcmp(body, "one") == 0);
  CHECK_HR(receive_body(r, MQ_NO_TRANSACTION, body, sizeof body), MQ_OK);
  CHECK(strcmp(body, "two") == 0);
  CHECK_HR(receive_body(r, MQ_NO_TRANSACTION, body, sizeof body), MQ_ERROR_IO_TIMEOUT);

  /* Release without Commit aborts. */
  CHECK_HR(MQBeginTransaction(&other), MQ_OK);
  CHECK_HR(send_body(s, "released", other), MQ_OK);
  CHECK(other->lpVtbl->Release(other) == 0);
  CHECK_HR(receive_body(r, MQ_NO_TRANSACTION, body, sizeof body), MQ_ERROR_IO_TIMEOUT);

  MQCloseQueue(s);
  MQCloseQueue(r);
  MQCloseQueue(ns);
  cleanup();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
