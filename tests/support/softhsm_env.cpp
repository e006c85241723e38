// The per-process SoftHSM test environment (see softhsm_env.hpp).
#include "tests/support/softhsm_env.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace mqsec::testing {

namespace fs = std::filesystem;

namespace {

const char* const kModuleCandidates[] = {"/usr/lib/softhsm/libsofthsm2.so",
                                         "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"};

std::string errno_text(const std::string& what, const fs::path& path) {
  return what + " " + path.string() + ": " + std::strerror(errno);
}

std::set<fs::path> subdirs(const fs::path& dir) {
  std::set<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory()) out.insert(e.path());
  }
  return out;
}

// The directory holding the openssl engines (for the pkcs11 engine's dynamic_path).
std::string engines_dir() {
  CommandResult r = run_command("openssl version -e");
  auto q1 = r.output.find('"'), q2 = r.output.rfind('"');
  if (!r.ok() || q1 == std::string::npos || q2 <= q1) {
    throw std::runtime_error("cannot ask openssl for its engines directory: " + r.output);
  }
  return r.output.substr(q1 + 1, q2 - q1 - 1);
}

}  // namespace

CommandResult run_command(const std::string& command) {
  const std::string full = "( " + command + " ) 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(full.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error(std::string("popen: ") + std::strerror(errno));
  CommandResult r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe.get())) > 0) r.output.append(buf, n);
  int status = pclose(pipe.release());
  r.status = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string object_block(const std::string& listing, const std::string& id_hex) {
  // Objects start at an unindented line ("Private Key Object; RSA"); attributes are indented.
  std::vector<std::string> blocks;
  size_t pos = 0;
  while (pos < listing.size()) {
    size_t end = listing.find('\n', pos);
    if (end == std::string::npos) end = listing.size();
    std::string line = listing.substr(pos, end - pos);
    if (!line.empty() && line[0] != ' ' && line[0] != '\t') blocks.emplace_back();
    if (!blocks.empty()) blocks.back() += line + "\n";
    pos = end + 1;
  }
  for (const std::string& b : blocks) {
    size_t at = b.find("ID:");
    if (at == std::string::npos) continue;
    size_t v = b.find_first_not_of(' ', at + 3);
    size_t e = b.find('\n', v);
    if (v != std::string::npos && b.substr(v, e - v) == id_hex) return b;
  }
  return {};
}

Bytes read_file(const fs::path& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(fopen(path.c_str(), "rb"), fclose);
  if (!f) throw std::runtime_error(errno_text("cannot open", path));
  Bytes out;
  uint8_t buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f.get())) > 0) out.insert(out.end(), buf, buf + n);
  return out;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string certificate_uri(const std::string& label, const std::string& id_hex) {
  std::string id;
  for (size_t i = 0; i + 1 < id_hex.size(); i += 2) id += "%" + id_hex.substr(i, 2);
  return "pkcs11:token=" + label + ";id=" + id + ";type=cert";
}

void write_file(const fs::path& path, const std::string& content, mode_t mode) {
  // Create with the final mode (no window in which a PIN file is readable by others), and
  // replace atomically so a concurrent reader never sees half a file.
  static std::atomic<unsigned> counter{0};
  const fs::path tmp =
      path.string() + ".tmp" + std::to_string(getpid()) + "." + std::to_string(++counter);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error(errno_text("cannot create", tmp));
  bool ok = fchmod(fd, mode) == 0;
  for (size_t done = 0; ok && done < content.size();) {
    ssize_t w = write(fd, content.data() + done, content.size() - done);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) done += static_cast<size_t>(w);
  }
  if (close(fd) != 0) ok = false;
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    throw std::runtime_error(errno_text("cannot write", path));
  }
}

SoftHsmEnv& SoftHsmEnv::instance() {
  static SoftHsmEnv env;  // C++ guarantees one initialisation even with concurrent callers
  return env;
}

