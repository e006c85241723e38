// AMQP error conditions -> MQ_ERROR_* codes (internal to the AMQP transport).
#pragma once

#include <mq.h>

#include <string_view>

namespace mqsec::transport::amqp {

// The MQ code for an AMQP error condition name (amqp:unauthorized-access, amqp:not-found, ...);
// `fallback` for an empty or unknown name. Documented in docs/remote.md.
HRESULT code_for_condition(std::string_view condition, HRESULT fallback) noexcept;

}  // namespace mqsec::transport::amqp
