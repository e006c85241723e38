#include "transport/amqp/remote_read.hpp"

#include <unistd.h>

#include <mqsec/error.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <random>
#include <thread>

#include "transport/amqp/address.hpp"
#include "transport/amqp/worker.hpp"
#include "transport/printable.hpp"

namespace mqsec::transport::amqp {
namespace {

// Application properties of requests and replies (strings; numbers in decimal).
constexpr const char* kOp = "mqsec-op";
constexpr const char* kQueue = "mqsec-queue";
constexpr const char* kReader = "mqsec-source";
constexpr const char* kReceive = "mqsec-receive";
constexpr const char* kPriority = "mqsec-priority";
constexpr const char* kSeq = "mqsec-seq";
constexpr const char* kMsgId = "mqsec-msgid";
constexpr const char* kSent = "mqsec-sent";
constexpr const char* kWindow = "mqsec-window";
constexpr const char* kKind = "mqsec-kind";
constexpr const char* kReason = "mqsec-reason";
constexpr const char* kStatus = "mqsec-status";
constexpr const char* kError = "mqsec-error";
constexpr const char* kFound = "mqsec-found";
constexpr const char* kArrived = "mqsec-arrived";
constexpr const char* kResult = "mqsec-result";
constexpr const char* kInfoId = "mqsec-queue-id";
constexpr const char* kInfoLabel = "mqsec-label";
constexpr const char* kInfoAuthenticate = "mqsec-authenticate";
constexpr const char* kInfoTransactional = "mqsec-transactional";
constexpr const char* kInfoCreated = "mqsec-created";
constexpr const char* kInfoTrust = "mqsec-trust";
constexpr const char* kInfoSignerSubject = "mqsec-signer-subject-";  // + index
constexpr const char* kInfoSignerSid = "mqsec-signer-sid-";          // + index

constexpr size_t kMaxSigners = 1000;
constexpr size_t kMaxReplyQueueName = 255;  // RabbitMQ's limit on queue names

constexpr std::pair<ReadOp, const char*> kOps[] = {
    {ReadOp::info, "info"},
    {ReadOp::first, "first"},
    {ReadOp::next_after, "next-after"},
    {ReadOp::get, "get"},
    {ReadOp::remove, "remove"},
    {ReadOp::remove_delivered, "remove-delivered"},
    {ReadOp::was_delivered, "was-delivered"},
    {ReadOp::count, "count"},
    {ReadOp::version, "version"},
    {ReadOp::record_rejection, "record-rejection"},
};

std::optional<ReadOp> op_of(std::string_view name) {
  for (const auto& [op, text] : kOps)
    if (name == text) return op;
  return std::nullopt;
}

[[noreturn]] void malformed(const std::string& what) {
  throw Error(MQ_ERROR_INVALID_PARAMETER, "malformed remote-read message: " + what);
}

const std::string& required(const InboundDelivery& d, const char* name) {
  const std::string* v = d.property(name);
  if (v == nullptr) malformed(std::string("the property ") + name + " is missing");
  return *v;
}

std::string optional_text(const InboundDelivery& d, const char* name) {
  const std::string* v = d.property(name);
  return v ? *v : std::string();
}

int64_t number(const InboundDelivery& d, const char* name, int64_t min, int64_t max) {
  const std::string& text = required(d, name);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max)
    malformed(std::string(name) + " is not a number from " + std::to_string(min) + " to " +
              std::to_string(max) + ": '" + printable(text) + "'");
  return v;
}

bool flag(const InboundDelivery& d, const char* name) { return number(d, name, 0, 1) == 1; }

std::string hex(std::span<const uint8_t> bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

Bytes unhex(const std::string& text, const char* name) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (text.size() % 2 != 0 || text.size() > 256) malformed(std::string(name) + " is not hex");
  Bytes out;
  for (size_t i = 0; i < text.size(); i += 2) {
    const int hi = nibble(text[i]), lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) malformed(std::string(name) + " is not lower-case hex");
    out.push_back(static_cast<uint8_t>(hi * 16 + lo));
  }
  return out;
}

