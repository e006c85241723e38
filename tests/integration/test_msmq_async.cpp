// Asynchronous receive (issue 13) through libmqrt, against what MSMQ documents:
// MQReceiveMessage and MQReceiveMessageByLookupId with fnReceiveCallback (called on a runtime
// thread with the final HRESULT and the call's arguments) or with an OVERLAPPED (Internal holds
// the result, hEvent is set; MQGetOverlappedResult reads it), MQ_INFORMATION_OPERATION_PENDING
// from the call, MQCloseQueue cancelling pending receives with MQ_ERROR_OPERATION_CANCELLED,
// fork and exit with receives pending, the event functions (MQSecCreateEvent ...) and the bad
// input of each (checked before anything is taken, returned by the call itself).
//
// Runs on a throwaway SoftHSM token (tests/support/softhsm_env) with unsigned messages.
#include <mq.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/child_process.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"

namespace {

using namespace std::chrono_literals;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

constexpr ULONG_PTR kStatusPending = 0x103;

std::wstring unique_queue() {
  static int n = 0;
  return L"async-" + std::to_wstring(getpid()) + L"-" + std::to_wstring(++n);
}

std::wstring create_queue() {
  std::wstring path = L".\\private$\\" + unique_queue();
  QUEUEPROPID id = PROPID_Q_PATHNAME;
  MQPROPVARIANT v;
  std::memset(&v, 0, sizeof v);
  v.vt = VT_LPWSTR;
  v.pwszVal = path.data();
  MQQUEUEPROPS props{1, &id, &v, nullptr};
  WCHAR buf[256];
  DWORD len = 256;
  EXPECT_HR(MQ_OK, MQCreateQueue(nullptr, &props, buf, &len));
  return buf;
}

QUEUEHANDLE open_queue(const std::wstring& format, DWORD access) {
  QUEUEHANDLE h = nullptr;
  EXPECT_HR(MQ_OK, MQOpenQueue(format.c_str(), access, MQ_DENY_NONE, &h));
  return h;
}

HRESULT send_body(QUEUEHANDLE h, std::string body) {
  MSGPROPID id = PROPID_M_BODY;
  MQPROPVARIANT v;
  std::memset(&v, 0, sizeof v);
  v.vt = VT_UI1 | VT_VECTOR;
  v.caub.cElems = static_cast<ULONG>(body.size());
  v.caub.pElems = reinterpret_cast<UCHAR*>(body.data());
  MQMSGPROPS props{1, &id, &v, nullptr};
  return MQSendMessage(h, &props, MQ_NO_TRANSACTION);
}

// The properties of one receive: the body (64 bytes, or `capacity`) and its size.
struct BodyProps {
  explicit BodyProps(ULONG capacity = 64) : body(capacity) {
    ids[0] = PROPID_M_BODY;
    ids[1] = PROPID_M_BODY_SIZE;
    std::memset(vars, 0, sizeof vars);
    vars[0].vt = VT_UI1 | VT_VECTOR;
    vars[0].caub.cElems = capacity;
    vars[0].caub.pElems = body.data();
    vars[1].vt = VT_NULL;
    props = {2, ids, vars, status};
  }
  std::string text() const {
    return std::string(reinterpret_cast<const char*>(body.data()), vars[1].ulVal);
  }
  std::vector<UCHAR> body;
  MSGPROPID ids[2];
  MQPROPVARIANT vars[2];
  HRESULT status[2] = {};
  MQMSGPROPS props{};
};

// What callbacks were called with; a test waits for them.
struct Call {
  HRESULT hr;
  QUEUEHANDLE queue;
  DWORD timeout;
  DWORD action;
  MQMSGPROPS* props;
  LPOVERLAPPED overlapped;
  HANDLE cursor;
  std::thread::id thread;
  std::string body;  // read in the callback, while the properties are the callback's
};
std::mutex g_mu;
std::condition_variable g_cv;
std::vector<Call> g_calls;

void APIENTRY record(HRESULT hr, QUEUEHANDLE q, DWORD timeout, DWORD action, MQMSGPROPS* props,
                     LPOVERLAPPED ov, HANDLE cursor) {
  Call c{hr, q, timeout, action, props, ov, cursor, std::this_thread::get_id(), {}};
  if (hr == MQ_OK && props != nullptr && props->cProp == 2 &&
      props->aPropID[1] == PROPID_M_BODY_SIZE) {
    c.body.assign(reinterpret_cast<const char*>(props->aPropVar[0].caub.pElems),
                  props->aPropVar[1].ulVal);
  }
  std::lock_guard lock(g_mu);
  g_calls.push_back(c);
  g_cv.notify_all();
}

class Async : public ::testing::Test {
 protected:
  void SetUp() override {
    std::lock_guard lock(g_mu);
    g_calls.clear();
    format_ = create_queue();
  }
  // Waits (at most 10 s) for `n` callbacks; returns them.
  std::vector<Call> calls(size_t n) {
    std::unique_lock lock(g_mu);
    g_cv.wait_for(lock, 10s, [&] { return g_calls.size() >= n; });
    return g_calls;
  }
  size_t calls_now() {
    std::lock_guard lock(g_mu);
    return g_calls.size();
  }
  std::wstring format_;
};

// ---- callbacks ------------------------------------------------------------------------------

TEST_F(Async, CallbackGetsAMessageThatArrivesLater) {
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  BodyProps p;
  ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING,
            MQReceiveMessage(r, INFINITE, MQ_ACTION_RECEIVE, &p.props, nullptr, record, nullptr,
                             nullptr));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(calls_now(), 0u);  // nothing there yet: still pending
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "later"));
  auto got = calls(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_HR(MQ_OK, got[0].hr);
  EXPECT_EQ(got[0].queue, r);
  EXPECT_EQ(got[0].timeout, INFINITE);
  EXPECT_EQ(got[0].action, static_cast<DWORD>(MQ_ACTION_RECEIVE));
  EXPECT_EQ(got[0].props, &p.props);
  EXPECT_EQ(got[0].overlapped, nullptr);
  EXPECT_EQ(got[0].cursor, nullptr);
  EXPECT_NE(got[0].thread, std::this_thread::get_id());  // a runtime thread
  EXPECT_EQ(got[0].body, "later");
  EXPECT_EQ(p.text(), "later");
  // It was received: the queue is empty now.
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT,
            MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, nullptr, nullptr, nullptr, nullptr, nullptr));
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST_F(Async, CallbackForAMessageAlreadyThereAndItsOverlappedIsPassedThrough) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "ready"));
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  BodyProps p;
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  ov.Internal = 0x5555;  // with a callback the OVERLAPPED is the application's: untouched
  ASSERT_HR(
      MQ_INFORMATION_OPERATION_PENDING,
      MQReceiveMessage(r, 1000, MQ_ACTION_PEEK_CURRENT, &p.props, &ov, record, nullptr, nullptr));
  auto got = calls(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_HR(MQ_OK, got[0].hr);
  EXPECT_EQ(got[0].overlapped, &ov);
  EXPECT_EQ(got[0].timeout, 1000u);
  EXPECT_EQ(got[0].action, static_cast<DWORD>(MQ_ACTION_PEEK_CURRENT));
  EXPECT_EQ(got[0].body, "ready");
  EXPECT_EQ(ov.Internal, 0x5555u);
  // A peek: still there.
  BodyProps again;
  ASSERT_HR(MQ_OK, MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, &again.props, nullptr, nullptr,
                                    nullptr, nullptr));
  EXPECT_EQ(again.text(), "ready");
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST_F(Async, CallbackReportsTheTimeoutAndAShortBuffer) {
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING, MQReceiveMessage(r, 150, MQ_ACTION_RECEIVE, nullptr,
                                                               nullptr, record, nullptr, nullptr));
  auto got = calls(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, got[0].hr);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 150ms);

  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "too long for four bytes"));
  BodyProps small(4);
  ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING,
            MQReceiveMessage(r, 1000, MQ_ACTION_RECEIVE, &small.props, nullptr, record, nullptr,
                             nullptr));
  got = calls(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_HR(MQ_ERROR_BUFFER_OVERFLOW, got[1].hr);
  EXPECT_EQ(small.vars[1].ulVal, 23u);  // the size it needs
  // The message stayed.
  BodyProps big;
  ASSERT_HR(MQ_OK, MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, &big.props, nullptr, nullptr, nullptr,
                                    nullptr));
  EXPECT_EQ(big.text(), "too long for four bytes");
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST_F(Async, ManyPendingReceivesEachGetOneMessage) {
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  constexpr int kN = 8;
  std::vector<BodyProps> props(kN);
  for (auto& p : props) {
    ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING,
              MQReceiveMessage(r, INFINITE, MQ_ACTION_RECEIVE, &p.props, nullptr, record, nullptr,
                               nullptr));
  }
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  for (int i = 0; i < kN; ++i) ASSERT_HR(MQ_OK, send_body(s, "m" + std::to_string(i)));
  auto got = calls(kN);
  ASSERT_EQ(got.size(), static_cast<size_t>(kN));
  std::set<std::string> bodies;
  for (auto& c : got) {
    EXPECT_HR(MQ_OK, c.hr);
    bodies.insert(c.body);
  }
  EXPECT_EQ(bodies.size(), static_cast<size_t>(kN));  // no message twice, none lost
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST_F(Async, PeekNextWithACursor) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "first"));
  ASSERT_HR(MQ_OK, send_body(s, "second"));
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  HANDLE cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(r, &cursor));
  BodyProps p1, p2;
  ASSERT_HR(
      MQ_INFORMATION_OPERATION_PENDING,
      MQReceiveMessage(r, 0, MQ_ACTION_PEEK_CURRENT, &p1.props, nullptr, record, cursor, nullptr));
  ASSERT_EQ(calls(1).size(), 1u);
  ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING, MQReceiveMessage(r, 0, MQ_ACTION_PEEK_NEXT, &p2.props,
                                                               nullptr, record, cursor, nullptr));
  auto got = calls(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].body, "first");
  EXPECT_EQ(got[1].body, "second");
  EXPECT_EQ(got[1].cursor, cursor);
  EXPECT_EQ(got[1].action, static_cast<DWORD>(MQ_ACTION_PEEK_NEXT));
  MQCloseCursor(cursor);
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST_F(Async, ReceiveByLookupIdWithACallbackAndAnOverlapped) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "looked-up"));
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  BodyProps p;
  ASSERT_HR(
      MQ_INFORMATION_OPERATION_PENDING,
      MQReceiveMessageByLookupId(r, 0, MQ_LOOKUP_PEEK_FIRST, &p.props, nullptr, record, nullptr));
  auto got = calls(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_HR(MQ_OK, got[0].hr);
  EXPECT_EQ(got[0].body, "looked-up");
  EXPECT_EQ(got[0].action, static_cast<DWORD>(MQ_LOOKUP_PEEK_FIRST));

  // Nothing with that id: the error comes through the OVERLAPPED.
  HANDLE ev = MQSecCreateEvent(TRUE, FALSE);
  ASSERT_NE(ev, nullptr);
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  ov.hEvent = ev;
  ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING,
            MQReceiveMessageByLookupId(r, 999999, MQ_LOOKUP_RECEIVE_CURRENT, nullptr, &ov, nullptr,
                                       nullptr));
  ASSERT_EQ(MQSecWaitForEvent(ev, 10000), MQSEC_WAIT_OBJECT_0);
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, MQGetOverlappedResult(&ov));
  // Bad input is the call's own answer.
  EXPECT_HR(MQ_ERROR_ILLEGAL_CURSOR_ACTION,
            MQReceiveMessageByLookupId(r, 0, 0x40000013, nullptr, &ov, nullptr, nullptr));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE,
            MQReceiveMessageByLookupId(r, 0, MQ_LOOKUP_PEEK_FIRST, nullptr, nullptr, record,
                                       MQ_SINGLE_MESSAGE));
  EXPECT_TRUE(MQSecCloseEvent(ev));
  MQCloseQueue(s);
  MQCloseQueue(r);
}

