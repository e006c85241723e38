// Verifying ahead (issue 14, design (c); src/core/verify_ahead.hpp): while a receiving thread
// returns one claimed message, the runtime's worker verifies the next ones this process claimed.
// Against the SoftHSM test environment: signed messages (the user's internal certificate) on an
// authenticated queue, received through mq.h; the worker's counters and test hooks through
// core::runtime().verify_ahead().
#include <mq.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "src/core/runtime.hpp"
#include "src/core/verify_ahead.hpp"
#include "src/security/envelope.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"

namespace {

using mqsec::core::VerifyAhead;
using mqsec::testing::SoftHsmEnv;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

VerifyAhead& ahead() { return mqsec::core::runtime().verify_ahead(); }

VerifyAhead::Counters operator-(const VerifyAhead::Counters& a, const VerifyAhead::Counters& b) {
  VerifyAhead::Counters d;
  d.ahead = a.ahead - b.ahead;
  d.used = a.used - b.used;
  d.waited = a.waited - b.waited;
  d.inline_ = a.inline_ - b.inline_;
  d.stale = a.stale - b.stale;
  d.withdrawn = a.withdrawn - b.withdrawn;
  d.discarded = a.discarded - b.discarded;
  return d;
}

std::string text(const VerifyAhead::Counters& c) {
  return "ahead " + std::to_string(c.ahead) + ", used " + std::to_string(c.used) + ", waited " +
         std::to_string(c.waited) + ", inline " + std::to_string(c.inline_) + ", stale " +
         std::to_string(c.stale) + ", withdrawn " + std::to_string(c.withdrawn) + ", discarded " +
         std::to_string(c.discarded);
}

class VerifyAheadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SoftHsmEnv::instance().write_config({});
    ASSERT_HR(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, nullptr, 0));
  }
  void SetUp() override {
    ahead().set_mode(VerifyAhead::Mode::On);  // whatever the CPU count of the machine
    ahead().set_max_age(std::chrono::milliseconds(1000));
    ahead().set_before_verify({});
    ASSERT_HR(MQ_OK, MQGetSecurityContextEx(nullptr, 0, &ctx_));
    format_ = create(suffix());
  }
  void TearDown() override {
    ahead().set_before_verify({});
    ahead().set_mode(VerifyAhead::Mode::Auto);
    ahead().set_max_age(std::chrono::milliseconds(1000));
    for (const std::wstring& f : created_) MQDeleteQueue(f.c_str());
    if (ctx_ != nullptr) MQFreeSecurityContext(ctx_);
  }
  static std::string suffix() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string(info->name()) + "-" + std::to_string(getpid());
  }
  // An authenticated queue .\private$\ahead-<name>; its format name.
  std::wstring create(const std::string& name) {
    std::string lower = "ahead-" + name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    names_.push_back(lower);  // queue names are stored lower-cased
    std::wstring path = L".\\private$\\";
    for (char c : names_.back()) path += static_cast<wchar_t>(c);
    QUEUEPROPID ids[2] = {PROPID_Q_PATHNAME, PROPID_Q_AUTHENTICATE};
    MQPROPVARIANT v[2];
    v[0].vt = VT_LPWSTR;
    v[0].pwszVal = path.data();
    v[1].vt = VT_UI1;
    v[1].bVal = MQ_AUTHENTICATE;
    MQQUEUEPROPS props{2, ids, v, nullptr};
    WCHAR fmt[256];
    DWORD len = 256;
    EXPECT_HR(MQ_OK, MQCreateQueue(nullptr, &props, fmt, &len));
    created_.push_back(fmt);
    return fmt;
  }
  QUEUEHANDLE open(const std::wstring& format, DWORD access) {
    QUEUEHANDLE h = nullptr;
    EXPECT_HR(MQ_OK, MQOpenQueue(format.c_str(), access, MQ_DENY_NONE, &h));
    return h;
  }
  // Sends "<prefix><i>" for i in [0, n), signed; closing the handle stores them.
  void send(const std::wstring& format, int n, const std::string& prefix = "m") {
    QUEUEHANDLE s = open(format, MQ_SEND_ACCESS);
    for (int i = 0; i < n; ++i) {
      std::string body = prefix + std::to_string(i);
      MSGPROPID id[3] = {PROPID_M_BODY, PROPID_M_AUTH_LEVEL, PROPID_M_SECURITY_CONTEXT};
      MQPROPVARIANT v[3];
      v[0].vt = VT_UI1 | VT_VECTOR;
      v[0].caub.pElems = reinterpret_cast<UCHAR*>(body.data());
      v[0].caub.cElems = static_cast<ULONG>(body.size());
      v[1].vt = VT_UI4;
      v[1].ulVal = MQMSG_AUTH_LEVEL_ALWAYS;
      v[2].vt = VT_UI4;
      v[2].ulVal = static_cast<ULONG>(reinterpret_cast<uintptr_t>(ctx_));
      MQMSGPROPS p{3, id, v, nullptr};
      ASSERT_HR(MQ_OK, MQSendMessage(s, &p, MQ_NO_TRANSACTION));
    }
    MQCloseQueue(s);
  }
  // Receives one message (timeout in ms): its body, or "" with *hr set; *authenticated from
  // PROPID_M_AUTHENTICATED.
  static std::string receive(QUEUEHANDLE h, DWORD timeout, HRESULT* hr,
                             UCHAR* authenticated = nullptr) {
    std::vector<UCHAR> body(256);
    MSGPROPID id[2] = {PROPID_M_BODY, PROPID_M_AUTHENTICATED};
    MQPROPVARIANT v[2];
    v[0].vt = VT_UI1 | VT_VECTOR;
    v[0].caub.pElems = body.data();
    v[0].caub.cElems = static_cast<ULONG>(body.size());
    v[1].vt = VT_NULL;
    MQMSGPROPS p{2, id, v, nullptr};
    *hr = MQReceiveMessage(h, timeout, MQ_ACTION_RECEIVE, &p, nullptr, nullptr, nullptr,
                           MQ_NO_TRANSACTION);
    if (FAILED(*hr)) return {};
    if (authenticated) *authenticated = v[1].bVal;
    return std::string(body.begin(), body.begin() + v[0].caub.cElems);
  }
  // Receives until the queue is empty (timeout 0); the bodies, each checked authenticated.
  // `pause`: the application's work between two receives.
  static std::vector<std::string> drain(
      QUEUEHANDLE h, std::chrono::microseconds pause = std::chrono::microseconds(0)) {
    std::vector<std::string> out;
    for (;;) {
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
      HRESULT hr = MQ_OK;
      UCHAR auth = 0;
      std::string b = receive(h, 0, &hr, &auth);
      if (hr == MQ_ERROR_IO_TIMEOUT) break;
      EXPECT_HR(MQ_OK, hr);
      if (FAILED(hr)) break;
      EXPECT_EQ(1, auth) << b;
      out.push_back(b);
    }
    return out;
  }
  static std::vector<std::string> bodies(int from, int to, const std::string& prefix = "m") {
    std::vector<std::string> out;
    for (int i = from; i < to; ++i) out.push_back(prefix + std::to_string(i));
    return out;
  }
  static std::filesystem::path store_dir() { return SoftHsmEnv::instance().dir() / "store"; }
  // Replaces the body of the n-th stored message (seq order) of queue `name` by one with a
  // flipped byte, keeping its signature: its seq.
  static int64_t tamper(const std::string& name, int n) {
    sqlite3* db = nullptr;
    EXPECT_EQ(SQLITE_OK, sqlite3_open_v2((store_dir() / "mqsec.db").c_str(), &db,
                                         SQLITE_OPEN_READWRITE, nullptr));
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db,
                       "SELECT m.seq, m.envelope FROM messages m JOIN queues q ON q.id = "
                       "m.queue_id WHERE q.name = ?1 ORDER BY m.seq LIMIT 1 OFFSET ?2",
                       -1, &st, nullptr);
    sqlite3_bind_text(st, 1, name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, n);
    int64_t seq = -1;
    mqsec::security::Bytes bytes;
    if (sqlite3_step(st) == SQLITE_ROW) {
      seq = sqlite3_column_int64(st, 0);
      const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 1));
      bytes.assign(p, p + sqlite3_column_bytes(st, 1));
    }
    sqlite3_finalize(st);
    EXPECT_NE(-1, seq);
    mqsec::security::Envelope e = mqsec::security::decode(bytes);
    e.body.at(0) ^= 0x01;
    const mqsec::security::Bytes changed = mqsec::security::encode(e);
    sqlite3_prepare_v2(db, "UPDATE messages SET envelope = ?1 WHERE seq = ?2", -1, &st, nullptr);
    sqlite3_bind_blob(st, 1, changed.data(), static_cast<int>(changed.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, seq);
    EXPECT_EQ(SQLITE_DONE, sqlite3_step(st));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return seq;
  }

  HANDLE ctx_ = nullptr;
  std::wstring format_;
  std::vector<std::string> names_;
  std::vector<std::wstring> created_;
};