// A reply queue's name as a server accepts it: mqsec.reply.<letters, digits, '.', '_', '-'>.
bool valid_reply_queue(std::string_view name) {
  if (!name.starts_with(kReplyQueuePrefix) || name.size() <= kReplyQueuePrefix.size() ||
      name.size() > kMaxReplyQueueName)
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

// Where requests and replies are sent: the address that routes by the message's subject
// (RabbitMQ 3.x: "/queue", the default exchange; nothing is declared by sending there).
std::string relay_address(const std::string& prefix) {
  std::string relay = prefix;
  while (!relay.empty() && relay.back() == '/') relay.pop_back();
  if (relay.empty())
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "remote read needs a broker that routes a message by its subject (RabbitMQ's "
                "\"/queue\" address); the broker address prefix '" +
                    prefix + "' has none");
  return relay;
}

std::string hresult_text(HRESULT hr) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(hr));
  return buf;
}

const char* removal_text(Removal r) {
  switch (r) {
    case Removal::Removed:
      return "removed";
    case Removal::Gone:
      return "gone";
    case Removal::Replay:
      return "replay";
  }
  return "gone";
}

// --- requests ---------------------------------------------------------------------------------

OutboundMessage request_message(const ReadRequest& r, const std::string& relay,
                                const std::string& subject, const std::string& reply_queue,
                                const std::string& correlation, std::chrono::milliseconds ttl) {
  OutboundMessage m;
  m.address = relay;
  m.subject = subject;
  m.reply_to = reply_queue;
  m.correlation_id = correlation;
  m.durable = false;
  m.ttl = ttl;
  auto put = [&](const char* key, std::string value) { m.properties.emplace_back(key, value); };
  put(kOp, to_string(r.op));
  put(kQueue, r.queue);
  put(kReader, r.reader);
  switch (r.op) {
    case ReadOp::info:
      put(kReceive, r.receive ? "1" : "0");
      break;
    case ReadOp::next_after:
      put(kPriority, std::to_string(r.priority));
      put(kSeq, std::to_string(r.seq));
      break;
    case ReadOp::get:
    case ReadOp::remove:
      put(kSeq, std::to_string(r.seq));
      break;
    case ReadOp::remove_delivered:
      put(kSeq, std::to_string(r.seq));
      put(kMsgId, hex(r.msg_id));
      put(kSent, std::to_string(r.sent_time));
      put(kWindow, std::to_string(r.window_seconds));
      break;
    case ReadOp::was_delivered:
      put(kMsgId, hex(r.msg_id));
      break;
    case ReadOp::record_rejection:
      put(kKind, r.kind);
      put(kReason, r.reason);
      m.body = r.envelope;
      break;
    case ReadOp::first:
    case ReadOp::count:
    case ReadOp::version:
      break;
  }
  return m;
}

ReadRequest parse_request(const InboundDelivery& d) {
  ReadRequest r;
  const std::string& op = required(d, kOp);
  auto parsed = op_of(op);
  if (!parsed) malformed("unknown operation '" + printable(op) + "'");
  r.op = *parsed;
  r.queue = required(d, kQueue);
  if (r.queue.empty() || r.queue.size() > 1024) malformed("the queue name is empty or too long");
  r.reader = optional_text(d, kReader);
  switch (r.op) {
    case ReadOp::info:
      r.receive = flag(d, kReceive);
      break;
    case ReadOp::next_after:
      r.priority = static_cast<int>(number(d, kPriority, kMalformedPriority, 7));
      r.seq = number(d, kSeq, 0, INT64_MAX);
      break;
    case ReadOp::get:
    case ReadOp::remove:
      r.seq = number(d, kSeq, 0, INT64_MAX);
      break;
    case ReadOp::remove_delivered:
      r.seq = number(d, kSeq, 0, INT64_MAX);
      r.msg_id = unhex(required(d, kMsgId), kMsgId);
      r.sent_time = number(d, kSent, 0, INT64_MAX);
      r.window_seconds = number(d, kWindow, INT64_MIN, INT64_MAX);
      break;
    case ReadOp::was_delivered:
      r.msg_id = unhex(required(d, kMsgId), kMsgId);
      break;
    case ReadOp::record_rejection:
      r.kind = required(d, kKind);
      r.reason = required(d, kReason);
      if (r.kind.size() > 256 || r.reason.size() > 64 * 1024) malformed("kind or reason too long");
      if (!d.binary_body) malformed("the rejected envelope is not one binary data section");
      r.envelope = d.body;
      break;
    case ReadOp::first:
    case ReadOp::count:
    case ReadOp::version:
      break;
  }
  return r;
}

