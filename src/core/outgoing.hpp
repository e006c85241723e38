// Outgoing queues (MSMQ's model; docs/remote.md, "Outgoing queues"): a message sent to a queue of
// another machine is stored in a local outgoing queue of this store, one per destination (machine
// and queue), and the forwarder (forwarding.hpp) moves it to the broker. An outgoing queue is an
// ordinary queue of the local store under a reserved name: the destination's format name,
// lower-cased, "direct=os:<machine>\private$\<queue>". Queue names that a user can create or open
// (.\private$\NAME) never contain '\', so no private queue can take such a name.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/core/destination.hpp"
#include "src/transport/local/local_transport.hpp"
#include "src/transport/transport.hpp"
#include "transport/amqp/forwarder.hpp"

namespace mqsec::core {

// The reserved store queue name of the outgoing queue for remote destination `d`.
std::string outgoing_queue_name(const Destination& d);
// The remote destination of an outgoing queue's store name; nullopt for any other queue name.
std::optional<Destination> destination_of_outgoing(std::string_view store_queue_name);
inline bool is_outgoing_queue_name(std::string_view store_queue_name) {
  return destination_of_outgoing(store_queue_name).has_value();
}

// The outgoing queue for `d` in `store`, created when missing (race-safe: another process may
// create it at the same time). Throws what the store throws.
transport::QueueInfo ensure_outgoing_queue(transport::local::Store& store, const Destination& d);

// An outgoing queue as `mqsec queue list` shows it.
struct OutgoingQueueInfo {
  Destination destination;
  std::string format_name;  // DIRECT=OS:<machine>\private$\<queue>
  size_t backlog = 0;       // messages waiting
  int64_t created = 0;
};
std::vector<OutgoingQueueInfo> list_outgoing_queues(transport::local::Store& store);

// The forwarder's source over the outgoing queues of one store: every outgoing queue in receive
// order (priority, then arrival), the queues taken in turn from one peek to the next. A message in
// an outgoing queue that is not an envelope (only a direct write to the database makes one) is
// recorded as rejected ("malformed") and removed, never sent. Not thread-safe: one forwarder
// thread uses it.
class StoreOutgoingSource final : public transport::amqp::OutgoingSource {
 public:
  // machine: this machine's name (the NACKs of expired messages are from it).
  StoreOutgoingSource(transport::local::Stores& stores, std::filesystem::path store_dir,
                      transport::RejectionBounds bounds, std::string machine);

  std::vector<transport::amqp::OutgoingItem> peek(size_t max) override;
  void remove(std::span<const int64_t> seqs) override;
  bool wait_for_change(std::chrono::milliseconds timeout) override;
  // PROPID_M_TIME_TO_REACH_QUEUE: true when now is past the message's sent time plus its time
  // to reach queue (the sender's own clock: no skew). Messages without a limit never expire.
  bool expired(const transport::amqp::OutgoingItem& item) override;
  // Records the expired message in the rejected-messages record under the outgoing queue's name
  // (kind "expired") and NACKs it (MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT) to its admin queue when
  // it asked for negative arrival acknowledgements; the forwarder then removes it.
  void on_expired(const transport::amqp::OutgoingItem& item) override;
  // Records the refusal in the rejected-messages record under the outgoing queue's name (kind
  // "broker-rejected"), logs it, and lets the forwarder remove the message.
  bool on_rejected(const transport::amqp::OutgoingItem& item, const std::string& reason) override;

 private:
  // The outgoing queue an item was peeked from (by its seq), else the one its destination names.
  std::string queue_of(const transport::amqp::OutgoingItem& item) const;
  transport::local::Store& store();

  transport::local::Stores& stores_;
  const std::filesystem::path dir_;
  const transport::RejectionBounds bounds_;
  const std::string machine_;
  uint64_t seen_version_ = 0;
  size_t next_queue_ = 0;                        // where the next peek starts (round robin)
  std::map<int64_t, std::string> queue_of_seq_;  // seq -> outgoing queue name, of the last peek
  std::map<std::string, int64_t> queue_ids_;     // outgoing queue name -> id, of the last peek
  std::map<int64_t, uint64_t> deadline_of_seq_;  // seq -> last second it may be sent in, of the
                                                 // last peek (only messages with a limit)
};

}  // namespace mqsec::core
