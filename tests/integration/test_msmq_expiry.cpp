// Message expiry (issue 13): PROPID_M_TIME_TO_BE_RECEIVED through libmqrt, against what MSMQ
// documents. An expired message is never returned by a receive, a peek, a cursor or a lookup;
// it is taken out of its queue and, when the sender asked for negative receive acknowledgments,
// a NACK of class MQMSG_CLASS_NACK_RECEIVE_TIMEOUT goes to its admin queue, correlated with it.
// A receive returns the seconds left. Bad input: wrong VT on send and on receive.
//
// Runs on a throwaway SoftHSM token (tests/support/softhsm_env); one test signs.
#include <mq.h>
#include <transact.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <cwctype>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/hresult_text.hpp"
#include "tests/support/msmq_props.hpp"
#include "tests/support/msmq_queues.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"
#include "tests/support/unreachable_broker.hpp"

namespace {

using mqsec::testing::Props;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

std::wstring make_queue(const std::wstring& stem, bool transactional = false,
                        bool authenticate = false) {
  return mqsec::testing::make_private_queue(L"ttl-", stem, transactional, authenticate);
}

using mqsec::testing::open_queue;

struct Send {
  std::string body;
  ULONG ttbr = INFINITE;  // INFINITE: the property is not given
  UCHAR acknowledge = MQMSG_ACKNOWLEDGMENT_NONE;
  std::wstring admin;
  ULONG context = 0;
  ITransaction* tx = MQ_NO_TRANSACTION;
  UCHAR journal = MQMSG_JOURNAL_NONE;  // PROPID_M_JOURNAL (MQMSG_DEADLETTER)

  Send& set_body(std::string v) {
    body = std::move(v);
    return *this;
  }
  Send& set_ttbr(ULONG v) {
    ttbr = v;
    return *this;
  }
  Send& set_acknowledge(UCHAR v) {
    acknowledge = v;
    return *this;
  }
  Send& set_admin(std::wstring v) {
    admin = std::move(v);
    return *this;
  }
  Send& set_context(ULONG v) {
    context = v;
    return *this;
  }
  Send& set_tx(ITransaction* v) {
    tx = v;
    return *this;
  }
  Send& set_journal(UCHAR v) {
    journal = v;
    return *this;
  }
};

// Sends `s`; the message id in `msg_id` when given.
HRESULT send(QUEUEHANDLE h, const Send& s, std::vector<UCHAR>* msg_id = nullptr) {
  std::string copy = s.body;
  Props p;
  p.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(copy.data()), static_cast<ULONG>(copy.size()));
  if (s.ttbr != INFINITE) p.ui4(PROPID_M_TIME_TO_BE_RECEIVED, s.ttbr);
  if (s.acknowledge != MQMSG_ACKNOWLEDGMENT_NONE) p.ui1(PROPID_M_ACKNOWLEDGE, s.acknowledge);
  if (!s.admin.empty()) p.wstr(PROPID_M_ADMIN_QUEUE, s.admin.c_str());
  if (s.journal != MQMSG_JOURNAL_NONE) p.ui1(PROPID_M_JOURNAL, s.journal);
  if (s.context != 0) {
    p.ui4(PROPID_M_AUTH_LEVEL, MQMSG_AUTH_LEVEL_ALWAYS);
    p.ui4(PROPID_M_SECURITY_CONTEXT, s.context);
  }
  std::vector<UCHAR> id(PROPID_M_MSGID_SIZE);
  p.bytes(PROPID_M_MSGID, id.data(), static_cast<ULONG>(id.size()));
  const HRESULT hr = MQSendMessage(h, p.msg(), s.tx);
  if (msg_id) *msg_id = id;
  return hr;
}

struct Got {
  HRESULT hr = MQ_OK;
  std::string body;
  ULONG ttbr = 0;
  ULONG ttrq = 0;
  USHORT msg_class = 0xFFFF;
  std::vector<UCHAR> correlation_id;
  ULONGLONG lookup_id = 0;
  int authenticated = -1;
};

Got receive(QUEUEHANDLE h, DWORD action = MQ_ACTION_RECEIVE, DWORD timeout = 0,
            HANDLE cursor = nullptr, ITransaction* tx = MQ_NO_TRANSACTION) {
  std::vector<UCHAR> body(256);
  std::vector<UCHAR> correlation(PROPID_M_CORRELATIONID_SIZE);
  Props p;
  p.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
  const size_t ttbr = p.null(PROPID_M_TIME_TO_BE_RECEIVED);
  const size_t ttrq = p.null(PROPID_M_TIME_TO_REACH_QUEUE);
  const size_t cls = p.null(PROPID_M_CLASS);
  p.bytes(PROPID_M_CORRELATIONID, correlation.data(), static_cast<ULONG>(correlation.size()));
  const size_t lid = p.null(PROPID_M_LOOKUPID);
  const size_t auth = p.null(PROPID_M_AUTHENTICATED);
  Got g;
  g.hr = MQReceiveMessage(h, timeout, action, p.msg(), nullptr, nullptr, cursor, tx);
  if (SUCCEEDED(g.hr)) {
    g.body.assign(body.begin(), body.begin() + p.vars[0].caub.cElems);
    g.ttbr = p.vars[ttbr].ulVal;
    g.ttrq = p.vars[ttrq].ulVal;
    g.msg_class = p.vars[cls].uiVal;
    g.correlation_id = correlation;
    g.lookup_id = p.vars[lid].uhVal.QuadPart;
    g.authenticated = p.vars[auth].bVal;
  }
  return g;
}