// --- replies ----------------------------------------------------------------------------------

OutboundMessage reply_message(const ReadReply& reply, ReadOp op, const std::string& relay,
                              const std::string& reply_queue, const std::string& correlation) {
  OutboundMessage m;
  m.address = relay;
  m.subject = reply_queue;
  m.correlation_id = correlation;
  m.durable = false;
  auto put = [&](const std::string& key, std::string value) {
    m.properties.emplace_back(key, value);
  };
  put(kStatus, hresult_text(reply.status));
  if (reply.status != MQ_OK) {
    put(kError, reply.error);
    return m;
  }
  switch (op) {
    case ReadOp::info: {
      const QueueInfo& i = reply.info;
      put(kInfoId, std::to_string(i.id));
      put(kQueue, i.name);
      put(kInfoLabel, i.label);
      put(kInfoAuthenticate, i.authenticate ? "1" : "0");
      put(kInfoTransactional, i.transactional ? "1" : "0");
      put(kInfoCreated, std::to_string(i.created));
      put(kInfoTrust, i.trust);
      for (size_t k = 0; k < i.signer_subjects.size(); ++k)
        put(kInfoSignerSubject + std::to_string(k), i.signer_subjects[k]);
      for (size_t k = 0; k < i.signer_sids.size(); ++k)
        put(kInfoSignerSid + std::to_string(k), i.signer_sids[k]);
      break;
    }
    case ReadOp::first:
    case ReadOp::next_after:
    case ReadOp::get:
      put(kFound, reply.message ? "1" : "0");
      if (reply.message) {
        put(kPriority, std::to_string(reply.message->priority));
        put(kSeq, std::to_string(reply.message->seq));
        put(kArrived, std::to_string(reply.message->arrived));
        m.body = reply.message->envelope;
      }
      break;
    case ReadOp::remove_delivered:
      put(kResult, removal_text(reply.removal));
      break;
    case ReadOp::remove:
    case ReadOp::was_delivered:
    case ReadOp::count:
    case ReadOp::version:
      put(kResult, std::to_string(reply.number));
      break;
    case ReadOp::record_rejection:
      break;
  }
  return m;
}

ReadReply parse_reply(const InboundDelivery& d, ReadOp op) {
  ReadReply reply;
  const std::string& status = required(d, kStatus);
  unsigned long value = 0;
  const auto [end, ec] = std::from_chars(status.data() + std::min<size_t>(2, status.size()),
                                         status.data() + status.size(), value, 16);
  if (!status.starts_with("0x") || ec != std::errc() || end != status.data() + status.size() ||
      value > 0xffffffffUL)
    malformed("the status '" + printable(status) + "' is not an HRESULT");
  reply.status = static_cast<HRESULT>(static_cast<uint32_t>(value));
  if (reply.status != MQ_OK) {
    reply.error = optional_text(d, kError);
    return reply;
  }
  switch (op) {
    case ReadOp::info: {
      QueueInfo& i = reply.info;
      i.id = number(d, kInfoId, INT64_MIN, INT64_MAX);
      i.name = required(d, kQueue);
      i.label = optional_text(d, kInfoLabel);
      i.authenticate = flag(d, kInfoAuthenticate);
      i.transactional = flag(d, kInfoTransactional);
      i.created = number(d, kInfoCreated, INT64_MIN, INT64_MAX);
      i.trust = optional_text(d, kInfoTrust);
      for (size_t k = 0; k < kMaxSigners; ++k) {
        const std::string* s = d.property(kInfoSignerSubject + std::to_string(k));
        if (s == nullptr) break;
        i.signer_subjects.push_back(*s);
      }
      for (size_t k = 0; k < kMaxSigners; ++k) {
        const std::string* s = d.property(kInfoSignerSid + std::to_string(k));
        if (s == nullptr) break;
        i.signer_sids.push_back(*s);
      }
      break;
    }
    case ReadOp::first:
    case ReadOp::next_after:
    case ReadOp::get:
      if (flag(d, kFound)) {
        StoredMessage m;
        m.priority = static_cast<int>(number(d, kPriority, kMalformedPriority, 7));
        m.seq = number(d, kSeq, 0, INT64_MAX);
        m.arrived = number(d, kArrived, INT64_MIN, INT64_MAX);
        if (!d.binary_body) malformed("the message is not one binary data section");
        m.envelope = d.body;
        reply.message = std::move(m);
      }
      break;
    case ReadOp::remove_delivered: {
      const std::string& r = required(d, kResult);
      if (r == "removed")
        reply.removal = Removal::Removed;
      else if (r == "gone")
        reply.removal = Removal::Gone;
      else if (r == "replay")
        reply.removal = Removal::Replay;
      else
        malformed("unknown removal result '" + printable(r) + "'");
      break;
    }
    case ReadOp::remove:
    case ReadOp::was_delivered:
      reply.number = static_cast<uint64_t>(number(d, kResult, 0, 1));
      break;
    case ReadOp::count:
    case ReadOp::version:
      reply.number = static_cast<uint64_t>(number(d, kResult, 0, INT64_MAX));
      break;
    case ReadOp::record_rejection:
      break;
  }
  return reply;
}

