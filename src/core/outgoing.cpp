// Outgoing queues of the local store and the forwarder's source over them.
#include "src/core/outgoing.hpp"

#include <mq.h>

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <map>
#include <utility>

#include "mqsec/error.hpp"
#include "src/security/envelope.hpp"
#include "src/core/verification.hpp"
#include "src/security/log.hpp"
#include "src/security/openssl.hpp"

namespace mqsec::core {
namespace {

constexpr std::string_view kOutgoingPrefix = "direct=os:";

}  // namespace

std::string outgoing_queue_name(const Destination& d) {
  return std::string(kOutgoingPrefix) + d.machine + "\\private$\\" + d.queue;
}

std::optional<Destination> destination_of_outgoing(std::string_view store_queue_name) {
  if (!store_queue_name.starts_with(kOutgoingPrefix)) return std::nullopt;
  try {
    // Any name the store holds under the prefix was made by outgoing_queue_name; parse it with
    // this machine as ".", so that every machine name stays remote.
    Destination d = destination_of_format(store_queue_name, ".");
    if (!d.remote() || outgoing_queue_name(d) != store_queue_name) return std::nullopt;
    return d;
  } catch (const Error&) {
    return std::nullopt;
  }
}

transport::QueueInfo ensure_outgoing_queue(transport::local::Store& store, const Destination& d) {
  const std::string name = outgoing_queue_name(d);
  if (auto q = store.find_queue(name)) return *q;
  transport::QueueInfo info;
  info.name = name;
  info.label = "outgoing queue to " + format_name_of(d);
  try {
    store.create_queue(info);
  } catch (const Error& e) {
    if (e.code() != MQ_ERROR_QUEUE_EXISTS) throw;  // another sender created it meanwhile
  }
  auto q = store.find_queue(name);
  if (!q) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                "outgoing queue '" + name + "' vanished while it was being created");
  }
  return *q;
}

std::vector<OutgoingQueueInfo> list_outgoing_queues(transport::local::Store& store) {
  std::vector<OutgoingQueueInfo> out;
  for (const auto& q : store.list_queues()) {
    auto d = destination_of_outgoing(q.name);
    if (!d) continue;
    OutgoingQueueInfo o;
    o.format_name = format_name_of(*d);
    o.destination = std::move(*d);
    o.backlog = store.message_count(q.id);
    o.created = q.created;
    out.push_back(std::move(o));
  }
  return out;
}

StoreOutgoingSource::StoreOutgoingSource(transport::local::Stores& stores,
                                         std::filesystem::path store_dir,
                                         transport::RejectionBounds bounds, std::string machine)
    : stores_(stores), dir_(std::move(store_dir)), bounds_(bounds), machine_(std::move(machine)) {}

transport::local::Store& StoreOutgoingSource::store() { return stores_.store_at(dir_); }

std::vector<transport::amqp::OutgoingItem> StoreOutgoingSource::peek(size_t max) {
  transport::local::Store& s = store();
  // Read the version first: whatever is committed after it changes what wait_for_change sees.
  seen_version_ = s.version();
  std::vector<std::pair<std::string, std::pair<int64_t, Destination>>> queues;
  for (const auto& q : s.list_queues()) {
    if (auto d = destination_of_outgoing(q.name)) queues.push_back({q.name, {q.id, *d}});
  }
  queue_of_seq_.clear();
  queue_ids_.clear();
  deadline_of_seq_.clear();
  std::vector<transport::amqp::OutgoingItem> items;
  if (queues.empty() || max == 0) return items;
  const size_t start = next_queue_ % queues.size();
  next_queue_ = start + 1;
  for (size_t k = 0; k < queues.size() && items.size() < max; ++k) {
    const auto& [name, entry] = queues[(start + k) % queues.size()];
    const auto& [id, dest] = entry;
    queue_ids_[name] = id;
    for (auto m = s.first(id); m && items.size() < max; m = s.next_after(id, m->priority, m->seq)) {
      security::Envelope e;
      try {
        e = security::decode(m->envelope);
      } catch (const std::exception& ex) {
        // Not an envelope: nothing to address it with; record it and drop it.
        const std::string reason =
            std::string("message in outgoing queue is not an envelope: ") + ex.what();
        log(LogLevel::Warning, "forwarder: outgoing queue '" + name + "': " + reason);
        s.record_rejection(name, "malformed", reason, m->envelope, bounds_);
        s.remove(id, m->seq);
        continue;
      }
      transport::amqp::OutgoingItem item;
      item.seq = m->seq;
      item.destination_machine = dest.machine;
      item.queue = dest.queue;
      item.message_id_hex = security::hex(e.msg_id);
      item.body = std::move(m->envelope);
      item.durable = e.delivery == MQMSG_DELIVERY_RECOVERABLE;
      queue_of_seq_[item.seq] = name;
      if (e.time_to_reach_queue != security::kNoTimeLimit) {
        // Saturating: a sent time near 2^64 never wraps round to an early deadline.
        deadline_of_seq_[item.seq] = e.sent_time > UINT64_MAX - e.time_to_reach_queue
                                         ? UINT64_MAX
                                         : e.sent_time + e.time_to_reach_queue;
      }
      items.push_back(std::move(item));
    }
  }
  return items;
}

