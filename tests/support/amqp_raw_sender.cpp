#include "tests/support/amqp_raw_sender.hpp"

#include <proton/connection.hpp>
#include <proton/connection_options.hpp>
#include <proton/container.hpp>
#include <proton/message.hpp>
#include <proton/message_id.hpp>
#include <proton/messaging_handler.hpp>
#include <proton/sender.hpp>
#include <proton/sender_options.hpp>
#include <proton/target_options.hpp>
#include <proton/tracker.hpp>
#include <proton/transport.hpp>

#include <future>

namespace mqsec::test {

namespace {

class OneShot : public proton::messaging_handler {
 public:
  OneShot(std::string address, std::string id, std::string body)
      : address_(std::move(address)), id_(std::move(id)), body_(std::move(body)) {}
  bool accepted = false;

  void on_connection_open(proton::connection& c) override {
    proton::target_options to;
    to.address(address_).durability_mode(proton::target::CONFIGURATION);
    c.open_sender(address_, proton::sender_options().target(to));
  }
  void on_sendable(proton::sender& s) override {
    if (sent_) return;
    proton::message m;
    m.id(proton::message_id(id_));
    m.durable(true);
    m.body(body_);  // an AMQP value section holding a string
    s.send(m);
    sent_ = true;
  }
  void on_tracker_accept(proton::tracker& t) override {
    accepted = true;
    t.connection().close();
  }
  void on_tracker_reject(proton::tracker& t) override { t.connection().close(); }
  void on_tracker_release(proton::tracker& t) override { t.connection().close(); }
  void on_error(const proton::error_condition&) override {}
  void on_transport_error(proton::transport&) override {}

 private:
  std::string address_, id_, body_;
  bool sent_ = false;
};

}  // namespace

bool send_string_body(const std::string& url, const std::string& user, const std::string& password,
                      const std::string& address, const std::string& message_id,
                      const std::string& body, std::chrono::seconds limit) {
  OneShot handler(address, message_id, body);
  proton::container container(handler);
  proton::connection_options co;
  co.user(user).password(password).sasl_allowed_mechs("PLAIN").sasl_allow_insecure_mechs(true);
  container.connect(url, co);
  auto done = std::async(std::launch::async, [&] { container.run(); });
  if (done.wait_for(limit) != std::future_status::ready) {
    container.stop();
    done.wait();
    return false;
  }
  return handler.accepted;
}

}  // namespace mqsec::test