std::string random_hex(size_t bytes) {
  std::random_device rd;
  Bytes b(bytes);
  for (auto& x : b) x = static_cast<uint8_t>(rd());
  return hex(b);
}

}  // namespace

std::string read_queue_name(std::string_view machine) {
  return std::string(kReadQueuePrefix) + canonical_machine_name(machine);
}

const char* to_string(ReadOp op) noexcept {
  for (const auto& [value, text] : kOps)
    if (value == op) return text;
  return "?";
}

bool mutates(ReadOp op) noexcept {
  return op == ReadOp::remove || op == ReadOp::remove_delivered || op == ReadOp::record_rejection;
}

// =============================================================================================
// ReadService

ReadService::ReadService(BrokerSettings settings, ReadServiceOptions options, Handler handler)
    : settings_(std::move(settings)), options_(std::move(options)), handler_(std::move(handler)) {
  options_.machine = canonical_machine_name(options_.machine);
  parse_broker_url(settings_.url);
  if (!handler_) throw Error(MQ_ERROR_INVALID_PARAMETER, "remote read: no request handler");
  address_ = settings_.address_prefix + read_queue_name(options_.machine);
  relay_ = relay_address(settings_.address_prefix);
  options_.credit = std::max<uint32_t>(1, options_.credit);
}

ReadService::~ReadService() = default;

void ReadService::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

ReadServiceStatus ReadService::status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

void ReadService::handle(const InboundDelivery& d) {
  // Accepted before it is carried out: at most once (a request is never carried out twice
  // because the broker delivered it again).
  connection_->accept(d.id);
  const std::string from = printable(optional_text(d, kReader));
  if (!valid_reply_queue(d.reply_to) || d.correlation_id.empty()) {
    {
      std::lock_guard lock(status_mutex_);
      status_.dropped++;
    }
    log("remote read: dropped a request from '" + from + "' on " + address_ +
        " without a usable reply-to (" + printable(d.reply_to) +
        ") or correlation-id; not answered");
    return;
  }
  ReadReply reply;
  ReadOp op = ReadOp::info;
  try {
    ReadRequest r = parse_request(d);
    op = r.op;
    r.redelivered = d.delivery_count > 0 || !d.first_acquirer;
    if (r.redelivered && mutates(r.op)) {
      reply.status = MQ_ERROR_SERVICE_NOT_AVAILABLE;
      reply.error = std::string("the '") + to_string(r.op) +
                    "' request was delivered again by the broker (the agent's connection "
                    "dropped), so it may have been carried out already; not carried out again";
    } else {
      reply = handler_(r);
    }
  } catch (const Error& e) {
    reply = ReadReply{};
    reply.status = e.code();
    reply.error = e.what();
  } catch (const std::exception& e) {
    reply = ReadReply{};
    reply.status = MQ_ERROR_SERVICE_NOT_AVAILABLE;
    reply.error = std::string("the request failed: ") + e.what();
  }
  if (reply.status == MQ_ERROR_INVALID_PARAMETER)
    log("remote read: request from '" + from + "': " + reply.error);
  {
    std::lock_guard lock(status_mutex_);
    if (reply.status == MQ_OK)
      status_.served++;
    else
      status_.refused++;
  }
  const OutboundMessage m = reply_message(reply, op, relay_, d.reply_to, d.correlation_id);
  const SendReport report = connection_->send(std::span<const OutboundMessage>(&m, 1));
  if (!report.all_accepted()) {
    const std::string why = "remote read: the reply to '" + from + "' (" + to_string(op) +
                            ") was not sent: " + report.error_text;
    if (!connection_->ok()) throw Error(report.error, why);
    log(why);
  }
}

