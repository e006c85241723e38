// Consumer test (issue 15): a C++ program on the header-only API (mqsec/mqsec.hpp), built
// against an *installed* libmqrt through find_package(mqsec) (CMakeLists.txt beside it). On the
// token of $MQSEC_CONFIG it sends one signed message with a cached security context and
// receives it back authenticated, with the sender's SID.
#include <mqsec/mqsec.hpp>

#include <chrono>
#include <iostream>

int main() try {
  using namespace std::chrono_literals;
  mqsec::register_certificate(MQCERT_REGISTER_IF_NOT_EXIST);
  const std::string format =
      mqsec::Queue::create(".\\private$\\consumer-cxx", "consumer", /*authenticate=*/true);
  {
    mqsec::Queue out = mqsec::Queue::open(format, MQ_SEND_ACCESS);
    mqsec::SecurityContext ctx = mqsec::SecurityContext::internal();
    out.send(mqsec::Message()
                 .set_body("signed by a C++ consumer")
                 .set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS)
                 .attach(ctx));
  }
  mqsec::Queue in = mqsec::Queue::open(format, MQ_RECEIVE_ACCESS);
  auto m = in.receive(5s);
  if (!m || m->body_string() != "signed by a C++ consumer" || !m->authenticated() ||
      m->sender_sid_string().empty()) {
    std::cerr << "c++ consumer: the message did not come back authenticated\n";
    return 1;
  }
  const std::string sid = m->sender_sid_string();
  in.close();
  mqsec::Queue::remove(format);
  std::cout << "c++ consumer: signed message sent and received authenticated from " << sid << "\n";
  return 0;
} catch (const mqsec::Error& e) {
  std::cerr << "c++ consumer: " << e.what() << "\n";
  return 1;
}
