// Directory queries (MQLocateBegin, MQLocateNext, MQLocateEnd) and the directory's format names
// (MQInstanceToFormatName, MQADsPathToFormatName). mqsec has no Active Directory
// (PROPID_PC_DS_ENABLED is FALSE): a query looks at the queues of this machine's store, as a
// directory holding only this machine would answer (docs/msmq-api.md, "Directory queries").
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "mqsec/error.hpp"
#include "src/abi/guard.hpp"
#include "src/abi/queue_props.hpp"
#include "src/abi/wide.hpp"
#include "src/core/admin.hpp"
#include "src/core/locate.hpp"
#include "src/core/runtime.hpp"

namespace {

using namespace mqsec;

constexpr uintptr_t kQueryTag = uintptr_t{4} << 32;  // beside the queue, cursor and event tags
constexpr ULONG kMaxEntries = 128;                   // restrictions, columns or sort keys

security::HandleTable<core::QueueQuery>& queries() { return core::runtime().queries(); }

std::shared_ptr<core::QueueQuery> lookup(HANDLE h) {
  const auto v = reinterpret_cast<uintptr_t>(h);
  if ((v & ~uintptr_t{0xFFFFFFFF}) != kQueryTag) return nullptr;
  return queries().get(static_cast<uint32_t>(v & 0xFFFFFFFF));
}

// A queue property as restrictions and sort keys compare it: a number, a string (UTF-8, whose
// byte order is code point order) or a GUID (its 16 bytes in memory order).
using Value = std::variant<int64_t, std::string, std::array<uint8_t, 16>>;

std::string path_of(const transport::QueueInfo& q) {
  return core::this_machine() + "\\private$\\" + q.name;
}

std::array<uint8_t, 16> instance_of(const transport::QueueInfo& q) {
  const core::MachineGuid g = core::queue_instance_guid(core::this_machine(), q.id);
  std::array<uint8_t, 16> b{};
  std::memcpy(b.data(), &g, 16);
  return b;
}

// Whether a property can be compared (in a restriction or a sort key).
bool comparable(PROPID id) { return abi::queue_property_vt(id) != 0 && id != PROPID_Q_ADS_PATH; }

Value value_of(const transport::QueueInfo& q, PROPID id) {
  switch (id) {
    case PROPID_Q_INSTANCE:
      return instance_of(q);
    case PROPID_Q_TYPE:
      return q.type;
    case PROPID_Q_PATHNAME:
    case PROPID_Q_PATHNAME_DNS:
      return path_of(q);
    case PROPID_Q_LABEL:
      return q.label;
    case PROPID_Q_MULTICAST_ADDRESS:
      return q.multicast_address;
    case PROPID_Q_JOURNAL:
      return int64_t{q.journal ? MQ_JOURNAL : MQ_JOURNAL_NONE};
    case PROPID_Q_AUTHENTICATE:
      return int64_t{q.authenticate ? MQ_AUTHENTICATE : MQ_AUTHENTICATE_NONE};
    case PROPID_Q_TRANSACTION:
      return int64_t{q.transactional ? MQ_TRANSACTIONAL : MQ_TRANSACTIONAL_NONE};
    case PROPID_Q_QUOTA:
      return int64_t{q.quota};
    case PROPID_Q_JOURNAL_QUOTA:
      return int64_t{q.journal_quota};
    case PROPID_Q_PRIV_LEVEL:
      return int64_t{q.privacy};
    case PROPID_Q_BASEPRIORITY:
      return int64_t{q.base_priority};
    case PROPID_Q_CREATE_TIME:
      return int64_t{static_cast<LONG>(q.created)};
    case PROPID_Q_MODIFY_TIME:
      return int64_t{static_cast<LONG>(q.modified != 0 ? q.modified : q.created)};
    default:
      throw Error(MQ_ERROR_ILLEGAL_RESTRICTION_PROPID, "not a comparable queue property");
  }
}

// The restriction's value, checked against the property's type.
Value value_of(const MQPROPERTYRESTRICTION& r) {
  const VARTYPE want = abi::queue_property_vt(r.prop);
  if (r.prval.vt != want) {
    throw Error(MQ_ERROR_ILLEGAL_PROPERTY_VT, "restriction on property " + std::to_string(r.prop) +
                                                  ": wrong VT " + std::to_string(r.prval.vt));
  }
  switch (want) {
    case VT_CLSID: {
      if (r.prval.puuid == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "NULL GUID pointer");
      std::array<uint8_t, 16> b{};
      std::memcpy(b.data(), r.prval.puuid, 16);
      return b;
    }
    case VT_LPWSTR:
      if (r.prval.pwszVal == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "NULL string");
      return abi::wide_to_utf8(r.prval.pwszVal, MQ_ERROR_INVALID_PARAMETER);
    case VT_UI1:
      return int64_t{r.prval.bVal};
    case VT_UI4:
      return int64_t{r.prval.ulVal};
    case VT_I2:
      return int64_t{r.prval.iVal};
    case VT_I4:
      return int64_t{r.prval.lVal};
    default:
      throw Error(MQ_ERROR_ILLEGAL_PROPERTY_VT, "unexpected VT");
  }
}

bool holds(ULONG rel, const Value& have, const Value& want) {
  switch (rel) {
    case PRLT:
      return have < want;
    case PRLE:
      return have <= want;
    case PRGT:
      return have > want;
    case PRGE:
      return have >= want;
    case PREQ:
      return have == want;
    default:  // PRNE
      return have != want;
  }
}

struct Restriction {
  ULONG rel;
  PROPID prop;
  Value value;
};

HRESULT locate_begin(LPCWSTR context, MQRESTRICTION* restriction, MQCOLUMNSET* columns,
                     MQSORTSET* sort, PHANDLE out) {
  if (out == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "phEnum is NULL");
  *out = nullptr;
  if (context != nullptr) {
    throw Error(MQ_ERROR_ILLEGAL_CONTEXT, "lpwcsContext must be NULL (the whole directory)");
  }
  if (columns == nullptr || columns->cCol == 0 || columns->aCol == nullptr ||
      columns->cCol > kMaxEntries) {
    throw Error(MQ_ERROR_ILLEGAL_MQCOLUMNS, "MQCOLUMNSET is NULL, empty or too long");
  }
  auto query = std::make_shared<core::QueueQuery>();
  for (ULONG i = 0; i < columns->cCol; ++i) {
    if (abi::queue_property_vt(columns->aCol[i]) == 0) {
      throw Error(MQ_ERROR_ILLEGAL_PROPID,
                  "column " + std::to_string(columns->aCol[i]) + " is not a PROPID_Q_*");
    }
    query->columns.push_back(columns->aCol[i]);
  }
  std::vector<Restriction> rs;
  if (restriction != nullptr && restriction->cRes > 0) {
    if (restriction->paPropRes == nullptr || restriction->cRes > kMaxEntries) {
      throw Error(MQ_ERROR_INVALID_PARAMETER, "malformed MQRESTRICTION");
    }
    for (ULONG i = 0; i < restriction->cRes; ++i) {
      const MQPROPERTYRESTRICTION& r = restriction->paPropRes[i];
      if (!comparable(r.prop)) {
        throw Error(MQ_ERROR_ILLEGAL_RESTRICTION_PROPID,
                    "cannot restrict on property " + std::to_string(r.prop));
      }
      if (r.rel > PRNE) {
        throw Error(MQ_ERROR_ILLEGAL_RELATION, "relation " + std::to_string(r.rel) +
                                                   " is not PRLT, PRLE, PRGT, PRGE, PREQ or PRNE");
      }
      rs.push_back({r.rel, r.prop, value_of(r)});
    }
  }
  std::vector<MQSORTKEY> keys;
  if (sort != nullptr && sort->cCol > 0) {
    if (sort->aCol == nullptr || sort->cCol > kMaxEntries) {
      throw Error(MQ_ERROR_INVALID_PARAMETER, "malformed MQSORTSET");
    }
    for (ULONG i = 0; i < sort->cCol; ++i) {
      if (!comparable(sort->aCol[i].propColumn)) {
        throw Error(MQ_ERROR_ILLEGAL_SORT_PROPID,
                    "cannot sort on property " + std::to_string(sort->aCol[i].propColumn));
      }
      if (sort->aCol[i].dwOrder != QUERY_SORTASCEND && sort->aCol[i].dwOrder != QUERY_SORTDESCEND) {
        throw Error(MQ_ERROR_ILLEGAL_SORT, "dwOrder must be QUERY_SORTASCEND or QUERY_SORTDESCEND");
      }
      keys.push_back(sort->aCol[i]);
    }
  }

  // Application queues only: outgoing queues, journals, dead-letter queues and subqueues are
  // never in a directory.
  for (transport::QueueInfo& q : core::application_queues(core::runtime().config().store_path)) {
    const bool match = std::all_of(rs.begin(), rs.end(), [&](const Restriction& r) {
      return holds(r.rel, value_of(q, r.prop), r.value);
    });
    if (match) query->rows.push_back(std::move(q));
  }
  // Without a sort set: by queue name (list_queues' order). Keys in order, ties by name.
  std::stable_sort(query->rows.begin(), query->rows.end(),
                   [&](const transport::QueueInfo& a, const transport::QueueInfo& b) {
                     for (const MQSORTKEY& k : keys) {
                       const Value va = value_of(a, k.propColumn);
                       const Value vb = value_of(b, k.propColumn);
                       if (va == vb) continue;
                       return k.dwOrder == QUERY_SORTASCEND ? va < vb : vb < va;
                     }
                     return false;
                   });
  const uint32_t h = queries().insert(std::move(query));
  if (h == 0) throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES, "too many open queries");
  *out = reinterpret_cast<HANDLE>(kQueryTag | h);
  return MQ_OK;
}

