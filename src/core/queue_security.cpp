// Queue security descriptors in the queue manager and their enforcement.
#include "src/core/queue_security.hpp"

#include <mq.h>
#include <unistd.h>

#include <string>

#include "mqsec/error.hpp"
#include "src/core/dead_letter.hpp"
#include "src/core/journal.hpp"
#include "src/core/runtime.hpp"
#include "src/core/subqueue.hpp"

namespace mqsec::core {
namespace {

using security::SecurityDescriptor;

transport::local::Store& store(const std::filesystem::path& store_dir) {
  return runtime().stores().store_at(store_dir);
}

constexpr uint32_t kKept = security::kOwnerSecurityInformation |
                           security::kGroupSecurityInformation | security::kDaclSecurityInformation;

void check_information(uint32_t information) {
  if (information & security::kSaclSecurityInformation) {
    throw Error(MQ_ERROR_PRIVILEGE_NOT_HELD,
                "SACL_SECURITY_INFORMATION: mqsec keeps no SACL (no auditing) and grants no "
                "caller SE_SECURITY_NAME");
  }
}

// The queue `d` names, as the store has it; only queues of this machine with a descriptor.
transport::QueueInfo secured_queue(const std::filesystem::path& store_dir, const Destination& d) {
  if (d.remote()) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "queue '" + format_name_of(d) +
                    "' is on another machine: only the security of this machine's queues is "
                    "kept here");
  }
  if (is_subqueue(d.queue) || !secured_queue_of(d.queue) || *secured_queue_of(d.queue) != d.queue) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "'" + d.queue + "' has no security descriptor of its own");
  }
  std::optional<transport::QueueInfo> q = store(store_dir).find_queue(d.queue);
  if (!q) throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue '" + d.queue + "' not found");
  return *q;
}

SecurityDescriptor parse_pointer(const void* p) {
  const auto* bytes = static_cast<const uint8_t*>(p);
  return security::parse_security_descriptor(
      std::span<const uint8_t>(bytes, security::self_relative_length(bytes)));
}

}  // namespace

std::vector<security::Sid> caller_sids() {
  const security::UserIdentity user = security::current_user(runtime().config().sid_source);
  std::vector<security::Sid> sids{user.sid, security::unix_group_sid(user.gid),
                                  security::everyone_sid(), security::authenticated_users_sid()};
  // The calling thread's supplementary groups (the kernel keeps them per thread, as it keeps
  // the uid an impersonating thread switched to): an ACE for a group applies to its members,
  // not only to those whose primary group it is (review 4, finding 4).
  const int n = ::getgroups(0, nullptr);
  if (n > 0) {
    std::vector<gid_t> groups(static_cast<size_t>(n));
    const int got = ::getgroups(n, groups.data());
    for (int i = 0; i < got; ++i) {
      if (groups[static_cast<size_t>(i)] != user.gid) {
        sids.push_back(security::unix_group_sid(groups[static_cast<size_t>(i)]));
      }
    }
  }
  return sids;
}

std::vector<security::Sid> remote_sender_sids(const std::optional<security::Sid>& confirmed) {
  if (!confirmed) return {security::anonymous_logon_sid()};
  return {*confirmed, security::everyone_sid(), security::authenticated_users_sid()};
}

// A new owner must be the calling thread's user or one of its groups (Windows: the caller's SID
// or a group it may own with), unless the thread runs as root (as a Windows administrator with
// the restore privilege may name any owner): else any user could hand a queue to Everyone,
// which would let everyone change its permissions (review 4, finding 5).
static void check_new_owner(const std::optional<security::Sid>& owner, std::string_view what) {
  if (!owner) return;
  const security::UserIdentity user = security::current_user(runtime().config().sid_source);
  if (user.uid == 0) return;
  for (const security::Sid& s : caller_sids()) {
    if (s == *owner && s != security::everyone_sid() && s != security::authenticated_users_sid()) {
      return;
    }
  }
  throw Error(MQ_ERROR_ACCESS_DENIED, std::string(what) + ": the owner " + owner->str() +
                                          " is neither the calling user nor one of its groups");
}

