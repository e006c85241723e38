// MSMQ's computer and management information (MQGetPrivateComputerInformation, MQMgmtGetInfo,
// MQGetMachineProperties) and actions (MQMgmtAction) as a thin adapter over the core's queue
// administration (src/core/admin.hpp). Values are returned as MSMQ returns them: strings and string
// arrays allocated, freed by the caller with MQFreeMemory.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "src/abi/guard.hpp"
#include "src/abi/queue_props.hpp"
#include "src/abi/wide.hpp"
#include "src/core/locate.hpp"
#include "src/core/admin.hpp"
#include "src/core/journal.hpp"
#include "src/core/destination.hpp"
#include "src/core/runtime.hpp"

namespace {

using namespace mqsec;

// PROPID_PC_VERSION: major << 24 | minor << 16 | build. mqsec implements MSMQ 3.0's C API
// (lookup ids, the 3.0 properties) in part; programs that test for 3.0 features see 3.0.
constexpr ULONG kVersion = (3u << 24) | (0u << 16) | 0u;

// Which machine a management or computer call names: NULL or this machine only.
void check_local_computer(LPCWSTR computer) {
  if (computer == nullptr) return;
  const std::string name = abi::wide_to_utf8(computer, MQ_ERROR_INVALID_PARAMETER);
  if (core::is_this_machine(name)) return;
  throw Error(MQ_ERROR_UNSUPPORTED_OPERATION,
              "computer '" + name + "': only this machine's information is available");
}

// The property arrays of these calls share MQMSGPROPS' layout.
template <typename Props>
void check_array(Props* props, DWORD max) {
  if (props == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "the property array is NULL");
  if (props->cProp > max ||
      (props->cProp > 0 && (props->aPropID == nullptr || props->aPropVar == nullptr))) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "malformed property array");
  }
  if (props->aStatus != nullptr) {
    for (DWORD i = 0; i < props->cProp; ++i) props->aStatus[i] = MQ_OK;
  }
}

template <typename Props>
[[noreturn]] void fail(Props* props, DWORD i, HRESULT code, const std::string& why) {
  if (props->aStatus != nullptr) props->aStatus[i] = code;
  throw Error(code, "property " + std::to_string(props->aPropID[i]) + ": " + why);
}

HRESULT private_computer_information(LPCWSTR computer, MQPRIVATEPROPS* props) {
  if (computer != nullptr) {
    // MSMQ: "reserved for future use, must be NULL".
    throw Error(MQ_ERROR_INVALID_PARAMETER, "lpwcsComputerName must be NULL");
  }
  check_array(props, 16);
  for (DWORD i = 0; i < props->cProp; ++i) {
    MQPROPVARIANT& v = props->aPropVar[i];
    switch (props->aPropID[i]) {
      case PROPID_PC_VERSION:
        if (v.vt != VT_NULL && v.vt != VT_UI4)
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VT, "VT_UI4");
        break;
      case PROPID_PC_DS_ENABLED:
        if (v.vt != VT_NULL && v.vt != VT_BOOL)
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VT, "VT_BOOL");
        break;
      default:
        fail(props, i, MQ_ERROR_ILLEGAL_PROPID, "not a private computer property");
    }
  }
  for (DWORD i = 0; i < props->cProp; ++i) {
    MQPROPVARIANT& v = props->aPropVar[i];
    if (props->aPropID[i] == PROPID_PC_VERSION) {
      v.vt = VT_UI4;
      v.ulVal = kVersion;
    } else {
      // No directory service (Active Directory): workgroup mode.
      v.vt = VT_BOOL;
      v.boolVal = 0;  // VARIANT_FALSE
    }
  }
  return MQ_OK;
}

// The management properties' types (machine and queue ids overlap: the object says which).
enum class MgmtObject { Machine, Queue };