// Frees what MQLocateNext allocated in v (strings, GUIDs) and sets it back to VT_NULL.
void release(MQPROPVARIANT& v) {
  if (v.vt == VT_LPWSTR) std::free(v.pwszVal);
  if (v.vt == VT_CLSID) std::free(v.puuid);
  v.vt = VT_NULL;
  v.pwszVal = nullptr;
}

HRESULT locate_next(HANDLE h, DWORD* count, MQPROPVARIANT* vars) {
  auto query = lookup(h);
  if (!query) throw Error(MQ_ERROR_INVALID_HANDLE, "not a handle from MQLocateBegin");
  if (count == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "pcProps is NULL");
  if (*count > 0 && vars == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "aPropVar is NULL");
  std::lock_guard lock(query->mu);
  const DWORD ncol = static_cast<DWORD>(query->columns.size());
  if (*count < ncol) {
    throw Error(MQ_ERROR_RESULT_BUFFER_TOO_SMALL,
                "pcProps must hold at least the " + std::to_string(ncol) + " columns of a queue");
  }
  const size_t want = *count / ncol;
  const size_t rows = std::min(want, query->rows.size() - query->next);
  std::vector<HRESULT> status(ncol);
  size_t done = 0;
  try {
    for (; done < rows; ++done) {
      MQPROPVARIANT* slice = vars + done * ncol;
      for (DWORD c = 0; c < ncol; ++c) slice[c].vt = VT_NULL;
      MQQUEUEPROPS props{ncol, query->columns.data(), slice, status.data()};
      const transport::QueueInfo& q = query->rows[query->next + done];
      abi::fill_queue_props(&props, q, path_of(q));
      // A property this queue has no value for (PROPID_Q_ADS_PATH): VT_EMPTY, as MSMQ returns.
      for (DWORD c = 0; c < ncol; ++c) {
        if (slice[c].vt == VT_NULL) slice[c].vt = VT_EMPTY;
      }
    }
  } catch (...) {
    for (size_t i = 0; i < done * ncol; ++i) release(vars[i]);
    throw;
  }
  query->next += rows;
  *count = static_cast<DWORD>(rows * ncol);
  return MQ_OK;
}