// ---- OVERLAPPED -----------------------------------------------------------------------------

TEST_F(Async, OverlappedLayoutIsWindowsX64) {
  static_assert(sizeof(OVERLAPPED) == 32);
  static_assert(offsetof(OVERLAPPED, Internal) == 0);
  static_assert(offsetof(OVERLAPPED, InternalHigh) == 8);
  static_assert(offsetof(OVERLAPPED, Offset) == 16);
  static_assert(offsetof(OVERLAPPED, OffsetHigh) == 20);
  static_assert(offsetof(OVERLAPPED, Pointer) == 16);
  static_assert(offsetof(OVERLAPPED, hEvent) == 24);
  SUCCEED();
}

TEST_F(Async, OverlappedEventIsSetAndTheResultReadable) {
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  HANDLE ev = MQSecCreateEvent(TRUE, TRUE);  // signalled: the receive resets it
  ASSERT_NE(ev, nullptr);
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  ov.hEvent = ev;
  BodyProps p;
  ASSERT_HR(
      MQ_INFORMATION_OPERATION_PENDING,
      MQReceiveMessage(r, INFINITE, MQ_ACTION_RECEIVE, &p.props, &ov, nullptr, nullptr, nullptr));
  EXPECT_EQ(ov.Internal, kStatusPending);
  EXPECT_HR(MQ_INFORMATION_OPERATION_PENDING, MQGetOverlappedResult(&ov));
  EXPECT_EQ(MQSecWaitForEvent(ev, 200), MQSEC_WAIT_TIMEOUT);
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "overlapped"));
  ASSERT_EQ(MQSecWaitForEvent(ev, 10000), MQSEC_WAIT_OBJECT_0);
  EXPECT_HR(MQ_OK, MQGetOverlappedResult(&ov));
  EXPECT_EQ(p.text(), "overlapped");
  // Manual reset: it stays set.
  EXPECT_EQ(MQSecWaitForEvent(ev, 0), MQSEC_WAIT_OBJECT_0);
  EXPECT_TRUE(MQSecCloseEvent(ev));
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST_F(Async, OverlappedWithoutAnEventIsPolled) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "polled"));
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  BodyProps p;
  ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING,
            MQReceiveMessage(r, 5000, MQ_ACTION_RECEIVE, &p.props, &ov, nullptr, nullptr, nullptr));
  HRESULT hr = MQ_INFORMATION_OPERATION_PENDING;
  for (int i = 0; i < 1000 && hr == MQ_INFORMATION_OPERATION_PENDING; ++i) {
    std::this_thread::sleep_for(10ms);
    hr = MQGetOverlappedResult(&ov);
  }
  EXPECT_HR(MQ_OK, hr);
  EXPECT_EQ(p.text(), "polled");
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST_F(Async, OverlappedTimeout) {
  QUEUEHANDLE r = open_queue(format_, MQ_PEEK_ACCESS);
  HANDLE ev = MQSecCreateEvent(FALSE, FALSE);
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  ov.hEvent = ev;
  ASSERT_HR(
      MQ_INFORMATION_OPERATION_PENDING,
      MQReceiveMessage(r, 100, MQ_ACTION_PEEK_CURRENT, nullptr, &ov, nullptr, nullptr, nullptr));
  ASSERT_EQ(MQSecWaitForEvent(ev, 10000), MQSEC_WAIT_OBJECT_0);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, MQGetOverlappedResult(&ov));
  // Auto reset: the successful wait reset it.
  EXPECT_EQ(MQSecWaitForEvent(ev, 0), MQSEC_WAIT_TIMEOUT);
  MQSecCloseEvent(ev);
  MQCloseQueue(r);
}