VARTYPE mgmt_vt(MgmtObject o, PROPID id) {
  if (o == MgmtObject::Machine) {
    switch (id) {
      case PROPID_MGMT_MSMQ_ACTIVEQUEUES:
      case PROPID_MGMT_MSMQ_PRIVATEQ:
        return VT_LPWSTR | VT_VECTOR;
      case PROPID_MGMT_MSMQ_DSSERVER:
      case PROPID_MGMT_MSMQ_CONNECTED:
      case PROPID_MGMT_MSMQ_TYPE:
        return VT_LPWSTR;
      case PROPID_MGMT_MSMQ_BYTES_IN_ALL_QUEUES:
        return VT_UI8;
      default:
        return 0;
    }
  }
  switch (id) {
    case PROPID_MGMT_QUEUE_PATHNAME:
    case PROPID_MGMT_QUEUE_FORMATNAME:
    case PROPID_MGMT_QUEUE_TYPE:
    case PROPID_MGMT_QUEUE_LOCATION:
    case PROPID_MGMT_QUEUE_XACT:
    case PROPID_MGMT_QUEUE_FOREIGN:
    case PROPID_MGMT_QUEUE_STATE:
    case PROPID_MGMT_QUEUE_EOD_SOURCE_INFO:
      return VT_LPWSTR;
    case PROPID_MGMT_QUEUE_MESSAGE_COUNT:
    case PROPID_MGMT_QUEUE_BYTES_IN_QUEUE:
    case PROPID_MGMT_QUEUE_JOURNAL_MESSAGE_COUNT:
    case PROPID_MGMT_QUEUE_BYTES_IN_JOURNAL:
    case PROPID_MGMT_QUEUE_EOD_LAST_ACK_TIME:
    case PROPID_MGMT_QUEUE_EOD_LAST_ACK_COUNT:
    case PROPID_MGMT_QUEUE_EOD_NO_READ_COUNT:
    case PROPID_MGMT_QUEUE_EOD_NO_ACK_COUNT:
    case PROPID_MGMT_QUEUE_EOD_RESEND_TIME:
    case PROPID_MGMT_QUEUE_EOD_RESEND_INTERVAL:
    case PROPID_MGMT_QUEUE_EOD_RESEND_COUNT:
    case PROPID_MGMT_QUEUE_SUBQUEUE_COUNT:
      return VT_UI4;
    case PROPID_MGMT_QUEUE_NEXTHOPS:
    case PROPID_MGMT_QUEUE_SUBQUEUE_NAMES:
      return VT_LPWSTR | VT_VECTOR;
    case PROPID_MGMT_QUEUE_EOD_LAST_ACK:
    case PROPID_MGMT_QUEUE_EOD_FIRST_NON_ACK:
    case PROPID_MGMT_QUEUE_EOD_LAST_NON_ACK:
    case PROPID_MGMT_QUEUE_EOD_NEXT_SEQ:
    case PROPID_MGMT_QUEUE_CONNECTION_HISTORY:
      return VT_BLOB;
    default:
      return 0;
  }
}

// Allocated values, freed again when a later one cannot be allocated or the call fails; the
// caller's variants are then as they came (none names freed memory, a caller's own buffer is
// kept).
class Allocations {
 public:
  explicit Allocations(MQPROPVARIANT* vars, DWORD n) : vars_(vars), original_(vars, vars + n) {}
  ~Allocations() {
    if (keep_) return;
    for (void* p : blocks_) std::free(p);
    std::copy(original_.begin(), original_.end(), vars_);
  }
  WCHAR* text(const std::string& s) {
    WCHAR* w = abi::allocated_wide(s);
    blocks_.push_back(w);
    return w;
  }
  CALPWSTR texts(const std::vector<std::string>& items) {
    CALPWSTR out{};
    out.pElems =
        static_cast<LPWSTR*>(std::calloc(items.empty() ? 1 : items.size(), sizeof(LPWSTR)));
    if (out.pElems == nullptr) throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES, "out of memory");
    blocks_.push_back(out.pElems);
    for (const std::string& s : items) out.pElems[out.cElems++] = text(s);
    return out;
  }
  void adopt(void* block) { blocks_.push_back(block); }
  void keep() { keep_ = true; }

 private:
  std::vector<void*> blocks_;
  MQPROPVARIANT* vars_;
  std::vector<MQPROPVARIANT> original_;
  bool keep_ = false;
};

std::string path_of(const std::string& queue) {
  return core::this_machine() + "\\private$\\" + queue;
}

