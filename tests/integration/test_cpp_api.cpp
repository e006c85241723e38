// Integration tests of the header-only C++ API (include/mqsec/*.hpp) on a throwaway SoftHSM
// token (tests/support/softhsm_env). The executable links only libmqrt (plus GoogleTest and the
// test-environment helper, which never calls mqsec): the C++ API must work over the public C
// ABI alone.
//
// Covered: security contexts (internal, from a certificate, bad certificate), queue create /
// open / send / receive with signing and the verified sender (SID, certificate, registry
// confirmation), attach_current_security_context (and its lifetime in copies), timeouts as
// std::nullopt, a 200 KiB body (the buffer-resize path, for receive and peek), cursors, UTF-8
// labels, errors carrying the HRESULT and the failed function, and RAII: destructors free,
// moved-from objects' destructors do not.
#include <mqsec/mqsec.hpp>

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/softhsm_env.hpp"

namespace {

using namespace std::chrono_literals;
using mqsec::Bytes;
using mqsec::Error;
using mqsec::Message;
using mqsec::Queue;
using mqsec::ReceivedMessage;
using mqsec::SecurityContext;

constexpr auto kWait = 5000ms;  // upper bound for a message that must arrive (not a timing test)

class CppApiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // Before the first MQ call: sets SOFTHSM2_CONF and MQSEC_CONFIG for this process.
    mqsec::testing::SoftHsmEnv::instance();
    // Enroll the user's internal certificate and register it with the user's SID.
    mqsec::register_certificate(MQCERT_REGISTER_ALWAYS);
  }
};
[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new CppApiEnvironment);

std::string expected_sid() { return "S-1-22-1-" + std::to_string(getuid()); }

// A fresh private queue path per test (and per process: parallel ctest runs share nothing, but
// the name keeps audit logs readable).
std::string unique_path(const std::string& tag) {
  static int counter = 0;
  return ".\\private$\\cpp-" + tag + "-" + std::to_string(getpid()) + "-" +
         std::to_string(++counter);
}

// Runs `f`, which must throw mqsec::Error with `code`; returns its message.
template <typename F>
std::string expect_error(HRESULT code, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no mqsec::Error thrown";
  return {};
}

struct QueuePair {
  std::string path, format;
  Queue send, receive;
};
QueuePair make_queue(const std::string& tag, bool authenticate = false) {
  std::string path = unique_path(tag);
  std::string format = Queue::create(path, "cpp api " + tag, authenticate);
  Queue s = Queue::open(format, MQ_SEND_ACCESS);
  Queue r = Queue::open(format, MQ_RECEIVE_ACCESS);
  return QueuePair{path, format, std::move(s), std::move(r)};
}

// ---------------------------------------------------------------------------------------------

TEST(SidToString, FormatsWellFormedSidsAndRejectsMalformedOnes) {
  EXPECT_EQ(mqsec::sid_to_string(Bytes{1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0}), "S-1-5-18");
  EXPECT_EQ(mqsec::sid_to_string(Bytes{1, 2, 0, 0, 0, 0, 0, 22, 1, 0, 0, 0, 0xe8, 3, 0, 0}),
            "S-1-22-1-1000");
  EXPECT_EQ(mqsec::sid_to_string(Bytes{1, 1, 0x12, 0, 0, 0, 0, 1, 2, 0, 0, 0}),
            "S-1-0x120000000001-2");
  EXPECT_EQ(mqsec::sid_to_string(Bytes{}), "");
  EXPECT_EQ(mqsec::sid_to_string(Bytes{1, 2, 0, 0, 0, 0, 0, 22, 1, 0, 0, 0}), "");  // short
}

TEST(SecurityContext, InternalIsLiveAndMovable) {
  SecurityContext ctx = SecurityContext::internal();
  ASSERT_TRUE(ctx);
  const uint32_t h = ctx.handle();
  EXPECT_NE(h, 0u);
  SecurityContext other = std::move(ctx);
  EXPECT_FALSE(ctx);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(ctx.handle(), 0u);
  EXPECT_EQ(other.handle(), h);
}

TEST(SecurityContext, BadCertificateThrowsWithHresultAndFunction) {
  const Bytes garbage = {0x30, 0x03, 0x02, 0x01, 0x01};
  std::string what = expect_error(MQ_ERROR_INVALID_CERTIFICATE,
                                  [&] { (void)SecurityContext::from_certificate(garbage); });
  EXPECT_NE(what.find("MQGetSecurityContextEx"), std::string::npos) << what;
}

