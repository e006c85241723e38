// Path and format name parsing, and the destinations they name.
#include "src/core/destination.hpp"

#include <mq.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "mqsec/error.hpp"

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

bool is_local(std::string_view host) {
  std::string h = lower(host);
  if (h == "." || h == "localhost" || h == local_host()) return true;
  // A fully qualified name of this host: compare the first label.
  auto dot = h.find('.');
  return dot != std::string::npos && h.substr(0, dot) == local_host();
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

std::string queue_from_path(std::string_view path) {
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
  if (!is_local(host)) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "queue '" + std::string(path) + "' is on another machine ('" + std::string(host) +
                    "'); mqsec's queue manager serves local queues only");
  }
  return lower(name);
}

std::string queue_from_format(std::string_view format) {
  constexpr std::string_view kDirect = "direct=os:";
  if (format.size() <= kDirect.size() || lower(format.substr(0, kDirect.size())) != kDirect) {
    throw Error(MQ_ERROR_ILLEGAL_FORMATNAME,
                "format name '" + std::string(format) +
                    "' is not supported: use DIRECT=OS:.\\private$\\NAME");
  }
  try {
    return queue_from_path(format.substr(kDirect.size()));
  } catch (const Error& e) {
    if (e.code() == MQ_ERROR_ILLEGAL_QUEUE_PATHNAME)
      throw Error(MQ_ERROR_ILLEGAL_FORMATNAME, e.what());
    throw;
  }
}

std::string queue_part_of_format(std::string_view format) {
  constexpr std::string_view kDirect = "direct=os:";
  constexpr std::string_view kPrivate = "\\private$\\";
  if (format.size() <= kDirect.size() || lower(format.substr(0, kDirect.size())) != kDirect) {
    return {};
  }
  std::string_view rest = format.substr(kDirect.size());
  const auto host_end = rest.find('\\');
  if (host_end == std::string_view::npos || host_end == 0) return {};
  rest = rest.substr(host_end);
  if (rest.size() <= kPrivate.size() || lower(rest.substr(0, kPrivate.size())) != kPrivate) {
    return {};
  }
  return lower(rest.substr(kPrivate.size()));
}

std::string format_name_of(std::string_view queue) {
  return "DIRECT=OS:" + local_host() + "\\private$\\" + std::string(queue);
}

Destination destination_of_path(std::string_view path) { return {queue_from_path(path)}; }

Destination destination_of_format(std::string_view format) { return {queue_from_format(format)}; }

}  // namespace mqsec::core
