// The expiry sweep (issue 13; src/core/expiry_sweep.hpp): `mqsec queue expire` (what the agent
// runs every [agent] expiry-sweep-seconds) takes out the messages whose
// PROPID_M_TIME_TO_BE_RECEIVED has passed although no receiver looked at them: into the
// dead-letter queue when they ask for it (MQMSG_DEADLETTER), with a NACK of class
// MQMSG_CLASS_NACK_RECEIVE_TIMEOUT when they ask for one, also from a subqueue they were moved
// into; messages without a limit or with time left stay; a second sweep finds nothing more.
//
// Runs on a throwaway SoftHSM token and store (tests/support/softhsm_env); the command runs as a
// child process with the same configuration.
#include <mq.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/hresult_text.hpp"
#include "tests/support/msmq_props.hpp"
#include "tests/support/msmq_queues.hpp"
#include "tests/support/remote_process.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"

namespace {

using mqsec::testing::open_queue;
using mqsec::testing::Props;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

const std::wstring kDeadLetter = L"DIRECT=OS:.\\SYSTEM$;DEADLETTER";

HRESULT send(QUEUEHANDLE h, const std::string& body, ULONG ttbr, UCHAR journal = 0,
             const std::wstring& admin = L"", std::vector<UCHAR>* msg_id = nullptr) {
  std::string copy = body;
  Props p;
  p.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(copy.data()), static_cast<ULONG>(copy.size()));
  if (ttbr != INFINITE) p.ui4(PROPID_M_TIME_TO_BE_RECEIVED, ttbr);
  if (journal != 0) p.ui1(PROPID_M_JOURNAL, journal);
  if (!admin.empty()) {
    p.wstr(PROPID_M_ADMIN_QUEUE, admin.c_str());
    p.ui1(PROPID_M_ACKNOWLEDGE, MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE);
  }
  std::vector<UCHAR> id(PROPID_M_MSGID_SIZE);
  p.bytes(PROPID_M_MSGID, id.data(), static_cast<ULONG>(id.size()));
  const HRESULT hr = MQSendMessage(h, p.msg(), MQ_NO_TRANSACTION);
  if (msg_id) *msg_id = id;
  return hr;
}

struct Got {
  HRESULT hr = MQ_OK;
  std::string body;
  USHORT msg_class = 0xFFFF;
  std::vector<UCHAR> correlation_id;
  ULONGLONG lookup_id = 0;
};

Got receive(QUEUEHANDLE h, DWORD action = MQ_ACTION_RECEIVE) {
  std::vector<UCHAR> body(256);
  std::vector<UCHAR> correlation(PROPID_M_CORRELATIONID_SIZE);
  Props p;
  p.bytes(PROPID_M_BODY, body.data(), static_cast<ULONG>(body.size()));
  const size_t cls = p.null(PROPID_M_CLASS);
  p.bytes(PROPID_M_CORRELATIONID, correlation.data(), static_cast<ULONG>(correlation.size()));
  const size_t lid = p.null(PROPID_M_LOOKUPID);
  Got g;
  g.hr = MQReceiveMessage(h, 0, action, p.msg(), nullptr, nullptr, nullptr, MQ_NO_TRANSACTION);
  if (SUCCEEDED(g.hr)) {
    g.body.assign(body.begin(), body.begin() + p.vars[0].caub.cElems);
    g.msg_class = p.vars[cls].uiVal;
    g.correlation_id = correlation;
    g.lookup_id = p.vars[lid].uhVal.QuadPart;
  }
  return g;
}

// PROPID_MGMT_QUEUE_MESSAGE_COUNT: what the store holds, without reading (so without expiring)
// any message.
ULONG message_count(const std::wstring& format) {
  const std::wstring object = L"QUEUE=" + format;
  PROPID id = PROPID_MGMT_QUEUE_MESSAGE_COUNT;
  MQPROPVARIANT var;
  std::memset(&var, 0, sizeof var);
  var.vt = VT_NULL;
  MQMGMTPROPS m{1, &id, &var, nullptr};
  EXPECT_HR(MQ_OK, MQMgmtGetInfo(nullptr, object.c_str(), &m));
  return var.ulVal;
}

mqsec::testing::CommandResult expire() {
  return mqsec::testing::run_command("MQSEC_LOG=stderr " + std::string(MQSEC_CLI) +
                                     " queue expire");
}

