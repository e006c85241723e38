// Message property marshalling.
#include "src/abi/message_props.hpp"

#include <algorithm>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/locate.hpp"
#include "src/core/text.hpp"
#include "src/core/destination.hpp"
#include "src/core/expiry.hpp"
#include "src/abi/wide.hpp"

namespace mqsec::abi {

using core::utf16_to_utf8;
using core::utf8_to_utf16;

namespace {

constexpr VARTYPE kBytes = VT_UI1 | VT_VECTOR;
constexpr DWORD kMaxProps = 256;

struct Failure {
  DWORD index;
  HRESULT code;
  std::string why;
};

[[noreturn]] void fail(MQMSGPROPS* props, DWORD i, HRESULT code, const std::string& why) {
  if (props->aStatus) props->aStatus[i] = code;
  throw Error(code, "property " + std::to_string(props->aPropID[i]) + ": " + why);
}

void check_array(MQMSGPROPS* props) {
  if (props == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "MQMSGPROPS is NULL");
  if (props->cProp > kMaxProps) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "MQMSGPROPS.cProp is larger than 256");
  }
  if (props->cProp > 0 && (props->aPropID == nullptr || props->aPropVar == nullptr)) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "MQMSGPROPS.aPropID or aPropVar is NULL");
  }
  if (props->aStatus) {
    for (DWORD i = 0; i < props->cProp; ++i) props->aStatus[i] = MQ_OK;
  }
}

security::Bytes vector_bytes(MQMSGPROPS* props, DWORD i) {
  const CAUB& v = props->aPropVar[i].caub;
  if (v.cElems > 0 && v.pElems == nullptr)
    fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "NULL buffer");
  return security::Bytes(v.pElems, v.pElems + v.cElems);
}

std::u16string queue_text(MQMSGPROPS* props, DWORD i) {
  LPCWSTR s = props->aPropVar[i].pwszVal;
  if (s == nullptr) fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "NULL string");
  std::string utf8 = wide_to_utf8(s, MQ_ERROR_ILLEGAL_FORMATNAME);
  // Throws MQ_ERROR_ILLEGAL_FORMATNAME; a queue of another machine is accepted (a NACK to it
  // goes through the outgoing queue, like any remote send), and so is a well-formed PUBLIC=
  // name (resolved where a NACK or response is sent: core::destination_of_any_format).
  if (core::is_public_format(utf8)) {
    core::guid_of_public_format(utf8);
  } else {
    core::destination_of_format(utf8);
  }
  return utf8_to_utf16(utf8);
}

