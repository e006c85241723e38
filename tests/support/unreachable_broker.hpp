// Test support: a [broker] section in the system configuration ($MQSEC_CONFIG) for a scope, on
// a port nothing listens on, so that a send to another machine's queue is accepted and waits in
// its outgoing queue (docs/remote.md) without any broker. The configuration is read per call,
// so the section takes effect at once; the destructor restores the file. The background
// forwarder a send starts keeps failing to connect; it is stopped (bounded) at exit.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace mqsec::testing {

class UnreachableBroker {
 public:
  UnreachableBroker() {
    const char* path = std::getenv("MQSEC_CONFIG");
    if (path == nullptr) throw std::runtime_error("MQSEC_CONFIG is not set");
    path_ = path;
    std::ifstream in(path_);
    std::ostringstream text;
    text << in.rdbuf();
    saved_ = text.str();
    std::ofstream(path_, std::ios::trunc)
        << saved_ << "\n[broker]\nurl = \"amqp://127.0.0.1:1\"\nconnect-timeout-ms = 200\n";
  }
  ~UnreachableBroker() { std::ofstream(path_, std::ios::trunc) << saved_; }
  UnreachableBroker(const UnreachableBroker&) = delete;
  UnreachableBroker& operator=(const UnreachableBroker&) = delete;

 private:
  std::string path_, saved_;
};

}  // namespace mqsec::testing
