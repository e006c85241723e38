// System config and user profile: strict TOML parsing with toml++ (every error names file,
// line, column and key), the profile directory rules, and the atomic profile writer.
#include "src/security/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <utility>
#include <vector>

#include "mqsec/error.hpp"
#include "src/security/secret_source.hpp"

namespace mqsec::security {

namespace {

namespace fs = std::filesystem;

constexpr const char* kDefaultConfig = "/etc/mqsec/mqsec.toml";
// Configuration files are small; a cap keeps a mistaken path (a log, a device) from being
// slurped into memory.
constexpr size_t kMaxFileSize = 1 << 20;

std::string where(const std::string& source, const toml::source_position& pos) {
  if (pos.line == 0) return source;
  return source + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
}

[[noreturn]] void config_error(const std::string& source, const toml::source_position& pos,
                               std::string_view key, std::string_view problem) {
  throw ConfigError(where(source, pos) + ": " + std::string(key) + ": " + std::string(problem));
}

toml::table parse_toml(std::string_view text, const std::string& source) {
  // toml++ reports syntax errors by exception when TOML_EXCEPTIONS is on (the default with a
  // compiler that has exceptions, and how Debian's libtomlplusplus is built) and through
  // parse_result otherwise; handle both so the build flags cannot change behaviour.
#if TOML_EXCEPTIONS
  try {
    return toml::parse(text, std::string_view(source));
  } catch (const toml::parse_error& e) {
    throw ConfigError(where(source, e.source().begin) + ": " + std::string(e.description()));
  }
#else
  toml::parse_result result = toml::parse(text, std::string_view(source));
  if (!result) {
    const toml::parse_error& e = result.error();
    throw ConfigError(where(source, e.source().begin) + ": " + std::string(e.description()));
  }
  return std::move(result).table();
#endif
}

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// Walks one parsed file; knows its name for error messages.
class Reader {
 public:
  explicit Reader(const std::string& source) : source_(source) {}

  // Position of a key: where the key is written (what an operator looks for), else the value.
  static const toml::source_position& pos(const toml::key& k, const toml::node& n) {
    return k.source().begin.line != 0 ? k.source().begin : n.source().begin;
  }

  [[noreturn]] void fail(const toml::key& k, const toml::node& n, std::string_view path,
                         std::string_view problem) const {
    config_error(source_, pos(k, n), path, problem);
  }

  [[noreturn]] void unknown(const toml::key& k, const toml::node& n, const std::string& path,
                            std::string_view known) const {
    fail(k, n, path, "unknown key '" + path + "' (expected " + std::string(known) + ")");
  }

  const toml::table& table(const toml::key& k, const toml::node& n, std::string_view path) const {
    if (!n.is_table()) fail(k, n, path, "expected a table, not " + std::string(type_name(n)));
    return *n.as_table();
  }

  std::string string(const toml::key& k, const toml::node& n, std::string_view path) const {
    if (!n.is_string()) fail(k, n, path, "expected a string, not " + std::string(type_name(n)));
    std::string s = n.as_string()->get();
    // A NUL would silently truncate the value at the next system call.
    if (s.find('\0') != std::string::npos) fail(k, n, path, "must not contain NUL characters");
    return s;
  }

  // A non-negative integer no greater than `max`.
  int64_t integer(const toml::key& k, const toml::node& n, std::string_view path,
                  int64_t max) const {
    if (!n.is_integer()) fail(k, n, path, "expected an integer, not " + std::string(type_name(n)));
    const int64_t v = n.as_integer()->get();
    if (v < 0 || v > max)
      fail(k, n, path,
           "must be between 0 and " + std::to_string(max) + ", not " + std::to_string(v));
    return v;
  }

  // An absolute path given as a string.
  std::filesystem::path absolute_path(const toml::key& k, const toml::node& n,
                                      std::string_view path) const {
    std::string p = string(k, n, path);
    if (p.empty() || p[0] != '/') fail(k, n, path, "must be an absolute path");
    return p;
  }

  // An array of strings (an empty array is allowed).
  std::vector<std::string> strings(const toml::key& k, const toml::node& n,
                                   std::string_view path) const {
    if (!n.is_array())
      fail(k, n, path, "expected an array of strings, not " + std::string(type_name(n)));
    std::vector<std::string> out;
    for (const toml::node& e : *n.as_array()) {
      if (!e.is_string())
        config_error(
            source_, e.source().begin, path,
            "expected an array of strings, but an element is " + std::string(type_name(e)));
      std::string s = e.as_string()->get();
      if (s.find('\0') != std::string::npos)
        config_error(source_, e.source().begin, path, "must not contain NUL characters");
      out.push_back(std::move(s));
    }
    return out;
  }

