// The Cryptoki call gate (see call_gate.hpp).
#include "pkcs11/call_gate.hpp"

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace mqsec::pkcs11 {
namespace {

std::atomic<int> g_inflight{0};
std::atomic<bool> g_closing{false};
std::mutex g_mu;
std::condition_variable g_cv;
thread_local int t_depth = 0;

void close_gate() {
  g_closing.store(true);
  std::unique_lock lock(g_mu);
  g_cv.wait(lock, [] { return g_inflight.load() == 0; });
}

void open_gate() {
  {
    std::lock_guard lock(g_mu);
    g_closing.store(false);
  }
  g_cv.notify_all();
}

}  // namespace

CallScope::CallScope() {
  if (t_depth++ > 0) return;  // already inside a call on this thread
  for (;;) {
    g_inflight.fetch_add(1);
    if (!g_closing.load()) return;
    // A fork is being prepared: step back out and wait until it is done.
    if (g_inflight.fetch_sub(1) == 1) {
      std::lock_guard lock(g_mu);
      g_cv.notify_all();
    }
    std::unique_lock lock(g_mu);
    g_cv.wait(lock, [] { return !g_closing.load(); });
  }
}

CallScope::~CallScope() {
  if (--t_depth > 0) return;
  if (g_inflight.fetch_sub(1) == 1 && g_closing.load()) {
    std::lock_guard lock(g_mu);
    g_cv.notify_all();
  }
}

void install_fork_gate() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(close_gate, open_gate, open_gate); });
}

}  // namespace mqsec::pkcs11
