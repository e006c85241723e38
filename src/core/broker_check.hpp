// `mqsec doctor`'s look at the broker of remote queues ([broker]): can this machine reach it,
// does it accept our credentials, and may we consume this machine's broker queue. Each step is
// reported on its own so that the first one that fails says what to fix.
#pragma once

#include <string>

#include "src/security/config.hpp"

namespace mqsec::core {

struct BrokerCheck {
  enum class Step { NotConfigured, Settings, Connect, Consume, Ok };
  Step failed_at = Step::Ok;  // Ok: every step passed; NotConfigured: no [broker]
  std::string detail;         // what was seen (an error text, or what passed); never the password
  std::string machine;        // this machine's name
  std::string address;        // this machine's broker queue address
};

// Reads the password source, connects (bounded by [broker] connect-timeout-ms) and attaches a
// receiver to this machine's broker queue, then detaches at once. A message that arrives in
// that moment is not accepted: the broker delivers it again (to the agent). Never throws.
BrokerCheck check_broker(const security::SystemConfig& cfg);

}  // namespace mqsec::core