// Expected VT of each property (for both directions); 0 = unknown id.
VARTYPE vt_of(PROPID id) {
  switch (id) {
    case PROPID_M_CLASS:
      return VT_UI2;
    case PROPID_M_MSGID:
    case PROPID_M_CORRELATIONID:
    case PROPID_M_BODY:
    case PROPID_M_SENDERID:
    case PROPID_M_SENDER_CERT:
    case PROPID_M_SIGNATURE:
    case PROPID_M_EXTENSION:
    case PROPID_M_DEST_SYMM_KEY:
    case PROPID_M_XACTID:
    case PROPID_M_COMPOUND_MESSAGE:
      return kBytes;
    case PROPID_M_LOOKUPID:
      return VT_UI8;
    case PROPID_M_SRC_MACHINE_ID:
    case PROPID_M_CONNECTOR_TYPE:
      return VT_CLSID;
    case PROPID_M_TRACE:
    case PROPID_M_FIRST_IN_XACT:
    case PROPID_M_LAST_IN_XACT:
      return VT_UI1;
    case PROPID_M_PRIORITY:
    case PROPID_M_DELIVERY:
    case PROPID_M_ACKNOWLEDGE:
    case PROPID_M_JOURNAL:
    case PROPID_M_AUTHENTICATED:
    case PROPID_M_AUTHENTICATED_EX:
    case PROPID_M_MQSEC_SENDER_CONFIRMED:
      return VT_UI1;
    case PROPID_M_APPSPECIFIC:
    case PROPID_M_BODY_SIZE:
    case PROPID_M_LABEL_LEN:
    case PROPID_M_RESP_QUEUE_LEN:
    case PROPID_M_ADMIN_QUEUE_LEN:
    case PROPID_M_DEST_QUEUE_LEN:
    case PROPID_M_SENDERID_LEN:
    case PROPID_M_SENDERID_TYPE:
    case PROPID_M_AUTH_LEVEL:
    case PROPID_M_HASH_ALG:
    case PROPID_M_SENDER_CERT_LEN:
    case PROPID_M_SENTTIME:
    case PROPID_M_ARRIVEDTIME:
    case PROPID_M_SECURITY_CONTEXT:
    case PROPID_M_BODY_TYPE:
    case PROPID_M_MQSEC_TRUST:
    case PROPID_M_SIGNATURE_LEN:
    case PROPID_M_TIME_TO_REACH_QUEUE:
    case PROPID_M_TIME_TO_BE_RECEIVED:
    case PROPID_M_PRIV_LEVEL:
    case PROPID_M_VERSION:
    case PROPID_M_ENCRYPTION_ALG:
    case PROPID_M_EXTENSION_LEN:
    case PROPID_M_DEST_SYMM_KEY_LEN:
    case PROPID_M_PROV_TYPE:
    case PROPID_M_PROV_NAME_LEN:
    case PROPID_M_XACT_STATUS_QUEUE_LEN:
    case PROPID_M_RESP_FORMAT_NAME_LEN:
    case PROPID_M_DEST_FORMAT_NAME_LEN:
    case PROPID_M_SOAP_ENVELOPE_LEN:
    case PROPID_M_COMPOUND_MESSAGE_SIZE:
    case PROPID_M_DEADLETTER_QUEUE_LEN:
    case PROPID_M_ABORT_COUNT:
    case PROPID_M_MOVE_COUNT:
    case PROPID_M_LAST_MOVE_TIME:
      return VT_UI4;
    case PROPID_M_LABEL:
    case PROPID_M_RESP_QUEUE:
    case PROPID_M_ADMIN_QUEUE:
    case PROPID_M_DEST_QUEUE:
    case PROPID_M_PROV_NAME:
    case PROPID_M_XACT_STATUS_QUEUE:
    case PROPID_M_RESP_FORMAT_NAME:
    case PROPID_M_DEST_FORMAT_NAME:
    case PROPID_M_SOAP_ENVELOPE:
    case PROPID_M_SOAP_HEADER:
    case PROPID_M_SOAP_BODY:
    case PROPID_M_DEADLETTER_QUEUE:
      return VT_LPWSTR;
    default:
      return 0;
  }
}

}  // namespace