TEST_F(VerifyAheadTest, OneReceivingThreadGetsItsVerificationsDoneAheadAndNoneTwice) {
  constexpr int kN = 96;
  send(format_, kN);
  const VerifyAhead::Counters before = ahead().counters();
  QUEUEHANDLE r = open(format_, MQ_RECEIVE_ACCESS);
  // The application works 2 ms between two receives: time for the worker to be scheduled on
  // a loaded machine (a worker that gets no CPU in time has its messages withdrawn and
  // verified inline, which is allowed but proves nothing here).
  EXPECT_EQ(bodies(0, kN), drain(r, std::chrono::milliseconds(2)));
  MQCloseQueue(r);
  const VerifyAhead::Counters d = ahead().counters() - before;
  SCOPED_TRACE(text(d));
  // Every message verified exactly once: by the receiving thread (inline) or by the worker
  // with its result used; nothing the worker verified went unused.
  EXPECT_EQ(static_cast<uint64_t>(kN), d.used + d.inline_);
  EXPECT_EQ(d.ahead, d.used);
  EXPECT_EQ(0u, d.discarded);
  EXPECT_EQ(0u, d.stale);
  // And the worker did verify ahead: the first message of each claimed batch of 16 has no
  // predecessor to be verified behind, the rest normally do (15 of 16 on an idle machine; at
  // a load average of 6-7 on 2 vCPUs about half, the worker not scheduled in time).
  EXPECT_GE(d.used, static_cast<uint64_t>(kN) / 4);
}

