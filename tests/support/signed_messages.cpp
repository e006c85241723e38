// Send one signed message, receive it with its trust properties (signed_messages.hpp).
#include "tests/support/signed_messages.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>

#include "tests/support/hresult_text.hpp"

namespace mqsec::testing {

std::wstring create_authenticated_queue(const std::string& name) {
  std::wstring path = L".\\private$\\";
  for (char c : name) path += static_cast<wchar_t>(c);
  QUEUEPROPID ids[2] = {PROPID_Q_PATHNAME, PROPID_Q_AUTHENTICATE};
  MQPROPVARIANT v[2];
  v[0].vt = VT_LPWSTR;
  v[0].pwszVal = path.data();
  v[1].vt = VT_UI1;
  v[1].bVal = MQ_AUTHENTICATE;
  MQQUEUEPROPS props = {2, ids, v, nullptr};
  WCHAR format[256] = {};
  DWORD len = 256;
  HRESULT hr = MQCreateQueue(nullptr, &props, format, &len);
  if (hr != MQ_OK) throw std::runtime_error("MQCreateQueue failed: " + hr_text(hr));
  return format;
}

void send_signed(const std::wstring& format, const Bytes& der, const std::string& body) {
  HANDLE ctx = nullptr;
  ASSERT_HR(MQ_OK, MQGetSecurityContextEx(const_cast<uint8_t*>(der.data()),
                                          static_cast<DWORD>(der.size()), &ctx));
  QUEUEHANDLE q = nullptr;
  HRESULT open_hr = MQOpenQueue(format.c_str(), MQ_SEND_ACCESS, MQ_DENY_NONE, &q);
  if (open_hr != MQ_OK) MQFreeSecurityContext(ctx);
  ASSERT_HR(MQ_OK, open_hr);
  std::string text = body;
  MSGPROPID ids[3] = {PROPID_M_BODY, PROPID_M_AUTH_LEVEL, PROPID_M_SECURITY_CONTEXT};
  MQPROPVARIANT v[3];
  v[0].vt = VT_UI1 | VT_VECTOR;
  v[0].caub.pElems = reinterpret_cast<UCHAR*>(text.data());
  v[0].caub.cElems = static_cast<ULONG>(text.size());
  v[1].vt = VT_UI4;
  v[1].ulVal = MQMSG_AUTH_LEVEL_ALWAYS;
  v[2].vt = VT_UI4;
  v[2].ulVal = static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx));
  MQMSGPROPS props = {3, ids, v, nullptr};
  EXPECT_HR(MQ_OK, MQSendMessage(q, &props, MQ_NO_TRANSACTION));
  MQCloseQueue(q);
  MQFreeSecurityContext(ctx);
}

ReceivedTrust receive_with_trust(const std::wstring& format) {
  ReceivedTrust r;
  QUEUEHANDLE q = nullptr;
  r.hr = MQOpenQueue(format.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &q);
  if (r.hr != MQ_OK) return r;
  MSGPROPID ids[3] = {PROPID_M_AUTHENTICATED, PROPID_M_MQSEC_SENDER_CONFIRMED,
                      PROPID_M_MQSEC_TRUST};
  MQPROPVARIANT v[3];
  for (auto& x : v) x.vt = VT_NULL;
  MQMSGPROPS props = {3, ids, v, nullptr};
  r.hr = MQReceiveMessage(q, 0, MQ_ACTION_RECEIVE, &props, nullptr, nullptr, nullptr, nullptr);
  if (r.hr == MQ_OK) {
    r.authenticated = v[0].bVal;
    r.confirmed = v[1].bVal;
    r.trust = v[2].ulVal;
  }
  MQCloseQueue(q);
  return r;
}

}  // namespace mqsec::testing