SendRequest parse_send(MQMSGPROPS* props) {
  check_array(props);
  SendRequest r;
  security::Envelope& e = r.envelope;
  std::vector<PROPID> seen;
  for (DWORD i = 0; i < props->cProp; ++i) {
    PROPID id = props->aPropID[i];
    MQPROPVARIANT& v = props->aPropVar[i];
    VARTYPE want = vt_of(id);
    if (want == 0) fail(props, i, MQ_ERROR_ILLEGAL_PROPID, "unknown property id");
    if (v.vt != want) {
      fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VT, "wrong VT " + std::to_string(v.vt));
    }
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) {
      if (props->aStatus) props->aStatus[i] = MQ_INFORMATION_DUPLICATE_PROPERTY;
      r.overall = MQ_INFORMATION_PROPERTY;
      continue;
    }
    seen.push_back(id);
    switch (id) {
      case PROPID_M_MSGID:
        if (v.caub.cElems != PROPID_M_MSGID_SIZE || v.caub.pElems == nullptr) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_SIZE, "message id buffer must be 20 bytes");
        }
        r.msgid_out = &v;
        break;
      case PROPID_M_CORRELATIONID:
        if (v.caub.cElems != PROPID_M_CORRELATIONID_SIZE || v.caub.pElems == nullptr) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_SIZE, "correlation id must be 20 bytes");
        }
        std::memcpy(e.correlation_id.data(), v.caub.pElems, 20);
        break;
      case PROPID_M_PRIORITY:
        if (v.bVal > MQ_MAX_PRIORITY)
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "priority 0..7");
        e.priority = v.bVal;
        break;
      case PROPID_M_DELIVERY:
        if (v.bVal > MQMSG_DELIVERY_RECOVERABLE) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "delivery is EXPRESS or RECOVERABLE");
        }
        e.delivery = v.bVal;
        break;
      case PROPID_M_ACKNOWLEDGE:
        if (v.bVal & ~0x0F)
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "unknown acknowledgment");
        e.acknowledge = v.bVal;
        break;
      case PROPID_M_JOURNAL:
        if (v.bVal & ~0x03)
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "unknown journal flags");
        e.journal = v.bVal;
        break;
      case PROPID_M_APPSPECIFIC:
        e.app_specific = v.ulVal;
        break;
      case PROPID_M_BODY:
        e.body = vector_bytes(props, i);
        break;
      case PROPID_M_BODY_TYPE:
        e.body_type = v.ulVal;
        break;
      case PROPID_M_LABEL: {
        if (v.pwszVal == nullptr) fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "NULL label");
        // 250 WCHARs: UTF-16 units in the UTF-16 build, as MSMQ counts them.
        size_t n = wide_length(v.pwszVal);
        if (n > MQ_MAX_MSG_LABEL_LEN)
          fail(props, i, MQ_ERROR_LABEL_TOO_LONG, "label over 250 characters");
        e.label = wide_to_utf16(v.pwszVal, n, MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
        break;
      }
      case PROPID_M_RESP_QUEUE:
        e.response_queue = queue_text(props, i);
        break;
      case PROPID_M_ADMIN_QUEUE:
        e.admin_queue = queue_text(props, i);
        break;
      case PROPID_M_SENDERID_TYPE:
        if (v.ulVal > MQMSG_SENDERID_TYPE_SID) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "sender id type is NONE or SID");
        }
        r.attach_sid = v.ulVal == MQMSG_SENDERID_TYPE_SID;
        break;
      case PROPID_M_AUTH_LEVEL:
        if (v.ulVal != MQMSG_AUTH_LEVEL_NONE && v.ulVal != MQMSG_AUTH_LEVEL_ALWAYS &&
            v.ulVal != MQMSG_AUTH_LEVEL_SIG10 && v.ulVal != MQMSG_AUTH_LEVEL_SIG20 &&
            v.ulVal != MQMSG_AUTH_LEVEL_SIG30) {
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "unknown authentication level");
        }
        e.auth_level = v.ulVal;
        break;
      case PROPID_M_HASH_ALG:
        r.hash_alg = v.ulVal;
        break;
      case PROPID_M_SENDER_CERT:
        r.sender_cert = vector_bytes(props, i);
        if (r.sender_cert.empty())
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "empty certificate");
        break;
      case PROPID_M_SECURITY_CONTEXT:
        r.context = v.ulVal;
        break;
      case PROPID_M_TIME_TO_REACH_QUEUE:
        // Seconds; INFINITE (the default) is no limit. Enforced for queues of other machines
        // (outgoing queue and arrival); a local send reaches its queue at once, as in MSMQ.
        e.time_to_reach_queue = v.ulVal;
        break;
      case PROPID_M_TIME_TO_BE_RECEIVED:
        // Seconds from the send; INFINITE (the default) is no limit. Enforced by every receive,
        // peek and lookup (src/core/expiry.hpp).
        e.time_to_be_received = v.ulVal;
        break;
      case PROPID_M_PRIV_LEVEL:
        // mqsec does not encrypt bodies: a send that asks for it fails rather than travel in
        // clear while the caller believes it encrypted (as a queue demanding it is refused).
        if (v.ulVal == MQMSG_PRIV_LEVEL_BODY_BASE || v.ulVal == MQMSG_PRIV_LEVEL_BODY_ENHANCED ||
            v.ulVal == MQMSG_PRIV_LEVEL_BODY_AES) {
          fail(props, i, MQ_ERROR_ENCRYPTION_PROVIDER_NOT_SUPPORTED,
               "mqsec does not encrypt message bodies (PROPID_M_PRIV_LEVEL must be NONE)");
        }
        if (v.ulVal != MQMSG_PRIV_LEVEL_NONE)
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "unknown privacy level");
        break;
      default:
        // Receive-only and unsupported properties are ignored on send, as MSMQ does.
        if (props->aStatus) props->aStatus[i] = MQ_INFORMATION_PROPERTY_IGNORED;
        r.overall = MQ_INFORMATION_PROPERTY;
        break;
    }
  }
  // As MSMQ: a time to reach queue longer than the time to be received is cut to it.
  e.time_to_reach_queue = std::min(e.time_to_reach_queue, e.time_to_be_received);
  return r;
}

