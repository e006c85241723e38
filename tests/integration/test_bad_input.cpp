// Bad input at the C boundary (issue 5, "hostile input"): every function of mq.h gets a table
// of NULLs, wrong VARTYPEs, zero and huge sizes and invalid, forged, stale and mistyped handles
// (queue, cursor and security context handles), each row with the MQ_ERROR_* it must return.
// A row that crashes fails the whole test binary, so "never a crash" is checked by every row.
//
// Only what a caller can do without undefined behaviour is tested: a buffer is always as large
// as its size field says (cElems larger than the real buffer is the caller's lie, as in MSMQ);
// NULL arrays with a huge cProp are fine, since the count must be refused before any array is
// read. Failed sends must store nothing and failed receives must leave the message in place;
// both are checked after the tables.
//
// Runs on a throwaway SoftHSM token (tests/support/softhsm_env) through libmqrt.
#include <mq.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "tests/support/hresult_text.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"

namespace {

using mqsec::testing::Bytes;
using mqsec::testing::SoftHsmEnv;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

// One row of a table: what is done, and the code it must give.
struct Row {
  std::string what;
  HRESULT expected;
  std::function<HRESULT()> call;
};

void run_table(const std::vector<Row>& rows) {
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    EXPECT_HR(row.expected, row.call());
  }
}

HANDLE as_handle(uintptr_t v) { return reinterpret_cast<HANDLE>(v); }
uintptr_t value(HANDLE h) { return reinterpret_cast<uintptr_t>(h); }

// Handles nobody was given: NULL, small integers, all ones, and near misses of a real handle
// (another generation in bits 16+, another slot, other high bits), so that tagging and
// generation checks are exercised without the test knowing their layout.
std::vector<std::pair<std::string, HANDLE>> forged_from(HANDLE live) {
  const uintptr_t v = value(live);
  return {{"NULL", nullptr},
          {"1", as_handle(1)},
          {"0xFFFFFFFF", as_handle(0xFFFFFFFFu)},
          {"all ones", as_handle(~uintptr_t{0})},
          {"live ^ 1<<16", as_handle(v ^ (uintptr_t{1} << 16))},
          {"live + 0x7FFF", as_handle(v + 0x7FFF)},
          {"live with high bits cleared", as_handle(v & 0xFFFFFFFFu)},
          {"live ^ 1<<40", as_handle(v ^ (uintptr_t{1} << 40))},
          {"a pointer", as_handle(reinterpret_cast<uintptr_t>(&g_env))}};
}

std::wstring format_of(const std::wstring& queue) { return L"DIRECT=OS:.\\private$\\" + queue; }

// A message property array built row by row; the vectors own everything it points to.
struct Props {
  std::vector<MSGPROPID> ids;
  std::vector<MQPROPVARIANT> vars;
  std::vector<HRESULT> status;
  MQMSGPROPS props{};

  Props& add(MSGPROPID id, VARTYPE vt, std::function<void(MQPROPVARIANT&)> set = {}) {
    MQPROPVARIANT v;
    std::memset(&v, 0, sizeof v);
    v.vt = vt;
    if (set) set(v);
    ids.push_back(id);
    vars.push_back(v);
    return *this;
  }
  MQMSGPROPS* get() {
    status.assign(ids.size(), MQ_OK);
    props.cProp = static_cast<DWORD>(ids.size());
    props.aPropID = ids.data();
    props.aPropVar = vars.data();
    props.aStatus = status.data();
    return &props;
  }
};

Props ui1(MSGPROPID id, UCHAR b) {
  Props p;
  p.add(id, VT_UI1, [b](MQPROPVARIANT& v) { v.bVal = b; });
  return p;
}
Props ui4(MSGPROPID id, ULONG u) {
  Props p;
  p.add(id, VT_UI4, [u](MQPROPVARIANT& v) { v.ulVal = u; });
  return p;
}
Props bytes(MSGPROPID id, UCHAR* data, ULONG n) {
  Props p;
  p.add(id, VT_UI1 | VT_VECTOR, [=](MQPROPVARIANT& v) {
    v.caub.cElems = n;
    v.caub.pElems = data;
  });
  return p;
}
Props text(MSGPROPID id, const wchar_t* s) {
  Props p;
  p.add(id, VT_LPWSTR, [s](MQPROPVARIANT& v) { v.pwszVal = const_cast<LPWSTR>(s); });
  return p;
}

class BadInput : public ::testing::Test {
 protected:
  static SoftHsmEnv& env() { return SoftHsmEnv::instance(); }

  void SetUp() override {
    // A queue of this process (each test runs in its own process under CTest, and in one
    // process under a plain run of the binary).
    static int n = 0;
    queue_ = L"bad-input-" + std::to_wstring(getpid()) + L"-" + std::to_wstring(++n);
    format_ = format_of(queue_);
    create_queue(queue_);
  }

  static void create_queue(const std::wstring& name) {
    std::wstring path = L".\\private$\\" + name;
    QUEUEPROPID id = PROPID_Q_PATHNAME;
    MQPROPVARIANT v;
    std::memset(&v, 0, sizeof v);
    v.vt = VT_LPWSTR;
    v.pwszVal = path.data();
    MQQUEUEPROPS qp{1, &id, &v, nullptr};
    WCHAR buf[256];
    DWORD len = 256;
    ASSERT_HR(MQ_OK, MQCreateQueue(nullptr, &qp, buf, &len));
  }

  QUEUEHANDLE open(DWORD access, DWORD share = MQ_DENY_NONE) const {
    QUEUEHANDLE h = nullptr;
    EXPECT_HR(MQ_OK, MQOpenQueue(format_.c_str(), access, share, &h));
    return h;
  }

  // Sends an unsigned message with `body`; returns the result.
  static HRESULT send_body(QUEUEHANDLE h, const std::string& body) {
    std::string copy = body;
    Props p = bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(copy.data()),
                    static_cast<ULONG>(copy.size()));
    return MQSendMessage(h, p.get(), MQ_NO_TRANSACTION);
  }

  // How many messages the queue holds (peeks with a cursor, takes nothing).
  size_t count_messages() const {
    QUEUEHANDLE h = open(MQ_PEEK_ACCESS);
    HANDLE c = nullptr;
    EXPECT_HR(MQ_OK, MQCreateCursor(h, &c));
    size_t n = 0;
    DWORD action = MQ_ACTION_PEEK_CURRENT;
    while (MQReceiveMessage(h, 0, action, nullptr, nullptr, nullptr, c, nullptr) == MQ_OK) {
      ++n;
      action = MQ_ACTION_PEEK_NEXT;
    }
    MQCloseCursor(c);
    MQCloseQueue(h);
    return n;
  }

  // A key on the primary token and a certificate for it, with the certificate object on the
  // token too (an EC key: quick to make).
  static Bytes token_certificate() {
    const std::string id = SoftHsmEnv::new_id();
    env().keypairgen(SoftHsmEnv::kPrimaryToken, "EC:prime256v1", id, "bad-input-key-" + id);
    Bytes der = env().certificate_for_token_key(SoftHsmEnv::kPrimaryToken, id, "bad-input-" + id);
    env().write_certificate(SoftHsmEnv::kPrimaryToken, der, id, "bad-input-cert-" + id);
    return der;
  }

  std::wstring queue_, format_;
};

