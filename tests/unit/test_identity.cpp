// Unit tests for the caller's identity: the SID codec, per-thread credentials, the password
// database lookup and the SID sources.
#include "src/security/identity.hpp"

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <pwd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <future>
#include <string>
#include <thread>
#include <vector>

#include "mqsec/error.hpp"

namespace mqsec::security {
namespace {

std::vector<uint8_t> bytes_of(std::initializer_list<int> v) {
  std::vector<uint8_t> out;
  for (int b : v) out.push_back(static_cast<uint8_t>(b));
  return out;
}

TEST(Sid, UnixUserHasSambaLayout) {
  const Sid sid = Sid::unix_user(1000);
  EXPECT_EQ(sid.bytes(), bytes_of({0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x16, 0x01, 0x00, 0x00,
                                   0x00, 0xe8, 0x03, 0x00, 0x00}));
  EXPECT_EQ(sid.str(), "S-1-22-1-1000");
  EXPECT_EQ(Sid::from_string("S-1-22-1-1000"), sid);
}

TEST(Sid, SubAuthoritiesAreLittleEndian) {
  const Sid sid = Sid::unix_user(0x01020304);
  ASSERT_EQ(sid.bytes().size(), 16u);
  EXPECT_EQ(sid.bytes()[12], 0x04);
  EXPECT_EQ(sid.bytes()[15], 0x01);
  EXPECT_EQ(sid.str(), "S-1-22-1-16909060");
}

TEST(Sid, StringRoundTrips) {
  for (const char* s : {"S-1-5-18", "S-1-1-0", "S-1-5-21-3623811015-3361044348-30300820-1013",
                        "S-1-22-1-0", "S-1-22-1-4294967295", "S-1-5", "S-1-0x123456789ABC-1-2",
                        "S-1-1-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15"}) {
    const Sid sid = Sid::from_string(s);
    EXPECT_EQ(sid.str(), s);
    EXPECT_EQ(Sid::from_bytes(sid.bytes()), sid) << s;
  }
}

TEST(Sid, DomainSidBytes) {
  const Sid sid = Sid::from_string("S-1-5-21-1-2-3-500");
  EXPECT_EQ(sid.bytes(), bytes_of({1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0,    0,    1, 0,
                                   0, 0, 2, 0, 0, 0, 3, 0, 0,  0, 0xf4, 0x01, 0, 0}));
}

TEST(Sid, AuthorityFormsAndCanonicalString) {
  // Windows prints authorities >= 2^32 as 0x + 12 hex digits, smaller ones in decimal.
  EXPECT_EQ(Sid::from_string("S-1-0x5-18").str(), "S-1-5-18");
  EXPECT_EQ(Sid::from_string("s-1-5-18").str(), "S-1-5-18");
  EXPECT_EQ(Sid::from_string("S-1-4294967296-1").str(), "S-1-0x000100000000-1");
  EXPECT_EQ(Sid::from_string("S-1-0xFFFFFFFFFFFF-1").bytes()[2], 0xff);
}

TEST(Sid, MalformedStringsAreRejected) {
  for (const char* s : {"",
                        "S",
                        "S-",
                        "S-1",
                        "S-1-",
                        "X-1-5-18",
                        "S-2-5-18",
                        "S-1-5-",
                        "S-1--5",
                        "S-1-5--18",
                        "S-1-5-18-",
                        "S-1-a-18",
                        "S-1-5-18x",
                        "S-1-5- 18",
                        " S-1-5-18",
                        "S-1-5-+18",
                        "S-1-5--1",
                        "S-1-5-4294967296",
                        "S-1-281474976710656-1",
                        "S-1-0x1000000000000-1",
                        "S-1-0x-1",
                        "S-1-1-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16"}) {
    EXPECT_THROW(Sid::from_string(s), std::invalid_argument) << '"' << s << '"';
  }
}

TEST(Sid, MalformedBytesAreRejected) {
  const std::vector<uint8_t> good = Sid::unix_user(1000).bytes();
  EXPECT_NO_THROW(Sid::from_bytes(good));
  EXPECT_THROW(Sid::from_bytes({}), std::invalid_argument);
  EXPECT_THROW(Sid::from_bytes(std::span(good).first(7)), std::invalid_argument);
  // Length must match the count exactly: one short, one long.
  EXPECT_THROW(Sid::from_bytes(std::span(good).first(15)), std::invalid_argument);
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_THROW(Sid::from_bytes(longer), std::invalid_argument);
  std::vector<uint8_t> revision = good;
  revision[0] = 2;
  EXPECT_THROW(Sid::from_bytes(revision), std::invalid_argument);
  std::vector<uint8_t> too_many(8 + 4 * 16, 0);
  too_many[0] = 1;
  too_many[1] = 16;
  EXPECT_THROW(Sid::from_bytes(too_many), std::invalid_argument);
  // A zero-sub-authority SID is valid layout.
  EXPECT_EQ(Sid::from_bytes(bytes_of({1, 0, 0, 0, 0, 0, 0, 5})).str(), "S-1-5");
}

TEST(Sid, DefaultIsEmpty) {
  Sid sid;
  EXPECT_TRUE(sid.empty());
  EXPECT_EQ(sid.str(), "");
  EXPECT_FALSE(sid == Sid::unix_user(0));
}

TEST(Identity, ThreadCredentialsMatchProcessWhenNotImpersonating) {
  EXPECT_EQ(thread_effective_uid(), geteuid());
  EXPECT_EQ(thread_effective_gid(), getegid());
}

TEST(Identity, CurrentUserComesFromPasswordDatabase) {
  const uid_t uid = geteuid();
  const passwd* pw = getpwuid(uid);
  if (pw == nullptr) GTEST_SKIP() << "the test's own uid has no passwd entry";
  const std::string name = pw->pw_name;
  const std::string home = pw->pw_dir;
  const UserIdentity user = current_user(SidSource::Unix);
  EXPECT_EQ(user.uid, uid);
  EXPECT_EQ(user.gid, getegid());
  EXPECT_EQ(user.name, name);
  EXPECT_EQ(user.home, home);
  EXPECT_EQ(user.sid, Sid::unix_user(uid));
}

TEST(Identity, HomeIgnoresHomeVariable) {
  const passwd* pw = getpwuid(geteuid());
  if (pw == nullptr) GTEST_SKIP() << "the test's own uid has no passwd entry";
  const std::string home = pw->pw_dir;
  const char* old = getenv("HOME");
  const std::string saved = old ? old : "";
  setenv("HOME", "/definitely/not/home", 1);
  const UserIdentity user = current_user(SidSource::Unix);
  if (old)
    setenv("HOME", saved.c_str(), 1);
  else
    unsetenv("HOME");
  EXPECT_EQ(user.home, home);
}

bool library_present(const char* name) {
  void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (h != nullptr) dlclose(h);
  return h != nullptr;
}

void expect_no_sid(SidSource source, const char* needle) {
  try {
    current_user(source);
    ADD_FAILURE() << "current_user(" << to_string(source) << ") did not throw";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_COULD_NOT_GET_USER_SID);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Identity, SssdConfiguredButNotInstalled) {
  if (library_present("libsss_nss_idmap.so.0")) GTEST_SKIP() << "SSSD's idmap library is installed";
  expect_no_sid(SidSource::Sssd, "libsss_nss_idmap");
}

TEST(Identity, WinbindConfiguredButNotInstalled) {
  if (library_present("libwbclient.so.0")) GTEST_SKIP() << "libwbclient is installed";
  expect_no_sid(SidSource::Winbind, "libwbclient");
}

TEST(Identity, AutoFallsBackToUnixWithoutDirectoryServices) {
  if (library_present("libsss_nss_idmap.so.0") || library_present("libwbclient.so.0"))
    GTEST_SKIP() << "a directory service library is installed";
  if (getpwuid(geteuid()) == nullptr) GTEST_SKIP() << "no passwd entry for the test's uid";
  EXPECT_EQ(current_user(SidSource::Auto).sid, Sid::unix_user(geteuid()));
}

TEST(Identity, SidSourceNames) {
  EXPECT_EQ(to_string(SidSource::Auto), "auto");
  EXPECT_EQ(to_string(SidSource::Unix), "unix");
  EXPECT_EQ(to_string(SidSource::Sssd), "sssd");
  EXPECT_EQ(to_string(SidSource::Winbind), "winbind");
}

// Raw syscalls change only the calling thread's credentials (glibc's setresuid would
// broadcast the change to every thread of the process).
long raw_setresuid(uid_t r, uid_t e, uid_t s) {
#ifdef SYS_setresuid32
  return syscall(SYS_setresuid32, r, e, s);
#else
  return syscall(SYS_setresuid, r, e, s);
#endif
}

TEST(Identity, ThreadImpersonationIsPerThread) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch the thread's effective uid";
  const uid_t target = 65534;  // nobody
  const passwd* pw = getpwuid(target);
  const std::string target_name = pw != nullptr ? pw->pw_name : "";
  if (target_name.empty()) GTEST_SKIP() << "no passwd entry for uid 65534";

