// Issue 9, items 6, 11 and 12 through the public API (libmqrt, C++ wrappers) on a throwaway
// SoftHSM token (tests/support/softhsm_env): replay of a message row duplicated in the store,
// a row copied into another queue, peeks of replayed ids, the body size limit on send and on
// receive, bounded rejection records with their kind, a cursor over malformed priorities, and
// the queue lock files. The store is written directly with SQLite, as anyone with write access
// to the store file could.
//
// Each of these failed on the code before issue 9: the copy was delivered twice (and from the
// other queue), peek showed the replayed message, a body of any size was stored, rejection
// records kept whole envelopes forever, and a PEEK_NEXT walk returned a row with priority -0.5
// again and again.
#include <mqsec/mqsec.hpp>

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/msmq_props.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/sqlite_query.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using mqsec::Bytes;
using mqsec::Message;
using mqsec::Queue;
using mqsec::SecurityContext;
using mqsec::testing::SoftHsmEnv;

constexpr auto kWait = 5000ms;   // a message that must arrive
constexpr auto kAbsent = 300ms;  // a message that must not

class ReplayEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    SoftHsmEnv::instance();
    mqsec::register_certificate(MQCERT_REGISTER_ALWAYS);
  }
};
[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new ReplayEnvironment);

SoftHsmEnv& env() { return SoftHsmEnv::instance(); }
fs::path db_path() { return env().dir() / "store" / "mqsec.db"; }

std::string unique_name(const std::string& tag) {
  static int counter = 0;
  return "replay-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
}

// Direct SQL on the store file.
class Db {
 public:
  Db() {
    if (sqlite3_open_v2(db_path().c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      throw std::runtime_error("cannot open " + db_path().string());
    }
    sqlite3_busy_timeout(db_, 10000);
  }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error("SQL failed: " + msg + ": " + sql);
    }
  }
  int64_t integer(const std::string& sql) { return mqsec::testing::query_int64(db_, sql); }
  int64_t queue_id(const std::string& name) {
    return integer("SELECT id FROM queues WHERE name = '" + name + "'");
  }
  int64_t messages(const std::string& name) {
    return integer("SELECT count(*) FROM messages WHERE queue_id = " +
                   std::to_string(queue_id(name)));
  }
  // Copies every message row of `from` (optionally into another queue); returns rows copied.
  int copy_rows(const std::string& from, const std::string& into, const std::string& priority) {
    exec("INSERT INTO messages(queue_id, priority, arrived, envelope) SELECT " +
         std::to_string(queue_id(into)) + ", " + priority +
         ", arrived, envelope FROM messages WHERE queue_id = " + std::to_string(queue_id(from)) +
         " ORDER BY seq");
    return sqlite3_changes(db_);
  }
  struct Rejected {
    std::string kind, reason;
    int64_t kept = 0, size = 0;
  };
  std::vector<Rejected> rejections(const std::string& queue) {
    sqlite3_stmt* st = nullptr;
    std::vector<Rejected> out;
    if (sqlite3_prepare_v2(db_,
                           "SELECT kind, reason, length(envelope), original_size FROM rejections"
                           " WHERE queue = ?1 ORDER BY id",
                           -1, &st, nullptr) != SQLITE_OK) {
      throw std::runtime_error(sqlite3_errmsg(db_));
    }
    sqlite3_bind_text(st, 1, queue.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      out.push_back({reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
                     reinterpret_cast<const char*>(sqlite3_column_text(st, 1)),
                     sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3)});
    }
    sqlite3_finalize(st);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

struct TestQueue {
  std::string name, format;
};
TestQueue make_queue(const std::string& tag, bool authenticate) {
  TestQueue q;
  q.name = unique_name(tag);
  q.format = Queue::create(".\\private$\\" + q.name, "replay test", authenticate);
  return q;
}

// Sends `body` to `q`, signed with the internal certificate.
void send_signed(const TestQueue& q, const std::string& body) {
  SecurityContext ctx = SecurityContext::internal();
  Queue s = Queue::open(q.format, MQ_SEND_ACCESS);
  Message m;
  m.set_body(body).set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS).attach(ctx);
  s.send(m);
}

// Sends `body` signed to `from`, then copies its row into `into` (which may be `from`), as
// anyone with write access to the store file could; returns the number of rows copied.
int send_signed_and_copy_row(const TestQueue& from, const TestQueue& into,
                             const std::string& body) {
  send_signed(from, body);
  return Db().copy_rows(from.name, into.name, "priority");
}

