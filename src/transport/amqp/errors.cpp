#include "transport/amqp/errors.hpp"

namespace mqsec::transport::amqp {

HRESULT code_for_condition(std::string_view c, HRESULT fallback) noexcept {
  if (c == "amqp:unauthorized-access" || c == "amqp:not-allowed") return MQ_ERROR_ACCESS_DENIED;
  if (c == "amqp:not-found" || c == "amqp:precondition-failed") return MQ_ERROR_QUEUE_NOT_FOUND;
  if (c == "amqp:resource-deleted") return MQ_ERROR_QUEUE_DELETED;
  if (c == "amqp:resource-limit-exceeded") return MQ_ERROR_INSUFFICIENT_RESOURCES;
  if (c == "amqp:invalid-field" || c == "amqp:decode-error" || c == "amqp:not-implemented")
    return MQ_ERROR_INVALID_PARAMETER;
  if (c.starts_with("amqp:connection:") || c == "amqp:internal-error" || c.starts_with("proton:"))
    return MQ_ERROR_SERVICE_NOT_AVAILABLE;
  return fallback;
}

}  // namespace mqsec::transport::amqp
