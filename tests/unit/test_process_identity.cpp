// Process identity of store owners (src/transport/local/process_identity.hpp): the start time
// read from /proc/<pid>/stat whatever the command name holds (spaces, ')', a newline), and
// "may run" false only when the process is certainly gone or its pid was reused.
#include "src/transport/local/process_identity.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mqsec::transport::local {
namespace {

TEST(ProcessIdentity, StartTimeSurvivesAnyCommandNameAndTellsReuseFromLife) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A name that breaks line- and paren-based parsers: ") 1 2\n3 (".
    ::prctl(PR_SET_NAME, ") 1 2\n3 (", 0, 0, 0);
    char c = 'x';
    (void)!::write(ready[1], &c, 1);
    ::pause();
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  const std::optional<uint64_t> start = process_start_time(child);
  ASSERT_TRUE(start.has_value());
  const std::optional<uint64_t> own = process_start_time(::getpid());
  ASSERT_TRUE(own.has_value());
  EXPECT_EQ(own_start_time(), *own);
  EXPECT_GE(*start, *own);  // started after this process
  EXPECT_TRUE(process_may_run(child, *start));
  EXPECT_FALSE(process_may_run(child, *start + 1));  // another process under the same pid
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(process_may_run(child, *start));  // gone (unless the pid was reused meanwhile)
  EXPECT_FALSE(process_start_time(child).has_value());
  EXPECT_FALSE(process_may_run(0, 0));
  EXPECT_FALSE(process_may_run(-1, 0));
  ::close(ready[0]);
  ::close(ready[1]);
}

}  // namespace
}  // namespace mqsec::transport::local
