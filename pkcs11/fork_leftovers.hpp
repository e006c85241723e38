// What a forked child abandons on purpose: the parent's thread objects and the condition
// variables its threads waited on exist in the child's memory, but using or destroying them
// there could block or touch state only the parent's threads had. They are kept here,
// reachable for the life of the process and never freed, so that LeakSanitizer (which checks
// at exit) does not report them as leaks: nothing else of ours may leak.
#pragma once

#include <vector>

namespace mqsec::pkcs11 {

// Keeps p for ever. Called in a forked child (one thread), before it starts anything afresh.
inline void abandon_after_fork(const void* p) noexcept {
  static auto* const kept = new std::vector<const void*>();
  try {
    kept->push_back(p);
  } catch (...) {
    // out of memory in a fresh child: the pointer is lost, which is only a report at exit
  }
}

}  // namespace mqsec::pkcs11
