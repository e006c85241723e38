// Directory queries and the directory's format names (issue 13) through libmqrt:
// MQLocateBegin/Next/End over this machine's queues (restrictions with every PR* relation,
// columns, sort sets, paging with a small cProps), PROPID_Q_INSTANCE, MQInstanceToFormatName and
// PUBLIC=<guid> format names, MQADsPathToFormatName without Active Directory; each with its bad
// input (NULL, wrong VT, unknown properties and relations, short buffers, unknown handles).
//
// Runs on a throwaway SoftHSM token and store (tests/support/softhsm_env).
#include <mq.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cwchar>
#include <cwctype>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/hresult_text.hpp"
#include "tests/support/msmq_props.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"
#include "tests/support/unreachable_broker.hpp"

namespace {

using mqsec::testing::Props;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

std::wstring unique_name(const std::wstring& stem) {
  static int n = 0;
  return stem + L"-" + std::to_wstring(getpid()) + L"-" + std::to_wstring(++n);
}

// A GUID of this test run, so that a query sees only the queues this test made.
GUID run_type(unsigned char tag) {
  GUID g{};
  g.Data1 = static_cast<unsigned>(getpid());
  g.Data2 = 0x1ca7;
  g.Data3 = tag;
  for (int i = 0; i < 8; ++i) g.Data4[i] = static_cast<unsigned char>(0xa0 + i);
  return g;
}

// Creates .\private$\<name> with a label, a type, a quota; returns its direct format name.
std::wstring create_queue(const std::wstring& name, const std::wstring& label, GUID* type,
                          ULONG quota = INFINITE) {
  const std::wstring path = L".\\private$\\" + name;
  Props p;
  p.wstr(PROPID_Q_PATHNAME, path.c_str());
  p.wstr(PROPID_Q_LABEL, label.c_str());
  p.add(PROPID_Q_TYPE, VT_CLSID, [type](MQPROPVARIANT& v) { v.puuid = type; });
  p.ui4(PROPID_Q_QUOTA, quota);
  WCHAR buf[256];
  DWORD len = 256;
  EXPECT_HR(MQ_OK, MQCreateQueue(nullptr, p.queue(), buf, &len));
  return L"DIRECT=OS:.\\private$\\" + name;
}

MQPROPERTYRESTRICTION type_is(GUID* type) {
  MQPROPERTYRESTRICTION r{};
  r.rel = PREQ;
  r.prop = PROPID_Q_TYPE;
  r.prval.vt = VT_CLSID;
  r.prval.puuid = type;
  return r;
}

// Runs a whole query with the label as its one column, `page_rows` queues per MQLocateNext, and
// returns the labels in the order the query gave them.
std::vector<std::wstring> labels_of(MQRESTRICTION* res, MQSORTSET* sort, DWORD page_rows = 1) {
  PROPID cols[] = {PROPID_Q_LABEL};
  MQCOLUMNSET cs{1, cols};
  HANDLE h = nullptr;
  std::vector<std::wstring> out;
  EXPECT_HR(MQ_OK, MQLocateBegin(nullptr, res, &cs, sort, &h));
  if (h == nullptr) return out;
  for (;;) {
    std::vector<MQPROPVARIANT> v(page_rows);
    DWORD n = page_rows;
    EXPECT_HR(MQ_OK, MQLocateNext(h, &n, v.data()));
    EXPECT_LE(n, page_rows);
    if (n == 0) break;
    for (DWORD i = 0; i < n; ++i) {
      EXPECT_EQ(v[i].vt, VT_LPWSTR);
      if (v[i].vt != VT_LPWSTR) continue;
      out.emplace_back(v[i].pwszVal);
      MQFreeMemory(v[i].pwszVal);
    }
  }
  EXPECT_HR(MQ_OK, MQLocateEnd(h));
  return out;
}

TEST(Locate, RestrictionsWithEveryRelation) {
  GUID type = run_type(1);
  const std::wstring stem = unique_name(L"loc-rel");
  create_queue(stem + L"-a", L"alpha", &type, 10);
  create_queue(stem + L"-b", L"beta", &type, 20);
  create_queue(stem + L"-c", L"gamma", &type, 30);
  GUID other = run_type(2);
  create_queue(stem + L"-d", L"alpha", &other, 20);  // another type: never in these results

  // The type alone: the three queues, by queue name (no sort set).
  MQPROPERTYRESTRICTION r[2] = {type_is(&type), {}};
  MQRESTRICTION res{1, r};
  EXPECT_EQ(labels_of(&res, nullptr), (std::vector<std::wstring>{L"alpha", L"beta", L"gamma"}));

  // Quota against 20 with each relation (ANDed with the type).
  r[1].prop = PROPID_Q_QUOTA;
  r[1].prval.vt = VT_UI4;
  r[1].prval.ulVal = 20;
  res.cRes = 2;
  const struct {
    ULONG rel;
    std::vector<std::wstring> want;
  } cases[] = {
      {PRLT, {L"alpha"}},          {PRLE, {L"alpha", L"beta"}}, {PRGT, {L"gamma"}},
      {PRGE, {L"beta", L"gamma"}}, {PREQ, {L"beta"}},           {PRNE, {L"alpha", L"gamma"}},
  };
  for (const auto& c : cases) {
    r[1].rel = c.rel;
    EXPECT_EQ(labels_of(&res, nullptr), c.want) << "relation " << c.rel;
  }

  // A label (a string) and a path name.
  r[1].rel = PREQ;
  r[1].prop = PROPID_Q_LABEL;
  r[1].prval.vt = VT_LPWSTR;
  r[1].prval.pwszVal = const_cast<LPWSTR>(L"beta");
  EXPECT_EQ(labels_of(&res, nullptr), (std::vector<std::wstring>{L"beta"}));
  r[1].rel = PRNE;
  EXPECT_EQ(labels_of(&res, nullptr), (std::vector<std::wstring>{L"alpha", L"gamma"}));

  // Creation time: every queue was made at or before now, none after.
  r[1].prop = PROPID_Q_CREATE_TIME;
  r[1].prval.vt = VT_I4;
  r[1].prval.lVal = static_cast<LONG>(time(nullptr)) + 5;
  r[1].rel = PRLT;
  EXPECT_EQ(labels_of(&res, nullptr).size(), 3u);
  r[1].rel = PRGT;
  EXPECT_TRUE(labels_of(&res, nullptr).empty());
}

TEST(Locate, SortSetAndPaging) {
  GUID type = run_type(3);
  const std::wstring stem = unique_name(L"loc-sort");
  // Names in one order, labels and quotas in others.
  create_queue(stem + L"-1", L"m", &type, 300);
  create_queue(stem + L"-2", L"z", &type, 100);
  create_queue(stem + L"-3", L"a", &type, 200);
  create_queue(stem + L"-4", L"q", &type, 100);
  MQPROPERTYRESTRICTION r = type_is(&type);
  MQRESTRICTION res{1, &r};

  MQSORTKEY by_label{PROPID_Q_LABEL, QUERY_SORTASCEND};
  MQSORTSET s{1, &by_label};
  EXPECT_EQ(labels_of(&res, &s), (std::vector<std::wstring>{L"a", L"m", L"q", L"z"}));
  by_label.dwOrder = QUERY_SORTDESCEND;
  EXPECT_EQ(labels_of(&res, &s), (std::vector<std::wstring>{L"z", L"q", L"m", L"a"}));
  // Two keys: quota ascending, then label descending for the two of quota 100.
  MQSORTKEY two[2] = {{PROPID_Q_QUOTA, QUERY_SORTASCEND}, {PROPID_Q_LABEL, QUERY_SORTDESCEND}};
  MQSORTSET s2{2, two};
  EXPECT_EQ(labels_of(&res, &s2), (std::vector<std::wstring>{L"z", L"q", L"a", L"m"}));
  // Pages of 3 rows (the last one short), and of more rows than there are.
  EXPECT_EQ(labels_of(&res, &s2, 3), (std::vector<std::wstring>{L"z", L"q", L"a", L"m"}));
  EXPECT_EQ(labels_of(&res, &s2, 16), (std::vector<std::wstring>{L"z", L"q", L"a", L"m"}));
}

TEST(Locate, ColumnsAreWholeRowsAndPagesAreMultiplesOfThem) {
  GUID type = run_type(4);
  const std::wstring stem = unique_name(L"loc-cols");
  create_queue(stem + L"-1", L"one", &type, 11);
  create_queue(stem + L"-2", L"two", &type, 22);
  MQPROPERTYRESTRICTION r = type_is(&type);
  MQRESTRICTION res{1, &r};
  PROPID cols[] = {PROPID_Q_PATHNAME, PROPID_Q_QUOTA, PROPID_Q_INSTANCE, PROPID_Q_TYPE,
                   PROPID_Q_ADS_PATH};
  MQCOLUMNSET cs{5, cols};
  HANDLE h = nullptr;
  ASSERT_HR(MQ_OK, MQLocateBegin(nullptr, &res, &cs, nullptr, &h));
  // 9 variants hold one row of 5 (a multiple of the columns is taken, the rest left alone).
  MQPROPVARIANT v[9];
  for (auto& x : v) x.vt = VT_UI8;
  DWORD n = 9;
  ASSERT_HR(MQ_OK, MQLocateNext(h, &n, v));
  ASSERT_EQ(n, 5u);
  EXPECT_EQ(v[0].vt, VT_LPWSTR);
  const std::wstring path = v[0].pwszVal;
  EXPECT_NE(path.find(L"\\private$\\" + stem + L"-1"), std::wstring::npos) << path.size();
  EXPECT_EQ(v[1].vt, VT_UI4);
  EXPECT_EQ(v[1].ulVal, 11u);
  ASSERT_EQ(v[2].vt, VT_CLSID);
  GUID first_instance = *v[2].puuid;
  ASSERT_EQ(v[3].vt, VT_CLSID);
  EXPECT_EQ(std::memcmp(v[3].puuid, &type, sizeof type), 0);
  EXPECT_EQ(v[4].vt, VT_EMPTY);  // no Active Directory path
  EXPECT_EQ(v[5].vt, VT_UI8);    // untouched
  MQFreeMemory(v[0].pwszVal);
  MQFreeMemory(v[2].puuid);
  MQFreeMemory(v[3].puuid);
  // Fewer variants than columns: MSMQ's "result buffer too small", nothing consumed.
  n = 4;
  EXPECT_HR(MQ_ERROR_RESULT_BUFFER_TOO_SMALL, MQLocateNext(h, &n, v));
  n = 5;
  ASSERT_HR(MQ_OK, MQLocateNext(h, &n, v));
  ASSERT_EQ(n, 5u);
  EXPECT_EQ(v[1].ulVal, 22u);
  ASSERT_EQ(v[2].vt, VT_CLSID);
  EXPECT_NE(std::memcmp(v[2].puuid, &first_instance, sizeof(GUID)), 0);  // distinct queues
  MQFreeMemory(v[0].pwszVal);
  MQFreeMemory(v[2].puuid);
  MQFreeMemory(v[3].puuid);
  n = 5;
  ASSERT_HR(MQ_OK, MQLocateNext(h, &n, v));
  EXPECT_EQ(n, 0u);  // the end, and it stays there
  n = 5;
  ASSERT_HR(MQ_OK, MQLocateNext(h, &n, v));
  EXPECT_EQ(n, 0u);
  EXPECT_HR(MQ_OK, MQLocateEnd(h));
  // Ended: the handle is gone.
  n = 5;
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQLocateNext(h, &n, v));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQLocateEnd(h));
}

