// Receivers of one process do not verify the same message twice (src/core/offering.hpp): a
// receive skips the message another thread of the process is offering, and every message is
// still received exactly once. Against the SoftHSM test environment's store, unsigned messages.
#include <mq.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "src/core/offering.hpp"
#include "src/core/runtime.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/msmq_props.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"

namespace {

using mqsec::testing::SoftHsmEnv;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

class ReceiveOffering : public ::testing::Test {
 protected:
  void SetUp() override {
    SoftHsmEnv::instance().write_config({});
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    name_ = std::string("offering-") + info->name() + "-" + std::to_string(getpid());
    path_ = L".\\private$\\" + std::wstring(name_.begin(), name_.end());
    MQPROPVARIANT v[1];
    QUEUEPROPID id[1] = {PROPID_Q_PATHNAME};
    v[0].vt = VT_LPWSTR;
    v[0].pwszVal = const_cast<wchar_t*>(path_.c_str());
    MQQUEUEPROPS props{1, id, v, nullptr};
    WCHAR fmt[256];
    DWORD len = 256;
    ASSERT_HR(MQ_OK, MQCreateQueue(nullptr, &props, fmt, &len));
    format_ = fmt;
  }
  void TearDown() override { MQDeleteQueue(format_.c_str()); }

  QUEUEHANDLE open(DWORD access) {
    QUEUEHANDLE h = nullptr;
    EXPECT_HR(MQ_OK, MQOpenQueue(format_.c_str(), access, MQ_DENY_NONE, &h));
    return h;
  }
  // MSMQ's defaults: priority 3, no journal.
  static HRESULT send(QUEUEHANDLE h, std::string body, UCHAR priority = 3,
                      UCHAR journal = MQMSG_JOURNAL_NONE) {
    mqsec::testing::Props p;
    p.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body.data()), static_cast<ULONG>(body.size()));
    p.ui1(PROPID_M_PRIORITY, priority);
    p.ui1(PROPID_M_JOURNAL, journal);
    return MQSendMessage(h, p.msg(), MQ_NO_TRANSACTION);
  }
  // PROPID_Q_JOURNAL on: receives of handles opened after this do not take claims (queue.cpp).
  void set_queue_journal() {
    mqsec::testing::Props p;
    p.ui1(PROPID_Q_JOURNAL, MQ_JOURNAL);
    ASSERT_HR(MQ_OK, MQSetQueueProperties(format_.c_str(), p.queue()));
  }
  // Receives one message (timeout in ms); its body, or "" with *hr set.
  static std::string receive(QUEUEHANDLE h, DWORD timeout, HRESULT* hr) {
    std::vector<UCHAR> body(256);
    MSGPROPID id[1] = {PROPID_M_BODY};
    MQPROPVARIANT v[1];
    v[0].vt = VT_UI1 | VT_VECTOR;
    v[0].caub.pElems = body.data();
    v[0].caub.cElems = static_cast<ULONG>(body.size());
    MQMSGPROPS p{1, id, v, nullptr};
    *hr = MQReceiveMessage(h, timeout, MQ_ACTION_RECEIVE, &p, nullptr, nullptr, nullptr,
                           MQ_NO_TRANSACTION);
    if (FAILED(*hr)) return {};
    return std::string(body.begin(), body.begin() + v[0].caub.cElems);
  }
  // The key runtime().offering() knows this queue by (queue.cpp: store path, newline, id).
  std::string offer_key() const {
    const auto store = SoftHsmEnv::instance().dir() / "store";
    auto q = mqsec::core::runtime().stores().store_at(store).find_queue(name_);
    EXPECT_TRUE(q.has_value());
    return store.string() + '\n' + std::to_string(q ? q->id : -1);
  }

  std::string name_;
  std::wstring path_, format_;
};

