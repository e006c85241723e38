// The rest of MSMQ's C API (issue 13) through libmqrt, against what MSMQ documents:
// PROPID_M_LOOKUPID and MQReceiveMessageByLookupId, the MSMQ 3.0 receive properties,
// MQGetQueueProperties / MQSetQueueProperties, MQPurgeQueue, MQHandleToFormatName, every
// PROPID_Q_* at MQCreateQueue, MQGetPrivateComputerInformation and MQMgmtGetInfo; each with its
// bad input (wrong VT, NULL, short buffers, unknown handles).
//
// Runs on a throwaway SoftHSM token (tests/support/softhsm_env) with unsigned messages.
#include <mq.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <cwchar>
#include <cwctype>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/hresult_text.hpp"
#include "tests/support/msmq_props.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"

namespace {

using mqsec::testing::Props;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

// A property array (message, queue, computer or management properties: the same layout).

std::wstring unique_queue(const std::wstring& stem) {
  static int n = 0;
  return stem + L"-" + std::to_wstring(getpid()) + L"-" + std::to_wstring(++n);
}
std::wstring path_of(const std::wstring& q) { return L".\\private$\\" + q; }
std::wstring format_of(const std::wstring& q) { return L"DIRECT=OS:.\\private$\\" + q; }

std::wstring create_queue(const std::wstring& name) {
  std::wstring path = path_of(name);
  Props p;
  p.wstr(PROPID_Q_PATHNAME, path.c_str());
  WCHAR buf[256];
  DWORD len = 256;
  EXPECT_HR(MQ_OK, MQCreateQueue(nullptr, p.queue(), buf, &len));
  return format_of(name);
}

QUEUEHANDLE open_queue(const std::wstring& format, DWORD access) {
  QUEUEHANDLE h = nullptr;
  EXPECT_HR(MQ_OK, MQOpenQueue(format.c_str(), access, MQ_DENY_NONE, &h));
  return h;
}

HRESULT send_body(QUEUEHANDLE h, const std::string& body, UCHAR priority = 3) {
  std::string copy = body;
  Props p;
  p.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(copy.data()), static_cast<ULONG>(copy.size()));
  p.ui1(PROPID_M_PRIORITY, priority);
  return MQSendMessage(h, p.msg(), MQ_NO_TRANSACTION);
}

// What a lookup receive gave: the result, the body and the lookup id.
struct Got {
  HRESULT hr = MQ_OK;
  std::string body;
  ULONGLONG lookup_id = 0;
};

Got by_lookup_id(QUEUEHANDLE h, ULONGLONG id, DWORD action) {
  std::vector<UCHAR> body(256);
  Props p;
  p.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
  size_t lid = p.null(PROPID_M_LOOKUPID);
  Got g;
  g.hr = MQReceiveMessageByLookupId(h, id, action, p.msg(), nullptr, nullptr, nullptr);
  if (SUCCEEDED(g.hr)) {
    g.body.assign(body.begin(), body.begin() + p.var(0).caub.cElems);
    EXPECT_EQ(p.var(lid).vt, VT_UI8);
    g.lookup_id = p.var(lid).uhVal.QuadPart;
  }
  return g;
}

// Peeks through the queue with a cursor: each message's body and lookup id, in queue order.
std::vector<Got> peek_all(QUEUEHANDLE h) {
  std::vector<Got> out;
  HANDLE c = nullptr;
  EXPECT_HR(MQ_OK, MQCreateCursor(h, &c));
  DWORD action = MQ_ACTION_PEEK_CURRENT;
  for (;;) {
    std::vector<UCHAR> body(256);
    Props p;
    p.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
    size_t lid = p.add(PROPID_M_LOOKUPID, VT_UI8);
    HRESULT hr = MQReceiveMessage(h, 0, action, p.msg(), nullptr, nullptr, c, nullptr);
    if (hr == MQ_ERROR_IO_TIMEOUT) break;
    EXPECT_HR(MQ_OK, hr);
    if (FAILED(hr)) break;
    Got g;
    g.body.assign(body.begin(), body.begin() + p.var(0).caub.cElems);
    g.lookup_id = p.var(lid).uhVal.QuadPart;
    out.push_back(g);
    action = MQ_ACTION_PEEK_NEXT;
  }
  MQCloseCursor(c);
  return out;
}

class MsmqApi : public ::testing::Test {
 protected:
  void SetUp() override {
    queue_ = unique_queue(L"msmq-api");
    format_ = create_queue(queue_);
  }
  std::wstring queue_, format_;
};

// ---- PROPID_M_LOOKUPID and MQReceiveMessageByLookupId ------------------------------------

TEST_F(MsmqApi, LookupIdIsReturnedOnReceiveAndPeek) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "one"));
  ASSERT_HR(MQ_OK, send_body(s, "two"));
  MQCloseQueue(s);
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  std::vector<Got> all = peek_all(r);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_NE(all[0].lookup_id, 0u);
  EXPECT_LT(all[0].lookup_id, all[1].lookup_id);  // increasing in arrival order

  // An ordinary receive reports the same id (VT_NULL: the runtime sets VT_UI8).
  Props p;
  size_t lid = p.null(PROPID_M_LOOKUPID);
  ASSERT_HR(MQ_OK,
            MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, p.msg(), nullptr, nullptr, nullptr, nullptr));
  EXPECT_EQ(p.var(lid).vt, VT_UI8);
  EXPECT_EQ(p.var(lid).uhVal.QuadPart, all[0].lookup_id);

  // Wrong VT: the whole receive fails before anything is taken.
  Props bad;
  size_t b = bad.ui4(PROPID_M_LOOKUPID, 0);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, bad.msg(),
                                                           nullptr, nullptr, nullptr, nullptr));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, bad.status[b]);
  EXPECT_EQ(peek_all(r).size(), 1u);
  MQCloseQueue(r);
}

TEST_F(MsmqApi, ReceiveByLookupIdActions) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "a", 3));
  ASSERT_HR(MQ_OK, send_body(s, "b", 3));
  ASSERT_HR(MQ_OK, send_body(s, "urgent", 7));  // first in queue order (priority)
  ASSERT_HR(MQ_OK, send_body(s, "c", 3));
  MQCloseQueue(s);
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  std::vector<Got> order = peek_all(r);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0].body, "urgent");
  EXPECT_EQ(order[1].body, "a");
  EXPECT_EQ(order[3].body, "c");

  EXPECT_EQ(by_lookup_id(r, 0, MQ_LOOKUP_PEEK_FIRST).body, "urgent");
  EXPECT_EQ(by_lookup_id(r, 0, MQ_LOOKUP_PEEK_LAST).body, "c");
  Got cur = by_lookup_id(r, order[2].lookup_id, MQ_LOOKUP_PEEK_CURRENT);
  EXPECT_HR(MQ_OK, cur.hr);
  EXPECT_EQ(cur.body, "b");
  EXPECT_EQ(cur.lookup_id, order[2].lookup_id);
  EXPECT_EQ(by_lookup_id(r, order[2].lookup_id, MQ_LOOKUP_PEEK_NEXT).body, "c");
  EXPECT_EQ(by_lookup_id(r, order[2].lookup_id, MQ_LOOKUP_PEEK_PREV).body, "a");
  EXPECT_EQ(by_lookup_id(r, order[1].lookup_id, MQ_LOOKUP_PEEK_PREV).body, "urgent");
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND,
            by_lookup_id(r, order[3].lookup_id, MQ_LOOKUP_PEEK_NEXT).hr);
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND,
            by_lookup_id(r, order[0].lookup_id, MQ_LOOKUP_PEEK_PREV).hr);
  EXPECT_EQ(peek_all(r).size(), 4u);  // peeks take nothing

  // Receives take the message they name, and only it.
  EXPECT_EQ(by_lookup_id(r, order[2].lookup_id, MQ_LOOKUP_RECEIVE_CURRENT).body, "b");
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND,
            by_lookup_id(r, order[2].lookup_id, MQ_LOOKUP_RECEIVE_CURRENT).hr);
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND,
            by_lookup_id(r, order[2].lookup_id, MQ_LOOKUP_PEEK_NEXT).hr);
  EXPECT_EQ(by_lookup_id(r, order[1].lookup_id, MQ_LOOKUP_RECEIVE_NEXT).body, "c");
  EXPECT_EQ(by_lookup_id(r, 0, MQ_LOOKUP_RECEIVE_LAST).body, "a");
  EXPECT_EQ(by_lookup_id(r, 0, MQ_LOOKUP_RECEIVE_FIRST).body, "urgent");
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, by_lookup_id(r, 0, MQ_LOOKUP_RECEIVE_FIRST).hr);
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, by_lookup_id(r, 0, MQ_LOOKUP_PEEK_LAST).hr);
  MQCloseQueue(r);
}

