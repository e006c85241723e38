// An impersonated user's profile.toml, owned by that user (user_profile.hpp).
#include "tests/support/user_profile.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tests/support/softhsm_env.hpp"

namespace mqsec::testing {

void write_user_profile(const std::filesystem::path& profiles_dir, const TemporaryUser& user,
                        const std::string& internal_certificate_uri, const std::string& token_uri) {
  const std::filesystem::path dir = profiles_dir / user.name();
  std::filesystem::create_directories(dir);
  write_file(dir / "profile.toml",
             "internal-certificate = \"" + internal_certificate_uri + "\"\n[token]\nuri = \"" +
                 token_uri + "\"\n",
             0600);
  give_to(dir / "profile.toml", user);
  give_to(dir, user);
  if (chmod(dir.c_str(), 0700) != 0) {
    throw std::runtime_error("chmod " + dir.string() + ": " + std::strerror(errno));
  }
}

}  // namespace mqsec::testing