TEST_F(Async, ClosingTheEventOfAPendingReceiveIsHarmless) {
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  HANDLE ev = MQSecCreateEvent(TRUE, FALSE);
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  ov.hEvent = ev;
  BodyProps p;
  ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING,
            MQReceiveMessage(r, 5000, MQ_ACTION_RECEIVE, &p.props, &ov, nullptr, nullptr, nullptr));
  EXPECT_TRUE(MQSecCloseEvent(ev));
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "no event"));
  HRESULT hr = MQ_INFORMATION_OPERATION_PENDING;
  for (int i = 0; i < 1000 && hr == MQ_INFORMATION_OPERATION_PENDING; ++i) {
    std::this_thread::sleep_for(10ms);
    hr = MQGetOverlappedResult(&ov);
  }
  EXPECT_HR(MQ_OK, hr);
  EXPECT_EQ(p.text(), "no event");
  EXPECT_EQ(MQSecWaitForEvent(ev, 0), MQSEC_WAIT_FAILED);  // closed stays closed
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST_F(Async, AtMost1024PendingReceives) {
  QUEUEHANDLE r = open_queue(format_, MQ_PEEK_ACCESS);
  int started = 0;
  HRESULT hr = MQ_OK;
  for (int i = 0; i < 1100; ++i) {
    hr = MQReceiveMessage(r, INFINITE, MQ_ACTION_PEEK_CURRENT, nullptr, nullptr, record, nullptr,
                          nullptr);
    if (hr != MQ_INFORMATION_OPERATION_PENDING) break;
    ++started;
  }
  EXPECT_EQ(started, 1024);
  EXPECT_HR(MQ_ERROR_INSUFFICIENT_RESOURCES, hr);
  ASSERT_HR(MQ_OK, MQCloseQueue(r));
  auto got = calls(static_cast<size_t>(started));
  ASSERT_EQ(got.size(), static_cast<size_t>(started));
  for (auto& c : got) EXPECT_HR(MQ_ERROR_OPERATION_CANCELLED, c.hr);
  // Their threads are gone again: a new receive can start.
  QUEUEHANDLE r2 = open_queue(format_, MQ_PEEK_ACCESS);
  hr = MQ_ERROR_INSUFFICIENT_RESOURCES;
  for (int i = 0; i < 500 && hr == MQ_ERROR_INSUFFICIENT_RESOURCES; ++i) {
    hr =
        MQReceiveMessage(r2, 0, MQ_ACTION_PEEK_CURRENT, nullptr, nullptr, record, nullptr, nullptr);
    if (hr == MQ_ERROR_INSUFFICIENT_RESOURCES) std::this_thread::sleep_for(10ms);
  }
  EXPECT_HR(MQ_INFORMATION_OPERATION_PENDING, hr);
  EXPECT_EQ(calls(static_cast<size_t>(started) + 1).size(), static_cast<size_t>(started) + 1);
  MQCloseQueue(r2);
}

