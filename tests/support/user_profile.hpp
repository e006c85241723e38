// Test support: a user's mqsec profile (profile.toml) written the way the runtime requires it
// of an impersonated user: in <profiles>/<user>/, the directory 0700 and the file 0600, both
// owned by that user.
#pragma once

#include <filesystem>
#include <string>

#include "tests/support/test_users.hpp"

namespace mqsec::testing {

// Writes <profiles_dir>/<user>/profile.toml naming `internal_certificate_uri` and, under
// [token], `token_uri`; hands file and directory to `user`. Throws std::runtime_error.
void write_user_profile(const std::filesystem::path& profiles_dir, const TemporaryUser& user,
                        const std::string& internal_certificate_uri, const std::string& token_uri);

}  // namespace mqsec::testing
