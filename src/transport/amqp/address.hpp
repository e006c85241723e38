// Where a message for another machine goes on the broker (docs/remote.md, "Broker addresses").
//
// One durable broker queue per destination machine: <prefix>mqsec.in.<machine>, with machine
// names lower-cased and restricted to [a-z0-9._-]. The destination's private queue travels in the
// application property mqsec-queue, the sending machine in mqsec-source, the destination machine
// in mqsec-destination, and the MSMQ message id (40 lower-case hex digits of the 20-byte id) as
// the AMQP message-id. The body is the opaque envelope, one AMQP data section.
#pragma once

#include <string>
#include <string_view>

namespace mqsec::transport::amqp {

inline constexpr std::string_view kPropertyQueue = "mqsec-queue";
inline constexpr std::string_view kPropertySource = "mqsec-source";
inline constexpr std::string_view kPropertyDestination = "mqsec-destination";
inline constexpr std::string_view kInboundQueuePrefix = "mqsec.in.";
inline constexpr size_t kMaxMachineName = 200;
inline constexpr size_t kMaxQueueName = 1024;

// The canonical (lower-case) machine name. Throws mqsec::Error(MQ_ERROR_ILLEGAL_FORMATNAME)
// unless the name is 1-200 characters of letters, digits, '.', '_' and '-', starts and ends with a
// letter or digit, and has no "..".
std::string canonical_machine_name(std::string_view machine);

// The broker queue that receives every message for `machine`: "mqsec.in.<machine>".
std::string inbound_queue_name(std::string_view machine);

// The AMQP address of that queue: address_prefix + inbound_queue_name(machine).
std::string inbound_address(std::string_view machine, std::string_view address_prefix = "/queue/");

// Throws mqsec::Error(MQ_ERROR_ILLEGAL_FORMATNAME) unless `queue` is a usable queue name for the
// mqsec-queue property: 1-1024 bytes, no control characters.
void validate_queue_name(std::string_view queue);

// True if `id` is 40 lower-case hex digits (the 20-byte MSMQ message id).
bool is_message_id_hex(std::string_view id);

}  // namespace mqsec::transport::amqp
