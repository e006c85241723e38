// Queue administration on the configured store (local transport).
#include "src/core/admin.hpp"

#include <algorithm>

#include "mqsec/error.hpp"
#include "src/core/dead_letter.hpp"
#include "src/core/holding.hpp"
#include "src/core/journal.hpp"
#include "src/core/outgoing.hpp"
#include "src/core/queue_security.hpp"
#include "src/core/runtime.hpp"
#include "src/core/subqueue.hpp"
#include "src/security/openssl.hpp"

namespace mqsec::core {
namespace {
transport::local::Store& store(const std::filesystem::path& store_dir) {
  return runtime().stores().store_at(store_dir);
}
// Administration is of this machine's queues only (a remote queue's outgoing queue is not it).
void local_only(const Destination& d) {
  if (d.remote()) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "queue '" + format_name_of(d) +
                    "' is on another machine; only queues of this machine are administered here");
  }
}
// A subqueue ("<queue>;<sub>", subqueue.hpp) is not administered on its own: it has no
// properties of its own and goes with its queue.
void not_subqueue(const Destination& d) {
  if (is_subqueue(d.queue)) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "'" + d.queue +
                    "' is a subqueue: it has no properties of its own and is deleted "
                    "with its queue");
  }
}
// The dead-letter queues are the queue manager's: never deleted or changed by applications.
void not_system(const Destination& d) {
  if (is_dead_letter_queue_name(d.queue) || is_journal_queue_name(d.queue)) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "'" + format_name_of(d) + "' is a system queue: it cannot be deleted or changed");
  }
}
}  // namespace

std::string create_queue(const std::filesystem::path& store_dir, const transport::QueueInfo& q,
                         const void* security) {
  if (is_subqueue(q.name)) {
    throw Error(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
                "queue name '" + q.name + "' has a ';' (it separates a queue from its subqueue)");
  }
  std::string format = format_name_of(q.name);
  store(store_dir).create_queue(q, {}, creation_security(security));
  return format;
}

void delete_queue(const std::filesystem::path& store_dir, const Destination& d) {
  local_only(d);
  not_subqueue(d);
  not_system(d);
  if (std::optional<transport::QueueInfo> q = store(store_dir).find_queue(d.queue)) {
    require_queue_rights(store_dir, *q, MQSEC_DELETE_QUEUE, "MQDeleteQueue");
  }
  runtime().stores().flush_express();
  // Its journal goes with it, as in MSMQ, in the same store transaction.
  store(store_dir).delete_queue(d.queue, journal_queue_name(d.queue));
}

std::optional<transport::QueueInfo> find_queue(const std::filesystem::path& store_dir,
                                               const Destination& d) {
  local_only(d);
  not_subqueue(d);
  return store(store_dir).find_queue(d.queue);
}

void update_queue(const std::filesystem::path& store_dir, const Destination& d,
                  const transport::QueueInfo& before, transport::QueueInfo q) {
  local_only(d);
  not_subqueue(d);
  not_system(d);
  require_queue_rights(store_dir, before, MQSEC_SET_QUEUE_PROPERTIES, "MQSetQueueProperties");
  q.modified = 0;  // now
  store(store_dir).update_queue(before, q);
}

std::vector<QueueStatus> list_queues(const std::filesystem::path& store_dir) {
  transport::local::Store& st = store(store_dir);
  std::vector<QueueStatus> out;
  for (transport::QueueInfo& q : st.list_queues()) {
    const size_t n = st.message_count(q.id);
    const uint64_t bytes = st.message_bytes(q.id);
    out.push_back({std::move(q), n, bytes});
  }
  return out;
}

bool is_application_queue(std::string_view name) {
  if (name.empty() || is_subqueue(name) || is_journal_queue_name(name) ||
      is_dead_letter_queue_name(name)) {
    return false;
  }
  // Outgoing queues ("direct=os:<machine>\private$\<queue>"), also one whose name
  // destination_of_outgoing cannot parse back, and any other reserved row.
  return name.find('\\') == std::string_view::npos;
}

std::optional<std::string> listed_format_name(std::string_view name) {
  if (name.starts_with(kHoldingPrefix)) return std::nullopt;
  if (std::optional<Destination> d = destination_of_outgoing(name)) return format_name_of(*d);
  if (is_application_queue(name) || is_subqueue(name) || is_journal_queue_name(name) ||
      is_dead_letter_queue_name(name)) {
    return format_name_of(name);
  }
  return std::nullopt;
}

std::vector<transport::QueueInfo> application_queues(const std::filesystem::path& store_dir) {
  std::vector<transport::QueueInfo> out = store(store_dir).list_queues();
  std::erase_if(out, [](const transport::QueueInfo& q) { return !is_application_queue(q.name); });
  return out;
}

QueueStatus queue_status(const std::filesystem::path& store_dir, const Destination& d) {
  local_only(d);
  runtime().stores().flush_express();
  transport::local::Store& st = store(store_dir);
  std::optional<transport::QueueInfo> q = st.find_queue(d.queue);
  if (!q) throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue '" + d.queue + "' not found");
  QueueStatus out;
  out.messages = st.message_count(q->id);
  out.bytes = st.message_bytes(q->id);
  out.info = std::move(*q);
  return out;
}

std::vector<transport::Rejection> rejections(const std::filesystem::path& store_dir,
                                             const std::string& queue) {
  transport::local::Store& st = store(store_dir);
  if (!queue.empty()) return st.rejections(queue);
  std::vector<transport::Rejection> records;
  for (const transport::QueueInfo& q : st.list_queues()) {
    std::vector<transport::Rejection> more = st.rejections(q.name);
    records.insert(records.end(), more.begin(), more.end());
  }
  std::stable_sort(records.begin(), records.end(),
                   [](const transport::Rejection& x, const transport::Rejection& y) {
                     return x.time != y.time ? x.time < y.time : x.id < y.id;
                   });
  return records;
}

std::optional<transport::Bytes> registered_sid_of(const std::filesystem::path& store_dir,
                                                  std::span<const uint8_t> cert_der) {
  return store(store_dir).certificate_sid(security::sha256(cert_der));
}

}  // namespace mqsec::core