transport::Bytes creation_security(const void* supplied) {
  const security::UserIdentity user = security::current_user(runtime().config().sid_source);
  const security::Sid group = security::unix_group_sid(user.gid);
  if (supplied != nullptr) check_new_owner(parse_pointer(supplied).owner, "MQCreateQueue");
  SecurityDescriptor sd =
      supplied == nullptr ? security::default_queue_descriptor(user.sid, group)
                          : security::creation_descriptor(parse_pointer(supplied), user.sid, group);
  return security::serialize_security_descriptor(sd, kKept);
}

SecurityDescriptor queue_descriptor(const std::filesystem::path& store_dir,
                                    const transport::QueueInfo& q) {
  if (std::optional<transport::Bytes> stored = store(store_dir).queue_security(q.id)) {
    return security::parse_security_descriptor(*stored);
  }
  const uint32_t owner = ::getuid();  // the store belongs to the process's real user
  const security::Sid sid = security::user_sid(runtime().config().sid_source, owner);
  return security::default_queue_descriptor(sid, security::unix_group_sid(::getgid()));
}

std::optional<std::string> secured_queue_of(std::string_view name) {
  if (is_dead_letter_queue_name(name) || name == kMachineJournalName) return std::nullopt;
  if (std::optional<std::string> of = queue_of_journal(name)) return of;
  return main_queue_of(name);
}

// MQ_ERROR_ACCESS_DENIED unless `sd` grants the calling thread `rights` on queue `q`.
static void require_rights_in(const SecurityDescriptor& sd, const transport::QueueInfo& q,
                              uint32_t rights, std::string_view what) {
  const std::vector<security::Sid> caller = caller_sids();
  if (!security::access_allowed(sd, caller, rights)) {
    throw Error(MQ_ERROR_ACCESS_DENIED, std::string(what) + ": " + caller.front().str() +
                                            " has not the rights it needs on queue '" + q.name +
                                            "' (its security descriptor, MQGetQueueSecurity)");
  }
}

void require_queue_rights(const std::filesystem::path& store_dir, const transport::QueueInfo& q,
                          uint32_t rights, std::string_view what) {
  require_rights_in(queue_descriptor(store_dir, q), q, rights, what);
}

transport::Bytes get_queue_security(const std::filesystem::path& store_dir, const Destination& d,
                                    uint32_t information) {
  check_information(information);
  const transport::QueueInfo q = secured_queue(store_dir, d);
  require_queue_rights(store_dir, q, MQSEC_GET_QUEUE_PERMISSIONS, "MQGetQueueSecurity");
  return security::serialize_security_descriptor(queue_descriptor(store_dir, q), information);
}

void set_queue_security(const std::filesystem::path& store_dir, const Destination& d,
                        uint32_t information, const void* descriptor) {
  check_information(information);
  if (descriptor == nullptr) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "pSecurityDescriptor is NULL");
  }
  const SecurityDescriptor change = parse_pointer(descriptor);
  const transport::QueueInfo q = secured_queue(store_dir, d);
  uint32_t rights = 0;
  if (information & (security::kOwnerSecurityInformation | security::kGroupSecurityInformation)) {
    rights |= MQSEC_TAKE_QUEUE_OWNERSHIP;
  }
  if (information & security::kDaclSecurityInformation) rights |= MQSEC_CHANGE_QUEUE_PERMISSIONS;
  if (information & security::kOwnerSecurityInformation) {
    check_new_owner(change.owner, "MQSetQueueSecurity");
  }
  // Read, check the rights on what was read, merge, and write only if the stored descriptor is
  // still what was read (one store transaction): a right revoked meanwhile is never overwritten
  // by a change it no longer allows (review 4, finding 3).
  for (int attempt = 0; attempt < 16; ++attempt) {
    const std::optional<transport::Bytes> stored = store(store_dir).queue_security(q.id);
    const SecurityDescriptor current =
        stored ? security::parse_security_descriptor(*stored) : queue_descriptor(store_dir, q);
    require_rights_in(current, q, rights, "MQSetQueueSecurity");
    const SecurityDescriptor merged =
        security::merge_security_descriptor(current, change, information);
    if (store(store_dir).set_queue_security(
            q.id, security::serialize_security_descriptor(merged, kKept), stored)) {
      return;
    }
  }
  throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
              "MQSetQueueSecurity: queue '" + q.name + "' kept changing under this call");
}

}  // namespace mqsec::core
