// Logs one error line through mqsec's log (src/security/log.cpp) and exits: run by
// test_hardening as a plain and as a setuid-root program to see where MQSEC_LOG sends it.
#include "src/security/log.hpp"

int main() {
  mqsec::log(mqsec::LogLevel::Error, "mqsec log probe");
  return 0;
}