size_t ReadService::run_once(std::chrono::milliseconds timeout) {
  return detail::consume_once(connection_, settings_, address_, options_.credit, options_.poll,
                              timeout, status_mutex_, status_,
                              [this](const InboundDelivery& d) { handle(d); });
}

void ReadService::run(std::stop_token stop) {
  detail::run_with_backoff(stop, options_.backoff_min, options_.backoff_max, options_.log,
                           "remote read", [&] {
                             run_once(options_.poll);
                             return false;
                           });
  connection_.reset();  // the receiver link first, then the connection
  detail::note_connected(status_mutex_, status_, false);
}

// =============================================================================================
// RemoteReadTransport

struct RemoteReadTransport::Session {
  pid_t pid = 0;
  std::mutex mu;
  std::unique_ptr<Connection> connection;
  std::string reply_queue;
  uint64_t next = 0;
};

RemoteReadTransport::RemoteReadTransport(BrokerSettings settings, RemoteReadOptions options)
    : settings_(std::move(settings)), options_([&] {
        options.machine = canonical_machine_name(options.machine);
        options.reader = canonical_machine_name(options.reader);
        validate_queue_name(options.queue);
        return std::move(options);
      }()) {
  parse_broker_url(settings_.url);
  relay_ = relay_address(settings_.address_prefix);
  what_ = "queue '" + options_.queue + "' of machine '" + options_.machine + "'";
}

RemoteReadTransport::~RemoteReadTransport() {
  Session* s = session_.load(std::memory_order_acquire);
  // A forked child leaves its parent's session (and its Proton thread, which does not exist
  // here) alone.
  if (s != nullptr && s->pid == ::getpid()) delete s;
}

RemoteReadTransport::Session& RemoteReadTransport::session() {
  const pid_t me = ::getpid();
  Session* s = session_.load(std::memory_order_acquire);
  while (s == nullptr || s->pid != me) {
    auto fresh = std::make_unique<Session>();
    fresh->pid = me;
    // A new reply queue per process: parent and child must not take each other's replies.
    fresh->reply_queue = std::string(kReplyQueuePrefix) + options_.reader + "." + random_hex(16);
    if (session_.compare_exchange_strong(s, fresh.get(), std::memory_order_acq_rel)) {
      // The session replaced, if any, is a parent's: never used nor destroyed here.
      return *fresh.release();
    }
  }
  return *s;
}

std::string RemoteReadTransport::reply_queue() const {
  Session* s = session_.load(std::memory_order_acquire);
  return s != nullptr && s->pid == ::getpid() ? s->reply_queue : std::string();
}

