// Queue property marshalling (PROPID_Q_*).
#include "src/abi/queue_props.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "mqsec/error.hpp"
#include "src/abi/wide.hpp"
#include "src/core/destination.hpp"
#include "src/core/locate.hpp"

namespace mqsec::abi {
namespace {

constexpr DWORD kMaxQueueProps = 128;

// MSMQ's type of each queue property; 0: not a queue property.
VARTYPE queue_vt(PROPID id) {
  switch (id) {
    case PROPID_Q_INSTANCE:
    case PROPID_Q_TYPE:
      return VT_CLSID;
    case PROPID_Q_PATHNAME:
    case PROPID_Q_LABEL:
    case PROPID_Q_PATHNAME_DNS:
    case PROPID_Q_MULTICAST_ADDRESS:
    case PROPID_Q_ADS_PATH:
      return VT_LPWSTR;
    case PROPID_Q_JOURNAL:
    case PROPID_Q_AUTHENTICATE:
    case PROPID_Q_TRANSACTION:
      return VT_UI1;
    case PROPID_Q_QUOTA:
    case PROPID_Q_JOURNAL_QUOTA:
    case PROPID_Q_PRIV_LEVEL:
      return VT_UI4;
    case PROPID_Q_BASEPRIORITY:
      return VT_I2;
    case PROPID_Q_CREATE_TIME:
    case PROPID_Q_MODIFY_TIME:
      return VT_I4;
    default:
      return 0;
  }
}

}  // namespace

VARTYPE queue_property_vt(PROPID id) { return queue_vt(id); }

namespace {

void check_array(MQQUEUEPROPS* props) {
  if (props == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "MQQUEUEPROPS is NULL");
  if (props->cProp > kMaxQueueProps ||
      (props->cProp > 0 && (props->aPropID == nullptr || props->aPropVar == nullptr))) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "malformed MQQUEUEPROPS");
  }
  if (props->aStatus != nullptr) {
    for (DWORD i = 0; i < props->cProp; ++i) props->aStatus[i] = MQ_OK;
  }
}

[[noreturn]] void fail(MQQUEUEPROPS* props, DWORD i, HRESULT code, const std::string& why) {
  if (props->aStatus != nullptr) props->aStatus[i] = code;
  throw Error(code, "queue property " + std::to_string(props->aPropID[i]) + ": " + why);
}

// A multicast address as MSMQ takes it: "<IPv4 class D address>:<port>".
bool valid_multicast(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon + 1 == s.size() || s.size() - colon > 6) return false;
  // inet_pton takes exactly four decimal parts of 0..255 (no sign, no space, no other form).
  in_addr addr{};
  if (inet_pton(AF_INET, s.substr(0, colon).c_str(), &addr) != 1) return false;
  const unsigned first = ntohl(addr.s_addr) >> 24;
  if (first < 224 || first > 239) return false;
  const std::string port = s.substr(colon + 1);
  if (!std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  return std::stoul(port) <= 65535;
}

}  // namespace

WCHAR* allocated_wide(const std::string& utf8) {
  const WString w = wide_from_utf8(utf8);
  auto* out = static_cast<WCHAR*>(std::malloc((w.size() + 1) * sizeof(WCHAR)));
  if (out == nullptr) throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES, "out of memory");
  wide_copy(out, w);
  return out;
}

