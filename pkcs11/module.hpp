// A loaded and initialised PKCS#11 module (a Cryptoki library).
//
// Modules are process-wide: Cryptoki allows one C_Initialize per library per process, so
// load() returns the same Module for the same file and it stays loaded until exit. We
// never call C_Finalize on a loaded module at exit: several modules (SoftHSM among them)
// misbehave when finalised from static destructors, and the OS reclaims everything anyway.
#pragma once

#include "pkcs11/cryptoki.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace mqsec::pkcs11 {

// Counts fork()s of this process lineage (incremented in the child by a pthread_atfork handler).
uint64_t fork_generation() noexcept;

class Module {
 public:
  // Loads the library at `path` (dlopen), gets its function list and calls C_Initialize with
  // CKF_OS_LOCKING_OK (CKR_CRYPTOKI_ALREADY_INITIALIZED is accepted: another part of the
  // process initialised it). Throws pkcs11::Error when the file cannot be loaded, has no
  // C_GetFunctionList, or C_Initialize fails.
  static std::shared_ptr<Module> load(const std::string& path);
  // Loads a module by its p11-kit registry name (e.g. "softhsm2", the name of its
  // .module file). Throws pkcs11::Error when p11-kit knows no such module.
  static std::shared_ptr<Module> load_by_name(const std::string& name);
  // Wraps a function list that is already in memory (tests' mock module). Initialises it;
  // the destructor finalises it if this object initialised it.
  static std::shared_ptr<Module> from_function_list(CK_FUNCTION_LIST* list, std::string name);

  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CK_FUNCTION_LIST* fn() const noexcept { return list_; }
  // After fork() the child must call C_Initialize again before using the module (PKCS#11
  // v2.40, 6.6.1). A pthread_atfork handler only counts forks; the first use in the child
  // re-initialises here. Returns true when it did (all sessions of the parent are void).
  bool reinitialize_after_fork();
  const std::string& path() const noexcept { return path_; }
  CK_INFO info() const;

 private:
  Module(CK_FUNCTION_LIST* list, std::string path, void* dl, bool owned);
  void initialize();

  CK_FUNCTION_LIST* list_;
  std::string path_;
  void* dl_;
  bool owned_;  // finalise in the destructor (only for from_function_list)
  bool initialized_by_us_ = false;
  uint64_t fork_seen_ = 0;
  std::mutex init_mu_;  // fork_generation() when last initialised
};

}  // namespace mqsec::pkcs11