// ---- MQCloseQueue with receives pending -----------------------------------------------------

TEST_F(Async, CloseQueueCancelsPendingReceives) {
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  HANDLE ev = MQSecCreateEvent(TRUE, FALSE);
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  ov.hEvent = ev;
  BodyProps p1, p2;
  ASSERT_HR(
      MQ_INFORMATION_OPERATION_PENDING,
      MQReceiveMessage(r, INFINITE, MQ_ACTION_RECEIVE, &p1.props, &ov, nullptr, nullptr, nullptr));
  ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING,
            MQReceiveMessage(r, INFINITE, MQ_ACTION_RECEIVE, &p2.props, nullptr, record, nullptr,
                             nullptr));
  std::this_thread::sleep_for(100ms);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_HR(MQ_OK, MQCloseQueue(r));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  // On return the OVERLAPPED has its result and the event is set.
  EXPECT_HR(MQ_ERROR_OPERATION_CANCELLED, MQGetOverlappedResult(&ov));
  EXPECT_EQ(MQSecWaitForEvent(ev, 0), MQSEC_WAIT_OBJECT_0);
  auto got = calls(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_HR(MQ_ERROR_OPERATION_CANCELLED, got[0].hr);
  EXPECT_EQ(got[0].queue, r);  // the handle as it was
  // A message sent now stays for the next receiver.
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "kept"));
  QUEUEHANDLE r2 = open_queue(format_, MQ_RECEIVE_ACCESS);
  BodyProps p3;
  ASSERT_HR(MQ_OK, MQReceiveMessage(r2, 1000, MQ_ACTION_RECEIVE, &p3.props, nullptr, nullptr,
                                    nullptr, nullptr));
  EXPECT_EQ(p3.text(), "kept");
  MQSecCloseEvent(ev);
  MQCloseQueue(s);
  MQCloseQueue(r2);
}

