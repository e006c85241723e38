// MSMQ internal transactions (issue 13) through libmqrt: MQBeginTransaction and its ITransaction
// (include/transact.h), MQ_SINGLE_MESSAGE, transactional queues enforced in both directions,
// sends visible only at commit and in send order, receives put back in place on abort, atomicity
// across two queues, Release without commit, exit and fork, MQ_MTS_TRANSACTION /
// MQ_XA_TRANSACTION, and bad transaction pointers. Against what MSMQ documents (docs/msmq-api.md,
// Transactions).
//
// Runs on a throwaway SoftHSM token (tests/support/softhsm_env); one test signs.
#include <mq.h>
#include <signal.h>
#include <sys/wait.h>
#include <transact.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/child_process.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/msmq_props.hpp"
#include "tests/support/msmq_queues.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"

namespace {

using mqsec::testing::Props;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

// A queue of this machine: transactional or not, authenticated or not. Returns its format name.
std::wstring make_queue(const std::wstring& stem, bool transactional, bool authenticate = false) {
  return mqsec::testing::make_private_queue(L"tx-", stem, transactional, authenticate);
}

using mqsec::testing::open_queue;

HRESULT send(QUEUEHANDLE h, const std::string& body, ITransaction* tx, UCHAR priority = 3,
             ULONG context = 0) {
  std::string copy = body;
  Props p;
  p.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(copy.data()), static_cast<ULONG>(copy.size()));
  p.ui1(PROPID_M_PRIORITY, priority);
  if (context != 0) {
    p.ui4(PROPID_M_AUTH_LEVEL, MQMSG_AUTH_LEVEL_ALWAYS);
    p.ui4(PROPID_M_SECURITY_CONTEXT, context);
  }
  return MQSendMessage(h, p.msg(), tx);
}

struct Got {
  HRESULT hr = MQ_OK;
  std::string body;
  int priority = -1;
  ULONGLONG lookup_id = 0;
  int authenticated = -1;
  ULONG delivery = 99;
};

Got receive(QUEUEHANDLE h, ITransaction* tx, DWORD action = MQ_ACTION_RECEIVE, DWORD timeout = 0) {
  std::vector<UCHAR> body(256);
  Props p;
  p.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
  const size_t prio = p.null(PROPID_M_PRIORITY);
  const size_t lid = p.null(PROPID_M_LOOKUPID);
  const size_t auth = p.null(PROPID_M_AUTHENTICATED);
  const size_t delivery = p.null(PROPID_M_DELIVERY);
  Got g;
  g.hr = MQReceiveMessage(h, timeout, action, p.msg(), nullptr, nullptr, nullptr, tx);
  if (SUCCEEDED(g.hr)) {
    g.body.assign(body.begin(), body.begin() + p.vars[0].caub.cElems);
    g.priority = p.vars[prio].bVal;
    g.lookup_id = p.vars[lid].uhVal.QuadPart;
    g.authenticated = p.vars[auth].bVal;
    g.delivery = p.vars[delivery].bVal;
  }
  return g;
}

// Every message left in the queue, taken without a transaction, in receive order.
std::vector<std::string> drain(QUEUEHANDLE h) {
  std::vector<std::string> out;
  for (;;) {
    Got g = receive(h, MQ_NO_TRANSACTION);
    if (g.hr == MQ_ERROR_IO_TIMEOUT) return out;
    EXPECT_HR(MQ_OK, g.hr);
    if (FAILED(g.hr)) return out;
    out.push_back(g.body);
  }
}

ITransaction* begin() {
  ITransaction* tx = nullptr;
  EXPECT_HR(MQ_OK, MQBeginTransaction(&tx));
  EXPECT_NE(tx, nullptr);
  return tx;
}

using Bodies = std::vector<std::string>;

// The image after_exec starts (below): receives every message of the queue named in
// MQSEC_TEST_AFTER_EXEC without a transaction, writes their bodies (a line each) to the
// descriptor in MQSEC_TEST_AFTER_EXEC_FD and exits, before any test runs.
[[maybe_unused]] const bool g_after_exec = [] {
  const char* name = std::getenv("MQSEC_TEST_AFTER_EXEC");
  const char* fd = std::getenv("MQSEC_TEST_AFTER_EXEC_FD");
  if (name == nullptr || fd == nullptr) return false;
  const std::wstring q(name, name + std::strlen(name));
  QUEUEHANDLE r = nullptr;
  if (MQOpenQueue(q.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &r) != MQ_OK) ::_exit(20);
  std::string out;
  for (;;) {
    Got g = receive(r, MQ_NO_TRANSACTION);
    if (g.hr == MQ_ERROR_IO_TIMEOUT) break;
    if (FAILED(g.hr)) ::_exit(21);
    out += g.body + "\n";
  }
  const int to = std::atoi(fd);
  if (::write(to, out.data(), out.size()) != static_cast<ssize_t>(out.size())) ::_exit(22);
  ::_exit(0);
}();

