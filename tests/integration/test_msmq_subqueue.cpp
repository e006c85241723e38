// Subqueues, MQMoveMessage, MQMarkMessageRejected and PROPID_Q_QUOTA (issue 13) through
// libmqrt, against what MSMQ documents (docs/msmq-api.md, Subqueues): "q;sub" format names, moves
// that keep a message's lookup id, properties and signature, moves in transactions, the
// NACK of a message marked rejected, quotas refusing messages with a NACK, and every bad input
// (handles, access, unrelated queues, lookup ids, transactions).
//
// Runs on a throwaway SoftHSM token (tests/support/softhsm_env); one test signs.
#include <mq.h>
#include <transact.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/hresult_text.hpp"
#include "tests/support/msmq_props.hpp"
#include "tests/support/msmq_queues.hpp"
#include "tests/support/softhsm_test_environment.hpp"

namespace {

using mqsec::testing::Props;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

std::wstring make_queue(const std::wstring& stem, bool transactional = false,
                        bool authenticate = false) {
  return mqsec::testing::make_private_queue(L"sq-", stem, transactional, authenticate);
}

using mqsec::testing::open_queue;

struct Sent {
  Sent(std::string b, std::wstring a = {}, ULONG k = MQMSG_ACKNOWLEDGMENT_NONE, ULONG c = 0,
       UCHAR p = 3)
      : body(std::move(b)), admin(std::move(a)), ack(k), context(c), priority(p) {}
  std::string body;
  std::wstring admin;  // empty: no admin queue
  ULONG ack;
  ULONG context;
  UCHAR priority;
};

HRESULT send(QUEUEHANDLE h, const Sent& s, ITransaction* tx = MQ_NO_TRANSACTION) {
  std::string copy = s.body;
  Props p;
  p.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(copy.data()), static_cast<ULONG>(copy.size()));
  p.ui1(PROPID_M_PRIORITY, s.priority);
  p.wstr(PROPID_M_LABEL, L"label-1");
  if (!s.admin.empty()) {
    p.wstr(PROPID_M_ADMIN_QUEUE, s.admin.c_str());
    p.ui1(PROPID_M_ACKNOWLEDGE, static_cast<UCHAR>(s.ack));
  }
  if (s.context != 0) {
    p.ui4(PROPID_M_AUTH_LEVEL, MQMSG_AUTH_LEVEL_ALWAYS);
    p.ui4(PROPID_M_SECURITY_CONTEXT, s.context);
  }
  return MQSendMessage(h, p.msg(), tx);
}

struct Got {
  HRESULT hr = MQ_OK;
  std::string body;
  std::wstring label;
  int priority = -1;
  ULONGLONG lookup_id = 0;
  int authenticated = -1;
  USHORT msg_class = 0xFFFF;
};

Got receive(QUEUEHANDLE h, DWORD action = MQ_ACTION_RECEIVE, ITransaction* tx = nullptr,
            HANDLE cursor = nullptr) {
  std::vector<UCHAR> body(4096);
  std::vector<WCHAR> label(64);
  Props p;
  p.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
  const size_t prio = p.null(PROPID_M_PRIORITY);
  const size_t lid = p.null(PROPID_M_LOOKUPID);
  const size_t auth = p.null(PROPID_M_AUTHENTICATED);
  const size_t cls = p.null(PROPID_M_CLASS);
  const size_t lab =
      p.add(PROPID_M_LABEL, VT_LPWSTR, [&](MQPROPVARIANT& v) { v.pwszVal = label.data(); });
  ULONG label_len = static_cast<ULONG>(label.size());
  p.ui4(PROPID_M_LABEL_LEN, label_len);
  Got g;
  g.hr = MQReceiveMessage(h, 0, action, p.msg(), nullptr, nullptr, cursor, tx);
  if (SUCCEEDED(g.hr)) {
    g.body.assign(body.begin(), body.begin() + p.vars[0].caub.cElems);
    g.priority = p.vars[prio].bVal;
    g.lookup_id = p.vars[lid].uhVal.QuadPart;
    g.authenticated = p.vars[auth].bVal;
    g.msg_class = p.vars[cls].uiVal;
    g.label = p.vars[lab].pwszVal;
  }
  return g;
}

Got peek(QUEUEHANDLE h) { return receive(h, MQ_ACTION_PEEK_CURRENT); }