  // An array of absolute paths.
  std::vector<std::filesystem::path> paths(const toml::key& k, const toml::node& n,
                                           std::string_view path) const {
    std::vector<std::filesystem::path> out;
    for (std::string& s : strings(k, n, path)) {
      if (s.empty() || s[0] != '/')
        fail(k, n, path, "every entry must be an absolute path, not \"" + s + "\"");
      out.emplace_back(std::move(s));
    }
    return out;
  }

  bool boolean(const toml::key& k, const toml::node& n, std::string_view path) const {
    if (!n.is_boolean())
      fail(k, n, path, "expected a boolean (true or false), not " + std::string(type_name(n)));
    return n.as_boolean()->get();
  }

  // A PKCS#11 URI as configuration may hold it. Full parsing (p11-kit) happens when the token
  // is opened; here we catch the mistakes worth stopping at load time.
  std::string pkcs11_uri(const toml::key& k, const toml::node& n, std::string_view path) const {
    std::string s = string(k, n, path);
    if (s.size() < 7 || strncasecmp(s.c_str(), "pkcs11:", 7) != 0)
      fail(k, n, path, "expected a PKCS#11 URI (RFC 7512) starting with \"pkcs11:\"");
    if (has_pin_value(s))
      fail(k, n, path,
           "the URI carries pin-value: PINs do not belong in configuration files; use "
           "pin-source=file:<path> or pin-source=env:<NAME>");
    return s;
  }

  static bool has_pin_value(std::string_view raw) {
    // p11-kit's parser skips white space, so "pin-value =1" counts too: look without it.
    std::string squeezed;
    for (char c : raw) {
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') squeezed += c;
    }
    std::string_view uri = squeezed;
    // Attributes are separated by ';' (path) and '&' (query), the query starts at '?'.
    for (size_t i = 0; (i = uri.find("pin-value", i)) != std::string_view::npos; i += 9) {
      const char before = i == 0 ? ';' : uri[i - 1];
      if ((before == ';' || before == '?' || before == '&' || before == ':') &&
          i + 9 < uri.size() && uri[i + 9] == '=')
        return true;
    }
    return false;
  }

 private:
  const std::string& source_;
};

// %u and %% are the only placeholders; anything else is probably a typo for %u.
std::string check_placeholders(std::string_view dir) {
  for (size_t i = 0; i < dir.size(); ++i) {
    if (dir[i] != '%') continue;
    if (i + 1 < dir.size() && (dir[i + 1] == 'u' || dir[i + 1] == '%')) {
      ++i;
      continue;
    }
    return i + 1 < dir.size() ? "unknown placeholder '%" + std::string(1, dir[i + 1]) +
                                    "' (only %u, the user name, and %% are supported)"
                              : "a lone '%' at the end (write %% for a literal percent sign)";
  }
  return {};
}

enum class ReadStatus { Ok, Missing, Failed };

// Reads a whole regular file. `error` gets a description on Failed.
ReadStatus read_file(const fs::path& path, std::string& out, std::string& error) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int e = errno;
    error = std::strerror(e);
    return (e == ENOENT || e == ENOTDIR) ? ReadStatus::Missing : ReadStatus::Failed;
  }
  struct stat st {};
  ReadStatus status = ReadStatus::Ok;
  if (fstat(fd, &st) != 0) {
    error = std::strerror(errno);
    status = ReadStatus::Failed;
  } else if (!S_ISREG(st.st_mode)) {
    error = "not a regular file";
    status = ReadStatus::Failed;
  } else if (static_cast<size_t>(st.st_size) > kMaxFileSize) {
    error = "larger than 1 MiB, which no mqsec configuration file is";
    status = ReadStatus::Failed;
  } else {
    out.clear();
    char buf[8192];
    while (true) {
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = std::strerror(errno);
        status = ReadStatus::Failed;
        break;
      }
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
      if (out.size() > kMaxFileSize) {
        error = "larger than 1 MiB, which no mqsec configuration file is";
        status = ReadStatus::Failed;
        break;
      }
    }
  }
  close(fd);
  return status;
}

[[noreturn]] void cannot_write(const fs::path& path, const std::string& what, int err) {
  throw Error(MQ_ERROR_CANNOT_CREATE_CERT_STORE, "cannot write the user profile: " + what + " " +
                                                     path.string() + ": " + std::strerror(err));
}