HRESULT mgmt_get_info(LPCWSTR computer, LPCWSTR object, MQMGMTPROPS* props) {
  check_local_computer(computer);
  if (object == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "pObjectName is NULL");
  const std::string obj = abi::wide_to_utf8(object, MQ_ERROR_INVALID_PARAMETER);
  std::string upper;
  for (char c : obj)
    upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  MgmtObject kind;
  core::Destination queue;
  if (upper == "MACHINE") {
    kind = MgmtObject::Machine;
  } else if (upper.rfind("QUEUE=", 0) == 0) {
    kind = MgmtObject::Queue;
    queue = core::destination_of_any_format(obj.substr(6), core::runtime().config().store_path);
  } else {
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "pObjectName is MO_MACHINE_TOKEN (\"MACHINE\") or \"QUEUE=<format name>\"");
  }
  check_array(props, 64);
  for (DWORD i = 0; i < props->cProp; ++i) {
    const VARTYPE want = mgmt_vt(kind, props->aPropID[i]);
    if (want == 0)
      fail(props, i, MQ_ERROR_ILLEGAL_PROPID, "not a management property of this object");
    if (props->aPropVar[i].vt != VT_NULL) {
      fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VT,
           "management properties are asked for as VT_NULL");
    }
  }
  const auto& store_dir = core::runtime().config().store_path;
  HRESULT overall = MQ_OK;
  Allocations mem(props->aPropVar, props->cProp);
  auto unsupported = [&](DWORD i) {
    if (props->aStatus != nullptr) props->aStatus[i] = MQ_INFORMATION_UNSUPPORTED_PROPERTY;
    overall = MQ_INFORMATION_PROPERTY;
  };
  if (kind == MgmtObject::Machine) {
    const std::vector<core::QueueStatus> all = core::list_queues(store_dir);
    for (DWORD i = 0; i < props->cProp; ++i) {
      MQPROPVARIANT& v = props->aPropVar[i];
      switch (props->aPropID[i]) {
        case PROPID_MGMT_MSMQ_PRIVATEQ: {
          std::vector<std::string> paths;
          for (const core::QueueStatus& q : all) {
            // Not outgoing queues, journals, dead-letter queues or subqueues.
            if (core::is_application_queue(q.info.name)) paths.push_back(path_of(q.info.name));
          }
          v.calpwstr = mem.texts(paths);
          v.vt = VT_LPWSTR | VT_VECTOR;
          break;
        }
        case PROPID_MGMT_MSMQ_ACTIVEQUEUES: {
          // MSMQ: queues opened or holding messages; mqsec knows the second.
          std::vector<std::string> formats;
          for (const core::QueueStatus& q : all) {
            if (q.messages == 0) continue;
            if (auto f = core::listed_format_name(q.info.name)) formats.push_back(std::move(*f));
          }
          v.calpwstr = mem.texts(formats);
          v.vt = VT_LPWSTR | VT_VECTOR;
          break;
        }
        case PROPID_MGMT_MSMQ_CONNECTED:
          v.pwszVal = mem.text("CONNECTED");
          v.vt = VT_LPWSTR;
          break;
        case PROPID_MGMT_MSMQ_TYPE:
          v.pwszVal = mem.text("mqsec (MSMQ 3.0 C API)");
          v.vt = VT_LPWSTR;
          break;
        case PROPID_MGMT_MSMQ_BYTES_IN_ALL_QUEUES: {
          ULONGLONG total = 0;
          for (const core::QueueStatus& q : all) total += q.bytes;
          v.vt = VT_UI8;
          v.uhVal.QuadPart = total;
          break;
        }
        default:  // DSSERVER: no directory service
          unsupported(i);
          break;
      }
    }
  } else {
    const core::QueueStatus q = core::queue_status(store_dir, queue);
    // Its journal's (journal.hpp): none yet is an empty one.
    core::QueueStatus journal;
    try {
      journal =
          core::queue_status(store_dir, core::Destination{core::journal_queue_name(q.info.name),
                                                          core::Destination::Transport::Local, ""});
    } catch (const Error& e) {
      if (e.code() != MQ_ERROR_QUEUE_NOT_FOUND) throw;
    }
    for (DWORD i = 0; i < props->cProp; ++i) {
      MQPROPVARIANT& v = props->aPropVar[i];
      auto text = [&](const std::string& s) {
        v.pwszVal = mem.text(s);
        v.vt = VT_LPWSTR;
      };
      auto number = [&](uint64_t n) {
        v.vt = VT_UI4;
        v.ulVal = n > 0xFFFFFFFFu ? 0xFFFFFFFFu : static_cast<ULONG>(n);
      };
      switch (props->aPropID[i]) {
        case PROPID_MGMT_QUEUE_PATHNAME:
          text(path_of(q.info.name));
          break;
        case PROPID_MGMT_QUEUE_FORMATNAME:
          text(core::format_name_of(q.info.name));
          break;
        case PROPID_MGMT_QUEUE_TYPE:
          text("PRIVATE");
          break;
        case PROPID_MGMT_QUEUE_LOCATION:
          text("LOCAL");
          break;
        case PROPID_MGMT_QUEUE_XACT:
          text(q.info.transactional ? "YES" : "NO");
          break;
        case PROPID_MGMT_QUEUE_FOREIGN:
          text("NO");
          break;
        case PROPID_MGMT_QUEUE_STATE:
          text("LOCAL CONNECTION");
          break;
        case PROPID_MGMT_QUEUE_MESSAGE_COUNT:
          number(q.messages);
          break;
        case PROPID_MGMT_QUEUE_BYTES_IN_QUEUE:
          number(q.bytes);
          break;
        case PROPID_MGMT_QUEUE_JOURNAL_MESSAGE_COUNT:
          number(journal.messages);
          break;
        case PROPID_MGMT_QUEUE_BYTES_IN_JOURNAL:
          number(journal.bytes);
          break;
        default:  // outgoing-queue (EOD), next hops, subqueues: not kept for a local queue
          unsupported(i);
          break;
      }
    }
  }
  mem.keep();
  return overall;
}

