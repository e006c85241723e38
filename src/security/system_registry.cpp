// The root-owned system registry: entry files, directory safety checks, administration and the
// receivers' cached lookups (see system_registry.hpp).
#include "src/security/system_registry.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <random>

#include "pkcs11/call_gate.hpp"
#include "src/security/log.hpp"
#include "src/security/openssl.hpp"

namespace mqsec::security {

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxEntrySize = 64 * 1024;
constexpr const char* kSuffix = ".toml";

std::string errno_text(int err) { return std::strerror(err); }

std::string mode_text(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// A TOML basic string (quotes included) for informational text: control characters escaped,
// bytes outside ASCII replaced by '?' (they may not be valid UTF-8).
std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else if (c >= 0x80) {
      out += '?';
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

toml::table parse_registry_toml(std::string_view text, const std::string& source) {
#if TOML_EXCEPTIONS
  try {
    return toml::parse(text, std::string_view(source));
  } catch (const toml::parse_error& e) {
    throw SystemRegistryError(SystemRegistryError::Kind::Malformed,
                              source + ": " + std::string(e.description()));
  }
#else
  toml::parse_result result = toml::parse(text, std::string_view(source));
  if (!result) {
    throw SystemRegistryError(SystemRegistryError::Kind::Malformed,
                              source + ": " + std::string(result.error().description()));
  }
  return std::move(result).table();
#endif
}

// Closes a file descriptor on every path.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Why a directory is not safe for a root-owned registry ("" when it is). `top`: the registry
// directory itself (no sticky-bit exception).
std::string unsafe_dir(const fs::path& p, const struct stat& st, bool top) {
  if (!S_ISDIR(st.st_mode)) return p.string() + " is not a directory";
  if (st.st_uid != 0) {
    return p.string() + " is owned by uid " + std::to_string(st.st_uid) + ", not root";
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (top || (st.st_mode & S_ISVTX) == 0)) {
    return p.string() + " is writable by group or others (mode " + mode_text(st.st_mode) + ")";
  }
  return {};
}

void fsync_dir(const fs::path& dir) {
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.fd < 0 || ::fsync(d.fd) != 0) {
    throw SystemRegistryError(SystemRegistryError::Kind::Io,
                              "cannot sync " + dir.string() + ": " + errno_text(errno));
  }
}

// mkdir -p with mode 0755 whatever the umask (only the directories it creates).
void create_dirs(const fs::path& dir) {
  fs::path p;
  for (const fs::path& part : dir) {
    p /= part;
    if (::mkdir(p.c_str(), 0755) == 0) {
      if (::chmod(p.c_str(), 0755) != 0) {
        throw SystemRegistryError(SystemRegistryError::Kind::Io,
                                  "cannot chmod " + p.string() + ": " + errno_text(errno));
      }
    } else if (errno != EEXIST) {
      throw SystemRegistryError(SystemRegistryError::Kind::Io,
                                "cannot create " + p.string() + ": " + errno_text(errno));
    }
  }
}

bool same_state(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_uid == b.st_uid &&
         a.st_mode == b.st_mode && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
         a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

}  // namespace

std::string system_registry_file_name(std::span<const uint8_t> cert_sha256) {
  if (cert_sha256.size() != 32) throw std::invalid_argument("a SHA-256 digest is 32 bytes");
  return hex(cert_sha256) + kSuffix;
}

std::optional<Bytes> system_registry_digest_of(std::string_view name) {
  const std::string_view suffix = kSuffix;
  if (name.size() != 64 + suffix.size() || name.substr(64) != suffix) return std::nullopt;
  Bytes out;
  for (size_t i = 0; i < 64; i += 2) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;  // upper case is not the canonical name
    };
    int hi = nibble(name[i]), lo = nibble(name[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<uint8_t>(hi << 4 | lo));
  }
  return out;
}

std::string format_system_registry_entry(std::span<const uint8_t> cert_der, const Sid& sid) {
  X509Ptr cert = parse_der_strict(cert_der);
  if (!cert) throw std::invalid_argument("not exactly one DER-encoded X.509 certificate");
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || PEM_write_bio_X509(bio.get(), cert.get()) != 1) {
    throw std::runtime_error("cannot PEM-encode the certificate: " + openssl_error());
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  std::string pem(data, static_cast<size_t>(n));
  return "# mqsec system registry entry (managed with `mqsec registry add|remove|list`).\n"
         "# The file name is the SHA-256 of the certificate's DER. Receivers trust this binding\n"
         "# only while this file and its directory are owned by root and writable by nobody "
         "else.\n"
         "sid = " +
         toml_string(sid.str()) + "\nsubject = " + toml_string(subject_string(cert.get())) +
         "  # informational\ncertificate = \"\"\"\n" + pem + "\"\"\"\n";
}

SystemRegistryEntry parse_system_registry_entry(std::string_view text,
                                                std::span<const uint8_t> expected_sha256,
                                                const std::string& source) {
  auto bad = [&](const std::string& why) -> SystemRegistryError {
    return SystemRegistryError(SystemRegistryError::Kind::Malformed, source + ": " + why);
  };
  toml::table t = parse_registry_toml(text, source);
  for (const auto& [key, node] : t) {
    if (key != "sid" && key != "subject" && key != "certificate") {
      throw bad("unknown key '" + std::string(key.str()) + "'");
    }
    if (!node.is_string()) throw bad(std::string(key.str()) + ": expected a string");
  }
  auto sid_text = t["sid"].value<std::string>();
  auto pem = t["certificate"].value<std::string>();
  if (!sid_text) throw bad("sid is missing");
  if (!pem) throw bad("certificate is missing");
  SystemRegistryEntry e;
  try {
    e.sid = Sid::from_string(*sid_text);
  } catch (const std::invalid_argument& ex) {
    throw bad("sid: " + std::string(ex.what()));
  }
  size_t begins = 0;
  for (size_t at = pem->find("-----BEGIN"); at != std::string::npos;
       at = pem->find("-----BEGIN", at + 1)) {
    ++begins;
  }
  if (begins != 1) throw bad("certificate: expected exactly one PEM certificate");
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())), BIO_free);
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  ERR_clear_error();
  if (!cert) throw bad("certificate: not a PEM certificate");
  e.cert_der = to_der(cert.get());
  if (!parse_der_strict(e.cert_der)) throw bad("certificate: not a valid DER certificate");
  e.cert_sha256 = sha256(e.cert_der);
  if (!expected_sha256.empty() && !std::equal(e.cert_sha256.begin(), e.cert_sha256.end(),
                                              expected_sha256.begin(), expected_sha256.end())) {
    throw bad("the certificate's SHA-256 is " + hex(e.cert_sha256) +
              ", not the one the file is named for");
  }
  e.subject = subject_string(cert.get());
  return e;
}