// ---- MQGetSecurityContextEx / MQGetSecurityContext -------------------------------------

TEST_F(BadInput, GetSecurityContext) {
  Bytes soft = env().software_certificate("ec", "bad-input-software").cert_der;
  Bytes trailing = soft;
  trailing.push_back(0);
  Bytes truncated(soft.begin(), soft.begin() + static_cast<std::ptrdiff_t>(soft.size() / 2));
  Bytes twice = soft;
  twice.insert(twice.end(), soft.begin(), soft.end());
  Bytes zeros(1 << 20, 0);  // huge and not a certificate
  Bytes junk = {0x30, 0x82, 0xFF, 0xFF, 0x01};
  std::string pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

  using Fn = HRESULT (*)(LPVOID, DWORD, HANDLE*);
  for (Fn fn : {&MQGetSecurityContextEx, &MQGetSecurityContext}) {
    SCOPED_TRACE(fn == &MQGetSecurityContextEx ? "MQGetSecurityContextEx" : "MQGetSecurityContext");
    HANDLE h = as_handle(0x1234);
    auto get = [&](void* buf, size_t n) -> HRESULT {
      h = as_handle(0x1234);
      return fn(buf, static_cast<DWORD>(n), &h);
    };
    std::vector<Row> rows = {
        {"NULL out, internal", MQ_ERROR_INVALID_PARAMETER, [&] { return fn(nullptr, 0, nullptr); }},
        {"NULL out, certificate", MQ_ERROR_INVALID_PARAMETER,
         [&] { return fn(soft.data(), static_cast<DWORD>(soft.size()), nullptr); }},
        {"buffer with length 0", MQ_ERROR_INVALID_PARAMETER,
         [&] { return get(const_cast<uint8_t*>(soft.data()), 0); }},
        {"NULL buffer with length 1", MQ_ERROR_INVALID_PARAMETER, [&] { return get(nullptr, 1); }},
        {"NULL buffer with length 0xFFFFFFFF", MQ_ERROR_INVALID_PARAMETER,
         [&] { return fn(nullptr, 0xFFFFFFFFu, &h); }},
        {"one byte", MQ_ERROR_INVALID_CERTIFICATE, [&] { return get(junk.data(), 1); }},
        {"DER header claiming 64 KiB", MQ_ERROR_INVALID_CERTIFICATE,
         [&] { return get(junk.data(), junk.size()); }},
        {"certificate + trailing byte", MQ_ERROR_INVALID_CERTIFICATE,
         [&] { return get(trailing.data(), trailing.size()); }},
        {"truncated certificate", MQ_ERROR_INVALID_CERTIFICATE,
         [&] { return get(truncated.data(), truncated.size()); }},
        {"two certificates", MQ_ERROR_INVALID_CERTIFICATE,
         [&] { return get(twice.data(), twice.size()); }},
        {"PEM instead of DER", MQ_ERROR_INVALID_CERTIFICATE,
         [&] { return get(pem.data(), pem.size()); }},
        {"1 MiB of zeros", MQ_ERROR_INVALID_CERTIFICATE,
         [&] { return get(zeros.data(), zeros.size()); }},
        {"certificate whose key is not on the token", MQ_ERROR_INVALID_CERTIFICATE,
         [&] { return get(const_cast<uint8_t*>(soft.data()), soft.size()); }},
    };
    for (const Row& row : rows) {
      SCOPED_TRACE(row.what);
      h = as_handle(0x1234);
      EXPECT_HR(row.expected, row.call());
      // Past the argument checks, a failure leaves no handle behind.
      if (row.expected != MQ_ERROR_INVALID_PARAMETER) {
        EXPECT_EQ(nullptr, h);
      }
    }
  }
}

// ---- MQFreeSecurityContext and context handles in MQSendMessage ---------------------------

TEST_F(BadInput, SecurityContextHandles) {
  const Bytes der = token_certificate();
  HANDLE live = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(const_cast<uint8_t*>(der.data()),
                                          static_cast<DWORD>(der.size()), &live));
  HANDLE stale = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(const_cast<uint8_t*>(der.data()),
                                          static_cast<DWORD>(der.size()), &stale));
  MQFreeSecurityContext(stale);
  QUEUEHANDLE send = open(MQ_SEND_ACCESS);
  HANDLE cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(send, &cursor));

  auto send_with = [&](uintptr_t context, ULONG auth_level) {
    char body[] = "signed?";
    Props p = bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body), sizeof body);
    p.add(PROPID_M_SECURITY_CONTEXT, VT_UI4,
          [=](MQPROPVARIANT& v) { v.ulVal = static_cast<ULONG>(context); });
    p.add(PROPID_M_AUTH_LEVEL, VT_UI4, [=](MQPROPVARIANT& v) { v.ulVal = auth_level; });
    return MQSendMessage(send, p.get(), MQ_NO_TRANSACTION);
  };

  // Freeing what is not a live context is a silent no-op (VOID in MSMQ): no crash, and the
  // live context keeps working.
  std::vector<std::pair<std::string, HANDLE>> bogus = forged_from(live);
  bogus.emplace_back("stale (already freed)", stale);
  bogus.emplace_back("a queue handle", send);
  bogus.emplace_back("a cursor handle", cursor);
  for (const auto& [what, h] : bogus) {
    SCOPED_TRACE(what);
    if (h == live) continue;
    MQFreeSecurityContext(h);
  }
  EXPECT_HR(MQ_OK, send_with(value(live), MQMSG_AUTH_LEVEL_ALWAYS));

  // PROPID_M_SECURITY_CONTEXT that is not a live context: refused, signed or not.
  std::vector<Row> rows;
  for (ULONG level : {ULONG{MQMSG_AUTH_LEVEL_ALWAYS}, ULONG{MQMSG_AUTH_LEVEL_NONE}}) {
    const std::string l = level ? " (signed)" : " (unsigned)";
    rows.push_back({"stale context" + l, MQ_ERROR_BAD_SECURITY_CONTEXT,
                    [&, level] { return send_with(value(stale), level); }});
    rows.push_back({"live ^ 1<<16" + l, MQ_ERROR_BAD_SECURITY_CONTEXT,
                    [&, level] { return send_with(value(live) ^ (1u << 16), level); }});
    rows.push_back({"live + 0x7FFF" + l, MQ_ERROR_BAD_SECURITY_CONTEXT,
                    [&, level] { return send_with(value(live) + 0x7FFF, level); }});
    rows.push_back({"0xFFFFFFFF" + l, MQ_ERROR_BAD_SECURITY_CONTEXT,
                    [&, level] { return send_with(0xFFFFFFFFu, level); }});
  }
  run_table(rows);

  // Freed twice: still a no-op; then the handle is stale for sends too.
  MQFreeSecurityContext(live);
  MQFreeSecurityContext(live);
  EXPECT_HR(MQ_ERROR_BAD_SECURITY_CONTEXT, send_with(value(live), MQMSG_AUTH_LEVEL_ALWAYS));
  EXPECT_EQ(1u, count_messages());  // only the one good send was stored
  MQCloseCursor(cursor);
  MQCloseQueue(send);
}