TEST(Locate, InstanceIsStableAndNamesTheQueue) {
  GUID type = run_type(5);
  const std::wstring name = unique_name(L"loc-inst");
  const std::wstring format = create_queue(name, L"inst", &type);
  // PROPID_Q_INSTANCE from MQGetQueueProperties, twice: the same GUID.
  GUID g1{}, g2{};
  for (GUID* g : {&g1, &g2}) {
    Props p;
    p.add(PROPID_Q_INSTANCE, VT_CLSID, [g](MQPROPVARIANT& v) { v.puuid = g; });
    ASSERT_HR(MQ_OK, MQGetQueueProperties(format.c_str(), p.queue()));
  }
  EXPECT_EQ(std::memcmp(&g1, &g2, sizeof g1), 0);
  EXPECT_NE(std::memcmp(&g1, &type, sizeof g1), 0);

  // A query on the instance finds this queue alone.
  MQPROPERTYRESTRICTION r{PREQ, PROPID_Q_INSTANCE, {}};
  r.prval.vt = VT_CLSID;
  r.prval.puuid = &g1;
  MQRESTRICTION res{1, &r};
  EXPECT_EQ(labels_of(&res, nullptr), (std::vector<std::wstring>{L"inst"}));

  // MQInstanceToFormatName: PUBLIC=<guid>; short buffers say how much is needed.
  DWORD len = 0;
  EXPECT_HR(MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL, MQInstanceToFormatName(&g1, nullptr, &len));
  EXPECT_EQ(len, 7u + 36u + 1u);
  WCHAR small[10];
  len = 10;
  EXPECT_HR(MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL, MQInstanceToFormatName(&g1, small, &len));
  EXPECT_EQ(len, 44u);
  WCHAR buf[64];
  len = 64;
  ASSERT_HR(MQ_OK, MQInstanceToFormatName(&g1, buf, &len));
  EXPECT_EQ(len, 44u);
  const std::wstring pub = buf;
  ASSERT_EQ(pub.rfind(L"PUBLIC=", 0), 0u) << pub.size();

  // The PUBLIC= name opens, sends to and reads the same queue.
  QUEUEHANDLE hs = nullptr;
  ASSERT_HR(MQ_OK, MQOpenQueue(pub.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &hs));
  char body[] = "by instance";
  Props m;
  m.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body), sizeof body);
  EXPECT_HR(MQ_OK, MQSendMessage(hs, m.msg(), MQ_NO_TRANSACTION));
  MQCloseQueue(hs);
  QUEUEHANDLE hr = nullptr;
  ASSERT_HR(MQ_OK, MQOpenQueue(format.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &hr));
  UCHAR got[64];
  Props rp;
  rp.bytes(PROPID_M_BODY, got, sizeof got);
  EXPECT_HR(MQ_OK, MQReceiveMessage(hr, 5000, MQ_ACTION_RECEIVE, rp.msg(), nullptr, nullptr,
                                    nullptr, nullptr));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(got), rp.var(0).caub.cElems),
            std::string(body, sizeof body));
  MQCloseQueue(hr);
  // Upper case and braces name it too; properties through it are the queue's.
  std::wstring upper = L"PUBLIC={" + pub.substr(7) + L"}";
  for (auto& c : upper) c = static_cast<wchar_t>(std::towupper(c));
  Props lp;
  lp.null(PROPID_Q_LABEL);
  ASSERT_HR(MQ_OK, MQGetQueueProperties(upper.c_str(), lp.queue()));
  EXPECT_EQ(std::wstring(lp.var(0).pwszVal), L"inst");
  MQFreeMemory(lp.var(0).pwszVal);

  // Deleted through PUBLIC=: afterwards neither the GUID nor the name is found.
  EXPECT_HR(MQ_OK, MQDeleteQueue(pub.c_str()));
  len = 64;
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQInstanceToFormatName(&g1, buf, &len));
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQOpenQueue(pub.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &hs));
  // A queue of the same name made again is another instance.
  const std::wstring again = create_queue(name, L"inst", &type);
  Props p;
  GUID g3{};
  p.add(PROPID_Q_INSTANCE, VT_CLSID, [&g3](MQPROPVARIANT& v) { v.puuid = &g3; });
  ASSERT_HR(MQ_OK, MQGetQueueProperties(again.c_str(), p.queue()));
  EXPECT_NE(std::memcmp(&g1, &g3, sizeof g1), 0);
  EXPECT_HR(MQ_OK, MQDeleteQueue(again.c_str()));
}

