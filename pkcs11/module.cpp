// Module loading: dlopen by path or p11-kit name, C_Initialize once per process.
#include "pkcs11/module.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "pkcs11/call_gate.hpp"
#include "pkcs11/error.hpp"

namespace mqsec::pkcs11 {
namespace {

std::mutex g_modules_mutex;
// Intentionally never destroyed (see the header): raw pointers to immortal modules.
std::map<std::string, std::shared_ptr<Module>>* g_modules = nullptr;

// The same file reached by two names (a symlink, a hard link) is one module: Cryptoki state is
// per loaded library, so two Module objects for it would mean two Token objects for one token,
// each with its own idea of who logged in.
std::string module_key(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    return "file:" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  }
  return "path:" + path;
}

std::optional<std::string> canonical(const std::string& path) {
  char* r = realpath(path.c_str(), nullptr);
  if (r == nullptr) return std::nullopt;
  std::string out(r);
  free(r);
  return out;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// The `module:` value of a p11-kit module config; nullopt when the file is not one we trust
// (not a root-owned regular file, or writable by group or others) or has no such line.
std::optional<std::string> module_line(const std::string& file) {
  int fd = open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0 ||
      st.st_size > 1024 * 1024) {
    close(fd);
    return std::nullopt;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  std::optional<std::string> module;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = trim(text.substr(pos, end - pos));
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (trim(line.substr(0, colon)) == "module") module = trim(line.substr(colon + 1));
  }
  if (module && module->empty()) return std::nullopt;
  return module;
}

// `shown` is the module as the profile named it, quoted, with its canonical path if different.
std::string refusal(const std::string& shown, const std::string& why, const std::string& hint) {
  std::string msg = "refusing to load PKCS#11 module " + shown + " named by a user profile: " + why;
  if (!hint.empty()) msg += "; " + hint;
  return msg;
}

}  // namespace

std::string p11kit_module_dir() {
#ifdef MQSEC_P11_MODULE_PATH
  return MQSEC_P11_MODULE_PATH;
#else
  // p11-kit's p11_module_path is $libdir/pkcs11, and libp11-kit itself lives in $libdir: ask
  // the dynamic linker where the library we are linked with came from.
  static const std::string dir = [] {
    std::string fallback = "/usr/lib/x86_64-linux-gnu/pkcs11";
    void* h = dlopen("libp11-kit.so.0", RTLD_LAZY | RTLD_NOLOAD);
    if (h == nullptr) return fallback;
    struct link_map* map = nullptr;
    std::string out = fallback;
    if (dlinfo(h, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr) {
      if (auto real = canonical(map->l_name)) {
        size_t slash = real->rfind('/');
        if (slash != std::string::npos && slash > 0) out = real->substr(0, slash) + "/pkcs11";
      }
    }
    dlclose(h);
    return out;
  }();
  return dir;
#endif
}

std::vector<RegisteredModule> registered_modules(const std::vector<std::string>& config_dirs) {
  std::map<std::string, RegisteredModule> by_name;  // later directories override earlier ones
  for (const std::string& dir : config_dirs) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d)) {
      std::string n = e->d_name;
      const std::string suffix = ".module";
      if (n.size() > suffix.size() &&
          n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
        names.push_back(n);
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) {
      const std::string file = dir + "/" + n;
      auto module = module_line(file);
      if (!module) continue;
      std::string path = (*module)[0] == '/' ? *module : p11kit_module_dir() + "/" + *module;
      std::string name = n.substr(0, n.size() - 7);
      by_name[name] = RegisteredModule{name, path, file};
    }
  }
  std::vector<RegisteredModule> out;
  for (auto& [name, m] : by_name) out.push_back(std::move(m));
  return out;
}

// Throws unless `path` is of the wanted type (a regular file, or a directory), owned by root
// and not writable by group or others; a root-owned sticky directory (like /tmp) may be.
void check_root_owned(const std::string& path, bool directory) {
  struct stat st {};
  const std::string name = (directory ? "directory '" : "'") + path + "'";
  if (lstat(path.c_str(), &st) != 0) {
    throw Error("cannot examine " + name + ": " + std::strerror(errno));
  }
  if (directory ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
    throw Error(name + (directory ? " is not a directory" : " is not a regular file"));
  }
  if (st.st_uid != 0) {
    throw Error(name + " is owned by uid " + std::to_string(st.st_uid) + ", not by root");
  }
  if ((st.st_mode & 022) != 0 && !(directory && (st.st_mode & S_ISVTX))) {
    throw Error(name + " is writable by group or others");
  }
}

void check_root_controlled(const std::string& real_path) {
  check_root_owned(real_path, false);
  std::string dir = real_path;
  for (;;) {
    size_t slash = dir.rfind('/');
    if (slash == std::string::npos) break;
    dir = slash == 0 ? std::string("/") : dir.substr(0, slash);
    check_root_owned(dir, true);
    if (dir == "/") break;
  }
}

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
  const std::string key = module_key(path);
  if (auto it = g_modules->find(key); it != g_modules->end()) return it->second;

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
  (*g_modules)[key] = module;
  return module;
}

std::shared_ptr<Module> Module::load_by_name(const std::string& name) {
  for (const RegisteredModule& m : registered_modules()) {
    if (m.name == name) return load(m.path);
  }
  throw Error("p11-kit has no module named '" + name + "' (no " + name +
              ".module in /usr/share/p11-kit/modules or /etc/pkcs11/modules; "
              "see `p11-kit list-modules`, or use module-path= in the URI)");
}

std::shared_ptr<Module> Module::load_restricted(const std::string& path,
                                                const ModulePolicy& policy) {
  if (path.empty() || path[0] != '/') {
    throw Error(
        refusal("'" + path + "'", "module-path must be an absolute path", policy.how_to_allow));
  }
  auto real = canonical(path);
  if (!real) {
    throw Error(refusal("'" + path + "'", std::string("cannot resolve it: ") + std::strerror(errno),
                        policy.how_to_allow));
  }
  bool listed = false;
  for (const RegisteredModule& m : registered_modules()) {
    if (canonical(m.path) == real) listed = true;
  }
  for (const std::string& a : policy.allowed) {
    if (canonical(a) == real) listed = true;
  }
  const std::string shown = "'" + path + "'" + (*real == path ? "" : " (" + *real + ")");
  if (!listed) {
    throw Error(refusal(shown,
                        "it is neither registered with p11-kit (a *.module file in "
                        "/usr/share/p11-kit/modules or /etc/pkcs11/modules) nor allowed by the "
                        "system configuration",
                        policy.how_to_allow));
  }
  try {
    check_root_controlled(*real);
  } catch (const Error& e) {
    throw Error(refusal(shown,
                        std::string(e.what()) +
                            " (a module, and every directory above it, must be owned by root "
                            "and not writable by group or others)",
                        {}));
  }
  return load(*real);
}

std::shared_ptr<Module> Module::load_restricted_by_name(const std::string& name,
                                                        const ModulePolicy& policy) {
  for (const RegisteredModule& m : registered_modules()) {
    if (m.name == name) return load_restricted(m.path, policy);
  }
  throw Error("p11-kit has no module named '" + name + "' (no " + name +
              ".module in /usr/share/p11-kit/modules or /etc/pkcs11/modules; see `p11-kit "
              "list-modules`)");
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