// ---- MQRegisterCertificate -------------------------------------------------------------

TEST_F(BadInput, RegisterCertificate) {
  const Bytes soft = env().software_certificate("ec", "bad-input-register").cert_der;
  Bytes trailing = soft;
  trailing.push_back(0);
  Bytes zeros(1 << 20, 0);
  uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};
  auto reg = [](DWORD flags, void* buf, size_t n) {
    return MQRegisterCertificate(flags, buf, static_cast<DWORD>(n));
  };
  void* s = const_cast<uint8_t*>(soft.data());
  run_table({
      {"flags 0", MQ_ERROR_INVALID_PARAMETER, [&] { return reg(0, nullptr, 0); }},
      {"flags ALWAYS|IF_NOT_EXIST", MQ_ERROR_INVALID_PARAMETER, [&] { return reg(3, nullptr, 0); }},
      {"flags 4", MQ_ERROR_INVALID_PARAMETER, [&] { return reg(4, nullptr, 0); }},
      {"flags 0xFFFFFFFF", MQ_ERROR_INVALID_PARAMETER,
       [&] { return reg(0xFFFFFFFFu, s, soft.size()); }},
      {"NULL buffer with length 5", MQ_ERROR_INVALID_PARAMETER,
       [&] { return reg(MQCERT_REGISTER_ALWAYS, nullptr, 5); }},
      {"NULL buffer with length 0xFFFFFFFF", MQ_ERROR_INVALID_PARAMETER,
       [&] { return MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0xFFFFFFFFu); }},
      {"buffer with length 0", MQ_ERROR_INVALID_PARAMETER,
       [&] { return reg(MQCERT_REGISTER_ALWAYS, s, 0); }},
      {"IF_NOT_EXIST with a certificate", MQ_ERROR_INVALID_PARAMETER,
       [&] { return reg(MQCERT_REGISTER_IF_NOT_EXIST, s, soft.size()); }},
      {"junk", MQ_ERROR_INVALID_CERTIFICATE,
       [&] { return reg(MQCERT_REGISTER_ALWAYS, junk, sizeof junk); }},
      {"certificate + trailing byte", MQ_ERROR_INVALID_CERTIFICATE,
       [&] { return reg(MQCERT_REGISTER_ALWAYS, trailing.data(), trailing.size()); }},
      {"1 MiB of zeros", MQ_ERROR_INVALID_CERTIFICATE,
       [&] { return reg(MQCERT_REGISTER_ALWAYS, zeros.data(), zeros.size()); }},
      {"certificate whose key is not the caller's", MQ_ERROR_INVALID_CERTIFICATE,
       [&] { return reg(MQCERT_REGISTER_ALWAYS, s, soft.size()); }},
  });
}

// ---- MQCreateQueue / MQDeleteQueue / MQPathNameToFormatName ------------------------------

TEST_F(BadInput, CreateQueue) {
  const std::wstring fresh = L".\\private$\\bad-create-" + std::to_wstring(getpid());
  const std::wstring existing = L".\\private$\\" + queue_;
  const std::wstring long_label(125, L'l');
  const std::wstring long_name = L".\\private$\\" + std::wstring(125, L'n');
  const std::wstring huge_path = L".\\private$\\" + std::wstring(1 << 20, L'h');
  const wchar_t bad_unicode[] = {L'.', L'\\', L'p', L'r', L'i',  L'v',
                                 L'a', L't',  L'e', L'$', L'\\', static_cast<wchar_t>(0xD800),
                                 0};

  struct QueueProp {
    QUEUEPROPID id;
    VARTYPE vt;
    std::function<void(MQPROPVARIANT&)> set;
  };
  auto create = [](std::vector<QueueProp> spec, bool with_status = true) {
    std::vector<QUEUEPROPID> ids;
    std::vector<MQPROPVARIANT> vars;
    for (auto& s : spec) {
      MQPROPVARIANT v;
      std::memset(&v, 0, sizeof v);
      v.vt = s.vt;
      if (s.set) s.set(v);
      ids.push_back(s.id);
      vars.push_back(v);
    }
    std::vector<HRESULT> status(ids.size(), MQ_OK);
    MQQUEUEPROPS qp{static_cast<DWORD>(ids.size()), ids.data(), vars.data(),
                    with_status ? status.data() : nullptr};
    WCHAR buf[300];
    DWORD len = 300;
    return MQCreateQueue(nullptr, &qp, buf, &len);
  };
  auto path = [](const std::wstring& p) {
    return QueueProp{PROPID_Q_PATHNAME, VT_LPWSTR,
                     [&p](MQPROPVARIANT& v) { v.pwszVal = const_cast<LPWSTR>(p.c_str()); }};
  };

  run_table({
      {"NULL MQQUEUEPROPS", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         DWORD len = 10;
         WCHAR buf[10];
         return MQCreateQueue(nullptr, nullptr, buf, &len);
       }},
      {"NULL length", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         QUEUEPROPID id = PROPID_Q_PATHNAME;
         MQPROPVARIANT v{};
         v.vt = VT_LPWSTR;
         v.pwszVal = const_cast<LPWSTR>(fresh.c_str());
         MQQUEUEPROPS qp{1, &id, &v, nullptr};
         return MQCreateQueue(nullptr, &qp, nullptr, nullptr);
       }},
      {"cProp 0", MQ_ERROR_INVALID_PARAMETER, [&] { return create({}); }},
      {"cProp huge, NULL arrays", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         MQQUEUEPROPS qp{0xFFFFFFFFu, nullptr, nullptr, nullptr};
         DWORD len = 0;
         return MQCreateQueue(nullptr, &qp, nullptr, &len);
       }},
      {"cProp 1, NULL arrays", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         MQQUEUEPROPS qp{1, nullptr, nullptr, nullptr};
         DWORD len = 0;
         return MQCreateQueue(nullptr, &qp, nullptr, &len);
       }},
      {"no path name", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         return create({{PROPID_Q_AUTHENTICATE, VT_UI1, [](MQPROPVARIANT& v) { v.bVal = 1; }}});
       }},
      {"path name VT_UI4", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] {
         return create({{PROPID_Q_PATHNAME, VT_UI4, {}}});
       }},
      {"path name VT_NULL", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] {
         return create({{PROPID_Q_PATHNAME, VT_NULL, {}}});
       }},
      {"path name NULL string", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] {
         return create({{PROPID_Q_PATHNAME, VT_LPWSTR, {}}});
       }},
      {"path name empty", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] {
         static const std::wstring empty;
         return create({path(empty)});
       }},
      {"path name 125 characters", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] { return create({path(long_name)}); }},
      {"path name of 1 Mi characters", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] { return create({path(huge_path)}); }},
      {"path name not Unicode", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] {
         return create({{PROPID_Q_PATHNAME, VT_LPWSTR,
                         [&](MQPROPVARIANT& v) { v.pwszVal = const_cast<LPWSTR>(bad_unicode); }}});
       }},
      // Public queues need Active Directory: MSMQ's answer on a workgroup computer.
      {"public queue", MQ_ERROR_UNSUPPORTED_OPERATION,
       [&] {
         static const std::wstring p = L".\\public-queue";
         return create({path(p)});
       }},
      {"another machine", MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
       [&] {
         static const std::wstring p = L"elsewhere.invalid\\private$\\q";
         return create({path(p)});
       }},
      {"label VT_UI4", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] {
         return create({path(fresh), {PROPID_Q_LABEL, VT_UI4, {}}});
       }},
      {"label NULL", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] {
         return create({path(fresh), {PROPID_Q_LABEL, VT_LPWSTR, {}}});
       }},
      {"label 125 characters", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] {
         return create({path(fresh), {PROPID_Q_LABEL, VT_LPWSTR, [&](MQPROPVARIANT& v) {
                                        v.pwszVal = const_cast<LPWSTR>(long_label.c_str());
                                      }}});
       }},
      {"authenticate VT_UI4", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] {
         return create({path(fresh), {PROPID_Q_AUTHENTICATE, VT_UI4, {}}});
       }},
      {"authenticate 2", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] {
         return create(
             {path(fresh), {PROPID_Q_AUTHENTICATE, VT_UI1, [](MQPROPVARIANT& v) { v.bVal = 2; }}});
       }},
      {"transaction 255", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] {
         return create(
             {path(fresh), {PROPID_Q_TRANSACTION, VT_UI1, [](MQPROPVARIANT& v) { v.bVal = 255; }}},
             false);
       }},
      {"message property id", MQ_ERROR_ILLEGAL_PROPID,
       [&] {
         return create({path(fresh), {PROPID_M_BODY, VT_UI1 | VT_VECTOR, {}}});
       }},
      {"property id 0xFFFFFFFF", MQ_ERROR_ILLEGAL_PROPID,
       [&] {
         return create({path(fresh), {0xFFFFFFFFu, VT_UI4, {}}});
       }},
      {"existing queue", MQ_ERROR_QUEUE_EXISTS, [&] { return create({path(existing)}); }},
  });

  // None of the failures created the queue; a zero-length buffer still creates it and reports
  // the length needed.
  DWORD len = 0;
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQPathNameToFormatName(fresh.c_str(), nullptr, &len));
  QUEUEPROPID id = PROPID_Q_PATHNAME;
  MQPROPVARIANT v{};
  v.vt = VT_LPWSTR;
  v.pwszVal = const_cast<LPWSTR>(fresh.c_str());
  MQQUEUEPROPS qp{1, &id, &v, nullptr};
  len = 0;
  EXPECT_HR(MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL, MQCreateQueue(nullptr, &qp, nullptr, &len));
  EXPECT_GT(len, 1u);
}