TEST_F(ReceiveOffering, BeginIsExclusivePerQueueAndMessageUntilEnded) {
  // Never destroyed: its mutex stays registered with the fork handlers (pkcs11::
  // register_fork_mutex), which a later fork() of this test program would lock.
  mqsec::core::Offering& o = *new mqsec::core::Offering;
  EXPECT_TRUE(o.begin("a", 1));
  EXPECT_FALSE(o.begin("a", 1));
  EXPECT_TRUE(o.begin("a", 2));
  EXPECT_TRUE(o.begin("b", 1));
  const std::string a = "a";
  {
    mqsec::core::Offering::Guard g(&o, &a, 1);
    (void)g;
  }
  EXPECT_TRUE(o.begin("a", 1)) << "the guard did not end the offer";
  // A forked child starts with nothing offered (its parent's receivers are not its own).
  const pid_t pid = fork();
  ASSERT_NE(-1, pid);
  if (pid == 0) _exit(o.begin("a", 1) && o.begin("a", 2) ? 0 : 1);
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(0, WEXITSTATUS(status));
}

// Claimed receives of real (MQEV) envelopes: the claim peeks their ids (security::peek_msg_id,
// passed down by core), so one validation read answers for several deliveries
// (Store::deliver_claimed, docs/design/claim-check.md): 40 receives, 2 reads (16, then 32) on
// a quiet store. Fails when core passes no peek (40 reads).
TEST_F(ReceiveOffering, ClaimedReceivesOfSignedMessagesReadOncePerWindow) {
  QUEUEHANDLE s = open(MQ_SEND_ACCESS);
  for (int i = 0; i < 40; ++i) ASSERT_HR(MQ_OK, send(s, "m" + std::to_string(i)));
  MQCloseQueue(s);  // makes the express messages visible
  auto& store = mqsec::core::runtime().stores().store_at(SoftHsmEnv::instance().dir() / "store");
  const uint64_t before = store.deliver_reads();
  QUEUEHANDLE r = open(MQ_RECEIVE_ACCESS);
  HRESULT hr = MQ_OK;
  for (int i = 0; i < 40; ++i) EXPECT_EQ("m" + std::to_string(i), receive(r, 0, &hr));
  EXPECT_EQ("", receive(r, 0, &hr));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, hr);
  MQCloseQueue(r);
  // 2 on a quiet store; a commit of the runtime's own meanwhile (an express flush of another
  // test's queue) can end an anchor early and cost a read or two more, never one per receive.
  if (store.claim_fast_path()) {
    EXPECT_LE(store.deliver_reads() - before, 6u);
  } else {
    EXPECT_EQ(store.deliver_reads() - before, 40u);
  }
}

TEST_F(ReceiveOffering, AReceiveSkipsTheMessageAnotherThreadIsOffering) {
  // A queue with a journal: its receives do not take claims (queue.cpp; a plain queue's
  // receivers share this process's claimed messages instead), they read the queue's head.
  set_queue_journal();
  if (HasFatalFailure()) return;
  QUEUEHANDLE s = open(MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send(s, "first"));
  ASSERT_HR(MQ_OK, send(s, "second"));
  MQCloseQueue(s);  // makes the express messages visible
  QUEUEHANDLE r = open(MQ_RECEIVE_ACCESS);
  auto* store = &mqsec::core::runtime().stores().store_at(SoftHsmEnv::instance().dir() / "store");
  auto q = store->find_queue(name_);
  ASSERT_TRUE(q);
  auto head = store->first(q->id);
  ASSERT_TRUE(head);
  // Another thread of this process is offering the head: this receive takes the next one.
  const std::string key = offer_key();
  ASSERT_TRUE(mqsec::core::runtime().offering().begin(key, head->seq));
  HRESULT hr = MQ_OK;
  EXPECT_EQ("second", receive(r, 0, &hr));
  EXPECT_HR(MQ_OK, hr);
  // Only the offered one is left: not taken while offered (timeout 0), taken once it is not.
  EXPECT_EQ("", receive(r, 0, &hr));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, hr);
  // That thread gives up on it (its buffer was too small, say): a waiting receive gets it
  // without any change to the queue to wake it.
  std::thread giver([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    mqsec::core::runtime().offering().end(key, head->seq);
  });
  EXPECT_EQ("first", receive(r, 5000, &hr));
  EXPECT_HR(MQ_OK, hr);
  giver.join();
  MQCloseQueue(r);
}