// mkdir -p with mode 0700 for every directory it creates; existing ones are left as they are
// (an administrator may have prepared them with other modes or owners).
void make_dirs(const fs::path& dir) {
  fs::path partial;
  for (const fs::path& part : dir) {
    partial /= part;
    if (mkdir(partial.c_str(), 0700) == 0) continue;
    const int e = errno;
    struct stat st {};
    if (e == EEXIST && stat(partial.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    cannot_write(partial, "cannot create the directory", e == EEXIST ? ENOTDIR : e);
  }
}

// Writes `content` to `file` through a temporary file in the same directory: create (0600),
// write, fsync, rename, fsync the directory.
void write_atomically(const fs::path& file, const std::string& content) {
  const fs::path dir = file.parent_path();
  std::string tmpl = (dir / ("." + file.filename().string() + ".XXXXXX")).string();
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) cannot_write(dir, "cannot create a temporary file in", errno);
  const fs::path tmp(name.data());
  auto fail = [&](const char* what, int err) {
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    cannot_write(file, what, err);
  };
  // mkostemp already uses 0600; say so explicitly in case a libc ever differs.
  if (fchmod(fd, 0600) != 0) fail("cannot set mode 0600 on", errno);
  for (size_t done = 0; done < content.size();) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot write", errno);
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) fail("cannot flush", errno);
  const int rc = close(fd);
  fd = -1;
  if (rc != 0) fail("cannot write", errno);
  if (rename(tmp.c_str(), file.c_str()) != 0) fail("cannot replace", errno);
  // Make the rename itself durable; failure here does not undo a completed write.
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

constexpr int64_t kMaxSeconds = int64_t{100} * 365 * 24 * 3600;
constexpr int64_t kMaxBytes = int64_t{1} << 40;

void parse_trust(const Reader& r, const toml::key& key, const toml::node& node, TrustConfig& t) {
  const std::string name(key.str());
  for (auto&& [k, v] : r.table(key, node, name)) {
    const std::string path = name + "." + std::string(k.str());
    if (k == "anchors") {
      t.anchors = r.paths(k, v, path);
    } else if (k == "intermediates") {
      t.intermediates = r.paths(k, v, path);
    } else if (k == "crl") {
      t.crl = r.paths(k, v, path);
    } else if (k == "ocsp") {
      std::string s = r.string(k, v, path);
      if (s != "off" && s != "aia" && s.rfind("http://", 0) != 0)
        r.fail(k, v, path, "expected \"off\", \"aia\" or an http:// URL, not \"" + s + "\"");
      t.ocsp = s;
    } else if (k == "revocation") {
      std::string s = r.string(k, v, path);
      if (s == "soft-fail")
        t.revocation = RevocationMode::SoftFail;
      else if (s == "hard-fail")
        t.revocation = RevocationMode::HardFail;
      else
        r.fail(k, v, path, "expected \"soft-fail\" or \"hard-fail\", not \"" + s + "\"");
    } else if (k == "require") {
      std::string s = r.string(k, v, path);
      auto req = parse_trust_require(s);
      if (!req)
        r.fail(k, v, path,
               "expected \"signature\", \"chain\" or \"chain+revocation\", not \"" + s + "\"");
      t.require = req;
    } else if (k == "extended-key-usage") {
      t.extended_key_usage = r.strings(k, v, path);
    } else if (k == "registry") {
      t.registry = r.absolute_path(k, v, path);
    } else if (k == "ocsp-timeout-ms") {
      t.ocsp_timeout_ms = r.integer(k, v, path, 600000);
    } else if (k == "replay-window") {
      t.replay_window_seconds = r.integer(k, v, path, kMaxSeconds);
    } else if (k == "max-clock-skew") {
      t.max_clock_skew_seconds = r.integer(k, v, path, kMaxSeconds);
    } else {
      r.unknown(k, v, path,
                "anchors, intermediates, crl, ocsp, revocation, require, extended-key-usage, "
                "registry, ocsp-timeout-ms, replay-window or max-clock-skew");
    }
  }
}

void parse_limits(const Reader& r, const toml::key& key, const toml::node& node, LimitsConfig& l) {
  const std::string name(key.str());
  for (auto&& [k, v] : r.table(key, node, name)) {
    const std::string path = name + "." + std::string(k.str());
    if (k == "max-message-body") {
      l.max_message_body = static_cast<uint64_t>(r.integer(k, v, path, kMaxBytes));
    } else if (k == "rejected-max-count") {
      l.rejected_max_count = static_cast<uint64_t>(r.integer(k, v, path, kMaxBytes));
    } else if (k == "rejected-max-bytes") {
      l.rejected_max_bytes = static_cast<uint64_t>(r.integer(k, v, path, kMaxBytes));
    } else if (k == "rejected-max-age") {
      l.rejected_max_age_seconds = r.integer(k, v, path, kMaxSeconds);
    } else if (k == "rejected-body-prefix") {
      l.rejected_body_prefix = static_cast<uint64_t>(r.integer(k, v, path, kMaxBytes));
    } else {
      r.unknown(k, v, path,
                "max-message-body, rejected-max-count, rejected-max-bytes, rejected-max-age or "
                "rejected-body-prefix");
    }
  }
}

constexpr int64_t kMaxConnectTimeoutMs = 600000;

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// A value for an error message: control and non-ASCII bytes shown as '?'.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

// Splits an amqp:// or amqps:// URL into b.scheme, b.host and b.port; "" or the problem.
std::string parse_broker_url(const std::string& url, BrokerConfig& b) {
  const std::string usage = "expected amqp://host[:port] or amqps://host[:port]";
  // A user name or password in the URL: not shown, the password would be in the message.
  if (url.find('@') != std::string::npos)
    return "the URL must not carry a user name or password (the URL is not shown); set "
           "broker.user and broker.password-source instead";
  const std::string quoted = "\"" + printable(url) + "\"";
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return usage + ", not " + quoted + " (no spaces or control characters)";
  }
  const size_t sep = url.find("://");
  b.scheme = sep == std::string::npos ? "" : lower(url.substr(0, sep));
  if (b.scheme != "amqp" && b.scheme != "amqps") return usage + ", not " + quoted;
  const std::string rest = url.substr(sep + 3);
  const size_t end = rest.find_first_of("/?#");
  if (end != std::string::npos && rest.substr(end) != "/")
    return usage + ", not " + quoted +
           ": the URL names the broker only (no path, query or fragment)";
  const std::string authority = rest.substr(0, end);
  std::string port;
  bool has_port = false;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos)
      return quoted + ": an IPv6 address needs its closing ']' (amqp://[::1]:5672)";
    b.host = authority.substr(1, close - 1);
    in6_addr addr{};
    if (inet_pton(AF_INET6, b.host.c_str(), &addr) != 1)
      return quoted + ": \"" + printable(b.host) + "\" in brackets is not an IPv6 address";
    const std::string after = authority.substr(close + 1);
    if (!after.empty() && after[0] != ':')
      return usage + ", not " + quoted + " (only ':port' may follow ']')";
    has_port = !after.empty();
    if (has_port) port = after.substr(1);
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string::npos && authority.find(':', colon + 1) != std::string::npos)
      return quoted + ": write an IPv6 address in brackets (amqp://[::1]:5672)";
    b.host = authority.substr(0, colon);
    has_port = colon != std::string::npos;
    if (has_port) port = authority.substr(colon + 1);
    if (b.host.empty()) return usage + ", not " + quoted + ": the host is missing";
    if (b.host.size() > 253) return quoted + ": the host name is longer than 253 characters";
    for (char c : b.host) {
      if (!is_alnum(c) && c != '-' && c != '.' && c != '_')
        return quoted + ": the host may contain only letters, digits, '-', '_' and '.'";
    }
  }
  b.port = b.scheme == "amqps" ? 5671 : 5672;
  if (has_port) {
    unsigned long value = 0;
    bool digits = !port.empty() && port.size() <= 5;
    for (char c : port) {
      digits = digits && c >= '0' && c <= '9';
      if (digits) value = value * 10 + static_cast<unsigned long>(c - '0');
    }
    if (!digits || value < 1 || value > 65535)
      return quoted + ": the port must be a number from 1 to 65535 (default: 5672 for amqp, " +
             "5671 for amqps)";
    b.port = static_cast<uint16_t>(value);
  }
  return "";
}