// A callback that closes its own queue, and starts a new receive on another.
QUEUEHANDLE g_other = nullptr;
std::atomic<HRESULT> g_close_result{0};
void APIENTRY close_own(HRESULT hr, QUEUEHANDLE q, DWORD, DWORD, MQMSGPROPS*, LPOVERLAPPED,
                        HANDLE) {
  g_close_result = MQCloseQueue(q);
  record(hr, q, 0, 0, nullptr, nullptr, nullptr);
  MQReceiveMessage(g_other, INFINITE, MQ_ACTION_RECEIVE, nullptr, nullptr, record, nullptr,
                   nullptr);
}

TEST_F(Async, CallbackMayCloseItsQueueAndReceiveAgain) {
  std::wstring other = create_queue();
  g_other = open_queue(other, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  ASSERT_HR(
      MQ_INFORMATION_OPERATION_PENDING,
      MQReceiveMessage(r, 50, MQ_ACTION_RECEIVE, nullptr, nullptr, close_own, nullptr, nullptr));
  ASSERT_EQ(calls(1).size(), 1u);
  EXPECT_HR(MQ_OK, g_close_result.load());
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQCloseQueue(r));  // closed by the callback
  // The receive the callback started is pending on the other queue until that is closed.
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls_now(), 1u);
  ASSERT_HR(MQ_OK, MQCloseQueue(g_other));
  auto got = calls(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_HR(MQ_ERROR_OPERATION_CANCELLED, got[1].hr);
}