ITransaction* begin() {
  ITransaction* tx = nullptr;
  EXPECT_HR(MQ_OK, MQBeginTransaction(&tx));
  return tx;
}

// =============================================================================================

TEST(Subqueues, MoveKeepsLookupIdPropertiesAndOrderAndMovesBack) {
  const std::wstring q = make_queue(L"move");
  const std::wstring sub = q + L";poison";
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE target = open_queue(sub, MQ_MOVE_ACCESS);
  QUEUEHANDLE subr = open_queue(sub, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, {"one"}));
  ASSERT_HR(MQ_OK, send(s, {"two", {}, 0, 0, 5}));
  ASSERT_HR(MQ_OK, send(s, {"three"}));
  Got two = peek(r);
  ASSERT_HR(MQ_OK, two.hr);
  ASSERT_EQ(two.body, "two");  // priority 5 first

  EXPECT_HR(MQ_OK, MQMoveMessage(r, target, two.lookup_id, MQ_NO_TRANSACTION));
  // Gone from the queue, in the subqueue with its lookup id, priority and label.
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND,
            MQReceiveMessageByLookupId(r, two.lookup_id, MQ_LOOKUP_PEEK_CURRENT, nullptr, nullptr,
                                       nullptr, nullptr));
  Got moved = peek(subr);
  ASSERT_HR(MQ_OK, moved.hr);
  EXPECT_EQ(moved.body, "two");
  EXPECT_EQ(moved.lookup_id, two.lookup_id);
  EXPECT_EQ(moved.priority, 5);
  EXPECT_EQ(moved.label, L"label-1");
  EXPECT_EQ(peek(r).body, "one");

  // A second move of the same lookup id from the queue: not there any more.
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, MQMoveMessage(r, target, two.lookup_id, nullptr));

  // Back to the main queue (opened with MQ_MOVE_ACCESS), into its old place.
  QUEUEHANDLE main_target = open_queue(q, MQ_MOVE_ACCESS);
  EXPECT_HR(MQ_OK, MQMoveMessage(subr, main_target, two.lookup_id, nullptr));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(subr).hr);
  EXPECT_EQ(receive(r).body, "two");
  EXPECT_EQ(receive(r).body, "one");
  EXPECT_EQ(receive(r).body, "three");
  for (QUEUEHANDLE h : {s, r, target, subr, main_target}) EXPECT_HR(MQ_OK, MQCloseQueue(h));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
}