TEST_F(ReceiveOffering, ThreadsOfOneProcessReceiveEachMessageExactlyOnce) {
  constexpr int kMessages = 600;
  QUEUEHANDLE s = open(MQ_SEND_ACCESS);
  for (int i = 0; i < kMessages; ++i) ASSERT_HR(MQ_OK, send(s, "m" + std::to_string(i)));
  MQCloseQueue(s);
  std::mutex mu;
  std::map<std::string, int> seen;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      QUEUEHANDLE r = open(MQ_RECEIVE_ACCESS);
      for (;;) {
        HRESULT hr = MQ_OK;
        std::string body = receive(r, 200, &hr);
        if (hr == MQ_ERROR_IO_TIMEOUT) break;
        if (FAILED(hr)) {
          ++errors;
          break;
        }
        std::lock_guard lock(mu);
        ++seen[body];
      }
      MQCloseQueue(r);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(0, errors.load());
  EXPECT_EQ(static_cast<size_t>(kMessages), seen.size());
  for (const auto& [body, n] : seen) EXPECT_EQ(1, n) << body;
}

// Claimed receives (docs/performance.md, "Claimed receives"): a forked child is a claim owner
// of its own. It does not return what its parent claimed, and what it returned before it died
// (deleted later, from its delivery log) is never returned to the parent.
TEST_F(ReceiveOffering, AForkedChildDoesNotInheritItsParentsClaims) {
  // More than what the parent claims (a batch of 64, src/core/queue.cpp, and the next one,
  // claimed ahead while the first is handed out), few more: the child must be done before its
  // parent's 2 s lease runs out, or it takes those messages over.
  constexpr int kMessages = 2 * 64 + 6;
  QUEUEHANDLE s = open(MQ_SEND_ACCESS);
  for (int i = 0; i < kMessages; ++i) ASSERT_HR(MQ_OK, send(s, "m" + std::to_string(i)));
  MQCloseQueue(s);
  QUEUEHANDLE r = open(MQ_RECEIVE_ACCESS);
  HRESULT hr = MQ_OK;
  std::map<std::string, int> seen;
  const auto claimed_at = std::chrono::steady_clock::now();
  ++seen[receive(r, 0, &hr)];  // claims a batch
  ASSERT_HR(MQ_OK, hr);
  int fds[2];
  ASSERT_EQ(0, pipe(fds));
  const pid_t pid = fork();
  ASSERT_NE(-1, pid);
  if (pid == 0) {
    close(fds[0]);
    for (;;) {
      HRESULT chr = MQ_OK;
      std::string body = receive(r, 0, &chr);
      if (FAILED(chr)) _exit(chr == MQ_ERROR_IO_TIMEOUT ? 0 : 1);
      body += '\n';
      if (write(fds[1], body.data(), body.size()) != static_cast<ssize_t>(body.size())) _exit(2);
    }
  }
  close(fds[1]);
  std::string from_child;
  char buf[256];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) from_child.append(buf, n);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(0, WEXITSTATUS(status));
  size_t child_count = 0;
  for (size_t at = 0, nl; (nl = from_child.find('\n', at)) != std::string::npos; at = nl + 1) {
    ++seen[from_child.substr(at, nl - at)];
    ++child_count;
  }
  EXPECT_GT(child_count, 0u) << "the child received nothing";
  // Past the parent's lease (a stalled machine) the child may rightly take the parent's claims
  // over: then only exactly-once below is conclusive.
  if (std::chrono::steady_clock::now() - claimed_at < std::chrono::milliseconds(1900)) {
    EXPECT_LT(child_count, static_cast<size_t>(kMessages - 1))
        << "the child received what its parent had claimed";
  } else {
    std::printf(
        "[ note ] the child ended after the parent's 2 s lease: not checked whether it "
        "took the parent's claims\n");
  }
  for (;;) {
    std::string body = receive(r, 0, &hr);
    if (FAILED(hr)) break;
    ++seen[body];
  }
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, hr);
  EXPECT_EQ(static_cast<size_t>(kMessages), seen.size());
  for (const auto& [body, n] : seen) EXPECT_EQ(1, n) << body;
  MQCloseQueue(r);
}

