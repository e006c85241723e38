#include "transport/amqp/inbound.hpp"

#include "transport/amqp/address.hpp"
#include "transport/amqp/worker.hpp"

#include <mqsec/error.hpp>

#include <algorithm>

namespace mqsec::transport::amqp {

Inbound::Inbound(BrokerSettings settings, InboundOptions options, Deliver deliver)
    : settings_(std::move(settings)), options_(std::move(options)), deliver_(std::move(deliver)) {
  options_.machine = canonical_machine_name(options_.machine);
  parse_broker_url(settings_.url);
  if (!deliver_) throw Error(MQ_ERROR_INVALID_PARAMETER, "inbound: no deliver callback");
  address_ = inbound_address(options_.machine, settings_.address_prefix);
  options_.credit = std::max<uint32_t>(1, options_.credit);
}

Inbound::~Inbound() = default;

void Inbound::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

void Inbound::note_failure(HRESULT code, const std::string& text) {
  detail::note_failure(status_mutex_, status_, code, text, false);
}

InboundStatus Inbound::status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

void Inbound::handle(const InboundDelivery& d) {
  MalformedMessage bad;
  bad.message_id = d.message_id.value_or("");
  if (const auto* s = d.property(kPropertySource)) bad.source_machine = *s;
  bad.body_size = d.body.size();
  const std::string* queue = d.property(kPropertyQueue);
  const std::string* source = d.property(kPropertySource);
  const std::string* destination = d.property(kPropertyDestination);
  if (!d.binary_body)
    bad.reason = "the body is not one binary data section";
  else if (!d.message_id || !is_message_id_hex(*d.message_id))
    bad.reason = "the message-id is missing or not 40 lower-case hex digits";
  else if (!queue || queue->empty())
    bad.reason = "the mqsec-queue property is missing";
  else if (!source || source->empty())
    bad.reason = "the mqsec-source property is missing";
  else if (destination && *destination != options_.machine)
    bad.reason = "addressed to machine \"" + destination->substr(0, 64) + "\", not this one";
  if (!bad.reason.empty()) {
    {
      std::lock_guard lock(status_mutex_);
      status_.malformed++;
    }
    log("inbound: malformed message on " + address_ + ": " + bad.reason);
    if (options_.on_malformed) {
      try {
        options_.on_malformed(bad);
      } catch (...) {
      }
    }
    connection_->reject(d.id);
    return;
  }

  InboundMessage m;
  m.queue = *queue;
  m.message_id_hex = *d.message_id;
  m.source_machine = *source;
  m.body = d.body;
  m.delivery_count = d.delivery_count;
  if (d.delivery_count > 0) {
    std::lock_guard lock(status_mutex_);
    status_.redelivered++;
  }
  Disposition what = Disposition::retry;
  try {
    what = deliver_(m);
  } catch (const std::exception& e) {
    log("inbound: the deliver callback failed for " + m.message_id_hex + ": " + e.what());
    what = Disposition::retry;
  } catch (...) {
    what = Disposition::retry;
  }
  switch (what) {
    case Disposition::accept: {
      connection_->accept(d.id);
      std::lock_guard lock(status_mutex_);
      status_.delivered++;
      break;
    }
    case Disposition::reject: {
      connection_->accept(d.id);  // recorded and NACKed by the core: it must not come back
      std::lock_guard lock(status_mutex_);
      status_.rejected++;
      break;
    }
    case Disposition::retry: {
      {
        std::lock_guard lock(status_mutex_);
        status_.retried++;
      }
      detail::pause(options_.retry_delay, {});
      connection_->release(d.id);
      break;
    }
  }
}

size_t Inbound::run_once(std::chrono::milliseconds timeout) {
  return detail::consume_once(connection_, settings_, address_, options_.credit, options_.poll,
                              timeout, status_mutex_, status_,
                              [this](const InboundDelivery& d) { handle(d); });
}

void Inbound::run(std::stop_token stop) {
  detail::run_with_backoff(stop, options_.backoff_min, options_.backoff_max, options_.log,
                           "inbound", [&] {
                             run_once(options_.poll);
                             return false;
                           });
  connection_.reset();  // closes the receiver link first, then the connection
  detail::note_connected(status_mutex_, status_, false);
}

}  // namespace mqsec::transport::amqp