TEST_F(MsmqApi, ReceiveByLookupIdBadInput) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "stays"));
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE pk = open_queue(format_, MQ_PEEK_ACCESS);
  const ULONGLONG id = peek_all(r).at(0).lookup_id;
  auto call = [&](QUEUEHANDLE h, ULONGLONG lid, DWORD action, MQMSGPROPS* props = nullptr) {
    return MQReceiveMessageByLookupId(h, lid, action, props, nullptr, nullptr, nullptr);
  };
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, call(nullptr, id, MQ_LOOKUP_PEEK_CURRENT));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE,
            call(reinterpret_cast<QUEUEHANDLE>(uintptr_t{0x12345}), id, MQ_LOOKUP_PEEK_CURRENT));
  HANDLE cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(r, &cursor));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, call(cursor, id, MQ_LOOKUP_PEEK_CURRENT));  // not a queue
  MQCloseCursor(cursor);
  EXPECT_HR(MQ_ERROR_ILLEGAL_CURSOR_ACTION, call(r, id, MQ_ACTION_PEEK_CURRENT));
  EXPECT_HR(MQ_ERROR_ILLEGAL_CURSOR_ACTION, call(r, id, 0x40000013));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, call(r, id, MQ_LOOKUP_PEEK_FIRST));  // FIRST wants 0
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, call(r, 1, MQ_LOOKUP_RECEIVE_LAST));
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, call(r, id + 1000000, MQ_LOOKUP_PEEK_CURRENT));
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, call(r, ~ULONGLONG{0}, MQ_LOOKUP_RECEIVE_CURRENT));
  EXPECT_HR(MQ_ERROR_MESSAGE_NOT_FOUND, call(r, 0, MQ_LOOKUP_PEEK_CURRENT));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, call(pk, id, MQ_LOOKUP_RECEIVE_CURRENT));
  EXPECT_HR(MQ_OK, call(pk, id, MQ_LOOKUP_PEEK_CURRENT));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, call(s, id, MQ_LOOKUP_PEEK_CURRENT));
  OVERLAPPED ov;  // an hEvent that is not an event (asynchronous lookups: test_msmq_async)
  std::memset(&ov, 0, sizeof ov);
  ov.hEvent = r;
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQReceiveMessageByLookupId(r, id, MQ_LOOKUP_PEEK_CURRENT,
                                                                   nullptr, &ov, nullptr, nullptr));
  EXPECT_HR(MQ_ERROR_TRANSACTION_USAGE,
            MQReceiveMessageByLookupId(r, id, MQ_LOOKUP_PEEK_CURRENT, nullptr, nullptr, nullptr,
                                       reinterpret_cast<ITransaction*>(uintptr_t{64})));
  // Properties: checked before anything is taken; a short body buffer leaves the message.
  Props wrong;
  wrong.ui1(PROPID_M_BODY, 0);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, call(r, id, MQ_LOOKUP_RECEIVE_CURRENT, wrong.msg()));
  UCHAR tiny[2];
  Props shortp;
  shortp.bytes(PROPID_M_BODY, tiny, sizeof tiny);
  EXPECT_HR(MQ_ERROR_BUFFER_OVERFLOW, call(r, id, MQ_LOOKUP_RECEIVE_CURRENT, shortp.msg()));
  MQMSGPROPS broken{3, nullptr, nullptr, nullptr};
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, call(r, id, MQ_LOOKUP_RECEIVE_CURRENT, &broken));
  EXPECT_EQ(by_lookup_id(r, id, MQ_LOOKUP_RECEIVE_CURRENT).body, "stays");
  MQCloseQueue(pk);
  MQCloseQueue(r);
  MQCloseQueue(s);
}

// ---- the MSMQ 3.0 receive properties ------------------------------------------------------

TEST_F(MsmqApi, Msmq30ReceivePropertiesDoNotFailAReceive) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "m1"));
  ASSERT_HR(MQ_OK, send_body(s, "m2"));
  MQCloseQueue(s);
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);

  GUID machine{};
  WCHAR dest[256];
  WCHAR soap[64];
  UCHAR compound[64];
  Props p;
  size_t src =
      p.add(PROPID_M_SRC_MACHINE_ID, VT_CLSID, [&](MQPROPVARIANT& v) { v.puuid = &machine; });
  size_t df = p.wstr(PROPID_M_DEST_FORMAT_NAME, dest);
  size_t dfl = p.ui4(PROPID_M_DEST_FORMAT_NAME_LEN, 256);
  size_t rfl = p.null(PROPID_M_RESP_FORMAT_NAME_LEN);
  size_t se = p.wstr(PROPID_M_SOAP_ENVELOPE, soap);
  p.ui4(PROPID_M_SOAP_ENVELOPE_LEN, 64);
  size_t cm = p.bytes(PROPID_M_COMPOUND_MESSAGE, compound, sizeof compound);
  p.null(PROPID_M_COMPOUND_MESSAGE_SIZE);
  size_t ac = p.null(PROPID_M_ABORT_COUNT);
  size_t mc = p.null(PROPID_M_MOVE_COUNT);
  size_t lid = p.null(PROPID_M_LOOKUPID);
  size_t ct = p.null(PROPID_M_CONNECTOR_TYPE);  // VT_NULL GUID: allocated, MQFreeMemory frees
  HRESULT hr =
      MQReceiveMessage(r, 0, MQ_ACTION_PEEK_CURRENT, p.msg(), nullptr, nullptr, nullptr, nullptr);
  EXPECT_TRUE(hr == MQ_OK || hr == MQ_INFORMATION_PROPERTY) << mqsec::testing::hr_text(hr);
  EXPECT_HR(MQ_OK, p.status[src]);
  EXPECT_NE(machine.Data1 | machine.Data2 | machine.Data3, 0u);
  EXPECT_EQ(machine.Data3 >> 12, 5);  // name-based
  EXPECT_HR(MQ_OK, p.status[df]);
  EXPECT_EQ(std::wstring(dest).rfind(L"DIRECT=OS:", 0), 0u);
  EXPECT_NE(std::wstring(dest).find(queue_), std::wstring::npos);
  EXPECT_EQ(p.var(dfl).ulVal, std::wcslen(dest) + 1);
  EXPECT_EQ(p.var(rfl).vt, VT_UI4);
  EXPECT_EQ(p.var(rfl).ulVal, 1u);  // no response queue: the empty string's NUL
  EXPECT_HR(MQ_INFORMATION_PROPERTY_IGNORED, p.status[se]);
  EXPECT_HR(MQ_INFORMATION_PROPERTY_IGNORED, p.status[cm]);
  EXPECT_EQ(p.var(ac).ulVal, 0u);
  EXPECT_EQ(p.var(mc).ulVal, 0u);
  EXPECT_EQ(p.var(lid).vt, VT_UI8);
  ASSERT_EQ(p.var(ct).vt, VT_CLSID);
  ASSERT_NE(p.var(ct).puuid, nullptr);
  MQFreeMemory(p.var(ct).puuid);

  // The same machine, the same GUID.
  GUID second{};
  Props q;
  q.add(PROPID_M_SRC_MACHINE_ID, VT_CLSID, [&](MQPROPVARIANT& v) { v.puuid = &second; });
  ASSERT_HR(MQ_OK, MQReceiveMessageByLookupId(r, 0, MQ_LOOKUP_PEEK_LAST, q.msg(), nullptr, nullptr,
                                              nullptr));
  EXPECT_EQ(std::memcmp(&machine, &second, sizeof machine), 0);

  // Bad input: a NULL GUID buffer, a short format-name buffer (the needed length comes back
  // and the message stays), a wrong VT.
  Props nul;
  nul.add(PROPID_M_SRC_MACHINE_ID, VT_CLSID);
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, nul.msg(),
                                                         nullptr, nullptr, nullptr, nullptr));
  WCHAR small[4];
  Props shortp;
  shortp.wstr(PROPID_M_DEST_FORMAT_NAME, small);
  size_t sl = shortp.ui4(PROPID_M_DEST_FORMAT_NAME_LEN, 4);
  EXPECT_HR(
      MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL,
      MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, shortp.msg(), nullptr, nullptr, nullptr, nullptr));
  EXPECT_EQ(shortp.var(sl).ulVal, std::wcslen(dest) + 1);
  Props vt;
  vt.ui4(PROPID_M_SRC_MACHINE_ID, 0);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, vt.msg(),
                                                           nullptr, nullptr, nullptr, nullptr));
  EXPECT_EQ(peek_all(r).size(), 2u);
  MQCloseQueue(r);
}

