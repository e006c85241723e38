// The virtual smartcard test bed from C++ (virtual_card.hpp).
#include "tests/support/virtual_card.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace mqsec::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPcscd = "/usr/sbin/pcscd";
constexpr const char* kUnshare = "/usr/bin/unshare";
constexpr const char* kSetpriv = "/usr/bin/setpriv";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Runs argv (no shell), stdout and stderr to `output`; returns the exit status (-1: no exit).
int run_quietly(const std::vector<std::string>& argv, std::string* output) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error(errno_text("pipe2"));
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(errno_text("fork"));
  if (pid == 0) {
    ::dup2(pipefd[1], 1);
    ::dup2(pipefd[1], 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool executable(const char* path) { return ::access(path, X_OK) == 0; }

std::string host_namespaces() {
  std::string out;
  for (const char* ns : {"mnt", "net"}) {
    std::error_code ec;
    fs::path target = fs::read_symlink(fs::path("/proc/self/ns") / ns, ec);
    if (ec) throw std::runtime_error("cannot read /proc/self/ns/" + std::string(ns));
    if (!out.empty()) out += ",";
    out += target.string();
  }
  return out;
}

void copy_file(const fs::path& from, const fs::path& to, fs::perms mode) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) throw std::runtime_error("cannot copy " + from.string() + ": " + ec.message());
  fs::permissions(to, mode, ec);
}

void chown_tree(const fs::path& root, uid_t uid, gid_t gid) {
  if (::lchown(root.c_str(), uid, gid) != 0) throw std::runtime_error(errno_text("chown"));
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (::lchown(e.path().c_str(), uid, gid) != 0) throw std::runtime_error(errno_text("chown"));
  }
}

}  // namespace

std::string VirtualCardBed::unavailable_reason() {
  if (!executable(kPcscd)) {
    return std::string("pcscd is not installed (") + kPcscd +
           "): the virtual smartcard tests need pcscd, vsmartcard-vpcd and opensc "
           "(scripts/deps.sh installs them)";
  }
  if (!executable(kUnshare)) {
    return std::string("pcscd cannot run isolated: ") + kUnshare + " (util-linux) is missing";
  }
  // One private pcscd needs its own mount namespace (its socket path is fixed): root can make
  // one, anyone else needs a user namespace.
  std::string out;
  std::vector<std::string> probe = {kUnshare, "-m", "-n", "-p", "-f", "/bin/true"};
  if (::geteuid() != 0) probe.insert(probe.begin() + 1, "-r");
  if (run_quietly(probe, &out) != 0) {
    return "pcscd cannot run isolated from the system's: no private mount, network and PID "
           "namespaces can be made here (" +
           out.substr(0, out.find('\n')) + "); run as root or allow user namespaces";
  }
  return "";
}

std::string VirtualCardBed::module_path() { return "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"; }