// =============================================================================================

TEST(Transactions, BeginTransactionChecksItsArgument) {
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQBeginTransaction(nullptr));
  ITransaction* a = begin();
  ITransaction* b = begin();
  EXPECT_NE(a, b);
  XACTTRANSINFO ia{}, ib{};
  EXPECT_HR(S_OK, a->GetTransactionInfo(&ia));
  EXPECT_HR(S_OK, b->GetTransactionInfo(&ib));
  EXPECT_NE(0, std::memcmp(&ia.uow, &ib.uow, sizeof(BOID)));  // each its own unit of work
  EXPECT_EQ(ia.isoLevel, ISOLATIONLEVEL_SERIALIZABLE);
  EXPECT_HR(E_INVALIDARG, a->GetTransactionInfo(nullptr));
  EXPECT_EQ(a->Release(), 0u);
  EXPECT_EQ(b->Release(), 0u);
}

TEST(Transactions, SendsAreVisibleOnlyAtCommitInSendOrderWithPriorityZero) {
  const std::wstring q = make_queue(L"order", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ITransaction* tx = begin();
  // Priorities differ: inside a transaction they are 0, so receive order is send order.
  for (int i = 0; i < 5; ++i) {
    EXPECT_HR(MQ_OK, send(s, "m" + std::to_string(i), tx, static_cast<UCHAR>(i)));
  }
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r, MQ_NO_TRANSACTION, MQ_ACTION_PEEK_CURRENT).hr);
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  for (int i = 0; i < 5; ++i) {
    Got g = receive(r, MQ_NO_TRANSACTION);
    ASSERT_HR(MQ_OK, g.hr);
    EXPECT_EQ(g.body, "m" + std::to_string(i));
    EXPECT_EQ(g.priority, 0);
    EXPECT_EQ(g.delivery, static_cast<ULONG>(MQMSG_DELIVERY_RECOVERABLE));
  }
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r, MQ_NO_TRANSACTION).hr);
  tx->Release();
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Transactions, AllOrNothingAcrossTwoQueues) {
  const std::wstring qa = make_queue(L"atom-a", true);
  const std::wstring qb = make_queue(L"atom-b", true);
  QUEUEHANDLE sa = open_queue(qa, MQ_SEND_ACCESS), sb = open_queue(qb, MQ_SEND_ACCESS);
  QUEUEHANDLE ra = open_queue(qa, MQ_RECEIVE_ACCESS), rb = open_queue(qb, MQ_RECEIVE_ACCESS);

  ITransaction* aborted = begin();
  EXPECT_HR(MQ_OK, send(sa, "a1", aborted));
  EXPECT_HR(MQ_OK, send(sb, "b1", aborted));
  EXPECT_HR(S_OK, aborted->Abort(nullptr, FALSE, FALSE));
  EXPECT_EQ(drain(ra), Bodies{});
  EXPECT_EQ(drain(rb), Bodies{});

  ITransaction* committed = begin();
  EXPECT_HR(MQ_OK, send(sa, "a2", committed));
  EXPECT_HR(MQ_OK, send(sb, "b2", committed));
  EXPECT_HR(MQ_OK, send(sa, "a3", committed));
  EXPECT_HR(S_OK, committed->Commit(FALSE, XACTTC_SYNC, 0));
  EXPECT_EQ(drain(ra), (Bodies{"a2", "a3"}));
  EXPECT_EQ(drain(rb), Bodies{"b2"});
  aborted->Release();
  committed->Release();
  for (QUEUEHANDLE h : {sa, sb, ra, rb}) MQCloseQueue(h);
}