SoftHsmEnv::SoftHsmEnv() {
  for (const char* candidate : kModuleCandidates) {
    if (access(candidate, R_OK) == 0) {
      module_ = candidate;
      break;
    }
  }
  if (module_.empty()) {
    throw std::runtime_error(
        "SoftHSM2 is not installed (no libsofthsm2.so in /usr/lib/softhsm "
        "or /usr/lib/x86_64-linux-gnu/softhsm): apt-get install softhsm2");
  }

  const char* tmpdir = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/mqsec-it.XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error(errno_text("mkdtemp", tmpl));
  dir_ = tmpl;
  // Traversable by others: an impersonated test user must reach the config, its profile, its
  // token and its PIN file. Everything secret inside stays 0600 / 0700.
  chmod(dir_.c_str(), 0755);
  fs::create_directories(token_dir());
  chmod(token_dir().c_str(), 0755);

  softhsm_conf_ = dir_ / "softhsm2.conf";
  write_file(softhsm_conf_, "directories.tokendir = " + token_dir().string() +
                                "\n"
                                "objectstore.backend = file\n"
                                "log.level = ERROR\n"
                                "slots.removable = false\n");
  // Before anything loads the module: SoftHSM reads SOFTHSM2_CONF in C_Initialize.
  setenv("SOFTHSM2_CONF", softhsm_conf_.c_str(), 1);

  for (const char* label : {kPrimaryToken, kWrongPinToken, kUserBToken}) init_token(label);

  pin_file_ = write_pin_file("user.pin", kUserPin);

  // The pkcs11 engine for `openssl req`, bound to this SoftHSM module rather than whatever
  // p11-kit's proxy would load.
  openssl_conf_ = dir_ / "openssl.cnf";
  write_file(openssl_conf_,
             "openssl_conf = openssl_init\n"
             "[openssl_init]\n"
             "engines = engine_section\n"
             "[engine_section]\n"
             "pkcs11 = pkcs11_section\n"
             "[pkcs11_section]\n"
             "engine_id = pkcs11\n"
             "dynamic_path = " +
                 engines_dir() +
                 "/pkcs11.so\n"
                 "MODULE_PATH = " +
                 module_ +
                 "\n"
                 "init = 0\n"
                 "[req]\n"
                 "distinguished_name = req_dn\n"
                 "[req_dn]\n");

  write_file(dir_ / "openssl-req.cnf", "[req]\ndistinguished_name = req_dn\n[req_dn]\n");

  config_ = dir_ / "mqsec.toml";
  write_config();
  setenv("MQSEC_CONFIG", config_.c_str(), 1);
  setenv("MQSEC_LOG", ("file:" + (dir_ / "mqsec.log").string()).c_str(), 1);
  // The PIN-refusal memory (pkcs11/pin_refusals) of the test's tokens stays in the test's
  // directory, not in the real ~/.local/state/mqsec.
  std::filesystem::create_directory(dir_ / "state");
  std::filesystem::permissions(dir_ / "state", std::filesystem::perms::owner_all);
  setenv("MQSEC_STATE_DIR", (dir_ / "state").c_str(), 1);
}

