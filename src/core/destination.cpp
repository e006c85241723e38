// Path and format name parsing, and the destinations they name.
#include "src/core/destination.hpp"

#include <mq.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include <utility>

#include "mqsec/error.hpp"
#include "src/core/dead_letter.hpp"
#include "src/core/journal.hpp"
#include "src/core/runtime.hpp"
#include "src/security/config.hpp"
#include "src/security/openssl.hpp"
#include "transport/amqp/address.hpp"

namespace mqsec::core {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// A host part is a DNS name or "."; anything else (a format name passed as a path, a
// space, a colon) is a malformed path rather than "another machine".
bool is_host_name(std::string_view host) {
  return !host.empty() && host.size() <= 255 &&
         std::all_of(host.begin(), host.end(), [](unsigned char c) {
           return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_';
         });
}

// Splits "<host>\private$\<name>" and validates its parts; throws
// MQ_ERROR_ILLEGAL_QUEUE_PATHNAME. Returns {host as written, queue lower-cased}.
std::pair<std::string_view, std::string> split_path(std::string_view path) {
  auto first = path.find('\\');
  if (first == std::string_view::npos || first == 0) {
    throw Error(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
                "queue path name '" + std::string(path) + "' is not of the form .\\private$\\NAME");
  }
  std::string_view host = path.substr(0, first);
  std::string_view rest = path.substr(first + 1);
  if (!is_host_name(host)) {
    throw Error(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
                "queue path name '" + std::string(path) +
                    "' has no valid machine name before '\\' (a path name looks like "
                    ".\\private$\\NAME; DIRECT=OS:... is a format name)");
  }
  constexpr std::string_view kPrivate = "private$\\";
  if (rest.size() < kPrivate.size() || lower(rest.substr(0, kPrivate.size())) != kPrivate) {
    throw Error(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
                "'" + std::string(path) + "': only private queues (.\\private$\\NAME) exist here");
  }
  std::string_view name = rest.substr(kPrivate.size());
  if (name.empty() || name.size() > MQ_MAX_Q_NAME_LEN ||
      name.find_first_of("\\/\r\n\t") != std::string_view::npos ||
      std::any_of(name.begin(), name.end(), [](unsigned char c) { return c < 0x20; })) {
    throw Error(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
                "queue name in '" + std::string(path) +
                    "' must be 1 to 124 characters without '\\', '/' or control characters");
  }
  return {host, lower(name)};
}

bool is_local(std::string_view host, std::string_view this_machine_name, bool tcp) {
  std::string h = lower(host);
  if (h == "." || h == "localhost" || h == local_host() || h == lower(this_machine_name)) {
    return true;
  }
  // A fully qualified name of this host: compare the first label.
  auto dot = h.find('.');
  return !tcp && dot != std::string::npos && h.substr(0, dot) == local_host();
}

// Another machine's canonical name; `bad_machine_code` for a name that is not valid.
std::string remote_machine(std::string_view path, std::string_view host, long bad_machine_code) {
  const std::string machine = lower(host);
  std::string problem = security::machine_name_problem(machine);
  if (problem.empty()) {
    try {
      return transport::amqp::canonical_machine_name(machine);
    } catch (const Error& e) {
      problem = e.what();
    }
  }
  throw Error(bad_machine_code, "'" + std::string(path) + "' names machine '" + std::string(host) +
                                    "', which is not a valid machine name: " + problem);
}

// The destination of "<host>\private$\<name>"; `tcp`: the host is DIRECT=TCP's address.
// A remote machine name that is not valid throws `bad_machine_code`.
Destination classify(std::string_view path, std::string_view this_machine_name, bool tcp,
                     long bad_machine_code) {
  auto [host, queue] = split_path(path);
  Destination d;
  d.queue = std::move(queue);
  if (is_local(host, this_machine_name, tcp)) return d;
  d.machine = remote_machine(path, host, bad_machine_code);
  d.transport = Destination::Transport::Remote;
  return d;
}

constexpr std::string_view kDirectOs = "direct=os:";
constexpr std::string_view kDirectTcp = "direct=tcp:";

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  return s.size() > prefix.size() && lower(s.substr(0, prefix.size())) == prefix;
}