void check_receive(MQMSGPROPS* props) {
  check_array(props);
  for (DWORD i = 0; i < props->cProp; ++i) {
    PROPID id = props->aPropID[i];
    VARTYPE want = vt_of(id);
    VARTYPE vt = props->aPropVar[i].vt;
    if (want == 0) fail(props, i, MQ_ERROR_ILLEGAL_PROPID, "unknown property id");
    // Fixed-size outputs may come as VT_NULL (the runtime sets the type); buffers may not.
    // A GUID may come as VT_NULL too: then the runtime allocates it (MQFreeMemory frees it).
    bool buffer = want == kBytes || want == VT_LPWSTR;
    if (vt != want && !(vt == VT_NULL && !buffer)) {
      fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VT, "wrong VT " + std::to_string(vt));
    }
    if (id == PROPID_M_MSGID || id == PROPID_M_CORRELATIONID) {
      if (props->aPropVar[i].caub.cElems != 20 || props->aPropVar[i].caub.pElems == nullptr) {
        fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_SIZE, "id buffers must be 20 bytes");
      }
    } else if (buffer && want == kBytes && props->aPropVar[i].caub.cElems > 0 &&
               props->aPropVar[i].caub.pElems == nullptr) {
      fail(props, i, MQ_ERROR_INVALID_PARAMETER, "NULL buffer with a non-zero size");
    } else if (want == VT_LPWSTR && props->aPropVar[i].pwszVal == nullptr) {
      fail(props, i, MQ_ERROR_INVALID_PARAMETER, "NULL string buffer");
    } else if (want == VT_CLSID && vt == VT_CLSID && props->aPropVar[i].puuid == nullptr) {
      fail(props, i, MQ_ERROR_INVALID_PARAMETER, "NULL GUID buffer");
    }
  }
}

