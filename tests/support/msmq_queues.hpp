// Private queues of this machine for the MSMQ C API tests: made with a unique name, and opened,
// each failure a test failure (EXPECT_HR) rather than an exception.
#pragma once

#include <gtest/gtest.h>
#include <mq.h>
#include <unistd.h>

#include <string>

#include "tests/support/hresult_text.hpp"
#include "tests/support/msmq_props.hpp"

namespace mqsec::testing {

// Creates .\private$\<prefix><stem>-<pid>-<n>, transactional and authenticated as asked, and
// returns its format name (DIRECT=OS:.\private$\...).
inline std::wstring make_private_queue(const std::wstring& prefix, const std::wstring& stem,
                                       bool transactional = false, bool authenticate = false) {
  static int n = 0;
  const std::wstring name =
      prefix + stem + L"-" + std::to_wstring(getpid()) + L"-" + std::to_wstring(++n);
  const std::wstring path = L".\\private$\\" + name;
  Props p;
  p.wstr(PROPID_Q_PATHNAME, path.c_str());
  p.ui1(PROPID_Q_TRANSACTION, transactional ? MQ_TRANSACTIONAL : MQ_TRANSACTIONAL_NONE);
  if (authenticate) p.ui1(PROPID_Q_AUTHENTICATE, MQ_AUTHENTICATE);
  WCHAR buf[256];
  DWORD len = 256;
  EXPECT_HR(MQ_OK, MQCreateQueue(nullptr, p.queue(), buf, &len));
  return L"DIRECT=OS:.\\private$\\" + name;
}

inline QUEUEHANDLE open_queue(const std::wstring& format, DWORD access) {
  QUEUEHANDLE h = nullptr;
  EXPECT_HR(MQ_OK, MQOpenQueue(format.c_str(), access, MQ_DENY_NONE, &h));
  return h;
}

}  // namespace mqsec::testing