// ---- bad input: the call's own result, nothing taken, no completion ---------------------------

TEST_F(Async, BadInputIsReturnedByTheCall) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "stays"));
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  auto recv = [&](QUEUEHANDLE q, DWORD action, MQMSGPROPS* p, LPOVERLAPPED o, PMQRECEIVECALLBACK cb,
                  HANDLE cursor = nullptr, ITransaction* tx = nullptr) {
    return MQReceiveMessage(q, 0, action, p, o, cb, cursor, tx);
  };
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, recv(nullptr, MQ_ACTION_RECEIVE, nullptr, &ov, nullptr));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, recv(reinterpret_cast<QUEUEHANDLE>(uintptr_t{0x12345}),
                                          MQ_ACTION_RECEIVE, nullptr, nullptr, record));
  EXPECT_HR(MQ_ERROR_ILLEGAL_CURSOR_ACTION, recv(r, 2, nullptr, &ov, nullptr));
  EXPECT_HR(MQ_ERROR_ILLEGAL_CURSOR_ACTION, recv(r, MQ_ACTION_PEEK_NEXT, nullptr, nullptr, record));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, recv(s, MQ_ACTION_RECEIVE, nullptr, &ov, nullptr));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE,
            recv(r, MQ_ACTION_RECEIVE, nullptr, &ov, nullptr, nullptr, MQ_SINGLE_MESSAGE));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE,
            recv(r, MQ_ACTION_RECEIVE, nullptr, nullptr, record, nullptr, MQ_MTS_TRANSACTION));
  // A cursor of another queue, a queue handle as the cursor.
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, recv(r, MQ_ACTION_PEEK_CURRENT, nullptr, &ov, nullptr, r));
  // Wrong VT, NULL arrays.
  MSGPROPID id = PROPID_M_BODY_SIZE;
  MQPROPVARIANT v;
  std::memset(&v, 0, sizeof v);
  v.vt = VT_LPWSTR;
  MQMSGPROPS wrong{1, &id, &v, nullptr};
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, recv(r, MQ_ACTION_RECEIVE, &wrong, nullptr, record));
  MQMSGPROPS broken{3, nullptr, nullptr, nullptr};
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, recv(r, MQ_ACTION_RECEIVE, &broken, &ov, nullptr));
  // An hEvent that is not an event: a queue handle, a closed event, garbage.
  ov.hEvent = r;
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, recv(r, MQ_ACTION_RECEIVE, nullptr, &ov, nullptr));
  HANDLE ev = MQSecCreateEvent(FALSE, FALSE);
  ASSERT_TRUE(MQSecCloseEvent(ev));
  ov.hEvent = ev;
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, recv(r, MQ_ACTION_RECEIVE, nullptr, &ov, nullptr));
  ov.hEvent = reinterpret_cast<HANDLE>(uintptr_t{0xDEADBEEF});
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, recv(r, MQ_ACTION_RECEIVE, nullptr, &ov, nullptr));
  // None of them completed anything or took the message.
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls_now(), 0u);
  BodyProps p;
  ASSERT_HR(MQ_OK, MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, &p.props, nullptr, nullptr, nullptr,
                                    nullptr));
  EXPECT_EQ(p.text(), "stays");
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetOverlappedResult(nullptr));
  MQCloseQueue(s);
  MQCloseQueue(r);
}