SystemRegistryDirState check_system_registry_dir(const fs::path& dir) {
  SystemRegistryDirState s;
  if (!dir.is_absolute()) {
    std::error_code ec;
    s.exists = fs::exists(dir, ec);
    s.problem = dir.string() + " is not an absolute path";
    return s;
  }
  std::error_code ec;
  fs::path real = fs::canonical(dir, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return s;  // missing: empty
    s.exists = true;
    s.problem = "cannot resolve " + dir.string() + ": " + ec.message();
    return s;
  }
  if (::stat(real.c_str(), &s.st) != 0) {
    if (errno == ENOENT) return s;
    s.exists = true;
    s.problem = "cannot stat " + real.string() + ": " + errno_text(errno);
    return s;
  }
  s.exists = true;
  s.problem = unsafe_dir(real, s.st, true);
  // Every directory above it: whoever may rename entries there may swap the registry.
  for (fs::path p = real.parent_path(); s.problem.empty(); p = p.parent_path()) {
    struct stat up {};
    if (::stat(p.c_str(), &up) != 0) {
      s.problem = "cannot stat " + p.string() + ": " + errno_text(errno);
      break;
    }
    s.problem = unsafe_dir(p, up, false);
    if (p == p.root_path() || p.empty()) break;
  }
  s.trusted = s.problem.empty();
  return s;
}