TEST(ExpirySweep, TakesOutExpiredMessagesNobodyReadsOnceAndLeavesTheRest) {
  const std::wstring q = mqsec::testing::make_private_queue(L"sweep-", L"q");
  const std::wstring admin = mqsec::testing::make_private_queue(L"sweep-", L"admin");
  const std::wstring sub = q + L";later";
  QUEUEHANDLE d = open_queue(kDeadLetter, MQ_RECEIVE_ACCESS);
  ASSERT_NE(d, nullptr);
  ASSERT_HR(MQ_OK, MQPurgeQueue(d));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  QUEUEHANDLE to_sub = open_queue(sub, MQ_MOVE_ACCESS);
  QUEUEHANDLE a = open_queue(admin, MQ_RECEIVE_ACCESS);

  const time_t sent = std::time(nullptr);
  // Three seconds: it must still be there for the peek and the move below on a stalled machine.
  ASSERT_HR(MQ_OK, send(s, "moved, expires", 3));
  const time_t moved_sent = std::time(nullptr);
  // Into the subqueue (a move keeps the message's seq, the sweep's key).
  const Got first = receive(r, MQ_ACTION_PEEK_CURRENT);
  ASSERT_HR(MQ_OK, first.hr);
  ASSERT_EQ(first.body, "moved, expires");
  ASSERT_HR(MQ_OK, MQMoveMessage(r, to_sub, first.lookup_id, nullptr));
  ASSERT_HR(MQ_OK, send(s, "dead letter", 1, MQMSG_DEADLETTER));
  std::vector<UCHAR> nacked_id;
  ASSERT_HR(MQ_OK, send(s, "nacked", 1, 0, admin, &nacked_id));
  // Sends may straddle a second boundary on a busy machine; each message expires once the
  // clock is past its own send second + its time to be received.
  const time_t last_sent = std::time(nullptr);
  ASSERT_HR(MQ_OK, send(s, "forever", INFINITE));
  ASSERT_HR(MQ_OK, send(s, "an hour", 3600));
  EXPECT_EQ(message_count(q), 4u);
  EXPECT_EQ(message_count(sub), 1u);

  // Before the limit: nothing to do.
  mqsec::testing::CommandResult c = expire();
  ASSERT_TRUE(c.ok()) << c.output;
  if (std::time(nullptr) <= sent + 1) {
    EXPECT_NE(c.output.find("expired 0 messages"), std::string::npos) << c.output;
  }
  while (std::time(nullptr) <= std::max(last_sent + 1, moved_sent + 3)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  c = expire();
  ASSERT_TRUE(c.ok()) << c.output;
  EXPECT_NE(c.output.find("expired 3 messages"), std::string::npos) << c.output;
  // Taken out although nobody read the queue.
  EXPECT_EQ(message_count(q), 2u);
  EXPECT_EQ(message_count(sub), 0u);
  // Into the dead-letter queue, with the class MSMQ gives it there.
  Got g = receive(d);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "dead letter");
  EXPECT_EQ(g.msg_class, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(d).hr);
  // NACKed to the admin queue it named.
  g = receive(a);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.msg_class, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT);
  EXPECT_EQ(g.correlation_id, nacked_id);
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(a).hr);

  // Once: a second sweep finds nothing more, and sends no second NACK.
  c = expire();
  ASSERT_TRUE(c.ok()) << c.output;
  EXPECT_NE(c.output.find("expired 0 messages"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("1 with a time to be received still waiting"), std::string::npos)
      << c.output;
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(a).hr);

  // The others stay, in order.
  g = receive(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "forever");
  g = receive(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "an hour");
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, receive(r).hr);
  for (QUEUEHANDLE h : {d, s, r, to_sub, a}) MQCloseQueue(h);
}

// The sweep is the queue manager's work: a queue whose DACL lets nobody peek (an empty DACL;
// MQSetQueueSecurity) is swept all the same.
TEST(ExpirySweep, SweepsQueuesWhoseDaclLetsNobodyPeek) {
  const std::wstring q = mqsec::testing::make_private_queue(L"sweep-", L"locked");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send(s, "expires", 1));
  // After the send: its second may be the next one (a wait from before it can end too early).
  const time_t sent = std::time(nullptr);
  MQCloseQueue(s);
  // Self-relative, SE_DACL_PRESENT, an ACL with no entry: nobody has a right (the owner keeps
  // READ_CONTROL and WRITE_DAC only).
  unsigned char empty_dacl[28] = {1, 0, 0x04, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 20,   0,    0, 0, 2, 0, 8, 0, 0, 0, 0, 0};
  ASSERT_HR(MQ_OK, MQSetQueueSecurity(q.c_str(), DACL_SECURITY_INFORMATION, empty_dacl));
  QUEUEHANDLE h = nullptr;
  ASSERT_HR(MQ_ERROR_ACCESS_DENIED, MQOpenQueue(q.c_str(), MQ_PEEK_ACCESS, MQ_DENY_NONE, &h));
  while (std::time(nullptr) <= sent + 1) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const mqsec::testing::CommandResult c = expire();
  ASSERT_TRUE(c.ok()) << c.output;
  EXPECT_NE(c.output.find("expired 1 message "), std::string::npos) << c.output;
  EXPECT_EQ(message_count(q), 0u);
}