// Where a key was written, for checks made after its table has been read.
struct KeyAt {
  const toml::key* key = nullptr;
  const toml::node* node = nullptr;
  explicit operator bool() const noexcept { return key != nullptr; }
};

void parse_broker_tls(const Reader& r, const toml::key& key, const toml::node& node,
                      const std::string& name, BrokerTlsConfig& tls, KeyAt& cert, KeyAt& k_key) {
  for (auto&& [k, v] : r.table(key, node, name)) {
    const std::string path = name + "." + std::string(k.str());
    if (k == "ca") {
      tls.ca = r.absolute_path(k, v, path);
    } else if (k == "cert") {
      tls.cert = r.absolute_path(k, v, path);
      cert = {&k, &v};
    } else if (k == "key") {
      tls.key = r.absolute_path(k, v, path);
      k_key = {&k, &v};
    } else {
      r.unknown(k, v, path, "ca, cert or key");
    }
  }
}

BrokerConfig parse_broker(const Reader& r, const toml::key& key, const toml::node& node) {
  const std::string name(key.str());
  BrokerConfig b;
  KeyAt url, user, source, tls, cert, tls_key;
  for (auto&& [k, v] : r.table(key, node, name)) {
    const std::string path = name + "." + std::string(k.str());
    if (k == "url") {
      b.url = r.string(k, v, path);
      if (std::string problem = parse_broker_url(b.url, b); !problem.empty())
        r.fail(k, v, path, problem);
      url = {&k, &v};
    } else if (k == "user") {
      b.user = r.string(k, v, path);
      if (b.user.empty()) r.fail(k, v, path, "must not be empty (remove the key for no user)");
      for (char c : b.user) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
          r.fail(k, v, path, "must not contain control characters");
      }
      user = {&k, &v};
    } else if (k == "password-source") {
      b.password_source = r.string(k, v, path);
      if (std::string problem = secret_source_problem(b.password_source); !problem.empty())
        r.fail(k, v, path, problem);
      source = {&k, &v};
    } else if (k == "password") {
      // Never repeat the value: it is the password.
      r.fail(k, v, path,
             "passwords do not belong in configuration files (the value is not shown); use "
             "password-source = \"file:<path>\" (a file owned by the user that reads it, mode "
             "0600) or password-source = \"env:<NAME>\"");
    } else if (k == "connect-timeout-ms") {
      b.connect_timeout_ms = r.integer(k, v, path, kMaxConnectTimeoutMs);
      if (b.connect_timeout_ms == 0) r.fail(k, v, path, "must be at least 1");
    } else if (k == "request-timeout-ms") {
      b.request_timeout_ms = r.integer(k, v, path, kMaxConnectTimeoutMs);
      if (b.request_timeout_ms == 0) r.fail(k, v, path, "must be at least 1");
    } else if (k == "tls") {
      parse_broker_tls(r, k, v, path, b.tls, cert, tls_key);
      tls = {&k, &v};
    } else {
      r.unknown(
          k, v, path,
          "url, user, password-source, connect-timeout-ms, request-timeout-ms or the table [" +
              name + ".tls]");
    }
  }
  if (!url)
    r.fail(key, node, name + ".url",
           "missing: [" + name +
               "] needs url = \"amqp://host:5672\" (or remove [broker] to run without a broker)");
  if (user && !source)
    r.fail(*user.key, *user.node, name + ".password-source",
           "missing: " + name +
               ".user needs password-source = \"file:<path>\" or \"env:<NAME>\" (both or "
               "neither)");
  if (source && !user)
    r.fail(*source.key, *source.node, name + ".user",
           "missing: " + name + ".password-source needs user = \"<name>\" (both or neither)");
  if (tls && !b.uses_tls())
    r.fail(*tls.key, *tls.node, name + ".tls",
           "TLS settings need an amqps:// URL, and " + name + ".url is amqp://");
  if (cert && !tls_key)
    r.fail(*cert.key, *cert.node, name + ".tls.key",
           "missing: a client certificate needs its private key (set cert and key, or neither)");
  if (tls_key && !cert)
    r.fail(*tls_key.key, *tls_key.node, name + ".tls.cert",
           "missing: a private key needs its client certificate (set cert and key, or neither)");
  return b;
}