HRESULT parse_queue_props(MQQUEUEPROPS* props, QueuePropsUse use, transport::QueueInfo& q,
                          bool* has_path) {
  check_array(props);
  HRESULT overall = MQ_OK;
  std::vector<PROPID> seen;
  if (has_path != nullptr) *has_path = false;
  for (DWORD i = 0; i < props->cProp; ++i) {
    const PROPID id = props->aPropID[i];
    MQPROPVARIANT& v = props->aPropVar[i];
    const VARTYPE want = queue_vt(id);
    if (want == 0) fail(props, i, MQ_ERROR_ILLEGAL_PROPID, "not a queue property");
    // MULTICAST_ADDRESS may be VT_EMPTY: no multicast address (MQSetQueueProperties removes it).
    const bool empty_multicast = id == PROPID_Q_MULTICAST_ADDRESS && v.vt == VT_EMPTY;
    if (v.vt != want && !empty_multicast) {
      fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VT, "wrong VT " + std::to_string(v.vt));
    }
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) {
      if (props->aStatus != nullptr) props->aStatus[i] = MQ_INFORMATION_DUPLICATE_PROPERTY;
      overall = MQ_INFORMATION_PROPERTY;
      continue;
    }
    seen.push_back(id);
    switch (id) {
      case PROPID_Q_PATHNAME:
        if (use == QueuePropsUse::Set) {
          fail(props, i, MQ_ERROR_PROPERTY_NOTALLOWED, "a queue's path name cannot change");
        }
        if (v.pwszVal == nullptr) fail(props, i, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, "NULL path name");
        q.name = core::queue_from_path(wide_to_utf8(v.pwszVal, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME));
        if (has_path != nullptr) *has_path = true;
        break;
      case PROPID_Q_LABEL:
        if (v.pwszVal == nullptr) fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "NULL label");
        if (wide_length(v.pwszVal) > MQ_MAX_Q_LABEL_LEN) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "queue label over 124 characters");
        }
        q.label = wide_to_utf8(v.pwszVal, MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
        break;
      case PROPID_Q_AUTHENTICATE:
        if (v.bVal > MQ_AUTHENTICATE) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "AUTHENTICATE is 0 or 1");
        }
        q.authenticate = v.bVal == MQ_AUTHENTICATE;
        break;
      case PROPID_Q_TRANSACTION:
        if (use == QueuePropsUse::Set) {
          fail(props, i, MQ_ERROR_PROPERTY_NOTALLOWED,
               "whether a queue is transactional is set when it is created");
        }
        if (v.bVal > MQ_TRANSACTIONAL) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "TRANSACTION is 0 or 1");
        }
        q.transactional = v.bVal == MQ_TRANSACTIONAL;
        break;
      case PROPID_Q_JOURNAL:
        if (v.bVal > MQ_JOURNAL)
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "JOURNAL is 0 or 1");
        q.journal = v.bVal == MQ_JOURNAL;
        break;
      case PROPID_Q_QUOTA:
        q.quota = v.ulVal;
        break;
      case PROPID_Q_JOURNAL_QUOTA:
        q.journal_quota = v.ulVal;
        break;
      case PROPID_Q_BASEPRIORITY:
        q.base_priority = v.iVal;
        break;
      case PROPID_Q_PRIV_LEVEL:
        if (v.ulVal == MQ_PRIV_LEVEL_BODY) {
          // Honouring it would mean refusing every message: mqsec does not encrypt bodies.
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
               "MQ_PRIV_LEVEL_BODY: message encryption is not supported, so a queue that "
               "accepts only encrypted messages cannot be honoured");
        }
        if (v.ulVal != MQ_PRIV_LEVEL_NONE && v.ulVal != MQ_PRIV_LEVEL_OPTIONAL) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "unknown privacy level");
        }
        q.privacy = v.ulVal;
        break;
      case PROPID_Q_TYPE:
        if (v.puuid == nullptr) fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "NULL type GUID");
        std::memcpy(q.type.data(), v.puuid, 16);
        break;
      case PROPID_Q_MULTICAST_ADDRESS: {
        if (empty_multicast) {
          q.multicast_address.clear();
          break;
        }
        if (v.pwszVal == nullptr) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "NULL multicast address");
        }
        std::string a = wide_to_utf8(v.pwszVal, MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
        if (!a.empty() && !valid_multicast(a)) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
               "a multicast address is <class D IPv4 address>:<port>, e.g. 234.1.1.1:8001");
        }
        q.multicast_address = std::move(a);
        break;
      }
      default:
        // INSTANCE, CREATE_TIME, MODIFY_TIME, PATHNAME_DNS, ADS_PATH: Message Queuing's own.
        if (use == QueuePropsUse::Set) {
          fail(props, i, MQ_ERROR_PROPERTY_NOTALLOWED, "a read-only queue property");
        }
        if (props->aStatus != nullptr) props->aStatus[i] = MQ_INFORMATION_PROPERTY_IGNORED;
        overall = MQ_INFORMATION_PROPERTY;
        break;
    }
  }
  return overall;
}

void check_queue_props_get(MQQUEUEPROPS* props) {
  check_array(props);
  for (DWORD i = 0; i < props->cProp; ++i) {
    const PROPID id = props->aPropID[i];
    const MQPROPVARIANT& v = props->aPropVar[i];
    const VARTYPE want = queue_vt(id);
    if (want == 0) fail(props, i, MQ_ERROR_ILLEGAL_PROPID, "not a queue property");
    // VT_NULL: the runtime sets the type (and allocates strings and GUIDs). A fixed-size type
    // may also be given as itself, a GUID with its buffer; strings are always allocated.
    if (v.vt == VT_NULL) continue;
    if (v.vt != want || want == VT_LPWSTR) {
      fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VT,
           want == VT_LPWSTR ? "strings are returned allocated: pass VT_NULL"
                             : "wrong VT " + std::to_string(v.vt));
    }
    if (want == VT_CLSID && v.puuid == nullptr) {
      fail(props, i, MQ_ERROR_INVALID_PARAMETER, "NULL GUID buffer");
    }
  }
}

