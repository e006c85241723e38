// Unit tests for secrets named in the system configuration (the broker password): the PIN-source
// rules through read_secret_source, and that no error ever carries the secret.
#include "src/security/secret_source.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace mqsec::security {
namespace {

namespace fs = std::filesystem;

const char* const kSecret = "s3cr3t-broker-pw";

class SecretSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "mqsec-secret-test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A file holding `content` with `mode`.
  fs::path file(const std::string& name, const std::string& content, mode_t mode = 0600) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << content;
    EXPECT_EQ(chmod(p.c_str(), mode), 0);
    return p;
  }

  // The SecretSourceError read_secret_source(spec) throws, or "" (and a test failure). Also
  // checks that the message does not contain the secret.
  static std::string error(const std::string& spec) {
    try {
      read_secret_source(spec, "broker password");
    } catch (const SecretSourceError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find(kSecret), std::string::npos) << "secret leaked: " << what;
      return what;
    }
    ADD_FAILURE() << "no SecretSourceError for " << spec;
    return "";
  }

  fs::path dir_;
};

TEST_F(SecretSourceTest, FileOwnedByTheUserWithMode0600IsRead) {
  const fs::path p = file("broker.pw", std::string(kSecret) + "\n");
  EXPECT_EQ(read_secret_source("file:" + p.string(), "broker password").str(), kSecret);
  EXPECT_EQ(read_secret_source("file://" + p.string(), "broker password").str(), kSecret);
  chmod(p.c_str(), 0400);  // stricter is fine
  EXPECT_EQ(read_secret_source("file:" + p.string(), "broker password").str(), kSecret);
}

TEST_F(SecretSourceTest, LooseModeIsRefusedNamingTheFileAndTheRule) {
  for (mode_t mode : {0640, 0604, 0660, 0644}) {
    const fs::path p = file("loose.pw", kSecret, mode);
    const std::string msg = error("file:" + p.string());
    EXPECT_NE(msg.find("broker password file '" + p.string() +
                       "' is accessible by group or others; run chmod 600"),
              std::string::npos)
        << msg;
  }
}

TEST_F(SecretSourceTest, FileOwnedByAnotherUserIsRefused) {
  const fs::path p = file("other.pw", kSecret);
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the file away";
  ASSERT_EQ(chown(p.c_str(), 65534, 65534), 0);
  const std::string msg = error("file:" + p.string());
  EXPECT_NE(msg.find("is owned by uid 65534, not by the calling user"), std::string::npos) << msg;
}

TEST_F(SecretSourceTest, FifoIsRefusedWithoutBlocking) {
  const fs::path fifo = dir_ / "pw.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // In a child: a read that blocked on the FIFO (no writer ever comes) would hang this process.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    try {
      read_secret_source("file:" + fifo.string(), "broker password");
    } catch (const SecretSourceError& e) {
      _exit(std::string(e.what()).find("is a FIFO; refusing it") != std::string::npos ? 0 : 1);
    }
    _exit(2);
  }
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  pid_t done = 0;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "reading a FIFO secret source blocked";
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "not refused as a FIFO";
}

TEST_F(SecretSourceTest, SymbolicLinkIsRefused) {
  const fs::path real = file("real.pw", kSecret);
  const fs::path link = dir_ / "link.pw";
  fs::create_symlink(real, link);
  const std::string msg = error("file:" + link.string());
  EXPECT_NE(msg.find("broker password file '" + link.string() + "' is a symbolic link"),
            std::string::npos)
      << msg;
}

TEST_F(SecretSourceTest, DirectoryAndDeviceAreRefused) {
  EXPECT_NE(error("file:" + dir_.string()).find("is a directory; refusing it"), std::string::npos);
  EXPECT_NE(error("file:/dev/null").find("is a device; refusing it"), std::string::npos);
}

TEST_F(SecretSourceTest, MissingFileIsAClearError) {
  const fs::path p = dir_ / "no-such.pw";
  EXPECT_EQ(error("file:" + p.string()),
            "cannot open broker password file '" + p.string() +
                "': No such file or directory (create it, owned by the user, mode 0600)");
}

TEST_F(SecretSourceTest, EmptyAndOverlongFilesAreRefused) {
  EXPECT_NE(error("file:" + file("empty.pw", "\n").string()).find("is empty"), std::string::npos);
  EXPECT_NE(error("file:" + file("long.pw", std::string(257, 'x')).string())
                .find("is longer than 256 bytes"),
            std::string::npos);
  EXPECT_EQ(read_secret_source("file:" + file("max.pw", std::string(256, 'y')).string(), "x")
                .str()
                .size(),
            256u);
}

TEST_F(SecretSourceTest, PathIsTakenAsWrittenWithoutPercentDecoding) {
  const fs::path p = file("pw%41", kSecret);  // a PKCS#11 URI would read %41 as 'A'
  EXPECT_EQ(read_secret_source("file:" + p.string(), "broker password").str(), kSecret);
}

TEST_F(SecretSourceTest, EnvironmentVariable) {
  setenv("MQSEC_TEST_BROKER_PW", kSecret, 1);
  EXPECT_EQ(read_secret_source("env:MQSEC_TEST_BROKER_PW", "broker password").str(), kSecret);
  unsetenv("MQSEC_TEST_BROKER_PW");
  EXPECT_EQ(error("env:MQSEC_TEST_BROKER_PW"),
            "broker password source env:MQSEC_TEST_BROKER_PW: the environment variable "
            "MQSEC_TEST_BROKER_PW is not set or empty");
  setenv("MQSEC_TEST_BROKER_PW", "", 1);
  EXPECT_NE(error("env:MQSEC_TEST_BROKER_PW").find("is not set or empty"), std::string::npos);
  unsetenv("MQSEC_TEST_BROKER_PW");
}

TEST_F(SecretSourceTest, MalformedSourcesAndNeverTheValue) {
  EXPECT_NE(error("file:relative/pw").find("must name an absolute path"), std::string::npos);
  EXPECT_NE(error("env:").find("must name an environment variable"), std::string::npos);
  // A password written where its source belongs is not repeated.
  const std::string msg = error(kSecret);
  EXPECT_NE(msg.find("broker password source unsupported source (not shown"), std::string::npos)
      << msg;
  EXPECT_NE(error(std::string("exec:") + kSecret).find("use file:<absolute path> or env:"),
            std::string::npos);
}

TEST(SecretSourceForm, ProblemsWithoutReading) {
  EXPECT_EQ(secret_source_problem("file:/etc/mqsec/broker.pw"), "");
  EXPECT_EQ(secret_source_problem("file:///etc/mqsec/broker.pw"), "");
  EXPECT_EQ(secret_source_problem("env:MQSEC_BROKER_PW"), "");
  EXPECT_NE(secret_source_problem("file:broker.pw"), "");
  EXPECT_NE(secret_source_problem("file:"), "");
  EXPECT_NE(secret_source_problem("env:"), "");
  EXPECT_NE(secret_source_problem("env:A=B"), "");
  EXPECT_EQ(secret_source_problem(kSecret).find(kSecret), std::string::npos);
}

}  // namespace
}  // namespace mqsec::security