ReadReply RemoteReadTransport::call(ReadRequest r) {
  r.queue = options_.queue;
  r.reader = options_.reader;
  r.receive = options_.receive;
  const std::string op = to_string(r.op);
  Session& s = session();
  std::lock_guard lock(s.mu);
  const std::string correlation = std::to_string(++s.next);
  const OutboundMessage m = request_message(r, relay_, read_queue_name(options_.machine),
                                            s.reply_queue, correlation, options_.request_timeout);
  const std::string maybe_done =
      mutates(r.op) ? " (the '" + op + "' request may have been carried out there or not)"
                    : std::string();
  bool sent = false;
  std::optional<InboundDelivery> answer;
  try {
    if (!s.connection || !s.connection->ok()) {
      s.connection.reset();
      auto c = std::make_unique<Connection>(settings_);
      c->open_receiver(settings_.address_prefix + s.reply_queue, 16, /*durable=*/false);
      s.connection = std::move(c);
    }
    const SendReport report = s.connection->send(std::span<const OutboundMessage>(&m, 1));
    if (!report.all_accepted()) {
      throw Error(report.error == MQ_OK ? MQ_ERROR_SERVICE_NOT_AVAILABLE : report.error,
                  "the broker did not take the '" + op + "' request: " + report.error_text);
    }
    sent = true;
    const auto deadline = std::chrono::steady_clock::now() + options_.request_timeout;
    for (auto now = std::chrono::steady_clock::now(); now < deadline;
         now = std::chrono::steady_clock::now()) {
      auto d = s.connection->receive(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
      if (!d) continue;
      s.connection->accept(d->id);
      if (d->correlation_id != correlation) continue;  // a late answer to an earlier request
      answer = std::move(d);
      break;
    }
  } catch (const Error& e) {
    if (s.connection && !s.connection->ok()) s.connection.reset();
    // The broker: unreachable, the connection dropped, a refused link. MQ_ERROR_QUEUE_NOT_FOUND
    // here would be about this reader's reply queue, not the queue read: say the service.
    const HRESULT code = e.code() == MQ_ERROR_QUEUE_NOT_FOUND || e.code() == MQ_ERROR_QUEUE_DELETED
                             ? MQ_ERROR_SERVICE_NOT_AVAILABLE
                             : e.code();
    throw Error(code, "remote read of " + what_ + " through broker " + settings_.url + ": " +
                          e.what() + (sent ? maybe_done : std::string()));
  }
  if (!answer) {
    throw Error(MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE,
                "remote read of " + what_ + ": machine '" + options_.machine +
                    "' did not answer the '" + op + "' request within " +
                    std::to_string(options_.request_timeout.count()) +
                    " ms ([broker] request-timeout-ms): is its mqsec agent running and connected "
                    "to the same broker?" +
                    maybe_done);
  }
  ReadReply reply = parse_reply(*answer, r.op);
  if (reply.status != MQ_OK) {
    throw Error(reply.status, "remote read of " + what_ + ": machine '" + options_.machine +
                                  "' answered: " + reply.error);
  }
  return reply;
}

namespace {
ReadRequest request(ReadOp op, int64_t seq = 0, int priority = 0) {
  ReadRequest r;
  r.op = op;
  r.seq = seq;
  r.priority = priority;
  return r;
}
}  // namespace

QueueInfo RemoteReadTransport::info() { return call(request(ReadOp::info)).info; }

void RemoteReadTransport::send(int, Bytes, Delivery) {
  throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
              "a remote read of " + what_ + " is opened for receiving or peeking, not sending");
}

std::optional<StoredMessage> RemoteReadTransport::first() {
  return call(request(ReadOp::first)).message;
}

std::optional<StoredMessage> RemoteReadTransport::next_after(int priority, int64_t seq) {
  return call(request(ReadOp::next_after, seq, priority)).message;
}

std::optional<StoredMessage> RemoteReadTransport::get(int64_t seq) {
  return call(request(ReadOp::get, seq)).message;
}

bool RemoteReadTransport::remove(int64_t seq) {
  return call(request(ReadOp::remove, seq)).number != 0;
}

Removal RemoteReadTransport::remove_delivered(int64_t seq, std::span<const uint8_t> msg_id,
                                              int64_t sent_time, int64_t window_seconds) {
  ReadRequest r = request(ReadOp::remove_delivered, seq);
  r.msg_id.assign(msg_id.begin(), msg_id.end());
  r.sent_time = sent_time;
  r.window_seconds = window_seconds;
  return call(std::move(r)).removal;
}

bool RemoteReadTransport::was_delivered(std::span<const uint8_t> msg_id) {
  ReadRequest r = request(ReadOp::was_delivered);
  r.msg_id.assign(msg_id.begin(), msg_id.end());
  return call(std::move(r)).number != 0;
}

size_t RemoteReadTransport::count() {
  return static_cast<size_t>(call(request(ReadOp::count)).number);
}

uint64_t RemoteReadTransport::version() { return call(request(ReadOp::version)).number; }

bool RemoteReadTransport::wait_for_change(uint64_t seen, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (version() != seen) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min(
        options_.poll, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now)));
  }
}

void RemoteReadTransport::record_rejection(std::string_view kind, std::string_view reason,
                                           std::span<const uint8_t> envelope,
                                           const RejectionBounds& bounds) {
  // The record is the destination's: its own [limits] bound it, not the reader's.
  (void)bounds;
  ReadRequest r = request(ReadOp::record_rejection);
  r.kind = kind;
  r.reason = reason;
  r.envelope.assign(envelope.begin(), envelope.end());
  call(std::move(r));
}

}  // namespace mqsec::transport::amqp