TEST(Queue, SignedRoundTripReportsTheVerifiedSender) {
  auto q = make_queue("signed", /*authenticate=*/true);
  EXPECT_EQ(mqsec::path_to_format_name(q.path), q.format);
  EXPECT_EQ(q.send.format_name(), q.format);
  SecurityContext ctx = SecurityContext::internal();

  Message m;
  m.set_body("hello, token")
      .set_label("greeting")
      .set_priority(5)
      .set_app_specific(42)
      .set_delivery(mqsec::Delivery::Recoverable)
      .set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS)
      .attach(ctx);
  EXPECT_EQ(m.security_context_handle(), ctx.handle());
  // Read before the send, however long it takes (1 s less: time() is a coarse clock).
  const auto before = std::chrono::system_clock::now() - 1s;
  const mqsec::MessageId id = q.send.send(m);

  std::optional<ReceivedMessage> r = q.receive.receive(kWait);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body_string(), "hello, token");
  EXPECT_EQ(r->label(), "greeting");
  EXPECT_EQ(r->message_class(), MQMSG_CLASS_NORMAL);
  EXPECT_EQ(r->id(), id);
  EXPECT_EQ(r->priority(), 5);
  EXPECT_EQ(r->app_specific(), 42u);
  EXPECT_EQ(r->delivery(), mqsec::Delivery::Recoverable);
  EXPECT_TRUE(r->authenticated());
  EXPECT_EQ(r->authenticated_ex(), MQMSG_AUTHENTICATED_SIG20);
  EXPECT_EQ(r->auth_level(), static_cast<uint32_t>(MQMSG_AUTH_LEVEL_ALWAYS));
  EXPECT_EQ(r->hash_algorithm(), static_cast<uint32_t>(CALG_SHA_256));
  EXPECT_EQ(r->sender_sid_string(), expected_sid());
  EXPECT_EQ(r->sender_id_type(), static_cast<uint32_t>(MQMSG_SENDERID_TYPE_SID));
  EXPECT_FALSE(r->sender_certificate().empty());
  EXPECT_EQ(r->sender_certificate()[0], 0x30);  // a DER SEQUENCE
  EXPECT_TRUE(r->sender_confirmed());           // registered by the environment
  EXPECT_FALSE(r->signature().empty());
  EXPECT_EQ(r->destination_queue(), q.send.format_name());
  EXPECT_GE(r->sent_time(), std::chrono::time_point_cast<std::chrono::seconds>(before));
  EXPECT_GE(r->arrived_time(), r->sent_time());

  // Taken, not peeked: the queue is empty now.
  EXPECT_FALSE(q.receive.receive(0ms).has_value());
}

TEST(Queue, UnsignedMessageIsNotAuthenticated) {
  auto q = make_queue("unsigned");
  q.send.send(Message().set_body("plain"));
  auto r = q.receive.receive(kWait);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body_string(), "plain");
  EXPECT_FALSE(r->authenticated());
  EXPECT_EQ(r->authenticated_ex(), 0);
  EXPECT_TRUE(r->sender_certificate().empty());
  EXPECT_FALSE(r->sender_confirmed());
  EXPECT_EQ(r->priority(), DEFAULT_M_PRIORITY);
}

TEST(Message, AttachCurrentSecurityContextSignsAndLivesInCopies) {
  auto q = make_queue("attach", /*authenticate=*/true);
  Message m;
  m.set_body("attached").set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS).attach_current_security_context();
  ASSERT_NE(m.security_context(), nullptr);
  const uint32_t h = m.security_context_handle();
  EXPECT_NE(h, 0u);

  std::optional<Message> copy = m;
  EXPECT_EQ(copy->security_context_handle(), h);  // shared, not acquired again
  q.send.send(m);
  m = Message();  // the copy keeps the context alive
  q.send.send(*copy);

  Bytes cert;
  for (int i = 0; i < 2; ++i) {
    auto r = q.receive.receive(kWait);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->body_string(), "attached");
    EXPECT_TRUE(r->authenticated());
    EXPECT_EQ(r->sender_sid_string(), expected_sid());
    cert = r->sender_certificate();
  }

  // With the last copy gone, the context is freed: its handle no longer signs.
  std::weak_ptr<const SecurityContext> weak = copy->security_context();
  copy.reset();
  EXPECT_TRUE(weak.expired());
  Message probe;
  probe.set_body("stale").set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS);
  {
    SecurityContext borrowed = SecurityContext::adopt(reinterpret_cast<HANDLE>(uintptr_t{h}));
    probe.attach(borrowed);
    (void)borrowed.release();  // not ours to free (already freed)
  }
  std::string what = expect_error(MQ_ERROR_BAD_SECURITY_CONTEXT, [&] { q.send.send(probe); });
  EXPECT_NE(what.find("MQSendMessage"), std::string::npos) << what;

  // With a sender certificate, attach_current_security_context acquires a context for it.
  Message ext;
  ext.set_body("by certificate")
      .set_auth_level(MQMSG_AUTH_LEVEL_SIG30)
      .set_hash_algorithm(CALG_SHA_384)
      .set_sender_certificate(cert)
      .attach_current_security_context();
  q.send.send(ext);
  auto r = q.receive.receive(kWait);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body_string(), "by certificate");
  EXPECT_TRUE(r->authenticated());
  EXPECT_EQ(r->authenticated_ex(), MQMSG_AUTHENTICATED_SIG30);
  EXPECT_EQ(r->hash_algorithm(), static_cast<uint32_t>(CALG_SHA_384));
  EXPECT_EQ(r->sender_certificate(), cert);
}

