// The Cryptoki call gate (see call_gate.hpp).
//
// Only atomics, no mutex or condition variable: whatever a thread of the parent was doing with
// a lock at the moment of fork() would be frozen into the child (a mutex held by a thread that
// does not exist there, a condition variable with phantom waiters), and the child's handler
// would hang on it. The gate is closed only while a fork is being prepared, which is rare and
// short, so the threads that meet it closed simply poll.
#include "pkcs11/call_gate.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace mqsec::pkcs11 {
namespace {

std::atomic<int> g_inflight{0};  // threads inside a Cryptoki call (outermost scopes)
std::atomic<bool> g_closing{false};
thread_local int t_depth = 0;  // this thread's nesting of CallScopes

constexpr auto kPoll = std::chrono::microseconds(50);

// pthread_atfork prepare: close the gate and wait until no other thread is inside a call.
// The forking thread itself may be inside one (it then counts itself once).
void close_gate() {
  g_closing.store(true);
  const int own = t_depth > 0 ? 1 : 0;
  while (g_inflight.load() != own) std::this_thread::sleep_for(kPoll);
}

void open_gate_parent() { g_closing.store(false); }

// In the child only the forking thread exists: threads of the parent that were stepping in or
// out of the gate at the fork left their increments behind, so the count is set afresh.
void open_gate_child() {
  g_inflight.store(t_depth > 0 ? 1 : 0);
  g_closing.store(false);
}

}  // namespace

CallScope::CallScope() {
  if (t_depth++ > 0) return;  // already inside a call on this thread
  for (;;) {
    g_inflight.fetch_add(1);
    if (!g_closing.load()) return;
    // A fork is being prepared: step back out and wait until it is done.
    g_inflight.fetch_sub(1);
    while (g_closing.load()) std::this_thread::sleep_for(kPoll);
  }
}

CallScope::~CallScope() {
  if (--t_depth > 0) return;
  g_inflight.fetch_sub(1);
}

namespace {

// glibc runs all fork handlers under one lock, so forks do not overlap and a plain count of
// the handlers that asked for the gate is enough.
std::atomic<int> g_holders{0};
std::atomic<uint64_t> g_forks{0};  // fork_generation()
std::atomic<bool> g_owned{false};  // adopt_fork_handlers() was called

struct ForkLock {
  void* key;
  void (*lock)(void*);
  void (*unlock)(void*);
  void (*reset)(void*);
};
// Held by the forking thread from prepare to parent/child, like the locks it lists.
std::mutex g_fork_locks_mu;
std::vector<ForkLock>& fork_locks() {
  static auto* v = new std::vector<ForkLock>();  // immortal: used by fork handlers until exit
  return *v;
}
// Registrations not yet in fork_locks(): a list pushed with one atomic compare-and-swap and
// taken whole with one exchange, so no lock is held while registering. Code that registers a
// lock while holding a registered one (a Token made under the token registry's mutex) then
// cannot deadlock against a fork, which takes the registered locks while holding
// g_fork_locks_mu; and a child forked during a registration inherits the list either before
// or after it, never half-updated (a node allocated but not yet pushed is only leaked there).
struct PendingForkLock {
  ForkLock lock;
  PendingForkLock* next;
};
std::atomic<PendingForkLock*> g_pending{nullptr};
void adopt_pending_locked() {  // under g_fork_locks_mu
  PendingForkLock* n = g_pending.exchange(nullptr, std::memory_order_acq_rel);
  std::vector<ForkLock> newest_first;
  while (n != nullptr) {
    newest_first.push_back(n->lock);
    delete std::exchange(n, n->next);
  }
  // In registration order, as the locks were taken before the list existed.
  fork_locks().insert(fork_locks().end(), newest_first.rbegin(), newest_first.rend());
}

void take_fork_locks() {
  g_fork_locks_mu.lock();
  adopt_pending_locked();
  for (const auto& l : fork_locks()) l.lock(l.key);
}
void release_fork_locks(bool child) {
  auto& v = fork_locks();
  for (auto it = v.rbegin(); it != v.rend(); ++it) (child ? it->reset : it->unlock)(it->key);
  if (child) {
    new (&g_fork_locks_mu) std::mutex();
  } else {
    g_fork_locks_mu.unlock();
  }
}

}  // namespace

void register_fork_lock(void* key, void (*lock)(void*), void (*unlock)(void*),
                        void (*reset)(void*)) {
  if (!g_owned.load()) install_fork_gate();  // else the owner's handler calls fork_prepare()
  auto* n =
      new PendingForkLock{{key, lock, unlock, reset}, g_pending.load(std::memory_order_relaxed)};
  while (!g_pending.compare_exchange_weak(n->next, n, std::memory_order_release,
                                          std::memory_order_relaxed)) {
  }
}

void unregister_fork_lock(void* key) {
  std::lock_guard guard(g_fork_locks_mu);  // waits for a fork in progress to finish
  adopt_pending_locked();
  auto& v = fork_locks();
  v.erase(std::remove_if(v.begin(), v.end(), [key](const ForkLock& l) { return l.key == key; }),
          v.end());
}

void fork_prepare() {
  if (g_holders.fetch_add(1) == 0) {
    close_gate();
    take_fork_locks();
  }
}
void fork_parent() {
  if (g_holders.fetch_sub(1) == 1) {
    release_fork_locks(false);
    open_gate_parent();
  }
}
void fork_child() {
  if (g_holders.fetch_sub(1) == 1) {
    g_forks.fetch_add(1, std::memory_order_acq_rel);
    release_fork_locks(true);
    open_gate_child();
  }
}

uint64_t fork_generation() noexcept { return g_forks.load(std::memory_order_acquire); }

void install_fork_gate() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(fork_prepare, fork_parent, fork_child); });
}

void adopt_fork_handlers() { g_owned.store(true); }

}  // namespace mqsec::pkcs11