// A claimed message that expires (PROPID_M_TIME_TO_BE_RECEIVED) before this process returns it
// is taken out as expired, not delivered.
// Receive order with claimed receives: a message of higher priority sent after this process
// claimed lower ones is received first on every way a claimed message can leave a receive:
// delivered, reported as too big for the caller's buffer, and delivered into the machine
// journal (MQMSG_JOURNAL).
TEST_F(ReceiveOffering, AHigherPriorityArrivalOvertakesClaimedMessagesOnEveryPath) {
  QUEUEHANDLE s = open(MQ_SEND_ACCESS);
  QUEUEHANDLE r = open(MQ_RECEIVE_ACCESS);
  HRESULT hr = MQ_OK;
  for (UCHAR journal : {UCHAR{MQMSG_JOURNAL_NONE}, UCHAR{MQMSG_JOURNAL}}) {
    SCOPED_TRACE(journal == MQMSG_JOURNAL ? "journaled" : "not journaled");
    for (int i = 0; i < 3; ++i) {
      ASSERT_HR(MQ_OK, send(s, "low" + std::to_string(i), 1, journal));
    }
    EXPECT_EQ("low0", receive(r, 0, &hr));  // claims all three
    ASSERT_HR(MQ_OK, hr);
    ASSERT_HR(MQ_OK, send(s, "urgent, and longer than the others", 6, journal));
    EXPECT_EQ("urgent, and longer than the others", receive(r, 0, &hr));
    ASSERT_HR(MQ_OK, hr);
    // Too small a buffer is reported for the message the receive would return.
    ASSERT_HR(MQ_OK, send(s, "urgent again, and longer than the others", 6, journal));
    UCHAR small[2];  // smaller than every body here
    mqsec::testing::Props p;
    p.bytes(PROPID_M_BODY, small, sizeof small);
    const size_t size = p.ui4(PROPID_M_BODY_SIZE, 0);
    EXPECT_HR(MQ_ERROR_BUFFER_OVERFLOW, MQReceiveMessage(r, 0, MQ_ACTION_RECEIVE, p.msg(), nullptr,
                                                         nullptr, nullptr, MQ_NO_TRANSACTION));
    EXPECT_EQ(std::string("urgent again, and longer than the others").size(), p.var(size).ulVal);
    EXPECT_EQ("urgent again, and longer than the others", receive(r, 0, &hr));
    EXPECT_EQ("low1", receive(r, 0, &hr));
    EXPECT_EQ("low2", receive(r, 0, &hr));
    receive(r, 0, &hr);
    EXPECT_HR(MQ_ERROR_IO_TIMEOUT, hr);
  }
  MQCloseQueue(r);
  MQCloseQueue(s);
}