TEST_F(BadInput, DeleteQueueAndPathNameToFormatName) {
  const std::wstring huge = L"DIRECT=OS:.\\private$\\" + std::wstring(1 << 20, L'x');
  const wchar_t bad_unicode[] = {
      L'D',  L'I', L'R', L'E', L'C', L'T', L'=', L'O', L'S', L':',  L'.',
      L'\\', L'p', L'r', L'i', L'v', L'a', L't', L'e', L'$', L'\\', static_cast<wchar_t>(0x110000),
      0};
  const std::wstring path = L".\\private$\\" + queue_;
  run_table({
      {"delete NULL", MQ_ERROR_INVALID_PARAMETER, [] { return MQDeleteQueue(nullptr); }},
      {"delete empty", MQ_ERROR_ILLEGAL_FORMATNAME, [] { return MQDeleteQueue(L""); }},
      {"delete by path name", MQ_ERROR_ILLEGAL_FORMATNAME,
       [&] { return MQDeleteQueue(path.c_str()); }},
      {"delete DIRECT=OS: alone", MQ_ERROR_ILLEGAL_FORMATNAME,
       [] { return MQDeleteQueue(L"DIRECT=OS:"); }},
      // DIRECT=TCP: names a queue of machine "127.0.0.1" (issue 10); not administered here.
      {"delete DIRECT=TCP:", MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
       [] { return MQDeleteQueue(L"DIRECT=TCP:127.0.0.1\\private$\\q"); }},
      // PUBLIC=<guid> names a queue of this store by its instance GUID (test_msmq_locate).
      {"delete PUBLIC= of no queue", MQ_ERROR_QUEUE_NOT_FOUND,
       [] { return MQDeleteQueue(L"PUBLIC=00000000-0000-0000-0000-000000000000"); }},
      {"delete PUBLIC= not a GUID", MQ_ERROR_ILLEGAL_FORMATNAME,
       [] { return MQDeleteQueue(L"PUBLIC=00000000-0000-0000-0000"); }},
      {"delete not Unicode", MQ_ERROR_ILLEGAL_FORMATNAME,
       [&] { return MQDeleteQueue(bad_unicode); }},
      {"delete 1 Mi characters", MQ_ERROR_ILLEGAL_FORMATNAME,
       [&] { return MQDeleteQueue(huge.c_str()); }},
      {"delete on another machine", MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
       [] { return MQDeleteQueue(L"DIRECT=OS:elsewhere.invalid\\private$\\q"); }},
      {"delete unknown queue", MQ_ERROR_QUEUE_NOT_FOUND,
       [] { return MQDeleteQueue(L"DIRECT=OS:.\\private$\\no-such-queue-here"); }},
  });

  WCHAR buf[300];
  DWORD len = 300;
  DWORD zero = 0;
  run_table({
      {"path NULL", MQ_ERROR_INVALID_PARAMETER,
       [&] { return MQPathNameToFormatName(nullptr, buf, &len); }},
      {"length NULL", MQ_ERROR_INVALID_PARAMETER,
       [&] { return MQPathNameToFormatName(path.c_str(), buf, nullptr); }},
      {"empty path", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] { return MQPathNameToFormatName(L"", buf, &len); }},
      {"path of 1 Mi characters", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] { return MQPathNameToFormatName(huge.c_str() + 10, buf, &len); }},
      {"not Unicode", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] { return MQPathNameToFormatName(bad_unicode + 10, buf, &len); }},
      {"another machine", MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
       [&] { return MQPathNameToFormatName(L"elsewhere.invalid\\private$\\q", buf, &len); }},
      {"format name given as a path", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] { return MQPathNameToFormatName(L"DIRECT=OS:.\\private$\\q", buf, &len); }},
      {"host name with a space", MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
       [&] { return MQPathNameToFormatName(L"my host\\private$\\q", buf, &len); }},
      {"unknown queue", MQ_ERROR_QUEUE_NOT_FOUND,
       [&] { return MQPathNameToFormatName(L".\\private$\\no-such-queue-here", buf, &len); }},
      {"NULL buffer, length 0", MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL,
       [&] { return MQPathNameToFormatName(path.c_str(), nullptr, &zero); }},
  });
  // The too-small call reported the size that works.
  ASSERT_GT(zero, 1u);
  std::vector<WCHAR> exact(zero);
  EXPECT_HR(MQ_OK, MQPathNameToFormatName(path.c_str(), exact.data(), &zero));
  DWORD one_less = zero - 1;
  EXPECT_HR(MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL,
            MQPathNameToFormatName(path.c_str(), exact.data(), &one_less));
}

// ---- MQOpenQueue / MQCloseQueue ----------------------------------------------------------

