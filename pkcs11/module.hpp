// A loaded and initialised PKCS#11 module (a Cryptoki library).
//
// Modules are process-wide: Cryptoki allows one C_Initialize per library per process, so
// load() returns the same Module for the same file and it stays loaded until exit. We
// never call C_Finalize on a loaded module at exit: several modules (SoftHSM among them)
// misbehave when finalised from static destructors, and the OS reclaims everything anyway.
#pragma once

#include "pkcs11/call_gate.hpp"
#include "pkcs11/cryptoki.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace mqsec::pkcs11 {

// fork_generation() (pkcs11/call_gate.hpp) counts fork()s of this process lineage.

// What a module named by an untrusted party (a user's profile) must satisfy to be loaded: it is
// registered with p11-kit by a system module config (registered_modules()) or its canonical
// path is one of `allowed`; and the file and every directory above it are root-owned and not
// writable by group or others (a root-owned sticky directory such as /tmp is acceptable).
struct ModulePolicy {
  std::vector<std::string> allowed;  // absolute paths; symlinks are resolved before comparing
  // Appended to a refusal: how an administrator allows a module (the caller's configuration).
  std::string how_to_allow;
};

// A module registered with p11-kit: a `module:` line of a *.module file in the system's module
// config directories (/usr/share/p11-kit/modules, then /etc/pkcs11/modules, which overrides a
// file of the same name). Never a user's ~/.config/pkcs11: that is theirs to write.
struct RegisteredModule {
  std::string name;    // the file name without ".module" (p11-kit's module name)
  std::string path;    // `module:` resolved against p11kit_module_dir() when relative
  std::string config;  // the .module file it came from
};
// Reads the module configs without loading any module. Config files that are not root-owned
// regular files, or are writable by group or others, are ignored.
std::vector<RegisteredModule> registered_modules(const std::vector<std::string>& config_dirs = {
                                                     "/usr/share/p11-kit/modules",
                                                     "/etc/pkcs11/modules"});
// p11-kit's module directory (`pkg-config --variable=p11_module_path p11-kit-1`): relative
// `module:` names resolve against it.
std::string p11kit_module_dir();
// Throws pkcs11::Error saying why unless `real_path` (already canonical) is a regular file owned
// by root and not writable by group or others, below directories that are root-owned and not
// writable by group or others unless sticky.
void check_root_controlled(const std::string& real_path);

class Module {
 public:
  // Loads the library at `path` (dlopen), gets its function list and calls C_Initialize with
  // CKF_OS_LOCKING_OK (CKR_CRYPTOKI_ALREADY_INITIALIZED is accepted: another part of the
  // process initialised it). Throws pkcs11::Error when the file cannot be loaded, has no
  // C_GetFunctionList, or C_Initialize fails.
  static std::shared_ptr<Module> load(const std::string& path);
  // Loads a module by its p11-kit registry name (e.g. "softhsm2", the name of its
  // .module file). Throws pkcs11::Error when p11-kit knows no such module.
  // The registry is read from the module config files (registered_modules()); nothing is
  // loaded to look the name up.
  static std::shared_ptr<Module> load_by_name(const std::string& name);
  // The same for a module named by an untrusted party (a user's profile): loads `path` only if
  // `policy` allows it (see ModulePolicy), else throws pkcs11::Error saying why and what to do,
  // and nothing is loaded. dlopen()s the canonical path that was checked.
  static std::shared_ptr<Module> load_restricted(const std::string& path,
                                                 const ModulePolicy& policy);
  static std::shared_ptr<Module> load_restricted_by_name(const std::string& name,
                                                         const ModulePolicy& policy);
  // Wraps a function list that is already in memory (tests' mock module). Initialises it;
  // the destructor finalises it if this object initialised it.
  static std::shared_ptr<Module> from_function_list(CK_FUNCTION_LIST* list, std::string name);

  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CK_FUNCTION_LIST* fn() const noexcept { return list_; }
  // After fork() the child must call C_Initialize again before using the module (PKCS#11
  // v2.40, 6.6.1). The fork handler only counts forks (fork_child()); the first use in the child
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