// A receive that does not claim (here: a handle opened after PROPID_Q_JOURNAL was set, while
// another process holds claims from a handle opened before) looks past the messages another
// process claimed: it takes a later unclaimed one, and times out when there is none, instead of
// verifying the claimed one again and again without ever reaching its timeout.
TEST_F(ReceiveOffering, AReceiveThatDoesNotClaimLooksPastAnotherProcesssClaims) {
  QUEUEHANDLE s = open(MQ_SEND_ACCESS);
  for (int i = 0; i < 3; ++i) ASSERT_HR(MQ_OK, send(s, "m" + std::to_string(i)));
  int ready[2], go[2];
  ASSERT_EQ(0, pipe(ready));
  ASSERT_EQ(0, pipe(go));
  const pid_t pid = fork();
  ASSERT_NE(-1, pid);
  if (pid == 0) {
    QUEUEHANDLE r = open(MQ_RECEIVE_ACCESS);
    HRESULT hr = MQ_OK;
    // A timeout: the parent's express writer may not have committed the three yet (a fork does
    // not wait for it; under a loaded CI a receive that did not wait found nothing).
    const bool ok = receive(r, 10000, &hr) == "m0";  // claims m1 and m2 too
    (void)!write(ready[1], ok ? "r" : "f", 1);
    char c = 0;
    (void)!read(go[0], &c, 1);
    MQCloseQueue(r);  // lets m1 and m2 go
    _exit(ok ? 0 : 1);
  }
  // However the test ends, the child is let go and reaped (a child left waiting for `go` kept
  // the test's output open, and ctest waited for its 600 s timeout).
  bool released = false;
  std::shared_ptr<void> reap(nullptr, [&](void*) {
    if (released) return;
    (void)!write(go[1], "x", 1);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  });
  char c = 0;
  ASSERT_EQ(1, read(ready[0], &c, 1));
  ASSERT_EQ('r', c);
  set_queue_journal();
  if (HasFatalFailure()) return;
  QUEUEHANDLE r = open(MQ_RECEIVE_ACCESS);  // journaled: its receives do not claim
  // Run in a thread: if it never returned, letting the child go would end it (with m1).
  auto receive_in_thread = [&](DWORD timeout, HRESULT* hr) {
    std::string body;
    std::atomic<bool> done{false};
    std::thread t([&] {
      body = receive(r, timeout, hr);
      done = true;
    });
    for (int i = 0; i < 1000 && !done; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const bool returned = done;
    if (!returned) (void)!write(go[1], "x", 1);
    t.join();
    EXPECT_TRUE(returned) << "the receive did not return within 10 s";
    return body;
  };
  HRESULT hr = MQ_OK;
  EXPECT_EQ("", receive_in_thread(300, &hr));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, hr) << "nothing it can take: it times out";
  ASSERT_HR(MQ_OK, send(s, "m3"));
  EXPECT_EQ("m3", receive_in_thread(300, &hr)) << "past the two another process holds";
  EXPECT_HR(MQ_OK, hr);
  (void)!write(go[1], "x", 1);
  int status = 0;
  released = true;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ("m1", receive(r, 1000, &hr)) << "let go when the other process closed its handle";
  EXPECT_EQ("m2", receive(r, 1000, &hr));
  MQCloseQueue(r);
  MQCloseQueue(s);
}

TEST_F(ReceiveOffering, AClaimedMessageThatExpiresIsNotDelivered) {
  QUEUEHANDLE s = open(MQ_SEND_ACCESS);
  ASSERT_HR(MQ_OK, send(s, "first"));
  {
    std::string body = "expires";
    MSGPROPID id[2] = {PROPID_M_BODY, PROPID_M_TIME_TO_BE_RECEIVED};
    MQPROPVARIANT v[2];
    v[0].vt = VT_UI1 | VT_VECTOR;
    v[0].caub.pElems = reinterpret_cast<UCHAR*>(body.data());
    v[0].caub.cElems = static_cast<ULONG>(body.size());
    v[1].vt = VT_UI4;
    v[1].ulVal = 1;
    MQMSGPROPS p{2, id, v, nullptr};
    ASSERT_HR(MQ_OK, MQSendMessage(s, &p, MQ_NO_TRANSACTION));
  }
  MQCloseQueue(s);
  QUEUEHANDLE r = open(MQ_RECEIVE_ACCESS);
  HRESULT hr = MQ_OK;
  EXPECT_EQ("first", receive(r, 0, &hr));  // claims both
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  EXPECT_EQ("", receive(r, 0, &hr));
  EXPECT_HR(MQ_ERROR_IO_TIMEOUT, hr);
  auto* store = &mqsec::core::runtime().stores().store_at(SoftHsmEnv::instance().dir() / "store");
  EXPECT_EQ(0u, store->message_count(store->find_queue(name_)->id)) << "expired, taken out";
  MQCloseQueue(r);
}

}  // namespace