// ---- MQCreateQueue with every PROPID_Q_*, MQGetQueueProperties, MQSetQueueProperties --------

TEST(QueueProperties, CreateKeepsEveryPropertyAndGetReturnsThem) {
  const std::wstring name = unique_queue(L"qprops");
  const std::wstring path = path_of(name);
  GUID type = {0x55ee8f33, 0xcce9, 0x11cf, {0xb1, 0x08, 0x00, 0x20, 0xaf, 0xd6, 0x1c, 0xe9}};
  Props c;
  c.wstr(PROPID_Q_PATHNAME, path.c_str());
  c.wstr(PROPID_Q_LABEL, L"all of them");
  c.ui1(PROPID_Q_JOURNAL, MQ_JOURNAL);
  c.ui4(PROPID_Q_QUOTA, 4096);
  c.ui4(PROPID_Q_JOURNAL_QUOTA, 8192);
  c.add(PROPID_Q_TYPE, VT_CLSID, [&](MQPROPVARIANT& v) { v.puuid = &type; });
  c.i2(PROPID_Q_BASEPRIORITY, -3);
  c.ui4(PROPID_Q_PRIV_LEVEL, MQ_PRIV_LEVEL_NONE);
  c.ui1(PROPID_Q_TRANSACTION, MQ_TRANSACTIONAL);
  c.ui1(PROPID_Q_AUTHENTICATE, MQ_AUTHENTICATE_NONE);
  c.wstr(PROPID_Q_MULTICAST_ADDRESS, L"234.1.1.1:8001");
  WCHAR fmt[256];
  DWORD len = 256;
  ASSERT_HR(MQ_OK, MQCreateQueue(nullptr, c.queue(), fmt, &len));
  const std::wstring format = fmt;
  EXPECT_EQ(len, format.size() + 1);

  Props g;
  size_t pn = g.null(PROPID_Q_PATHNAME);
  size_t lb = g.null(PROPID_Q_LABEL);
  size_t jn = g.null(PROPID_Q_JOURNAL);
  size_t qu = g.add(PROPID_Q_QUOTA, VT_UI4);  // a fixed-size type may come as itself
  size_t jq = g.null(PROPID_Q_JOURNAL_QUOTA);
  size_t ty = g.null(PROPID_Q_TYPE);
  size_t bp = g.null(PROPID_Q_BASEPRIORITY);
  size_t pl = g.null(PROPID_Q_PRIV_LEVEL);
  size_t tx = g.null(PROPID_Q_TRANSACTION);
  size_t au = g.null(PROPID_Q_AUTHENTICATE);
  size_t mc = g.null(PROPID_Q_MULTICAST_ADDRESS);
  size_t ct = g.null(PROPID_Q_CREATE_TIME);
  size_t mt = g.null(PROPID_Q_MODIFY_TIME);
  size_t in = g.null(PROPID_Q_INSTANCE);
  size_t ads = g.null(PROPID_Q_ADS_PATH);
  HRESULT hr = MQGetQueueProperties(format.c_str(), g.queue());
  EXPECT_HR(MQ_INFORMATION_PROPERTY, hr);  // ADS_PATH: no Active Directory
  EXPECT_HR(MQ_INFORMATION_UNSUPPORTED_PROPERTY, g.status[ads]);
  EXPECT_HR(MQ_OK, g.status[in]);  // INSTANCE: the queue's GUID (test_msmq_locate)
  ASSERT_EQ(g.var(in).vt, VT_CLSID);
  MQFreeMemory(g.var(in).puuid);
  ASSERT_EQ(g.var(pn).vt, VT_LPWSTR);
  std::wstring got_path = g.var(pn).pwszVal;
  EXPECT_EQ(got_path.substr(got_path.find(L'\\')), L"\\private$\\" + name);
  MQFreeMemory(g.var(pn).pwszVal);
  ASSERT_EQ(g.var(lb).vt, VT_LPWSTR);
  EXPECT_EQ(std::wstring(g.var(lb).pwszVal), L"all of them");
  MQFreeMemory(g.var(lb).pwszVal);
  EXPECT_EQ(g.var(jn).vt, VT_UI1);
  EXPECT_EQ(g.var(jn).bVal, MQ_JOURNAL);
  EXPECT_EQ(g.var(qu).ulVal, 4096u);
  EXPECT_EQ(g.var(jq).ulVal, 8192u);
  ASSERT_EQ(g.var(ty).vt, VT_CLSID);
  EXPECT_EQ(std::memcmp(g.var(ty).puuid, &type, sizeof type), 0);
  MQFreeMemory(g.var(ty).puuid);
  EXPECT_EQ(g.var(bp).vt, VT_I2);
  EXPECT_EQ(g.var(bp).iVal, -3);
  EXPECT_EQ(g.var(pl).ulVal, static_cast<ULONG>(MQ_PRIV_LEVEL_NONE));
  EXPECT_EQ(g.var(tx).bVal, MQ_TRANSACTIONAL);
  EXPECT_EQ(g.var(au).bVal, MQ_AUTHENTICATE_NONE);
  ASSERT_EQ(g.var(mc).vt, VT_LPWSTR);
  EXPECT_EQ(std::wstring(g.var(mc).pwszVal), L"234.1.1.1:8001");
  MQFreeMemory(g.var(mc).pwszVal);
  EXPECT_EQ(g.var(ct).vt, VT_I4);
  EXPECT_GT(g.var(ct).lVal, 1600000000);
  EXPECT_EQ(g.var(mt).lVal, g.var(ct).lVal);
  MQDeleteQueue(format.c_str());
}