// The time to be received of a message a test still peeks or walks to before it expires: a
// stalled machine may take over a second between the send and the peek (with 1 s, a message
// lives 1-2 s: sent times are whole seconds).
constexpr ULONG kAlive = 3;

// Sleeps until a message sent at `sent` (Unix seconds) with time to be received `ttbr` has
// expired: sent times are whole seconds, and the limit is over once a whole second past it
// began. With several such messages, `sent` is read after the last one's send: on a busy
// machine the sends may straddle a second boundary.
void wait_expired(time_t sent, ULONG ttbr) {
  while (std::time(nullptr) <= sent + static_cast<time_t>(ttbr)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

TEST(Expiry, AnExpiredMessageIsNeitherPeekedNorReceivedAndLeavesTheQueue) {
  const std::wstring q = make_queue(L"basic");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("short").set_ttbr(kAlive)));
  // After the send: its second may be the next one (a wait from before it can end too early).
  const time_t sent = std::time(nullptr);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("forever")));
  ASSERT_HR(MQ_OK, send(s, Send().set_body("long").set_ttbr(3600)));
  // Before it expires: peeked, with the seconds left (MSMQ returns the time left).
  Got g = receive(r, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "short");
  EXPECT_LE(g.ttbr, kAlive);
  wait_expired(sent, kAlive);
  // After: neither peek nor receive sees it; the others are there, in order.
  g = receive(r, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "forever");
  EXPECT_EQ(g.ttbr, static_cast<ULONG>(INFINITE));
  g = receive(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "forever");
  g = receive(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "long");
  EXPECT_GE(g.ttbr, 3590u);
  EXPECT_LE(g.ttbr, 3600u);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r).hr);
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Expiry, ReceiveSkipsAnExpiredMessageAndCursorsAndLookupsDoNotFindIt) {
  const std::wstring q = make_queue(L"walk");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("a").set_ttbr(kAlive)));
  ASSERT_HR(MQ_OK, send(s, Send().set_body("b").set_ttbr(kAlive)));
  const time_t sent = std::time(nullptr);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("c")));
  // Remember "b"'s lookup id through a cursor walk before anything expires.
  HANDLE cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(r, &cursor));
  Got first = receive(r, MQ_ACTION_PEEK_CURRENT, 0, cursor);
  Got second = receive(r, MQ_ACTION_PEEK_NEXT, 0, cursor);
  ASSERT_HR(MQ_OK, second.hr);
  ASSERT_EQ(second.body, "b");
  MQCloseCursor(cursor);
  wait_expired(sent, kAlive);
  // A lookup of an expired message: not found (and it is gone afterwards).
  std::vector<UCHAR> body(16);
  Props p;
  p.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND,
            MQReceiveMessageByLookupId(r, second.lookup_id, MQ_LOOKUP_PEEK_CURRENT, p.msg(),
                                       nullptr, nullptr, MQ_NO_TRANSACTION));
  // A new cursor starts at "c"; MQ_LOOKUP_PEEK_FIRST finds "c".
  ASSERT_HR(MQ_OK, MQCreateCursor(r, &cursor));
  Got g = receive(r, MQ_ACTION_PEEK_CURRENT, 0, cursor);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "c");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r, MQ_ACTION_PEEK_NEXT, 0, cursor).hr);
  MQCloseCursor(cursor);
  Props f;
  f.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
  ASSERT_HR(MQ_OK, MQReceiveMessageByLookupId(r, 0, MQ_LOOKUP_RECEIVE_FIRST, f.msg(), nullptr,
                                              nullptr, MQ_NO_TRANSACTION));
  EXPECT_EQ(std::string(body.begin(), body.begin() + f.vars[0].caub.cElems), "c");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r).hr);
  (void)first;
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Expiry, NacksWithReceiveTimeoutOnlyWhenNegativeReceiveAcksWereAskedFor) {
  const std::wstring q = make_queue(L"nack");
  const std::wstring admin = make_queue(L"nack-admin");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE a = open_queue(admin, MQ_RECEIVE_ACCESS);
  std::vector<UCHAR> asked, arrival_only, none;
  ASSERT_HR(MQ_OK, send(s,
                        Send()
                            .set_body("asked")
                            .set_ttbr(1)
                            .set_acknowledge(MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE)
                            .set_admin(admin),
                        &asked));
  // NACK_REACH_QUEUE is negative *arrival* acknowledgments only: no receive-timeout NACK.
  ASSERT_HR(MQ_OK, send(s,
                        Send()
                            .set_body("arrival only")
                            .set_ttbr(1)
                            .set_acknowledge(MQMSG_ACKNOWLEDGMENT_NACK_REACH_QUEUE)
                            .set_admin(admin),
                        &arrival_only));
  ASSERT_HR(MQ_OK, send(s, Send().set_body("none").set_ttbr(1).set_admin(admin), &none));
  const time_t sent = std::time(nullptr);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("kept")));
  wait_expired(sent, 1);
  // A peek meets the expired messages first: they are taken out and the one NACK sent.
  Got g = receive(r, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "kept");
  Got n = receive(a, MQ_ACTION_RECEIVE, 2000);
  ASSERT_HR(MQ_OK, n.hr);
  EXPECT_EQ(n.msg_class, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT);
  EXPECT_EQ(n.correlation_id, asked);
  EXPECT_EQ(n.body, "asked");  // a NACK carries the original's body, as in MSMQ
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(a).hr);
  MQCloseQueue(s);
  MQCloseQueue(r);
  MQCloseQueue(a);
}

