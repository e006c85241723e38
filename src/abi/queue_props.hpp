// MQQUEUEPROPS <-> transport::QueueInfo: MSMQ's queue properties (PROPID_Q_*) for
// MQCreateQueue, MQSetQueueProperties and MQGetQueueProperties.
#pragma once

#include <mq.h>

#include <string>

#include "src/transport/transport.hpp"

namespace mqsec::abi {

// What the caller may do with a property.
enum class QueuePropsUse { Create, Set };

// Reads the properties into q (PATHNAME sets q.name, only at Create). Sets aStatus[i]; throws
// mqsec::Error with the first failing property's code: MQ_ERROR_ILLEGAL_PROPID (not a queue
// property), MQ_ERROR_ILLEGAL_PROPERTY_VT, MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
// MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, MQ_ERROR_PROPERTY_NOTALLOWED (Set: a property that cannot
// change: PATHNAME, TRANSACTION, INSTANCE, the times, PATHNAME_DNS, ADS_PATH),
// MQ_ERROR_INVALID_PARAMETER (a malformed array). Returns MQ_OK, or MQ_INFORMATION_PROPERTY when
// a property was ignored (Create: the read-only ones, with MQ_INFORMATION_PROPERTY_IGNORED) or
// repeated (MQ_INFORMATION_DUPLICATE_PROPERTY). *has_path: whether PATHNAME was given.
HRESULT parse_queue_props(MQQUEUEPROPS* props, QueuePropsUse use, transport::QueueInfo& q,
                          bool* has_path);

// Checks MQGetQueueProperties' array before anything is read (ids and types; buffers for
// VT_CLSID). Throws like parse_queue_props.
void check_queue_props_get(MQQUEUEPROPS* props);
// Fills the properties from q. Strings (and GUIDs asked for as VT_NULL) are allocated: the
// caller frees them with MQFreeMemory, as in MSMQ. path_name: "<machine>\private$\<queue>";
// format_name: q's direct format name. Returns MQ_OK or MQ_INFORMATION_PROPERTY (a property
// mqsec does not keep: MQ_INFORMATION_UNSUPPORTED_PROPERTY in aStatus).
HRESULT fill_queue_props(MQQUEUEPROPS* props, const transport::QueueInfo& q,
                         const std::string& path_name);

// MSMQ's VT_* of a queue property (PROPID_Q_*); 0 when `id` is not one.
VARTYPE queue_property_vt(PROPID id);

// A malloc'ed copy of a UTF-8 string as WCHARs (MQFreeMemory frees it). Throws
// MQ_ERROR_INSUFFICIENT_RESOURCES.
WCHAR* allocated_wide(const std::string& utf8);

}  // namespace mqsec::abi
