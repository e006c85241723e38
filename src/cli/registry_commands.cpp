// `mqsec registry add|remove|list`: the root-owned system registry (security/system_registry),
// which binds certificates to SIDs for every receiver on the machine. add and remove need root;
// list shows what receivers see, including why they would ignore the directory or a file.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "src/cli/commands.hpp"
#include "src/cli/output.hpp"
#include "src/security/identity.hpp"
#include "src/security/openssl.hpp"
#include "src/security/system_registry.hpp"

namespace mqsec::cli {
namespace {

namespace fs = std::filesystem;

struct RegistryArgs {
  std::string cert, sid, dir;
  bool json = false;
};

fs::path registry_dir(const RegistryArgs& a) {
  if (!a.dir.empty()) return a.dir;
  return load_config_or_fail().trust.registry;
}

void need_root(const std::string& what) {
  if (geteuid() != 0) {
    throw Failure(what, "run as root: the system registry is root-owned", MQ_ERROR_ACCESS_DENIED,
                  "sudo mqsec registry ...; `mqsec register FILE` registers your own "
                  "certificate in your own store");
  }
}

// A registry failure as a Failure with the code that fits it best.
[[noreturn]] void fail(const std::string& what, const security::SystemRegistryError& e,
                       const fs::path& dir) {
  using K = security::SystemRegistryError::Kind;
  switch (e.kind()) {
    case K::Conflict:
      throw Failure(what, e.what(), MQ_ERROR_INVALID_CERTIFICATE,
                    "if that binding is wrong: `mqsec registry remove CERT`, then add it again");
    case K::Unsafe:
      throw Failure(what, e.what(), MQ_ERROR_ACCESS_DENIED,
                    "receivers ignore a registry that anyone but root can change: chown root:root "
                    "and chmod 755 " +
                        dir.string() + " and the directories above it, or choose another --dir");
    case K::Malformed:
      throw Failure(what, e.what(), MQ_ERROR_INVALID_CERTIFICATE);
    case K::Io:
      break;
  }
  throw Failure(what, e.what(), MQ_ERROR);
}

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c)) != 0;
         });
}

security::Bytes from_hex(const std::string& s) {
  security::Bytes out;
  for (size_t i = 0; i + 1 < s.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoul(s.substr(i, 2), nullptr, 16)));
  }
  return out;
}

int run_add(const RegistryArgs& a) {
  const std::string what = "registry add " + a.cert;
  need_root(what);
  const fs::path dir = registry_dir(a);
  std::vector<uint8_t> der = read_certificate_file(a.cert);
  security::Sid sid = security::Sid::from_string(a.sid);  // CLI11 checked it
  security::SystemRegistryAdd r;
  try {
    r = security::add_to_system_registry(dir, der, sid);
  } catch (const security::SystemRegistryError& e) {
    fail(what, e, dir);
  }
  const security::Bytes digest = security::sha256(der);
  std::cout << (r == security::SystemRegistryAdd::Added
                    ? "added to the system registry: "
                    : "already in the system registry with that SID: ")
            << subject_of(der) << '\n'
            << "  SID:     " << sid.str() << '\n'
            << "  SHA-256: " << hex(digest) << '\n'
            << "  file:    " << (dir / security::system_registry_file_name(digest)).string()
            << '\n';
  return kExitOk;
}

int run_remove(const RegistryArgs& a) {
  const std::string what = "registry remove " + a.cert;
  need_root(what);
  const fs::path dir = registry_dir(a);
  security::Bytes digest;
  std::error_code ec;
  if (is_sha256_hex(a.cert) && !fs::exists(a.cert, ec)) {
    std::string lower = a.cert;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    digest = from_hex(lower);
  } else {
    digest = security::sha256(read_certificate_file(a.cert));
  }
  // What is removed, for the record (a malformed entry is removed all the same).
  std::string described;
  try {
    if (auto e = security::read_system_registry_entry(dir, digest)) {
      described = e->subject + ", SID " + e->sid.str();
    }
  } catch (const security::SystemRegistryError& e) {
    described = std::string("an entry receivers ignore: ") + e.what();
  }
  bool removed = false;
  try {
    removed = security::remove_from_system_registry(dir, digest);
  } catch (const security::SystemRegistryError& e) {
    fail(what, e, dir);
  }
  if (!removed) {
    throw Failure(
        what, "no entry for the certificate with SHA-256 " + hex(digest) + " in " + dir.string(),
        MQ_ERROR_INVALID_CERTIFICATE, "`mqsec registry list` shows the entries");
  }
  std::cout << "removed from the system registry: " << hex(digest);
  if (!described.empty()) std::cout << " (" << described << ")";
  std::cout << '\n';
  return kExitOk;
}

