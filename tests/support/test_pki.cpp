#include "tests/support/test_pki.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace mqsec::testing {
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string value_of(const std::string& env_text, const std::string& name) {
  std::istringstream in(env_text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + "=", 0) == 0) return line.substr(name.size() + 1);
  }
  throw std::runtime_error("sids.env has no " + name);
}

struct PkiHolder {
  TestPki pki;
  ~PkiHolder() {
    std::error_code ec;
    if (!pki.dir.empty()) std::filesystem::remove_all(pki.dir, ec);
  }
};

}  // namespace

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind to 127.0.0.1:0 failed");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

const TestPki& test_pki(const std::string& make_pki_script) {
  static std::unique_ptr<PkiHolder> holder = [&] {
    auto h = std::make_unique<PkiHolder>();
    std::string tmpl = (std::filesystem::temp_directory_path() / "mqsec-pki-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    h->pki.dir = tmpl;
    h->pki.ocsp_port = free_loopback_port();
    std::string cmd = "'" + make_pki_script + "' '" + tmpl + "' '" + h->pki.ocsp_url() + "' > '" +
                      tmpl + "/make-pki.log' 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      throw std::runtime_error("make-pki.sh failed: " + slurp(h->pki.dir / "make-pki.log"));
    }
    std::string env = slurp(h->pki.dir / "sids.env");
    h->pki.sid_ext = value_of(env, "SID_EXT");
    h->pki.sid_san = value_of(env, "SID_SAN");
    return h;
  }();
  return holder->pki;
}

ChildProcess::ChildProcess(std::vector<std::string> argv, const std::filesystem::path& output,
                           std::vector<std::string> env) {
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    if (::getppid() != parent) ::_exit(127);
    if (!output.empty()) {
      int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
    }
    for (auto& e : env) ::putenv(e.data());
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
}

void ChildProcess::wait_until(const std::function<bool()>& ready, const std::string& what,
                              const std::function<std::string()>& detail) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error(what + " exited: " + (detail ? detail() : std::string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill();
  throw std::runtime_error(what + " did not start: " + (detail ? detail() : std::string()));
}

void ChildProcess::kill() noexcept {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

OcspResponder::OcspResponder(const TestPki& pki, int port, const std::string& loopback_shim,
                             int nrequest) {
  static int serial = 0;
  log_ = pki.dir / ("ocsp-" + std::to_string(port) + "-" + std::to_string(++serial) + ".log");
  std::vector<std::string> args = {"openssl",  "ocsp",
                                   "-index",   (pki.dir / "ca/index.txt").string(),
                                   "-port",    std::to_string(port),
                                   "-CA",      pki.pem("inter").string(),
                                   "-rsigner", pki.pem("ocsp").string(),
                                   "-rkey",    pki.key("ocsp").string()};
  if (nrequest > 0) {
    args.push_back("-nrequest");
    args.push_back(std::to_string(nrequest));
  }
  child_ = std::make_unique<ChildProcess>(std::move(args), log_,
                                          std::vector<std::string>{"LD_PRELOAD=" + loopback_shim});
  // Ready when it says it accepts connections (on the loopback address: the shim's doing).
  child_->wait_until([&] { return log().find("ACCEPT") != std::string::npos; }, "OCSP responder",
                     [&] { return log(); });
  if (log().find("127.0.0.1") == std::string::npos) {
    child_->kill();
    throw std::runtime_error("OCSP responder is not on loopback: " + log());
  }
}

std::string OcspResponder::log() const { return slurp(log_); }

int OcspResponder::requests() const {
  std::string text = log();
  int n = 0;
  for (size_t pos = 0; (pos = text.find("Received request", pos)) != std::string::npos; ++pos) {
    ++n;
  }
  return n;
}

namespace {

constexpr const char* kCannedServer = R"(
import http.server, sys
data = open(sys.argv[1], 'rb').read()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length', 0)))
        self.send_response(200)
        self.send_header('Content-Type', 'application/ocsp-response')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[2])), Handler).serve_forever()
)";

bool accepts_connections(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

CannedOcspServer::CannedOcspServer(const std::filesystem::path& response_der, int port) {
  child_ = std::make_unique<ChildProcess>(std::vector<std::string>{
      "python3", "-c", kCannedServer, response_der.string(), std::to_string(port)});
  child_->wait_until([&] { return accepts_connections(port); }, "the canned OCSP server");
}

}  // namespace mqsec::testing