// [signing] of the system configuration (limit non-null: batch-limit is allowed there) or of a
// user profile (limit null).
void parse_signing(const Reader& r, const toml::key& key, const toml::node& node,
                   SigningOverrides& out, uint32_t* limit) {
  const std::string name(key.str());
  for (auto&& [k, v] : r.table(key, node, name)) {
    const std::string path = name + "." + std::string(k.str());
    if (k == "batch-max-messages" || (limit != nullptr && k == "batch-limit")) {
      const int64_t n = r.integer(k, v, path, 65536);
      if (n < 1) r.fail(k, v, path, "must be 1 (no batching) to 65536");
      if (k == "batch-limit") {
        *limit = static_cast<uint32_t>(n);
      } else {
        out.batch_max_messages = static_cast<uint32_t>(n);
      }
    } else if (k == "batch-max-delay-ms") {
      out.batch_max_delay_ms = r.integer(k, v, path, 10000);
    } else if (k == "batch-wait") {
      out.batch_wait = r.boolean(k, v, path);
    } else if (limit == nullptr && k == "batch-limit") {
      r.fail(k, v, path,
             "is set by the administrator in the system configuration, not in a user profile");
    } else {
      r.unknown(k, v, path,
                limit != nullptr ? "batch-max-messages, batch-max-delay-ms, batch-wait or "
                                   "batch-limit"
                                 : "batch-max-messages, batch-max-delay-ms or batch-wait");
    }
  }
}