// ---- events ---------------------------------------------------------------------------------

TEST(AsyncEvents, ManualAndAutoResetAndBadHandles) {
  HANDLE manual = MQSecCreateEvent(TRUE, FALSE);
  HANDLE automatic = MQSecCreateEvent(FALSE, TRUE);
  ASSERT_NE(manual, nullptr);
  ASSERT_NE(automatic, nullptr);
  EXPECT_NE(manual, automatic);
  EXPECT_EQ(MQSecWaitForEvent(manual, 0), MQSEC_WAIT_TIMEOUT);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(MQSecWaitForEvent(manual, 100), MQSEC_WAIT_TIMEOUT);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
  EXPECT_TRUE(MQSecSetEvent(manual));
  EXPECT_EQ(MQSecWaitForEvent(manual, 0), MQSEC_WAIT_OBJECT_0);
  EXPECT_EQ(MQSecWaitForEvent(manual, INFINITE), MQSEC_WAIT_OBJECT_0);
  EXPECT_TRUE(MQSecResetEvent(manual));
  EXPECT_EQ(MQSecWaitForEvent(manual, 0), MQSEC_WAIT_TIMEOUT);
  EXPECT_EQ(MQSecWaitForEvent(automatic, 0), MQSEC_WAIT_OBJECT_0);  // initially set
  EXPECT_EQ(MQSecWaitForEvent(automatic, 0), MQSEC_WAIT_TIMEOUT);   // and reset by the wait
  // Set from another thread wakes an INFINITE wait.
  std::thread setter([&] {
    std::this_thread::sleep_for(50ms);
    MQSecSetEvent(automatic);
  });
  EXPECT_EQ(MQSecWaitForEvent(automatic, INFINITE), MQSEC_WAIT_OBJECT_0);
  setter.join();
  EXPECT_TRUE(MQSecCloseEvent(manual));
  EXPECT_TRUE(MQSecCloseEvent(automatic));
  // Closed, NULL, forged, other kinds of handles.
  for (HANDLE bad :
       {manual, static_cast<HANDLE>(nullptr), reinterpret_cast<HANDLE>(uintptr_t{0x300000001}),
        reinterpret_cast<HANDLE>(uintptr_t{0xFFFFFFFFFFFFFFFF})}) {
    EXPECT_EQ(MQSecWaitForEvent(bad, 0), MQSEC_WAIT_FAILED);
    EXPECT_FALSE(MQSecSetEvent(bad));
    EXPECT_FALSE(MQSecResetEvent(bad));
    EXPECT_FALSE(MQSecCloseEvent(bad));
  }
}

