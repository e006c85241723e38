#include "transport/amqp/settings.hpp"

#include <mqsec/error.hpp>

#include <cctype>
#include <charconv>
#include <cstring>
#include <string.h>  // explicit_bzero

namespace mqsec::transport::amqp {

namespace {

void wipe(std::string& s) noexcept {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

[[noreturn]] void bad_url(std::string_view url, const std::string& what) {
  // Never echo a URL that carries user info: it may contain a password.
  // Built with append: GCC 12 at -O3 warns (-Wrestrict, a false positive) on
  // "literal" + std::string here, which breaks a Release build with -Werror.
  const bool secret = url.find('@') != std::string_view::npos;
  std::string text = "broker url ";
  if (secret) {
    text.append("<redacted: it contains '@'>");
  } else {
    text.append(1, '"').append(url.substr(0, 200)).append(1, '"');
  }
  text.append(": ").append(what).append("; expected amqp://host:port or amqps://host:port");
  throw Error(MQ_ERROR_ILLEGAL_FORMATNAME, text);
}

bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.';
}

}  // namespace

SecretString::SecretString(std::string_view text) : value_(text) {}
SecretString::SecretString(const SecretString& other) : value_(other.value_) {}
SecretString::SecretString(SecretString&& other) noexcept : value_(other.value_) { other.clear(); }
SecretString& SecretString::operator=(const SecretString& other) {
  if (this != &other) assign(other.value_);
  return *this;
}
SecretString& SecretString::operator=(SecretString&& other) noexcept {
  if (this != &other) {
    clear();
    value_ = other.value_;
    other.clear();
  }
  return *this;
}
SecretString::~SecretString() { clear(); }
void SecretString::assign(std::string_view text) {
  clear();
  value_.reserve(text.size());
  value_.assign(text.data(), text.size());
}
void SecretString::clear() noexcept { wipe(value_); }

std::string BrokerUrl::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return std::string(tls ? "amqps://" : "amqp://") + (v6 ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

BrokerUrl parse_broker_url(std::string_view url) {
  if (url.empty())
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "broker url is empty; expected amqp://host:port or amqps://host:port");
  BrokerUrl out;
  std::string_view rest;
  if (url.starts_with("amqp://")) {
    rest = url.substr(7);
  } else if (url.starts_with("amqps://")) {
    out.tls = true;
    rest = url.substr(8);
  } else {
    const auto colon = url.find("://");
    bad_url(url, colon == std::string_view::npos
                     ? std::string("no scheme")
                     : "scheme \"" + std::string(url.substr(0, std::min<size_t>(colon, 20))) +
                           "\" is not supported (amqp or amqps)");
  }
  if (rest.find('@') != std::string_view::npos)
    bad_url(url,
            "user info in the url is not allowed (give the user in [broker] user and the "
            "password through password-source)");
  for (char c : rest) {
    if (c == '/' || c == '?' || c == '#') bad_url(url, "a path, query or fragment is not allowed");
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
      bad_url(url, "control characters, spaces and non-ASCII characters are not allowed");
  }
  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (rest.starts_with("[")) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) bad_url(url, "unterminated IPv6 address");
    host = rest.substr(1, close - 1);
    auto after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') bad_url(url, "unexpected text after the IPv6 address");
      port = after.substr(1);
      has_port = true;
    }
    if (host.empty()) bad_url(url, "the host is missing");
    for (char c : host)
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.'))
        bad_url(url, "invalid IPv6 address");
  } else {
    const auto colon = rest.find(':');
    host = rest.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = rest.substr(colon + 1);
      has_port = true;
    }
    if (host.empty()) bad_url(url, "the host is missing");
    if (host.size() > 253) bad_url(url, "the host name is longer than 253 characters");
    for (char c : host)
      if (!host_char(c)) bad_url(url, "the host may contain only letters, digits, '-' and '.'");
    if (host.front() == '-' || host.front() == '.')
      bad_url(url, "the host must start with a letter or digit");
  }
  if (has_port) {
    if (port.empty()) bad_url(url, "the port is empty");
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size())
      bad_url(url, "the port must be a decimal number from 1 to 65535");
    if (value == 0 || value > 65535) bad_url(url, "the port must be from 1 to 65535");
    out.port = static_cast<uint16_t>(value);
  } else {
    out.port = out.tls ? 5671 : 5672;
  }
  out.host = std::string(host);
  return out;
}

}  // namespace mqsec::transport::amqp