void parse_agent(const Reader& r, const toml::key& key, const toml::node& node, AgentConfig& a) {
  const std::string name(key.str());
  for (auto&& [k, v] : r.table(key, node, name)) {
    const std::string path = name + "." + std::string(k.str());
    if (k == "expiry-sweep-seconds") {
      a.expiry_sweep_seconds = r.integer(k, v, path, 3600);
      continue;
    }
    if (k != "remote-read") r.unknown(k, v, path, "remote-read or expiry-sweep-seconds");
    a.remote_read.clear();
    for (std::string q : r.strings(k, v, path)) {
      // A private queue's name as it is stored: 1 to 124 characters, no '\', '/' or control
      // characters; case-insensitive (kept lower-case).
      const bool ok =
          !q.empty() && q.size() <= 124 && std::none_of(q.begin(), q.end(), [](unsigned char c) {
            return c < 0x20 || c == 0x7f || c == '\\' || c == '/';
          });
      if (!ok)
        r.fail(k, v, path,
               "\"" + printable(q) +
                   "\" is not a queue name: write the private queue's name (\"inbox\" for "
                   ".\\private$\\inbox), 1 to 124 characters without '\\', '/' or control "
                   "characters");
      a.remote_read.push_back(lower(std::move(q)));
    }
  }
}

}  // namespace

namespace {
constexpr std::pair<TrustRequire, const char*> kRequireNames[] = {
    {TrustRequire::Signature, "signature"},
    {TrustRequire::Chain, "chain"},
    {TrustRequire::ChainRevocation, "chain+revocation"}};
}  // namespace

std::optional<TrustRequire> parse_trust_require(std::string_view text) {
  for (const auto& [value, name] : kRequireNames) {
    if (text == name) return value;
  }
  return std::nullopt;
}

const char* to_string(TrustRequire r) noexcept {
  for (const auto& [value, name] : kRequireNames) {
    if (r == value) return name;
  }
  return "signature";
}

std::string machine_name_problem(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && is_alnum(name[0]);
  for (char c : name) ok = ok && (is_alnum(c) || c == '-' || c == '_' || c == '.');
  if (ok) return "";
  return "\"" + printable(name) +
         "\" is not a valid machine name: use 1 to 63 letters, digits, '-', '_' or '.', "
         "beginning with a letter or a digit";
}

std::string host_machine_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return lower(buf);
}

fs::path system_config_path() {
  const char* env = secure_getenv("MQSEC_CONFIG");
  if (env != nullptr && *env != '\0') return fs::path(env);
  return fs::path(kDefaultConfig);
}