VirtualCardBed::VirtualCardBed(const Options& o) {
  if (std::string why = unavailable_reason(); !why.empty()) throw std::runtime_error(why);
  for (const char* needed : {"/usr/lib/pcsc/drivers/serial/libifdvpcd.so"}) {
    if (::access(needed, R_OK) != 0) {
      throw std::runtime_error(std::string(needed) +
                               " is missing: install vsmartcard-vpcd (scripts/deps.sh)");
    }
  }
  if (::access(module_path().c_str(), R_OK) != 0) {
    throw std::runtime_error(module_path() + " is missing: install opensc (scripts/deps.sh)");
  }
  std::string tmpl = (fs::temp_directory_path() / "mqsec-card-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error(errno_text("mkdtemp"));
  dir_ = tmpl;
  try {
    fs::create_directory(dir_ / "bin");
    fs::create_directory(dir_ / "ca");
    // The bed's own copies: an unprivileged bed user may not be able to read the source tree
    // or the test PKI's directory.
    fs::path script(o.bed_script);
    const auto r = fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read;
    copy_file(script, dir_ / "bin" / "card_bed.py", r);
    copy_file(script.parent_path() / "piv_card.py", dir_ / "bin" / "piv_card.py", r);
    copy_file(o.ca_cert, dir_ / "ca" / "ca.pem", r);
    copy_file(o.ca_key, dir_ / "ca" / "ca.key", fs::perms::owner_read);

    const std::string unshare_args[] = {kUnshare, "-m", "-n", "-p", "-f", "--kill-child=SIGTERM"};
    std::vector<std::string> ns(std::begin(unshare_args), std::end(unshare_args));
    std::vector<std::string> in_userns = ns;
    in_userns.insert(in_userns.begin() + 1, "-r");  // a user namespace, mapped to root
    std::string why;
    if (::geteuid() == 0) {
      const char* env_user = std::getenv("MQSEC_CARD_RUN_AS");
      std::string user = env_user && *env_user ? env_user : "nobody";
      const passwd* pw = ::getpwnam(user.c_str());
      if (pw != nullptr && pw->pw_uid != 0 && executable(kSetpriv)) {
        chown_tree(dir_, pw->pw_uid, pw->pw_gid);
        std::vector<std::string> prefix = {kSetpriv, "--reuid=" + std::to_string(pw->pw_uid),
                                           "--regid=" + std::to_string(pw->pw_gid),
                                           "--clear-groups", "--"};
        prefix.insert(prefix.end(), in_userns.begin(), in_userns.end());
        mode_ = "as " + user + " in a user namespace";
        if (try_start(o, prefix, why)) return;
        chown_tree(dir_, 0, 0);
      }
      mode_ = "as root in private namespaces";
      if (try_start(o, ns, why)) return;
    } else {
      mode_ = "as this user in a user namespace";
      if (try_start(o, in_userns, why)) return;
    }
    throw std::runtime_error("the virtual card bed did not start: " + why);
  } catch (...) {
    stop();
    throw;
  }
}

bool VirtualCardBed::try_start(const Options& o, const std::vector<std::string>& prefix,
                               std::string& why) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
    throw std::runtime_error(errno_text("pipe2"));
  }
  const fs::path log = dir_ / "bed.log";
  std::vector<std::string> argv = prefix;
  argv.push_back(o.python.empty() ? "/usr/bin/python3" : o.python);
  argv.push_back((dir_ / "bin" / "card_bed.py").string());
  for (const auto& [flag, value] :
       std::vector<std::pair<std::string, std::string>>{{"--dir", dir_.string()},
                                                        {"--ca-cert", (dir_ / "ca/ca.pem")},
                                                        {"--ca-key", (dir_ / "ca/ca.key")},
                                                        {"--sid", o.sid},
                                                        {"--host-ns", host_namespaces()}}) {
    argv.push_back(flag);
    argv.push_back(value);
  }
  for (const auto& [card, reader] : o.inserted) {
    argv.push_back("--insert");
    argv.push_back(card + ":" + std::to_string(reader));
  }
  if (const char* d = std::getenv("MQSEC_CARD_DEBUG"); d && *d && std::strcmp(d, "0") != 0) {
    argv.push_back("--debug");
  }
  // The bed removes its directory when it ends, also after this process was killed.
  if (const char* keep = std::getenv("MQSEC_CARD_KEEP"); keep == nullptr || *keep == '\0') {
    argv.push_back("--remove-dir");
  }
  std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
                                  "PYTHONDONTWRITEBYTECODE=1"};
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(errno_text("fork"));
  if (pid == 0) {
    // unshare (and through --kill-child the bed) gets SIGTERM when the test process dies; a
    // bed started through setpriv loses this at the uid change and relies on its stdin.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || ::dup2(in[0], 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(fd, 2) < 0) _exit(126);
    ::close_range(3, ~0U, 0);
    std::vector<char*> args, envp;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  pid_ = pid;
  stdin_fd_ = in[1];  // O_CLOEXEC: no program the tests start holds the bed alive

  // The first line: "ready", or "err <reason>"; nothing when unshare itself failed.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool eof = false;
  while (line.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) break;
    pollfd p{out[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char buf[512];
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof = true;
      break;
    }
    line.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  line = line.substr(0, line.find('\n'));
  if (line == "ready") {
    std::string info = request("info");  // "A:<serial>:<reader> B:..."
    std::istringstream words(info);
    for (std::string w; words >> w;) {
      auto a = w.find(':'), b = w.rfind(':');
      serials_[w.substr(0, a)] = w.substr(a + 1, b - a - 1);
    }
    ::setenv("PCSCLITE_CSOCK_NAME", (dir_ / "run" / "pcscd.comm").c_str(), 1);
    ::setenv("OPENSC_CONF", (dir_ / "opensc.conf").c_str(), 1);
    return true;
  }
  // Not ready: end what was started (unshare's process group), then say why.
  ::close(stdin_fd_);
  stdin_fd_ = -1;
  ::kill(-pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  std::string bed_log = slurp(log);
  if (eof && line.empty() && bed_log.find("unshare") != std::string::npos) {
    why = bed_log;  // the namespaces could not be made this way: the caller tries the next
    return false;
  }
  if (!eof && line.empty()) {
    throw std::runtime_error("the virtual card bed did not get ready within 120 s (" + mode_ +
                             ")\n" + bed_log);
  }
  throw std::runtime_error("the virtual card bed failed (" + mode_ + "): " +
                           (line.empty() ? std::string("no answer") : line) + "\n" + bed_log);
}

VirtualCardBed::~VirtualCardBed() { stop(); }

void VirtualCardBed::stop() noexcept {
  if (stdin_fd_ >= 0) {
    ::close(stdin_fd_);  // EOF: the bed removes the cards and stops pcscd
    stdin_fd_ = -1;
  }
  if (pid_ > 0) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(-pid_, SIGKILL);  // unshare's process group; the bed then gets its SIGTERM
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
  }
  if (!dir_.empty()) {
    if (const char* keep = std::getenv("MQSEC_CARD_KEEP"); keep && *keep) {
      std::fprintf(stderr, "keeping the virtual card bed's directory %s\n", dir_.c_str());
    } else {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
    dir_.clear();
  }
}

std::string VirtualCardBed::request(const std::string& line) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(errno_text("socket"));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::string path = (dir_ / "control.sock").string();
  if (path.size() >= sizeof a.sun_path) throw std::runtime_error("control socket path too long");
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::string e = errno_text("cannot reach the card bed at " + path);
    ::close(fd);
    throw std::runtime_error(e);
  }
  std::string msg = line + "\n", answer;
  bool ok = ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(msg.size());
  char buf[1024];
  while (ok && answer.find('\n') == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  answer = answer.substr(0, answer.find('\n'));
  if (answer == "ok") return "";
  if (answer.rfind("ok ", 0) == 0) return answer.substr(3);
  throw std::runtime_error("card bed: '" + line +
                           "': " + (answer.empty() ? std::string("no answer") : answer));
}

std::string VirtualCardBed::serial(const std::string& card) const {
  auto it = serials_.find(card);
  if (it == serials_.end()) throw std::runtime_error("no card '" + card + "' in the bed");
  return it->second;
}

std::vector<uint8_t> VirtualCardBed::certificate(const std::string& card, uint8_t slot) const {
  char name[8];
  std::snprintf(name, sizeof name, "%02x.der", slot);
  std::string der = slurp(dir_ / "cards" / card / name);
  if (der.empty()) throw std::runtime_error("no certificate for card " + card + " slot " + name);
  return {der.begin(), der.end()};
}

std::string VirtualCardBed::key_id_hex(uint8_t slot) {
  switch (slot) {
    case kSlotRsa:
      return "01";
    case kSlotPinAlways:
      return "02";
    default:
      throw std::runtime_error("the bed's cards have keys in 9A and 9C only");
  }
}

std::string VirtualCardBed::token_uri(const std::string& card, const fs::path& pin_file) const {
  return "pkcs11:serial=" + serial(card) + "?module-path=" + module_path() +
         "&pin-source=file:" + pin_file.string();
}

std::string VirtualCardBed::certificate_uri(const std::string& card, uint8_t slot) const {
  return "pkcs11:serial=" + serial(card) + ";id=%" + key_id_hex(slot) + ";type=cert";
}

void VirtualCardBed::insert(const std::string& card, int reader) {
  std::string answer = request("insert " + card + " " + std::to_string(reader));
  if (!answer.empty()) throw std::runtime_error("card bed: insert " + card + ": " + answer);
}

void VirtualCardBed::remove(const std::string& card, bool abrupt) {
  request("remove " + card + (abrupt ? " now" : ""));
}

std::optional<int> VirtualCardBed::reader_of(const std::string& card) {
  std::istringstream words(request("info"));
  for (std::string w; words >> w;) {
    if (w.substr(0, w.find(':')) != card) continue;
    std::string r = w.substr(w.rfind(':') + 1);
    if (r == "-") return std::nullopt;
    return std::stoi(r);
  }
  throw std::runtime_error("no card '" + card + "' in the bed");
}

void VirtualCardBed::set_signature_delay(const std::string& card, int ms) {
  request("delay " + card + " " + std::to_string(ms));
}

int VirtualCardBed::pin_tries(const std::string& card) {
  return std::stoi(request("tries " + card));  // "<pin tries> <puk tries>"
}

void VirtualCardBed::set_pin_tries(const std::string& card, int tries) {
  request("set-tries " + card + " " + std::to_string(tries));
}

void VirtualCardBed::reset(const std::string& card) { request("reset " + card); }

std::map<std::string, long> VirtualCardBed::stats(const std::string& card) {
  std::map<std::string, long> out;
  std::istringstream words(request("stats " + card));
  for (std::string w; words >> w;) {
    auto eq = w.find('=');
    if (eq != std::string::npos) out[w.substr(0, eq)] = std::stol(w.substr(eq + 1));
  }
  return out;
}

}  // namespace mqsec::testing