TEST(Expiry, SignedMessagesKeepVerifyingAndExpire) {
  const std::wstring q = make_queue(L"signed", false, /*authenticate=*/true);
  const std::wstring admin = make_queue(L"signed-admin");
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  HANDLE ctx = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(nullptr, 0, &ctx));
  const auto context = static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE a = open_queue(admin, MQ_RECEIVE_ACCESS);
  std::vector<UCHAR> id;
  ASSERT_HR(MQ_OK, send(s,
                        Send()
                            .set_body("signed short")
                            .set_ttbr(kAlive)
                            .set_acknowledge(MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE)
                            .set_admin(admin)
                            .set_context(context),
                        &id));
  // After the send: its second may be the next one (a wait from before it can end too early).
  const time_t sent = std::time(nullptr);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("signed long").set_ttbr(600).set_context(context)));
  MQFreeSecurityContext(ctx);
  // The time limit is outside the signature: the message verifies with it.
  Got g = receive(r, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "signed short");
  EXPECT_EQ(g.authenticated, 1);
  wait_expired(sent, kAlive);
  g = receive(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "signed long");
  EXPECT_EQ(g.authenticated, 1);
  Got n = receive(a, MQ_ACTION_RECEIVE, 2000);
  ASSERT_HR(MQ_OK, n.hr);
  EXPECT_EQ(n.msg_class, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT);
  EXPECT_EQ(n.correlation_id, id);
  MQCloseQueue(s);
  MQCloseQueue(r);
  MQCloseQueue(a);
}

TEST(Expiry, TransactionalReceivesDoNotTakeExpiredMessages) {
  const std::wstring q = make_queue(L"xact", /*transactional=*/true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("old").set_ttbr(0).set_tx(MQ_SINGLE_MESSAGE)));
  // After the send: its second may be the next one (a wait from before it can end too early).
  const time_t sent = std::time(nullptr);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("new").set_tx(MQ_SINGLE_MESSAGE)));
  wait_expired(sent, 0);
  ITransaction* tx = nullptr;
  ASSERT_HR(MQ_OK, MQBeginTransaction(&tx));
  Got g = receive(r, MQ_ACTION_RECEIVE, 0, nullptr, tx);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "new");
  // Aborted: "new" comes back, the expired one does not.
  EXPECT_HR(S_OK, tx->Abort(nullptr, FALSE, FALSE));
  tx->Release();
  g = receive(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "new");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r).hr);
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Expiry, TimeToReachQueueIsCutToTheTimeToBeReceived) {
  const std::wstring q = make_queue(L"cut");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  std::string body = "cut";
  Props p;
  p.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body.data()), 3);
  p.ui4(PROPID_M_TIME_TO_REACH_QUEUE, 100);
  p.ui4(PROPID_M_TIME_TO_BE_RECEIVED, 50);
  ASSERT_HR(MQ_OK, MQSendMessage(s, p.msg(), MQ_NO_TRANSACTION));
  Got g = receive(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.ttrq, 50u);
  EXPECT_GE(g.ttbr, 40u);  // the seconds left: what the send and receive took is gone
  EXPECT_LE(g.ttbr, 50u);
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Expiry, BadInput) {
  const std::wstring q = make_queue(L"bad");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  // Send: the time limits are VT_UI4.
  for (VARTYPE vt : {VT_UI1, VT_I4, VT_UI8, VT_LPWSTR, VT_NULL}) {
    for (PROPID id : {PROPID_M_TIME_TO_BE_RECEIVED, PROPID_M_TIME_TO_REACH_QUEUE}) {
      Props p;
      const size_t i = p.add(id, vt);
      EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQSendMessage(s, p.msg(), MQ_NO_TRANSACTION))
          << "vt " << vt;
      EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, p.status[i]);
    }
  }
  ASSERT_HR(MQ_OK, send(s, Send().set_body("still here").set_ttbr(600)));
  // Receive: VT_UI4 or VT_NULL; a wrong VT fails the receive and leaves the message.
  for (VARTYPE vt : {VT_UI1, VT_I4, VT_LPWSTR}) {
    Props p;
    p.add(PROPID_M_TIME_TO_BE_RECEIVED, vt);
    EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT,
              MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, p.msg(), nullptr, nullptr, nullptr,
                               MQ_NO_TRANSACTION));
  }
  Got g = receive(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "still here");
  MQCloseQueue(s);
  MQCloseQueue(r);
}