HRESULT fill_receive(MQMSGPROPS* props, const Received& msg) {
  const security::Envelope& e = *msg.envelope;
  const security::Verdict& vd = *msg.verdict;
  HRESULT result = MQ_OK;
  auto status = [&](DWORD i, HRESULT hr) {
    if (props->aStatus) props->aStatus[i] = hr;
    if (FAILED(hr) && !FAILED(result)) result = hr;
    if (hr != MQ_OK && !FAILED(result)) result = MQ_INFORMATION_PROPERTY;
  };
  // Input sizes of string buffers, from the *_LEN properties (in WCHARs, with the NUL).
  // All capacities are read before anything is written (a *_LEN is also an output), only the
  // first occurrence of a property counts (later duplicates are ignored, as on send), and a
  // *_LEN passed as VT_NULL has no capacity.
  std::map<PROPID, DWORD> len_index;
  std::map<PROPID, ULONG> capacity_of;
  std::vector<bool> duplicate(props->cProp, false);
  for (DWORD i = 0; i < props->cProp; ++i) {
    PROPID id = props->aPropID[i];
    if (!len_index.emplace(id, i).second) {
      duplicate[i] = true;
      continue;
    }
    capacity_of[id] = props->aPropVar[i].vt == VT_UI4 ? props->aPropVar[i].ulVal : 0;
  }
  auto string_out = [&](DWORD i, PROPID len_id, const std::u16string& text, HRESULT too_small) {
    const WString w = wide_from_utf16(text);
    ULONG needed = static_cast<ULONG>(w.size() + 1);
    ULONG capacity = 0;
    auto it = len_index.find(len_id);
    if (it != len_index.end()) capacity = capacity_of[len_id];
    if (it != len_index.end()) {
      props->aPropVar[it->second].vt = VT_UI4;
      props->aPropVar[it->second].ulVal = needed;
    }
    if (capacity < needed) {
      status(i, too_small);
      return;
    }
    wide_copy(props->aPropVar[i].pwszVal, w);
  };
  auto bytes_out = [&](DWORD i, const security::Bytes& b, HRESULT too_small) {
    CAUB& v = props->aPropVar[i].caub;
    if (v.cElems < b.size()) {
      status(i, too_small);
      return;
    }
    if (!b.empty()) std::memcpy(v.pElems, b.data(), b.size());
    v.cElems = static_cast<ULONG>(b.size());
  };

  // GUIDs the runtime allocated for VT_NULL properties: freed again when the message stays.
  std::vector<DWORD> allocated;
  struct FreeOnFailure {
    MQMSGPROPS* props;
    std::vector<DWORD>& allocated;
    const HRESULT& result;
    bool done = false;
    ~FreeOnFailure() {
      if (done && !FAILED(result)) return;
      for (DWORD i : allocated) {
        std::free(props->aPropVar[i].puuid);
        props->aPropVar[i].puuid = nullptr;
        props->aPropVar[i].vt = VT_NULL;
      }
    }
  } free_on_failure{props, allocated, result};
  for (DWORD i = 0; i < props->cProp; ++i) {
    MQPROPVARIANT& v = props->aPropVar[i];
    PROPID id = props->aPropID[i];
    if (duplicate[i]) {
      status(i, MQ_INFORMATION_DUPLICATE_PROPERTY);
      continue;
    }
    VARTYPE want = vt_of(id);
    if (v.vt == VT_NULL && want == VT_CLSID) {
      v.puuid = static_cast<CLSID*>(std::calloc(1, sizeof(CLSID)));
      if (v.puuid == nullptr) throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES, "out of memory");
      allocated.push_back(i);
    }
    if (v.vt == VT_NULL) v.vt = want;
    switch (id) {
      case PROPID_M_CLASS:
        // From a dead-letter queue: why the message is there (a NACK class), as in MSMQ.
        v.uiVal = msg.msg_class >= 0 ? static_cast<USHORT>(msg.msg_class) : e.msg_class;
        break;
      case PROPID_M_MSGID:
        std::memcpy(v.caub.pElems, e.msg_id.data(), 20);
        break;
      case PROPID_M_CORRELATIONID:
        std::memcpy(v.caub.pElems, e.correlation_id.data(), 20);
        break;
      case PROPID_M_PRIORITY:
        v.bVal = e.priority;
        break;
      case PROPID_M_DELIVERY:
        v.bVal = e.delivery;
        break;
      case PROPID_M_ACKNOWLEDGE:
        v.bVal = e.acknowledge;
        break;
      case PROPID_M_JOURNAL:
        v.bVal = e.journal;
        break;
      case PROPID_M_APPSPECIFIC:
        v.ulVal = e.app_specific;
        break;
      case PROPID_M_BODY:
        bytes_out(i, e.body, MQ_ERROR_BUFFER_OVERFLOW);
        break;
      case PROPID_M_BODY_SIZE:
        v.ulVal = static_cast<ULONG>(e.body.size());
        break;
      case PROPID_M_BODY_TYPE:
        v.ulVal = e.body_type;
        break;
      case PROPID_M_LABEL:
        string_out(i, PROPID_M_LABEL_LEN, e.label, MQ_ERROR_LABEL_BUFFER_TOO_SMALL);
        break;
      case PROPID_M_RESP_QUEUE:
        string_out(i, PROPID_M_RESP_QUEUE_LEN, e.response_queue,
                   MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
        break;
      case PROPID_M_ADMIN_QUEUE:
        string_out(i, PROPID_M_ADMIN_QUEUE_LEN, e.admin_queue,
                   MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
        break;
      case PROPID_M_DEST_QUEUE:
        string_out(i, PROPID_M_DEST_QUEUE_LEN, e.dest_queue, MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
        break;
      // MSMQ 3.0's format-name properties: the same format names (mqsec has no multiple-element
      // or distribution-list destinations, so they never differ from the 2.0 ones).
      case PROPID_M_RESP_FORMAT_NAME:
        string_out(i, PROPID_M_RESP_FORMAT_NAME_LEN, e.response_queue,
                   MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
        break;
      case PROPID_M_DEST_FORMAT_NAME:
        string_out(i, PROPID_M_DEST_FORMAT_NAME_LEN, e.dest_queue,
                   MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
        break;
      case PROPID_M_LABEL_LEN:
      case PROPID_M_RESP_QUEUE_LEN:
      case PROPID_M_ADMIN_QUEUE_LEN:
      case PROPID_M_DEST_QUEUE_LEN:
      case PROPID_M_RESP_FORMAT_NAME_LEN:
      case PROPID_M_DEST_FORMAT_NAME_LEN: {
        // Without its string property, a *_LEN reports the length (with the NUL).
        PROPID text_id = id - 1;
        if (len_index.count(text_id) == 0) {
          const std::u16string& t =
              id == PROPID_M_LABEL_LEN ? e.label
              : id == PROPID_M_RESP_QUEUE_LEN || id == PROPID_M_RESP_FORMAT_NAME_LEN
                  ? e.response_queue
              : id == PROPID_M_ADMIN_QUEUE_LEN ? e.admin_queue
                                               : e.dest_queue;
          v.ulVal = static_cast<ULONG>(wide_from_utf16(t).size() + 1);
        }
        break;
      }
      case PROPID_M_LOOKUPID:
        v.uhVal.QuadPart = msg.lookup_id;
        break;
      case PROPID_M_SRC_MACHINE_ID: {
        // MSMQ's value is the sending queue manager's GUID; mqsec's is name-based (same
        // machine name, same GUID; core::machine_guid).
        core::MachineGuid g = core::machine_guid(utf16_to_utf8(e.source_machine));
        v.puuid->Data1 = g.data1;
        v.puuid->Data2 = g.data2;
        v.puuid->Data3 = g.data3;
        std::memcpy(v.puuid->Data4, g.data4, 8);
        break;
      }
      case PROPID_M_ABORT_COUNT:
      case PROPID_M_MOVE_COUNT:
      case PROPID_M_LAST_MOVE_TIME:
        // Transactional receives that abort and subqueue moves do not exist yet: always 0.
        v.ulVal = 0;
        break;
      case PROPID_M_SENTTIME:
        v.ulVal = static_cast<ULONG>(e.sent_time);
        break;
      case PROPID_M_ARRIVEDTIME:
        v.ulVal = static_cast<ULONG>(msg.arrived);
        break;
      case PROPID_M_SENDERID:
        bytes_out(i, e.sender_id, MQ_ERROR_SENDERID_BUFFER_TOO_SMALL);
        break;
      case PROPID_M_SENDERID_LEN:
        v.ulVal = static_cast<ULONG>(e.sender_id.size());
        break;
      case PROPID_M_SENDERID_TYPE:
        v.ulVal = e.sender_id_type;
        break;
      case PROPID_M_AUTH_LEVEL:
        v.ulVal = e.auth_level;
        break;
      case PROPID_M_AUTHENTICATED:
        v.bVal = vd.signed_message && vd.ok ? MQMSG_AUTHENTICATION_REQUESTED : 0;
        break;
      case PROPID_M_AUTHENTICATED_EX:
        v.bVal = vd.signed_message && vd.ok ? vd.authenticated_ex : 0;
        break;
      case PROPID_M_MQSEC_SENDER_CONFIRMED:
        v.bVal = vd.sender_confirmed ? 1 : 0;
        break;
      case PROPID_M_MQSEC_TRUST:
        v.ulVal = vd.signed_message && vd.ok ? vd.trust : 0;
        break;
      case PROPID_M_HASH_ALG:
        v.ulVal = e.hash_alg;
        break;
      case PROPID_M_SENDER_CERT:
        bytes_out(i, e.sender_cert, MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL);
        break;
      case PROPID_M_SENDER_CERT_LEN:
        v.ulVal = static_cast<ULONG>(e.sender_cert.size());
        break;
      case PROPID_M_SIGNATURE:
        bytes_out(i, e.signature, MQ_ERROR_SIGNATURE_BUFFER_TOO_SMALL);
        break;
      case PROPID_M_SIGNATURE_LEN:
        v.ulVal = static_cast<ULONG>(e.signature.size());
        break;
      case PROPID_M_TIME_TO_REACH_QUEUE:
        // The sender's value as sent (INFINITE when none), not the time left as MSMQ reports.
        v.ulVal = e.time_to_reach_queue;
        break;
      case PROPID_M_TIME_TO_BE_RECEIVED:
        // As MSMQ: the time left to receive it, in seconds (INFINITE when it has no limit).
        v.ulVal = core::seconds_left_to_receive(e, std::time(nullptr));
        break;
      default:
        // Write-only (SECURITY_CONTEXT) and unsupported properties.
        status(i, MQ_INFORMATION_PROPERTY_IGNORED);
        break;
    }
  }
  free_on_failure.done = true;
  return result;
}

void release_fill(MQMSGPROPS* props, const std::vector<MQPROPVARIANT>& original) {
  for (DWORD i = 0; i < props->cProp && i < original.size(); ++i) {
    MQPROPVARIANT& v = props->aPropVar[i];
    if (original[i].vt == VT_NULL && v.vt == VT_CLSID && v.puuid != original[i].puuid) {
      std::free(v.puuid);
      v.puuid = nullptr;
    }
  }
}

}  // namespace mqsec::abi