TEST(Subqueues, SiblingsCursorsLookupsAndHandleFormatName) {
  const std::wstring q = make_queue(L"sib");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE a = open_queue(q + L";a", MQ_MOVE_ACCESS);
  QUEUEHANDLE ar = open_queue(q + L";a", MQ_RECEIVE_ACCESS);
  QUEUEHANDLE b = open_queue(q + L";B", MQ_MOVE_ACCESS);  // names are not case-sensitive
  QUEUEHANDLE br = open_queue(q + L";b", MQ_PEEK_ACCESS);
  std::vector<ULONGLONG> ids;
  for (const char* body : {"m1", "m2", "m3"}) ASSERT_HR(MQ_OK, send(s, {body}));
  {
    HANDLE c = nullptr;
    ASSERT_HR(MQ_OK, MQCreateCursor(r, &c));
    Got g = receive(r, MQ_ACTION_PEEK_CURRENT, nullptr, c);
    while (SUCCEEDED(g.hr)) {
      ids.push_back(g.lookup_id);
      g = receive(r, MQ_ACTION_PEEK_NEXT, nullptr, c);
    }
    EXPECT_HR(MQ_OK, MQCloseCursor(c));
  }
  ASSERT_EQ(ids.size(), 3u);
  for (ULONGLONG id : ids) ASSERT_HR(MQ_OK, MQMoveMessage(r, a, id, nullptr));
  ASSERT_HR(MQ_OK, MQMoveMessage(ar, b, ids[1], nullptr));  // sibling to sibling
  // A cursor and lookups on a subqueue.
  HANDLE c = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(ar, &c));
  EXPECT_EQ(receive(ar, MQ_ACTION_PEEK_CURRENT, nullptr, c).body, "m1");
  EXPECT_EQ(receive(ar, MQ_ACTION_PEEK_NEXT, nullptr, c).body, "m3");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(ar, MQ_ACTION_PEEK_NEXT, nullptr, c).hr);
  EXPECT_HR(MQ_OK, MQCloseCursor(c));
  EXPECT_HR(MQ_OK, MQReceiveMessageByLookupId(ar, ids[2], MQ_LOOKUP_PEEK_CURRENT, nullptr, nullptr,
                                              nullptr, nullptr));
  EXPECT_HR(MQ_OK, MQReceiveMessageByLookupId(br, ids[1], MQ_LOOKUP_PEEK_CURRENT, nullptr, nullptr,
                                              nullptr, nullptr));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(r).hr);
  // The handle's format name names the subqueue.
  WCHAR buf[300];
  DWORD len = 300;
  ASSERT_HR(MQ_OK, MQHandleToFormatName(ar, buf, &len));
  const std::wstring f(buf);
  EXPECT_NE(f.find(L";a"), std::wstring::npos) << std::string(f.begin(), f.end());
  // Subqueues are not listed among the machine's private queues; their queue is.
  {
    PROPID id = PROPID_MGMT_MSMQ_PRIVATEQ;
    MQPROPVARIANT v{};
    v.vt = VT_NULL;
    MQMGMTPROPS mp{1, &id, &v, nullptr};
    ASSERT_HR(MQ_OK, MQMgmtGetInfo(nullptr, MO_MACHINE_TOKEN, &mp));
    ASSERT_EQ(v.vt, VT_LPWSTR | VT_VECTOR);
    const std::wstring name = q.substr(q.rfind(L'\\') + 1);
    int main_listed = 0;
    for (ULONG i = 0; i < v.calpwstr.cElems; ++i) {
      const std::wstring path = v.calpwstr.pElems[i];
      EXPECT_EQ(path.find(L';'), std::wstring::npos) << std::string(path.begin(), path.end());
      if (path.size() > name.size() &&
          path.compare(path.size() - name.size(), name.size(), name) == 0)
        ++main_listed;
      MQFreeMemory(v.calpwstr.pElems[i]);
    }
    MQFreeMemory(v.calpwstr.pElems);
    EXPECT_EQ(main_listed, 1);
  }
  // MQPurgeQueue of a subqueue empties it alone.
  EXPECT_HR(MQ_OK, MQPurgeQueue(ar));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(ar).hr);
  EXPECT_HR(MQ_OK, MQReceiveMessageByLookupId(br, ids[1], MQ_LOOKUP_PEEK_CURRENT, nullptr, nullptr,
                                              nullptr, nullptr));
  for (QUEUEHANDLE h : {s, r, a, ar, b, br}) EXPECT_HR(MQ_OK, MQCloseQueue(h));
  // Deleting the queue deletes its subqueues and their messages.
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
  QUEUEHANDLE gone = nullptr;
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND,
            MQOpenQueue((q + L";a").c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &gone));
}

TEST(Subqueues, SignedMessageStillVerifiesAfterAMove) {
  // The queue demands signed messages: its subqueue does too, and a moved message passes.
  const std::wstring q = make_queue(L"signed", false, /*authenticate=*/true);
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  HANDLE ctx = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(nullptr, 0, &ctx));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE t = open_queue(q + L";retry", MQ_MOVE_ACCESS);
  QUEUEHANDLE tr = open_queue(q + L";retry", MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK,
            send(s, {"signed", {}, 0, static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx))}));
  Got g = peek(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.authenticated, 1);
  ASSERT_HR(MQ_OK, MQMoveMessage(r, t, g.lookup_id, nullptr));
  Got m = receive(tr);
  ASSERT_HR(MQ_OK, m.hr);
  EXPECT_EQ(m.body, "signed");
  EXPECT_EQ(m.authenticated, 1);  // verified against the main queue's name: not "wrong-queue"
  MQFreeSecurityContext(ctx);
  for (QUEUEHANDLE h : {s, r, t, tr}) EXPECT_HR(MQ_OK, MQCloseQueue(h));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
}