SystemConfig parse_system_config(std::string_view text, const std::string& source_name,
                                 const std::optional<std::string>& host_name) {
  const toml::table root = parse_toml(text, source_name);
  const Reader r(source_name);
  SystemConfig cfg;
  cfg.source = source_name;
  KeyAt broker;

  for (auto&& [key, node] : root) {
    const std::string name(key.str());
    if (name == "token") {
      for (auto&& [k, v] : r.table(key, node, name)) {
        const std::string path = name + "." + std::string(k.str());
        if (k == "uri")
          cfg.token_uri = r.pkcs11_uri(k, v, path);
        else if (k == "allow-extractable-keys")
          cfg.allow_extractable_keys = r.boolean(k, v, path);
        else if (k == "allowed-modules")
          cfg.allowed_modules = r.paths(k, v, path);
        else
          r.unknown(k, v, path, "uri, allow-extractable-keys or allowed-modules");
      }
    } else if (name == "store") {
      for (auto&& [k, v] : r.table(key, node, name)) {
        const std::string path = name + "." + std::string(k.str());
        if (k != "path") r.unknown(k, v, path, "path");
        std::string p = r.string(k, v, path);
        if (p.empty() || p[0] != '/')
          r.fail(k, v, path, "must be an absolute path, e.g. \"/var/lib/mqsec\"");
        cfg.store_path = p;
      }
    } else if (name == "profiles") {
      for (auto&& [k, v] : r.table(key, node, name)) {
        const std::string path = name + "." + std::string(k.str());
        if (k != "dir") r.unknown(k, v, path, "dir");
        std::string d = r.string(k, v, path);
        if (d.empty() || d[0] != '/')
          r.fail(k, v, path, "must be an absolute path, e.g. \"/etc/mqsec/users/%u\"");
        if (std::string problem = check_placeholders(d); !problem.empty())
          r.fail(k, v, path, problem);
        cfg.profiles_dir = d;
      }
    } else if (name == "identity") {
      for (auto&& [k, v] : r.table(key, node, name)) {
        const std::string path = name + "." + std::string(k.str());
        if (k != "sid") r.unknown(k, v, path, "sid");
        const std::string s = r.string(k, v, path);
        if (s == "auto")
          cfg.sid_source = SidSource::Auto;
        else if (s == "unix")
          cfg.sid_source = SidSource::Unix;
        else if (s == "sssd")
          cfg.sid_source = SidSource::Sssd;
        else if (s == "winbind")
          cfg.sid_source = SidSource::Winbind;
        else
          r.fail(k, v, path,
                 "unknown SID source \"" + s +
                     "\" (expected \"auto\", \"unix\", \"sssd\" or "
                     "\"winbind\")");
      }
    } else if (name == "security") {
      for (auto&& [k, v] : r.table(key, node, name)) {
        const std::string path = name + "." + std::string(k.str());
        if (k != "allow-weak-hash") r.unknown(k, v, path, "allow-weak-hash");
        cfg.allow_weak_hash = r.boolean(k, v, path);
      }
    } else if (name == "trust") {
      parse_trust(r, key, node, cfg.trust);
    } else if (name == "limits") {
      parse_limits(r, key, node, cfg.limits);
    } else if (name == "machine") {
      for (auto&& [k, v] : r.table(key, node, name)) {
        const std::string path = name + "." + std::string(k.str());
        if (k != "name") r.unknown(k, v, path, "name");
        const std::string n = r.string(k, v, path);
        if (std::string problem = machine_name_problem(n); !problem.empty())
          r.fail(k, v, path, problem);
        cfg.machine.name = lower(n);
      }
    } else if (name == "broker") {
      cfg.broker = parse_broker(r, key, node);
      broker = {&key, &node};
    } else if (name == "agent") {
      parse_agent(r, key, node, cfg.agent);
    } else if (name == "signing") {
      SigningOverrides o;
      parse_signing(r, key, node, o, &cfg.signing.batch_limit);
      cfg.signing = o.applied_to(cfg.signing);
    } else {
      r.unknown(key, node, name,
                "one of the tables [token], [store], [profiles], [identity], "
                "[security], [trust], [limits], [machine], [broker], [agent], [signing]");
    }
  }
  if (cfg.machine.name.empty()) {
    const std::string host = lower(host_name ? *host_name : host_machine_name());
    cfg.machine.from_host_name = true;
    cfg.machine.host_name_problem = machine_name_problem(host);
    if (cfg.machine.host_name_problem.empty())
      cfg.machine.name = host;
    else if (broker)
      r.fail(*broker.key, *broker.node, "machine.name",
             "not set, and the host name cannot be the machine name: " +
                 cfg.machine.host_name_problem + "; set [machine] name");
  }
  if (cfg.trust.require && *cfg.trust.require != TrustRequire::Signature &&
      cfg.trust.anchors.empty())
    throw ConfigError(source_name + ": trust.require: \"" + to_string(*cfg.trust.require) +
                      "\" needs trust anchors: set [trust] anchors = [\"/etc/mqsec/trust/\"]");
  return cfg;
}

SystemConfig load_system_config() {
  const fs::path path = system_config_path();
  std::string text, error;
  switch (read_file(path, text, error)) {
    case ReadStatus::Ok:
      return parse_system_config(text, path.string());
    case ReadStatus::Missing:
      // No file at the default location is a valid installation: built-in defaults. A path
      // someone named explicitly must exist, or their settings would silently not apply.
      if (path == fs::path(kDefaultConfig)) return SystemConfig{};
      throw ConfigError(path.string() +
                        ": cannot read the configuration named by MQSEC_CONFIG: " + error);
    case ReadStatus::Failed:
      break;
  }
  throw ConfigError(path.string() + ": cannot read: " + error);
}

fs::path profile_dir(const SystemConfig& cfg, const UserIdentity& user) {
  if (cfg.profiles_dir.empty()) {
    if (user.home.empty() || !user.home.is_absolute())
      throw Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE,
                  "user '" + user.name + "' (uid " + std::to_string(user.uid) +
                      ") has no absolute home directory in the password database; set "
                      "[profiles] dir in the system configuration");
    return user.home / ".config" / "mqsec";
  }
  std::string out;
  const std::string& d = cfg.profiles_dir;
  for (size_t i = 0; i < d.size(); ++i) {
    if (d[i] != '%' || i + 1 >= d.size()) {
      out += d[i];
      continue;
    }
    const char next = d[++i];
    if (next == 'u') {
      // The name becomes one path component; anything that could escape it or make two users
      // share a directory is refused.
      if (user.name.empty() || user.name == "." || user.name == ".." ||
          user.name.find('/') != std::string::npos || user.name.find('\0') != std::string::npos)
        throw Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE,
                    "user name '" + user.name + "' (uid " + std::to_string(user.uid) +
                        ") cannot be used for %u in [profiles] dir");
      out += user.name;
    } else if (next == '%') {
      out += '%';
    } else {
      out += '%';
      out += next;
    }
  }
  return fs::path(out);
}