// Appends a [limits] table to the system config for the scope's lifetime (queues opened in
// the meantime read it).
class Limits {
 public:
  explicit Limits(const std::string& body) : saved_(read(env().config_path())) {
    mqsec::testing::write_file(env().config_path(), saved_ + "\n[limits]\n" + body, 0644);
  }
  ~Limits() { mqsec::testing::write_file(env().config_path(), saved_, 0644); }
  Limits(const Limits&) = delete;
  Limits& operator=(const Limits&) = delete;

 private:
  static std::string read(const fs::path& p) {
    Bytes b = mqsec::testing::read_file(p);
    return std::string(b.begin(), b.end());
  }
  std::string saved_;
};

// ---------------------------------------------------------------------------------------------

TEST(Replay, DuplicatedRowIsDeliveredOnceAndTheCopyIsRejectedAsReplay) {
  auto q = make_queue("dup", true);
  ASSERT_EQ(send_signed_and_copy_row(q, q, "pay 100"), 1);  // the attacker's copy
  Db db;
  ASSERT_EQ(db.messages(q.name), 2);

  Queue r = Queue::open(q.format, MQ_RECEIVE_ACCESS);
  auto first = r.receive(kWait);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->body_string(), "pay 100");
  EXPECT_TRUE(first->authenticated());
  EXPECT_FALSE(r.receive(kAbsent).has_value()) << "the copy was delivered too";
  EXPECT_EQ(db.messages(q.name), 0);
  auto rej = db.rejections(q.name);
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(rej[0].kind, "replay");
  EXPECT_NE(rej[0].reason.find("already delivered"), std::string::npos) << rej[0].reason;
}

TEST(Replay, RowReinsertedAfterDeliveryIsRejectedByReceiveAndPeek) {
  auto q = make_queue("reinsert", true);
  auto keep = make_queue("keep", false);  // holds the attacker's saved copy
  ASSERT_EQ(send_signed_and_copy_row(q, keep, "once only"), 1);
  Db db;
  Queue r = Queue::open(q.format, MQ_RECEIVE_ACCESS);
  ASSERT_TRUE(r.receive(kWait).has_value());

  // Put it back twice: peek, cursor peek and receive all refuse it.
  ASSERT_EQ(db.copy_rows(keep.name, q.name, "priority"), 1);
  EXPECT_FALSE(r.peek(kAbsent).has_value()) << "peek showed a replayed message";
  ASSERT_EQ(db.copy_rows(keep.name, q.name, "priority"), 1);
  auto cursor = r.create_cursor();
  EXPECT_FALSE(r.peek_current(cursor, kAbsent).has_value()) << "cursor peek showed a replay";
  ASSERT_EQ(db.copy_rows(keep.name, q.name, "priority"), 1);
  EXPECT_FALSE(r.receive(kAbsent).has_value()) << "a replayed message was delivered";
  EXPECT_EQ(db.messages(q.name), 0);
  auto rej = db.rejections(q.name);
  ASSERT_EQ(rej.size(), 3u);
  for (const auto& x : rej) EXPECT_EQ(x.kind, "replay") << x.reason;

  // A fresh message is still delivered.
  send_signed(q, "next");
  auto next = r.receive(kWait);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->body_string(), "next");
}

// A replayed copy is refused even when the receive's buffers are too small for it: the caller
// is not told the size of a message it will never get (a claimed message's replay check is at
// its delivery, after the buffers were filled).
TEST(Replay, ReplayedCopyIsRefusedEvenWhenTheBuffersAreTooSmall) {
  auto q = make_queue("small", true);
  auto keep = make_queue("keep", false);
  ASSERT_EQ(send_signed_and_copy_row(q, keep, "once only"), 1);
  Db db;
  Queue r = Queue::open(q.format, MQ_RECEIVE_ACCESS);
  ASSERT_TRUE(r.receive(kWait).has_value());
  ASSERT_EQ(db.copy_rows(keep.name, q.name, "priority"), 1);

  UCHAR body[1] = {};
  MSGPROPID ids[2] = {PROPID_M_BODY, PROPID_M_BODY_SIZE};
  MQPROPVARIANT vars[2] = {};
  vars[0].vt = VT_VECTOR | VT_UI1;
  vars[0].caub.cElems = sizeof body;
  vars[0].caub.pElems = body;
  vars[1].vt = VT_NULL;
  MQMSGPROPS props{2, ids, vars, nullptr};
  EXPECT_EQ(MQReceiveMessage(r.native_handle(), 300, MQ_ACTION_RECEIVE, &props, nullptr, nullptr,
                             nullptr, nullptr),
            MQ_ERROR_IO_TIMEOUT)
      << "the caller was told about a replayed message";
  EXPECT_EQ(db.messages(q.name), 0);
  auto rej = db.rejections(q.name);
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(rej[0].kind, "replay") << rej[0].reason;
}

