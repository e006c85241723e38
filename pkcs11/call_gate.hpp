// Fork safety for Cryptoki (and OpenSSL) calls.
//
// A module's internal locks (SoftHSM's mutexes, for one) are held while a call runs. If
// another thread forks at that moment, the child inherits the lock held by a thread that does
// not exist there, and its first call into the module hangs forever. A pthread_atfork prepare
// handler therefore closes this gate and waits until no thread is inside a Cryptoki call; the
// parent and child reopen it after the fork. Every code path that calls the module holds a
// CallScope (nested scopes on one thread are free), so the fast path is two atomic operations.
#pragma once

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

#include <cstdint>
#include <mutex>
#include <new>
#include <type_traits>

namespace mqsec::pkcs11 {

class CallScope {
 public:
  CallScope();
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;
};

// Installs the gate's pthread_atfork handlers (once). Module::initialize calls it, so that they
// are registered after the first module was loaded: prepare handlers run in reverse order of
// registration, and a module's own handlers (which may take the module's locks) must run after
// the gate has waited for the calls in flight, or a thread inside a call would wait for a lock
// the forking thread holds while the forking thread waits for that call to end.
void install_fork_gate();

// For a program whose runtime has its own pthread_atfork handler that calls fork_prepare()
// first and fork_parent() / fork_child() last (libmqrt, the mqsec command): registering a fork
// lock then no longer installs the gate's handlers (the owner's handler takes the locks), so
// the gate's registration is left to the first module's initialisation, where it belongs.
void adopt_fork_handlers();

// Counts fork()s of this process lineage (incremented in the child by fork_child()).
uint64_t fork_generation() noexcept;

// For other pthread_atfork handlers that take locks a thread may want while inside a Cryptoki
// call (the store's, say): call fork_prepare() first in the prepare handler and fork_parent() /
// fork_child() last in the others, so the gate is closed before those locks are taken and
// opened after they are released, whichever handler was registered first. Calls nest.
void fork_prepare();
void fork_parent();
void fork_child();

// Leaf locks a forked child may need (handle tables, caches, the log): held only briefly and
// never while waiting for another lock or a Cryptoki call. fork_prepare() takes every
// registered lock right after closing the gate; the parent releases them and the child gets
// them fresh (`reset`): a pthread rwlock cannot be unlocked in the child, whose thread has a
// new TID. So no child inherits a lock held by a thread that does not exist there.
void register_fork_lock(void* key, void (*lock)(void*), void (*unlock)(void*),
                        void (*reset)(void*));
void unregister_fork_lock(void* key);

// For std::mutex and std::shared_mutex.
template <class Mutex>
void register_fork_mutex(Mutex& m) {
  register_fork_lock(
      &m, [](void* p) { static_cast<Mutex*>(p)->lock(); },
      [](void* p) { static_cast<Mutex*>(p)->unlock(); },
      [](void* p) {
        if constexpr (std::is_same_v<Mutex, std::mutex>) {
          // The child's only thread is the one that locked it in fork_prepare(), and a normal
          // mutex may be unlocked there; unlocking (not re-creating) also lets ThreadSanitizer
          // see it released.
          static_cast<Mutex*>(p)->unlock();
        } else {
#if defined(__SANITIZE_THREAD__)
          // ThreadSanitizer would otherwise see the write lock of fork_prepare() held for ever
          // in the child and report lock-order inversions against every later lock (a false
          // positive: the child gets a new, unlocked mutex). Tell it the lock was released;
          // nothing is unlocked for real.
          __tsan_mutex_pre_unlock(p, 0);
          __tsan_mutex_post_unlock(p, 0);
#endif
          new (p) Mutex();  // the old one is abandoned, never destroyed
        }
      });
}

}  // namespace mqsec::pkcs11