TEST_F(VerifyAheadTest, AReceiveWaitsForTheMessageTheWorkerIsVerifying) {
  send(format_, 6);
  // The worker takes 30 ms per message: the receive of the next one finds it being verified
  // and waits for the result instead of verifying it a second time.
  ahead().set_before_verify([] { std::this_thread::sleep_for(std::chrono::milliseconds(30)); });
  const VerifyAhead::Counters before = ahead().counters();
  QUEUEHANDLE r = open(format_, MQ_RECEIVE_ACCESS);
  HRESULT hr = MQ_OK;
  EXPECT_EQ("m0", receive(r, 0, &hr));
  std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the worker starts on m1
  EXPECT_EQ("m1", receive(r, 0, &hr));
  EXPECT_HR(MQ_OK, hr);
  ahead().set_before_verify({});
  EXPECT_EQ(bodies(2, 6), drain(r));
  MQCloseQueue(r);
  const VerifyAhead::Counters d = ahead().counters() - before;
  SCOPED_TRACE(text(d));
  EXPECT_GE(d.waited, 1u);
  EXPECT_EQ(6u, d.used + d.inline_);
  EXPECT_EQ(d.ahead, d.used + d.discarded);
  EXPECT_EQ(0u, d.discarded);
}

TEST_F(VerifyAheadTest, ATamperedMessageInAClaimedBatchIsRefusedAsInline) {
  // The same batch twice: one queue received with the worker off, one with it on.
  const std::wstring other = create(suffix() + "-inline");
  send(format_, 8);
  send(other, 8);
  tamper(names_[0], 3);
  tamper(names_[1], 3);
  std::atomic<int> worker_checks{0};
  ahead().set_before_verify([&] { worker_checks.fetch_add(1); });
  const VerifyAhead::Counters before = ahead().counters();
  QUEUEHANDLE r = open(format_, MQ_RECEIVE_ACCESS);
  std::vector<std::string> want = bodies(0, 8);
  want.erase(want.begin() + 3);
  EXPECT_EQ(want, drain(r, std::chrono::milliseconds(2)));
  MQCloseQueue(r);
  const VerifyAhead::Counters d = ahead().counters() - before;
  SCOPED_TRACE(text(d));
  EXPECT_EQ(8u, d.used + d.inline_);
  EXPECT_GE(d.used, 4u) << "the worker should have verified most of the batch, the tampered "
                           "message (the fourth) among them";
  EXPECT_EQ(static_cast<uint64_t>(worker_checks.load()), d.ahead);
  ahead().set_before_verify({});

  ahead().set_mode(VerifyAhead::Mode::Off);
  const VerifyAhead::Counters before_off = ahead().counters();
  r = open(other, MQ_RECEIVE_ACCESS);
  EXPECT_EQ(want, drain(r));
  MQCloseQueue(r);
  const VerifyAhead::Counters d_off = ahead().counters() - before_off;
  EXPECT_EQ(0u, d_off.used);
  EXPECT_EQ(8u, d_off.inline_);

  // The rejection records: one each, same kind and reason.
  auto& store = mqsec::core::runtime().stores().store_at(store_dir());
  const auto on = store.rejections(names_[0]);
  const auto off = store.rejections(names_[1]);
  ASSERT_EQ(1u, on.size());
  ASSERT_EQ(1u, off.size());
  EXPECT_EQ(off[0].kind, on[0].kind);
  EXPECT_EQ(off[0].reason, on[0].reason);
  EXPECT_FALSE(on[0].kind.empty());
}