TEST(QueueProperties, DefaultsAreMsmqs) {
  const std::wstring format = create_queue(unique_queue(L"qdefaults"));
  Props g;
  size_t jn = g.null(PROPID_Q_JOURNAL);
  size_t qu = g.null(PROPID_Q_QUOTA);
  size_t bp = g.null(PROPID_Q_BASEPRIORITY);
  size_t pl = g.null(PROPID_Q_PRIV_LEVEL);
  size_t mc = g.null(PROPID_Q_MULTICAST_ADDRESS);
  size_t lb = g.null(PROPID_Q_LABEL);
  ASSERT_HR(MQ_OK, MQGetQueueProperties(format.c_str(), g.queue()));
  EXPECT_EQ(g.var(jn).bVal, MQ_JOURNAL_NONE);
  EXPECT_EQ(g.var(qu).ulVal, 0xFFFFFFFFu);  // INFINITE
  EXPECT_EQ(g.var(bp).iVal, 0);
  EXPECT_EQ(g.var(pl).ulVal, static_cast<ULONG>(MQ_PRIV_LEVEL_OPTIONAL));
  EXPECT_EQ(g.var(mc).vt, VT_EMPTY);  // no multicast address
  ASSERT_EQ(g.var(lb).vt, VT_LPWSTR);
  EXPECT_EQ(std::wstring(g.var(lb).pwszVal), L"");
  MQFreeMemory(g.var(lb).pwszVal);
  MQDeleteQueue(format.c_str());
}

TEST(QueueProperties, SetChangesWhatMayChange) {
  const std::wstring format = create_queue(unique_queue(L"qset"));
  Props s;
  s.wstr(PROPID_Q_LABEL, L"relabelled");
  s.ui1(PROPID_Q_JOURNAL, MQ_JOURNAL);
  s.ui4(PROPID_Q_QUOTA, 100);
  s.i2(PROPID_Q_BASEPRIORITY, 7);
  s.wstr(PROPID_Q_MULTICAST_ADDRESS, L"239.255.0.1:65535");
  ASSERT_HR(MQ_OK, MQSetQueueProperties(format.c_str(), s.queue()));
  Props g;
  size_t lb = g.null(PROPID_Q_LABEL);
  size_t jn = g.null(PROPID_Q_JOURNAL);
  size_t qu = g.null(PROPID_Q_QUOTA);
  size_t bp = g.null(PROPID_Q_BASEPRIORITY);
  size_t mc = g.null(PROPID_Q_MULTICAST_ADDRESS);
  size_t tx = g.null(PROPID_Q_TRANSACTION);
  ASSERT_HR(MQ_OK, MQGetQueueProperties(format.c_str(), g.queue()));
  EXPECT_EQ(std::wstring(g.var(lb).pwszVal), L"relabelled");
  MQFreeMemory(g.var(lb).pwszVal);
  EXPECT_EQ(g.var(jn).bVal, MQ_JOURNAL);
  EXPECT_EQ(g.var(qu).ulVal, 100u);
  EXPECT_EQ(g.var(bp).iVal, 7);
  EXPECT_EQ(std::wstring(g.var(mc).pwszVal), L"239.255.0.1:65535");
  MQFreeMemory(g.var(mc).pwszVal);
  EXPECT_EQ(g.var(tx).bVal, MQ_TRANSACTIONAL_NONE);

  // VT_EMPTY removes the multicast address.
  Props e;
  e.add(PROPID_Q_MULTICAST_ADDRESS, VT_EMPTY);
  ASSERT_HR(MQ_OK, MQSetQueueProperties(format.c_str(), e.queue()));
  Props g2;
  size_t mc2 = g2.null(PROPID_Q_MULTICAST_ADDRESS);
  ASSERT_HR(MQ_OK, MQGetQueueProperties(format.c_str(), g2.queue()));
  EXPECT_EQ(g2.var(mc2).vt, VT_EMPTY);
  MQDeleteQueue(format.c_str());
}

// Setting AUTHENTICATE applies to handles opened afterwards (docs/msmq-api.md): a receive handle
// opened after the change never returns an unsigned message, one opened before still does. The
// modify time moves with a change, and another machine's queue is refused.
TEST(QueueProperties, AuthenticateChangeAppliesToHandlesOpenedAfterIt) {
  const std::wstring format = create_queue(unique_queue(L"qauth"));
  QUEUEHANDLE s = open_queue(format, MQ_SEND_ACCESS);
  QUEUEHANDLE old_r = open_queue(format, MQ_RECEIVE_ACCESS);
  Props before;
  size_t mt0 = before.null(PROPID_Q_MODIFY_TIME);
  ASSERT_HR(MQ_OK, MQGetQueueProperties(format.c_str(), before.queue()));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the time has seconds
  Props set;
  set.ui1(PROPID_Q_AUTHENTICATE, MQ_AUTHENTICATE);
  ASSERT_HR(MQ_OK, MQSetQueueProperties(format.c_str(), set.queue()));
  Props after;
  size_t au = after.null(PROPID_Q_AUTHENTICATE);
  size_t mt1 = after.null(PROPID_Q_MODIFY_TIME);
  ASSERT_HR(MQ_OK, MQGetQueueProperties(format.c_str(), after.queue()));
  EXPECT_EQ(after.var(au).bVal, MQ_AUTHENTICATE);
  EXPECT_GT(after.var(mt1).lVal, before.var(mt0).lVal);

  auto receive = [](QUEUEHANDLE h) {
    std::vector<UCHAR> body(64);
    Props p;
    p.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
    const HRESULT hr =
        MQReceiveMessage(h, 300, MQ_ACTION_RECEIVE, p.msg(), nullptr, nullptr, nullptr, nullptr);
    return std::pair{
        hr, std::string(body.begin(), body.begin() + (SUCCEEDED(hr) ? p.var(0).caub.cElems : 0))};
  };
  ASSERT_HR(MQ_OK, send_body(s, "unsigned-1"));
  QUEUEHANDLE new_r = open_queue(format, MQ_RECEIVE_ACCESS);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(new_r).first) << "an unsigned message was delivered";
  ASSERT_HR(MQ_OK, send_body(s, "unsigned-2"));
  auto [hr, body] = receive(old_r);
  EXPECT_HR(MQ_OK, hr);
  EXPECT_EQ(body, "unsigned-2");

  const std::wstring remote = L"DIRECT=OS:otherhost\\private$\\q";
  Props g;
  g.null(PROPID_Q_LABEL);
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
            MQGetQueueProperties(remote.c_str(), g.queue()));
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
            MQSetQueueProperties(remote.c_str(), set.queue()));
  MQCloseQueue(s);
  MQCloseQueue(old_r);
  MQCloseQueue(new_r);
  MQDeleteQueue(format.c_str());
}