// ---- dead-letter queues -------------------------------------------------------------------

const std::wstring kDeadLetter = L"DIRECT=OS:.\\SYSTEM$;DEADLETTER";
const std::wstring kDeadXact = L"DIRECT=OS:.\\SYSTEM$;DEADXACT";

// Every body in a queue, received in order.
std::vector<Got> drain(QUEUEHANDLE h) {
  std::vector<Got> out;
  for (;;) {
    Got g = receive(h);
    if (g.hr == MQ_ERROR_IO_TIMEOUT) return out;
    EXPECT_HR(MQ_OK, g.hr);
    if (FAILED(g.hr)) return out;
    out.push_back(g);
  }
}

// PROPID_MGMT_MSMQ_ACTIVEQUEUES: the format names of this machine's queues holding messages
// (outgoing queues among them).
std::vector<std::wstring> active_queues() {
  PROPID id = PROPID_MGMT_MSMQ_ACTIVEQUEUES;
  MQPROPVARIANT var;
  std::memset(&var, 0, sizeof var);
  var.vt = VT_NULL;
  MQMGMTPROPS m{1, &id, &var, nullptr};
  std::vector<std::wstring> out;
  EXPECT_HR(MQ_OK, MQMgmtGetInfo(nullptr, MO_MACHINE_TOKEN, &m));
  for (ULONG i = 0; i < var.calpwstr.cElems; ++i) {
    out.emplace_back(var.calpwstr.pElems[i]);
    MQFreeMemory(var.calpwstr.pElems[i]);
  }
  MQFreeMemory(var.calpwstr.pElems);
  return out;
}

// The admin queue is the sender's choice, but a NACK goes only where MQ_SEND_ACCESS could send:
// never into a subqueue, a journal or a dead-letter queue (of this machine or another's, through
// an outgoing queue). Those NACKs are dropped; a NACK to an ordinary admin queue still goes.
TEST(Expiry, NacksNeverGoToSubqueuesJournalsOrDeadLetterQueues) {
  const std::wstring q = make_queue(L"nack-where");
  const std::wstring admin = make_queue(L"nack-where-admin");
  const std::wstring sub = admin + L";sub";
  const std::wstring journal = admin + L";JOURNAL";
  const std::wstring remote_dlq = L"DIRECT=OS:nackhost\\SYSTEM$;DEADLETTER";
  // Opening them for reading makes the subqueue's and the journal's rows: a NACK could land.
  QUEUEHANDLE a = open_queue(admin, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE as = open_queue(sub, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE aj = open_queue(journal, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE d = open_queue(kDeadLetter, MQ_RECEIVE_ACCESS);
  ASSERT_NE(d, nullptr);
  ASSERT_HR(MQ_OK, MQPurgeQueue(d));
  QUEUEHANDLE dx = open_queue(kDeadXact, MQ_PEEK_ACCESS);
  // Another machine's queues are reachable (through an outgoing queue) with a [broker].
  const mqsec::testing::UnreachableBroker broker;
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  for (const std::wstring& where : {sub, journal, kDeadLetter, kDeadXact, remote_dlq}) {
    ASSERT_HR(MQ_OK, send(s, Send()
                                 .set_body("to a system queue")
                                 .set_ttbr(1)
                                 .set_acknowledge(MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE)
                                 .set_admin(where)));
  }
  std::vector<UCHAR> id;
  ASSERT_HR(MQ_OK, send(s,
                        Send()
                            .set_body("to the admin queue")
                            .set_ttbr(1)
                            .set_acknowledge(MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE)
                            .set_admin(admin),
                        &id));
  const time_t sent = std::time(nullptr);
  wait_expired(sent, 1);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r).hr);  // all expired: NACKs sent (or not) meanwhile
  Got n = receive(a, MQ_ACTION_RECEIVE, 2000);
  ASSERT_HR(MQ_OK, n.hr);
  EXPECT_EQ(n.msg_class, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT);
  EXPECT_EQ(n.correlation_id, id);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(a).hr);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(as, MQ_ACTION_PEEK_CURRENT).hr);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(aj, MQ_ACTION_PEEK_CURRENT).hr);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(d, MQ_ACTION_PEEK_CURRENT).hr);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(dx, MQ_ACTION_PEEK_CURRENT).hr);
  // Nothing waits in an outgoing queue to nackhost either.
  for (const std::wstring& f : active_queues()) {
    EXPECT_EQ(f.find(L"nackhost"), std::wstring::npos) << std::string(f.begin(), f.end());
  }
  for (QUEUEHANDLE h : {a, as, aj, d, dx, s, r}) MQCloseQueue(h);
}