  // The thread switches, then waits until the main thread has looked at its own uid, so the
  // main thread's reading really happens while the other thread is impersonating.
  std::promise<void> switched, main_checked;
  uint32_t seen_in_thread = 0, restored = 1;
  long switch_rc = -1;
  std::string name_in_thread, error_in_thread;
  std::thread t([&] {
    const uid_t keep = static_cast<uid_t>(-1);
    switch_rc = raw_setresuid(keep, target, keep);  // saved uid stays 0, so we can switch back
    if (switch_rc == 0) {
      seen_in_thread = thread_effective_uid();
      try {
        UserIdentity u = current_user(SidSource::Unix);
        name_in_thread = u.name;
        if (u.uid != target) error_in_thread = "wrong uid " + std::to_string(u.uid);
        if (u.sid != Sid::unix_user(target)) error_in_thread = "wrong SID " + u.sid.str();
      } catch (const std::exception& e) {
        error_in_thread = e.what();
      }
    }
    switched.set_value();
    main_checked.get_future().wait();
    if (switch_rc == 0) raw_setresuid(keep, 0, keep);
    restored = thread_effective_uid();
  });
  switched.get_future().wait();
  const uint32_t main_uid_meanwhile = thread_effective_uid();
  const uint32_t main_user_meanwhile = current_user(SidSource::Unix).uid;
  main_checked.set_value();
  t.join();
  ASSERT_EQ(switch_rc, 0);
  EXPECT_EQ(seen_in_thread, target);
  EXPECT_EQ(name_in_thread, target_name);
  EXPECT_EQ(error_in_thread, "");
  EXPECT_EQ(main_uid_meanwhile, 0u);
  EXPECT_EQ(main_user_meanwhile, 0u);
  EXPECT_EQ(restored, 0u);
  EXPECT_EQ(geteuid(), 0u);
}

TEST(Identity, UidWithoutPasswdEntryHasNoSid) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch the thread's effective uid";
  const uid_t ghost = 3999999999u;
  if (getpwuid(ghost) != nullptr) GTEST_SKIP() << "uid " << ghost << " exists here";
  HRESULT code = MQ_OK;
  std::string what;
  std::thread t([&] {
    const uid_t keep = static_cast<uid_t>(-1);
    if (raw_setresuid(keep, ghost, keep) != 0) return;
    try {
      current_user(SidSource::Unix);
    } catch (const mqsec::Error& e) {
      code = e.code();
      what = e.what();
    }
    raw_setresuid(keep, 0, keep);
  });
  t.join();
  EXPECT_EQ(code, MQ_ERROR_COULD_NOT_GET_USER_SID);
  EXPECT_NE(what.find("3999999999"), std::string::npos) << what;
}

}  // namespace
}  // namespace mqsec::security
