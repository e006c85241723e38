/* A "module" that proves it was loaded: its constructor appends a line to the file named by
 * $MQSEC_TEST_MARKER (tests/integration/test_hardening.cpp). It has no C_GetFunctionList, so
 * once loaded it is refused as "not a PKCS#11 module"; what matters is whether dlopen() ran. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void mqsec_test_marker(void) {
  const char* path = getenv("MQSEC_TEST_MARKER");
  if (path == NULL || *path == '\0') return;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0) return;
  const char line[] = "loaded\n";
  ssize_t ignored = write(fd, line, strlen(line));
  (void)ignored;
  close(fd);
}