// Every queue a query without a restriction finds: its path name and instance.
std::vector<std::pair<std::wstring, GUID>> all_queues() {
  PROPID cols[] = {PROPID_Q_PATHNAME, PROPID_Q_INSTANCE};
  MQCOLUMNSET cs{2, cols};
  HANDLE h = nullptr;
  std::vector<std::pair<std::wstring, GUID>> out;
  EXPECT_HR(MQ_OK, MQLocateBegin(nullptr, nullptr, &cs, nullptr, &h));
  if (h == nullptr) return out;
  for (;;) {
    MQPROPVARIANT v[2];
    DWORD n = 2;
    EXPECT_HR(MQ_OK, MQLocateNext(h, &n, v));
    if (n == 0) break;
    EXPECT_EQ(n, 2u);
    if (n != 2 || v[0].vt != VT_LPWSTR || v[1].vt != VT_CLSID) break;
    out.emplace_back(v[0].pwszVal, *v[1].puuid);
    MQFreeMemory(v[0].pwszVal);
    MQFreeMemory(v[1].puuid);
  }
  EXPECT_HR(MQ_OK, MQLocateEnd(h));
  return out;
}

// Only application queues are in the directory: not the outgoing queue a send to another
// machine's queue makes (its store name "direct=os:<machine>\private$\<queue>"), not a journal
// or a dead-letter queue, not a subqueue; and PUBLIC= names none of them either.
TEST(Locate, OnlyApplicationQueuesAreFoundOrHaveAPublicName) {
  GUID type = run_type(8);
  const std::wstring name = unique_name(L"loc-app");
  const std::wstring format = create_queue(name, L"app", &type);
  // A journal, a dead-letter queue and a subqueue exist once opened.
  const std::wstring journal = format + L";JOURNAL";
  const std::wstring dead = L"DIRECT=OS:.\\SYSTEM$;DEADLETTER";
  QUEUEHANDLE h[3] = {};
  ASSERT_HR(MQ_OK, MQOpenQueue(journal.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h[0]));
  ASSERT_HR(MQ_OK, MQOpenQueue(dead.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h[1]));
  const std::wstring sub = format + L";retry";
  ASSERT_HR(MQ_OK, MQOpenQueue(sub.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &h[2]));
  for (QUEUEHANDLE q : h) MQCloseQueue(q);
  // An outgoing queue: a message for another machine's queue waits in it (no broker here).
  const std::wstring remote = L"DIRECT=OS:lochost\\private$\\" + name;
  const mqsec::testing::UnreachableBroker broker;
  QUEUEHANDLE s = nullptr;
  ASSERT_HR(MQ_OK, MQOpenQueue(remote.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &s));
  char body[] = "outgoing";
  Props m;
  m.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body), sizeof body);
  ASSERT_HR(MQ_OK, MQSendMessage(s, m.msg(), MQ_NO_TRANSACTION));
  MQCloseQueue(s);

  size_t found = 0;
  for (auto& [path, instance] : all_queues()) {
    std::wstring lower = path;
    for (auto& c : lower) c = static_cast<wchar_t>(std::towlower(c));
    if (lower.ends_with(L"\\private$\\" + name)) ++found;
    EXPECT_EQ(lower.find(L"direct=os:"), std::wstring::npos) << "an outgoing queue is listed";
    EXPECT_EQ(lower.find(L"journal"), std::wstring::npos) << "a journal is listed";
    EXPECT_EQ(lower.find(L"system$"), std::wstring::npos) << "a dead-letter queue is listed";
    EXPECT_EQ(lower.find(L';'), std::wstring::npos) << "a subqueue is listed";
    // Each instance the directory gives names its queue.
    WCHAR buf[64];
    DWORD len = 64;
    EXPECT_HR(MQ_OK, MQInstanceToFormatName(&instance, buf, &len));
  }
  EXPECT_EQ(found, 1u);

  // The journal and the dead-letter queue have no queue properties (MQGetQueueProperties
  // refuses them, as MQSetQueueProperties does), so no instance for a PUBLIC= name either.
  for (const std::wstring& f : {journal, dead}) {
    GUID g{};
    Props p;
    p.add(PROPID_Q_INSTANCE, VT_CLSID, [&g](MQPROPVARIANT& v) { v.puuid = &g; });
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
              MQGetQueueProperties(f.c_str(), p.queue()));
  }
  // The machine's private queues leave them out too.
  PROPID id = PROPID_MGMT_MSMQ_PRIVATEQ;
  MQPROPVARIANT var;
  std::memset(&var, 0, sizeof var);
  var.vt = VT_NULL;
  MQMGMTPROPS mp{1, &id, &var, nullptr};
  ASSERT_HR(MQ_OK, MQMgmtGetInfo(nullptr, MO_MACHINE_TOKEN, &mp));
  found = 0;
  for (ULONG i = 0; i < var.calpwstr.cElems; ++i) {
    std::wstring lower = var.calpwstr.pElems[i];
    MQFreeMemory(var.calpwstr.pElems[i]);
    for (auto& c : lower) c = static_cast<wchar_t>(std::towlower(c));
    if (lower.ends_with(L"\\private$\\" + name)) ++found;
    EXPECT_EQ(lower.find(L"direct=os:"), std::wstring::npos) << "an outgoing queue is listed";
  }
  MQFreeMemory(var.calpwstr.pElems);
  EXPECT_EQ(found, 1u);
  EXPECT_HR(MQ_OK, MQDeleteQueue(format.c_str()));
}

