// Module loading: dlopen by path or p11-kit name, C_Initialize once per process.
#include "pkcs11/module.hpp"

#include <dlfcn.h>
#include <pthread.h>
#include <p11-kit/p11-kit.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>

#include "pkcs11/call_gate.hpp"
#include "pkcs11/error.hpp"

namespace mqsec::pkcs11 {
namespace {

std::mutex g_modules_mutex;
// Intentionally never destroyed (see the header): raw pointers to immortal modules.
std::map<std::string, std::shared_ptr<Module>>* g_modules = nullptr;

std::atomic<uint64_t> g_forks{0};
std::once_flag g_atfork_once;

}  // namespace

uint64_t fork_generation() noexcept { return g_forks.load(std::memory_order_acquire); }

Module::Module(CK_FUNCTION_LIST* list, std::string path, void* dl, bool owned)
    : list_(list), path_(std::move(path)), dl_(dl), owned_(owned) {}

Module::~Module() {
  // Only test-owned modules get here; finalising is best effort and its result cannot be
  // reported from a destructor.
  if (owned_ && initialized_by_us_) list_->C_Finalize(nullptr);
  if (dl_ != nullptr) dlclose(dl_);
}

void Module::initialize() {
  install_fork_gate();
  CallScope scope;
  std::call_once(g_atfork_once, [] {
    pthread_atfork(nullptr, nullptr, [] { g_forks.fetch_add(1, std::memory_order_acq_rel); });
  });
  fork_seen_ = fork_generation();
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = list_->C_Initialize(&args);
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) return;
  check(rv, "C_Initialize");
  initialized_by_us_ = true;
}

bool Module::reinitialize_after_fork() {
  if (fork_seen_ == fork_generation()) return false;
  std::lock_guard lock(init_mu_);
  if (fork_seen_ == fork_generation()) return false;
  initialize();
  return true;
}

std::shared_ptr<Module> Module::load(const std::string& path) {
  std::lock_guard lock(g_modules_mutex);
  if (g_modules == nullptr) g_modules = new std::map<std::string, std::shared_ptr<Module>>();
  if (auto it = g_modules->find(path); it != g_modules->end()) return it->second;

  void* dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (dl == nullptr) {
    const char* why = dlerror();
    throw Error("cannot load PKCS#11 module '" + path + "': " + (why ? why : "unknown error"));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl, "C_GetFunctionList"));
  if (get_list == nullptr) {
    dlclose(dl);
    throw Error("'" + path + "' is not a PKCS#11 module: it has no C_GetFunctionList");
  }
  CK_FUNCTION_LIST* list = nullptr;
  CK_RV rv = get_list(&list);
  if (rv != CKR_OK || list == nullptr) {
    dlclose(dl);
    throw Error("C_GetFunctionList", rv == CKR_OK ? CKR_GENERAL_ERROR : rv, path);
  }
  std::shared_ptr<Module> module(new Module(list, path, dl, false));
  module->initialize();
  (*g_modules)[path] = module;
  return module;
}

std::shared_ptr<Module> Module::load_by_name(const std::string& name) {
  CK_FUNCTION_LIST** all = p11_kit_modules_load(nullptr, P11_KIT_MODULE_UNMANAGED);
  if (all == nullptr) throw Error("p11-kit could not read its module registry");
  std::string path;
  for (CK_FUNCTION_LIST** m = all; *m != nullptr; ++m) {
    char* module_name = p11_kit_module_get_name(*m);
    if (module_name != nullptr && name == module_name) {
      char* file = p11_kit_module_get_filename(*m);
      if (file != nullptr) path = file;
      free(file);
    }
    free(module_name);
    if (!path.empty()) break;
  }
  p11_kit_modules_release(all);
  if (path.empty()) {
    throw Error("p11-kit has no module named '" + name +
                "' (see `p11-kit list-modules`; or use module-path= in the URI)");
  }
  return load(path);
}

std::shared_ptr<Module> Module::from_function_list(CK_FUNCTION_LIST* list, std::string name) {
  std::shared_ptr<Module> module(new Module(list, std::move(name), nullptr, true));
  module->initialize();
  return module;
}

CK_INFO Module::info() const {
  CK_INFO info{};
  check(list_->C_GetInfo(&info), "C_GetInfo");
  return info;
}

}  // namespace mqsec::pkcs11
