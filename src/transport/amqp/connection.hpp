// A blocking AMQP 1.0 client over Qpid Proton's event model. One Connection = one
// proton::container running on its own thread and one AMQP connection to the broker; calls from
// other threads go through the connection's proton::work_queue, and every wait is bounded.
//
// A Connection is single-use: once it fails (broker gone, connection dropped, a timeout) it stays
// failed (ok() is false, calls throw) and the caller makes a new one. Proton's own reconnect is
// off; the Forwarder and Inbound reconnect with backoff.
//
// Messages are opaque byte blobs plus string application properties: this layer knows nothing of
// envelopes, signatures, configuration files or stores.
#pragma once

#include <mq.h>

#include "transport/amqp/settings.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace mqsec::transport::amqp {

// One message to send. The body is borrowed: it must stay valid until send() returns.
struct OutboundMessage {
  std::string address;     // broker address, e.g. inbound_address("hostb")
  std::string message_id;  // AMQP message-id (a string); may be empty
  std::vector<std::pair<std::string, std::string>> properties;  // application properties
  std::span<const uint8_t> body;                                // one AMQP data section
  bool durable = true;  // header durable; the broker must keep it across restarts
  // Request/reply (remote read): AMQP subject (RabbitMQ routes a message sent to
  // "/exchange/<x>" by it), reply-to and correlation-id (a string); empty: not set.
  // (Default member initializers: aggregate initializations that stop at `durable` stay free of
  // -Wmissing-field-initializers.)
  std::string subject{};
  std::string reply_to{};
  std::string correlation_id{};
  // Header ttl: the broker may drop the message once it has waited this long (0: no limit).
  std::chrono::milliseconds ttl{0};
};

// How the broker settled one message.
enum class Outcome {
  accepted,   // the broker has taken responsibility for it (durable if the message was)
  rejected,   // the broker refused it (a permanent failure for this message)
  released,   // the broker did not process it (transient; send it again)
  modified,   // as released, possibly with a delivery failure counted
  failed,     // not settled: the link or connection failed (the broker may still have it)
  timed_out,  // not settled within operation_timeout (the connection is then closed)
};
const char* to_string(Outcome outcome) noexcept;

struct SendReport {
  std::vector<Outcome> outcomes;  // one per message, in the order given
  HRESULT error = MQ_OK;          // why messages were not accepted, if known
  std::string error_text;
  bool all_accepted() const noexcept;
  // Number of leading messages that were accepted (what a FIFO source may remove).
  size_t accepted_prefix() const noexcept;
};

// One message taken from a receiver. Accept it only after it has been stored durably.
struct InboundDelivery {
  uint64_t id = 0;                        // handle for accept/release/reject on this Connection
  std::optional<std::string> message_id;  // AMQP message-id if it was a string
  std::vector<std::pair<std::string, std::string>> properties;  // string-valued ones only
  std::vector<uint8_t> body;
  bool binary_body = false;     // the body was one data section (else `body` is empty)
  uint32_t delivery_count = 0;  // > 0: the broker delivered it before
  bool first_acquirer = true;   // false: the broker delivered it before (RabbitMQ's redelivered)
  std::string subject;          // AMQP subject, reply-to and correlation-id (if a string);
  std::string reply_to;         // empty when not set
  std::string correlation_id;
  const std::string* property(std::string_view name) const noexcept;
};

class Connection {
 public:
  // Connects (TCP, TLS for amqps://, SASL PLAIN, AMQP open) within settings.connect_timeout.
  // Throws mqsec::Error: MQ_ERROR_ILLEGAL_FORMATNAME / MQ_ERROR_INVALID_PARAMETER (bad url or
  // settings), MQ_ERROR_SERVICE_NOT_AVAILABLE (unreachable, refused, timed out, dropped),
  // MQ_ERROR_ACCESS_DENIED (credentials refused).
  explicit Connection(const BrokerSettings& settings);
  ~Connection();  // closes (receiver link first), bounded; never throws
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // False once the connection has failed or was closed.
  bool ok() const;
  // The failure that ended it (MQ_OK while ok()).
  std::pair<HRESULT, std::string> error() const;

  // Sends a batch pipelined (one sender link per address, durable target terminus, opened on
  // first use) and returns when every message is settled by the broker, the connection fails,
  // or operation_timeout passes. Throws mqsec::Error only if the connection had already failed
  // before the call.
  SendReport send(std::span<const OutboundMessage> messages);

  // Opens the one receiver of this connection on `address` with a credit window of `credit`
  // unsettled messages. durable: the source terminus asks for durability (configuration), so
  // RabbitMQ declares a queue it creates durable; false: no durability (RabbitMQ 3.10 refuses a
  // durable source on "/exchange/<x>/<key>", the temporary queue of a reply address). Throws
  // mqsec::Error if the broker refuses the address (MQ_ERROR_QUEUE_NOT_FOUND /
  // MQ_ERROR_ACCESS_DENIED) or the connection fails.
  void open_receiver(const std::string& address, uint32_t credit, bool durable = true);

  // The next delivery, or nullopt after `timeout`. Throws mqsec::Error once the connection or
  // the receiver link has failed and no delivery is left.
  std::optional<InboundDelivery> receive(std::chrono::milliseconds timeout);

  // Settle a delivery: accept (stored durably), release (transient failure: the broker delivers
  // it again), reject (the broker drops or dead-letters it). Asynchronous and cheap; false if
  // the connection is gone (then the broker will deliver the message again).
  bool accept(uint64_t delivery_id);
  bool release(uint64_t delivery_id);
  bool reject(uint64_t delivery_id);

  // From any thread: fails the connection now (MQ_ERROR_OPERATION_CANCELLED), so that a send()
  // or receive() waiting in another thread returns at once; unsettled messages count as failed.
  // The owner still destroys the object.
  void abort() noexcept;

  // Closes the receiver link, then the connection (on the broker's detach), bounded by
  // min(connect_timeout, 5 s) (0.5 s once the connection has failed or was aborted), then stops
  // the container thread. Idempotent; not to be called concurrently with itself.
  void close() noexcept;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mqsec::transport::amqp
