// Linked into every test program (tests/CMakeLists.txt, mqsec_test). Under AddressSanitizer and
// ThreadSanitizer only, a fork() of the test program first waits until every other thread of the
// process is asleep.
//
// Why: GCC 12's ASan runtime does not lock its own allocator around fork() (upstream compiler-rt
// added that later). A thread inside malloc or free at the fork leaves an allocator mutex locked
// in the child, and the child's first allocation of that size hangs there before any mqsec code
// runs. Seen in CI: a thread the runtime had just started (ASan's thread start frees memory) in
// Async.ForkWithReceivesPending and BatchPipeline.ForkedChildSignsWithItsOwnSigner, a busy
// writer thread in BatchWriterTest.ForkedChildNeitherHangsNorDuplicatesTheParentsMessages.
// glibc's malloc, which every real build uses, is fork-safe: nothing here is built without a
// sanitizer. GCC 12's TSan runtime is the same: its fork interceptor (__tsan::ForkBefore) locks
// the thread registry and the report lock, not its allocator, and a child of
// HandleTable.ForkWhileOtherThreadsUseTheTableNeverHangsTheChild (three threads allocating
// without a pause) hung under TSan in 2 of 40 runs; so it runs under TSan too.
//
// The handler is registered before main(), so before the runtime's own (it registers them when
// first used), and pthread_atfork runs prepare handlers in reverse order: this one runs last,
// when the runtime's handlers already hold its locks. A thread of the runtime then sleeps in a
// wait or on one of those locks, not in malloc. A thread that never sleeps (a test's busy loop)
// is given up on after a bound, and the fork goes ahead as it would without this file.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

namespace {

// The state letter of /proc/self/task/<tid>/stat: after the last ')' (the name may hold one).
char thread_state(const char* tid) {
  char path[320];  // room for any d_name (up to 255 bytes)
  std::snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 'X';  // ended since the listing
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 'X';
  buf[n] = '\0';
  const char* close_paren = std::strrchr(buf, ')');
  return close_paren != nullptr && close_paren[1] == ' ' ? close_paren[2] : '?';
}

// True when every thread but the caller is asleep (S), stopped (t, T) or gone (X, Z).
bool others_asleep() {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return true;  // no /proc: nothing to wait for
  char self[32];
  std::snprintf(self, sizeof self, "%ld", static_cast<long>(::syscall(SYS_gettid)));
  bool asleep = true;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.' || std::strcmp(e->d_name, self) == 0) continue;
    const char s = thread_state(e->d_name);
    if (s != 'S' && s != 't' && s != 'T' && s != 'X' && s != 'Z') {
      asleep = false;
      break;
    }
  }
  ::closedir(d);
  return asleep;
}

void wait_until_others_sleep() {
  using namespace std::chrono;
  const auto give_up = steady_clock::now() + seconds(2);
  // Twice in a row, a little apart: the states are read one thread after another, and a thread
  // read as asleep may have woken before the last one was read.
  int quiet = 0;
  while (quiet < 2 && steady_clock::now() < give_up) {
    quiet = others_asleep() ? quiet + 1 : 0;
    std::this_thread::sleep_for(microseconds(200));
  }
}

[[maybe_unused]] const bool registered = [] {
  ::pthread_atfork(wait_until_others_sleep, nullptr, nullptr);
  return true;
}();

}  // namespace

#endif
