// A property array for the MSMQ C API tests: add properties of any VT, then pass msg() (an
// MQMSGPROPS) or queue() (an MQQUEUEPROPS) to the call; status() per property afterwards.
#pragma once

#include <mq.h>

#include <cstring>
#include <functional>
#include <vector>

namespace mqsec::testing {

struct Props {
  std::vector<PROPID> ids;
  std::vector<MQPROPVARIANT> vars;
  std::vector<HRESULT> status;
  MQMSGPROPS msg_props{};
  MQQUEUEPROPS queue_props{};

  // Adds property `id` of type `vt` (zeroed, then `set`); its index.
  size_t add(PROPID id, VARTYPE vt, std::function<void(MQPROPVARIANT&)> set = {}) {
    MQPROPVARIANT v;
    std::memset(&v, 0, sizeof v);
    v.vt = vt;
    if (set) set(v);
    ids.push_back(id);
    vars.push_back(v);
    return ids.size() - 1;
  }
  size_t null(PROPID id) { return add(id, VT_NULL); }
  size_t ui1(PROPID id, UCHAR b) {
    return add(id, VT_UI1, [b](MQPROPVARIANT& v) { v.bVal = b; });
  }
  size_t i2(PROPID id, SHORT s) {
    return add(id, VT_I2, [s](MQPROPVARIANT& v) { v.iVal = s; });
  }
  size_t ui4(PROPID id, ULONG u) {
    return add(id, VT_UI4, [u](MQPROPVARIANT& v) { v.ulVal = u; });
  }
  size_t wstr(PROPID id, const wchar_t* s) {
    return add(id, VT_LPWSTR, [s](MQPROPVARIANT& v) { v.pwszVal = const_cast<LPWSTR>(s); });
  }
  size_t bytes(PROPID id, UCHAR* data, ULONG n) {
    return add(id, VT_UI1 | VT_VECTOR, [=](MQPROPVARIANT& v) {
      v.caub.cElems = n;
      v.caub.pElems = data;
    });
  }
  MQPROPVARIANT& var(size_t i) { return vars[i]; }
  MQMSGPROPS* msg() {
    status.assign(ids.size(), MQ_OK);
    msg_props = {static_cast<DWORD>(ids.size()), ids.data(), vars.data(), status.data()};
    return &msg_props;
  }
  MQQUEUEPROPS* queue() {
    status.assign(ids.size(), MQ_OK);
    queue_props = {static_cast<DWORD>(ids.size()), ids.data(), vars.data(), status.data()};
    return &queue_props;
  }
};

}  // namespace mqsec::testing