TEST(Subqueues, BadInput) {
  const std::wstring q = make_queue(L"bad");
  const std::wstring other = make_queue(L"other");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE p = open_queue(q, MQ_PEEK_ACCESS);
  QUEUEHANDLE t = open_queue(q + L";x", MQ_MOVE_ACCESS);
  QUEUEHANDLE tr = open_queue(q + L";x", MQ_RECEIVE_ACCESS);
  QUEUEHANDLE ot = open_queue(other + L";x", MQ_MOVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, {"m"}));
  const ULONGLONG id = peek(r).lookup_id;
  ASSERT_NE(id, 0u);
  QUEUEHANDLE h = nullptr;
  // Opening: sending to a subqueue, malformed names, a missing queue, move access remotely.
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
            MQOpenQueue((q + L";x").c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &h));
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQOpenQueue((q + L";").c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQOpenQueue((q + L";a;b").c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQOpenQueue(L"DIRECT=OS:.\\private$\\;x", MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQOpenQueue(L"DIRECT=OS:.\\private$\\sq-none-at-all;x",
                                                  MQ_MOVE_ACCESS, MQ_DENY_NONE, &h));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER,
            MQOpenQueue(q.c_str(), MQ_MOVE_ACCESS | MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  // Handles.
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQMoveMessage(nullptr, t, id, nullptr));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQMoveMessage(r, nullptr, id, nullptr));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE,
            MQMoveMessage(reinterpret_cast<QUEUEHANDLE>(0x1234), t, id, nullptr));
  HANDLE cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(r, &cursor));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQMoveMessage(cursor, t, id, nullptr));  // a cursor
  EXPECT_HR(MQ_OK, MQCloseCursor(cursor));
  // Access: the source needs receive access, the target move access.
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, MQMoveMessage(p, t, id, nullptr));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, MQMoveMessage(s, t, id, nullptr));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, MQMoveMessage(r, tr, id, nullptr));
  // Unrelated queues, and a queue to itself.
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMoveMessage(r, ot, id, nullptr));
  QUEUEHANDLE self = open_queue(q, MQ_MOVE_ACCESS);
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMoveMessage(r, self, id, nullptr));
  // Lookup ids that name nothing.
  for (ULONGLONG bad : {ULONGLONG{0}, id + 1000, ~ULONGLONG{0}}) {
    EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, MQMoveMessage(r, t, bad, nullptr));
  }
  // Transactions on a non-transactional queue; DTC ones; a forged pointer.
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, MQMoveMessage(r, t, id, MQ_SINGLE_MESSAGE));
  ITransaction* tx = begin();
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, MQMoveMessage(r, t, id, tx));
  tx->Release();
  EXPECT_HR(MQ_ERROR_DTC_CONNECT, MQMoveMessage(r, t, id, MQ_MTS_TRANSACTION));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE,
            MQMoveMessage(r, t, id, reinterpret_cast<ITransaction*>(0x4321)));
  // Nothing moved by any of these.
  EXPECT_EQ(peek(r).lookup_id, id);
  // MQMarkMessageRejected's bad input.
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQMarkMessageRejected(nullptr, id));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, MQMarkMessageRejected(p, id));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, MQMarkMessageRejected(r, id));  // not transactional
  // Property calls on a subqueue are refused; deleting a subqueue too; ';' in a path name.
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION, MQDeleteQueue((q + L";x").c_str()));
  {
    Props props;
    props.ui4(PROPID_Q_QUOTA, 5);
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
              MQSetQueueProperties((q + L";x").c_str(), props.queue()));
    Props get;
    get.null(PROPID_Q_QUOTA);
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
              MQGetQueueProperties((q + L";x").c_str(), get.queue()));
    Props create;
    create.wstr(PROPID_Q_PATHNAME, L".\\private$\\sq-has;semicolon");
    WCHAR buf[256];
    DWORD len = 256;
    EXPECT_HR(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, MQCreateQueue(nullptr, create.queue(), buf, &len));
  }
  for (QUEUEHANDLE each : {s, r, p, t, tr, ot, self}) EXPECT_HR(MQ_OK, MQCloseQueue(each));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQMoveMessage(r, t, id, nullptr));  // closed handles
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
  EXPECT_HR(MQ_OK, MQDeleteQueue(other.c_str()));
}