std::optional<SystemRegistryEntry> read_system_registry_entry(
    const fs::path& dir, std::span<const uint8_t> cert_sha256) {
  const fs::path path = dir / system_registry_file_name(cert_sha256);
  Fd f(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (f.fd < 0) {
    int err = errno;
    if (err == ENOENT) return std::nullopt;
    if (err == ELOOP) {
      throw SystemRegistryError(SystemRegistryError::Kind::Unsafe,
                                path.string() + " is a symbolic link");
    }
    throw SystemRegistryError(SystemRegistryError::Kind::Io,
                              "cannot open " + path.string() + ": " + errno_text(err));
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) {
    throw SystemRegistryError(SystemRegistryError::Kind::Io,
                              "cannot stat " + path.string() + ": " + errno_text(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    throw SystemRegistryError(SystemRegistryError::Kind::Unsafe,
                              path.string() + " is not a regular file");
  }
  if (st.st_uid != 0) {
    throw SystemRegistryError(
        SystemRegistryError::Kind::Unsafe,
        path.string() + " is owned by uid " + std::to_string(st.st_uid) + ", not root");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw SystemRegistryError(
        SystemRegistryError::Kind::Unsafe,
        path.string() + " is writable by group or others (mode " + mode_text(st.st_mode) + ")");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxEntrySize) {
    throw SystemRegistryError(SystemRegistryError::Kind::Malformed,
                              path.string() + " is larger than 64 KiB");
  }
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      throw SystemRegistryError(SystemRegistryError::Kind::Io,
                                "cannot read " + path.string() + ": " + errno_text(errno));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxEntrySize) {
      throw SystemRegistryError(SystemRegistryError::Kind::Malformed,
                                path.string() + " is larger than 64 KiB");
    }
  }
  SystemRegistryEntry e = parse_system_registry_entry(text, cert_sha256, path.string());
  e.file = path;
  return e;
}

SystemRegistryListing list_system_registry(const fs::path& dir) {
  SystemRegistryListing out;
  out.dir = check_system_registry_dir(dir);
  if (!out.dir.exists) return out;
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    files.push_back(it->path());
  }
  if (ec) {
    throw SystemRegistryError(SystemRegistryError::Kind::Io,
                              "cannot list " + dir.string() + ": " + ec.message());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& p : files) {
    const std::string name = p.filename().string();
    if (!name.empty() && name[0] == '.') continue;  // temporary files of an add in progress
    std::optional<Bytes> digest = system_registry_digest_of(name);
    if (!digest) {
      out.problems.emplace_back(p, "not named <sha256>.toml: ignored");
      continue;
    }
    try {
      if (auto e = read_system_registry_entry(dir, *digest)) out.entries.push_back(std::move(*e));
    } catch (const SystemRegistryError& e) {
      out.problems.emplace_back(p, e.what());
    }
  }
  return out;
}

