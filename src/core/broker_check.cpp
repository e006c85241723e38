#include "src/core/broker_check.hpp"

#include <exception>
#include <memory>

#include "mqsec/error.hpp"
#include "src/core/destination.hpp"
#include "src/core/forwarding.hpp"
#include "transport/amqp/address.hpp"
#include "transport/amqp/connection.hpp"

namespace mqsec::core {

BrokerCheck check_broker(const security::SystemConfig& cfg) {
  BrokerCheck r;
  if (!cfg.broker) {
    r.failed_at = BrokerCheck::Step::NotConfigured;
    r.detail = "no [broker] is configured: queues on other machines are unavailable";
    return r;
  }
  auto step = [&](BrokerCheck::Step s, auto&& fn) {
    try {
      fn();
      return true;
    } catch (const std::exception& e) {
      r.failed_at = s;
      r.detail = e.what();
      return false;
    }
  };
  transport::amqp::BrokerSettings settings;
  if (!step(BrokerCheck::Step::Settings, [&] {
        settings = broker_settings(cfg);
        r.machine = this_machine();
        r.address = transport::amqp::inbound_address(r.machine, settings.address_prefix);
      })) {
    return r;
  }
  std::unique_ptr<transport::amqp::Connection> conn;
  if (!step(BrokerCheck::Step::Connect,
            [&] { conn = std::make_unique<transport::amqp::Connection>(settings); })) {
    return r;
  }
  if (!step(BrokerCheck::Step::Consume, [&] {
        conn->open_receiver(r.address, 1);
        conn->close();
      })) {
    return r;
  }
  r.detail = cfg.broker->url + " as " +
             (cfg.broker->user.empty() ? std::string("anonymous") : "'" + cfg.broker->user + "'") +
             ", may consume " + r.address;
  return r;
}

}  // namespace mqsec::core
