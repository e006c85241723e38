#include "transport/amqp/forwarder.hpp"

#include "transport/amqp/address.hpp"
#include "transport/amqp/worker.hpp"

#include <mqsec/error.hpp>

#include <algorithm>
#include <unordered_set>

namespace mqsec::transport::amqp {

OutgoingSource::~OutgoingSource() = default;

Forwarder::Forwarder(BrokerSettings settings, OutgoingSource& source, ForwarderOptions options)
    : settings_(std::move(settings)), source_(source), options_(std::move(options)) {
  options_.source_machine = canonical_machine_name(options_.source_machine);
  parse_broker_url(settings_.url);  // a bad URL is a configuration error, not a transient one
  options_.batch = std::max<size_t>(1, options_.batch);
}

Forwarder::~Forwarder() = default;

void Forwarder::note_failure(HRESULT code, const std::string& text) {
  detail::note_failure(status_mutex_, status_, code, text, connection_ && connection_->ok());
}

ForwarderStatus Forwarder::status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

size_t Forwarder::run_once() {
  std::vector<OutgoingItem> items = source_.peek(options_.batch);
  if (items.empty()) return 0;

  std::vector<int64_t> expired;
  std::vector<const OutgoingItem*> live;
  for (const auto& item : items) {
    if (source_.expired(item)) {
      source_.on_expired(item);
      expired.push_back(item.seq);
    } else {
      live.push_back(&item);
    }
  }
  if (!expired.empty()) {
    source_.remove(expired);
    std::lock_guard lock(status_mutex_);
    status_.expired += expired.size();
  }
  if (live.empty()) return expired.size();

  // Messages up to the first item that cannot even be addressed (a bad machine or queue name:
  // the core validates them before queueing, so this is a broken source; it goes to
  // on_rejected like a broker rejection).
  std::vector<OutboundMessage> messages;
  messages.reserve(live.size());
  std::string unaddressable;
  for (const OutgoingItem* item : live) {
    OutboundMessage m;
    try {
      const std::string destination = canonical_machine_name(item->destination_machine);
      validate_queue_name(item->queue);
      m.address = inbound_address(destination, settings_.address_prefix);
      m.properties = {{std::string(kPropertyQueue), item->queue},
                      {std::string(kPropertySource), options_.source_machine},
                      {std::string(kPropertyDestination), destination}};
    } catch (const Error& e) {
      unaddressable = e.what();
      break;
    }
    m.message_id = item->message_id_hex;
    m.body = item->body;
    m.durable = item->durable;
    messages.push_back(std::move(m));
  }

  {
    std::unordered_set<int64_t> before(last_unsettled_.begin(), last_unsettled_.end());
    uint64_t again = 0;
    for (size_t i = 0; i < messages.size(); ++i)
      if (before.count(live[i]->seq)) ++again;
    std::lock_guard lock(status_mutex_);
    status_.resent += again;
  }

  // Connect only when there is something to send.
  if (!messages.empty() && (!connection_ || !connection_->ok())) {
    set_connection(nullptr);
    try {
      set_connection(std::make_unique<Connection>(settings_));
    } catch (const Error& e) {
      note_failure(e.code(), e.what());
      throw;
    }
    detail::note_connected(status_mutex_, status_, true);
  }

  SendReport report;
  if (!messages.empty()) report = connection_->send(messages);

  std::vector<int64_t> done;
  size_t i = 0;
  uint64_t accepted = 0;
  uint64_t rejected = 0;
  std::string failure;
  HRESULT failure_code = report.error != MQ_OK ? report.error : MQ_ERROR_SERVICE_NOT_AVAILABLE;
  for (; i < live.size(); ++i) {
    if (i >= messages.size()) {  // the unaddressable item
      ++rejected;
      if (source_.on_rejected(*live[i], unaddressable)) {
        done.push_back(live[i]->seq);
        continue;
      }
      failure = unaddressable;
      failure_code = MQ_ERROR_ILLEGAL_FORMATNAME;
      break;
    }
    const Outcome o = report.outcomes[i];
    if (o == Outcome::accepted) {
      ++accepted;
      done.push_back(live[i]->seq);
      continue;
    }
    if (o == Outcome::rejected) {
      ++rejected;
      const std::string why =
          report.error_text.empty() ? "rejected by the broker" : report.error_text;
      if (source_.on_rejected(*live[i], why)) {
        done.push_back(live[i]->seq);
        continue;
      }
    }
    failure = std::string("message ") + live[i]->message_id_hex + " " + to_string(o) +
              (report.error_text.empty() ? std::string() : ": " + report.error_text);
    break;
  }
  if (!done.empty()) source_.remove(done);
  last_unsettled_.clear();
  for (size_t k = i; k < live.size(); ++k) last_unsettled_.push_back(live[k]->seq);
  {
    std::lock_guard lock(status_mutex_);
    status_.forwarded += accepted;
    status_.rejected += rejected;
  }
  if (i < live.size()) {
    if (connection_ && !connection_->ok()) set_connection(nullptr);
    note_failure(failure_code, failure);
    throw Error(failure_code, failure);
  }
  return done.size() + expired.size();
}

void Forwarder::set_connection(std::unique_ptr<Connection> c) {
  std::unique_ptr<Connection> old;
  {
    std::lock_guard lock(connection_mutex_);
    old = std::move(connection_);
    connection_ = std::move(c);
  }
  old.reset();  // closed outside the mutex (bounded, but it takes a while)
}

void Forwarder::run(std::stop_token stop) {
  std::stop_callback on_stop(stop, [this] {
    std::lock_guard lock(connection_mutex_);
    if (connection_) connection_->abort();
  });
  detail::run_with_backoff(
      stop, options_.backoff_min, options_.backoff_max, options_.log, "forwarder",
      [&] { return run_once() == 0; },
      [&] {
        if (!stop.stop_requested())
          source_.wait_for_change(std::min(options_.idle_wait, std::chrono::milliseconds(250)));
      });
  set_connection(nullptr);
  detail::note_connected(status_mutex_, status_, false);
}

}  // namespace mqsec::transport::amqp
