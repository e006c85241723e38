// The Cryptoki call gate (pkcs11/call_gate.hpp): fork() waits for calls in flight, a child never
// hangs on what the parent's threads were doing at the fork, and other fork handlers that take
// locks wanted inside a call (the store's) close the gate first.
#include "pkcs11/call_gate.hpp"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace pkcs11 = mqsec::pkcs11;

namespace {

// Waits for a child for at most `limit`; a child that is still running then is killed and
// reported as hung (nullopt).
std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return status;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return std::nullopt;
    }
    std::this_thread::sleep_for(1ms);
  }
}

bool exited_zero(const std::optional<int>& status) {
  return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
}

// Forks; the child runs `body` and exits with its result (a hang ends as SIGALRM).
template <class F>
std::optional<int> fork_and_run(F body, std::chrono::milliseconds limit = 20s) {
  pid_t pid = fork();
  if (pid < 0) return std::nullopt;
  if (pid == 0) {
    alarm(30);
    _exit(body());
  }
  return wait_child(pid, limit);
}

TEST(CallGate, ForkWaitsUntilCallsInFlightHaveLeft) {
  pkcs11::install_fork_gate();
  std::atomic<bool> inside{false}, left{false}, forked{false};
  std::thread t([&] {
    {
      pkcs11::CallScope scope;
      inside = true;
      std::this_thread::sleep_for(200ms);
      left = true;
    }
    // Alive until after the fork: a finished, unjoined thread would be a leak in the child's
    // eyes (TSan reports it).
    while (!forked) std::this_thread::sleep_for(1ms);
  });
  while (!inside) std::this_thread::sleep_for(1ms);
  auto status = fork_and_run([&] { return left.load() ? 0 : 1; });
  forked = true;
  EXPECT_TRUE(left.load()) << "fork() returned in the parent while a call was still running";
  EXPECT_TRUE(exited_zero(status)) << "the child was forked in the middle of a call";
  t.join();
}

TEST(CallGate, NestedScopesOnTheForkingThreadDoNotBlockItsOwnFork) {
  pkcs11::install_fork_gate();
  // In a child process, so that a fork() that waits for its own thread is reported, not hung.
  auto status = fork_and_run([] {
    pkcs11::CallScope outer;
    pkcs11::CallScope inner;
    auto grandchild = fork_and_run([] {
      pkcs11::CallScope again;  // the child's count starts from this thread's own scopes
      return 0;
    });
    return exited_zero(grandchild) ? 0 : 1;
  });
  EXPECT_TRUE(exited_zero(status));
}

// Threads crowd the gate (entering and leaving scopes as fast as they can) while the main
// thread forks again and again: some of them are always stepping in, out or waiting at the
// moment of a fork. Each child must enter a scope and fork a grandchild of its own.
TEST(CallGate, ChildrenForkedWhileThreadsCrowdTheGateNeverHang) {
  pkcs11::install_fork_gate();
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0};
  std::vector<std::thread> crowd;
  for (int i = 0; i < 4; ++i) {
    crowd.emplace_back([&] {
      while (!stop) {
        pkcs11::CallScope scope;
        calls.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  int hung = 0, failed = 0;
  for (int i = 0; i < 200 && hung == 0; ++i) {
    auto status = fork_and_run([] {
      { pkcs11::CallScope scope; }
      pid_t grandchild = fork();
      if (grandchild < 0) return 3;
      if (grandchild == 0) {
        pkcs11::CallScope scope;
        _exit(0);
      }
      int st = 0;
      return waitpid(grandchild, &st, 0) == grandchild && WIFEXITED(st) ? WEXITSTATUS(st) : 4;
    });
    if (!status) {
      ++hung;
    } else if (!exited_zero(status)) {
      ++failed;
    }
  }
  stop = true;
  for (auto& t : crowd) t.join();
  EXPECT_EQ(hung, 0) << "a child hung at the gate";
  EXPECT_EQ(failed, 0);
  EXPECT_GT(calls.load(), 0);
}

// Another fork handler takes a lock that a thread inside a call is waiting for. Registered
// after the gate, it runs before the gate's own prepare handler; without fork_prepare() first
// it would take the lock and the gate would then wait forever for the call that needs it.
std::mutex g_store_lock;
void store_prepare() {
  pkcs11::fork_prepare();
  g_store_lock.lock();
}
void store_parent() {
  g_store_lock.unlock();
  pkcs11::fork_parent();
}
void store_child() {
  g_store_lock.unlock();
  pkcs11::fork_child();
}

TEST(CallGate, HandlersThatTakeLocksCloseTheGateFirst) {
  pkcs11::install_fork_gate();
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(store_prepare, store_parent, store_child); });
  // The scenario runs in a child process so that a hang in its fork() is reported, not hung.
  auto status = fork_and_run([] {
    std::atomic<bool> inside{false}, forked{false};
    std::thread t([&] {
      {
        pkcs11::CallScope scope;  // verifying, say
        inside = true;
        std::this_thread::sleep_for(100ms);
        std::lock_guard lock(g_store_lock);  // then looking the sender up in the store
      }
      while (!forked) std::this_thread::sleep_for(1ms);  // see ForkWaitsUntilCallsInFlightHaveLeft
    });
    while (!inside) std::this_thread::sleep_for(1ms);
    auto inner = fork_and_run([] { return 0; });
    forked = true;
    t.join();
    return exited_zero(inner) ? 0 : 1;
  });
  auto direct = fork_and_run([] {
    std::lock_guard lock(g_store_lock);  // released in the child by the handler
    return 0;
  });
  EXPECT_TRUE(exited_zero(status));
  EXPECT_TRUE(exited_zero(direct));
}

}  // namespace
