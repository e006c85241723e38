// Verifying the next claimed messages on another thread (verify_ahead.hpp).
#include "src/core/verify_ahead.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "pkcs11/call_gate.hpp"
#include "pkcs11/fork_leftovers.hpp"
#include "src/core/runtime.hpp"
#include "src/transport/local/real_ids.hpp"

namespace mqsec::core {
namespace {

unsigned usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

VerifyAhead::Mode mode_from_environment() {
  const char* v = std::getenv("MQSEC_VERIFY_AHEAD");
  if (v == nullptr) return VerifyAhead::Mode::Auto;
  if (std::strcmp(v, "0") == 0) return VerifyAhead::Mode::Off;
  if (std::strcmp(v, "1") == 0) return VerifyAhead::Mode::On;
  return VerifyAhead::Mode::Auto;
}

}  // namespace

VerifyAhead::VerifyAhead()
    : mode_(mode_from_environment()),
      cpus_(usable_cpus()),
      pid_(::getpid()),
      work_cv_(new std::condition_variable),
      done_cv_(new std::condition_variable) {
  pkcs11::register_fork_mutex(mu_);
}

bool VerifyAhead::wanted() const noexcept {
  switch (mode_.load()) {
    case Mode::Off:
      return false;
    case Mode::On:
      return true;
    case Mode::Auto:
      break;
  }
  // receivers_ counts the caller: one receiving thread on two CPUs leaves one idle.
  return static_cast<unsigned>(receivers_.load()) < cpus_;
}

void VerifyAhead::adopt_after_fork() {
  const pid_t now = ::getpid();
  if (now == pid_) return;
  // A forked child: the parent's worker is not here, and its condition variables had the
  // parent's threads as waiters. They, and the entries (the parent's worker may hold one on
  // its stack), are abandoned (kept, never freed); the child starts afresh.
  if (thread_ != nullptr) pkcs11::abandon_after_fork(thread_);
  thread_ = nullptr;
  pkcs11::abandon_after_fork(work_cv_);
  pkcs11::abandon_after_fork(done_cv_);
  work_cv_ = new std::condition_variable;
  done_cv_ = new std::condition_variable;
  pkcs11::abandon_after_fork(new Entries(std::move(entries_)));
  pkcs11::abandon_after_fork(new std::deque<std::shared_ptr<Entry>>(std::move(jobs_)));
  entries_.clear();
  jobs_.clear();
  running_ = false;
  stopping_ = false;
  pid_ = now;
}

std::vector<int64_t> VerifyAhead::known(const std::string& key) {
  std::vector<int64_t> out;
  std::lock_guard lock(mu_);
  adopt_after_fork();
  for (auto it = entries_.lower_bound({key, INT64_MIN});
       it != entries_.end() && it->first.first == key; ++it) {
    out.push_back(it->first.second);
  }
  return out;
}

VerifyAhead::Entries::iterator VerifyAhead::drop_locked(Entries::iterator it) {
  Entry& e = *it->second;
  switch (e.state) {
    case State::Queued:
      e.state = State::Withdrawn;
      ++counters_.withdrawn;
      break;
    case State::Running:
      e.dropped = true;  // the worker discards the result when it is done
      break;
    case State::Done:
      if (e.result) ++counters_.discarded;
      break;
    case State::Withdrawn:
      break;
  }
  return entries_.erase(it);
}

void VerifyAhead::schedule(const std::string& key, const std::shared_ptr<const QueuePolicy>& policy,
                           const std::string& queue,
                           std::vector<transport::StoredMessage> next) noexcept {
  try {
    std::lock_guard lock(mu_);
    adopt_after_fork();
    if (stopping_) return;
    // What is no longer among the next claimed messages goes: delivered by another thread,
    // unclaimed and claimed again in another order, purged, released or lost.
    for (auto it = entries_.lower_bound({key, INT64_MIN});
         it != entries_.end() && it->first.first == key;) {
      const int64_t seq = it->first.second;
      const bool ahead =
          std::any_of(next.begin(), next.end(),
                      [seq](const transport::StoredMessage& m) { return m.seq == seq; });
      if (ahead || it->second->state == State::Running) {
        ++it;
      } else {
        it = drop_locked(it);
      }
    }
    bool added = false;
    for (transport::StoredMessage& m : next) {
      if (m.envelope.empty() || entries_.count({key, m.seq}) != 0) continue;
      auto e = std::make_shared<Entry>();
      e->key = key;
      e->seq = m.seq;
      e->policy = policy;
      e->queue = queue;
      e->priority = m.priority;
      e->bytes = std::move(m.envelope);
      entries_.emplace(Key{key, m.seq}, e);
      jobs_.push_back(std::move(e));
      added = true;
    }
    if (!added) return;
    if (!running_) start_locked();
    work_cv_->notify_one();
  } catch (...) {
    // Nothing started: what was scheduled is withdrawn by the receive and verified inline.
  }
}

void VerifyAhead::start_locked() {
  static std::once_flag at_exit;
  std::call_once(at_exit, [] { std::atexit([] { runtime().verify_ahead().stop(); }); });
  thread_ = new std::thread(&VerifyAhead::run, this);
  running_ = true;
}

void VerifyAhead::run() {
  // A new thread inherits its creator's credentials; the worker reads the store (registry
  // lookups) as the process's user, as the store's writer threads do.
  transport::local::RealFsIds::adopt_for_this_thread();
  pthread_setname_np(pthread_self(), "mqsec-verify");  // for ps, top and perf
  std::unique_lock lock(mu_);
  for (;;) {
    while (!stopping_ && jobs_.empty()) work_cv_->wait(lock);
    if (stopping_) break;
    std::shared_ptr<Entry> e = std::move(jobs_.front());
    jobs_.pop_front();
    if (e->state != State::Queued) continue;  // withdrawn: verified inline instead
    e->state = State::Running;
    const std::function<void()> before = before_verify_;
    lock.unlock();
    std::optional<Checked> r;
    try {
      if (before) before();
      r = check_message(*e->policy, e->queue, e->priority, e->bytes, {});
    } catch (...) {
      // The receive verifies inline and meets the same error there, on its own thread.
    }
    lock.lock();
    e->result = std::move(r);
    e->done_at = std::chrono::steady_clock::now();
    e->state = State::Done;
    if (e->result) ++counters_.ahead;
    if (e->dropped) {
      if (e->result) ++counters_.discarded;
      e->result.reset();
    }
    done_cv_->notify_all();
  }
  running_ = false;
  done_cv_->notify_all();
}

std::optional<Checked> VerifyAhead::take(const std::string& key, const QueuePolicy* policy,
                                         const transport::StoredMessage& m) {
  std::unique_lock lock(mu_);
  adopt_after_fork();
  auto it = entries_.find({key, m.seq});
  if (it == entries_.end()) {
    ++counters_.inline_;
    return std::nullopt;
  }
  std::shared_ptr<Entry> e = it->second;
  if (e->state == State::Queued || e->state == State::Withdrawn) {
    // Nobody started it: this thread verifies it, as it would without the worker.
    if (e->state == State::Queued) ++counters_.withdrawn;
    e->state = State::Withdrawn;
    entries_.erase(it);
    ++counters_.inline_;
    return std::nullopt;
  }
  if (e->state == State::Running) {
    ++counters_.waited;
    done_cv_->wait(lock, [&] { return e->state == State::Done; });
    if (e->dropped) {  // its handle was closed meanwhile (forget)
      ++counters_.inline_;
      return std::nullopt;
    }
  }
  entries_.erase({key, m.seq});
  const bool same = e->result && e->policy.get() == policy && e->priority == m.priority &&
                    e->bytes == m.envelope &&
                    std::chrono::steady_clock::now() - e->done_at < max_age_;
  if (!same) {
    ++counters_.inline_;
    ++counters_.stale;
    if (e->result) ++counters_.discarded;
    return std::nullopt;
  }
  ++counters_.used;
  return std::move(e->result);
}

void VerifyAhead::forget(const std::string& key, const QueuePolicy* policy) noexcept {
  std::lock_guard lock(mu_);
  adopt_after_fork();
  for (auto it = entries_.lower_bound({key, INT64_MIN});
       it != entries_.end() && it->first.first == key;) {
    if (it->second->policy.get() == policy) {
      it = drop_locked(it);
    } else {
      ++it;
    }
  }
}

void VerifyAhead::invalidate() noexcept {
  std::lock_guard lock(mu_);
  adopt_after_fork();
  for (auto it = entries_.begin(); it != entries_.end();) it = drop_locked(it);
}

VerifyAhead::Counters VerifyAhead::counters() {
  std::lock_guard lock(mu_);
  return counters_;
}

void VerifyAhead::set_max_age(std::chrono::milliseconds age) {
  std::lock_guard lock(mu_);
  max_age_ = age;
}

std::chrono::milliseconds VerifyAhead::max_age() {
  std::lock_guard lock(mu_);
  return max_age_;
}

void VerifyAhead::set_before_verify(std::function<void()> f) {
  std::lock_guard lock(mu_);
  before_verify_ = std::move(f);
}

void VerifyAhead::stop() noexcept {
  std::thread* t = nullptr;
  {
    std::unique_lock lock(mu_);
    adopt_after_fork();
    stopping_ = true;
    for (const std::shared_ptr<Entry>& j : jobs_) {
      if (j->state == State::Queued) {
        j->state = State::Withdrawn;
        ++counters_.withdrawn;
      }
    }
    jobs_.clear();
    work_cv_->notify_all();
    done_cv_->wait(lock, [&] { return !running_; });
    t = std::exchange(thread_, nullptr);
  }
  if (t != nullptr) {
    t->join();
    delete t;
  }
}

}  // namespace mqsec::core