TEST(Locate, BadInput) {
  GUID type = run_type(6);
  PROPID cols[] = {PROPID_Q_LABEL};
  MQCOLUMNSET cs{1, cols};
  HANDLE h = reinterpret_cast<HANDLE>(0x1234);
  MQPROPERTYRESTRICTION r = type_is(&type);
  MQRESTRICTION res{1, &r};

  // Context, handle pointer, columns.
  EXPECT_HR(MQ_ERROR_ILLEGAL_CONTEXT, MQLocateBegin(L"DC=example", &res, &cs, nullptr, &h));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQLocateBegin(nullptr, &res, &cs, nullptr, nullptr));
  EXPECT_HR(MQ_ERROR_ILLEGAL_MQCOLUMNS, MQLocateBegin(nullptr, &res, nullptr, nullptr, &h));
  MQCOLUMNSET empty{0, cols};
  EXPECT_HR(MQ_ERROR_ILLEGAL_MQCOLUMNS, MQLocateBegin(nullptr, &res, &empty, nullptr, &h));
  MQCOLUMNSET null_cols{1, nullptr};
  EXPECT_HR(MQ_ERROR_ILLEGAL_MQCOLUMNS, MQLocateBegin(nullptr, &res, &null_cols, nullptr, &h));
  PROPID bad_cols[] = {PROPID_Q_LABEL, PROPID_M_BODY};
  MQCOLUMNSET bad{2, bad_cols};
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPID, MQLocateBegin(nullptr, &res, &bad, nullptr, &h));
  EXPECT_EQ(h, nullptr);  // a failed begin leaves no handle

  // Restrictions: property, relation, VT, NULL values, a malformed array.
  MQPROPERTYRESTRICTION rr = type_is(&type);
  MQRESTRICTION one{1, &rr};
  rr.prop = PROPID_M_LABEL;
  EXPECT_HR(MQ_ERROR_ILLEGAL_RESTRICTION_PROPID, MQLocateBegin(nullptr, &one, &cs, nullptr, &h));
  rr.prop = PROPID_Q_ADS_PATH;
  EXPECT_HR(MQ_ERROR_ILLEGAL_RESTRICTION_PROPID, MQLocateBegin(nullptr, &one, &cs, nullptr, &h));
  rr = type_is(&type);
  rr.rel = PRNE + 1;
  EXPECT_HR(MQ_ERROR_ILLEGAL_RELATION, MQLocateBegin(nullptr, &one, &cs, nullptr, &h));
  rr = type_is(&type);
  rr.prval.vt = VT_LPWSTR;
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQLocateBegin(nullptr, &one, &cs, nullptr, &h));
  rr = type_is(nullptr);
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQLocateBegin(nullptr, &one, &cs, nullptr, &h));
  rr.prop = PROPID_Q_LABEL;
  rr.prval.vt = VT_LPWSTR;
  rr.prval.pwszVal = nullptr;
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQLocateBegin(nullptr, &one, &cs, nullptr, &h));
  rr.prop = PROPID_Q_QUOTA;
  rr.prval.vt = VT_I4;
  EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VT, MQLocateBegin(nullptr, &one, &cs, nullptr, &h));
  MQRESTRICTION null_res{2, nullptr};
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQLocateBegin(nullptr, &null_res, &cs, nullptr, &h));

  // Sort sets: property, order, a malformed array.
  MQSORTKEY k{PROPID_M_BODY, QUERY_SORTASCEND};
  MQSORTSET s{1, &k};
  EXPECT_HR(MQ_ERROR_ILLEGAL_SORT_PROPID, MQLocateBegin(nullptr, &res, &cs, &s, &h));
  k = {PROPID_Q_LABEL, 7};
  EXPECT_HR(MQ_ERROR_ILLEGAL_SORT, MQLocateBegin(nullptr, &res, &cs, &s, &h));
  MQSORTSET null_sort{1, nullptr};
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQLocateBegin(nullptr, &res, &cs, &null_sort, &h));
  EXPECT_EQ(h, nullptr);

  // Next and End: unknown, forged and mistyped handles, NULL counts and arrays.
  MQPROPVARIANT v[2];
  DWORD n = 2;
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQLocateNext(nullptr, &n, v));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE,
            MQLocateNext(reinterpret_cast<HANDLE>(uintptr_t{0xdeadbeef}), &n, v));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQLocateEnd(nullptr));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQLocateEnd(reinterpret_cast<HANDLE>(uintptr_t{4} << 32)));
  const std::wstring q = unique_name(L"loc-bad");
  const std::wstring format = create_queue(q, L"bad", &type);
  QUEUEHANDLE qh = nullptr;
  ASSERT_HR(MQ_OK, MQOpenQueue(format.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &qh));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQLocateNext(qh, &n, v));  // a queue handle
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQLocateEnd(qh));
  MQCloseQueue(qh);
  ASSERT_HR(MQ_OK, MQLocateBegin(nullptr, &res, &cs, nullptr, &h));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQLocateNext(h, nullptr, v));
  n = 2;
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQLocateNext(h, &n, nullptr));
  n = 0;
  EXPECT_HR(MQ_ERROR_RESULT_BUFFER_TOO_SMALL, MQLocateNext(h, &n, v));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQCloseQueue(h));  // a query handle is not a queue
  n = 2;
  ASSERT_HR(MQ_OK, MQLocateNext(h, &n, v));  // still usable after all that
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(std::wstring(v[0].pwszVal), L"bad");
  MQFreeMemory(v[0].pwszVal);
  EXPECT_HR(MQ_OK, MQLocateEnd(h));
  EXPECT_HR(MQ_OK, MQDeleteQueue(format.c_str()));
}