// A replayed copy whose time to be received has passed is refused as a replay, not expired:
// no NACK, not in the dead-letter queue (a claimed receive checks replays at delivery, after
// the expiry check; review 5, finding 1).
TEST(Replay, ExpiredReplayedCopyIsRefusedNotDeadLettered) {
  auto q = make_queue("exp", false);
  auto keep = make_queue("expkeep", false);
  QUEUEHANDLE dlq = nullptr;
  ASSERT_EQ(MQOpenQueue(L"DIRECT=OS:.\\SYSTEM$;DEADLETTER", MQ_RECEIVE_ACCESS, MQ_DENY_NONE, &dlq),
            MQ_OK);
  ASSERT_EQ(MQPurgeQueue(dlq), MQ_OK);
  {
    Queue s = Queue::open(q.format, MQ_SEND_ACCESS);
    std::string body = "expiring";
    mqsec::testing::Props p;
    p.bytes(PROPID_M_BODY, reinterpret_cast<UCHAR*>(body.data()), static_cast<ULONG>(body.size()));
    p.ui4(PROPID_M_TIME_TO_BE_RECEIVED, 2);
    p.ui1(PROPID_M_JOURNAL, MQMSG_DEADLETTER);
    ASSERT_EQ(MQSendMessage(s.native_handle(), p.msg(), MQ_NO_TRANSACTION), MQ_OK);
  }
  Db db;
  ASSERT_EQ(db.copy_rows(q.name, keep.name, "priority"), 1);
  Queue r = Queue::open(q.format, MQ_RECEIVE_ACCESS);
  auto first = r.receive(kWait);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->body_string(), "expiring");
  std::this_thread::sleep_for(3500ms);
  ASSERT_EQ(db.copy_rows(keep.name, q.name, "priority"), 1);
  EXPECT_FALSE(r.receive(kAbsent).has_value());
  auto rej = db.rejections(q.name);
  ASSERT_EQ(rej.size(), 1u) << "the replayed copy was not refused as a replay";
  EXPECT_EQ(rej[0].kind, "replay") << rej[0].reason;
  std::vector<UCHAR> buf(256);
  mqsec::testing::Props g;
  g.bytes(PROPID_M_BODY, buf.data(), static_cast<ULONG>(buf.size()));
  EXPECT_EQ(MQReceiveMessage(dlq, 300, MQ_ACTION_RECEIVE, g.msg(), nullptr, nullptr, nullptr,
                             MQ_NO_TRANSACTION),
            MQ_ERROR_IO_TIMEOUT)
      << "the replayed copy went to the dead-letter queue";
  MQCloseQueue(dlq);
}

// The destination check keeps the last match of each receiving thread (verification.cpp): a
// copy signed for another queue, received right after a genuine message of this queue by the
// same thread, is still refused.
TEST(Replay, ACopyFromAnotherQueueIsRefusedRightAfterAGenuineMessageOfTheQueue) {
  auto a = make_queue("from", true);
  auto b = make_queue("into", true);
  send_signed(b, "genuine");
  Queue rb = Queue::open(b.format, MQ_RECEIVE_ACCESS);
  auto first = rb.receive(kWait);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->body_string(), "genuine");
  EXPECT_TRUE(first->authenticated());
  ASSERT_EQ(send_signed_and_copy_row(a, b, "for the other queue"), 1);
  EXPECT_FALSE(rb.receive(kAbsent).has_value()) << "delivered from the wrong queue";
  Db db;
  auto rej = db.rejections(b.name);
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(rej[0].kind, "wrong-queue") << rej[0].reason;
  send_signed(b, "genuine again");
  auto again = rb.receive(kWait);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->body_string(), "genuine again");
  // Then, on the same thread, copies of messages signed for b (the destination that just
  // matched) found in a third queue. b's rows may include "genuine again" until this process's
  // deliveries are applied: every row copied is one signed for b.
  auto c = make_queue("third", true);
  const int copied = send_signed_and_copy_row(b, c, "for b only");
  ASSERT_GE(copied, 1);
  Queue rc = Queue::open(c.format, MQ_RECEIVE_ACCESS);
  EXPECT_FALSE(rc.receive(kAbsent).has_value()) << "delivered from the wrong queue";
  auto rej_c = db.rejections(c.name);
  ASSERT_EQ(rej_c.size(), static_cast<size_t>(copied));
  for (const auto& r : rej_c) EXPECT_EQ(r.kind, "wrong-queue") << r.reason;
}