TEST(Subqueues, MoveInATransactionHappensAtCommitAndNotAtAbort) {
  const std::wstring q = make_queue(L"tx", /*transactional=*/true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE t = open_queue(q + L";held", MQ_MOVE_ACCESS);
  QUEUEHANDLE tr = open_queue(q + L";held", MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, {"a"}, MQ_SINGLE_MESSAGE));
  ASSERT_HR(MQ_OK, send(s, {"b"}, MQ_SINGLE_MESSAGE));
  const ULONGLONG a = peek(r).lookup_id;
  // MQ_SINGLE_MESSAGE: at once.
  ASSERT_HR(MQ_OK, MQMoveMessage(r, t, a, MQ_SINGLE_MESSAGE));
  EXPECT_EQ(peek(tr).lookup_id, a);
  const ULONGLONG b = peek(r).lookup_id;
  // Aborted: b is back in the queue, the subqueue holds only a.
  ITransaction* tx = begin();
  ASSERT_HR(MQ_OK, MQMoveMessage(r, t, b, tx));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(r).hr);  // out of the queue while the transaction runs
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND,
            MQReceiveMessageByLookupId(tr, b, MQ_LOOKUP_PEEK_CURRENT, nullptr, nullptr, nullptr,
                                       nullptr));  // and not in the subqueue yet
  EXPECT_HR(S_OK, tx->Abort(nullptr, FALSE, FALSE));
  tx->Release();
  EXPECT_EQ(peek(r).lookup_id, b);
  // Committed: in the subqueue, with its lookup id.
  tx = begin();
  ASSERT_HR(MQ_OK, MQMoveMessage(r, t, b, tx));
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  tx->Release();
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(r).hr);
  EXPECT_EQ(receive(tr).body, "a");
  Got gb = receive(tr);
  EXPECT_EQ(gb.body, "b");
  EXPECT_EQ(gb.lookup_id, b);
  for (QUEUEHANDLE h : {s, r, t, tr}) EXPECT_HR(MQ_OK, MQCloseQueue(h));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
}

TEST(Subqueues, MarkMessageRejectedNacksTheSenderAtCommit) {
  const std::wstring q = make_queue(L"rej", /*transactional=*/true);
  const std::wstring admin = make_queue(L"admin");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE ar = open_queue(admin, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, {"asks", admin, MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE}, MQ_SINGLE_MESSAGE));
  ASSERT_HR(MQ_OK, send(s, {"silent", admin, MQMSG_ACKNOWLEDGMENT_NONE}, MQ_SINGLE_MESSAGE));
  ASSERT_HR(MQ_OK,
            send(s, {"aborted", admin, MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE}, MQ_SINGLE_MESSAGE));
  // In the queue, not received in a transaction: not in a transaction's scope.
  const ULONGLONG first = peek(r).lookup_id;
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, MQMarkMessageRejected(r, first));
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, MQMarkMessageRejected(r, first + 1000));

  ITransaction* tx = begin();
  Got g1 = receive(r, MQ_ACTION_RECEIVE, tx);
  Got g2 = receive(r, MQ_ACTION_RECEIVE, tx);
  ASSERT_EQ(g1.body, "asks");
  ASSERT_EQ(g2.body, "silent");
  EXPECT_HR(MQ_OK, MQMarkMessageRejected(r, g1.lookup_id));
  EXPECT_HR(MQ_OK, MQMarkMessageRejected(r, g2.lookup_id));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(ar).hr);  // nothing before the commit
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  tx->Release();
  Got nack = receive(ar);
  ASSERT_HR(MQ_OK, nack.hr);
  EXPECT_EQ(nack.msg_class, MQMSG_CLASS_NACK_RECEIVE_REJECTED);
  EXPECT_EQ(nack.body, "asks");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(ar).hr);  // "silent" asked for none

  // Marked, then aborted: back in the queue, no NACK.
  tx = begin();
  Got g3 = receive(r, MQ_ACTION_RECEIVE, tx);
  ASSERT_EQ(g3.body, "aborted");
  EXPECT_HR(MQ_OK, MQMarkMessageRejected(r, g3.lookup_id));
  EXPECT_HR(S_OK, tx->Abort(nullptr, FALSE, FALSE));
  tx->Release();
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(ar).hr);
  EXPECT_EQ(peek(r).body, "aborted");
  for (QUEUEHANDLE h : {s, r, ar}) EXPECT_HR(MQ_OK, MQCloseQueue(h));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
  EXPECT_HR(MQ_OK, MQDeleteQueue(admin.c_str()));
}

