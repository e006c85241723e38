// What the Forwarder and the Inbound consumer share: their status counters under a mutex, and
// the run loop that retries failed attempts with bounded exponential backoff. Internal to the
// AMQP transport.
#pragma once

#include <mq.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>

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

}  // namespace mqsec::transport::amqp::detail