TEST(DeadLetter, ExpiredMessagesAskingForItMoveToTheDeadLetterQueue) {
  const std::wstring q = make_queue(L"dlq");
  QUEUEHANDLE d = open_queue(kDeadLetter, MQ_RECEIVE_ACCESS);
  ASSERT_NE(d, nullptr);
  ASSERT_HR(MQ_OK, MQPurgeQueue(d));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_PEEK_ACCESS);
  std::vector<UCHAR> id;
  ASSERT_HR(MQ_OK, send(s, Send().set_body("dead").set_ttbr(0).set_journal(MQMSG_DEADLETTER), &id));
  ASSERT_HR(MQ_OK, send(s, Send().set_body("discarded").set_ttbr(0)));
  const time_t sent = std::time(nullptr);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("alive").set_journal(MQMSG_DEADLETTER)));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(d, MQ_ACTION_PEEK_CURRENT).hr);
  wait_expired(sent, 0);
  Got g = receive(r, MQ_ACTION_PEEK_CURRENT);  // a peek expires what it meets
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "alive");
  // In the dead-letter queue: the one that asked, with its NACK class as PROPID_M_CLASS, and not
  // expired again there.
  g = receive(d, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "dead");
  EXPECT_EQ(g.msg_class, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT);
  EXPECT_EQ(g.ttbr, 0u);
  const std::vector<Got> dead = drain(d);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].body, "dead");
  // Its handle's format name is the dead-letter queue's.
  WCHAR name[256];
  DWORD len = 256;
  ASSERT_HR(MQ_OK, MQHandleToFormatName(d, name, &len));
  const std::wstring got(name);
  EXPECT_NE(got.find(L"\\SYSTEM$;DEADLETTER"), std::wstring::npos) << got.size();
  MQCloseQueue(s);
  MQCloseQueue(r);
  MQCloseQueue(d);
}

TEST(DeadLetter, TransactionalMessagesGoToDeadXact) {
  const std::wstring q = make_queue(L"dlx", /*transactional=*/true);
  QUEUEHANDLE dx = open_queue(kDeadXact, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE dl = open_queue(kDeadLetter, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, MQPurgeQueue(dx));
  ASSERT_HR(MQ_OK, MQPurgeQueue(dl));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, Send()
                               .set_body("xact dead")
                               .set_ttbr(0)
                               .set_tx(MQ_SINGLE_MESSAGE)
                               .set_journal(MQMSG_DEADLETTER)));
  // After the send: its second may be the next one (a wait from before it can end too early).
  const time_t sent = std::time(nullptr);
  wait_expired(sent, 0);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r).hr);
  EXPECT_TRUE(drain(dl).empty());
  // Received from DEADXACT in a transaction, and put back by an abort.
  ITransaction* tx = nullptr;
  ASSERT_HR(MQ_OK, MQBeginTransaction(&tx));
  Got g = receive(dx, MQ_ACTION_RECEIVE, 0, nullptr, tx);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "xact dead");
  EXPECT_EQ(g.msg_class, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT);
  EXPECT_HR(S_OK, tx->Abort(nullptr, FALSE, FALSE));
  tx->Release();
  const std::vector<Got> dead = drain(dx);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].body, "xact dead");
  MQCloseQueue(s);
  MQCloseQueue(r);
  MQCloseQueue(dx);
  MQCloseQueue(dl);
}

TEST(DeadLetter, ASignedMessageStillVerifiesThere) {
  const std::wstring q = make_queue(L"dls", false, /*authenticate=*/true);
  QUEUEHANDLE d = open_queue(kDeadLetter, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, MQPurgeQueue(d));
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  HANDLE ctx = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(nullptr, 0, &ctx));
  const auto context = static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, Send()
                               .set_body("signed dead")
                               .set_ttbr(0)
                               .set_context(context)
                               .set_journal(MQMSG_DEADLETTER)));
  // After the send: its second may be the next one (a wait from before it can end too early).
  const time_t sent = std::time(nullptr);
  MQFreeSecurityContext(ctx);
  wait_expired(sent, 0);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r).hr);
  Got g = receive(d);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "signed dead");
  EXPECT_EQ(g.authenticated, 1);
  MQCloseQueue(s);
  MQCloseQueue(r);
  MQCloseQueue(d);
}

