// What the Forwarder and the consumers (Inbound, ReadService) share: their status counters under
// a mutex, the run loop that retries failed attempts with bounded exponential backoff, and the
// consumers' receive round. Internal to the AMQP transport.
#pragma once

#include <mq.h>
#include <mqsec/error.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>

#include "transport/amqp/connection.hpp"
#include "transport/amqp/settings.hpp"

namespace mqsec::transport::amqp::detail {

// Sleeps for `d` or until a stop is requested.
void pause(std::chrono::milliseconds d, std::stop_token stop);

// Calls attempt() until `stop` is requested; when it returns true (nothing to do), then idle()
// (if given). After an exception: "<who>: <what>; retrying in <n> ms" to `log` (if set), a pause
// (cut short by a stop), and the backoff doubled up to `backoff_max`; a successful attempt
// resets it to `backoff_min`.
void run_with_backoff(std::stop_token stop, std::chrono::milliseconds backoff_min,
                      std::chrono::milliseconds backoff_max,
                      const std::function<void(std::string_view)>& log, std::string_view who,
                      const std::function<bool()>& attempt, const std::function<void()>& idle = {});

// The fields both statuses have (ForwarderStatus, InboundStatus): a failed attempt.
template <class Status>
void note_failure(std::mutex& m, Status& s, HRESULT code, const std::string& text, bool connected) {
  std::lock_guard lock(m);
  s.failures++;
  s.last_error = code;
  s.last_error_text = text;
  s.connected = connected;
}

// A connection made (connected) or given up (not connected).
template <class Status>
void note_connected(std::mutex& m, Status& s, bool connected) {
  std::lock_guard lock(m);
  s.connected = connected;
  if (connected) s.connects++;
}

// One round of a consumer: (re)connects and opens the receiver on `address` when `connection` is
// missing or has failed, then hands each delivery to handle() until `timeout` has passed or
// none arrives within a `poll` slice. Returns how many it handled. A failure drops the
// connection, is noted in the status, and is rethrown (run_with_backoff retries).
template <class Status, class Handle>
size_t consume_once(std::unique_ptr<Connection>& connection, const BrokerSettings& settings,
                    const std::string& address, uint32_t credit, std::chrono::milliseconds poll,
                    std::chrono::milliseconds timeout, std::mutex& status_mutex, Status& status,
                    Handle&& handle) {
  if (!connection || !connection->ok()) {
    connection.reset();
    try {
      auto c = std::make_unique<Connection>(settings);
      c->open_receiver(address, credit);
      connection = std::move(c);
    } catch (const Error& e) {
      note_failure(status_mutex, status, e.code(), e.what(), false);
      throw;
    }
    note_connected(status_mutex, status, true);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t handled = 0;
  try {
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) break;
      const auto slice =
          std::min(poll, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
      auto d = connection->receive(slice);
      if (!d) break;
      handle(*d);
      ++handled;
    }
  } catch (const Error& e) {
    connection.reset();
    note_failure(status_mutex, status, e.code(), e.what(), false);
    throw;
  }
  return handled;
}

}  // namespace mqsec::transport::amqp::detail