// ---- MQGetMachineProperties, MQMgmtAction ----------------------------------------------------

GUID this_machine_guid() {
  const core::MachineGuid g = core::machine_guid(core::this_machine());
  GUID out;
  out.Data1 = g.data1;
  out.Data2 = g.data2;
  out.Data3 = g.data3;
  std::memcpy(out.Data4, g.data4, 8);
  return out;
}

// Without a directory service the machines mqsec knows the properties of are this one: by
// name (NULL, or any name core::is_this_machine accepts) or by its GUID
// (PROPID_QM_MACHINE_ID, the name-based GUID of core::machine_guid).
void check_this_machine(LPCWSTR name, const GUID* guid) {
  if (name != nullptr && guid != nullptr) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "give the machine's name or its GUID, not both");
  }
  if (name != nullptr) {
    const std::string n = abi::wide_to_utf8(name, MQ_ERROR_INVALID_PARAMETER);
    if (core::is_this_machine(n)) return;
    throw Error(MQ_ERROR_MACHINE_NOT_FOUND,
                "machine '" + n + "': without a directory service only this machine is known");
  }
  if (guid != nullptr) {
    const GUID mine = this_machine_guid();
    if (std::memcmp(guid, &mine, sizeof mine) != 0) {
      throw Error(MQ_ERROR_MACHINE_NOT_FOUND, "no machine with this GUID is known");
    }
  }
}

HRESULT machine_properties(LPCWSTR name, const GUID* guid, MQQMPROPS* props) {
  if (props == nullptr || props->cProp == 0) {
    throw Error(MQ_ERROR_ILLEGAL_MQQMPROPS, "pQMProps is NULL or has no properties");
  }
  check_array(props, 64);
  // Types first: nothing is allocated for a call that fails.
  for (DWORD i = 0; i < props->cProp; ++i) {
    const MQPROPVARIANT& v = props->aPropVar[i];
    switch (props->aPropID[i]) {
      case PROPID_QM_SITE_ID:
      case PROPID_QM_MACHINE_ID:
        if (v.vt != VT_NULL && !(v.vt == VT_CLSID && v.puuid != nullptr))
          fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VT, "VT_NULL, or VT_CLSID with a buffer");
        break;
      case PROPID_QM_PATHNAME:
      case PROPID_QM_PATHNAME_DNS:
      case PROPID_QM_CONNECTION:
      case PROPID_QM_ENCRYPTION_PK:
      case PROPID_QM_ENCRYPTION_PK_BASE:
      case PROPID_QM_ENCRYPTION_PK_ENHANCED:
      case PROPID_QM_ENCRYPTION_PK_AES:
        if (v.vt != VT_NULL) fail(props, i, MQ_ERROR_ILLEGAL_PROPERTY_VT, "VT_NULL");
        break;
      default:
        fail(props, i, MQ_ERROR_ILLEGAL_PROPID, "not a queue manager property");
    }
  }
  check_this_machine(name, guid);
  HRESULT overall = MQ_OK;
  Allocations mem(props->aPropVar, props->cProp);
  for (DWORD i = 0; i < props->cProp; ++i) {
    MQPROPVARIANT& v = props->aPropVar[i];
    switch (props->aPropID[i]) {
      case PROPID_QM_MACHINE_ID: {
        const GUID g = this_machine_guid();
        if (v.vt == VT_NULL) {
          v.puuid = static_cast<GUID*>(std::malloc(sizeof(GUID)));
          if (v.puuid == nullptr) throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES, "out of memory");
          mem.adopt(v.puuid);
          v.vt = VT_CLSID;
        }
        *v.puuid = g;
        break;
      }
      case PROPID_QM_PATHNAME:
      case PROPID_QM_PATHNAME_DNS:
        v.pwszVal = mem.text(core::this_machine());
        v.vt = VT_LPWSTR;
        break;
      default:
        // No sites (a directory service's), no connected networks to report, no encryption
        // keys (mqsec does not encrypt).
        if (props->aStatus != nullptr) props->aStatus[i] = MQ_INFORMATION_UNSUPPORTED_PROPERTY;
        overall = MQ_INFORMATION_PROPERTY;
        break;
    }
  }
  mem.keep();
  return overall;
}