TEST_F(VerifyAheadTest, AVerdictOlderThanTheBoundIsRecomputed) {
  constexpr int kN = 20;
  send(format_, kN);
  // Every result the worker computes is older than the bound when it is taken: each message is
  // verified again, inline, and still delivered right.
  ahead().set_max_age(std::chrono::milliseconds(0));
  const VerifyAhead::Counters before = ahead().counters();
  QUEUEHANDLE r = open(format_, MQ_RECEIVE_ACCESS);
  EXPECT_EQ(bodies(0, kN), drain(r, std::chrono::milliseconds(2)));
  MQCloseQueue(r);
  const VerifyAhead::Counters d = ahead().counters() - before;
  SCOPED_TRACE(text(d));
  EXPECT_EQ(0u, d.used);
  EXPECT_EQ(static_cast<uint64_t>(kN), d.inline_);
  EXPECT_GT(d.stale, 0u) << "the worker's results were never taken and found too old";
  EXPECT_EQ(d.stale, d.discarded);
}

TEST_F(VerifyAheadTest, ClosingTheQueueWhileTheWorkerVerifiesItsMessage) {
  send(format_, 6);
  std::mutex mu;
  std::condition_variable cv;
  bool started = false, release = false;
  ahead().set_before_verify([&] {
    std::unique_lock lock(mu);
    started = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  const VerifyAhead::Counters before = ahead().counters();
  QUEUEHANDLE r = open(format_, MQ_RECEIVE_ACCESS);
  HRESULT hr = MQ_OK;
  EXPECT_EQ("m0", receive(r, 0, &hr));
  EXPECT_HR(MQ_OK, hr);
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return started; }))
        << "the worker never started on the next message";
  }
  // The close does not wait for the verification (the worker holds its own copy of what it
  // needs), and what the worker computes for the closed handle is dropped.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_HR(MQ_OK, MQCloseQueue(r));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  for (int i = 0; i < 1000 && (ahead().counters() - before).discarded == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ahead().set_before_verify({});
  const VerifyAhead::Counters d = ahead().counters() - before;
  SCOPED_TRACE(text(d));
  EXPECT_EQ(1u, d.discarded) << "the result verified for the closed handle was kept";
  EXPECT_EQ(0u, d.used);
  // The close released the claims: a new handle gets the other five, verified.
  r = open(format_, MQ_RECEIVE_ACCESS);
  EXPECT_EQ(bodies(1, 6), drain(r));
  MQCloseQueue(r);
}

