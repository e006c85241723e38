// The outbound half of store-and-forward: moves messages from a local outgoing queue (an
// OutgoingSource the core implements with its SQLite store) to the broker, and removes each one
// only after the broker has settled it `accepted`. At-least-once: a message may reach the broker
// twice (after a dropped connection or a crash between the broker's accept and remove()), never
// zero times; the destination removes duplicates by message id. Order is kept per source: a
// batch is removed only up to its first message that was not accepted, and everything after it
// is sent again (after it) on the next attempt.
#pragma once

#include "transport/amqp/connection.hpp"
#include "transport/amqp/settings.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

namespace mqsec::transport::amqp {

struct OutgoingItem {
  int64_t seq = 0;                  // the source's order; oldest first
  std::string destination_machine;  // -> broker address inbound_address(destination_machine)
  std::string queue;                // the destination's queue (property mqsec-queue)
  std::string message_id_hex;       // AMQP message-id
  std::vector<uint8_t> body;        // the opaque envelope
  bool durable = true;              // recoverable (durable on the broker) or express
};

class OutgoingSource {
 public:
  virtual ~OutgoingSource();
  // Up to `max` items, oldest first, not removed.
  virtual std::vector<OutgoingItem> peek(size_t max) = 0;
  // Removes items the broker has accepted (or that expired / were handled by on_rejected).
  virtual void remove(std::span<const int64_t> seqs) = 0;
  // Waits until items may have been added, at most `timeout`; true if something changed.
  virtual bool wait_for_change(std::chrono::milliseconds timeout) = 0;
  // The core decides time-to-reach-queue: an expired item is handed to on_expired (which NACKs)
  // and removed, not sent.
  virtual bool expired(const OutgoingItem&) { return false; }
  virtual void on_expired(const OutgoingItem&) {}
  // The broker rejected the item (a permanent refusal, e.g. over a size limit). Return true if
  // the core has dealt with it (recorded, NACKed) and the forwarder may remove it; false keeps it
  // at the head of the queue, retried with backoff (nothing is lost, but it blocks the queue).
  virtual bool on_rejected(const OutgoingItem&, const std::string& /*reason*/) { return false; }
};

struct ForwarderOptions {
  std::string source_machine;  // this machine (property mqsec-source), validated
  size_t batch = 500;          // items peeked and pipelined per round
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds idle_wait{1000};  // wait_for_change slice while the source is empty
  // Optional diagnostics (never contains the password); called from the forwarding thread.
  std::function<void(std::string_view)> log;
};

struct ForwarderStatus {
  bool connected = false;
  uint64_t forwarded = 0;  // items removed after the broker accepted them
  uint64_t resent = 0;     // items sent again after an unsettled or failed attempt
  uint64_t expired = 0;
  uint64_t rejected = 0;  // broker rejections (removed or kept per on_rejected)
  uint64_t connects = 0;  // successful connections
  uint64_t failures = 0;  // failed attempts (connect or send)
  HRESULT last_error = MQ_OK;
  std::string last_error_text;
};

class Forwarder {
 public:
  Forwarder(BrokerSettings settings, OutgoingSource& source, ForwarderOptions options);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // One round: connect if needed, peek a batch, drop expired items, send the rest pipelined,
  // remove the accepted prefix. Returns the number of items removed (sent or expired). Throws
  // mqsec::Error when the broker is unreachable or the round could not complete (the connection
  // is then dropped; the next call reconnects). Nothing is removed that was not accepted.
  size_t run_once();

  // Rounds until `stop` is requested: waits for the source when it is empty, backs off
  // (exponential, backoff_min .. backoff_max) after failures and reconnects. Returns promptly
  // (within about one operation) after a stop request.
  void run(std::stop_token stop);

  ForwarderStatus status() const;

 private:
  void note_failure(HRESULT code, const std::string& text);

  BrokerSettings settings_;
  OutgoingSource& source_;
  ForwarderOptions options_;
  void set_connection(std::unique_ptr<Connection> c);

  // Replaced only by the forwarding thread, under connection_mutex_; a stop request aborts it
  // (under the same mutex) so that a send in progress returns at once.
  std::mutex connection_mutex_;
  std::unique_ptr<Connection> connection_;
  std::vector<int64_t> last_unsettled_;  // seqs sent but not removed in the previous round
  mutable std::mutex status_mutex_;
  ForwarderStatus status_;
};

}  // namespace mqsec::transport::amqp
