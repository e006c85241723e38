// Remote read (MSMQ's MQOpenQueue with receive or peek access on a queue of another machine) as
// request and reply over the broker (docs/remote.md, "Remote read"):
//
//   reader (RemoteReadTransport)                          destination machine (ReadService)
//   request: subject mqsec.read.<m>, reply-to   ──>  /queue/mqsec.read.<m>  ──> handler (the core:
//            mqsec.reply.<reader>.<random>,                                       authorize, run it
//            correlation-id, op + args as                                         on the local
//            application properties                                              store's queue)
//   reply:   subject = the request's reply-to  <──  /queue/mqsec.reply.<reader>.<random>  <──
//            status, error text, results;
//            a message's envelope as the body
//
// Each QueueTransport call of the reader is one request (send/flush are not offered: a remote
// read queue is opened for receive or peek only; wait_for_change polls version()). Requests and
// replies are express (not durable) and sent through RabbitMQ's default exchange ("/queue"
// with the queue's name as the subject), so nothing is declared by sending; a request carries a
// ttl (the reader's request timeout) after which the broker drops it unread. Requests are
// stateless: each names the queue, the operation and its arguments.
//
// Like the rest of this layer, this knows nothing of envelopes, signatures or configuration:
// the reader's core verifies what it reads; the destination's core decides what it serves.
#pragma once

#include <mq.h>

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "src/transport/transport.hpp"
#include "transport/amqp/connection.hpp"
#include "transport/amqp/settings.hpp"

namespace mqsec::transport::amqp {

inline constexpr std::string_view kReadQueuePrefix = "mqsec.read.";
inline constexpr std::string_view kReplyQueuePrefix = "mqsec.reply.";

// The broker queue that takes remote-read requests for `machine`: "mqsec.read.<machine>"
// (canonical_machine_name; throws as it does).
std::string read_queue_name(std::string_view machine);

// One QueueTransport operation, as a request names it.
enum class ReadOp {
  info,  // the queue's settings (QueueInfo): what the reader's policy is built from
  first,
  next_after,
  get,
  remove,
  remove_delivered,
  was_delivered,
  count,
  version,
  record_rejection,
};
const char* to_string(ReadOp op) noexcept;
// Whether carrying the operation out twice could differ from once (remove, remove_delivered,
// record_rejection).
bool mutates(ReadOp op) noexcept;

struct ReadRequest {
  ReadOp op = ReadOp::info;
  std::string queue;           // the queue's name on the destination machine (lower-case)
  std::string reader;          // the reading machine (for logs)
  bool receive = false;        // info: the reader opens the queue for receiving (not only peeking)
  int priority = 0;            // next_after
  int64_t seq = 0;             // next_after, get, remove, remove_delivered
  Bytes msg_id;                // remove_delivered, was_delivered
  int64_t sent_time = 0;       // remove_delivered
  int64_t window_seconds = 0;  // remove_delivered
  std::string kind;            // record_rejection
  std::string reason;          // record_rejection
  Bytes envelope;              // record_rejection (the body)
  // Set by the server: the broker delivered this request before (it may have been carried
  // out already).
  bool redelivered = false;
};

struct ReadReply {
  HRESULT status = MQ_OK;
  std::string error;                     // why, when status is not MQ_OK
  std::optional<StoredMessage> message;  // first, next_after, get
  uint64_t number = 0;              // count, version; remove and was_delivered: 1 true, 0 false
  Removal removal = Removal::Gone;  // remove_delivered
  QueueInfo info;                   // info (id is the destination store's, name as stored)
};

// --- the destination machine: serving requests ------------------------------------------------

struct ReadServiceOptions {
  std::string machine;  // this machine: consumes read_queue_name(machine), validated
  // Requests taken from the broker ahead of the one being served. 1: a request waits on the
  // broker, where its ttl applies, not in this process (a request served long after its reader
  // gave up could remove a message that reader never gets).
  uint32_t credit = 1;
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds poll{250};        // receive slice (stop latency)
  std::function<void(std::string_view)> log;  // optional
};

struct ReadServiceStatus {
  bool connected = false;
  uint64_t served = 0;   // answered with MQ_OK
  uint64_t refused = 0;  // answered with an error (the handler's, or a malformed request)
  uint64_t dropped = 0;  // malformed without a usable reply address: not answered
  uint64_t connects = 0;
  uint64_t failures = 0;
  HRESULT last_error = MQ_OK;
  std::string last_error_text;
};

// Consumes this machine's request queue, hands each request to the handler and sends its
// reply. A request is accepted on the broker before it is carried out (at most once: a
// request the broker delivers again, after a connection loss, is answered with an error and
// not carried out when it mutates). A handler that throws mqsec::Error answers with its code
// and text; anything else thrown answers MQ_ERROR_SERVICE_NOT_AVAILABLE. One request at a time.
class ReadService {
 public:
  using Handler = std::function<ReadReply(const ReadRequest&)>;

