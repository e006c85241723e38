// Destinations: MSMQ queue names, path names (".\private$\orders", "<host>\private$\orders")
// and direct format names ("DIRECT=OS:.\private$\orders"), and which transport serves the
// queue they name. Today every destination is a private queue of this machine, served by the
// local transport (transport/local); the local host may be written as ".", "localhost" or its
// host name. A remote transport plugs in here: a destination on another machine selects it.
#pragma once

#include <string>
#include <string_view>

namespace mqsec::core {

// Where a message goes, or a queue is read from. `queue` is the private queue's name
// (lower-cased). Only local queues exist today (Transport::Local).
struct Destination {
  enum class Transport { Local };
  std::string queue;
  Transport transport = Transport::Local;
};

// The destination a path name or a direct format name names (see queue_from_path and
// queue_from_format for the errors thrown).
Destination destination_of_path(std::string_view path);
Destination destination_of_format(std::string_view format);

// The machine's host name (as gethostname), lower-cased.
const std::string& local_host();

// Queue name (lower-cased) of a path name. Throws mqsec::Error:
// MQ_ERROR_ILLEGAL_QUEUE_PATHNAME (malformed, public queue, name too long or empty),
// MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION (another machine).
std::string queue_from_path(std::string_view path);
// Queue name of a format name. Throws MQ_ERROR_ILLEGAL_FORMATNAME (malformed or a kind we do
// not support: PUBLIC=, PRIVATE=, DIRECT=TCP:, multicast, lists) or
// MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION (another machine).
std::string queue_from_format(std::string_view format);
// "DIRECT=OS:<host>\private$\<name>".
std::string format_name_of(std::string_view queue);
// The queue part of a direct format name "DIRECT=OS:<host>\private$\<name>", lower-cased
// like stored queue names, whatever the host (the sender's view of it: ".", a host name, a
// remote machine); empty when the text is not of that form. For comparing a message's signed
// destination with the queue it sits in.
std::string queue_part_of_format(std::string_view format);

}  // namespace mqsec::core
