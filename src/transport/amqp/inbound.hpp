// The arrival half of store-and-forward: consumes this machine's broker queue
// (inbound_address(machine)) and hands each message to the core, which verifies it and stores or
// rejects it. A delivery is accepted on the broker only after the callback returned (so after
// the core stored it durably): at-least-once, duplicates removed by the core by message id.
#pragma once

#include "transport/amqp/connection.hpp"
#include "transport/amqp/settings.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

namespace mqsec::transport::amqp {

struct InboundMessage {
  std::string queue;            // mqsec-queue: the destination's queue
  std::string message_id_hex;   // AMQP message-id
  std::string source_machine;   // mqsec-source
  std::vector<uint8_t> body;    // the opaque envelope
  uint32_t delivery_count = 0;  // > 0: delivered before (a duplicate is likely)
};

// What the core did with a message.
enum class Disposition {
  accept,  // stored durably (or a duplicate of a stored one): accepted on the broker
  retry,   // transient failure (store busy, disk full): released, the broker delivers it again
           // after retry_delay
  reject,  // refused and recorded by the core (bad signature, NACK sent): accepted on the
           // broker, it must not come back
};

// A broker message that is not an mqsec message: body not one binary data section, a missing
// property, a message id that is not 40 hex digits, or addressed to another machine. It is
// rejected on the broker (dropped, or dead-lettered where the queue has a dead-letter exchange).
struct MalformedMessage {
  std::string reason;
  std::string message_id;  // as far as known
  std::string source_machine;
  size_t body_size = 0;
};

struct InboundOptions {
  std::string machine;    // this machine: consumes inbound_address(machine), validated
  uint32_t credit = 500;  // unsettled deliveries in flight
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds retry_delay{200};  // pause before releasing a `retry` message
  std::chrono::milliseconds poll{250};         // receive slice (stop latency)
  std::function<void(const MalformedMessage&)> on_malformed;  // optional
  std::function<void(std::string_view)> log;                  // optional
};

struct InboundStatus {
  bool connected = false;
  uint64_t delivered = 0;  // callback said accept
  uint64_t retried = 0;
  uint64_t rejected = 0;
  uint64_t malformed = 0;
  uint64_t redelivered = 0;  // deliveries with delivery_count > 0
  uint64_t connects = 0;
  uint64_t failures = 0;
  HRESULT last_error = MQ_OK;
  std::string last_error_text;
};

class Inbound {
 public:
  using Deliver = std::function<Disposition(const InboundMessage&)>;

  Inbound(BrokerSettings settings, InboundOptions options, Deliver deliver);
  ~Inbound();
  Inbound(const Inbound&) = delete;
  Inbound& operator=(const Inbound&) = delete;

  // Connects if needed, then handles deliveries for at most `timeout` (returns early after one
  // idle slice with nothing to do). Returns the number of deliveries handled. Throws
  // mqsec::Error if the broker is unreachable or the connection fails (dropped; the next call
  // reconnects). A callback that throws counts as `retry`.
  size_t run_once(std::chrono::milliseconds timeout);

  // Until `stop` is requested, with reconnects and bounded exponential backoff. Closes the
  // receiver link before the connection (RabbitMQ may requeue accepted messages otherwise).
  void run(std::stop_token stop);

  InboundStatus status() const;

 private:
  void handle(const InboundDelivery& d);
  void note_failure(HRESULT code, const std::string& text);
  void log(const std::string& line) const;

  BrokerSettings settings_;
  InboundOptions options_;
  Deliver deliver_;
  std::string address_;
  std::unique_ptr<Connection> connection_;
  mutable std::mutex status_mutex_;
  InboundStatus status_;
};

}  // namespace mqsec::transport::amqp