TEST(Transactions, AbortPutsReceivedMessagesBackInTheirPlace) {
  const std::wstring q = make_queue(L"abort", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  for (const char* b : {"first", "second", "third"}) {
    ASSERT_HR(MQ_OK, send(s, b, MQ_SINGLE_MESSAGE));
  }
  const Got peeked = receive(r, MQ_NO_TRANSACTION, MQ_ACTION_PEEK_CURRENT);
  ITransaction* tx = begin();
  Got g1 = receive(r, tx);
  Got g2 = receive(r, tx);
  ASSERT_HR(MQ_OK, g1.hr);
  ASSERT_HR(MQ_OK, g2.hr);
  EXPECT_EQ(g1.body, "first");
  EXPECT_EQ(g2.body, "second");
  // Taken by the transaction: nobody else sees them meanwhile.
  EXPECT_EQ(receive(r, MQ_NO_TRANSACTION, MQ_ACTION_PEEK_CURRENT).body, "third");
  EXPECT_HR(S_OK, tx->Abort(nullptr, FALSE, FALSE));
  // Back in front, with their lookup ids, then redelivered (not refused as replays).
  Got again = receive(r, MQ_NO_TRANSACTION, MQ_ACTION_PEEK_CURRENT);
  EXPECT_EQ(again.body, "first");
  EXPECT_EQ(again.lookup_id, peeked.lookup_id);
  EXPECT_EQ(drain(r), (Bodies{"first", "second", "third"}));
  tx->Release();
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Transactions, CommitKeepsReceivedMessagesTaken) {
  const std::wstring q = make_queue(L"commit-recv", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, "one", MQ_SINGLE_MESSAGE));
  ASSERT_HR(MQ_OK, send(s, "two", MQ_SINGLE_MESSAGE));
  ITransaction* tx = begin();
  EXPECT_EQ(receive(r, tx).body, "one");
  EXPECT_HR(S_OK, tx->Commit(FALSE, XACTTC_ASYNC, 0));  // done synchronously all the same
  EXPECT_HR(XACT_E_NOTRANSACTION, tx->Abort(nullptr, FALSE, FALSE));
  EXPECT_EQ(drain(r), Bodies{"two"});
  tx->Release();
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Transactions, ReceiveByLookupIdInATransaction) {
  const std::wstring q = make_queue(L"lookup", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, "x", MQ_SINGLE_MESSAGE));
  ASSERT_HR(MQ_OK, send(s, "y", MQ_SINGLE_MESSAGE));
  ITransaction* tx = begin();
  EXPECT_HR(MQ_OK, MQReceiveMessageByLookupId(r, 0, MQ_LOOKUP_RECEIVE_LAST, nullptr, nullptr,
                                              nullptr, tx));
  EXPECT_EQ(receive(r, MQ_NO_TRANSACTION, MQ_ACTION_PEEK_CURRENT).body, "x");
  tx->Release();  // uncommitted: aborted, "y" comes back
  EXPECT_EQ(drain(r), (Bodies{"x", "y"}));
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Transactions, ReleaseWithoutCommitAborts) {
  const std::wstring q = make_queue(L"release", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, "kept", MQ_SINGLE_MESSAGE));
  ITransaction* tx = begin();
  EXPECT_EQ(receive(r, tx).body, "kept");
  EXPECT_HR(MQ_OK, send(s, "never", tx));
  EXPECT_EQ(tx->AddRef(), 2u);
  EXPECT_EQ(tx->Release(), 1u);  // still referenced: still active
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r, MQ_NO_TRANSACTION, MQ_ACTION_PEEK_CURRENT).hr);
  EXPECT_EQ(tx->Release(), 0u);
  EXPECT_EQ(drain(r), Bodies{"kept"});
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Transactions, TransactionalQueuesAreEnforcedInBothDirections) {
  const std::wstring tq = make_queue(L"usage-t", true);
  const std::wstring nq = make_queue(L"usage-n", false);
  QUEUEHANDLE ts = open_queue(tq, MQ_SEND_ACCESS), tr = open_queue(tq, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE ns = open_queue(nq, MQ_SEND_ACCESS), nr = open_queue(nq, MQ_RECEIVE_ACCESS);
  ITransaction* tx = begin();
  // A transactional queue takes only transactional messages, and the reverse.
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, send(ts, "plain", MQ_NO_TRANSACTION));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, send(ns, "single", MQ_SINGLE_MESSAGE));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, send(ns, "in tx", tx));
  EXPECT_HR(MQ_OK, send(ts, "single", MQ_SINGLE_MESSAGE));
  EXPECT_HR(MQ_OK, send(ns, "plain", MQ_NO_TRANSACTION));
  // Receiving: in a transaction only from a transactional queue; without one from both.
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, receive(nr, tx).hr);
  EXPECT_EQ(receive(nr, MQ_NO_TRANSACTION, MQ_ACTION_PEEK_CURRENT).body, "plain");  // still there
  EXPECT_EQ(receive(tr, MQ_NO_TRANSACTION).body, "single");
  // MQ_SINGLE_MESSAGE receives from a transactional queue only (a peek takes nothing, so it
  // is not refused); the refused receive left the message in place.
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, receive(nr, MQ_SINGLE_MESSAGE).hr);
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE,
            MQReceiveMessageByLookupId(nr, 0, MQ_LOOKUP_RECEIVE_FIRST, nullptr, nullptr, nullptr,
                                       MQ_SINGLE_MESSAGE));
  EXPECT_EQ(receive(nr, MQ_SINGLE_MESSAGE, MQ_ACTION_PEEK_CURRENT).body, "plain");
  EXPECT_HR(MQ_OK, send(ts, "single 2", MQ_SINGLE_MESSAGE));
  EXPECT_EQ(receive(tr, MQ_SINGLE_MESSAGE).body, "single 2");
  EXPECT_EQ(receive(nr, MQ_NO_TRANSACTION).body, "plain");
  // The refused operations left the transaction usable.
  EXPECT_HR(MQ_OK, send(ts, "after", tx));
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  EXPECT_EQ(drain(tr), Bodies{"after"});
  tx->Release();
  for (QUEUEHANDLE h : {ts, tr, ns, nr}) MQCloseQueue(h);
}