TEST(DeadLetter, BadInput) {
  QUEUEHANDLE h = nullptr;
  // Read-only for applications.
  for (const std::wstring& f : {kDeadLetter, kDeadXact}) {
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
              MQOpenQueue(f.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &h));
  }
  // Lower case is the same queue; another machine's, or an unknown system queue, are not.
  ASSERT_HR(MQ_OK,
            MQOpenQueue(L"direct=os:.\\system$;deadletter", MQ_PEEK_ACCESS, MQ_DENY_NONE, &h));
  MQCloseQueue(h);
  EXPECT_HR(
      MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
      MQOpenQueue(L"DIRECT=OS:otherhost\\SYSTEM$;DEADLETTER", MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQOpenQueue(L"DIRECT=OS:.\\SYSTEM$;DEADLETTERS", MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQOpenQueue(L"DIRECT=OS:.\\SYSTEM$", MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  // Neither deleted nor changed by applications.
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION, MQDeleteQueue(kDeadLetter.c_str()));
  Props label;
  label.wstr(PROPID_Q_LABEL, L"mine");
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
            MQSetQueueProperties(kDeadLetter.c_str(), label.queue()));
  for (const std::wstring& f : {kDeadLetter, kDeadXact}) {
    Props get;
    get.null(PROPID_Q_PATHNAME);
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
              MQGetQueueProperties(f.c_str(), get.queue()));
  }
  ASSERT_HR(MQ_OK, MQOpenQueue(kDeadXact.c_str(), MQ_PEEK_ACCESS, MQ_DENY_NONE, &h));
  MQCloseQueue(h);
  // PROPID_M_JOURNAL: only MQMSG_JOURNAL and MQMSG_DEADLETTER bits.
  const std::wstring q = make_queue(L"dlbad");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  Props p;
  const size_t i = p.ui1(PROPID_M_JOURNAL, 0x04);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, MQSendMessage(s, p.msg(), MQ_NO_TRANSACTION));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, p.status[i]);
  MQCloseQueue(s);
}

// ---- journals ------------------------------------------------------------------------------

std::wstring make_journaled_queue(const std::wstring& stem, bool transactional = false) {
  static int n = 0;
  const std::wstring name =
      L"jrn-" + stem + L"-" + std::to_wstring(getpid()) + L"-" + std::to_wstring(++n);
  const std::wstring path = L".\\private$\\" + name;
  Props p;
  p.wstr(PROPID_Q_PATHNAME, path.c_str());
  p.ui1(PROPID_Q_JOURNAL, MQ_JOURNAL);
  p.ui1(PROPID_Q_TRANSACTION, transactional ? MQ_TRANSACTIONAL : MQ_TRANSACTIONAL_NONE);
  WCHAR buf[256];
  DWORD len = 256;
  EXPECT_HR(MQ_OK, MQCreateQueue(nullptr, p.queue(), buf, &len));
  return L"DIRECT=OS:.\\private$\\" + name;
}

// PROPID_MGMT_QUEUE_JOURNAL_MESSAGE_COUNT and _BYTES_IN_JOURNAL of the queue `format`.
std::pair<ULONG, ULONG> journal_counts(const std::wstring& format) {
  const std::wstring object = L"QUEUE=" + format;
  PROPID ids[2] = {PROPID_MGMT_QUEUE_JOURNAL_MESSAGE_COUNT, PROPID_MGMT_QUEUE_BYTES_IN_JOURNAL};
  MQPROPVARIANT vars[2];
  std::memset(vars, 0, sizeof vars);
  vars[0].vt = vars[1].vt = VT_NULL;
  MQMGMTPROPS m{2, ids, vars, nullptr};
  EXPECT_HR(MQ_OK, MQMgmtGetInfo(nullptr, object.c_str(), &m));
  return {vars[0].ulVal, vars[1].ulVal};
}

std::vector<std::string> bodies(QUEUEHANDLE h) {
  std::vector<std::string> out;
  for (const Got& g : drain(h)) out.push_back(g.body);
  return out;
}

