#include "transport/amqp/connection.hpp"

#include "transport/amqp/errors.hpp"

#include <mqsec/error.hpp>

#include <proton/binary.hpp>
#include <proton/codec/map.hpp>
#include <proton/connection.hpp>
#include <proton/connection_options.hpp>
#include <proton/container.hpp>
#include <proton/delivery.hpp>
#include <proton/error_condition.hpp>
#include <proton/message.hpp>
#include <proton/message_id.hpp>
#include <proton/messaging_handler.hpp>
#include <proton/receiver.hpp>
#include <proton/receiver_options.hpp>
#include <proton/scalar.hpp>
#include <proton/sender.hpp>
#include <proton/sender_options.hpp>
#include <proton/source_options.hpp>
#include <proton/ssl.hpp>
#include <proton/target_options.hpp>
#include <proton/tracker.hpp>
#include <proton/transport.hpp>
#include <proton/work_queue.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string.h>  // explicit_bzero
#include <thread>
#include <unordered_map>

namespace mqsec::transport::amqp {

const char* to_string(Outcome outcome) noexcept {
  switch (outcome) {
    case Outcome::accepted:
      return "accepted";
    case Outcome::rejected:
      return "rejected";
    case Outcome::released:
      return "released";
    case Outcome::modified:
      return "modified";
    case Outcome::failed:
      return "failed";
    case Outcome::timed_out:
      return "timed out";
  }
  return "?";
}

bool SendReport::all_accepted() const noexcept {
  return std::all_of(outcomes.begin(), outcomes.end(),
                     [](Outcome o) { return o == Outcome::accepted; });
}

size_t SendReport::accepted_prefix() const noexcept {
  size_t n = 0;
  while (n < outcomes.size() && outcomes[n] == Outcome::accepted) ++n;
  return n;
}

const std::string* InboundDelivery::property(std::string_view name) const noexcept {
  for (const auto& [key, value] : properties)
    if (key == name) return &value;
  return nullptr;
}

namespace {

proton::binary tag_bytes(uint64_t tag) {
  proton::binary b(8, 0);
  for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>(tag >> (8 * i));
  return b;
}

uint64_t tag_value(const proton::binary& b) {
  uint64_t v = 0;
  for (size_t i = 0; i < std::min<size_t>(8, b.size()); ++i) v |= uint64_t(b[i]) << (8 * i);
  return v;
}

std::string describe(const proton::error_condition& e) {
  if (e.empty()) return "no reason given";
  std::string text = e.name();
  if (!e.description().empty()) text += ": " + e.description();
  return text;
}

}  // namespace

class Connection::Impl : public proton::messaging_handler {
 public:
  explicit Impl(const BrokerSettings& settings)
      : settings_(settings), container_(*this), wq_(container_) {}

  ~Impl() override { close(); }

  // --- called from the user's threads -------------------------------------------------------