TEST_F(BadInput, OpenQueue) {
  QUEUEHANDLE h = as_handle(0x1234);
  auto open_with = [&](const wchar_t* f, DWORD access, DWORD share) {
    return MQOpenQueue(f, access, share, &h);
  };
  const wchar_t* f = format_.c_str();
  run_table({
      {"NULL out", MQ_ERROR_INVALID_PARAMETER,
       [&] { return MQOpenQueue(f, MQ_SEND_ACCESS, MQ_DENY_NONE, nullptr); }},
      {"NULL format name", MQ_ERROR_INVALID_PARAMETER,
       [&] { return open_with(nullptr, MQ_SEND_ACCESS, MQ_DENY_NONE); }},
      {"access 0", MQ_ERROR_INVALID_PARAMETER, [&] { return open_with(f, 0, MQ_DENY_NONE); }},
      {"access 0xFFFFFFFF", MQ_ERROR_INVALID_PARAMETER,
       [&] { return open_with(f, 0xFFFFFFFFu, MQ_DENY_NONE); }},
      {"send | receive", MQ_ERROR_INVALID_PARAMETER,
       [&] { return open_with(f, MQ_SEND_ACCESS | MQ_RECEIVE_ACCESS, MQ_DENY_NONE); }},
      {"share 2", MQ_ERROR_INVALID_PARAMETER, [&] { return open_with(f, MQ_RECEIVE_ACCESS, 2); }},
      {"deny-receive-share without receive access", MQ_ERROR_INVALID_PARAMETER,
       [&] { return open_with(f, MQ_SEND_ACCESS, MQ_DENY_RECEIVE_SHARE); }},
      {"empty format name", MQ_ERROR_ILLEGAL_FORMATNAME,
       [&] { return open_with(L"", MQ_SEND_ACCESS, MQ_DENY_NONE); }},
      {"path name instead of format name", MQ_ERROR_ILLEGAL_FORMATNAME,
       [&] { return open_with(L".\\private$\\x", MQ_SEND_ACCESS, MQ_DENY_NONE); }},
      {"format name list", MQ_ERROR_ILLEGAL_FORMATNAME,
       [&] {
         return open_with(L"DIRECT=OS:.\\private$\\a,DIRECT=OS:.\\private$\\b", MQ_SEND_ACCESS,
                          MQ_DENY_NONE);
       }},
      // A send to another machine needs a [broker] (issue 10); this configuration has none.
      {"another machine without [broker]", MQ_ERROR_SERVICE_NOT_AVAILABLE,
       [&] {
         return open_with(L"DIRECT=OS:elsewhere.invalid\\private$\\q", MQ_SEND_ACCESS,
                          MQ_DENY_NONE);
       }},
      {"unknown queue", MQ_ERROR_QUEUE_NOT_FOUND,
       [&] { return open_with(L"DIRECT=OS:.\\private$\\no-such-queue", MQ_SEND_ACCESS, 0); }},
  });
  EXPECT_EQ(nullptr, h);  // failures past the argument checks clear the handle
}

TEST_F(BadInput, CloseQueue) {
  QUEUEHANDLE live = open(MQ_RECEIVE_ACCESS);
  QUEUEHANDLE stale = open(MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, MQCloseQueue(stale));
  HANDLE cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(live, &cursor));

  std::vector<Row> rows;
  for (const auto& [what, h] : forged_from(live)) {
    rows.push_back(
        {"forged: " + what, MQ_ERROR_INVALID_HANDLE, [h = h] { return MQCloseQueue(h); }});
  }
  rows.push_back({"stale", MQ_ERROR_INVALID_HANDLE, [&] { return MQCloseQueue(stale); }});
  rows.push_back(
      {"a cursor handle", MQ_ERROR_INVALID_HANDLE, [&] { return MQCloseQueue(cursor); }});
  run_table(rows);

  // The live queue and its cursor survived all of that.
  ASSERT_HR(MQ_OK, send_body(open(MQ_SEND_ACCESS), "still here"));
  EXPECT_HR(MQ_OK, MQReceiveMessage(live, 0, MQ_ACTION_PEEK_CURRENT, nullptr, nullptr, nullptr,
                                    cursor, nullptr));
  EXPECT_HR(MQ_OK, MQCloseCursor(cursor));
  EXPECT_HR(MQ_OK, MQCloseQueue(live));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQCloseQueue(live));  // closed twice
}

// ---- MQSendMessage -----------------------------------------------------------------------

TEST_F(BadInput, SendMessageHandles) {
  QUEUEHANDLE send = open(MQ_SEND_ACCESS);
  QUEUEHANDLE receive = open(MQ_RECEIVE_ACCESS);
  QUEUEHANDLE peek = open(MQ_PEEK_ACCESS);
  QUEUEHANDLE stale = open(MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, MQCloseQueue(stale));
  HANDLE cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(send, &cursor));

  std::vector<Row> rows;
  for (const auto& [what, h] : forged_from(send)) {
    rows.push_back(
        {"forged: " + what, MQ_ERROR_INVALID_HANDLE, [h = h] { return send_body(h, "x"); }});
  }
  rows.push_back({"stale", MQ_ERROR_INVALID_HANDLE, [&] { return send_body(stale, "x"); }});
  rows.push_back(
      {"a cursor handle", MQ_ERROR_INVALID_HANDLE, [&] { return send_body(cursor, "x"); }});
  rows.push_back(
      {"receive-only queue", MQ_ERROR_ACCESS_DENIED, [&] { return send_body(receive, "x"); }});
  rows.push_back({"peek-only queue", MQ_ERROR_ACCESS_DENIED, [&] { return send_body(peek, "x"); }});
  rows.push_back({"forged transaction", MQ_ERROR_TRANSACTION_USAGE, [&] {
                    char body[] = "x";
                    Props p = bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body), 1);
                    return MQSendMessage(send, p.get(), reinterpret_cast<ITransaction*>(16));
                  }});
  rows.push_back({"MQ_MTS_TRANSACTION (no DTC)", MQ_ERROR_DTC_CONNECT, [&] {
                    char body[] = "x";
                    Props p = bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body), 1);
                    return MQSendMessage(send, p.get(), MQ_MTS_TRANSACTION);
                  }});
  rows.push_back(
      {"MQ_SINGLE_MESSAGE to a non-transactional queue", MQ_ERROR_TRANSACTION_USAGE, [&] {
         char body[] = "x";
         Props p = bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body), 1);
         return MQSendMessage(send, p.get(), MQ_SINGLE_MESSAGE);
       }});
  run_table(rows);
  EXPECT_EQ(0u, count_messages());
  MQCloseCursor(cursor);
  MQCloseQueue(send);
  MQCloseQueue(receive);
  MQCloseQueue(peek);
}