TEST(Subqueues, ReceiveInATransactionAndMarkRejectedOnASubqueue) {
  const std::wstring q = make_queue(L"subtx", /*transactional=*/true);
  const std::wstring admin = make_queue(L"subadmin");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE t = open_queue(q + L";poison", MQ_MOVE_ACCESS);
  QUEUEHANDLE tr = open_queue(q + L";poison", MQ_RECEIVE_ACCESS);
  QUEUEHANDLE ar = open_queue(admin, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK,
            send(s, {"poisoned", admin, MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE}, MQ_SINGLE_MESSAGE));
  const ULONGLONG id = peek(r).lookup_id;
  ASSERT_HR(MQ_OK, MQMoveMessage(r, t, id, MQ_SINGLE_MESSAGE));
  // A transaction's receive from the subqueue is put back there at abort.
  ITransaction* tx = begin();
  EXPECT_EQ(receive(tr, MQ_ACTION_RECEIVE, tx).body, "poisoned");
  EXPECT_HR(S_OK, tx->Abort(nullptr, FALSE, FALSE));
  tx->Release();
  EXPECT_EQ(peek(tr).lookup_id, id);
  // Received again, marked rejected through the subqueue's handle, committed: NACKed.
  tx = begin();
  EXPECT_EQ(receive(tr, MQ_ACTION_RECEIVE, tx).lookup_id, id);
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, MQMarkMessageRejected(r, id));  // not the main queue's
  EXPECT_HR(MQ_OK, MQMarkMessageRejected(tr, id));
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  tx->Release();
  Got nack = receive(ar);
  ASSERT_HR(MQ_OK, nack.hr);
  EXPECT_EQ(nack.msg_class, MQMSG_CLASS_NACK_RECEIVE_REJECTED);
  EXPECT_EQ(nack.body, "poisoned");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(tr).hr);
  for (QUEUEHANDLE h : {s, r, t, tr, ar}) EXPECT_HR(MQ_OK, MQCloseQueue(h));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
  EXPECT_HR(MQ_OK, MQDeleteQueue(admin.c_str()));
}

TEST(Quotas, AMessageOverTheQuotaIsNackedAndNotStoredAndSetPropertiesTakesEffect) {
  const std::wstring q = make_queue(L"quota");
  const std::wstring admin = make_queue(L"qadmin");
  {
    Props p;
    p.ui4(PROPID_Q_QUOTA, 2);  // 2 KB
    ASSERT_HR(MQ_OK, MQSetQueueProperties(q.c_str(), p.queue()));
  }
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE ar = open_queue(admin, MQ_RECEIVE_ACCESS);
  const std::string kb(1000, 'x');
  EXPECT_HR(MQ_OK, send(s, {kb + "1", admin, MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE}));
  // The second would take the queue over 2 KB: MQSendMessage succeeds (as MSMQ's), the message
  // is not stored, its sender gets a NACK.
  EXPECT_HR(MQ_OK, send(s, {kb + "2", admin, MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE}));
  EXPECT_HR(MQ_OK, send(s, {kb + "3"}));  // no NACK asked: dropped silently
  Got nack = receive(ar);
  ASSERT_HR(MQ_OK, nack.hr);
  EXPECT_EQ(nack.msg_class, MQMSG_CLASS_NACK_Q_EXCEED_QUOTA);
  EXPECT_EQ(nack.body, kb + "2");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(ar).hr);
  // An open handle sees a new quota at once.
  {
    Props p;
    p.ui4(PROPID_Q_QUOTA, INFINITE);
    ASSERT_HR(MQ_OK, MQSetQueueProperties(q.c_str(), p.queue()));
  }
  EXPECT_HR(MQ_OK, send(s, {kb + "4"}));
  EXPECT_EQ(receive(r).body, kb + "1");
  EXPECT_EQ(receive(r).body, kb + "4");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(r).hr);
  // Once the queue has room again, messages are accepted again.
  {
    Props p;
    p.ui4(PROPID_Q_QUOTA, 2);
    ASSERT_HR(MQ_OK, MQSetQueueProperties(q.c_str(), p.queue()));
  }
  EXPECT_HR(MQ_OK, send(s, {kb + "5"}));
  EXPECT_EQ(receive(r).body, kb + "5");
  // A quota of 0: nothing fits.
  {
    Props p;
    p.ui4(PROPID_Q_QUOTA, 0);
    ASSERT_HR(MQ_OK, MQSetQueueProperties(q.c_str(), p.queue()));
  }
  EXPECT_HR(MQ_OK, send(s, {"tiny"}));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, peek(r).hr);
  for (QUEUEHANDLE h : {s, r, ar}) EXPECT_HR(MQ_OK, MQCloseQueue(h));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
  EXPECT_HR(MQ_OK, MQDeleteQueue(admin.c_str()));
}

