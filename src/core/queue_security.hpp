// Queue security descriptors in the queue manager (MQCreateQueue, MQGetQueueSecurity,
// MQSetQueueSecurity) and their enforcement: who the caller is (the calling thread's SID and
// the well-known groups it belongs to), the descriptor a queue has (stored, or MSMQ's default
// with the store's owner as owner for queues that have none), and the rights each operation
// needs (docs/security.md, "Queue permissions").
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "src/core/destination.hpp"
#include "src/security/security_descriptor.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

// The calling thread: its user's SID ([identity] sid), its group's and its supplementary
// groups' (S-1-22-2-<gid>), Everyone and Authenticated Users. Throws
// MQ_ERROR_COULD_NOT_GET_USER_SID.
std::vector<security::Sid> caller_sids();
// A sender of another machine (arrival): its confirmed SID with Everyone and Authenticated
// Users, or, unconfirmed, Anonymous Logon only (as MSMQ treats an unauthenticated sender).
std::vector<security::Sid> remote_sender_sids(const std::optional<security::Sid>& confirmed);

// The self-relative descriptor MQCreateQueue stores: `supplied` (a caller's descriptor,
// nullptr for none) with the parts it lacks from MSMQ's default for the calling thread.
// Throws MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR.
transport::Bytes creation_security(const void* supplied);

// The descriptor of queue `q` of the store: the stored one, or (none stored: queues created
// before descriptors were kept) MSMQ's default with the store's owner (the process's real
// user) as owner.
security::SecurityDescriptor queue_descriptor(const std::filesystem::path& store_dir,
                                              const transport::QueueInfo& q);

// The store queue whose descriptor rules the store queue `name`: the queue itself, a
// subqueue's or a journal's queue; nullopt for the queue manager's own queues (dead-letter
// queues, the machine journal), which have none.
std::optional<std::string> secured_queue_of(std::string_view name);

// MQ_ERROR_ACCESS_DENIED unless the calling thread has `rights` on queue `q` (whose name is
// a secured queue's, secured_queue_of). `what` names the operation in the error text.
void require_queue_rights(const std::filesystem::path& store_dir, const transport::QueueInfo& q,
                          uint32_t rights, std::string_view what);

// MQGetQueueSecurity: the parts `information` names (OWNER, GROUP, DACL) of the queue `d`
// names, self-relative. Needs MQSEC_GET_QUEUE_PERMISSIONS. SACL_SECURITY_INFORMATION:
// MQ_ERROR_PRIVILEGE_NOT_HELD (mqsec keeps no SACL and grants nobody SE_SECURITY_NAME).
transport::Bytes get_queue_security(const std::filesystem::path& store_dir, const Destination& d,
                                    uint32_t information);
// MQSetQueueSecurity: replaces the parts `information` names with `descriptor`'s (a pointer as
// the C API gets it, self-relative). OWNER and GROUP need MQSEC_TAKE_QUEUE_OWNERSHIP, DACL
// MQSEC_CHANGE_QUEUE_PERMISSIONS. Throws MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR,
// MQ_ERROR_PRIVILEGE_NOT_HELD (SACL), MQ_ERROR_ACCESS_DENIED, MQ_ERROR_QUEUE_NOT_FOUND.
void set_queue_security(const std::filesystem::path& store_dir, const Destination& d,
                        uint32_t information, const void* descriptor);

}  // namespace mqsec::core