TEST_F(BadInput, SendMessageProperties) {
  QUEUEHANDLE send = open(MQ_SEND_ACCESS);
  UCHAR id19[19] = {};
  UCHAR id20[20] = {};
  UCHAR id21[21] = {};
  const std::wstring label251(251, L'l');
  const std::wstring label_huge(1 << 20, L'l');
  const wchar_t not_unicode[] = {L'a', static_cast<wchar_t>(0xDFFF), 0};
  const wchar_t negative[] = {static_cast<wchar_t>(-1), 0};
  auto sendp = [&](Props p) { return MQSendMessage(send, p.get(), MQ_NO_TRANSACTION); };
  // A property of the right id with every other VT is refused with its status set.
  auto wrong_vt = [&](MSGPROPID id, VARTYPE vt) {
    Props p;
    p.add(id, vt);
    MQMSGPROPS* props = p.get();
    HRESULT hr = MQSendMessage(send, props, MQ_NO_TRANSACTION);
    EXPECT_HR(hr, p.status[0]) << "aStatus of the wrong VT";
    return hr;
  };

  std::vector<Row> rows = {
      {"NULL MQMSGPROPS", MQ_ERROR_INVALID_PARAMETER,
       [&] { return MQSendMessage(send, nullptr, MQ_NO_TRANSACTION); }},
      {"cProp 257, NULL arrays", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         MQMSGPROPS p{257, nullptr, nullptr, nullptr};
         return MQSendMessage(send, &p, MQ_NO_TRANSACTION);
       }},
      {"cProp 0xFFFFFFFF, NULL arrays", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         MQMSGPROPS p{0xFFFFFFFFu, nullptr, nullptr, nullptr};
         return MQSendMessage(send, &p, MQ_NO_TRANSACTION);
       }},
      {"cProp 1, NULL aPropID", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         MQPROPVARIANT v{};
         MQMSGPROPS p{1, nullptr, &v, nullptr};
         return MQSendMessage(send, &p, MQ_NO_TRANSACTION);
       }},
      {"cProp 1, NULL aPropVar", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         MSGPROPID id = PROPID_M_BODY;
         MQMSGPROPS p{1, &id, nullptr, nullptr};
         return MQSendMessage(send, &p, MQ_NO_TRANSACTION);
       }},
      {"property id 0", MQ_ERROR_ILLEGAL_PROPID, [&] { return sendp(ui4(0, 1)); }},
      {"property id 0xFFFFFFFF", MQ_ERROR_ILLEGAL_PROPID,
       [&] { return sendp(ui4(0xFFFFFFFFu, 1)); }},
      {"queue property id", MQ_ERROR_ILLEGAL_PROPID,
       [&] { return sendp(ui1(PROPID_Q_AUTHENTICATE, 1)); }},
      {"body VT_UI4", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] { return wrong_vt(PROPID_M_BODY, VT_UI4); }},
      {"body VT_NULL", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] { return wrong_vt(PROPID_M_BODY, VT_NULL); }},
      {"body VT_LPWSTR", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] { return wrong_vt(PROPID_M_BODY, VT_LPWSTR); }},
      {"label VT_UI1|VT_VECTOR", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] { return wrong_vt(PROPID_M_LABEL, VT_UI1 | VT_VECTOR); }},
      {"priority VT_UI4", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] { return wrong_vt(PROPID_M_PRIORITY, VT_UI4); }},
      {"app-specific VT_UI1", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] { return wrong_vt(PROPID_M_APPSPECIFIC, VT_UI1); }},
      {"security context VT_UI8", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] { return wrong_vt(PROPID_M_SECURITY_CONTEXT, VT_UI8); }},
      {"class VT_EMPTY", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] { return wrong_vt(PROPID_M_CLASS, VT_EMPTY); }},
      {"body NULL with 10 bytes", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(bytes(PROPID_M_BODY, nullptr, 10)); }},
      {"body NULL with 0xFFFFFFFF bytes", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(bytes(PROPID_M_BODY, nullptr, 0xFFFFFFFFu)); }},
      {"message id of 19 bytes", MQ_ERROR_ILLEGAL_PROPERTY_SIZE,
       [&] { return sendp(bytes(PROPID_M_MSGID, id19, 19)); }},
      {"message id of 21 bytes", MQ_ERROR_ILLEGAL_PROPERTY_SIZE,
       [&] { return sendp(bytes(PROPID_M_MSGID, id21, 21)); }},
      {"message id NULL", MQ_ERROR_ILLEGAL_PROPERTY_SIZE,
       [&] { return sendp(bytes(PROPID_M_MSGID, nullptr, 20)); }},
      {"correlation id of 0 bytes", MQ_ERROR_ILLEGAL_PROPERTY_SIZE,
       [&] { return sendp(bytes(PROPID_M_CORRELATIONID, id20, 0)); }},
      {"priority 8", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(ui1(PROPID_M_PRIORITY, 8)); }},
      {"priority 255", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(ui1(PROPID_M_PRIORITY, 255)); }},
      {"delivery 2", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(ui1(PROPID_M_DELIVERY, 2)); }},
      {"acknowledge 0x10", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(ui1(PROPID_M_ACKNOWLEDGE, 0x10)); }},
      {"journal 4", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(ui1(PROPID_M_JOURNAL, 4)); }},
      {"sender id type 2", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(ui4(PROPID_M_SENDERID_TYPE, 2)); }},
      {"auth level 3", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(ui4(PROPID_M_AUTH_LEVEL, 3)); }},
      {"auth level 0xFFFFFFFF", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(ui4(PROPID_M_AUTH_LEVEL, 0xFFFFFFFFu)); }},
      {"label NULL", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(text(PROPID_M_LABEL, nullptr)); }},
      {"label of 251 characters", MQ_ERROR_LABEL_TOO_LONG,
       [&] { return sendp(text(PROPID_M_LABEL, label251.c_str())); }},
      {"label of 1 Mi characters", MQ_ERROR_LABEL_TOO_LONG,
       [&] { return sendp(text(PROPID_M_LABEL, label_huge.c_str())); }},
      {"label with a lone surrogate", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(text(PROPID_M_LABEL, not_unicode)); }},
      {"label with WCHAR -1", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(text(PROPID_M_LABEL, negative)); }},
      {"response queue NULL", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(text(PROPID_M_RESP_QUEUE, nullptr)); }},
      {"response queue a path name", MQ_ERROR_ILLEGAL_FORMATNAME,
       [&] { return sendp(text(PROPID_M_RESP_QUEUE, L".\\private$\\r")); }},
      {"admin queue not Unicode", MQ_ERROR_ILLEGAL_FORMATNAME,
       [&] { return sendp(text(PROPID_M_ADMIN_QUEUE, not_unicode)); }},
      {"admin queue empty", MQ_ERROR_ILLEGAL_FORMATNAME,
       [&] { return sendp(text(PROPID_M_ADMIN_QUEUE, L"")); }},
      {"sender certificate of 0 bytes", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(bytes(PROPID_M_SENDER_CERT, id20, 0)); }},
      {"sender certificate NULL with 5 bytes", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] { return sendp(bytes(PROPID_M_SENDER_CERT, nullptr, 5)); }},
      {"a good property, then a bad one", MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
       [&] {
         Props p = ui1(PROPID_M_PRIORITY, 1);
         p.add(PROPID_M_DELIVERY, VT_UI1, [](MQPROPVARIANT& v) { v.bVal = 9; });
         MQMSGPROPS* props = p.get();
         HRESULT hr = MQSendMessage(send, props, MQ_NO_TRANSACTION);
         EXPECT_HR(MQ_OK, p.status[0]);
         EXPECT_HR(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, p.status[1]);
         return hr;
       }},
  };
  run_table(rows);
  // Nothing was stored by any of them.
  EXPECT_EQ(0u, count_messages());

  // Zero sizes that are fine: no properties at all, an empty body, an empty label, an empty
  // NULL body. Each stores one message; aStatus NULL is fine too.
  run_table({
      {"cProp 0, NULL arrays", MQ_OK,
       [&] {
         MQMSGPROPS p{0, nullptr, nullptr, nullptr};
         return MQSendMessage(send, &p, MQ_NO_TRANSACTION);
       }},
      {"empty body", MQ_OK, [&] { return sendp(bytes(PROPID_M_BODY, id20, 0)); }},
      {"NULL body of 0 bytes", MQ_OK, [&] { return sendp(bytes(PROPID_M_BODY, nullptr, 0)); }},
      {"empty label, no aStatus", MQ_OK,
       [&] {
         Props p = text(PROPID_M_LABEL, L"");
         MQMSGPROPS* props = p.get();
         props->aStatus = nullptr;
         return MQSendMessage(send, props, MQ_NO_TRANSACTION);
       }},
  });
  EXPECT_EQ(4u, count_messages());
  MQCloseQueue(send);
}