TEST(Queue, ReceiveAndPeekTimeOutWithNullopt) {
  auto q = make_queue("timeout");
  EXPECT_FALSE(q.receive.receive(50ms).has_value());
  EXPECT_FALSE(q.receive.peek(0ms).has_value());
  expect_error(MQ_ERROR_INVALID_PARAMETER, [&] { (void)q.receive.receive(-1ms); });
}

TEST(Queue, BigBodyRoundTripResizesBuffers) {
  auto q = make_queue("big", /*authenticate=*/true);
  Bytes body(200 * 1024);  // larger than the 64 KiB first try
  for (size_t i = 0; i < body.size(); ++i)
    body[i] = static_cast<uint8_t>((i * 31 + i / 251) & 0xFF);
  SecurityContext ctx = SecurityContext::internal();
  q.send.send(Message()
                  .set_body(body)
                  .set_label("big")
                  .set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS)
                  .attach(ctx));

  auto peeked = q.receive.peek(kWait);  // leaves it in the queue, even after the retry
  ASSERT_TRUE(peeked.has_value());
  EXPECT_EQ(peeked->body(), body);
  auto r = q.receive.receive(kWait);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id(), peeked->id());
  EXPECT_EQ(r->body().size(), body.size());
  EXPECT_EQ(r->body(), body);
  EXPECT_EQ(r->label(), "big");
  EXPECT_TRUE(r->authenticated());
  EXPECT_FALSE(q.receive.receive(0ms).has_value());
}

TEST(Queue, CursorPeeksAndReceivesInOrder) {
  auto q = make_queue("cursor");
  for (const char* label : {"one", "two", "three"}) {
    q.send.send(Message().set_label(label).set_body(label));
  }
  // A big body behind the cursor exercises the PEEK_NEXT -> PEEK_CURRENT retry.
  q.send.send(Message().set_label("four").set_body(Bytes(100 * 1024, 0x44)));
  mqsec::Cursor c = q.receive.create_cursor();
  ASSERT_TRUE(c);
  auto first = q.receive.peek_current(c, kWait);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->label(), "one");
  auto second = q.receive.peek_next(c, kWait);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->label(), "two");
  auto taken = q.receive.receive_current(c, kWait);
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(taken->label(), "two");
  auto third = q.receive.peek_next(c, kWait);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->label(), "three");
  auto fourth = q.receive.peek_next(c, kWait);
  ASSERT_TRUE(fourth.has_value());
  EXPECT_EQ(fourth->label(), "four");
  EXPECT_EQ(fourth->body(), Bytes(100 * 1024, 0x44));
  EXPECT_FALSE(q.receive.peek_next(c, 0ms).has_value());

  EXPECT_EQ(q.receive.receive(kWait)->label(), "one");
  EXPECT_EQ(q.receive.receive(kWait)->label(), "three");
  EXPECT_EQ(q.receive.receive(kWait)->label(), "four");
}

TEST(Message, Utf8LabelAndQueuePropertiesRoundTrip) {
  auto q = make_queue("utf8");
  const std::string label = "h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9D\x84\x9E";  // héllo ✓ 𝄞
  mqsec::MessageId corr{};
  corr[0] = 0xAB;
  corr[19] = 0xCD;
  q.send.send(Message()
                  .set_label(label)
                  .set_correlation_id(corr)
                  .set_response_queue(q.format)
                  .set_admin_queue(q.format)
                  .set_acknowledge(MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL));
  auto r = q.receive.receive(kWait);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->label(), label);
  EXPECT_EQ(r->correlation_id(), corr);
  EXPECT_EQ(r->response_queue(), q.format);
  EXPECT_EQ(r->admin_queue(), q.format);
  EXPECT_EQ(r->acknowledge(), MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL);
  EXPECT_TRUE(r->body().empty());

  expect_error(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, [] { Message().set_label("\xC3"); });
}