SoftHsmEnv::~SoftHsmEnv() {
  if (std::getenv("MQSEC_IT_KEEP") != nullptr) {
    std::fprintf(stderr, "keeping the test SoftHSM environment in %s\n", dir_.c_str());
    return;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

void SoftHsmEnv::init_token(const std::string& label) {
  auto before = subdirs(token_dir());
  // PINs in argv: see the header comment (softhsm2-util takes them nowhere else).
  must_run("softhsm2-util --init-token " + label, "softhsm2-util --init-token --free --label " +
                                                      shell_quote(label) + " --pin " + kUserPin +
                                                      " --so-pin " + kSoPin);
  auto after = subdirs(token_dir());
  for (const auto& d : after) {
    if (!before.count(d)) token_dirs_[label] = d;
  }
  if (!token_dirs_.count(label)) {
    throw std::runtime_error("softhsm2-util created no token directory for '" + label + "'");
  }
}

fs::path SoftHsmEnv::token_subdir(const std::string& label) const {
  auto it = token_dirs_.find(label);
  if (it == token_dirs_.end()) throw std::runtime_error("no test token '" + label + "'");
  return it->second;
}

std::string SoftHsmEnv::token_uri(const std::string& label, const fs::path& pin_file) const {
  return "pkcs11:token=" + label + "?module-path=" + module_ +
         "&pin-source=file:" + pin_file.string();
}

void SoftHsmEnv::write_config(const ConfigOptions& o) const {
  std::string uri = o.token_uri;
  if (uri.empty()) {
    std::string label = o.token_label.empty() ? kPrimaryToken : o.token_label;
    std::string module = o.module_path.empty() ? module_ : o.module_path;
    fs::path pin = o.pin_file.empty() ? pin_file_ : o.pin_file;
    uri = "pkcs11:token=" + label + "?module-path=" + module + "&pin-source=file:" + pin.string();
  }
  fs::path profiles = o.profiles_dir.empty() ? dir_ / "users" : o.profiles_dir;
  fs::path store = o.store_path.empty() ? dir_ / "store" : o.store_path;
  write_file(config_,
             "# written by tests/support/softhsm_env.cpp\n"
             "[token]\n"
             "uri = \"" +
                 uri + "\"\n" +
                 (o.allow_extractable_keys ? "allow-extractable-keys = true\n" : "") +
                 "[store]\n"
                 "path = \"" +
                 store.string() +
                 "\"\n"
                 "[profiles]\n"
                 "dir = \"" +
                 (profiles / "%u").string() +
                 "\"\n"
                 "[identity]\n"
                 "sid = \"unix\"\n");
}

fs::path SoftHsmEnv::write_pin_file(const std::string& name, const std::string& pin, uid_t owner,
                                    gid_t group) const {
  fs::path path = dir_ / name;
  write_file(path, pin, 0600);
  if ((owner != static_cast<uid_t>(-1) || group != static_cast<gid_t>(-1)) &&
      chown(path.c_str(), owner, group) != 0) {
    throw std::runtime_error(errno_text("cannot chown", path));
  }
  return path;
}

std::string SoftHsmEnv::new_id() {
  static std::atomic<unsigned> counter{0};
  char buf[32];
  // pid in the id keeps ids of parallel test processes (separate token dirs anyway) apart.
  std::snprintf(buf, sizeof buf, "%08x%04x", static_cast<unsigned>(getpid()), ++counter & 0xffff);
  return buf;
}

CommandResult SoftHsmEnv::must_run(const std::string& what, const std::string& command) const {
  CommandResult r = run_command(command);
  if (!r.ok()) {
    // The command line is left out on purpose: it may carry the test PIN.
    throw std::runtime_error(what + " failed (exit " + std::to_string(r.status) + "):\n" +
                             r.output);
  }
  return r;
}

std::string SoftHsmEnv::pkcs11_tool(const std::string& label) const {
  return "pkcs11-tool --module " + shell_quote(module_) + " --token-label " + shell_quote(label) +
         " --login --pin " + kUserPin;
}

void SoftHsmEnv::keypairgen(const std::string& label, const std::string& key_type,
                            const std::string& id_hex, const std::string& object_label) const {
  must_run("pkcs11-tool --keypairgen " + key_type,
           pkcs11_tool(label) + " --keypairgen --key-type " + shell_quote(key_type) + " --id " +
               id_hex + " --label " + shell_quote(object_label) + " --usage-sign");
}

Bytes SoftHsmEnv::certificate_for_token_key(const std::string& label, const std::string& id_hex,
                                            const std::string& common_name) const {
  std::string pct;
  for (size_t i = 0; i + 1 < id_hex.size(); i += 2) {
    pct += '%';
    pct.append(id_hex, i, 2);
  }
  const fs::path out = dir_ / ("cert-" + id_hex + ".der");
  // The PIN goes through -passin file: rather than pin-value= in the key URI.
  must_run("openssl req -x509 (pkcs11 engine) for id " + id_hex,
           "OPENSSL_CONF=" + shell_quote(openssl_conf_.string()) +
               " openssl req -new -x509 -engine pkcs11 -keyform engine -key " +
               shell_quote("pkcs11:token=" + label + ";id=" + pct + ";type=private") + " -passin " +
               shell_quote("file:" + pin_file_.string()) + " -subj " +
               shell_quote("/CN=" + common_name) + " -days 30 -sha256 -outform DER -out " +
               shell_quote(out.string()) + " </dev/null");
  return read_file(out);
}

SoftwareCert SoftHsmEnv::software_certificate(const std::string& algorithm,
                                              const std::string& common_name) const {
  static std::atomic<unsigned> counter{0};
  const std::string base = (dir_ / ("soft-" + std::to_string(++counter))).string();
  std::string genpkey = algorithm == "ec"
                            ? "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"
                            : "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048";
  must_run("openssl genpkey " + algorithm, genpkey + " -out " + shell_quote(base + ".pem"));
  // Not openssl_conf_: with the engine configured, req refuses software keys.
  must_run("openssl req -x509 (software key)",
           "OPENSSL_CONF=" + shell_quote((dir_ / "openssl-req.cnf").string()) +
               " openssl req -new -x509 -key " + shell_quote(base + ".pem") + " -subj " +
               shell_quote("/CN=" + common_name) + " -days 30 -sha256 -outform DER -out " +
               shell_quote(base + ".crt.der"));
  must_run("openssl pkey -outform DER", "openssl pkey -in " + shell_quote(base + ".pem") +
                                            " -outform DER -out " + shell_quote(base + ".key.der"));
  return SoftwareCert{base + ".key.der", read_file(base + ".crt.der")};
}

void SoftHsmEnv::write_certificate(const std::string& label, const Bytes& der,
                                   const std::string& id_hex,
                                   const std::string& object_label) const {
  const fs::path file = dir_ / ("write-" + id_hex + "-" + std::to_string(der.size()) + ".der");
  write_file(file, std::string(der.begin(), der.end()));
  must_run("pkcs11-tool --write-object cert",
           pkcs11_tool(label) + " --write-object " + shell_quote(file.string()) +
               " --type cert --id " + id_hex + " --label " + shell_quote(object_label));
}

void SoftHsmEnv::import_private_key(const std::string& label, const fs::path& key_der,
                                    const std::string& id_hex, const std::string& object_label,
                                    bool extractable) const {
  must_run("pkcs11-tool --write-object privkey",
           pkcs11_tool(label) + " --write-object " + shell_quote(key_der.string()) +
               " --type privkey --usage-sign --id " + id_hex + " --label " +
               shell_quote(object_label) + (extractable ? " --extractable" : ""));
}

std::string SoftHsmEnv::list_objects(const std::string& label, const std::string& type,
                                     const std::string& id_hex) const {
  return must_run("pkcs11-tool --list-objects", pkcs11_tool(label) + " --list-objects --type " +
                                                    shell_quote(type) +
                                                    (id_hex.empty() ? "" : " --id " + id_hex))
      .output;
}

}  // namespace mqsec::testing
