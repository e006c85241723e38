#include "transport/amqp/address.hpp"

#include <mqsec/error.hpp>

namespace mqsec::transport::amqp {

namespace {

bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

[[noreturn]] void bad_machine(std::string_view machine, const std::string& what) {
  throw Error(MQ_ERROR_ILLEGAL_FORMATNAME,
              "machine name \"" + std::string(machine.substr(0, 64)) +
                  (machine.size() > 64 ? "...\"" : "\"") + ": " + what +
                  "; expected 1-200 letters, digits, '.', '_' or '-', starting and ending with a "
                  "letter or digit");
}

}  // namespace

std::string canonical_machine_name(std::string_view machine) {
  if (machine.empty()) bad_machine(machine, "it is empty");
  if (machine.size() > kMaxMachineName) bad_machine(machine, "it is too long");
  std::string out;
  out.reserve(machine.size());
  for (char c : machine) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!alnum(c) && c != '.' && c != '_' && c != '-')
      bad_machine(machine, "it contains a character that is not allowed");
    out.push_back(c);
  }
  if (!alnum(out.front()) || !alnum(out.back()))
    bad_machine(machine, "it must start and end with a letter or digit");
  if (out.find("..") != std::string::npos) bad_machine(machine, "it contains \"..\"");
  return out;
}

std::string inbound_queue_name(std::string_view machine) {
  return std::string(kInboundQueuePrefix) + canonical_machine_name(machine);
}

std::string inbound_address(std::string_view machine, std::string_view address_prefix) {
  return std::string(address_prefix) + inbound_queue_name(machine);
}

void validate_queue_name(std::string_view queue) {
  if (queue.empty()) throw Error(MQ_ERROR_ILLEGAL_FORMATNAME, "queue name is empty");
  if (queue.size() > kMaxQueueName)
    throw Error(MQ_ERROR_ILLEGAL_FORMATNAME, "queue name is longer than 1024 bytes");
  for (char c : queue)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      throw Error(MQ_ERROR_ILLEGAL_FORMATNAME, "queue name contains a control character");
}

bool is_message_id_hex(std::string_view id) {
  if (id.size() != 40) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace mqsec::transport::amqp