HRESULT locate_end(HANDLE h) {
  const auto v = reinterpret_cast<uintptr_t>(h);
  if ((v & ~uintptr_t{0xFFFFFFFF}) != kQueryTag ||
      !queries().erase(static_cast<uint32_t>(v & 0xFFFFFFFF))) {
    throw Error(MQ_ERROR_INVALID_HANDLE, "not a handle from MQLocateBegin");
  }
  return MQ_OK;
}

HRESULT copy_out(const std::string& text, LPWSTR out, LPDWORD len) {
  const abi::WString w = abi::wide_from_utf8(text);
  const DWORD needed = static_cast<DWORD>(w.size() + 1);
  const DWORD capacity = *len;
  *len = needed;
  if (out == nullptr || capacity < needed) return MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL;
  abi::wide_copy(out, w);
  return MQ_OK;
}

HRESULT instance_to_format_name(GUID* guid, LPWSTR out, LPDWORD len) {
  if (guid == nullptr || len == nullptr) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "pGuid or lpdwCount is NULL");
  }
  core::MachineGuid g{};
  static_assert(sizeof g == sizeof *guid);
  std::memcpy(&g, guid, sizeof g);
  if (!core::find_queue_by_instance(core::runtime().config().store_path, g)) {
    throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "no queue of this machine has that instance GUID");
  }
  return copy_out(core::public_format_name(g), out, len);
}

