// Destinations: MSMQ queue names, path names (".\private$\orders", "<host>\private$\orders")
// and direct format names ("DIRECT=OS:.\private$\orders", "DIRECT=TCP:<addr>\private$\orders"),
// and which transport serves the queue they name. A private queue of this machine (written as
// ".", "localhost", the host name or this_machine(), case-insensitive) is served by the local
// transport (transport/local); a queue of another machine is Remote: a send to it goes to a local
// outgoing queue (src/core/outgoing.hpp) that the forwarder empties into the broker
// (docs/remote.md). DIRECT=TCP's address is taken as the machine name: the destination machine's
// [machine] name must equal it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mqsec::core {

// Where a message goes, or a queue is read from.
struct Destination {
  enum class Transport { Local, Remote };
  std::string queue;  // private queue name, lower-cased
  Transport transport = Transport::Local;
  std::string machine;  // Remote: the destination machine (canonical, lower-cased); Local: empty

  bool remote() const noexcept { return transport == Transport::Remote; }
  friend bool operator==(const Destination&, const Destination&) = default;
};

// The destination a path name or a direct format name names. Throws mqsec::Error: for a path
// name MQ_ERROR_ILLEGAL_QUEUE_PATHNAME (malformed, public queue, bad queue name, a machine name
// that is not valid: security::machine_name_problem and transport::amqp::canonical_machine_name),
// for a format name MQ_ERROR_ILLEGAL_FORMATNAME (the same, or a kind we do not support: PUBLIC=,
// PRIVATE=, multicast, lists). Remote destinations are accepted here; operations a remote queue
// does not support say so where they are refused (Queue::open).
Destination destination_of_path(std::string_view path);
Destination destination_of_format(std::string_view format);
// The same, with `this_machine_name` standing in for this_machine() (for tests and callers that
// hold the configuration already).
Destination destination_of_path(std::string_view path, std::string_view this_machine_name);
Destination destination_of_format(std::string_view format, std::string_view this_machine_name);

// "DIRECT=OS:<machine>\private$\<queue>" of a destination (Local: this machine's host name).
std::string format_name_of(const Destination& d);

// The machine's host name (as gethostname), lower-cased.
const std::string& local_host();

// This queue manager's machine name: [machine] name, else the host name (lower-cased). Reads the
// system configuration (Runtime::config()); when it cannot be read, the host name.
std::string this_machine();

// True when `host` names this machine as a path name may: ".", "localhost", the host name,
// this_machine() or a fully qualified name of this host, case-insensitive.
bool is_this_machine(std::string_view host);

// Queue name (lower-cased) of a path name of a LOCAL queue. Throws mqsec::Error:
// MQ_ERROR_ILLEGAL_QUEUE_PATHNAME (malformed, public queue, name too long or empty),
// MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION (another machine: callers that accept remote
// queues use destination_of_path).
std::string queue_from_path(std::string_view path);
// Queue name of a format name of a LOCAL queue. Throws MQ_ERROR_ILLEGAL_FORMATNAME (malformed or a
// kind we do not support: PUBLIC=, PRIVATE=, multicast, lists) or
// MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION (another machine: see destination_of_format).
std::string queue_from_format(std::string_view format);
// "DIRECT=OS:<host>\private$\<name>".
std::string format_name_of(std::string_view queue);
// The queue part of a direct format name "DIRECT=OS:<host>\private$\<name>", lower-cased
// like stored queue names, whatever the host (the sender's view of it: ".", a host name, a
// remote machine); empty when the text is not of that form. For comparing a message's signed
// destination with the queue it sits in.
std::string queue_part_of_format(std::string_view format);

// A machine's GUID as MSMQ's properties carry one (PROPID_M_SRC_MACHINE_ID): mqsec's machines
// have names, not GUIDs, so this is name-based (RFC 4122 version 5 layout, from SHA-256 of the
// name): stable for a name, distinct for distinct names. Bytes in GUID field order (Data1..4).
struct MachineGuid {
  uint32_t data1;
  uint16_t data2;
  uint16_t data3;
  uint8_t data4[8];
};
MachineGuid machine_guid(std::string_view machine_utf8);
// The same name-based layout for any name (machine_guid is name_based_guid("mqsec machine:" +
// the machine's name); a queue's instance GUID uses it too, core/locate.hpp).
MachineGuid name_based_guid(std::string_view name);

}  // namespace mqsec::core
