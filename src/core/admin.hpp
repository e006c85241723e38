// Queue administration of the queue manager whose store is under `store_dir` (the system
// configuration's [store] path): create, delete, find and list queues, the rejected-messages
// record, and lookups in the store's certificate registry. Used by MQCreateQueue,
// MQDeleteQueue, MQPathNameToFormatName and the mqsec command's queue verbs.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/core/destination.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

// Creates the queue q (name lower-cased, label, authenticate, transactional, trust demand,
// authorized signers, all in one row) and returns its format name, with its security
// descriptor: `security` (self-relative, MQCreateQueue's pSecurityDescriptor) completed by
// MSMQ's default for the calling thread, or that default (queue_security.hpp). Throws
// mqsec::Error (MQ_ERROR_QUEUE_EXISTS, MQ_ERROR_INVALID_PARAMETER,
// MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR, storage errors).
std::string create_queue(const std::filesystem::path& store_dir, const transport::QueueInfo& q,
                         const void* security = nullptr);
// Deletes a queue and its messages, after this process's express messages are committed.
// Throws MQ_ERROR_QUEUE_NOT_FOUND, MQ_ERROR_ACCESS_DENIED (no MQSEC_DELETE_QUEUE).
void delete_queue(const std::filesystem::path& store_dir, const Destination& d);
std::optional<transport::QueueInfo> find_queue(const std::filesystem::path& store_dir,
                                               const Destination& d);
// MQSetQueueProperties: q is `before` (the queue `d` names, as find_queue gave it) with the
// caller's changes (label, authenticate, journal, quotas, base priority, privacy level, type,
// multicast address). Writes what differs from `before` into that same queue (by id) and sets
// its modify time; what another caller changed meanwhile is kept. Throws
// MQ_ERROR_QUEUE_NOT_FOUND (also when the queue was deleted, and perhaps re-created, since
// `before` was read), MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION (a queue of another machine),
// MQ_ERROR_ACCESS_DENIED (no MQSEC_SET_QUEUE_PROPERTIES).
void update_queue(const std::filesystem::path& store_dir, const Destination& d,
                  const transport::QueueInfo& before, transport::QueueInfo q);

struct QueueStatus {
  transport::QueueInfo info;
  size_t messages = 0;  // waiting in the queue
  uint64_t bytes = 0;   // their stored size (envelopes: body, properties, signature)
};
std::vector<QueueStatus> list_queues(const std::filesystem::path& store_dir);  // by name
// Whether a store queue name (or a destination's queue name) is an application's queue: one
// MQCreateQueue makes, that applications send to and that directory queries, PUBLIC= and
// PROPID_MGMT_MSMQ_PRIVATEQ show. False for the rows the queue manager keeps under reserved
// names: outgoing queues ("direct=os:<machine>\private$\<queue>", outgoing.hpp), journals
// (journal.hpp), dead-letter queues (dead_letter.hpp) and subqueues (subqueue.hpp). Each of
// those contains a backslash or ';'; an application queue name never does (destination.hpp).
bool is_application_queue(std::string_view name);
// The format name PROPID_MGMT_MSMQ_ACTIVEQUEUES lists store queue `name` under, one that opens
// it: an application queue's or subqueue's, a journal's (";JOURNAL"), a dead-letter queue's,
// an outgoing queue's destination; nullopt for rows that are no queue of MSMQ's (transactions'
// holding queues, holding.hpp; an outgoing name that does not parse).
std::optional<std::string> listed_format_name(std::string_view name);
// The application queues of the store (is_application_queue), by name, without their message
// counts.
std::vector<transport::QueueInfo> application_queues(const std::filesystem::path& store_dir);
// One queue of this machine (MQMgmtGetInfo). Throws MQ_ERROR_QUEUE_NOT_FOUND,
// MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION (a queue of another machine).
QueueStatus queue_status(const std::filesystem::path& store_dir, const Destination& d);

// The rejected-messages record of `queue`, or of every queue when it is empty (oldest first).
std::vector<transport::Rejection> rejections(const std::filesystem::path& store_dir,
                                             const std::string& queue);

// The SID the store's certificate registry binds a certificate (by its DER) to, read now.
std::optional<transport::Bytes> registered_sid_of(const std::filesystem::path& store_dir,
                                                  std::span<const uint8_t> cert_der);

}  // namespace mqsec::core