// ---- MQReceiveMessage --------------------------------------------------------------------

TEST_F(BadInput, ReceiveMessage) {
  {
    QUEUEHANDLE s = open(MQ_SEND_ACCESS);
    ASSERT_HR(MQ_OK, send_body(s, std::string(100, 'b')));
    MQCloseQueue(s);
  }
  QUEUEHANDLE receive = open(MQ_RECEIVE_ACCESS);
  QUEUEHANDLE send = open(MQ_SEND_ACCESS);
  QUEUEHANDLE stale = open(MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, MQCloseQueue(stale));
  HANDLE cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(receive, &cursor));
  HANDLE closed_cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(receive, &closed_cursor));
  ASSERT_HR(MQ_OK, MQCloseCursor(closed_cursor));
  // A cursor of another queue.
  const std::wstring other = queue_ + L"-other";
  create_queue(other);
  QUEUEHANDLE other_q = nullptr;
  ASSERT_HR(MQ_OK, MQOpenQueue(format_of(other).c_str(), MQ_RECEIVE_ACCESS, 0, &other_q));
  HANDLE other_cursor = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(other_q, &other_cursor));

  auto recv = [](QUEUEHANDLE h, DWORD action, MQMSGPROPS* p, HANDLE c = nullptr,
                 ITransaction* tx = nullptr) {
    return MQReceiveMessage(h, 0, action, p, nullptr, nullptr, c, tx);
  };
  auto recvp = [&](Props p) { return recv(receive, MQ_ACTION_RECEIVE, p.get()); };
  UCHAR small[4] = {};
  UCHAR id19[19] = {};
  WCHAR label[8] = {};

  std::vector<Row> rows;
  // Copies, not structured bindings: a C++17 lambda cannot capture a binding (clang refuses).
  for (const auto& forged : forged_from(receive)) {
    const std::string what = forged.first;
    const HANDLE h = forged.second;
    rows.push_back({"forged queue: " + what, MQ_ERROR_INVALID_HANDLE,
                    [=] { return recv(h, MQ_ACTION_RECEIVE, nullptr); }});
    if (h != nullptr) {  // NULL is "no cursor"
      rows.push_back({"forged cursor: " + what, MQ_ERROR_INVALID_HANDLE,
                      [=] { return recv(receive, MQ_ACTION_PEEK_CURRENT, nullptr, h); }});
    }
  }
  for (const auto& forged : forged_from(cursor)) {
    const std::string what = forged.first;
    const HANDLE h = forged.second;
    if (h == nullptr) continue;
    rows.push_back({"cursor forged from a cursor: " + what, MQ_ERROR_INVALID_HANDLE,
                    [=] { return recv(receive, MQ_ACTION_PEEK_CURRENT, nullptr, h); }});
  }
  std::vector<Row> more = {
      {"stale queue", MQ_ERROR_INVALID_HANDLE,
       [&] { return recv(stale, MQ_ACTION_RECEIVE, nullptr); }},
      {"a cursor as the queue", MQ_ERROR_INVALID_HANDLE,
       [&] { return recv(cursor, MQ_ACTION_RECEIVE, nullptr); }},
      {"a queue as the cursor", MQ_ERROR_INVALID_HANDLE,
       [&] { return recv(receive, MQ_ACTION_PEEK_CURRENT, nullptr, receive); }},
      {"closed cursor", MQ_ERROR_INVALID_HANDLE,
       [&] { return recv(receive, MQ_ACTION_PEEK_CURRENT, nullptr, closed_cursor); }},
      {"cursor of another queue", MQ_ERROR_INVALID_HANDLE,
       [&] { return recv(receive, MQ_ACTION_PEEK_CURRENT, nullptr, other_cursor); }},
      {"send-only queue", MQ_ERROR_ACCESS_DENIED,
       [&] { return recv(send, MQ_ACTION_RECEIVE, nullptr); }},
      {"send-only queue, peek", MQ_ERROR_ACCESS_DENIED,
       [&] { return recv(send, MQ_ACTION_PEEK_CURRENT, nullptr); }},
      {"action 2", MQ_ERROR_ILLEGAL_CURSOR_ACTION, [&] { return recv(receive, 2, nullptr); }},
      {"action 0xFFFFFFFF", MQ_ERROR_ILLEGAL_CURSOR_ACTION,
       [&] { return recv(receive, 0xFFFFFFFFu, nullptr); }},
      {"peek-next without a cursor", MQ_ERROR_ILLEGAL_CURSOR_ACTION,
       [&] { return recv(receive, MQ_ACTION_PEEK_NEXT, nullptr); }},
      {"forged transaction", MQ_ERROR_TRANSACTION_USAGE,
       [&] {
         return recv(receive, MQ_ACTION_RECEIVE, nullptr, nullptr,
                     reinterpret_cast<ITransaction*>(32));
       }},
      {"MQ_XA_TRANSACTION (no DTC)", MQ_ERROR_DTC_CONNECT,
       [&] { return recv(receive, MQ_ACTION_RECEIVE, nullptr, nullptr, MQ_XA_TRANSACTION); }},
      {"overlapped with a forged hEvent", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         OVERLAPPED ov;
         std::memset(&ov, 0, sizeof ov);
         ov.hEvent = receive;  // a queue handle, not an event
         return MQReceiveMessage(receive, 0, MQ_ACTION_RECEIVE, nullptr, &ov, nullptr, nullptr,
                                 nullptr);
       }},
      {"callback in a transaction", MQ_ERROR_TRANSACTION_USAGE,
       [&] {
         PMQRECEIVECALLBACK cb = [](HRESULT, QUEUEHANDLE, DWORD, DWORD, MQMSGPROPS*, LPOVERLAPPED,
                                    HANDLE) {};
         return MQReceiveMessage(receive, 0, MQ_ACTION_RECEIVE, nullptr, nullptr, cb, nullptr,
                                 MQ_SINGLE_MESSAGE);
       }},
      {"cProp 257, NULL arrays", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         MQMSGPROPS p{257, nullptr, nullptr, nullptr};
         return recv(receive, MQ_ACTION_RECEIVE, &p);
       }},
      {"cProp 0xFFFFFFFF, NULL arrays", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         MQMSGPROPS p{0xFFFFFFFFu, nullptr, nullptr, nullptr};
         return recv(receive, MQ_ACTION_RECEIVE, &p);
       }},
      {"cProp 2, NULL aPropVar", MQ_ERROR_INVALID_PARAMETER,
       [&] {
         MSGPROPID ids[2] = {PROPID_M_BODY, PROPID_M_LABEL};
         MQMSGPROPS p{2, ids, nullptr, nullptr};
         return recv(receive, MQ_ACTION_RECEIVE, &p);
       }},
      {"property id 0", MQ_ERROR_ILLEGAL_PROPID, [&] { return recvp(ui4(0, 0)); }},
      {"property id 0xFFFFFFFF", MQ_ERROR_ILLEGAL_PROPID,
       [&] { return recvp(ui4(0xFFFFFFFFu, 0)); }},
      {"body VT_UI4", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] {
         Props p;
         p.add(PROPID_M_BODY, VT_UI4);
         return recvp(p);
       }},
      {"body VT_NULL (buffers need their type)", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] {
         Props p;
         p.add(PROPID_M_BODY, VT_NULL);
         return recvp(p);
       }},
      {"label VT_NULL", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] {
         Props p;
         p.add(PROPID_M_LABEL, VT_NULL);
         return recvp(p);
       }},
      {"body size VT_LPWSTR", MQ_ERROR_ILLEGAL_PROPERTY_VT,
       [&] {
         Props p;
         p.add(PROPID_M_BODY_SIZE, VT_LPWSTR);
         return recvp(p);
       }},
      {"body NULL with 10 bytes", MQ_ERROR_INVALID_PARAMETER,
       [&] { return recvp(bytes(PROPID_M_BODY, nullptr, 10)); }},
      {"label NULL", MQ_ERROR_INVALID_PARAMETER,
       [&] { return recvp(text(PROPID_M_LABEL, nullptr)); }},
      {"message id of 19 bytes", MQ_ERROR_ILLEGAL_PROPERTY_SIZE,
       [&] { return recvp(bytes(PROPID_M_MSGID, id19, 19)); }},
      {"message id NULL", MQ_ERROR_ILLEGAL_PROPERTY_SIZE,
       [&] { return recvp(bytes(PROPID_M_MSGID, nullptr, 20)); }},
      // Buffers that are too small (zero included): the message stays.
      {"body buffer of 0 bytes", MQ_ERROR_BUFFER_OVERFLOW,
       [&] { return recvp(bytes(PROPID_M_BODY, nullptr, 0)); }},
      {"body buffer of 4 bytes", MQ_ERROR_BUFFER_OVERFLOW,
       [&] { return recvp(bytes(PROPID_M_BODY, small, sizeof small)); }},
      {"label buffer, no length", MQ_ERROR_LABEL_BUFFER_TOO_SMALL,
       [&] {
         wchar_t one[1] = {L'?'};
         return recvp(text(PROPID_M_LABEL, one));
       }},
      {"sender certificate buffer of 0 bytes (unsigned message: fits)", MQ_OK,
       [&] {
         Props p = bytes(PROPID_M_SENDER_CERT, nullptr, 0);
         return recv(receive, MQ_ACTION_PEEK_CURRENT, p.get());
       }},
  };
  rows.insert(rows.end(), more.begin(), more.end());
  run_table(rows);

  // A label buffer of 8 WCHARs with LABEL_LEN 0 is too small for the empty label (it needs
  // its NUL) and the length is reported.
  Props p = text(PROPID_M_LABEL, label);
  p.add(PROPID_M_LABEL_LEN, VT_UI4, [](MQPROPVARIANT& v) { v.ulVal = 0; });
  EXPECT_HR(MQ_ERROR_LABEL_BUFFER_TOO_SMALL, recv(receive, MQ_ACTION_RECEIVE, p.get()));
  EXPECT_EQ(1u, p.vars[1].ulVal);

  // The message is still there, whole.
  std::vector<UCHAR> body(200);
  Props ok = bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
  ok.add(PROPID_M_BODY_SIZE, VT_NULL);
  EXPECT_HR(MQ_OK, recv(receive, MQ_ACTION_RECEIVE, ok.get()));
  EXPECT_EQ(100u, ok.vars[1].ulVal);
  EXPECT_EQ(std::string(100, 'b'),
            std::string(reinterpret_cast<char*>(body.data()), ok.vars[0].caub.cElems));
  // Empty queue, zero timeout: a timeout, not a crash or a hang.
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, recv(receive, MQ_ACTION_RECEIVE, nullptr));
  MQCloseCursor(cursor);
  MQCloseCursor(other_cursor);
  MQCloseQueue(other_q);
  MQCloseQueue(receive);
  MQCloseQueue(send);
}

