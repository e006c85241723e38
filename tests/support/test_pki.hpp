// Test support for the trust policy: the test PKI of tests/pki/make-pki.sh, made once per
// test process in a temporary directory, and an `openssl ocsp` responder on 127.0.0.1 that the
// test starts and stops (and that dies with the test process).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <vector>
#include <utility>
#include <memory>
#include <functional>
#include <string>

namespace mqsec::testing {

struct TestPki {
  std::filesystem::path dir;  // root.pem, inter.pem, <leaf>.{pem,key}, crl.pem, ca/index.txt ...
  int ocsp_port = 0;          // the port the leaves' AIA names (http://127.0.0.1:<port>/)
  std::string sid_ext;        // the SID in sid.pem's (and other.pem's, selfsid.pem's) extension
  std::string sid_san;        // the SID in sanuri.pem's SAN URI
  std::filesystem::path pem(const std::string& name) const { return dir / (name + ".pem"); }
  std::filesystem::path key(const std::string& name) const { return dir / (name + ".key"); }
  std::string ocsp_url() const { return "http://127.0.0.1:" + std::to_string(ocsp_port) + "/"; }
};

// Makes the PKI on first use (make_pki_script: path of make-pki.sh); later calls return the
// same one. The directory is removed at exit. Throws std::runtime_error when the script fails.
const TestPki& test_pki(const std::string& make_pki_script);

// A free TCP port on 127.0.0.1 (bound and released; good enough for a test).
int free_loopback_port();

// A process a test starts (fork + exec of argv[0] from PATH, `env` entries added with putenv,
// stdout and stderr to `output` when set). It dies with the test process (PR_SET_PDEATHSIG) and
// is killed by the destructor. Move-only.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> argv, const std::filesystem::path& output = {},
               std::vector<std::string> env = {});
  ChildProcess(ChildProcess&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
  ChildProcess& operator=(ChildProcess&&) = delete;
  ~ChildProcess() { kill(); }
  // Waits (polling every 20 ms, up to 20 s) until `ready()` holds. Throws std::runtime_error,
  // with `what` and `detail()`, when the child exits first or the time runs out (then kills it).
  void wait_until(const std::function<bool()>& ready, const std::string& what,
                  const std::function<std::string()>& detail = {});
  void kill() noexcept;

 private:
  pid_t pid_ = -1;
};

// `openssl ocsp -index <pki>/ca/index.txt -port <port>` answering for inter.pem's leaves,
// signed by ocsp.pem, with LD_PRELOAD=<loopback_shim> so it listens on 127.0.0.1 only.
// nrequest > 0: it exits after that many requests.
class OcspResponder {
 public:
  OcspResponder(const TestPki& pki, int port, const std::string& loopback_shim, int nrequest = 0);
  // Requests it has received so far (from its log).
  int requests() const;
  std::string log() const;

 private:
  std::filesystem::path log_;
  std::unique_ptr<ChildProcess> child_;
};

// A hostile "responder" on 127.0.0.1:<port> that answers every request with the same stored
// DER response (a replayed answer), as anyone who can bind the responder's address could: a
// python3 http.server child.
class CannedOcspServer {
 public:
  CannedOcspServer(const std::filesystem::path& response_der, int port);

 private:
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace mqsec::testing
