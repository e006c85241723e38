// Broker connection settings of the AMQP 1.0 transport: the broker URL, the SASL user and
// password, optional TLS files and the timeouts. Plain data; the password lives in a buffer that
// is wiped when it is destroyed and is never written to logs or error texts.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mqsec::transport::amqp {

// A string that is wiped (explicit_bzero) when destroyed or reassigned. Used for the broker
// password; it is never part of an error message or a log line.
class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string_view text);
  SecretString(const SecretString& other);
  SecretString(SecretString&& other) noexcept;
  SecretString& operator=(const SecretString& other);
  SecretString& operator=(SecretString&& other) noexcept;
  ~SecretString();

  void assign(std::string_view text);
  void clear() noexcept;
  bool empty() const noexcept { return value_.empty(); }
  // The secret itself: only for handing it to the AMQP library.
  std::string_view reveal() const noexcept { return value_; }

 private:
  std::string value_;
};

// TLS for amqps:// URLs. ca_file: PEM file of the CA(s) that sign the broker's certificate
// (empty: the system trust store). cert_file/key_file: an optional client certificate (both or
// neither). The broker's host name is verified against its certificate.
struct TlsSettings {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

struct BrokerSettings {
  std::string url;  // amqp://host:port or amqps://host:port (see parse_broker_url)
  std::string user;
  SecretString password;
  std::optional<TlsSettings> tls;                      // used with amqps:// only
  std::chrono::milliseconds connect_timeout{10000};    // TCP + SASL + AMQP open, each attempt
  std::chrono::milliseconds idle_timeout{30000};       // AMQP heartbeat; 0 disables
  std::chrono::milliseconds operation_timeout{30000};  // settling a batch, attaching a link
  // Prefix that makes a queue name an address on the broker: RabbitMQ 3.x's AMQP 1.0 plugin
  // wants "/queue/"; most other AMQP 1.0 brokers (Artemis, Service Bus, Qpid) take the bare name.
  std::string address_prefix = "/queue/";
};

// A validated broker URL.
struct BrokerUrl {
  bool tls = false;  // amqps
  std::string host;  // host name, IPv4 address, or IPv6 address without brackets
  uint16_t port = 0;
  // The URL in canonical form (amqp://host:port, IPv6 in brackets).
  std::string to_string() const;
};

// Parses amqp://host[:port] or amqps://host[:port] (default ports 5672 / 5671). Anything else
// (another scheme, user info, a path, a query, a bad port) throws
// mqsec::Error(MQ_ERROR_ILLEGAL_FORMATNAME, "broker url ...: <what is wrong and what is
// expected>"); an empty URL throws MQ_ERROR_INVALID_PARAMETER. A URL with user info is never
// echoed (it might carry a password).
BrokerUrl parse_broker_url(std::string_view url);

}  // namespace mqsec::transport::amqp