// Review 3, findings 2, 5 and 6.
TEST(Subqueues, ReceivesFromASubqueueAreJournaledInItsQueuesJournal) {
  static int n = 0;
  const std::wstring name =
      L"sq-journal-" + std::to_wstring(getpid()) + L"-" + std::to_wstring(++n);
  const std::wstring path = L".\\private$\\" + name;
  const std::wstring q = L"DIRECT=OS:.\\private$\\" + name;
  Props qp;
  qp.wstr(PROPID_Q_PATHNAME, path.c_str());
  qp.ui1(PROPID_Q_JOURNAL, MQ_JOURNAL);
  WCHAR buf[256];
  DWORD len = 256;
  ASSERT_HR(MQ_OK, MQCreateQueue(nullptr, qp.queue(), buf, &len));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE target = open_queue(q + L";poison", MQ_MOVE_ACCESS);
  QUEUEHANDLE subr = open_queue(q + L";poison", MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, {"via the subqueue"}));
  Got g = peek(r);
  ASSERT_HR(MQ_OK, g.hr);
  ASSERT_HR(MQ_OK, MQMoveMessage(r, target, g.lookup_id, nullptr));
  EXPECT_EQ(receive(subr).body, "via the subqueue");
  // The copy is in the queue's own journal; a subqueue has no journal of its own.
  QUEUEHANDLE journal = open_queue(q + L";JOURNAL", MQ_RECEIVE_ACCESS);
  EXPECT_EQ(receive(journal).body, "via the subqueue");
  QUEUEHANDLE h = nullptr;
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQOpenQueue((q + L";poison;JOURNAL").c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  for (QUEUEHANDLE each : {s, r, target, subr, journal}) EXPECT_HR(MQ_OK, MQCloseQueue(each));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
}

TEST(Subqueues, JournalSuffixesParseOnceAndOverlongFormatNamesAreRefusedAtOnce) {
  const std::wstring q = make_queue(L"suffix");
  QUEUEHANDLE h = nullptr;
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQOpenQueue((q + L";JOURNAL;JOURNAL").c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  // A sender-chosen admin queue of 100,000 ";JOURNAL"s used to be parsed recursively, one
  // level per suffix (a stack overflow); it is refused by its length before any parsing.
  std::wstring deep = q;
  for (int i = 0; i < 100000; ++i) deep += L";JOURNAL";
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQOpenQueue(deep.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  // Another machine's system queue names a valid machine, as any other format name must.
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME, MQOpenQueue(L"DIRECT=OS:no such\thost\\SYSTEM$;DEADLETTER",
                                                     MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  QUEUEHANDLE journal = open_queue(q + L";JOURNAL", MQ_PEEK_ACCESS);
  EXPECT_HR(MQ_OK, MQCloseQueue(journal));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
}

TEST(Subqueues, DeletingAQueueWithANonAsciiNameDeletesItsSubqueues) {
  const std::wstring name = L"sq-\u00fcber-\u6d4b\u8bd5-" + std::to_wstring(getpid());
  const std::wstring path = L".\\private$\\" + name;
  const std::wstring q = L"DIRECT=OS:.\\private$\\" + name;
  auto create = [&] {
    Props qp;
    qp.wstr(PROPID_Q_PATHNAME, path.c_str());
    WCHAR buf[256];
    DWORD len = 256;
    return MQCreateQueue(nullptr, qp.queue(), buf, &len);
  };
  ASSERT_HR(MQ_OK, create());
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE target = open_queue(q + L";retry", MQ_MOVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, {"deleted with its queue"}));
  Got g = peek(r);
  ASSERT_HR(MQ_OK, g.hr);
  ASSERT_HR(MQ_OK, MQMoveMessage(r, target, g.lookup_id, nullptr));
  for (QUEUEHANDLE each : {s, r, target}) EXPECT_HR(MQ_OK, MQCloseQueue(each));
  ASSERT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
  // Re-created: its subqueue starts empty (the old one's message does not come back).
  ASSERT_HR(MQ_OK, create());
  QUEUEHANDLE subr = open_queue(q + L";retry", MQ_RECEIVE_ACCESS);
  Got left = peek(subr);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, left.hr) << left.body;
  EXPECT_HR(MQ_OK, MQCloseQueue(subr));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
}

}  // namespace
