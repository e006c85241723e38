// Text that came from another machine (queue names, machine names, reasons in a remote reply),
// made safe to put in a log line or an error message: at most `max` bytes, every byte outside
// printable ASCII replaced by '?', "..." when cut.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mqsec::transport {

inline std::string printable(std::string_view s, std::size_t max = 64) {
  std::string out;
  for (char c : s.substr(0, max)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace mqsec::transport
