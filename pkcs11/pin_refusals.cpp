// PINs a token refused, remembered across processes (see pin_refusals.hpp).
#include "pkcs11/pin_refusals.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>
#include <vector>

#include "pkcs11/pin.hpp"

namespace mqsec::pkcs11 {
namespace {

constexpr int kIterations = 20000;
constexpr size_t kSaltSize = 16;
constexpr size_t kMaxFile = 256 * 1024;

std::atomic<WarningSink> g_sink{nullptr};
std::mutex g_file_mutex;  // one writer per process at a time (other processes: O_APPEND lines)

std::string hex(const unsigned char* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

bool unhex(const std::string& s, std::vector<unsigned char>& out) {
  if (s.size() % 2 != 0) return false;
  out.clear();
  for (size_t i = 0; i < s.size(); i += 2) {
    auto v = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = v(s[i]), lo = v(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<unsigned char>(hi * 16 + lo));
  }
  return true;
}

bool pin_hash(const std::string& pin, const unsigned char* salt, size_t salt_len,
              unsigned char (&out)[32]) {
  return PKCS5_PBKDF2_HMAC(pin.data(), static_cast<int>(pin.size()), salt,
                           static_cast<int>(salt_len), kIterations, EVP_sha256(), sizeof out,
                           out) == 1;
}

std::string state_dir() {
  const uid_t euid = thread_effective_uid();
  if (euid == thread_real_uid()) {
    if (const char* d = secure_getenv("MQSEC_STATE_DIR"); d != nullptr && d[0] == '/') return d;
  }
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(euid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr ||
      pw.pw_dir == nullptr || pw.pw_dir[0] != '/') {
    return {};
  }
  return std::string(pw.pw_dir) + "/.local/state/mqsec";
}

// Opens the file (already open as `fd`) only if it is a regular file of the thread's user.
bool trusted(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == thread_effective_uid() &&
         (st.st_mode & 022) == 0;
}

// "" when the file does not exist (the usual case: nothing was ever refused) or is not trusted.
std::string read_all(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return {};
  std::string data;
  if (trusted(fd)) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0 && data.size() < kMaxFile) {
      data.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return data;
}

// mkdir -p with 0700 for the components we create.
bool make_dirs(const std::string& dir) {
  if (dir.empty() || dir[0] != '/') return false;
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return false;
  }
  return true;
}

}  // namespace

void set_warning_sink(WarningSink sink) noexcept { g_sink.store(sink); }

void warn(const std::string& text) noexcept {
  try {
    if (WarningSink s = g_sink.load()) {
      s(text);
    } else {
      std::fprintf(stderr, "mqsec: warning: %s\n", text.c_str());
    }
  } catch (...) {
  }
}

std::string pin_refusal_file() {
  std::string dir = state_dir();
  return dir.empty() ? std::string() : dir + "/pin-refusals";
}

bool pin_refused_before(const std::string& serial, const std::string& pin) {
  const std::string path = pin_refusal_file();
  if (path.empty()) return false;
  const std::string want =
      hex(reinterpret_cast<const unsigned char*>(serial.data()), serial.size());
  std::istringstream in(read_all(path));
  std::string s, salt_hex, hash_hex;
  std::vector<unsigned char> salt, hash;
  while (in >> s >> salt_hex >> hash_hex) {
    if (s != want || !unhex(salt_hex, salt) || !unhex(hash_hex, hash) || hash.size() != 32) {
      continue;
    }
    unsigned char h[32];
    bool same =
        pin_hash(pin, salt.data(), salt.size(), h) && CRYPTO_memcmp(h, hash.data(), 32) == 0;
    OPENSSL_cleanse(h, sizeof h);
    if (same) return true;
  }
  return false;
}

std::string remember_refused_pin(const std::string& serial, const std::string& pin) {
  const std::string dir = state_dir();
  if (dir.empty()) return "no home directory for uid " + std::to_string(thread_effective_uid());
  if (!make_dirs(dir)) return "cannot create " + dir + ": " + std::strerror(errno);
  unsigned char salt[kSaltSize];
  unsigned char h[32];
  if (RAND_bytes(salt, sizeof salt) != 1 || !pin_hash(pin, salt, sizeof salt, h)) {
    return "OpenSSL failed to hash the refused PIN";
  }
  std::string line = hex(reinterpret_cast<const unsigned char*>(serial.data()), serial.size()) +
                     " " + hex(salt, sizeof salt) + " " + hex(h, sizeof h) + "\n";
  OPENSSL_cleanse(h, sizeof h);
  const std::string path = dir + "/pin-refusals";
  std::lock_guard lock(g_file_mutex);
  int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd < 0) return "cannot open " + path + ": " + std::strerror(errno);
  std::string problem;
  if (!trusted(fd)) {
    problem = path + " is not a regular file of uid " + std::to_string(thread_effective_uid()) +
              " with mode 0600";
  } else if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    problem = "cannot write " + path + ": " + std::strerror(errno);
  }
  close(fd);
  return problem;
}

void forget_refused_pins(const std::string& serial) {
  const std::string path = pin_refusal_file();
  if (path.empty()) return;
  std::lock_guard lock(g_file_mutex);
  const std::string want =
      hex(reinterpret_cast<const unsigned char*>(serial.data()), serial.size());
  std::istringstream in(read_all(path));
  std::string kept, line;
  bool dropped = false;
  while (std::getline(in, line)) {
    if (line.compare(0, want.size() + 1, want + " ") == 0) {
      dropped = true;
    } else if (!line.empty()) {
      kept += line + "\n";
    }
  }
  if (!dropped) return;
  if (kept.empty()) {
    unlink(path.c_str());
    return;
  }
  const std::string tmp = path + ".tmp";
  unlink(tmp.c_str());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return;
  bool ok = write(fd, kept.data(), kept.size()) == static_cast<ssize_t>(kept.size());
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) unlink(tmp.c_str());
}

}  // namespace mqsec::pkcs11