  void start() {
    url_ = parse_broker_url(settings_.url);
    if (settings_.tls && !url_.tls)
      throw Error(MQ_ERROR_INVALID_PARAMETER, "broker tls settings are given but the url " +
                                                  url_.to_string() + " is not amqps://");
    if (settings_.tls && settings_.tls->cert_file.empty() != settings_.tls->key_file.empty())
      throw Error(MQ_ERROR_INVALID_PARAMETER,
                  "broker tls: give both a client certificate and its key file, or neither");
    container_.auto_stop(false);
    thread_ = std::thread([this] {
      try {
        container_.run();
      } catch (const std::exception& e) {
        fail(MQ_ERROR_SERVICE_NOT_AVAILABLE, std::string("AMQP event loop failed: ") + e.what());
      }
      std::lock_guard lock(m_);
      closed_ = true;
      loop_done_ = true;
      cv_.notify_all();
    });
    std::unique_lock lock(m_);
    if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return started_ || loop_done_; }))
      throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, "the AMQP event loop did not start");
    lock.unlock();

    proton::connection_options co;
    co.idle_timeout(proton::duration(settings_.idle_timeout.count()));
    co.sasl_enabled(true);
    if (settings_.user.empty()) {
      co.sasl_allowed_mechs("ANONYMOUS");
    } else {
      co.sasl_allowed_mechs("PLAIN");
      co.user(settings_.user);
      std::string pw(settings_.password.reveal());
      co.password(pw);  // Proton keeps its own copy for the SASL exchange
      if (!pw.empty()) explicit_bzero(pw.data(), pw.size());
    }
    // PLAIN sends the password in clear: allowed over plain TCP only because amqp:// was asked
    // for explicitly; over amqps:// TLS protects it and Proton's default (secure only) stays.
    co.sasl_allow_insecure_mechs(!url_.tls);
    if (url_.tls) {
      const TlsSettings tls = settings_.tls.value_or(TlsSettings{});
      const std::string ca =
          tls.ca_file.empty() ? std::string("/etc/ssl/certs/ca-certificates.crt") : tls.ca_file;
      if (!tls.cert_file.empty()) {
        proton::ssl_certificate cert(tls.cert_file, tls.key_file);
        co.ssl_client_options(proton::ssl_client_options(cert, ca, proton::ssl::VERIFY_PEER_NAME));
      } else {
        co.ssl_client_options(proton::ssl_client_options(ca, proton::ssl::VERIFY_PEER_NAME));
      }
    }
    container_.connect(url_.to_string(), co);

    lock.lock();
    if (!cv_.wait_for(lock, settings_.connect_timeout, [&] { return open_ || failed_; })) {
      lock.unlock();
      fail_from_user(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                     "broker " + url_.to_string() + " did not answer within " +
                         std::to_string(settings_.connect_timeout.count()) + " ms");
      lock.lock();
    }
    if (failed_) throw Error(error_, error_text_);
  }

  bool ok() const {
    std::lock_guard lock(m_);
    return open_ && !failed_;
  }

  std::pair<HRESULT, std::string> error() const {
    std::lock_guard lock(m_);
    return {error_, error_text_};
  }

  SendReport send(std::span<const OutboundMessage> messages) {
    auto batch = std::make_shared<Batch>();
    batch->outcomes.assign(messages.size(), Outcome::failed);
    batch->remaining = messages.size();
    {
      std::lock_guard lock(m_);
      if (failed_) throw Error(error_, error_text_);
    }
    if (messages.empty()) return SendReport{};
    auto work = std::make_shared<std::vector<std::pair<std::string, proton::message>>>();
    work->reserve(messages.size());
    for (const auto& m : messages) {
      proton::message msg;
      if (!m.message_id.empty()) msg.id(m.message_id);
      msg.durable(m.durable);
      if (!m.subject.empty()) msg.subject(m.subject);
      if (!m.reply_to.empty()) msg.reply_to(m.reply_to);
      if (!m.correlation_id.empty()) msg.correlation_id(m.correlation_id);
      if (m.ttl.count() > 0) msg.ttl(proton::duration(m.ttl.count()));
      for (const auto& [key, value] : m.properties) msg.properties().put(key, value);
      msg.body(proton::binary(m.body.begin(), m.body.end()));
      work->emplace_back(m.address, std::move(msg));
    }
    if (!post([this, batch, work] { enqueue(batch, *work); }))
      fail_from_user(MQ_ERROR_SERVICE_NOT_AVAILABLE, "the AMQP event loop has stopped");

    std::unique_lock lock(m_);
    const bool done = cv_.wait_for(lock, settings_.operation_timeout,
                                   [&] { return batch->remaining == 0 || failed_; });
    SendReport report;
    report.outcomes = batch->outcomes;
    report.error = batch->error;
    report.error_text = batch->text;
    if (!done) {
      for (size_t i = 0; i < report.outcomes.size(); ++i)
        if (!batch->settled.empty() && !batch->settled[i]) report.outcomes[i] = Outcome::timed_out;
      report.error = MQ_ERROR_SERVICE_NOT_AVAILABLE;
      report.error_text = "broker " + url_.to_string() + " did not settle " +
                          std::to_string(batch->remaining) + " of " +
                          std::to_string(messages.size()) + " messages within " +
                          std::to_string(settings_.operation_timeout.count()) + " ms";
      lock.unlock();
      fail_from_user(MQ_ERROR_SERVICE_NOT_AVAILABLE, report.error_text);
    } else if (batch->remaining != 0 || (report.error == MQ_OK && failed_)) {
      // The connection failed before the batch was handed over or settled.
      if (report.error == MQ_OK) {
        report.error = error_;
        report.error_text = error_text_;
      }
    }
    return report;
  }

  void open_receiver(const std::string& address, uint32_t credit, bool durable) {
    {
      std::lock_guard lock(m_);
      if (failed_) throw Error(error_, error_text_);
      if (rx_state_ != RxState::none)
        throw Error(MQ_ERROR_INVALID_PARAMETER, "this AMQP connection already has a receiver");
      rx_state_ = RxState::opening;
      credit_ = std::max<uint32_t>(1, credit);
    }
    if (!post([this, address, durable] {
          proton::source_options so;
          so.address(address).durability_mode(durable ? proton::source::CONFIGURATION
                                                      : proton::source::NONDURABLE);
          proton::receiver_options ro;
          ro.auto_accept(false).credit_window(0).name("mqsec-receiver").source(so);
          conn_.open_receiver(address, ro);
        }))
      fail_from_user(MQ_ERROR_SERVICE_NOT_AVAILABLE, "the AMQP event loop has stopped");
    std::unique_lock lock(m_);
    if (!cv_.wait_for(lock, settings_.operation_timeout,
                      [&] { return rx_state_ != RxState::opening || failed_; })) {
      lock.unlock();
      fail_from_user(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                     "broker " + url_.to_string() + " did not attach the receiver for " + address +
                         " within " + std::to_string(settings_.operation_timeout.count()) + " ms");
      lock.lock();
    }
    if (rx_state_ == RxState::failed) throw Error(rx_error_, rx_error_text_);
    if (failed_) throw Error(error_, error_text_);
  }

  std::optional<InboundDelivery> receive(std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_);
    cv_.wait_for(lock, timeout,
                 [&] { return !inbox_.empty() || failed_ || rx_state_ == RxState::failed; });
    if (!inbox_.empty()) {
      InboundDelivery d = std::move(inbox_.front());
      inbox_.pop_front();
      if (credit_paused_ && inbox_.size() <= credit_ / 2) {
        credit_paused_ = false;
        lock.unlock();
        post([this] { top_up_credit(); });
      }
      return d;
    }
    if (rx_state_ == RxState::failed) throw Error(rx_error_, rx_error_text_);
    if (failed_) throw Error(error_, error_text_);
    return std::nullopt;
  }

  enum class Settle { accept, release, reject };

  bool settle(uint64_t id, Settle how) {
    {
      std::lock_guard lock(m_);
      if (failed_) return false;
    }
    return post([this, id, how] {
      auto it = unsettled_.find(id);
      if (it == unsettled_.end()) return;
      proton::delivery d = it->second;
      unsettled_.erase(it);
      if (how == Settle::accept)
        d.accept();
      else if (how == Settle::release)
        d.release();
      else
        d.reject();
    });
  }

  void close() noexcept {
    {
      std::lock_guard lock(m_);
      if (stopped_ || !thread_.joinable()) return;
    }
    const bool posted = post([this] { begin_close(); });
    {
      std::unique_lock lock(m_);
      // A healthy broker answers a close in milliseconds; an aborted or failed connection gets
      // a short grace period only (its broker may be the reason).
      const auto limit = failed_ ? std::chrono::milliseconds(500)
                                 : std::min<std::chrono::milliseconds>(settings_.connect_timeout,
                                                                       std::chrono::seconds(5));
      if (posted) cv_.wait_for(lock, limit, [&] { return closed_; });
      if (!failed_) {
        failed_ = true;
        error_ = MQ_ERROR_SERVICE_NOT_AVAILABLE;
        error_text_ = "the connection to broker " + url_.to_string() + " was closed";
      }
    }
    try {
      container_.stop();
    } catch (...) {
    }
    thread_.join();
    set_and_notify(stopped_);
  }

  void abort() { fail_from_user(MQ_ERROR_OPERATION_CANCELLED, "the operation was cancelled"); }

  // --- Proton events (the container's thread) ------------------------------------------------

  void on_container_start(proton::container&) override { set_and_notify(started_); }

  void on_connection_open(proton::connection& c) override {
    conn_ = c;
    conn_valid_ = true;
    set_and_notify(open_);
  }

  void on_transport_error(proton::transport& t) override {
    // The connection itself failed: refused credentials, or the broker is not available (I/O
    // error, TLS failure, heartbeat expiry, reported by Proton as
    // amqp:resource-limit-exceeded "local-idle-timeout expired").
    const auto e = t.error();
    fail(e.name() == "amqp:unauthorized-access" ? MQ_ERROR_ACCESS_DENIED
                                                : MQ_ERROR_SERVICE_NOT_AVAILABLE,
         "broker " + url_.to_string() + ": " + describe(e));
  }

  void on_transport_close(proton::transport&) override {
    fail(MQ_ERROR_SERVICE_NOT_AVAILABLE,
         "the connection to broker " + url_.to_string() + " was closed");
    conn_valid_ = false;
    receiver_active_ = false;
    set_and_notify(closed_);
  }

  void on_connection_error(proton::connection& c) override {
    const auto e = c.error();
    fail(code_for_condition(e.name(), MQ_ERROR_SERVICE_NOT_AVAILABLE),
         "broker " + url_.to_string() + " closed the connection: " + describe(e));
  }

  void on_connection_close(proton::connection&) override {
    if (!closing_)
      fail(MQ_ERROR_SERVICE_NOT_AVAILABLE, "broker " + url_.to_string() + " closed the connection");
  }

  void on_session_error(proton::session& s) override {
    const auto e = s.error();
    fail(code_for_condition(e.name(), MQ_ERROR_SERVICE_NOT_AVAILABLE),
         "broker " + url_.to_string() + " ended the session: " + describe(e));
  }

  void on_error(const proton::error_condition& e) override {
    fail(code_for_condition(e.name(), MQ_ERROR_SERVICE_NOT_AVAILABLE),
         "broker " + url_.to_string() + ": " + describe(e));
  }

  void on_sendable(proton::sender& s) override { pump(s); }

  void on_sender_error(proton::sender& s) override { sender_gone(s, "refused the sender link"); }
  void on_sender_close(proton::sender& s) override { sender_gone(s, "closed the sender link"); }
  void on_sender_detach(proton::sender& s) override { sender_gone(s, "detached the sender link"); }

  void on_tracker_accept(proton::tracker& t) override { settled(t, Outcome::accepted); }
  void on_tracker_reject(proton::tracker& t) override { settled(t, Outcome::rejected); }
  void on_tracker_release(proton::tracker& t) override {
    settled(t, t.state() == proton::transfer::MODIFIED ? Outcome::modified : Outcome::released);
  }
  void on_tracker_settle(proton::tracker& t) override {
    switch (t.state()) {
      case proton::transfer::ACCEPTED:
        settled(t, Outcome::accepted);
        break;
      case proton::transfer::REJECTED:
        settled(t, Outcome::rejected);
        break;
      case proton::transfer::RELEASED:
        settled(t, Outcome::released);
        break;
      case proton::transfer::MODIFIED:
        settled(t, Outcome::modified);
        break;
      default:
        settled(t, Outcome::failed);
        break;
    }
  }

  void on_receiver_open(proton::receiver& r) override {
    receiver_ = r;
    receiver_active_ = true;
    r.add_credit(credit_);
    std::lock_guard lock(m_);
    if (rx_state_ == RxState::opening) rx_state_ = RxState::open;
    cv_.notify_all();
  }

  void on_message(proton::delivery& d, proton::message& m) override {
    InboundDelivery in;
    in.id = next_delivery_++;
    try {
      const proton::message_id id = m.id();
      if (id.type() == proton::STRING) in.message_id = proton::get<std::string>(id);
      if (!m.properties().empty()) {
        std::map<std::string, proton::scalar> props;
        proton::get(m.properties().value(), props);
        for (const auto& [key, value] : props)
          if (value.type() == proton::STRING)
            in.properties.emplace_back(key, proton::get<std::string>(value));
      }
      if (m.body().type() == proton::BINARY) {
        const auto bin = proton::get<proton::binary>(m.body());
        in.body.assign(bin.begin(), bin.end());
        in.binary_body = true;
      }
      in.delivery_count = m.delivery_count();
      in.first_acquirer = m.first_acquirer();
      in.subject = m.subject();
      in.reply_to = m.reply_to();
      const proton::message_id corr = m.correlation_id();
      if (corr.type() == proton::STRING) in.correlation_id = proton::get<std::string>(corr);
    } catch (const std::exception&) {
      // Undecodable parts leave the fields empty: the caller sees a malformed message.
    }
    unsettled_.emplace(in.id, d);
    {
      std::lock_guard lock(m_);
      inbox_.push_back(std::move(in));
      cv_.notify_all();
    }
    top_up_credit();
  }

  void on_receiver_error(proton::receiver& r) override { receiver_gone(r); }
  void on_receiver_close(proton::receiver& r) override { receiver_gone(r); }
  void on_receiver_detach(proton::receiver& r) override { receiver_gone(r); }

 private:
  struct Batch {
    std::vector<Outcome> outcomes;
    std::vector<bool> settled;
    size_t remaining = 0;
    HRESULT error = MQ_OK;
    std::string text;
  };
  struct Pending {
    proton::message message;
    std::shared_ptr<Batch> batch;
    size_t index;
  };
  struct SenderState {
    proton::sender sender;
    std::string address;
    std::deque<Pending> queue;
    std::unordered_map<uint64_t, std::pair<std::shared_ptr<Batch>, size_t>> inflight;
  };
  enum class RxState { none, opening, open, failed };

  // Runs `fn` on the container's thread. The container-level work queue does not process the
  // connection afterwards, so frames `fn` produced would wait for the next I/O event (a
  // heartbeat, seconds later): wake the connection to flush them.
  bool post(proton::work fn) {
    try {
      return wq_.add([this, fn = std::move(fn)]() mutable {
        fn();
        if (conn_valid_) conn_.wake();
      });
    } catch (...) {
      return false;
    }
  }

  // Records an outcome; m_ must be held.
  static void complete(Batch& b, size_t index, Outcome outcome) {
    if (b.settled.empty()) b.settled.assign(b.outcomes.size(), false);
    if (b.settled[index]) return;
    b.settled[index] = true;
    b.outcomes[index] = outcome;
    --b.remaining;
  }

  void enqueue(const std::shared_ptr<Batch>& batch,
               std::vector<std::pair<std::string, proton::message>>& work) {
    {
      std::lock_guard lock(m_);
      if (failed_ || !conn_valid_) return;  // the user thread reports the failure
      if (batch->settled.empty()) batch->settled.assign(batch->outcomes.size(), false);
    }
    std::vector<std::string> touched;
    for (size_t i = 0; i < work.size(); ++i) {
      auto& [address, message] = work[i];
      auto found = link_by_address_.find(address);
      if (found == link_by_address_.end()) {
        const std::string name = "mqsec-sender-" + std::to_string(next_link_++);
        proton::target_options to;
        to.address(address).durability_mode(proton::target::CONFIGURATION);
        proton::sender_options so;
        so.name(name).target(to).auto_settle(true);
        SenderState state;
        state.sender = conn_.open_sender(address, so);
        state.address = address;
        senders_.emplace(name, std::move(state));
        found = link_by_address_.emplace(address, name).first;
      }
      auto& state = senders_.at(found->second);
      state.queue.push_back(Pending{std::move(message), batch, i});
      if (std::find(touched.begin(), touched.end(), found->second) == touched.end())
        touched.push_back(found->second);
    }
    for (const auto& name : touched) {
      auto it = senders_.find(name);
      if (it != senders_.end() && it->second.sender.active()) pump(it->second.sender);
    }
  }

  void pump(proton::sender& s) {
    auto it = senders_.find(s.name());
    if (it == senders_.end()) return;
    auto& state = it->second;
    while (s.credit() > 0 && !state.queue.empty()) {
      Pending p = std::move(state.queue.front());
      state.queue.pop_front();
      const uint64_t tag = next_tag_++;
      s.send(p.message, tag_bytes(tag));
      state.inflight.emplace(tag, std::make_pair(std::move(p.batch), p.index));
    }
  }

  void settled(proton::tracker& t, Outcome outcome) {
    auto it = senders_.find(t.sender().name());
    if (it == senders_.end()) return;
    auto& inflight = it->second.inflight;
    auto f = inflight.find(tag_value(t.tag()));
    if (f == inflight.end()) return;
    {
      std::lock_guard lock(m_);
      auto& batch = *f->second.first;
      complete(batch, f->second.second, outcome);
      if (outcome != Outcome::accepted && batch.error == MQ_OK) {
        batch.error =
            outcome == Outcome::rejected ? MQ_ERROR_ACCESS_DENIED : MQ_ERROR_SERVICE_NOT_AVAILABLE;
        batch.text = "broker " + url_.to_string() + " " + to_string(outcome) + " a message for " +
                     it->second.address;
      }
      if (batch.remaining == 0) cv_.notify_all();
    }
    inflight.erase(f);
  }

  void fail_sender_state(SenderState& state, HRESULT code, const std::string& text) {
    std::lock_guard lock(m_);
    auto mark = [&](Batch& b, size_t index) {
      complete(b, index, Outcome::failed);
      if (b.error == MQ_OK) {
        b.error = code;
        b.text = text;
      }
    };
    for (auto& p : state.queue) mark(*p.batch, p.index);
    for (auto& [tag, slot] : state.inflight) mark(*slot.first, slot.second);
    state.queue.clear();
    state.inflight.clear();
    cv_.notify_all();
  }

  void sender_gone(proton::sender& s, const char* what) {
    if (closing_) return;
    auto it = senders_.find(s.name());
    if (it == senders_.end()) return;
    const auto e = s.error();
    const HRESULT code = code_for_condition(e.name(), MQ_ERROR_SERVICE_NOT_AVAILABLE);
    const std::string text = "broker " + url_.to_string() + " " + what + " for " +
                             it->second.address + ": " + describe(e);
    fail_sender_state(it->second, code, text);
    link_by_address_.erase(it->second.address);
    senders_.erase(it);
  }

  void receiver_gone(proton::receiver& r) {
    receiver_active_ = false;
    if (closing_) {
      if (conn_valid_ && conn_.active()) conn_.close();
      return;
    }
    const auto e = r.error();
    std::lock_guard lock(m_);
    if (rx_state_ == RxState::failed) return;
    rx_state_ = RxState::failed;
    rx_error_ = code_for_condition(e.name(), MQ_ERROR_QUEUE_NOT_FOUND);
    rx_error_text_ = "broker " + url_.to_string() + " detached the receiver for " +
                     r.source().address() + ": " + describe(e);
    cv_.notify_all();
  }

  // Credit as Proton's own credit_window does it (RabbitMQ 3.x's plugin loses track of credit
  // that is topped up rarely or in steps: the link stalls), topping the link up to the window
  // after each delivery; but not while `window` deliveries wait for the application, so a slow
  // consumer bounds what is held in memory (receive() restarts the flow).
  void top_up_credit() {
    if (!receiver_active_) return;
    {
      std::lock_guard lock(m_);
      if (inbox_.size() >= credit_) {
        credit_paused_ = true;
        return;
      }
      credit_paused_ = false;
    }
    const int credit = receiver_.credit();
    if (credit < int(credit_)) receiver_.add_credit(uint32_t(int(credit_) - credit));
  }

  void begin_close() {
    closing_ = true;
    if (receiver_active_ && receiver_.active()) {
      receiver_.close();  // the connection is closed on the broker's detach (receiver_gone)
    } else if (conn_valid_ && conn_.active()) {
      conn_.close();
    } else if (!conn_valid_) {
      set_and_notify(closed_);
    }
  }

  // Container thread: the connection is unusable; every waiting batch ends.
  void fail(HRESULT code, const std::string& text) {
    {
      std::lock_guard lock(m_);
      if (!failed_) {
        failed_ = true;
        error_ = code;
        error_text_ = text;
      }
      if (rx_state_ == RxState::opening) {
        rx_state_ = RxState::failed;
        rx_error_ = error_;
        rx_error_text_ = error_text_;
      }
      cv_.notify_all();
    }
    for (auto& [name, state] : senders_) fail_sender_state(state, error_, error_text_);
    senders_.clear();
    link_by_address_.clear();
  }

  // User thread: marks the connection failed and asks the loop to close it.
  void fail_from_user(HRESULT code, const std::string& text) {
    {
      std::lock_guard lock(m_);
      if (!failed_) {
        failed_ = true;
        error_ = code;
        error_text_ = text;
      }
      cv_.notify_all();
    }
    post([this] {
      closing_ = true;
      if (conn_valid_ && conn_.active()) conn_.close();
    });
  }

  // Sets one of the flags below under m_ and wakes the waiters.
  void set_and_notify(bool& flag) {
    std::lock_guard lock(m_);
    flag = true;
    cv_.notify_all();
  }

  BrokerSettings settings_;
  BrokerUrl url_;
  proton::container container_;
  proton::work_queue wq_;
  std::thread thread_;

  mutable std::mutex m_;
  std::condition_variable cv_;
  bool started_ = false;
  bool loop_done_ = false;
  bool open_ = false;
  bool failed_ = false;
  bool closed_ = false;
  bool stopped_ = false;
  HRESULT error_ = MQ_OK;
  std::string error_text_;
  RxState rx_state_ = RxState::none;
  HRESULT rx_error_ = MQ_OK;
  std::string rx_error_text_;
  std::deque<InboundDelivery> inbox_;
  bool credit_paused_ = false;

  // The container's thread only.
  proton::connection conn_;
  bool conn_valid_ = false;
  bool closing_ = false;
  std::map<std::string, SenderState> senders_;          // by link name
  std::map<std::string, std::string> link_by_address_;  // address -> link name
  uint64_t next_tag_ = 1;
  uint64_t next_link_ = 1;
  proton::receiver receiver_;
  bool receiver_active_ = false;
  uint32_t credit_ = 100;
  uint64_t next_delivery_ = 1;
  std::unordered_map<uint64_t, proton::delivery> unsettled_;
};

Connection::Connection(const BrokerSettings& settings) : impl_(std::make_unique<Impl>(settings)) {
  impl_->start();
}
Connection::~Connection() = default;
bool Connection::ok() const { return impl_->ok(); }
std::pair<HRESULT, std::string> Connection::error() const { return impl_->error(); }
SendReport Connection::send(std::span<const OutboundMessage> messages) {
  return impl_->send(messages);
}
void Connection::open_receiver(const std::string& address, uint32_t credit, bool durable) {
  impl_->open_receiver(address, credit, durable);
}
std::optional<InboundDelivery> Connection::receive(std::chrono::milliseconds timeout) {
  return impl_->receive(timeout);
}
bool Connection::accept(uint64_t id) { return impl_->settle(id, Impl::Settle::accept); }
bool Connection::release(uint64_t id) { return impl_->settle(id, Impl::Settle::release); }
bool Connection::reject(uint64_t id) { return impl_->settle(id, Impl::Settle::reject); }
void Connection::abort() noexcept {
  try {
    impl_->abort();
  } catch (...) {
  }
}
void Connection::close() noexcept { impl_->close(); }

}  // namespace mqsec::transport::amqp
