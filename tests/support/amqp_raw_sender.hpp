// Sends one message with an AMQP string body (not a binary data section) straight through Qpid
// Proton, for tests of how the mqsec transport treats a broker message that is not an mqsec
// message. Bounded: gives up after `limit`.
#pragma once

#include <chrono>
#include <string>

namespace mqsec::test {

// True once the broker accepted the message. `url` amqp://host:port, `address` e.g.
// "/queue/NAME".
bool send_string_body(const std::string& url, const std::string& user, const std::string& password,
                      const std::string& address, const std::string& message_id,
                      const std::string& body, std::chrono::seconds limit);

}  // namespace mqsec::test