TEST_F(VerifyAheadTest, AForkedChildReceivesCorrectlyAndVerifiesAheadItself) {
  // 16 messages for this process's first claim, 16 more for the child's.
  send(format_, 32);
  // The worker is slow, so that the fork lands while it verifies one of ours.
  ahead().set_before_verify([] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); });
  QUEUEHANDLE r = open(format_, MQ_RECEIVE_ACCESS);
  HRESULT hr = MQ_OK;
  EXPECT_EQ("m0", receive(r, 0, &hr));
  EXPECT_HR(MQ_OK, hr);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const pid_t pid = fork();
  ASSERT_NE(-1, pid);
  if (pid == 0) {
    // The child: no worker of its own yet and none of its parent's results; it claims the
    // next 16 (the parent holds the first 16) and verifies ahead with a worker of its own.
    ahead().set_before_verify({});
    const VerifyAhead::Counters start = ahead().counters();
    QUEUEHANDLE c = nullptr;
    if (MQOpenQueue(format_.c_str(), MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &c) != MQ_OK) _exit(10);
    std::vector<std::string> got;
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // the worker gets a turn
      HRESULT h = MQ_OK;
      UCHAR auth = 0;
      std::string b = receive(c, 0, &h, &auth);
      if (h == MQ_ERROR_IO_TIMEOUT) break;
      if (h != MQ_OK || auth != 1) _exit(11);
      got.push_back(b);
    }
    MQCloseQueue(c);
    if (got != bodies(16, 32)) _exit(12);
    const VerifyAhead::Counters d = ahead().counters() - start;
    if (d.used + d.inline_ != 16 || d.ahead != d.used || d.used == 0) _exit(13);
    // Exit stops the child's worker (atexit) after what it runs.
    ahead().stop();
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status)) << "child died of signal " << WTERMSIG(status);
  EXPECT_EQ(0, WEXITSTATUS(status));
  ahead().set_before_verify({});
  // The parent goes on with its own claims.
  EXPECT_EQ(bodies(1, 16), drain(r));
  MQCloseQueue(r);
}

TEST_F(VerifyAheadTest, AutoModeSchedulesOnlyWhileACoreIsLeft) {
  ahead().set_mode(VerifyAhead::Mode::Auto);
  // A second instance for the count alone (never started; never destroyed: its lock stays
  // registered with the fork handlers).
  VerifyAhead& v = *new VerifyAhead;
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(0, sched_getaffinity(0, sizeof set, &set));
  const auto cpus = static_cast<size_t>(CPU_COUNT(&set));
  if (cpus < 2) GTEST_SKIP() << "one CPU: Auto never schedules";
  std::vector<std::unique_ptr<VerifyAhead::Receiving>> receivers;
  receivers.push_back(std::make_unique<VerifyAhead::Receiving>(v));
  EXPECT_TRUE(v.wanted());
  while (receivers.size() < cpus) receivers.push_back(std::make_unique<VerifyAhead::Receiving>(v));
  EXPECT_FALSE(v.wanted()) << cpus << " receiving threads on " << cpus << " CPUs";
  receivers.pop_back();
  EXPECT_TRUE(v.wanted());
}

}  // namespace