HRESULT ads_path_to_format_name(LPCWSTR path, LPWSTR /*out*/, LPDWORD len) {
  if (path == nullptr || len == nullptr) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "lpwcsADsPath or lpdwFormatNameLength is NULL");
  }
  // MSMQ on a computer without Active Directory (workgroup mode) answers every directory
  // operation so: "the operation is not supported for a WORKGROUP installation computer".
  throw Error(MQ_ERROR_UNSUPPORTED_OPERATION,
              "no Active Directory: ADsPath names cannot be resolved (PROPID_PC_DS_ENABLED is "
              "FALSE)");
}

}  // namespace

MQSEC_EXPORT HRESULT APIENTRY MQLocateBegin(LPCWSTR lpwcsContext, MQRESTRICTION* pRestriction,
                                            MQCOLUMNSET* pColumns, MQSORTSET* pSort,
                                            PHANDLE phEnum) {
  return abi::guard("MQLocateBegin", [&] {
    return locate_begin(lpwcsContext, pRestriction, pColumns, pSort, phEnum);
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQLocateNext(HANDLE hEnum, DWORD* pcProps, MQPROPVARIANT aPropVar[]) {
  return abi::guard("MQLocateNext", [&] { return locate_next(hEnum, pcProps, aPropVar); });
}

MQSEC_EXPORT HRESULT APIENTRY MQLocateEnd(HANDLE hEnum) {
  return abi::guard("MQLocateEnd", [&] { return locate_end(hEnum); });
}

MQSEC_EXPORT HRESULT APIENTRY MQInstanceToFormatName(GUID* pGuid, LPWSTR lpwcsFormatName,
                                                     LPDWORD lpdwCount) {
  return abi::guard("MQInstanceToFormatName",
                    [&] { return instance_to_format_name(pGuid, lpwcsFormatName, lpdwCount); });
}

MQSEC_EXPORT HRESULT APIENTRY MQADsPathToFormatName(LPCWSTR lpwcsADsPath, LPWSTR lpwcsFormatName,
                                                    LPDWORD lpdwFormatNameLength) {
  return abi::guard("MQADsPathToFormatName", [&] {
    return ads_path_to_format_name(lpwcsADsPath, lpwcsFormatName, lpdwFormatNameLength);
  });
}