Destination destination_of_format_impl(std::string_view format,
                                       std::string_view this_machine_name) {
  const bool tcp = starts_with_nocase(format, kDirectTcp);
  if (!tcp && !starts_with_nocase(format, kDirectOs)) {
    throw Error(MQ_ERROR_ILLEGAL_FORMATNAME,
                "format name '" + std::string(format) +
                    "' is not supported: use DIRECT=OS:MACHINE\\private$\\NAME or "
                    "DIRECT=TCP:MACHINE\\private$\\NAME");
  }
  const std::string_view path = format.substr(tcp ? kDirectTcp.size() : kDirectOs.size());
  // The machine's system queues, "<machine>\SYSTEM$;DEADLETTER", ";DEADXACT" (dead_letter.hpp)
  // and ";JOURNAL", and a queue's journal, "<queue's format name>;JOURNAL" (journal.hpp).
  // Another machine's are Remote here, and refused by Queue::open.
  if (const auto slash = path.find('\\'); slash != std::string_view::npos && slash > 0) {
    std::string dlq = dead_letter_queue_of_suffix(path.substr(slash + 1));
    if (dlq.empty() && lower(path.substr(slash + 1)) == "system$;journal") {
      dlq = kMachineJournalName;
    }
    if (!dlq.empty()) {
      const std::string_view host = path.substr(0, slash);
      if (is_local(host, this_machine_name, tcp)) {
        return Destination{std::move(dlq), Destination::Transport::Local, ""};
      }
      return Destination{std::move(dlq), Destination::Transport::Remote,
                         remote_machine(path, host, MQ_ERROR_ILLEGAL_FORMATNAME)};
    }
  }
  constexpr std::string_view kJournal = ";journal";
  const auto ends_in_journal = [&](std::string_view f) {
    return f.size() > kJournal.size() && lower(f.substr(f.size() - kJournal.size())) == kJournal;
  };
  if (ends_in_journal(format)) {
    // One ";JOURNAL", after a queue's own name (not a subqueue's, not a system queue's, not
    // another ";JOURNAL"); checked before parsing the rest, and not recursively.
    const std::string_view queue_format = format.substr(0, format.size() - kJournal.size());
    if (ends_in_journal(queue_format)) {
      throw Error(MQ_ERROR_ILLEGAL_FORMATNAME,
                  "'" + std::string(format) + "': a journal has no journal");
    }
    Destination d = destination_of_format_impl(queue_format, this_machine_name);
    if (is_journal_queue_name(d.queue) || is_dead_letter_queue_name(d.queue)) {
      throw Error(MQ_ERROR_ILLEGAL_FORMATNAME,
                  "'" + std::string(format) + "': a system queue has no journal");
    }
    if (d.queue.find(';') != std::string::npos) {
      throw Error(MQ_ERROR_ILLEGAL_FORMATNAME,
                  "'" + std::string(format) +
                      "': a subqueue has no journal of its own (its queue's journal keeps its "
                      "messages: <queue's format name>;JOURNAL)");
    }
    d.queue = journal_queue_name(d.queue);
    return d;
  }
  try {
    return classify(path, this_machine_name, tcp, MQ_ERROR_ILLEGAL_FORMATNAME);
  } catch (const Error& e) {
    if (e.code() == MQ_ERROR_ILLEGAL_QUEUE_PATHNAME)
      throw Error(MQ_ERROR_ILLEGAL_FORMATNAME, e.what());
    throw;
  }
}

}  // namespace

const std::string& local_host() {
  static const std::string name = [] {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return std::string("localhost");
    return lower(buf);
  }();
  return name;
}

bool is_this_machine(std::string_view host) { return is_local(host, this_machine(), false); }

std::string this_machine() {
  try {
    std::string name = runtime().config().machine.name;
    if (!name.empty()) return name;
  } catch (const Error&) {
    // Unreadable configuration: the host name (the operation that needs the configuration
    // reports the error itself).
  }
  return local_host();
}

Destination destination_of_path(std::string_view path, std::string_view this_machine_name) {
  return classify(path, this_machine_name, false, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME);
}