TEST(Journal, AQueueJournalKeepsWhatReceivesTakeNotPeeks) {
  const std::wstring q = make_journaled_queue(L"keep");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE j = open_queue(q + L";JOURNAL", MQ_RECEIVE_ACCESS);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(journal_counts(q), (std::pair<ULONG, ULONG>(0, 0)));
  ASSERT_HR(MQ_OK, send(s, Send().set_body("one")));
  ASSERT_HR(MQ_OK, send(s, Send().set_body("two")));
  ASSERT_HR(MQ_OK, send(s, Send().set_body("three")));
  // A peek keeps nothing; a receive and a lookup receive each keep their message.
  Got g = receive(r, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(j, MQ_ACTION_PEEK_CURRENT).hr);
  ASSERT_EQ(receive(r).body, "one");
  std::vector<UCHAR> body(16);
  Props p;
  p.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
  ASSERT_HR(MQ_OK, MQReceiveMessageByLookupId(r, 0, MQ_LOOKUP_RECEIVE_FIRST, p.msg(), nullptr,
                                              nullptr, MQ_NO_TRANSACTION));
  const auto [count, bytes] = journal_counts(q);
  EXPECT_EQ(count, 2u);
  EXPECT_GT(bytes, 6u);
  // The journal reads like a queue (peek first, then receive), in receive order.
  g = receive(j, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "one");
  WCHAR name[300];
  DWORD len = 300;
  ASSERT_HR(MQ_OK, MQHandleToFormatName(j, name, &len));
  const std::wstring got(name);
  EXPECT_EQ(got.substr(got.size() - 8), L";JOURNAL");
  EXPECT_EQ(bodies(j), (std::vector<std::string>{"one", "two"}));
  // Purged like a queue.
  ASSERT_HR(MQ_OK, send(s, Send().set_body("four")));
  ASSERT_EQ(receive(r).body, "three");
  ASSERT_EQ(receive(r).body, "four");
  EXPECT_EQ(journal_counts(q).first, 2u);
  ASSERT_HR(MQ_OK, MQPurgeQueue(j));
  EXPECT_EQ(journal_counts(q).first, 0u);
  MQCloseQueue(s);
  MQCloseQueue(r);
  MQCloseQueue(j);
}

TEST(Journal, TheMachineJournalKeepsMessagesAskingForItWhenTheQueueKeepsNone) {
  QUEUEHANDLE mj = open_queue(L"DIRECT=OS:.\\SYSTEM$;JOURNAL", MQ_RECEIVE_ACCESS);
  ASSERT_NE(mj, nullptr);
  ASSERT_HR(MQ_OK, MQPurgeQueue(mj));
  const std::wstring plain = make_queue(L"plain");
  const std::wstring journaled = make_journaled_queue(L"own");
  QUEUEHANDLE ps = open_queue(plain, MQ_SEND_ACCESS);
  QUEUEHANDLE pr = open_queue(plain, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE js = open_queue(journaled, MQ_SEND_ACCESS);
  QUEUEHANDLE jr = open_queue(journaled, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE jj = open_queue(journaled + L";journal", MQ_PEEK_ACCESS);
  ASSERT_HR(MQ_OK, send(ps, Send().set_body("asked").set_journal(MQMSG_JOURNAL)));
  ASSERT_HR(MQ_OK, send(ps, Send().set_body("not asked")));
  ASSERT_HR(MQ_OK, send(js, Send().set_body("queue's").set_journal(MQMSG_JOURNAL)));
  // Not before the receive (the message has not left the queue).
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(mj, MQ_ACTION_PEEK_CURRENT).hr);
  ASSERT_EQ(receive(pr).body, "asked");
  ASSERT_EQ(receive(pr).body, "not asked");
  ASSERT_EQ(receive(jr).body, "queue's");
  // One copy per computer: the queue's journal has it, the machine journal does not.
  Got g = receive(jj, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "queue's");
  EXPECT_EQ(bodies(mj), std::vector<std::string>{"asked"});
  for (QUEUEHANDLE h : {ps, pr, js, jr, jj, mj}) MQCloseQueue(h);
}

TEST(Journal, AnAbortedReceiveTakesItsCopyBackAndACommitKeepsIt) {
  const std::wstring q = make_journaled_queue(L"xact", /*transactional=*/true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE j = open_queue(q + L";JOURNAL", MQ_PEEK_ACCESS);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("once").set_tx(MQ_SINGLE_MESSAGE)));
  ITransaction* tx = nullptr;
  ASSERT_HR(MQ_OK, MQBeginTransaction(&tx));
  Got g = receive(r, MQ_ACTION_RECEIVE, 0, nullptr, tx);
  ASSERT_HR(MQ_OK, g.hr);
  const ULONGLONG lookup_id = g.lookup_id;
  EXPECT_HR(S_OK, tx->Abort(nullptr, FALSE, FALSE));
  tx->Release();
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(j, MQ_ACTION_PEEK_CURRENT).hr);
  ASSERT_HR(MQ_OK, MQBeginTransaction(&tx));
  g = receive(r, MQ_ACTION_RECEIVE, 0, nullptr, tx);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "once");
  EXPECT_EQ(g.lookup_id, lookup_id);  // back in its old place
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  tx->Release();
  g = receive(j, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "once");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r).hr);
  MQCloseQueue(s);
  MQCloseQueue(r);
  MQCloseQueue(j);
}