TEST(Transactions, DistributedTransactionsFailWithDtcConnect) {
  const std::wstring q = make_queue(L"dtc", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  EXPECT_HR(MQ_ERROR_DTC_CONNECT, send(s, "mts", MQ_MTS_TRANSACTION));
  EXPECT_HR(MQ_ERROR_DTC_CONNECT, send(s, "xa", MQ_XA_TRANSACTION));
  EXPECT_HR(MQ_ERROR_DTC_CONNECT, receive(r, MQ_MTS_TRANSACTION).hr);
  EXPECT_HR(MQ_ERROR_DTC_CONNECT, receive(r, MQ_XA_TRANSACTION).hr);
  EXPECT_EQ(drain(r), Bodies{});
  MQCloseQueue(s);
  MQCloseQueue(r);
}

// An ITransaction that libmqrt did not make: never called, never dereferenced.
struct Foreign : ITransaction {
  HRESULT STDMETHODCALLTYPE QueryInterface(REFIID, void**) override { return called(); }
  ULONG STDMETHODCALLTYPE AddRef() override { return called(); }
  ULONG STDMETHODCALLTYPE Release() override { return called(); }
  HRESULT STDMETHODCALLTYPE Commit(BOOL, DWORD, DWORD) override { return called(); }
  HRESULT STDMETHODCALLTYPE Abort(BOID*, BOOL, BOOL) override { return called(); }
  HRESULT STDMETHODCALLTYPE GetTransactionInfo(XACTTRANSINFO*) override { return called(); }
  virtual ~Foreign() = default;
  int calls = 0;
  HRESULT called() { return ++calls, S_OK; }
};

TEST(Transactions, BadTransactionPointersAndArguments) {
  const std::wstring q = make_queue(L"bad", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, send(s, "stays", MQ_SINGLE_MESSAGE));
  Foreign foreign;
  for (ITransaction* bad :
       {static_cast<ITransaction*>(&foreign), reinterpret_cast<ITransaction*>(uintptr_t{64}),
        reinterpret_cast<ITransaction*>(uintptr_t{4})}) {
    EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, send(s, "bad", bad));
    EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, receive(r, bad).hr);
  }
  EXPECT_EQ(foreign.calls, 0);

  ITransaction* tx = begin();
  EXPECT_HR(XACT_E_CANTRETAIN, tx->Commit(TRUE, 0, 0));
  EXPECT_HR(XACT_E_NOTSUPPORTED, tx->Commit(FALSE, 0x80, 0));
  EXPECT_HR(XACT_E_NOTSUPPORTED, tx->Commit(FALSE, 0, 1));
  EXPECT_HR(XACT_E_CANTRETAIN, tx->Abort(nullptr, TRUE, FALSE));
  // QueryInterface: IUnknown and ITransaction, nothing else.
  const IID unknown = MQSEC_IID_IUNKNOWN_INIT, itx = MQSEC_IID_ITRANSACTION_INIT;
  IID other = itx;
  other.Data1 ^= 1;
  void* out = &foreign;
  EXPECT_HR(E_NOINTERFACE, tx->QueryInterface(other, &out));
  EXPECT_EQ(out, nullptr);
  EXPECT_HR(E_POINTER, tx->QueryInterface(itx, nullptr));
  EXPECT_HR(S_OK, tx->QueryInterface(unknown, &out));
  EXPECT_EQ(out, tx);
  EXPECT_EQ(tx->Release(), 1u);
  EXPECT_HR(S_OK, tx->QueryInterface(itx, &out));
  EXPECT_EQ(tx->Release(), 1u);
  // Still active after all the refused calls.
  EXPECT_HR(MQ_OK, send(s, "in", tx));
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  // Committed: the object answers XACT_E_NOTRANSACTION, the API MQ_ERROR_TRANSACTION_USAGE.
  EXPECT_HR(XACT_E_NOTRANSACTION, tx->Commit(FALSE, 0, 0));
  EXPECT_HR(XACT_E_NOTRANSACTION, tx->Abort(nullptr, FALSE, FALSE));
  XACTTRANSINFO info;
  EXPECT_HR(XACT_E_NOTRANSACTION, tx->GetTransactionInfo(&info));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, send(s, "late", tx));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, receive(r, tx).hr);
  ITransaction* aborted = begin();
  EXPECT_HR(S_OK, aborted->Abort(nullptr, FALSE, TRUE));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, send(s, "late", aborted));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE, receive(r, aborted).hr);
  EXPECT_EQ(drain(r), (Bodies{"stays", "in"}));
  tx->Release();
  aborted->Release();
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Transactions, FailedCommitAbortsEverything) {
  const std::wstring from = make_queue(L"fail-from", true);
  const std::wstring to = make_queue(L"fail-to", true);
  QUEUEHANDLE fs = open_queue(from, MQ_SEND_ACCESS), fr = open_queue(from, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE ts = open_queue(to, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send(fs, "work", MQ_SINGLE_MESSAGE));
  ITransaction* tx = begin();
  EXPECT_EQ(receive(fr, tx).body, "work");
  EXPECT_HR(MQ_OK, send(ts, "result", tx));
  EXPECT_HR(MQ_OK, send(fs, "follow-up", tx));
  ASSERT_HR(MQ_OK, MQDeleteQueue(to.c_str()));  // the commit cannot write "result"
  EXPECT_HR(XACT_E_ABORTED, tx->Commit(FALSE, 0, 0));
  EXPECT_HR(XACT_E_NOTRANSACTION, tx->Commit(FALSE, 0, 0));
  EXPECT_EQ(drain(fr), Bodies{"work"});  // received message back, the follow-up never sent
  tx->Release();
  for (QUEUEHANDLE h : {fs, fr, ts}) MQCloseQueue(h);
}

TEST(Transactions, ExitAbortsOpenTransactions) {
  const std::wstring q = make_queue(L"exit", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send(s, "taken-then-exit", MQ_SINGLE_MESSAGE));
  const int rc = mqsec::testing::exit_in_child([&] {
    QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
    QUEUEHANDLE cs = open_queue(q, MQ_SEND_ACCESS);
    ITransaction* tx = nullptr;
    if (MQBeginTransaction(&tx) != MQ_OK) return 1;
    if (receive(r, tx).body != "taken-then-exit") return 2;
    if (send(cs, "uncommitted", tx) != MQ_OK) return 3;
    return 0;  // exit without Commit
  });
  EXPECT_EQ(rc, 0);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  EXPECT_EQ(drain(r), Bodies{"taken-then-exit"});
  MQCloseQueue(s);
  MQCloseQueue(r);
}

// Runs `body` in a forked child that then waits to be killed; returns the byte the body
// produced once the child is SIGKILLed (no exit handler, no abort: the process is just gone).
char killed_after(const std::function<char()>& body) {
  int ready[2];
  if (pipe(ready) != 0) return 'p';
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    ::close(ready[0]);
    char c = 'x';
    try {
      c = body();
    } catch (...) {
    }
    if (::write(ready[1], &c, 1) != 1) ::_exit(3);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char c = 0;
  if (pid < 0 || ::read(ready[0], &c, 1) != 1) c = 'r';
  ::close(ready[0]);
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
  return c;
}

// MSMQ returns the messages of a transaction whose process died to their queues. The child
// receives two messages and moves the third to a subqueue, all in one ITransaction, and is
// killed before Commit. A receiver that was already waiting gets them back (recovered on its
// receive miss), in their old order, each exactly once (not rejected as replays), and the
// subqueue stays empty.
TEST(Transactions, MessagesOfAKilledProcessGoBackToTheirQueuesInOrder) {
  const std::wstring q = make_queue(L"killed", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  for (const char* b : {"k1", "k2", "k3"}) ASSERT_HR(MQ_OK, send(s, b, MQ_SINGLE_MESSAGE));
  QUEUEHANDLE waiting = open_queue(q, MQ_RECEIVE_ACCESS);
  const char c = killed_after([&] {
    QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
    QUEUEHANDLE sub = open_queue(q + L";held", MQ_MOVE_ACCESS);
    ITransaction* tx = nullptr;
    if (MQBeginTransaction(&tx) != MQ_OK) return '1';
    if (receive(r, tx).body != "k1" || receive(r, tx).body != "k2") return '2';
    const Got k3 = receive(r, nullptr, MQ_ACTION_PEEK_CURRENT);
    if (k3.body != "k3" || MQMoveMessage(r, sub, k3.lookup_id, tx) != MQ_OK) return '3';
    return 'y';  // no Commit: killed
  });
  ASSERT_EQ(c, 'y');
  Bodies got;
  for (int i = 0; i < 3; ++i) {
    Got g = receive(waiting, MQ_NO_TRANSACTION, MQ_ACTION_RECEIVE, 10000);
    ASSERT_HR(MQ_OK, g.hr);
    got.push_back(g.body);
  }
  EXPECT_EQ(got, (Bodies{"k1", "k2", "k3"}));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(waiting, MQ_NO_TRANSACTION).hr);
  QUEUEHANDLE again = open_queue(q, MQ_RECEIVE_ACCESS);
  EXPECT_EQ(drain(again), Bodies{});
  QUEUEHANDLE sub = open_queue(q + L";held", MQ_RECEIVE_ACCESS);
  EXPECT_EQ(drain(sub), Bodies{});
  for (QUEUEHANDLE h : {s, waiting, again, sub}) MQCloseQueue(h);
}

// The same found by a process that opens the queue afterwards: a journaled queue's message
// received in a killed transaction is back in its place (before the one left in the queue),
// and not in the journal, which MSMQ writes at commit.
TEST(Transactions, AQueueOpenedAfterAKilledTransactionHasItsMessagesBack) {
  const std::wstring q = make_queue(L"killed-open", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  for (const char* b : {"first", "second"}) ASSERT_HR(MQ_OK, send(s, b, MQ_SINGLE_MESSAGE));
  {
    Props p;
    p.ui1(PROPID_Q_JOURNAL, MQ_JOURNAL);
    ASSERT_HR(MQ_OK, MQSetQueueProperties(q.c_str(), p.queue()));
  }
  const char c = killed_after([&] {
    QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
    ITransaction* tx = nullptr;
    if (MQBeginTransaction(&tx) != MQ_OK) return '1';
    if (receive(r, tx).body != "first") return '2';
    return 'y';
  });
  ASSERT_EQ(c, 'y');
  QUEUEHANDLE journal = open_queue(q + L";JOURNAL", MQ_RECEIVE_ACCESS);
  EXPECT_EQ(drain(journal), Bodies{});
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ITransaction* tx = begin();
  EXPECT_EQ(receive(r, tx).body, "first");
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));  // now it is journaled
  tx->Release();
  EXPECT_EQ(drain(r), Bodies{"second"});
  EXPECT_EQ(drain(journal), (Bodies{"first", "second"}));  // each once, in receive order
  for (QUEUEHANDLE h : {s, journal, r}) MQCloseQueue(h);
}