TEST(Replay, RowCopiedIntoAnotherQueueIsNeverDeliveredFromThere) {
  auto a = make_queue("a", true);
  auto b = make_queue("b", false);  // even a queue that accepts anything
  ASSERT_EQ(send_signed_and_copy_row(a, b, "for a only"), 1);
  Db db;

  Queue rb = Queue::open(b.format, MQ_RECEIVE_ACCESS);
  EXPECT_FALSE(rb.peek(kAbsent).has_value());
  EXPECT_FALSE(rb.receive(kAbsent).has_value()) << "delivered from the wrong queue";
  auto rej = db.rejections(b.name);
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(rej[0].kind, "wrong-queue");
  EXPECT_NE(rej[0].reason.find("another queue"), std::string::npos) << rej[0].reason;

  Queue ra = Queue::open(a.format, MQ_RECEIVE_ACCESS);
  auto m = ra.receive(kWait);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->body_string(), "for a only");
}

// MSMQ refuses a message over 4 MB with MQ_ERROR_INSUFFICIENT_RESOURCES.
TEST(Limits, BodyOverTheLimitIsRefusedOnSendAndNothingIsStored) {
  auto q = make_queue("big", false);
  Queue s = Queue::open(q.format, MQ_SEND_ACCESS);
  Db db;
  {
    Message m;
    m.set_body(std::string(4 * 1024 * 1024 + 1, 'x'));
    try {
      s.send(m);
      ADD_FAILURE() << "a body of 4 MiB + 1 byte was sent";
    } catch (const mqsec::Error& e) {
      EXPECT_EQ(e.code(), MQ_ERROR_INSUFFICIENT_RESOURCES) << e.what();
    }
    EXPECT_EQ(db.messages(q.name), 0);
  }
  {
    Message m;
    m.set_body(std::string(4 * 1024 * 1024, 'y'));  // exactly the limit
    s.send(m);
    Queue r = Queue::open(q.format, MQ_RECEIVE_ACCESS);
    auto got = r.receive(kWait);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->body().size(), 4u * 1024 * 1024);
  }
  // Configurable: [limits] max-message-body, signed or not.
  Limits limits("max-message-body = 1000\n");
  Queue small = Queue::open(q.format, MQ_SEND_ACCESS);
  SecurityContext ctx = SecurityContext::internal();
  Message m;
  m.set_body(std::string(1001, 'z')).set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS);
  m.attach(ctx);
  try {
    small.send(m);
    ADD_FAILURE() << "a body over [limits] max-message-body was sent";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_INSUFFICIENT_RESOURCES) << e.what();
  }
  m.set_body(std::string(1000, 'z')).set_delivery(mqsec::Delivery::Recoverable);
  small.send(m);
  EXPECT_EQ(db.messages(q.name), 1);
}

TEST(Limits, StoredBodyOverTheLimitIsRejectedOnReceive) {
  auto q = make_queue("stored-big", true);
  send_signed(q, std::string(2000, 'b'));  // under the default limit
  send_signed(q, "small");
  Limits limits("max-message-body = 1000\n");
  Queue r = Queue::open(q.format, MQ_RECEIVE_ACCESS);
  auto m = r.receive(kWait);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->body_string(), "small");
  Db db;
  auto rej = db.rejections(q.name);
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(rej[0].kind, "too-large");
}