TEST(QueueProperties, BadInput) {
  const std::wstring name = unique_queue(L"qbad");
  const std::wstring format = create_queue(name);
  const std::wstring missing = format_of(unique_queue(L"qmissing"));
  auto create_with = [&](std::function<void(Props&)> add) {
    const std::wstring path = path_of(unique_queue(L"qbadc"));
    Props p;
    p.wstr(PROPID_Q_PATHNAME, path.c_str());
    add(p);
    WCHAR buf[256];
    DWORD len = 256;
    HRESULT hr = MQCreateQueue(nullptr, p.queue(), buf, &len);
    if (SUCCEEDED(hr)) MQDeleteQueue(buf);
    return hr;
  };
  // Create: wrong VT, bad values, read-only properties ignored with a warning.
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT,
            create_with([](Props& p) { p.ui4(PROPID_Q_JOURNAL, 1); }));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT,
            create_with([](Props& p) { p.ui4(PROPID_Q_BASEPRIORITY, 1); }));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
            create_with([](Props& p) { p.ui1(PROPID_Q_JOURNAL, 2); }));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
            create_with([](Props& p) { p.ui4(PROPID_Q_PRIV_LEVEL, MQ_PRIV_LEVEL_BODY); }));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
            create_with([](Props& p) { p.ui4(PROPID_Q_PRIV_LEVEL, 9); }));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
            create_with([](Props& p) { p.wstr(PROPID_Q_MULTICAST_ADDRESS, L"10.0.0.1:80"); }));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
            create_with([](Props& p) { p.wstr(PROPID_Q_MULTICAST_ADDRESS, L"234.1.1.1"); }));
  for (const wchar_t* bad : {L" 234.1.1.1:80", L"+234.1.1.1:80", L"234.1.1:80", L"234.1.1.256:80",
                             L"234.1.1.1 :80", L"0x234.1.1.1:80", L"234.1.1.1:+80"}) {
    EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
              create_with([&](Props& p) { p.wstr(PROPID_Q_MULTICAST_ADDRESS, bad); }))
        << "accepted '" << std::string(bad, bad + std::wcslen(bad)) << "'";
  }
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, create_with([](Props& p) {
              p.add(PROPID_Q_TYPE, VT_CLSID);  // NULL GUID pointer
            }));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPID, create_with([](Props& p) { p.ui4(PROPID_Q_BASE + 50, 1); }));
  EXPECT_HR(MQ_INFORMATION_PROPERTY,
            create_with([](Props& p) { p.add(PROPID_Q_CREATE_TIME, VT_I4); }));

  // Get: NULL, wrong VT, unknown id, unknown queue, a remote queue.
  Props ok;
  ok.null(PROPID_Q_QUOTA);
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetQueueProperties(nullptr, ok.queue()));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetQueueProperties(format.c_str(), nullptr));
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQGetQueueProperties(missing.c_str(), ok.queue()));
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME, MQGetQueueProperties(L"nonsense", ok.queue()));
  Props wrong;
  size_t w = wrong.ui1(PROPID_Q_QUOTA, 0);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQGetQueueProperties(format.c_str(), wrong.queue()));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, wrong.status[w]);
  Props str;
  str.wstr(PROPID_Q_LABEL, L"caller's buffer");  // strings come back allocated
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQGetQueueProperties(format.c_str(), str.queue()));
  Props unknown;
  unknown.null(PROPID_M_BODY);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPID, MQGetQueueProperties(format.c_str(), unknown.queue()));
  Props guid;
  guid.add(PROPID_Q_TYPE, VT_CLSID);
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetQueueProperties(format.c_str(), guid.queue()));
  MQQUEUEPROPS broken{5, nullptr, nullptr, nullptr};
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetQueueProperties(format.c_str(), &broken));
  MQQUEUEPROPS huge{0xFFFFFFFF, nullptr, nullptr, nullptr};
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetQueueProperties(format.c_str(), &huge));
  MQQUEUEPROPS none{0, nullptr, nullptr, nullptr};
  EXPECT_HR(MQ_OK, MQGetQueueProperties(format.c_str(), &none));

  // Set: what cannot change, bad values; nothing changes when one property fails.
  Props ro;
  ro.ui4(PROPID_Q_QUOTA, 1);
  size_t t = ro.ui1(PROPID_Q_TRANSACTION, MQ_TRANSACTIONAL);
  EXPECT_HR(MQ_ERROR_PROPERTY_NOTALLOWED, MQSetQueueProperties(format.c_str(), ro.queue()));
  EXPECT_HR(MQ_ERROR_PROPERTY_NOTALLOWED, ro.status[t]);
  Props pn;
  pn.wstr(PROPID_Q_PATHNAME, L".\\private$\\elsewhere");
  EXPECT_HR(MQ_ERROR_PROPERTY_NOTALLOWED, MQSetQueueProperties(format.c_str(), pn.queue()));
  Props ct;
  ct.add(PROPID_Q_CREATE_TIME, VT_I4);
  EXPECT_HR(MQ_ERROR_PROPERTY_NOTALLOWED, MQSetQueueProperties(format.c_str(), ct.queue()));
  Props longlabel;
  std::wstring label(125, L'x');
  longlabel.wstr(PROPID_Q_LABEL, label.c_str());
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
            MQSetQueueProperties(format.c_str(), longlabel.queue()));
  Props nulllabel;
  nulllabel.wstr(PROPID_Q_LABEL, nullptr);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
            MQSetQueueProperties(format.c_str(), nulllabel.queue()));
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQSetQueueProperties(missing.c_str(), ok.queue()));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQSetQueueProperties(format.c_str(), nullptr));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQSetQueueProperties(nullptr, ok.queue()));
  Props g;
  size_t q = g.null(PROPID_Q_QUOTA);
  ASSERT_HR(MQ_OK, MQGetQueueProperties(format.c_str(), g.queue()));
  EXPECT_EQ(g.var(q).ulVal, 0xFFFFFFFFu);  // the failed sets changed nothing
  MQDeleteQueue(format.c_str());
}

// ---- MQPurgeQueue and MQHandleToFormatName -------------------------------------------------

TEST_F(MsmqApi, PurgeQueueEmptiesTheQueue) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  for (int i = 0; i < 3; ++i) ASSERT_HR(MQ_OK, send_body(s, "p" + std::to_string(i)));
  QUEUEHANDLE pk = open_queue(format_, MQ_PEEK_ACCESS);
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, MQPurgeQueue(s));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, MQPurgeQueue(pk));
  EXPECT_EQ(peek_all(r).size(), 3u);
  EXPECT_HR(MQ_OK, MQPurgeQueue(r));
  EXPECT_EQ(peek_all(r).size(), 0u);
  EXPECT_HR(MQ_OK, MQPurgeQueue(r));  // an empty queue too
  ASSERT_HR(MQ_OK, send_body(s, "after"));
  EXPECT_EQ(peek_all(r).size(), 1u);  // the queue still works
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQPurgeQueue(nullptr));
  HANDLE c = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(r, &c));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQPurgeQueue(c));
  MQCloseCursor(c);
  MQCloseQueue(pk);
  MQCloseQueue(s);
  MQCloseQueue(r);
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQPurgeQueue(r));  // closed
}

// A purge right after express sends (nothing read in between) takes them too: this process's
// express messages are committed before the purge.
TEST_F(MsmqApi, PurgeRightAfterExpressSendsTakesThem) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  for (int i = 0; i < 50; ++i) ASSERT_HR(MQ_OK, send_body(s, "x" + std::to_string(i)));
  EXPECT_HR(MQ_OK, MQPurgeQueue(r));
  EXPECT_EQ(peek_all(r).size(), 0u);
  MQCloseQueue(s);
  MQCloseQueue(r);
}