void StoreOutgoingSource::remove(std::span<const int64_t> seqs) {
  // One transaction per outgoing queue, not one per message: the forwarder removes whole
  // accepted batches while senders append to the same store.
  std::map<int64_t, std::vector<int64_t>> by_queue;
  for (int64_t seq : seqs) {
    auto it = queue_of_seq_.find(seq);
    if (it == queue_of_seq_.end()) continue;
    by_queue[queue_ids_.at(it->second)].push_back(seq);
  }
  transport::local::Store& s = store();
  for (const auto& [queue_id, queue_seqs] : by_queue) s.remove_many(queue_id, queue_seqs);
}

bool StoreOutgoingSource::wait_for_change(std::chrono::milliseconds timeout) {
  return store().wait_for_change(seen_version_, timeout);
}

bool StoreOutgoingSource::expired(const transport::amqp::OutgoingItem& item) {
  auto it = deadline_of_seq_.find(item.seq);
  if (it == deadline_of_seq_.end()) return false;
  const auto now = std::time(nullptr);
  return now > 0 && static_cast<uint64_t>(now) > it->second;
}

std::string StoreOutgoingSource::queue_of(const transport::amqp::OutgoingItem& item) const {
  auto it = queue_of_seq_.find(item.seq);
  if (it != queue_of_seq_.end()) return it->second;
  return outgoing_queue_name(
      Destination{item.queue, Destination::Transport::Remote, item.destination_machine});
}

void StoreOutgoingSource::on_expired(const transport::amqp::OutgoingItem& item) {
  const std::string queue = queue_of(item);
  security::Envelope e = security::decode(item.body);  // peek decoded it already
  const auto now = static_cast<uint64_t>(std::max<std::time_t>(0, std::time(nullptr)));
  const Refusal refusal{"expired", "not delivered within its time to reach queue of " +
                                       std::to_string(e.time_to_reach_queue) + " s (sent " +
                                       std::to_string(now > e.sent_time ? now - e.sent_time : 0) +
                                       " s ago)"};
  // The same path as a message refused on receive or arrival: log, record, NACK when asked.
  QueuePolicy policy;
  policy.store_dir = dir_;
  policy.rejection_bounds = bounds_;
  policy.machine = machine_;
  transport::local::LocalQueue record_in(stores_, dir_, queue, 0);
  reject_message(record_in, "message " + item.message_id_hex + " in outgoing queue '" + queue + "'",
                 policy, item.body, &e, refusal, MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT);
}

bool StoreOutgoingSource::on_rejected(const transport::amqp::OutgoingItem& item,
                                      const std::string& reason) {
  const std::string queue = queue_of(item);
  log(LogLevel::Warning, "forwarder: message " + item.message_id_hex + " to '" + queue +
                             "' refused for good: " + reason +
                             " (recorded in mqsec rejected, removed from the outgoing queue)");
  store().record_rejection(queue, "broker-rejected", reason, item.body, bounds_);
  return true;
}

}  // namespace mqsec::core