HRESULT fill_queue_props(MQQUEUEPROPS* props, const transport::QueueInfo& q,
                         const std::string& path_name) {
  HRESULT overall = MQ_OK;
  // What was allocated (and in which variant), freed again if a later allocation fails, and
  // that variant set back to VT_NULL: nothing half-filled leaks or dangles.
  std::vector<std::pair<DWORD, void*>> allocated;
  try {
    for (DWORD i = 0; i < props->cProp; ++i) {
      MQPROPVARIANT& v = props->aPropVar[i];
      const PROPID id = props->aPropID[i];
      const bool was_null = v.vt == VT_NULL;
      auto text = [&](const std::string& s) {
        WCHAR* w = allocated_wide(s);
        allocated.emplace_back(i, w);
        v.vt = VT_LPWSTR;
        v.pwszVal = w;
      };
      auto guid = [&](const std::array<uint8_t, 16>& g) {
        if (was_null) {
          auto* u = static_cast<CLSID*>(std::malloc(sizeof(CLSID)));
          if (u == nullptr) throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES, "out of memory");
          allocated.emplace_back(i, u);
          v.puuid = u;
        }
        v.vt = VT_CLSID;
        std::memcpy(v.puuid, g.data(), 16);
      };
      switch (id) {
        case PROPID_Q_PATHNAME:
          text(path_name);
          break;
        case PROPID_Q_PATHNAME_DNS:
          // mqsec's machine names are what it has; no DNS domain is added.
          text(path_name);
          break;
        case PROPID_Q_LABEL:
          text(q.label);
          break;
        case PROPID_Q_MULTICAST_ADDRESS:
          if (q.multicast_address.empty()) {
            v.vt = VT_EMPTY;  // MSMQ: no multicast address
          } else {
            text(q.multicast_address);
          }
          break;
        case PROPID_Q_TYPE:
          guid(q.type);
          break;
        case PROPID_Q_INSTANCE: {
          const core::MachineGuid g = core::queue_instance_guid(core::this_machine(), q.id);
          std::array<uint8_t, 16> bytes{};
          static_assert(sizeof g == 16);
          std::memcpy(bytes.data(), &g, 16);
          guid(bytes);
          break;
        }
        case PROPID_Q_JOURNAL:
          v.vt = VT_UI1;
          v.bVal = q.journal ? MQ_JOURNAL : MQ_JOURNAL_NONE;
          break;
        case PROPID_Q_AUTHENTICATE:
          v.vt = VT_UI1;
          v.bVal = q.authenticate ? MQ_AUTHENTICATE : MQ_AUTHENTICATE_NONE;
          break;
        case PROPID_Q_TRANSACTION:
          v.vt = VT_UI1;
          v.bVal = q.transactional ? MQ_TRANSACTIONAL : MQ_TRANSACTIONAL_NONE;
          break;
        case PROPID_Q_QUOTA:
          v.vt = VT_UI4;
          v.ulVal = q.quota;
          break;
        case PROPID_Q_JOURNAL_QUOTA:
          v.vt = VT_UI4;
          v.ulVal = q.journal_quota;
          break;
        case PROPID_Q_PRIV_LEVEL:
          v.vt = VT_UI4;
          v.ulVal = q.privacy;
          break;
        case PROPID_Q_BASEPRIORITY:
          v.vt = VT_I2;
          v.iVal = q.base_priority;
          break;
        case PROPID_Q_CREATE_TIME:
          v.vt = VT_I4;
          v.lVal = static_cast<LONG>(q.created);
          break;
        case PROPID_Q_MODIFY_TIME:
          v.vt = VT_I4;
          v.lVal = static_cast<LONG>(q.modified != 0 ? q.modified : q.created);
          break;
        default:
          // ADS_PATH: public queues in Active Directory have one; mqsec's queues do not.
          if (props->aStatus != nullptr) props->aStatus[i] = MQ_INFORMATION_UNSUPPORTED_PROPERTY;
          overall = MQ_INFORMATION_PROPERTY;
          break;
      }
    }
  } catch (...) {
    for (auto [i, p] : allocated) {
      std::free(p);
      props->aPropVar[i].vt = VT_NULL;
      props->aPropVar[i].pwszVal = nullptr;
    }
    throw;
  }
  return overall;
}

}  // namespace mqsec::abi