// mqsec does not encrypt bodies: a send asking for encryption fails with nothing stored, instead
// of travelling in clear while the caller believes it encrypted. PRIV_LEVEL_NONE is accepted.
TEST_F(MsmqApi, SendAskingForEncryptionFailsAndStoresNothing) {
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  for (ULONG level : {ULONG{MQMSG_PRIV_LEVEL_BODY_BASE}, ULONG{MQMSG_PRIV_LEVEL_BODY_ENHANCED},
                      ULONG{MQMSG_PRIV_LEVEL_BODY_AES}, ULONG{2}, ULONG{MQMSG_PRIV_LEVEL_NONE}}) {
    std::string body = "secret";
    Props p;
    p.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body.data()), static_cast<ULONG>(body.size()));
    p.ui4(PROPID_M_PRIV_LEVEL, level);
    const HRESULT want = level == MQMSG_PRIV_LEVEL_NONE ? MQ_OK
                         : level == 2                   ? MQ_ERROR_ILLEGAL_PROPERTY_VALUE
                                      : MQ_ERROR_ENCRYPTION_PROVIDER_NOT_SUPPORTED;
    EXPECT_HR(want, MQSendMessage(s, p.msg(), MQ_NO_TRANSACTION)) << "level " << level;
  }
  const std::vector<Got> stored = peek_all(r);
  ASSERT_EQ(stored.size(), 1u) << "only the PRIV_LEVEL_NONE send is stored";
  MQCloseQueue(s);
  MQCloseQueue(r);
}

TEST_F(MsmqApi, HandleToFormatName) {
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  WCHAR buf[256];
  DWORD len = 256;
  ASSERT_HR(MQ_OK, MQHandleToFormatName(r, buf, &len));
  const std::wstring name = buf;
  EXPECT_EQ(len, name.size() + 1);
  EXPECT_EQ(name.rfind(L"DIRECT=OS:", 0), 0u);
  EXPECT_NE(name.find(L"\\private$\\" + queue_), std::wstring::npos);
  // The name opens the same queue.
  QUEUEHANDLE again = nullptr;
  EXPECT_HR(MQ_OK, MQOpenQueue(buf, MQ_SEND_ACCESS, MQ_DENY_NONE, &again));
  MQCloseQueue(again);

  // Short buffers: MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL with the length needed, buffer untouched.
  WCHAR small[8];
  std::wmemset(small, L'#', 8);
  DWORD short_len = 8;
  EXPECT_HR(MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL, MQHandleToFormatName(r, small, &short_len));
  EXPECT_EQ(short_len, name.size() + 1);
  EXPECT_EQ(small[0], L'#');
  DWORD exact = static_cast<DWORD>(name.size());  // one short: no room for the NUL
  std::vector<WCHAR> tight(name.size());
  EXPECT_HR(MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL, MQHandleToFormatName(r, tight.data(), &exact));
  DWORD zero = 0;
  EXPECT_HR(MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL, MQHandleToFormatName(r, nullptr, &zero));
  EXPECT_EQ(zero, name.size() + 1);
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQHandleToFormatName(r, buf, nullptr));
  DWORD l2 = 256;
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQHandleToFormatName(nullptr, buf, &l2));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE,
            MQHandleToFormatName(reinterpret_cast<QUEUEHANDLE>(uintptr_t{77}), buf, &l2));
  MQCloseQueue(r);
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQHandleToFormatName(r, buf, &l2));
}

// ---- MQGetPrivateComputerInformation and MQMgmtGetInfo -------------------------------------

struct MgmtProps {
  std::vector<PROPID> ids;
  std::vector<MQPROPVARIANT> vars;
  std::vector<HRESULT> status;
  MQMGMTPROPS mgmt{};
  MQPRIVATEPROPS priv{};
  size_t add(PROPID id, VARTYPE vt = VT_NULL) {
    MQPROPVARIANT v;
    std::memset(&v, 0, sizeof v);
    v.vt = vt;
    ids.push_back(id);
    vars.push_back(v);
    return ids.size() - 1;
  }
  MQMGMTPROPS* m() {
    status.assign(ids.size(), MQ_OK);
    mgmt = {static_cast<DWORD>(ids.size()), ids.data(), vars.data(), status.data()};
    return &mgmt;
  }
  MQPRIVATEPROPS* p() {
    status.assign(ids.size(), MQ_OK);
    priv = {static_cast<DWORD>(ids.size()), ids.data(), vars.data(), status.data()};
    return &priv;
  }
  MQQMPROPS qm_props{};
  MQQMPROPS* qm() {
    status.assign(ids.size(), MQ_OK);
    qm_props = {static_cast<DWORD>(ids.size()), ids.data(), vars.data(), status.data()};
    return &qm_props;
  }
};

std::vector<std::wstring> take_strings(MQPROPVARIANT& v) {
  std::vector<std::wstring> out;
  for (ULONG i = 0; i < v.calpwstr.cElems; ++i) {
    out.emplace_back(v.calpwstr.pElems[i]);
    MQFreeMemory(v.calpwstr.pElems[i]);
  }
  MQFreeMemory(v.calpwstr.pElems);
  return out;
}

TEST(ComputerInformation, VersionAndNoDirectory) {
  MgmtProps p;
  size_t ver = p.add(PROPID_PC_VERSION);
  size_t ds = p.add(PROPID_PC_DS_ENABLED);
  ASSERT_HR(MQ_OK, MQGetPrivateComputerInformation(nullptr, p.p()));
  EXPECT_EQ(p.vars[ver].vt, VT_UI4);
  EXPECT_GE(p.vars[ver].ulVal >> 24, 3u);  // MSMQ 3.0's API (lookup ids)
  EXPECT_EQ(p.vars[ds].vt, VT_BOOL);
  EXPECT_EQ(p.vars[ds].boolVal, 0);  // workgroup: no Active Directory

  MgmtProps typed;
  typed.add(PROPID_PC_VERSION, VT_UI4);
  typed.add(PROPID_PC_DS_ENABLED, VT_BOOL);
  EXPECT_HR(MQ_OK, MQGetPrivateComputerInformation(nullptr, typed.p()));

  // Bad input.
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetPrivateComputerInformation(nullptr, nullptr));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetPrivateComputerInformation(L"otherhost", p.p()));
  MgmtProps wrong;
  size_t w = wrong.add(PROPID_PC_VERSION, VT_UI1);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQGetPrivateComputerInformation(nullptr, wrong.p()));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, wrong.status[w]);
  MgmtProps unknown;
  unknown.add(PROPID_PC_BASE + 9);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPID, MQGetPrivateComputerInformation(nullptr, unknown.p()));
  MQPRIVATEPROPS broken{2, nullptr, nullptr, nullptr};
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetPrivateComputerInformation(nullptr, &broken));
}

