// The dead-letter queues (dead_letter.hpp).
#include "src/core/dead_letter.hpp"

#include <mq.h>

#include <algorithm>
#include <cctype>

#include "mqsec/error.hpp"
#include "src/core/expiry.hpp"

namespace mqsec::core {

std::string dead_letter_format_suffix(std::string_view store_queue_name) {
  if (store_queue_name == kDeadLetterQueueName) return "SYSTEM$;DEADLETTER";
  if (store_queue_name == kDeadXactQueueName) return "SYSTEM$;DEADXACT";
  return {};
}

std::string dead_letter_queue_of_suffix(std::string_view suffix) {
  std::string s(suffix);
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (s == "system$;deadletter") return std::string(kDeadLetterQueueName);
  if (s == "system$;deadxact") return std::string(kDeadXactQueueName);
  return {};
}

transport::QueueInfo ensure_dead_letter_queue(transport::local::Store& store, bool transactional) {
  transport::QueueInfo info;
  info.name = transactional ? kDeadXactQueueName : kDeadLetterQueueName;
  info.label = transactional ? "transactional dead-letter queue" : "dead-letter queue";
  info.transactional = transactional;
  return store.ensure_queue(info);
}

bool move_to_dead_letter(transport::local::LocalQueue& from, int64_t seq, bool transactional) {
  transport::local::Store& store = from.store();
  const transport::QueueInfo dlq = ensure_dead_letter_queue(store, transactional);
  return store.move_message(from.id(), seq, dlq.id);
}

uint16_t dead_letter_class(const security::Envelope& e, int64_t now) {
  return expired(e, now) ? MQMSG_CLASS_NACK_RECEIVE_TIMEOUT : MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT;
}

}  // namespace mqsec::core