TEST(Journal, ASignedMessageStillVerifiesInTheJournal) {
  const std::wstring q = make_journaled_queue(L"signed");
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  HANDLE ctx = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(nullptr, 0, &ctx));
  const auto context = static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE j = open_queue(q + L";JOURNAL", MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("signed kept").set_context(context)));
  MQFreeSecurityContext(ctx);
  ASSERT_EQ(receive(r).authenticated, 1);
  Got g = receive(j);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "signed kept");
  EXPECT_EQ(g.authenticated, 1);
  MQCloseQueue(s);
  MQCloseQueue(r);
  MQCloseQueue(j);
}

// PROPID_MGMT_MSMQ_ACTIVEQUEUES names each queue holding messages by a format name that opens
// it: a journal by ";JOURNAL", an outgoing queue by its destination's (it was
// "DIRECT=OS:<host>\private$\direct=os:..."), and a transaction's holding queue not at all.
TEST(Journal, ActiveQueuesAreListedByFormatNamesThatOpenThem) {
  const mqsec::testing::UnreachableBroker broker;
  const std::wstring q = make_journaled_queue(L"active", /*transactional=*/true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, Send().set_body("journaled").set_tx(MQ_SINGLE_MESSAGE)));
  ASSERT_HR(MQ_OK, send(s, Send().set_body("held").set_tx(MQ_SINGLE_MESSAGE)));
  ASSERT_HR(MQ_OK, receive(r).hr);
  ITransaction* tx = nullptr;
  ASSERT_HR(MQ_OK, MQBeginTransaction(&tx));
  ASSERT_HR(MQ_OK, receive(r, MQ_ACTION_RECEIVE, 0, nullptr, tx).hr);  // in a holding queue
  const std::wstring remote = L"DIRECT=OS:activehost\\private$\\far";
  QUEUEHANDLE rs = open_queue(remote, MQ_SEND_ACCESS);
  // Recoverable (a single-message transaction): in the outgoing queue when the send returns.
  ASSERT_HR(MQ_OK, send(rs, Send().set_body("far away").set_tx(MQ_SINGLE_MESSAGE)));
  auto lower = [](std::wstring w) {
    for (wchar_t& c : w) c = static_cast<wchar_t>(std::towlower(c));
    return w;
  };
  const std::wstring journal_tail = lower(q.substr(q.find(L"\\private$\\")) + L";JOURNAL");
  bool journal = false, outgoing = false;
  for (const std::wstring& f : active_queues()) {
    const std::wstring l = lower(f);
    SCOPED_TRACE(std::string(f.begin(), f.end()));
    EXPECT_EQ(l.rfind(L"direct=os:", 0), 0u);
    EXPECT_EQ(l.find(L"direct=os:", 1), std::wstring::npos);
    EXPECT_EQ(l.find(L"xact$"), std::wstring::npos);
    journal = journal ||
              (l.size() > journal_tail.size() &&
               l.compare(l.size() - journal_tail.size(), journal_tail.size(), journal_tail) == 0);
    outgoing = outgoing || l == lower(remote);
  }
  EXPECT_TRUE(journal);
  EXPECT_TRUE(outgoing);
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  tx->Release();
  for (QUEUEHANDLE h : {s, r, rs}) MQCloseQueue(h);
}

TEST(Journal, BadInput) {
  const std::wstring q = make_journaled_queue(L"bad");
  QUEUEHANDLE h = nullptr;
  // Read-only: no sends, no delete, no properties.
  for (const std::wstring& f : {q + L";JOURNAL", std::wstring(L"DIRECT=OS:.\\SYSTEM$;JOURNAL")}) {
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
              MQOpenQueue(f.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &h));
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION, MQDeleteQueue(f.c_str()));
    Props get;  // a system queue has no queue properties (it had a made-up path name)
    get.null(PROPID_Q_PATHNAME);
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
              MQGetQueueProperties(f.c_str(), get.queue()));
  }
  // A journal of no queue, of a journal or of a system queue.
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND,
            MQOpenQueue(L"DIRECT=OS:.\\private$\\no-such-queue-jrn;JOURNAL", MQ_RECEIVE_ACCESS,
                        MQ_DENY_NONE, &h));
  for (const std::wstring& f :
       {q + L";JOURNAL;JOURNAL", std::wstring(L"DIRECT=OS:.\\SYSTEM$;DEADLETTER;JOURNAL")}) {
    EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
              MQOpenQueue(f.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h));
  }
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
            MQOpenQueue(L"DIRECT=OS:otherhost\\private$\\q;JOURNAL", MQ_RECEIVE_ACCESS,
                        MQ_DENY_NONE, &h));
  // Deleting the queue deletes its journal.
  ASSERT_HR(MQ_OK, MQOpenQueue((q + L";JOURNAL").c_str(), MQ_PEEK_ACCESS, MQ_DENY_NONE, &h));
  MQCloseQueue(h);
  ASSERT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND,
            MQOpenQueue((q + L";JOURNAL").c_str(), MQ_PEEK_ACCESS, MQ_DENY_NONE, &h));
}

}  // namespace
