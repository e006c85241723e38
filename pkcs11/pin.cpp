// PIN sources and the self-wiping PIN container.
#include "pkcs11/pin.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "pkcs11/error.hpp"

namespace mqsec::pkcs11 {
namespace {

uid_t thread_euid() { return thread_effective_uid(); }

uid_t thread_ruid() { return thread_real_uid(); }

std::string decode_percent(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::strtol(s.substr(i + 1, 2).c_str(), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A secret file holds at most this many bytes; a longer one is refused rather than cut short.
constexpr size_t kMaxSecretBytes = 256;

SecretString read_secret_file(const std::string& path, const std::string& noun) {
  const std::string file = noun + " file '" + path + "'";
  // O_NOFOLLOW: a link planted in place of the file is not followed. O_NONBLOCK: opening a
  // FIFO returns at once instead of waiting for a writer (it is refused just below).
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    if (err == ELOOP) {
      throw Error(file +
                  " is a symbolic link; refusing it (name the file itself, owned by the user, "
                  "mode 0600)");
    }
    if (err == ENXIO) throw Error(file + " is a socket, not a regular file");
    throw Error("cannot open " + file + ": " + std::strerror(err) +
                " (create it, owned by the user, mode 0600)");
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    throw Error("cannot examine " + file + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    const char* kind = S_ISFIFO(st.st_mode)                           ? "a FIFO"
                       : (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) ? "a device"
                       : S_ISSOCK(st.st_mode)                         ? "a socket"
                       : S_ISDIR(st.st_mode)                          ? "a directory"
                                                                      : "not a regular file";
    throw Error(file + " is " + kind + "; refusing it (a " + noun +
                " file must be a regular file owned by the user, mode 0600)");
  }
  if (st.st_uid != thread_euid()) {
    close(fd);
    throw Error(file + " is owned by uid " + std::to_string(st.st_uid) +
                ", not by the calling user (uid " + std::to_string(thread_euid()) +
                "); chown it to the user");
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    throw Error(file + " is accessible by group or others; run chmod 600 '" + path + "'");
  }
  std::string buf(kMaxSecretBytes + 1, '\0');
  ssize_t n;
  do {
    n = read(fd, buf.data(), buf.size());
  } while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  SecretString holder(std::move(buf));  // wipes the whole buffer whatever happens next
  if (n < 0) throw Error("cannot read " + file + ": " + std::strerror(err));
  if (static_cast<size_t>(n) > kMaxSecretBytes) {
    throw Error(file + " is longer than " + std::to_string(kMaxSecretBytes) + " bytes");
  }
  std::string secret(holder.str().data(), static_cast<size_t>(n));
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  SecretString result(std::move(secret));
  if (result.empty()) throw Error(file + " is empty");
  return result;
}

}  // namespace

uid_t thread_effective_uid() noexcept {
  uid_t r = 0, e = 0, s = 0;
  syscall(SYS_getresuid, &r, &e, &s);
  return e;
}

uid_t thread_real_uid() noexcept {
  uid_t r = 0, e = 0, s = 0;
  syscall(SYS_getresuid, &r, &e, &s);
  return r;
}

SecretString::SecretString(SecretString&& o) noexcept : s_(std::move(o.s_)) { o.wipe(); }

SecretString& SecretString::operator=(SecretString&& o) noexcept {
  if (this != &o) {
    wipe();
    s_ = std::move(o.s_);
    o.wipe();
  }
  return *this;
}

SecretString::~SecretString() { wipe(); }

void SecretString::wipe() noexcept {
  if (!s_.empty()) OPENSSL_cleanse(s_.data(), s_.size());
  s_.clear();
}

SecretSource parse_secret_source(const std::string& source, bool percent_escapes) {
  SecretSource out;
  if (source.rfind("file:", 0) == 0) {
    out.type = SecretSource::Type::File;
    out.name = percent_escapes ? decode_percent(source.substr(5)) : source.substr(5);
    if (out.name.rfind("//", 0) == 0) out.name = out.name.substr(2);  // file:///path
    if (out.name.empty() || out.name[0] != '/') {
      out.problem = "'" + source + "' must name an absolute path (file:/path/to/file)";
    }
  } else if (source.rfind("env:", 0) == 0) {
    out.type = SecretSource::Type::Env;
    out.name = source.substr(4);
    if (out.name.empty() || out.name.find('=') != std::string::npos) {
      out.problem = "'" + source + "' must name an environment variable (env:NAME)";
    }
  } else {
    // Not repeated: a secret written where its source belongs would end up in the message.
    out.problem =
        "unsupported source (not shown: it may be the secret itself): use file:<absolute path> "
        "or env:<VARIABLE>";
  }
  return out;
}

SecretString read_secret(const std::string& source, const SecretKind& kind) {
  const SecretSource parsed = parse_secret_source(source, kind.percent_escapes);
  if (!parsed.problem.empty()) throw Error(kind.setting + " " + parsed.problem);
  if (parsed.type == SecretSource::Type::File) return read_secret_file(parsed.name, kind.noun);
  const std::string& name = parsed.name;
  if (uid_t e = thread_euid(), r = thread_ruid(); e != r) {
    throw Error(kind.setting + " env:" + name + " cannot be used by a thread running as uid " +
                std::to_string(e) + " on behalf of a process of uid " + std::to_string(r) +
                ": the environment is the process's, not the user's; use a file:<path> " +
                kind.setting + " (owned by the user, mode 0600)");
  }
  // secure_getenv: in a setuid or setgid program the environment is the caller's to set.
  const char* v = secure_getenv(name.c_str());
  if (v == nullptr || *v == '\0') {
    throw Error(kind.setting + " env:" + name + ": the environment variable " + name +
                " is not set or empty");
  }
  return SecretString(std::string(v));
}

SecretString read_pin(const std::string& source) {
  return read_secret(source, SecretKind{"PIN", "pin-source", true});
}

}  // namespace mqsec::pkcs11