TEST(Limits, RejectionRecordsAreBoundedAndKeepAPrefix) {
  auto q = make_queue("bounded", true);
  Limits limits("rejected-max-count = 3\nrejected-body-prefix = 10\n");
  {
    Queue s = Queue::open(q.format, MQ_SEND_ACCESS);
    for (int i = 0; i < 6; ++i) {
      Message m;
      m.set_body("unsigned " + std::to_string(i));
      s.send(m);
    }
  }
  Queue r = Queue::open(q.format, MQ_RECEIVE_ACCESS);
  EXPECT_FALSE(r.receive(kAbsent).has_value());
  Db db;
  EXPECT_EQ(db.messages(q.name), 0);
  EXPECT_EQ(db.integer("SELECT count(*) FROM rejections"), 3);  // store-wide bound
  auto rej = db.rejections(q.name);
  ASSERT_EQ(rej.size(), 3u);
  for (const auto& x : rej) {
    EXPECT_EQ(x.kind, "unsigned");
    EXPECT_EQ(x.kept, 10);
    EXPECT_GT(x.size, 10);
  }
}

// A PEEK_NEXT walk over rows whose priority column was written as -0.5, -4294967291, text or
// out of range ends (each call must return within the deadline, and the walk within 50 calls);
// those rows are rejected as malformed.
TEST(Cursor, PeekNextWalkOverMalformedPrioritiesTerminates) {
  auto q = make_queue("prio", false);
  auto src = make_queue("prio-src", false);
  {
    Queue s = Queue::open(q.format, MQ_SEND_ACCESS);
    for (int i = 0; i < 3; ++i) {
      Message m;
      m.set_body("valid " + std::to_string(i)).set_priority(static_cast<uint8_t>(i * 3));
      s.send(m);
    }
    Queue s2 = Queue::open(src.format, MQ_SEND_ACCESS);
    Message m;
    m.set_body("template");
    s2.send(m);
    s2.close();
    s.close();
  }
  Db db;
  for (const char* p : {"-0.5", "-4294967291", "'high'", "99", "2.5"}) {
    ASSERT_EQ(db.copy_rows(src.name, q.name, p), 1);
  }
  // A watchdog: on the old code one of these rows made the walk endless.
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 1200 && !done; ++i) std::this_thread::sleep_for(100ms);
    if (!done) {
      std::fprintf(stderr, "Cursor walk over malformed priorities did not end in 120 s\n");
      std::_Exit(3);
    }
  });
  Queue r = Queue::open(q.format, MQ_PEEK_ACCESS);
  auto cursor = r.create_cursor();
  std::vector<std::string> seen;
  auto m = r.peek_current(cursor, 0ms);
  while (m && seen.size() < 50) {
    seen.push_back(m->body_string());
    m = r.peek_next(cursor, 0ms);
  }
  done = true;
  watchdog.join();
  ASSERT_LT(seen.size(), 50u) << "the PEEK_NEXT walk does not end";
  EXPECT_EQ(seen, (std::vector<std::string>{"valid 2", "valid 1", "valid 0"}));
  auto rej = db.rejections(q.name);
  ASSERT_EQ(rej.size(), 5u);
  for (const auto& x : rej) EXPECT_EQ(x.kind, "malformed") << x.reason;
  EXPECT_EQ(db.messages(q.name), 3);
}

TEST(Files, LockFilesArePrivateWhateverTheUmask) {
  auto q = make_queue("lock", false);
  const mode_t old = ::umask(0);
  std::optional<Queue> r;
  try {
    r.emplace(Queue::open(q.format, MQ_RECEIVE_ACCESS));
  } catch (...) {
    ::umask(old);
    throw;
  }
  ::umask(old);
  Db db;
  const fs::path locks = env().dir() / "store" / "locks";
  const fs::path lock = locks / (std::to_string(db.queue_id(q.name)) + ".lock");
  struct stat sb {};
  ASSERT_EQ(::lstat(lock.c_str(), &sb), 0) << lock;
  EXPECT_TRUE(S_ISREG(sb.st_mode));
  EXPECT_EQ(sb.st_mode & 07777, 0600u);
  EXPECT_EQ(sb.st_uid, ::getuid());
  ASSERT_EQ(::lstat(locks.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 07777, 0700u);
  // A lock file replaced by a symbolic link is not followed.
  r.reset();
  const fs::path target = env().dir() / ("lock-target-" + std::to_string(getpid()));
  mqsec::testing::write_file(target, "", 0600);
  fs::remove(lock);
  fs::create_symlink(target, lock);
  try {
    Queue again = Queue::open(q.format, MQ_RECEIVE_ACCESS);
    ADD_FAILURE() << "opened a queue whose lock file is a symbolic link";
  } catch (const mqsec::Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_SERVICE_NOT_AVAILABLE) << e.what();
  }
  fs::remove(lock);
  fs::remove(target);
}

}  // namespace