// The PUBLIC= name of a queue of this machine (MQInstanceToFormatName of its instance).
std::wstring public_name_of(const std::wstring& format) {
  GUID g{};
  Props p;
  p.add(PROPID_Q_INSTANCE, VT_CLSID, [&g](MQPROPVARIANT& v) { v.puuid = &g; });
  EXPECT_HR(MQ_OK, MQGetQueueProperties(format.c_str(), p.queue()));
  WCHAR buf[64];
  DWORD len = 64;
  EXPECT_HR(MQ_OK, MQInstanceToFormatName(&g, buf, &len));
  return buf;
}

// Wherever MSMQ takes a format name, a PUBLIC= one names the same queue: as a message's admin
// queue (its NACK arrives there) and response queue (returned as given), and in MQMgmtGetInfo.
// A PUBLIC= GUID of no queue here is refused where the queue must exist, and a NACK to it is
// not sent (no queue of this machine has it).
TEST(Locate, PublicNamesServeAsAdminAndResponseQueuesAndInManagement) {
  GUID type = run_type(8);
  const std::wstring dest = create_queue(unique_name(L"loc-pub-dest"), L"dest", &type);
  const std::wstring admin = create_queue(unique_name(L"loc-pub-admin"), L"admin", &type);
  const std::wstring pub = public_name_of(admin);
  ASSERT_EQ(pub.rfind(L"PUBLIC=", 0), 0u);
  QUEUEHANDLE s = nullptr, r = nullptr, a = nullptr;
  ASSERT_HR(MQ_OK, MQOpenQueue(dest.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &s));
  ASSERT_HR(MQ_OK, MQOpenQueue(dest.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &r));
  ASSERT_HR(MQ_OK, MQOpenQueue(admin.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &a));
  const std::wstring unknown = L"PUBLIC=01234567-89ab-cdef-0123-456789abcdef";
  // Two messages: one NACKed to the admin queue's PUBLIC= name when it expires, one whose
  // response queue is that name; a third NACKed to a GUID of no queue.
  char body[] = "expires";
  std::vector<UCHAR> id(PROPID_M_MSGID_SIZE);
  {
    Props m;
    m.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body), sizeof body);
    m.ui4(PROPID_M_TIME_TO_BE_RECEIVED, 0);
    m.ui1(PROPID_M_ACKNOWLEDGE, MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE);
    m.wstr(PROPID_M_ADMIN_QUEUE, pub.c_str());
    m.bytes(PROPID_M_MSGID, id.data(), static_cast<ULONG>(id.size()));
    ASSERT_HR(MQ_OK, MQSendMessage(s, m.msg(), MQ_NO_TRANSACTION));
  }
  {
    Props m;
    m.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body), sizeof body);
    m.ui4(PROPID_M_TIME_TO_BE_RECEIVED, 0);
    m.ui1(PROPID_M_ACKNOWLEDGE, MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE);
    m.wstr(PROPID_M_ADMIN_QUEUE, unknown.c_str());
    ASSERT_HR(MQ_OK, MQSendMessage(s, m.msg(), MQ_NO_TRANSACTION));
  }
  const time_t sent = std::time(nullptr);  // after both: they may straddle a second
  char reply[] = "reply to me";
  {
    Props m;
    m.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(reply), sizeof reply);
    m.wstr(PROPID_M_RESP_QUEUE, pub.c_str());
    ASSERT_HR(MQ_OK, MQSendMessage(s, m.msg(), MQ_NO_TRANSACTION));
  }
  // A malformed PUBLIC= name is refused at the send, as any malformed format name.
  {
    Props m;
    m.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body), sizeof body);
    m.wstr(PROPID_M_ADMIN_QUEUE, L"PUBLIC=1234");
    EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME, MQSendMessage(s, m.msg(), MQ_NO_TRANSACTION));
  }
  while (std::time(nullptr) <= sent) usleep(50 * 1000);
  // The receive meets the two expired messages first (NACKs sent), then the reply request.
  WCHAR resp[128];
  Props rp;
  UCHAR got[64];
  rp.bytes(PROPID_M_BODY, got, sizeof got);
  rp.add(PROPID_M_RESP_QUEUE, VT_LPWSTR, [&resp](MQPROPVARIANT& v) { v.pwszVal = resp; });
  rp.ui4(PROPID_M_RESP_QUEUE_LEN, 128);
  ASSERT_HR(MQ_OK, MQReceiveMessage(r, 5000, MQ_ACTION_RECEIVE, rp.msg(), nullptr, nullptr, nullptr,
                                    nullptr));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(got), rp.var(0).caub.cElems),
            std::string(reply, sizeof reply));
  EXPECT_EQ(std::wstring(resp), pub);
  // The NACK is in the queue the PUBLIC= name names; MQMgmtGetInfo counts it through that name.
  PROPID count_id = PROPID_MGMT_QUEUE_MESSAGE_COUNT;
  MQPROPVARIANT count;
  std::memset(&count, 0, sizeof count);
  count.vt = VT_NULL;
  MQMGMTPROPS mp{1, &count_id, &count, nullptr};
  const std::wstring object = L"QUEUE=" + pub;
  ASSERT_HR(MQ_OK, MQMgmtGetInfo(nullptr, object.c_str(), &mp));
  EXPECT_EQ(count.ulVal, 1u);
  std::vector<UCHAR> correlation(PROPID_M_CORRELATIONID_SIZE);
  Props np;
  np.null(PROPID_M_CLASS);
  np.bytes(PROPID_M_CORRELATIONID, correlation.data(), static_cast<ULONG>(correlation.size()));
  ASSERT_HR(MQ_OK, MQReceiveMessage(a, 0, MQ_ACTION_RECEIVE, np.msg(), nullptr, nullptr, nullptr,
                                    nullptr));
  EXPECT_EQ(np.var(0).uiVal, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT);
  EXPECT_EQ(correlation, id);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT,
            MQReceiveMessage(a, 0, MQ_ACTION_RECEIVE, nullptr, nullptr, nullptr, nullptr, nullptr));
  const std::wstring unknown_object = L"QUEUE=" + unknown;
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQMgmtGetInfo(nullptr, unknown_object.c_str(), &mp));
  for (QUEUEHANDLE h : {s, r, a}) MQCloseQueue(h);
  for (const std::wstring& f : {dest, admin}) EXPECT_HR(MQ_OK, MQDeleteQueue(f.c_str()));
}

