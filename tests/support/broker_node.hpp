// The remote-queue tests' private RabbitMQ node: support/broker_node.hpp (shared with
// mqsec-bench), here under the tests' namespace.
#pragma once

#include "support/broker_node.hpp"

namespace mqsec::test {

using support::BrokerNode;

}  // namespace mqsec::test