// A NACK carries what the expired message's sender chose (body, label): it goes into an admin
// queue of this machine only if that queue lets an anonymous sender write (MSMQ's default
// descriptor does). An admin queue with an empty DACL gets none; one with the default does.
TEST(ExpirySweep, NacksGoOnlyIntoAdminQueuesThatLetAnonymousSendersWrite) {
  const std::wstring q = mqsec::testing::make_private_queue(L"sweep-", L"nack-dacl");
  const std::wstring locked = mqsec::testing::make_private_queue(L"sweep-", L"nack-locked");
  const std::wstring open_admin = mqsec::testing::make_private_queue(L"sweep-", L"nack-open");
  unsigned char empty_dacl[28] = {1, 0, 0x04, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 20,   0,    0, 0, 2, 0, 8, 0, 0, 0, 0, 0};
  ASSERT_HR(MQ_OK, MQSetQueueSecurity(locked.c_str(), DACL_SECURITY_INFORMATION, empty_dacl));
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send(s, "injected into a locked queue?", 1, 0, locked));
  ASSERT_HR(MQ_OK, send(s, "nacked as usual", 1, 0, open_admin));
  const time_t last_sent = std::time(nullptr);  // both are expired once past this second + 1
  MQCloseQueue(s);
  while (std::time(nullptr) <= last_sent + 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const mqsec::testing::CommandResult c = expire();
  ASSERT_TRUE(c.ok()) << c.output;
  EXPECT_NE(c.output.find("expired 2 messages"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("NACK not sent"), std::string::npos) << c.output;
  EXPECT_EQ(message_count(locked), 0u);
  EXPECT_EQ(message_count(open_admin), 1u);
}

// The agent sweeps by itself: a message nobody reads is gone from its queue (and NACKed) within
// [agent] expiry-sweep-seconds of its limit, while the agent runs against an unreachable broker.
TEST(ExpirySweep, TheAgentSweepsEveryExpirySweepSeconds) {
  const std::wstring q = mqsec::testing::make_private_queue(L"sweep-", L"agent");
  const std::wstring admin = mqsec::testing::make_private_queue(L"sweep-", L"agent-admin");
  QUEUEHANDLE s = open_queue(q, MQ_SEND_ACCESS);
  QUEUEHANDLE a = open_queue(admin, MQ_RECEIVE_ACCESS);
  std::vector<UCHAR> id;
  ASSERT_HR(MQ_OK, send(s, "expires", 1, 0, admin, &id));
  ASSERT_HR(MQ_OK, send(s, "stays", INFINITE));
  EXPECT_EQ(message_count(q), 2u);

  // The test's own configuration, with a [broker] nothing listens on and a one-second sweep.
  const char* path = std::getenv("MQSEC_CONFIG");
  ASSERT_NE(path, nullptr);
  std::ostringstream text;
  text << std::ifstream(path).rdbuf();
  const std::string agent_cfg = std::string(path) + ".agent.toml";
  std::ofstream(agent_cfg, std::ios::trunc)
      << text.str()
      << "\n[broker]\nurl = \"amqp://127.0.0.1:1\"\nuser = \"mqsec\"\n"
         "password-source = \"env:MQSEC_SWEEP_TEST_PW\"\nconnect-timeout-ms = 200\n"
         "[agent]\nexpiry-sweep-seconds = 1\n";
  mqsec::testing::Subprocess agent(
      {MQSEC_CLI, "agent"},
      {{"MQSEC_CONFIG", agent_cfg}, {"MQSEC_LOG", "stderr"}, {"MQSEC_SWEEP_TEST_PW", "pw"}},
      agent_cfg + ".log");
  // Nobody reads q: only the agent can take the message out. Limit 1 s, sweep every 1 s. The
  // agent commits the removal and then the NACK: wait for both.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while ((message_count(q) != 1u || message_count(admin) != 1u) &&
         std::chrono::steady_clock::now() < give_up) {
    ASSERT_TRUE(agent.running()) << agent.output_tail();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(message_count(q), 1u) << agent.output_tail();
  Got g = receive(a);
  ASSERT_HR(MQ_OK, g.hr) << agent.output_tail();
  EXPECT_EQ(g.msg_class, MQMSG_CLASS_NACK_RECEIVE_TIMEOUT);
  EXPECT_EQ(g.correlation_id, id);
  // The sweep's summary line comes after its removal and NACK: wait for it.
  const auto logged = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (agent.output_tail().find("agent: expired 1 message") == std::string::npos &&
         std::chrono::steady_clock::now() < logged) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(agent.output_tail().find("agent: expired 1 message"), std::string::npos)
      << agent.output_tail();
  auto st = agent.stop(SIGTERM, std::chrono::seconds(10));
  ASSERT_TRUE(st.has_value()) << agent.output_tail();
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << agent.output_tail();
  QUEUEHANDLE r = open_queue(q, MQ_RECEIVE_ACCESS);
  g = receive(r);
  ASSERT_HR(MQ_OK, g.hr);
  EXPECT_EQ(g.body, "stays");
  for (QUEUEHANDLE h : {s, a, r}) MQCloseQueue(h);
}

}  // namespace