SystemRegistryAdd add_to_system_registry(const fs::path& dir, std::span<const uint8_t> cert_der,
                                         const Sid& sid) {
  if (!dir.is_absolute()) {
    throw SystemRegistryError(SystemRegistryError::Kind::Unsafe,
                              dir.string() + " is not an absolute path");
  }
  std::string text;
  try {
    text = format_system_registry_entry(cert_der, sid);
  } catch (const std::invalid_argument& e) {
    throw SystemRegistryError(SystemRegistryError::Kind::Malformed, e.what());
  }
  const Bytes digest = sha256(cert_der);
  SystemRegistryDirState state = check_system_registry_dir(dir);
  if (!state.exists) {
    create_dirs(dir);
    state = check_system_registry_dir(dir);
  }
  if (!state.trusted) {
    throw SystemRegistryError(
        SystemRegistryError::Kind::Unsafe,
        state.problem.empty() ? dir.string() + " cannot be used" : state.problem);
  }
  auto existing = [&]() -> std::optional<SystemRegistryAdd> {
    std::optional<SystemRegistryEntry> e;
    try {
      e = read_system_registry_entry(dir, digest);
    } catch (const SystemRegistryError& ex) {
      throw SystemRegistryError(ex.kind(), std::string("the existing entry is not valid: ") +
                                               ex.what() + "; remove it first");
    }
    if (!e) return std::nullopt;
    if (e->sid == sid) return SystemRegistryAdd::AlreadyPresent;
    throw SystemRegistryError(
        SystemRegistryError::Kind::Conflict,
        "the certificate is registered to " + e->sid.str() + " already; remove it first");
  };
  if (auto r = existing()) return *r;

  const fs::path target = dir / system_registry_file_name(digest);
  std::random_device rd;
  const fs::path tmp = dir / ("." + target.filename().string() + ".tmp." +
                              std::to_string(::getpid()) + "." + std::to_string(rd()));
  {
    Fd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (f.fd < 0) {
      throw SystemRegistryError(SystemRegistryError::Kind::Io,
                                "cannot create " + tmp.string() + ": " + errno_text(errno));
    }
    auto fail = [&](const std::string& what) {
      int err = errno;
      ::unlink(tmp.c_str());
      throw SystemRegistryError(SystemRegistryError::Kind::Io,
                                what + " " + tmp.string() + ": " + errno_text(err));
    };
    if (::fchown(f.fd, 0, 0) != 0) fail("cannot chown");
    if (::fchmod(f.fd, 0644) != 0) fail("cannot chmod");
    for (size_t off = 0; off < text.size();) {
      ssize_t n = ::write(f.fd, text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("cannot write");
      off += static_cast<size_t>(n);
    }
    if (::fsync(f.fd) != 0) fail("cannot sync");
  }
  // link(2) never replaces a file: two concurrent adds cannot rebind a certificate.
  int rc = ::link(tmp.c_str(), target.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    if (err == EEXIST) {
      if (auto r = existing()) return *r;
    }
    throw SystemRegistryError(SystemRegistryError::Kind::Io,
                              "cannot create " + target.string() + ": " + errno_text(err));
  }
  fsync_dir(dir);
  return SystemRegistryAdd::Added;
}

bool remove_from_system_registry(const fs::path& dir, std::span<const uint8_t> cert_sha256) {
  const fs::path target = dir / system_registry_file_name(cert_sha256);
  if (::unlink(target.c_str()) != 0) {
    if (errno == ENOENT) return false;
    throw SystemRegistryError(SystemRegistryError::Kind::Io,
                              "cannot remove " + target.string() + ": " + errno_text(errno));
  }
  fsync_dir(dir);
  return true;
}

// ---- receivers' cached view ---------------------------------------------------------------

SystemRegistry::SystemRegistry(fs::path dir, std::chrono::milliseconds recheck,
                               std::chrono::milliseconds max_age)
    : dir_(std::move(dir)), recheck_(recheck), max_age_(max_age) {
  pkcs11::register_fork_mutex(mu_);
}

SystemRegistry::~SystemRegistry() { pkcs11::unregister_fork_lock(&mu_); }

uint64_t SystemRegistry::reads() const {
  std::lock_guard lock(mu_);
  return reads_;
}

// File system work happens outside the lock (it is a fork lock: held only briefly), and so does
// logging (the log has a fork lock of its own).
void SystemRegistry::refresh_if_due() {
  const Clock::time_point now = Clock::now();
  {
    std::lock_guard lock(mu_);
    if (checked_ && now - last_check_ < recheck_) return;
    last_check_ = now;  // the other threads keep using the cache meanwhile
  }
  SystemRegistryDirState s = check_system_registry_dir(dir_);
  std::string warning;
  {
    std::lock_guard lock(mu_);
    if (!checked_ || s.trusted != trusted_ || !same_state(s.st, dir_st_) ||
        now - cache_since_ >= max_age_) {
      cache_.clear();
      cache_since_ = now;
    }
    checked_ = true;
    trusted_ = s.trusted;
    dir_st_ = s.st;
    if (!s.trusted && s.exists && s.problem != warned_) {
      warned_ = s.problem;
      warning = s.problem;
    } else if (s.trusted || !s.exists) {
      warned_.clear();
    }
  }
  if (!warning.empty()) {
    log(LogLevel::Warning, "system registry " + dir_.string() +
                               " ignored: receivers trust it only when it is owned by root and "
                               "writable by nobody else: " +
                               warning);
  }
}

std::optional<Bytes> SystemRegistry::lookup(const Bytes& cert_sha256) {
  if (cert_sha256.size() != 32) return std::nullopt;
  refresh_if_due();
  {
    std::lock_guard lock(mu_);
    if (!trusted_) return std::nullopt;
    auto it = cache_.find(cert_sha256);
    if (it != cache_.end()) return it->second;
  }
  std::optional<Bytes> sid;
  std::string warning;
  try {
    if (auto e = read_system_registry_entry(dir_, cert_sha256)) sid = e->sid.bytes();
  } catch (const SystemRegistryError& e) {
    warning = e.what();
  }
  {
    std::lock_guard lock(mu_);
    ++reads_;
    if (cache_.size() >= 4096) cache_.clear();
    cache_[cert_sha256] = sid;  // a bad entry is cached as none: logged once
  }
  if (!warning.empty()) log(LogLevel::Warning, "system registry entry ignored: " + warning);
  return sid;
}

}  // namespace mqsec::security