HRESULT mgmt_action(LPCWSTR computer, LPCWSTR object, LPCWSTR action) {
  check_local_computer(computer);
  if (object == nullptr || action == nullptr) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "pObjectName or pAction is NULL");
  }
  const std::string obj = abi::wide_to_utf8(object, MQ_ERROR_INVALID_PARAMETER);
  std::string act = abi::wide_to_utf8(action, MQ_ERROR_INVALID_PARAMETER);
  for (char& c : act) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string upper = obj;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper == "MACHINE") {
    if (act == "CONNECT" || act == "TIDY") {
      // Always connected (PROPID_MGMT_MSMQ_CONNECTED); the store has no message files to tidy
      // (SQLite reuses freed pages). Both succeed and change nothing.
      core::runtime().config();  // the configuration must be readable, as for any call
      return MQ_OK;
    }
    if (act == "DISCONNECT") {
      throw Error(MQ_ERROR_UNSUPPORTED_OPERATION,
                  "mqsec cannot take this machine offline (messages for other machines are "
                  "forwarded whenever the broker is reachable)");
    }
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "machine actions are CONNECT, DISCONNECT and TIDY, not '" + act + "'");
  }
  if (upper.rfind("QUEUE=", 0) != 0) {
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "pObjectName is MO_MACHINE_TOKEN (\"MACHINE\") or \"QUEUE=<format name>\"");
  }
  const core::Destination d =
      core::destination_of_any_format(obj.substr(6), core::runtime().config().store_path);
  if (act != "PAUSE" && act != "RESUME" && act != "EOD_RESEND") {
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "queue actions are PAUSE, RESUME and EOD_RESEND, not '" + act + "'");
  }
  if (!d.remote()) {
    core::queue_status(core::runtime().config().store_path, d);  // MQ_ERROR_QUEUE_NOT_FOUND
    throw Error(MQ_ERROR_INVALID_PARAMETER, act +
                                                " is for outgoing queues (a queue of another "
                                                "machine), not a queue of this machine");
  }
  throw Error(MQ_ERROR_UNSUPPORTED_OPERATION,
              "the outgoing queues' forwarding cannot be paused, resumed or resent yet");
}

}  // namespace

MQSEC_EXPORT HRESULT APIENTRY MQGetMachineProperties(LPCWSTR lpwcsMachineName,
                                                     const GUID* pguidMachineID,
                                                     MQQMPROPS* pQMProps) {
  return abi::guard("MQGetMachineProperties",
                    [&] { return machine_properties(lpwcsMachineName, pguidMachineID, pQMProps); });
}

MQSEC_EXPORT HRESULT APIENTRY MQMgmtAction(LPCWSTR pComputerName, LPCWSTR pObjectName,
                                           LPCWSTR pAction) {
  return abi::guard("MQMgmtAction",
                    [&] { return mgmt_action(pComputerName, pObjectName, pAction); });
}

MQSEC_EXPORT HRESULT APIENTRY MQGetPrivateComputerInformation(LPCWSTR lpwcsComputerName,
                                                              MQPRIVATEPROPS* pPrivateProps) {
  return abi::guard("MQGetPrivateComputerInformation",
                    [&] { return private_computer_information(lpwcsComputerName, pPrivateProps); });
}

MQSEC_EXPORT HRESULT APIENTRY MQMgmtGetInfo(LPCWSTR pComputerName, LPCWSTR pObjectName,
                                            MQMGMTPROPS* pMgmtProps) {
  return abi::guard("MQMgmtGetInfo",
                    [&] { return mgmt_get_info(pComputerName, pObjectName, pMgmtProps); });
}