TEST(Locate, FormatNamesWithoutADirectory) {
  // MQInstanceToFormatName: NULLs, an unknown GUID.
  GUID unknown = run_type(7);
  WCHAR buf[64];
  DWORD len = 64;
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQInstanceToFormatName(nullptr, buf, &len));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQInstanceToFormatName(&unknown, buf, nullptr));
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQInstanceToFormatName(&unknown, buf, &len));
  // PUBLIC= names that are not a GUID are illegal; a GUID no queue has is not found.
  QUEUEHANDLE h = nullptr;
  for (const wchar_t* f :
       {L"PUBLIC=", L"PUBLIC=1234", L"PUBLIC=01234567-89ab-cdef-0123-456789abcdeg",
        L"PUBLIC=01234567-89ab-cdef-0123-456789abcdef;JOURNAL",
        L"PUBLIC=01234567+89ab-cdef-0123-456789abcdef"}) {
    EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME, MQOpenQueue(f, MQ_SEND_ACCESS, MQ_DENY_NONE, &h));
  }
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQOpenQueue(L"PUBLIC=01234567-89ab-cdef-0123-456789abcdef",
                                                  MQ_SEND_ACCESS, MQ_DENY_NONE, &h));
  // Public queues' path names ("<machine>\\<name>") need the directory: MSMQ's workgroup
  // answer, both to create one and to ask for its format name; other bad paths stay illegal.
  for (const wchar_t* path : {L".\\pubq", L"localhost\\pubq", L"otherhost\\pubq"}) {
    Props p;
    p.wstr(PROPID_Q_PATHNAME, path);
    len = 64;
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_OPERATION, MQCreateQueue(nullptr, p.queue(), buf, &len));
    len = 64;
    EXPECT_HR(MQ_ERROR_UNSUPPORTED_OPERATION, MQPathNameToFormatName(path, buf, &len));
  }
  for (const wchar_t* path : {L".\\pub\\q", L".\\", L"my host\\pubq", L".\\private$"}) {
    Props p;
    p.wstr(PROPID_Q_PATHNAME, path);
    len = 64;
    EXPECT_HR(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, MQCreateQueue(nullptr, p.queue(), buf, &len));
    len = 64;
    EXPECT_HR(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, MQPathNameToFormatName(path, buf, &len));
  }
  // MQADsPathToFormatName: no Active Directory, MSMQ's workgroup answer.
  len = 64;
  EXPECT_HR(MQ_ERROR_UNSUPPORTED_OPERATION,
            MQADsPathToFormatName(L"LDAP://CN=q,CN=msmq,CN=host,DC=example,DC=com", buf, &len));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQADsPathToFormatName(nullptr, buf, &len));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER, MQADsPathToFormatName(L"LDAP://x", buf, nullptr));
}

}  // namespace
