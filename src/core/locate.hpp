// Directory queries (MQLocateBegin/Next/End) without a directory service: the result of one
// query over this machine's queues, taken when the query begins (a snapshot: queues created or
// deleted afterwards do not change it), read in pages by MQLocateNext. Also the stable instance
// GUID (PROPID_Q_INSTANCE) each queue of a store has, and the lookup of a queue by it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/core/destination.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

struct QueueQuery {
  std::mutex mu;                           // MQLocateNext from several threads
  std::vector<transport::QueueInfo> rows;  // the matching queues, in the query's order
  std::vector<uint32_t> columns;           // the PROPID_Q_* to return per queue
  size_t next = 0;                         // the first row not returned yet
};

// PROPID_Q_INSTANCE of queue `queue_id` (the store's id, never reused) on machine
// `machine_utf8`: name-based like machine_guid, so it is stable for the life of the queue,
// distinct for distinct queues (a queue deleted and created again gets a new one) and needs
// nothing stored.
MachineGuid queue_instance_guid(std::string_view machine_utf8, int64_t queue_id);

// The queue of this machine's store whose instance GUID is `guid`, if any.
std::optional<transport::QueueInfo> find_queue_by_instance(const std::filesystem::path& store_dir,
                                                           const MachineGuid& guid);

}  // namespace mqsec::core

namespace mqsec::core {

// "PUBLIC=<guid>" (lower-case, without braces), the format name MSMQ gives a queue by its
// instance GUID (MQInstanceToFormatName).
std::string public_format_name(const MachineGuid& guid);
// Whether `format` starts with "PUBLIC=" (any case).
bool is_public_format(std::string_view format);
// The GUID of "PUBLIC=<guid>" (braces optional, any case). Throws MQ_ERROR_ILLEGAL_FORMATNAME
// when the rest is not a GUID (also for MSMQ's suffixes: ";JOURNAL", ";XACTONLY").
MachineGuid guid_of_public_format(std::string_view format);

// Whether `path` is a public queue's path name, "<machine>\<name>" (no "private$\"): MSMQ keeps
// those in Active Directory, which mqsec does not have (MQ_ERROR_UNSUPPORTED_OPERATION, as on a
// workgroup computer). Any other malformed path is not one.
bool is_public_path(std::string_view path);

// The destination a format name names, PUBLIC=<guid> included: that is a queue of the store
// under `store_dir` (there is no directory); any other format name as destination_of_format
// reads it. Throws mqsec::Error: MQ_ERROR_QUEUE_NOT_FOUND (a PUBLIC= GUID of no queue here, such
// as another machine's), MQ_ERROR_ILLEGAL_FORMATNAME.
Destination destination_of_any_format(std::string_view format,
                                      const std::filesystem::path& store_dir);

}  // namespace mqsec::core