  ReadService(BrokerSettings settings, ReadServiceOptions options, Handler handler);
  ~ReadService();
  ReadService(const ReadService&) = delete;
  ReadService& operator=(const ReadService&) = delete;

  // Connects if needed, then serves requests for at most `timeout` (returns early after one
  // idle slice). Returns the number handled. Throws mqsec::Error when the broker is
  // unreachable or the connection fails (the next call reconnects).
  size_t run_once(std::chrono::milliseconds timeout);
  // Until `stop` is requested, reconnecting with bounded exponential backoff.
  void run(std::stop_token stop);

  ReadServiceStatus status() const;

 private:
  void handle(const InboundDelivery& d);
  void log(const std::string& line) const;

  BrokerSettings settings_;
  ReadServiceOptions options_;
  Handler handler_;
  std::string address_;
  std::string relay_;  // where replies are sent (RabbitMQ: "/queue", routed by subject)
  std::unique_ptr<Connection> connection_;
  mutable std::mutex status_mutex_;
  ReadServiceStatus status_;
};

// --- the reader: a queue of another machine through its ReadService ----------------------------

struct RemoteReadOptions {
  std::string machine;   // the destination machine (its agent answers)
  std::string queue;     // the queue's name there (lower-case)
  std::string reader;    // this machine (part of the reply queue's name, for the broker's admin)
  bool receive = false;  // opened for receiving (the info request says so)
  std::chrono::milliseconds request_timeout{10000};  // per request; also the request's ttl
  std::chrono::milliseconds poll{50};                // wait_for_change: version() every `poll`
};

// QueueTransport over requests to the destination machine's ReadService. Errors: the
// destination's status as sent (MQ_ERROR_QUEUE_NOT_FOUND, MQ_ERROR_ACCESS_DENIED, ...);
// MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE when no answer came within request_timeout (agent not
// running; a mutating request may then have been carried out or not, and the text says so);
// MQ_ERROR_SERVICE_NOT_AVAILABLE when the broker is unreachable or the connection dropped;
// MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION for send(). One request at a time per object
// (calls from several threads wait for each other). Its connection (a Proton thread) is opened
// on first use and per process: in a forked child the parent's is left alone (never used, never
// destroyed there) and a new one, with a new reply queue, is opened on the child's first call.
class RemoteReadTransport final : public QueueTransport {
 public:
  RemoteReadTransport(BrokerSettings settings, RemoteReadOptions options);
  ~RemoteReadTransport() override;
  RemoteReadTransport(const RemoteReadTransport&) = delete;
  RemoteReadTransport& operator=(const RemoteReadTransport&) = delete;

  // The "info" request: the queue's settings on the destination machine.
  QueueInfo info();

  void send(int priority, Bytes envelope, Delivery delivery) override;
  void flush() override {}  // nothing of this process waits to be sent to a remote read queue
  std::optional<StoredMessage> first() override;
  std::optional<StoredMessage> next_after(int priority, int64_t seq) override;
  std::optional<StoredMessage> get(int64_t seq) override;
  bool remove(int64_t seq) override;
  Removal remove_delivered(int64_t seq, std::span<const uint8_t> msg_id, int64_t sent_time,
                           int64_t window_seconds) override;
  bool was_delivered(std::span<const uint8_t> msg_id) override;
  size_t count() override;
  uint64_t version() override;
  bool wait_for_change(uint64_t seen, std::chrono::milliseconds timeout) override;
  void record_rejection(std::string_view kind, std::string_view reason,
                        std::span<const uint8_t> envelope, const RejectionBounds& bounds) override;

  // This process's reply queue (empty before the first request): for tests and logs.
  std::string reply_queue() const;

 private:
  struct Session;
  ReadReply call(ReadRequest r);
  Session& session();

  const BrokerSettings settings_;
  const RemoteReadOptions options_;
  std::string relay_;
  std::string what_;  // "queue 'inbox' of machine 'hostb'"
  std::atomic<Session*> session_{nullptr};
};

}  // namespace mqsec::transport::amqp