int run_list(const RegistryArgs& a) {
  const fs::path dir = registry_dir(a);
  security::SystemRegistryListing l;
  try {
    l = security::list_system_registry(dir);
  } catch (const security::SystemRegistryError& e) {
    fail("registry list", e, dir);
  }
  if (a.json) {
    std::ostringstream o;
    o << "{\"dir\":" << json_string(dir.string())
      << ",\"exists\":" << (l.dir.exists ? "true" : "false")
      << ",\"trusted\":" << (l.dir.trusted ? "true" : "false") << ",\"problem\":"
      << (l.dir.problem.empty() ? std::string("null") : json_string(l.dir.problem))
      << ",\"entries\":[";
    for (size_t i = 0; i < l.entries.size(); ++i) {
      const auto& e = l.entries[i];
      o << (i ? "," : "") << "{\"sha256\":" << json_string(hex(e.cert_sha256))
        << ",\"sid\":" << json_string(e.sid.str()) << ",\"subject\":" << json_string(e.subject)
        << ",\"file\":" << json_string(e.file.string()) << "}";
    }
    o << "],\"ignored\":[";
    for (size_t i = 0; i < l.problems.size(); ++i) {
      o << (i ? "," : "") << "{\"file\":" << json_string(l.problems[i].first.string())
        << ",\"reason\":" << json_string(l.problems[i].second) << "}";
    }
    o << "]}";
    std::cout << o.str() << '\n';
    return kExitOk;
  }
  if (!l.dir.exists) {
    std::cout << "no system registry at " << dir.string() << " (no entries)\n";
    return kExitOk;
  }
  std::cout << "system registry " << dir.string() << ": " << l.entries.size()
            << (l.entries.size() == 1 ? " entry" : " entries");
  if (l.dir.trusted) {
    std::cout << " (trusted by receivers)\n";
  } else {
    std::cout << "\nWARNING: receivers ignore this registry: " << l.dir.problem << '\n';
  }
  for (const auto& e : l.entries) {
    std::cout << "  " << hex(e.cert_sha256) << "  " << e.sid.str() << "  " << one_line(e.subject)
              << '\n';
  }
  for (const auto& [file, why] : l.problems) {
    std::cout << "  ignored: " << one_line(why) << '\n';
  }
  return kExitOk;
}

// CLI11 validator: a SID in text form.
std::string check_sid(const std::string& s) {
  try {
    security::Sid::from_string(s);
    return {};
  } catch (const std::invalid_argument& e) {
    return "not a SID (S-1-<authority>-<sub>...): " + std::string(e.what());
  }
}

}  // namespace

std::string validate_sid(const std::string& s) { return check_sid(s); }

void add_registry_commands(CLI::App& app, Action& action) {
  CLI::App* reg = app.add_subcommand(
      "registry",
      "The root-owned system registry: certificate -> SID bindings every receiver "
      "trusts ([trust] registry)");
  reg->require_subcommand(1);
  auto dir_option = [](CLI::App* sub, RegistryArgs& a) {
    sub->add_option("--dir", a.dir,
                    "Registry directory (default: [trust] registry of the system configuration, "
                    "/etc/mqsec/registry.d)")
        ->type_name("DIR");
  };
  {
    auto a = std::make_shared<RegistryArgs>();
    CLI::App* sub = reg->add_subcommand(
        "add", "Bind a certificate to a SID for every receiver (root only; never rebinds)");
    sub->add_option("CERT", a->cert, "Certificate file (PEM or DER)")->required();
    sub->add_option("--sid", a->sid, "The SID the certificate's messages may claim")
        ->type_name("S-1-...")
        ->required()
        ->check(check_sid, "SID");
    dir_option(sub, *a);
    sub->callback([a, &action] { action = [a] { return run_add(*a); }; });
  }
  {
    auto a = std::make_shared<RegistryArgs>();
    CLI::App* sub = reg->add_subcommand("remove", "Remove a certificate's binding (root only)");
    sub->add_option("CERT", a->cert,
                    "Certificate file (PEM or DER), or its SHA-256 in hex (as `list` shows)")
        ->type_name("CERT|SHA256")
        ->required();
    dir_option(sub, *a);
    sub->callback([a, &action] { action = [a] { return run_remove(*a); }; });
  }
  {
    auto a = std::make_shared<RegistryArgs>();
    CLI::App* sub = reg->add_subcommand(
        "list", "List the bindings, and whether receivers trust the directory and each file");
    sub->add_flag("--json", a->json, "One JSON object");
    dir_option(sub, *a);
    sub->callback([a, &action] { action = [a] { return run_list(*a); }; });
  }
}

}  // namespace mqsec::cli
