#include "src/core/async_receive.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <system_error>

#include "src/core/hresult.hpp"
#include "pkcs11/fork_leftovers.hpp"
#include "src/core/runtime.hpp"

namespace mqsec::core {

AsyncReceives::AsyncReceives() : cv_(new std::condition_variable), pid_(::getpid()) {
  pkcs11::register_fork_mutex(mu_);
}

void AsyncReceives::adopt_after_fork() {
  const pid_t now = ::getpid();
  if (now == pid_) return;
  // A forked child: its parent's receive threads are not here, and a condition variable
  // whose waiters were the parent's threads could block a broadcast for ever. Both are
  // abandoned (kept, never freed) and the child starts afresh.
  pkcs11::abandon_after_fork(new std::list<std::shared_ptr<Op>>(std::move(ops_)));
  ops_.clear();
  pkcs11::abandon_after_fork(cv_);
  cv_ = new std::condition_variable;
  pid_ = now;
}

void AsyncReceives::start(const std::shared_ptr<Queue>& queue, Work w) {
  auto op = std::make_shared<Op>();
  op->queue = queue.get();
  {
    std::lock_guard lock(mu_);
    adopt_after_fork();
    if (exiting_) throw Error(MQ_ERROR_OPERATION_CANCELLED, "the process is exiting");
    if (ops_.size() >= kMaxPendingReceives) {
      throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES,
                  "too many pending asynchronous receives (at most " +
                      std::to_string(kMaxPendingReceives) + ")");
    }
    ops_.push_back(op);
  }
  static std::once_flag at_exit;
  std::call_once(at_exit,
                 [] { std::atexit([] { runtime().async_receives().stop_all(kAsyncExitBound); }); });
  try {
    std::thread(&AsyncReceives::run, this, op, std::move(w)).detach();
  } catch (const std::system_error& e) {
    std::lock_guard lock(mu_);
    ops_.remove(op);
    throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES,
                std::string("cannot start a thread for an asynchronous receive: ") + e.what());
  }
}

void AsyncReceives::run(std::shared_ptr<Op> op, Work w) {
  {
    std::lock_guard lock(mu_);
    op->thread = std::this_thread::get_id();
  }
  const HRESULT hr =
      hresult_of("asynchronous receive", [&] { return w.receive(op->stop.get_token()); });
  bool exiting = false;
  {
    std::lock_guard lock(mu_);
    exiting = exiting_;
  }
  if (!exiting) w.release(hr);
  {
    std::lock_guard lock(mu_);
    op->released = true;
    exiting = exiting_;
    cv_->notify_all();
  }
  if (!exiting) {
    try {
      w.notify(hr);
    } catch (...) {  // an exception out of a C callback: not ours to end the process for
      log(LogLevel::Error, "an asynchronous receive's callback threw an exception");
    }
  }
  w = Work{};  // the queue and cursor references go before the operation does
  std::lock_guard lock(mu_);
  ops_.remove(op);
  cv_->notify_all();
}

void AsyncReceives::cancel(const Queue* queue) {
  std::unique_lock lock(mu_);
  adopt_after_fork();
  for (auto& op : ops_) {
    if (op->queue == queue) op->stop.request_stop();
  }
  const auto me = std::this_thread::get_id();
  cv_->wait(lock, [&] {
    return std::none_of(ops_.begin(), ops_.end(), [&](const std::shared_ptr<Op>& op) {
      return op->queue == queue && !op->released && op->thread != me;
    });
  });
}

void AsyncReceives::set(Event& e) {
  std::lock_guard lock(mu_);
  adopt_after_fork();
  e.signalled = true;
  cv_->notify_all();
}

void AsyncReceives::reset(Event& e) {
  std::lock_guard lock(mu_);
  e.signalled = false;
}

bool AsyncReceives::wait(Event& e, std::optional<std::chrono::milliseconds> timeout) {
  std::unique_lock lock(mu_);
  adopt_after_fork();
  auto signalled = [&] { return e.signalled; };
  if (!timeout) {
    cv_->wait(lock, signalled);
  } else if (!cv_->wait_for(lock, *timeout, signalled)) {
    return false;
  }
  if (!e.manual_reset) e.signalled = false;
  return true;
}

void AsyncReceives::stop_all(std::chrono::milliseconds bound) noexcept {
  try {
    std::unique_lock lock(mu_);
    adopt_after_fork();
    exiting_ = true;
    for (auto& op : ops_) op->stop.request_stop();
    const auto me = std::this_thread::get_id();
    cv_->wait_for(lock, bound, [&] {
      return std::all_of(ops_.begin(), ops_.end(),
                         [&](const std::shared_ptr<Op>& op) { return op->thread == me; });
    });
  } catch (...) {
  }
}

}  // namespace mqsec::core