// ---- fork and exit ----------------------------------------------------------------------------

TEST_F(Async, ExitWithReceivesPendingDoesNotHangOrCallBack) {
  const std::wstring format = format_;
  const int rc = mqsec::testing::exit_in_child(
      [&] {
        QUEUEHANDLE r = open_queue(format, MQ_RECEIVE_ACCESS);
        for (int i = 0; i < 4; ++i) {
          if (MQReceiveMessage(
                  r, INFINITE, MQ_ACTION_RECEIVE, nullptr, nullptr,
                  [](HRESULT, QUEUEHANDLE, DWORD, DWORD, MQMSGPROPS*, LPOVERLAPPED, HANDLE) {
                    std::_Exit(7);
                  },  // no callback at exit
                  nullptr, nullptr) != MQ_INFORMATION_OPERATION_PENDING) {
            return 2;
          }
        }
        std::this_thread::sleep_for(100ms);
        return 0;
      },
      5s);
  EXPECT_EQ(rc, 0);
}

TEST_F(Async, ForkWithReceivesPending) {
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  HANDLE ev = MQSecCreateEvent(TRUE, FALSE);
  OVERLAPPED ov;
  std::memset(&ov, 0, sizeof ov);
  ov.hEvent = ev;
  ASSERT_HR(MQ_INFORMATION_OPERATION_PENDING,
            MQReceiveMessage(r, INFINITE, MQ_ACTION_PEEK_CURRENT, nullptr, &ov, nullptr, nullptr,
                             nullptr));
  const std::wstring format = format_;
  // The child has none of the parent's pending receives; its own work, and so do its events,
  // its MQCloseQueue and its exit.
  const int rc = mqsec::testing::exit_in_child(
      [&] {
        if (MQGetOverlappedResult(&ov) != MQ_INFORMATION_OPERATION_PENDING) return 2;
        if (MQCloseQueue(r) != MQ_OK) return 3;  // nothing of the child's to cancel or wait for
        QUEUEHANDLE s = open_queue(format, MQ_SEND_ACCESS);
        if (send_body(s, "from the child") != MQ_OK) return 4;
        QUEUEHANDLE r2 = open_queue(format, MQ_PEEK_ACCESS);
        HANDLE ev2 = MQSecCreateEvent(TRUE, FALSE);
        OVERLAPPED ov2;
        std::memset(&ov2, 0, sizeof ov2);
        ov2.hEvent = ev2;
        if (MQReceiveMessage(r2, 5000, MQ_ACTION_PEEK_CURRENT, nullptr, &ov2, nullptr, nullptr,
                             nullptr) != MQ_INFORMATION_OPERATION_PENDING) {
          return 5;
        }
        if (MQSecWaitForEvent(ev2, 5000) != MQSEC_WAIT_OBJECT_0) return 6;
        if (MQGetOverlappedResult(&ov2) != MQ_OK) return 7;
        if (!MQSecSetEvent(ev)) return 8;  // the parent's event, copied: the child's to use
        return 0;
      },
      10s);
  EXPECT_EQ(rc, 0);
  // The parent's receive saw the child's message.
  ASSERT_EQ(MQSecWaitForEvent(ev, 10000), MQSEC_WAIT_OBJECT_0);
  EXPECT_HR(MQ_OK, MQGetOverlappedResult(&ov));
  MQSecCloseEvent(ev);
  MQCloseQueue(r);
}

}  // namespace