// An owner string and a holding queue's name are a pid and its start tick since boot. Both stay
// the same across an exec, and can come back in a later boot (a service started in the same
// order each boot): the new holder finds what the earlier one left under a name that looks
// alive, since it is its own. Here a forked child leaves a message in a transaction (or a
// claimed one), then execs this program; the new image (g_after_exec) receives the queue and
// reports what it got. Before the takeover (Store::take_over_earlier_holder) what the earlier
// image held stayed held while the new one ran.
std::vector<std::string> after_exec(const std::wstring& q, const std::function<char()>& before) {
  int out[2];
  if (::pipe(out) != 0) return {"pipe failed"};
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(out[0]);
    char c = 'x';
    try {
      c = before();
    } catch (...) {
    }
    if (c != 'y') ::_exit(10);
    const std::string name(q.begin(), q.end());  // the tests' names are ASCII
    ::setenv("MQSEC_TEST_AFTER_EXEC", name.c_str(), 1);
    ::setenv("MQSEC_TEST_AFTER_EXEC_FD", std::to_string(out[1]).c_str(), 1);
    char* argv[] = {const_cast<char*>("test_transactions"), nullptr};
    ::execv("/proc/self/exe", argv);
    ::_exit(11);
  }
  ::close(out[1]);
  std::string text;
  char buf[256];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  std::vector<std::string> got;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) got.push_back(line);
  return got;
}