TEST(Management, MachineListsPrivateQueues) {
  const std::wstring name = unique_queue(L"mgmt-machine");
  const std::wstring format = create_queue(name);
  QUEUEHANDLE s = open_queue(format, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "counted"));
  MQCloseQueue(s);
  MgmtProps p;
  size_t pq = p.add(PROPID_MGMT_MSMQ_PRIVATEQ);
  size_t aq = p.add(PROPID_MGMT_MSMQ_ACTIVEQUEUES);
  size_t cn = p.add(PROPID_MGMT_MSMQ_CONNECTED);
  size_t by = p.add(PROPID_MGMT_MSMQ_BYTES_IN_ALL_QUEUES);
  size_t ds = p.add(PROPID_MGMT_MSMQ_DSSERVER);
  EXPECT_HR(MQ_INFORMATION_PROPERTY, MQMgmtGetInfo(nullptr, MO_MACHINE_TOKEN, p.m()));
  EXPECT_HR(MQ_INFORMATION_UNSUPPORTED_PROPERTY, p.status[ds]);
  ASSERT_EQ(p.vars[pq].vt, VT_LPWSTR | VT_VECTOR);
  bool listed = false;
  const std::wstring suffix = L"\\private$\\" + name;
  for (const std::wstring& path : take_strings(p.vars[pq])) {
    if (path.size() > suffix.size() &&
        path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
      listed = true;
    }
  }
  EXPECT_TRUE(listed);
  ASSERT_EQ(p.vars[aq].vt, VT_LPWSTR | VT_VECTOR);
  bool active = false;
  for (const std::wstring& f : take_strings(p.vars[aq])) {
    if (f.find(L"\\private$\\" + name) != std::wstring::npos) active = true;
  }
  EXPECT_TRUE(active);
  ASSERT_EQ(p.vars[cn].vt, VT_LPWSTR);
  EXPECT_EQ(std::wstring(p.vars[cn].pwszVal), MSMQ_CONNECTED);
  MQFreeMemory(p.vars[cn].pwszVal);
  EXPECT_EQ(p.vars[by].vt, VT_UI8);
  EXPECT_GT(p.vars[by].uhVal.QuadPart, 0u);
  MQDeleteQueue(format.c_str());
}

TEST(Management, QueueMessageCountAndBadInput) {
  const std::wstring name = unique_queue(L"mgmt-queue");
  const std::wstring format = create_queue(name);
  QUEUEHANDLE s = open_queue(format, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "one"));
  ASSERT_HR(MQ_OK, send_body(s, "two"));
  const std::wstring object = L"QUEUE=" + format;
  MgmtProps p;
  size_t mc = p.add(PROPID_MGMT_QUEUE_MESSAGE_COUNT);
  size_t bq = p.add(PROPID_MGMT_QUEUE_BYTES_IN_QUEUE);
  size_t fn = p.add(PROPID_MGMT_QUEUE_FORMATNAME);
  size_t ty = p.add(PROPID_MGMT_QUEUE_TYPE);
  size_t lo = p.add(PROPID_MGMT_QUEUE_LOCATION);
  size_t xa = p.add(PROPID_MGMT_QUEUE_XACT);
  size_t jm = p.add(PROPID_MGMT_QUEUE_JOURNAL_MESSAGE_COUNT);
  ASSERT_HR(MQ_OK, MQMgmtGetInfo(nullptr, object.c_str(), p.m()));
  EXPECT_EQ(p.vars[mc].vt, VT_UI4);
  EXPECT_EQ(p.vars[mc].ulVal, 2u);
  EXPECT_GT(p.vars[bq].ulVal, 6u);
  EXPECT_NE(std::wstring(p.vars[fn].pwszVal).find(name), std::wstring::npos);
  EXPECT_EQ(std::wstring(p.vars[ty].pwszVal), MGMT_QUEUE_TYPE_PRIVATE);
  EXPECT_EQ(std::wstring(p.vars[lo].pwszVal), MGMT_QUEUE_LOCAL_LOCATION);
  EXPECT_EQ(std::wstring(p.vars[xa].pwszVal), MGMT_QUEUE_NOT_TRANSACTIONAL_TYPE);
  EXPECT_EQ(p.vars[jm].ulVal, 0u);
  for (size_t i : {fn, ty, lo, xa}) MQFreeMemory(p.vars[i].pwszVal);

  // The count follows receives and purges.
  QUEUEHANDLE r = open_queue(format, MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK,
            MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, nullptr, nullptr, nullptr, nullptr, nullptr));
  MgmtProps c;
  size_t n = c.add(PROPID_MGMT_QUEUE_MESSAGE_COUNT);
  ASSERT_HR(MQ_OK, MQMgmtGetInfo(nullptr, object.c_str(), c.m()));
  EXPECT_EQ(c.vars[n].ulVal, 1u);
  ASSERT_HR(MQ_OK, MQPurgeQueue(r));
  MgmtProps c2;
  size_t n2 = c2.add(PROPID_MGMT_QUEUE_MESSAGE_COUNT);
  ASSERT_HR(MQ_OK, MQMgmtGetInfo(L".", object.c_str(), c2.m()));
  EXPECT_EQ(c2.vars[n2].ulVal, 0u);

  // Bad input.
  MgmtProps ok;
  ok.add(PROPID_MGMT_QUEUE_MESSAGE_COUNT);
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtGetInfo(nullptr, nullptr, ok.m()));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtGetInfo(nullptr, object.c_str(), nullptr));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtGetInfo(nullptr, L"PRINTER", ok.m()));
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME, MQMgmtGetInfo(nullptr, L"QUEUE=garbage", ok.m()));
  const std::wstring missing = L"QUEUE=" + format_of(unique_queue(L"mgmt-missing"));
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQMgmtGetInfo(nullptr, missing.c_str(), ok.m()));
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_OPERATION, MQMgmtGetInfo(L"elsewhere", object.c_str(), ok.m()));
  // This machine by any name a path name may use for it, as everywhere else.
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  for (const std::string& computer :
       {std::string("localhost"), std::string(host), std::string(host) + ".example.org"}) {
    const std::wstring w(computer.begin(), computer.end());
    MgmtProps again;
    again.add(PROPID_MGMT_QUEUE_MESSAGE_COUNT);
    EXPECT_HR(MQ_OK, MQMgmtGetInfo(w.c_str(), object.c_str(), again.m())) << computer;
  }
  MgmtProps typed;
  size_t t = typed.add(PROPID_MGMT_QUEUE_MESSAGE_COUNT, VT_UI4);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQMgmtGetInfo(nullptr, object.c_str(), typed.m()));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, typed.status[t]);
  MgmtProps unknown;
  unknown.add(99);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPID, MQMgmtGetInfo(nullptr, object.c_str(), unknown.m()));
  MgmtProps machine_only;
  machine_only.add(PROPID_MGMT_MSMQ_BYTES_IN_ALL_QUEUES);  // 6 is FOREIGN for a queue: a string
  ASSERT_HR(MQ_OK, MQMgmtGetInfo(nullptr, object.c_str(), machine_only.m()));
  EXPECT_EQ(machine_only.vars[0].vt, VT_LPWSTR);
  MQFreeMemory(machine_only.vars[0].pwszVal);
  MQMGMTPROPS broken{1, nullptr, nullptr, nullptr};
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtGetInfo(nullptr, object.c_str(), &broken));
  MQCloseQueue(r);
  MQCloseQueue(s);
  MQDeleteQueue(format.c_str());
}

// ---- MQGetMachineProperties ------------------------------------------------------------------

