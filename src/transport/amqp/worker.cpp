#include "transport/amqp/worker.hpp"

#include <algorithm>
#include <condition_variable>
#include <exception>

namespace mqsec::transport::amqp::detail {

void pause(std::chrono::milliseconds d, std::stop_token stop) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_for(lock, stop, d, [] { return false; });
}

void run_with_backoff(std::stop_token stop, std::chrono::milliseconds backoff_min,
                      std::chrono::milliseconds backoff_max,
                      const std::function<void(std::string_view)>& log, std::string_view who,
                      const std::function<bool()>& attempt, const std::function<void()>& idle) {
  auto backoff = backoff_min;
  while (!stop.stop_requested()) {
    try {
      const bool nothing_to_do = attempt();
      backoff = backoff_min;
      if (nothing_to_do && idle) idle();
    } catch (const std::exception& e) {
      if (log) {
        log(std::string(who) + ": " + e.what() + "; retrying in " +
            std::to_string(backoff.count()) + " ms");
      }
      pause(backoff, stop);
      backoff = std::min(backoff * 2, backoff_max);
    }
  }
}

}  // namespace mqsec::transport::amqp::detail