TEST(Transactions, WhatTheImageBeforeAnExecHeldInATransactionGoesBackToItsQueue) {
  const std::wstring q = make_queue(L"exec-held", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  for (const char* b : {"e1", "e2"}) ASSERT_HR(MQ_OK, send(s, b, MQ_SINGLE_MESSAGE));
  const Bodies got = after_exec(q, [&] {
    QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
    ITransaction* tx = nullptr;
    if (MQBeginTransaction(&tx) != MQ_OK) return '1';
    return receive(r, tx).body == "e1" ? 'y' : '2';  // then exec, no Commit
  });
  EXPECT_EQ(got, (Bodies{"e1", "e2"})) << "e1 back in its place, once, not a replay";
  MQCloseQueue(s);
}

// The same for a claimed receive (not a transaction): e1 was returned (its delivery logged, not
// yet applied), e2 claimed with it. The new image applies the log and releases the claim.
TEST(Transactions, WhatTheImageBeforeAnExecClaimedComesBackAndWhatItReturnedDoesNot) {
  const std::wstring q = make_queue(L"exec-claimed", false);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  for (const char* b : {"c1", "c2", "c3"}) ASSERT_HR(MQ_OK, send(s, b, nullptr));
  const Bodies got = after_exec(q, [&] {
    QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
    return receive(r, MQ_NO_TRANSACTION).body == "c1" ? 'y' : '2';  // then exec
  });
  EXPECT_EQ(got, (Bodies{"c2", "c3"})) << "c1 returned once; c2 and c3 claimed, back";
  MQCloseQueue(s);
}

TEST(Transactions, AForkedChildCannotUseItsParentsTransaction) {
  const std::wstring q = make_queue(L"fork", true);
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ITransaction* tx = begin();
  ASSERT_HR(MQ_OK, send(s, "parent's", tx));
  const int rc = mqsec::testing::exit_in_child([&] {
    if (send(s, "child's", tx) != MQ_ERROR_TRANSACTION_USAGE) return 1;
    if (tx->Commit(FALSE, 0, 0) != XACT_E_NOTRANSACTION) return 2;
    if (tx->Abort(nullptr, FALSE, FALSE) != XACT_E_NOTRANSACTION) return 3;
    tx->Release();  // the child's copy is only forgotten
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r, MQ_NO_TRANSACTION, MQ_ACTION_PEEK_CURRENT).hr);
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  EXPECT_EQ(drain(r), Bodies{"parent's"});
  tx->Release();
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST(Transactions, SignedSendsAreSignedBeforeCommitAndVerified) {
  const std::wstring q = make_queue(L"signed", true, /*authenticate=*/true);
  // Enrolls the user's internal certificate (and registers it with the user's SID).
  ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  HANDLE ctx = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(nullptr, 0, &ctx));
  const auto context = static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  ITransaction* tx = begin();
  EXPECT_HR(MQ_OK, send(s, "signed 1", tx, 0, context));
  EXPECT_HR(MQ_OK, send(s, "signed 2", tx, 0, context));
  // Freed before the commit: the messages were signed when sent.
  MQFreeSecurityContext(ctx);
  EXPECT_HR(S_OK, tx->Commit(FALSE, 0, 0));
  for (const char* body : {"signed 1", "signed 2"}) {
    Got g = receive(r, MQ_NO_TRANSACTION);
    ASSERT_HR(MQ_OK, g.hr);
    EXPECT_EQ(g.body, body);
    EXPECT_EQ(g.authenticated, 1);
  }
  tx->Release();
  MQCloseQueue(s);
  MQCloseQueue(r);
}

}  // namespace