TEST_F(MsmqApi, MachinePropertiesOfThisMachine) {
  MgmtProps m;
  size_t path = m.add(PROPID_QM_PATHNAME);
  size_t dns = m.add(PROPID_QM_PATHNAME_DNS);
  size_t id = m.add(PROPID_QM_MACHINE_ID);
  size_t site = m.add(PROPID_QM_SITE_ID);
  size_t pk = m.add(PROPID_QM_ENCRYPTION_PK);
  ASSERT_HR(MQ_INFORMATION_PROPERTY, MQGetMachineProperties(nullptr, nullptr, m.qm()));
  ASSERT_EQ(m.vars[path].vt, VT_LPWSTR);
  const std::wstring name = m.vars[path].pwszVal;
  EXPECT_FALSE(name.empty());
  ASSERT_EQ(m.vars[dns].vt, VT_LPWSTR);
  EXPECT_EQ(std::wstring(m.vars[dns].pwszVal), name);
  ASSERT_EQ(m.vars[id].vt, VT_CLSID);
  const GUID machine = *m.vars[id].puuid;
  EXPECT_HR(MQ_OK, m.status[path]);
  EXPECT_HR(MQ_INFORMATION_UNSUPPORTED_PROPERTY, m.status[site]);  // no directory: no sites
  EXPECT_HR(MQ_INFORMATION_UNSUPPORTED_PROPERTY, m.status[pk]);    // no encryption
  MQFreeMemory(m.vars[path].pwszVal);
  MQFreeMemory(m.vars[dns].pwszVal);
  MQFreeMemory(m.vars[id].puuid);

  // The same machine by its name (any case), ".", and by its GUID (into the caller's buffer).
  std::wstring upper = name;
  for (auto& c : upper) c = static_cast<wchar_t>(std::towupper(c));
  for (const std::wstring& n : {name, upper, std::wstring(L".")}) {
    MgmtProps again;
    size_t i = again.add(PROPID_QM_MACHINE_ID);
    ASSERT_HR(MQ_OK, MQGetMachineProperties(n.c_str(), nullptr, again.qm()));
    EXPECT_EQ(std::memcmp(again.vars[i].puuid, &machine, sizeof machine), 0);
    MQFreeMemory(again.vars[i].puuid);
  }
  GUID out{};
  MgmtProps by_guid;
  by_guid.add(PROPID_QM_MACHINE_ID, VT_CLSID);
  by_guid.vars[0].puuid = &out;
  ASSERT_HR(MQ_OK, MQGetMachineProperties(nullptr, &machine, by_guid.qm()));
  EXPECT_EQ(std::memcmp(&out, &machine, sizeof machine), 0);

  // It is the GUID a message sent from this machine carries (PROPID_M_SRC_MACHINE_ID).
  QUEUEHANDLE s = open_queue(format_, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send_body(s, "from here"));
  QUEUEHANDLE r = open_queue(format_, MQ_RECEIVE_ACCESS);
  GUID src{};
  Props p;
  size_t src_i =
      p.add(PROPID_M_SRC_MACHINE_ID, VT_CLSID, [&](MQPROPVARIANT& v) { v.puuid = &src; });
  ASSERT_HR(MQ_OK,
            MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, p.msg(), nullptr, nullptr, nullptr, nullptr));
  EXPECT_EQ(p.var(src_i).vt, VT_CLSID);
  EXPECT_EQ(std::memcmp(&src, &machine, sizeof machine), 0);
  MQCloseQueue(r);
  MQCloseQueue(s);
}

TEST(MachineProperties, BadInput) {
  MgmtProps ok;
  ok.add(PROPID_QM_PATHNAME);
  // Other machines are not known without a directory service.
  EXPECT_HR(MQ_ERROR_MACHINE_NOT_FOUND, MQGetMachineProperties(L"elsewhere", nullptr, ok.qm()));
  GUID other{0x12345678, 0x1234, 0x5678, {1, 2, 3, 4, 5, 6, 7, 8}};
  EXPECT_HR(MQ_ERROR_MACHINE_NOT_FOUND, MQGetMachineProperties(nullptr, &other, ok.qm()));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetMachineProperties(L".", &other, ok.qm()));
  EXPECT_EQ(ok.vars[0].vt, VT_NULL);  // nothing allocated by a failed call
  // The property array.
  EXPECT_HR(MQ_ERROR_ILLEGAL_MQQMPROPS, MQGetMachineProperties(nullptr, nullptr, nullptr));
  MQQMPROPS empty{0, nullptr, nullptr, nullptr};
  EXPECT_HR(MQ_ERROR_ILLEGAL_MQQMPROPS, MQGetMachineProperties(nullptr, nullptr, &empty));
  MQQMPROPS broken{2, nullptr, nullptr, nullptr};
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQGetMachineProperties(nullptr, nullptr, &broken));
  MgmtProps wrong_vt;
  wrong_vt.add(PROPID_QM_PATHNAME);
  size_t w = wrong_vt.add(PROPID_QM_PATHNAME_DNS, VT_UI4);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQGetMachineProperties(nullptr, nullptr, wrong_vt.qm()));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, wrong_vt.status[w]);
  EXPECT_EQ(wrong_vt.vars[0].vt, VT_NULL);
  MgmtProps clsid_without_buffer;
  clsid_without_buffer.add(PROPID_QM_MACHINE_ID, VT_CLSID);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT,
            MQGetMachineProperties(nullptr, nullptr, clsid_without_buffer.qm()));
  MgmtProps queue_prop;
  size_t q = queue_prop.add(PROPID_Q_LABEL);
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPID, MQGetMachineProperties(nullptr, nullptr, queue_prop.qm()));
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPID, queue_prop.status[q]);
}

// ---- MQMgmtAction --------------------------------------------------------------------------

TEST_F(MsmqApi, MgmtActions) {
  // Machine: CONNECT and TIDY change nothing here (always connected, nothing to tidy);
  // DISCONNECT is not supported. Actions are not case-sensitive.
  EXPECT_HR(MQ_OK, MQMgmtAction(nullptr, MO_MACHINE_TOKEN, MACHINE_ACTION_CONNECT));
  EXPECT_HR(MQ_OK, MQMgmtAction(L".", L"machine", L"tidy"));
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_OPERATION,
            MQMgmtAction(nullptr, MO_MACHINE_TOKEN, MACHINE_ACTION_DISCONNECT));
  MgmtProps connected;
  connected.add(PROPID_MGMT_MSMQ_CONNECTED);
  ASSERT_HR(MQ_OK, MQMgmtGetInfo(nullptr, MO_MACHINE_TOKEN, connected.m()));
  EXPECT_EQ(std::wstring(connected.vars[0].pwszVal), L"CONNECTED");
  MQFreeMemory(connected.vars[0].pwszVal);

  // Queue actions are for outgoing queues: a queue of this machine is not one.
  const std::wstring object = L"QUEUE=" + format_;
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtAction(nullptr, object.c_str(), QUEUE_ACTION_PAUSE));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtAction(nullptr, object.c_str(), QUEUE_ACTION_RESUME));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER,
            MQMgmtAction(nullptr, object.c_str(), QUEUE_ACTION_EOD_RESEND));
  // An outgoing queue (a queue of another machine): pausing its forwarding is not supported.
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_OPERATION,
            MQMgmtAction(nullptr, L"QUEUE=DIRECT=OS:elsewhere\\private$\\q", QUEUE_ACTION_PAUSE));

  // Bad input.
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtAction(nullptr, nullptr, MACHINE_ACTION_TIDY));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtAction(nullptr, MO_MACHINE_TOKEN, nullptr));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtAction(nullptr, MO_MACHINE_TOKEN, L"SHUTDOWN"));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER,
            MQMgmtAction(nullptr, MO_MACHINE_TOKEN, QUEUE_ACTION_PAUSE));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER,
            MQMgmtAction(nullptr, object.c_str(), MACHINE_ACTION_CONNECT));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQMgmtAction(nullptr, L"PRINTER", MACHINE_ACTION_TIDY));
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQMgmtAction(nullptr, L"QUEUE=garbage", QUEUE_ACTION_PAUSE));
  const std::wstring missing = L"QUEUE=" + format_of(unique_queue(L"action-missing"));
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQMgmtAction(nullptr, missing.c_str(), QUEUE_ACTION_PAUSE));
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_OPERATION,
            MQMgmtAction(L"elsewhere", MO_MACHINE_TOKEN, MACHINE_ACTION_TIDY));
}

}  // namespace