TEST(Errors, CarryTheHresultAndNameTheFunction) {
  const std::string path = unique_path("errors");
  const std::string format = Queue::create(path);
  std::string what = expect_error(MQ_ERROR_QUEUE_EXISTS, [&] { Queue::create(path); });
  EXPECT_NE(what.find("MQCreateQueue"), std::string::npos) << what;

  what = expect_error(MQ_ERROR_QUEUE_NOT_FOUND, [] {
    (void)Queue::open("DIRECT=OS:.\\private$\\cpp-no-such-queue", MQ_RECEIVE_ACCESS);
  });
  EXPECT_NE(what.find("MQOpenQueue"), std::string::npos) << what;
  what = expect_error(MQ_ERROR_QUEUE_NOT_FOUND,
                      [] { (void)mqsec::path_to_format_name(".\\private$\\cpp-no-such-queue"); });
  EXPECT_NE(what.find("MQPathNameToFormatName"), std::string::npos) << what;

  Queue by_path = Queue::open(path, MQ_SEND_ACCESS);  // a path name is resolved first
  EXPECT_EQ(by_path.format_name(), format);
  what = expect_error(MQ_ERROR_LABEL_TOO_LONG,
                      [&] { by_path.send(Message().set_label(std::string(251, 'x'))); });
  EXPECT_NE(what.find("MQSendMessage"), std::string::npos) << what;
  EXPECT_NE(what.find("PROPID_M_LABEL"), std::string::npos) << what;
  expect_error(MQ_ERROR_ILLEGAL_PROPERTY_VALUE,
               [&] { by_path.send(Message().set_priority(MQ_MAX_PRIORITY + 1)); });
  expect_error(MQ_ERROR_ACCESS_DENIED, [&] { (void)by_path.receive(0ms); });

  by_path.close();
  EXPECT_FALSE(by_path);
  Queue::remove(format);
  expect_error(MQ_ERROR_QUEUE_NOT_FOUND, [&] { (void)Queue::open(format, MQ_SEND_ACCESS); });
}

TEST(Raii, SecurityContextDestructorFreesAndMovedFromDoesNot) {
  auto q = make_queue("raii-ctx");
  Message m;
  m.set_body("x").set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS);
  {
    SecurityContext owner;
    {
      SecurityContext first = SecurityContext::internal();
      m.attach(first);
      owner = std::move(first);
    }  // `first`, moved from, is destroyed here: it must not free the handle
    EXPECT_NO_THROW(q.send.send(m));
  }  // `owner` frees it
  expect_error(MQ_ERROR_BAD_SECURITY_CONTEXT, [&] { q.send.send(m); });

  // Move assignment frees what the target held.
  SecurityContext a = SecurityContext::internal();
  SecurityContext b = SecurityContext::internal();
  Message mb;
  mb.set_body("y").set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS).attach(b);
  b = std::move(a);
  expect_error(MQ_ERROR_BAD_SECURITY_CONTEXT, [&] { q.send.send(mb); });
  EXPECT_NO_THROW(q.send.send(Message(mb).attach(b)));
  EXPECT_EQ(q.receive.receive(kWait)->body_string(), "x");
  EXPECT_EQ(q.receive.receive(kWait)->body_string(), "y");
}

TEST(Raii, QueueDestructorClosesAndMovedFromDoesNot) {
  const std::string format = Queue::create(unique_path("raii-queue"));
  {
    Queue owner;
    {
      Queue first = Queue::open(format, MQ_RECEIVE_ACCESS, MQ_DENY_RECEIVE_SHARE);
      owner = std::move(first);
    }  // `first`, moved from, is destroyed here: the exclusive receiver must stay open
    EXPECT_TRUE(owner);
    expect_error(MQ_ERROR_SHARING_VIOLATION, [&] { (void)Queue::open(format, MQ_RECEIVE_ACCESS); });
  }  // `owner` closes it
  EXPECT_NO_THROW((void)Queue::open(format, MQ_RECEIVE_ACCESS, MQ_DENY_RECEIVE_SHARE));
  Queue::remove(format);
}

}  // namespace