UserProfile parse_user_profile(std::string_view text, const std::string& source_name) {
  const toml::table root = parse_toml(text, source_name);
  const Reader r(source_name);
  UserProfile profile;
  profile.exists = true;
  for (auto&& [key, node] : root) {
    const std::string name(key.str());
    if (name == "internal-certificate") {
      profile.internal_certificate = r.pkcs11_uri(key, node, name);
    } else if (name == "token") {
      for (auto&& [k, v] : r.table(key, node, name)) {
        const std::string path = name + "." + std::string(k.str());
        if (k != "uri") r.unknown(k, v, path, "uri");
        profile.token_uri = r.pkcs11_uri(k, v, path);
      }
    } else if (name == "signing") {
      parse_signing(r, key, node, profile.signing, nullptr);
    } else {
      r.unknown(key, node, name, "internal-certificate or the tables [token] and [signing]");
    }
  }
  return profile;
}

UserProfile load_user_profile(const SystemConfig& cfg, const UserIdentity& user) {
  UserProfile profile;
  profile.dir = profile_dir(cfg, user);
  profile.file = profile.dir / "profile.toml";
  std::string text, error;
  switch (read_file(profile.file, text, error)) {
    case ReadStatus::Missing:
      return profile;
    case ReadStatus::Failed:
      throw Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE,
                  "cannot read the user profile " + profile.file.string() + ": " + error);
    case ReadStatus::Ok:
      break;
  }
  UserProfile parsed = parse_user_profile(text, profile.file.string());
  parsed.dir = profile.dir;
  parsed.file = profile.file;
  return parsed;
}

void set_internal_certificate(const UserProfile& profile, const std::string& uri) {
  if (uri.size() < 7 || strncasecmp(uri.c_str(), "pkcs11:", 7) != 0 ||
      uri.find('\0') != std::string::npos || Reader::has_pin_value(uri))
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "the internal certificate must be named by a PKCS#11 URI without pin-value");
  if (profile.dir.empty() && profile.file.empty())
    throw Error(MQ_ERROR_CANNOT_CREATE_CERT_STORE, "cannot write the user profile: no directory");
  const fs::path file = profile.file.empty() ? profile.dir / "profile.toml" : profile.file;

  // Keep the token the file names now (it may have changed since `profile` was loaded). A file
  // we cannot parse is the user's to fix: overwriting it would lose their settings.
  std::string token_uri = profile.token_uri;
  SigningOverrides signing = profile.signing;
  std::string text, error;
  switch (read_file(file, text, error)) {
    case ReadStatus::Ok:
      try {
        UserProfile now = parse_user_profile(text, file.string());
        token_uri = std::move(now.token_uri);
        signing = now.signing;
      } catch (const ConfigError& e) {
        throw Error(MQ_ERROR_CANNOT_CREATE_CERT_STORE,
                    std::string("refusing to overwrite a malformed user profile (fix or remove "
                                "it): ") +
                        e.what());
      }
      break;
    case ReadStatus::Missing:
      break;
    case ReadStatus::Failed:
      throw Error(MQ_ERROR_CANNOT_CREATE_CERT_STORE,
                  "cannot read the existing user profile " + file.string() + ": " + error);
  }

  toml::table doc;
  doc.insert("internal-certificate", uri);
  if (!token_uri.empty()) doc.insert("token", toml::table{{"uri", token_uri}});
  if (!signing.empty()) {
    toml::table t;
    if (signing.batch_max_messages) {
      t.insert("batch-max-messages", static_cast<int64_t>(*signing.batch_max_messages));
    }
    if (signing.batch_max_delay_ms) t.insert("batch-max-delay-ms", *signing.batch_max_delay_ms);
    if (signing.batch_wait) t.insert("batch-wait", *signing.batch_wait);
    doc.insert("signing", std::move(t));
  }
  std::ostringstream out;
  out << "# mqsec user profile (see docs/configuration.md). Written by mqsec when the internal\n"
         "# certificate changes; edits to values are kept, comments are not.\n"
      << doc << '\n';

  make_dirs(file.parent_path());
  write_atomically(file, out.str());
}

}  // namespace mqsec::security
