#include "src/core/locate.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

#include <mq.h>

#include "mqsec/error.hpp"

#include "src/core/admin.hpp"

namespace mqsec::core {

MachineGuid queue_instance_guid(std::string_view machine_utf8, int64_t queue_id) {
  return name_based_guid("mqsec queue:" + std::string(machine_utf8) + ":" +
                         std::to_string(queue_id));
}

std::optional<transport::QueueInfo> find_queue_by_instance(const std::filesystem::path& store_dir,
                                                           const MachineGuid& guid) {
  const std::string machine = this_machine();
  // Only application queues have a PUBLIC= name (MQLocate lists the same ones): not outgoing
  // queues, journals, dead-letter queues or subqueues.
  for (transport::QueueInfo& q : application_queues(store_dir)) {
    const MachineGuid g = queue_instance_guid(machine, q.id);
    if (std::memcmp(&g, &guid, sizeof g) == 0) return std::move(q);
  }
  return std::nullopt;
}

}  // namespace mqsec::core

namespace mqsec::core {

std::string public_format_name(const MachineGuid& g) {
  char text[64];
  std::snprintf(text, sizeof text, "PUBLIC=%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                g.data1, g.data2, g.data3, g.data4[0], g.data4[1], g.data4[2], g.data4[3],
                g.data4[4], g.data4[5], g.data4[6], g.data4[7]);
  return text;
}

bool is_public_format(std::string_view format) {
  constexpr std::string_view kPublic = "public=";
  if (format.size() < kPublic.size()) return false;
  for (size_t i = 0; i < kPublic.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(format[i])) != kPublic[i]) return false;
  }
  return true;
}

MachineGuid guid_of_public_format(std::string_view format) {
  auto bad = [&] {
    return Error(MQ_ERROR_ILLEGAL_FORMATNAME,
                 "format name '" + std::string(format) + "' is not PUBLIC=<GUID>");
  };
  if (!is_public_format(format)) throw bad();
  std::string_view s = format.substr(7);
  if (s.size() == 38 && s.front() == '{' && s.back() == '}') s = s.substr(1, 36);
  if (s.size() != 36) throw bad();
  uint8_t b[16];
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') throw bad();
      ++i;
      continue;
    }
    auto hex = [&](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      throw bad();
    };
    b[n++] = static_cast<uint8_t>(hex(s[i]) << 4 | hex(s[i + 1]));
    i += 2;
  }
  MachineGuid g{};
  g.data1 = static_cast<uint32_t>(b[0]) << 24 | static_cast<uint32_t>(b[1]) << 16 |
            static_cast<uint32_t>(b[2]) << 8 | b[3];
  g.data2 = static_cast<uint16_t>(b[4] << 8 | b[5]);
  g.data3 = static_cast<uint16_t>(b[6] << 8 | b[7]);
  for (int i = 0; i < 8; ++i) g.data4[i] = b[8 + i];
  return g;
}

bool is_public_path(std::string_view path) {
  const size_t slash = path.find('\\');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == path.size()) return false;
  const std::string_view host = path.substr(0, slash);
  const std::string_view name = path.substr(slash + 1);
  const bool host_ok = std::all_of(host.begin(), host.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_';
  });
  return host_ok && name.size() <= MQ_MAX_Q_NAME_LEN &&
         name.find_first_of("\\/$") == std::string_view::npos &&
         std::none_of(name.begin(), name.end(), [](unsigned char c) { return c < 0x20; });
}

Destination destination_of_any_format(std::string_view format,
                                      const std::filesystem::path& store_dir) {
  if (!is_public_format(format)) return destination_of_format(format);
  const auto q = find_queue_by_instance(store_dir, guid_of_public_format(format));
  if (!q) {
    throw Error(MQ_ERROR_QUEUE_NOT_FOUND,
                "no queue of this machine has the GUID of '" + std::string(format.substr(0, 64)) +
                    "' (PUBLIC= names only this machine's queues: there is no directory)");
  }
  return destination_of_format(format_name_of(q->name));
}

}  // namespace mqsec::core