Destination destination_of_format(std::string_view format, std::string_view this_machine_name) {
  // Longer than any format name of a valid queue (a machine name, a 124-character queue name,
  // a subqueue, ";JOURNAL"): refused before any parsing, so that a name from a message
  // (an admin or response queue chosen by its sender) costs nothing to refuse.
  constexpr size_t kMaxFormatName = 1024;
  if (format.size() > kMaxFormatName) {
    throw Error(MQ_ERROR_ILLEGAL_FORMATNAME, "format name of " + std::to_string(format.size()) +
                                                 " bytes: longer than any queue's (at most " +
                                                 std::to_string(kMaxFormatName) + ")");
  }
  return destination_of_format_impl(format, this_machine_name);
}

// The configuration is read only for a name that is not this host's.
Destination destination_of_path(std::string_view path) {
  Destination d = destination_of_path(path, local_host());
  return d.remote() ? destination_of_path(path, this_machine()) : d;
}

Destination destination_of_format(std::string_view format) {
  Destination d = destination_of_format(format, local_host());
  return d.remote() ? destination_of_format(format, this_machine()) : d;
}

std::string queue_from_path(std::string_view path) {
  auto [host, queue] = split_path(path);
  if (!is_local(host, local_host(), false)) {
    const std::string machine = this_machine();
    if (!is_local(host, machine, false)) {
      throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                  "queue '" + std::string(path) + "' is on another machine ('" + std::string(host) +
                      "'); only a queue of this machine can be named here");
    }
  }
  return queue;
}

std::string queue_from_format(std::string_view format) {
  Destination d = destination_of_format_impl(format, local_host());
  if (d.remote() && destination_of_format_impl(format, this_machine()).remote()) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "queue '" + std::string(format) + "' is on another machine ('" + d.machine +
                    "'); only a queue of this machine can be named here");
  }
  return d.queue;
}

std::string queue_part_of_format(std::string_view format) {
  constexpr std::string_view kPrivate = "\\private$\\";
  std::string_view rest;
  if (starts_with_nocase(format, kDirectOs)) {
    rest = format.substr(kDirectOs.size());
  } else if (starts_with_nocase(format, kDirectTcp)) {
    rest = format.substr(kDirectTcp.size());
  } else {
    return {};
  }
  const auto host_end = rest.find('\\');
  if (host_end == std::string_view::npos || host_end == 0) return {};
  rest = rest.substr(host_end);
  if (rest.size() <= kPrivate.size() || lower(rest.substr(0, kPrivate.size())) != kPrivate) {
    return {};
  }
  return lower(rest.substr(kPrivate.size()));
}

std::string format_name_of(std::string_view queue) {
  if (is_dead_letter_queue_name(queue)) {
    return "DIRECT=OS:" + local_host() + "\\" + dead_letter_format_suffix(queue);
  }
  if (queue == kMachineJournalName) return "DIRECT=OS:" + local_host() + "\\SYSTEM$;JOURNAL";
  if (auto of = queue_of_journal(queue)) return format_name_of(*of) + ";JOURNAL";
  return "DIRECT=OS:" + local_host() + "\\private$\\" + std::string(queue);
}

std::string format_name_of(const Destination& d) {
  if (!d.remote() || is_journal_queue_name(d.queue) || is_dead_letter_queue_name(d.queue)) {
    return format_name_of(d.queue);  // (another machine's: refused by Queue::open)
  }
  return "DIRECT=OS:" + d.machine + "\\private$\\" + d.queue;
}

MachineGuid machine_guid(std::string_view machine_utf8) {
  return name_based_guid("mqsec machine:" + std::string(machine_utf8));
}

MachineGuid name_based_guid(std::string_view name) {
  security::Bytes h = security::sha256(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(name.data()), name.size()));
  MachineGuid g{};
  g.data1 = static_cast<uint32_t>(h[0]) << 24 | static_cast<uint32_t>(h[1]) << 16 |
            static_cast<uint32_t>(h[2]) << 8 | h[3];
  g.data2 = static_cast<uint16_t>(h[4] << 8 | h[5]);
  g.data3 = static_cast<uint16_t>(((h[6] << 8 | h[7]) & 0x0FFF) | 0x5000);
  for (int i = 0; i < 8; ++i) g.data4[i] = h[8 + i];
  g.data4[0] = static_cast<uint8_t>((g.data4[0] & 0x3F) | 0x80);
  return g;
}

}  // namespace mqsec::core
