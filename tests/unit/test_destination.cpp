// Destinations (core/destination.hpp, issue 10): local and remote path and format names,
// DIRECT=TCP, invalid machine names, and the reserved names of outgoing queues (core/outgoing.hpp).
#include <gtest/gtest.h>
#include <mq.h>

#include "mqsec/error.hpp"
#include "src/core/destination.hpp"
#include "src/core/outgoing.hpp"

namespace {

using mqsec::Error;
using mqsec::core::Destination;
using mqsec::core::destination_of_format;
using mqsec::core::destination_of_path;

long code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return MQ_OK;
}

TEST(Destination, LocalNames) {
  for (const char* f :
       {"DIRECT=OS:.\\private$\\Orders", "direct=os:LOCALHOST\\PRIVATE$\\orders",
        "DIRECT=OS:HostA\\private$\\orders", "DIRECT=TCP:hosta\\private$\\orders"}) {
    Destination d = destination_of_format(f, "hosta");
    EXPECT_FALSE(d.remote()) << f;
    EXPECT_EQ(d.queue, "orders") << f;
    EXPECT_TRUE(d.machine.empty()) << f;
  }
  Destination d = destination_of_path("HOSTA\\private$\\Orders", "hosta");
  EXPECT_FALSE(d.remote());
  EXPECT_EQ(d.queue, "orders");
  // The host name is this machine too, whatever [machine] name says.
  EXPECT_FALSE(destination_of_path(mqsec::core::local_host() + "\\private$\\q", "hosta").remote());
}

TEST(Destination, RemoteNames) {
  Destination d = destination_of_format("DIRECT=OS:HostB\\private$\\Inbox", "hosta");
  EXPECT_TRUE(d.remote());
  EXPECT_EQ(d.machine, "hostb");
  EXPECT_EQ(d.queue, "inbox");
  EXPECT_EQ(mqsec::core::format_name_of(d), "DIRECT=OS:hostb\\private$\\inbox");
  EXPECT_EQ(destination_of_path("hostb\\private$\\inbox", "hosta"), d);
  // DIRECT=TCP: the address is the machine name.
  Destination t = destination_of_format("DIRECT=TCP:10.0.0.7\\private$\\q", "hosta");
  EXPECT_TRUE(t.remote());
  EXPECT_EQ(t.machine, "10.0.0.7");
  EXPECT_EQ(t.queue, "q");
}

TEST(Destination, InvalidNames) {
  // A machine name the broker cannot address.
  EXPECT_EQ(code_of([] { destination_of_format("DIRECT=OS:-bad\\private$\\q", "hosta"); }),
            MQ_ERROR_ILLEGAL_FORMATNAME);
  EXPECT_EQ(code_of([] {
              destination_of_format("DIRECT=OS:" + std::string(64, 'a') + "\\private$\\q", "x");
            }),
            MQ_ERROR_ILLEGAL_FORMATNAME);
  EXPECT_EQ(code_of([] { destination_of_format("DIRECT=TCP:a..b\\private$\\q", "hosta"); }),
            MQ_ERROR_ILLEGAL_FORMATNAME);
  EXPECT_EQ(code_of([] { destination_of_path("-bad\\private$\\q", "hosta"); }),
            MQ_ERROR_ILLEGAL_QUEUE_PATHNAME);
  EXPECT_EQ(code_of([] { destination_of_format("DIRECT=TCP:hostb\\public\\q", "hosta"); }),
            MQ_ERROR_ILLEGAL_FORMATNAME);
  EXPECT_EQ(code_of([] { destination_of_format("PUBLIC=1234", "hosta"); }),
            MQ_ERROR_ILLEGAL_FORMATNAME);
  // The local-only helpers still refuse another machine.
  EXPECT_EQ(code_of([] { mqsec::core::queue_from_format("DIRECT=OS:elsewhere\\private$\\q"); }),
            MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION);
  EXPECT_EQ(mqsec::core::queue_part_of_format("DIRECT=TCP:hostb\\private$\\Inbox"), "inbox");
}

TEST(Destination, OutgoingQueueNames) {
  Destination d = destination_of_format("DIRECT=OS:hostb\\private$\\inbox", "hosta");
  const std::string name = mqsec::core::outgoing_queue_name(d);
  EXPECT_EQ(name, "direct=os:hostb\\private$\\inbox");
  auto back = mqsec::core::destination_of_outgoing(name);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, d);
  EXPECT_FALSE(mqsec::core::is_outgoing_queue_name("inbox"));
  EXPECT_FALSE(mqsec::core::is_outgoing_queue_name("direct=os:.\\private$\\inbox"));
  // No private queue a user can name takes such a name: a queue name has no '\'.
  EXPECT_EQ(code_of([&] { destination_of_path(".\\private$\\" + name, "hosta"); }),
            MQ_ERROR_ILLEGAL_QUEUE_PATHNAME);
}

}  // namespace