// ---- MQCreateCursor / MQCloseCursor / MQFreeMemory ---------------------------------------

TEST_F(BadInput, Cursors) {
  QUEUEHANDLE q = open(MQ_RECEIVE_ACCESS);
  QUEUEHANDLE stale = open(MQ_RECEIVE_ACCESS);
  ASSERT_HR(MQ_OK, MQCloseQueue(stale));
  HANDLE live = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(q, &live));
  HANDLE closed = nullptr;
  ASSERT_HR(MQ_OK, MQCreateCursor(q, &closed));
  ASSERT_HR(MQ_OK, MQCloseCursor(closed));

  HANDLE out = nullptr;
  std::vector<Row> rows = {
      {"NULL out", MQ_ERROR_INVALID_PARAMETER, [&] { return MQCreateCursor(q, nullptr); }},
      {"stale queue", MQ_ERROR_INVALID_HANDLE, [&] { return MQCreateCursor(stale, &out); }},
      {"a cursor as the queue", MQ_ERROR_INVALID_HANDLE,
       [&] { return MQCreateCursor(live, &out); }},
      {"close a closed cursor", MQ_ERROR_INVALID_HANDLE, [&] { return MQCloseCursor(closed); }},
      {"close a queue handle", MQ_ERROR_INVALID_HANDLE, [&] { return MQCloseCursor(q); }},
  };
  for (const auto& [what, h] : forged_from(q)) {
    rows.push_back({"create on forged queue: " + what, MQ_ERROR_INVALID_HANDLE,
                    [&, h = h] { return MQCreateCursor(h, &out); }});
  }
  for (const auto& [what, h] : forged_from(live)) {
    rows.push_back({"close forged cursor: " + what, MQ_ERROR_INVALID_HANDLE,
                    [h = h] { return MQCloseCursor(h); }});
  }
  run_table(rows);
  EXPECT_EQ(nullptr, out);

  // A cursor outlives its queue handle without crashing; using it then is an invalid handle
  // (its queue handle is gone), and closing it still works once.
  ASSERT_HR(MQ_OK, MQCloseQueue(q));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQReceiveMessage(q, 0, MQ_ACTION_PEEK_CURRENT, nullptr,
                                                      nullptr, nullptr, live, nullptr));
  EXPECT_HR(MQ_OK, MQCloseCursor(live));
  EXPECT_HR(MQ_ERROR_INVALID_HANDLE, MQCloseCursor(live));

  MQFreeMemory(nullptr);  // MSMQ allows it; must be a no-op
}

}  // namespace
