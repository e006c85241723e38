// Queue security descriptors through libmqrt (issue 13): MQCreateQueue's default and supplied
// descriptors, MQGetQueueSecurity (short buffers, parts by SECURITY_INFORMATION),
// MQSetQueueSecurity, and their enforcement for a thread impersonating another user (root
// service, raw setresuid on one thread): MQOpenQueue per access mode, MQDeleteQueue,
// MQGet/SetQueueProperties, MQGet/SetQueueSecurity. Bad input of each kind gets MSMQ's error.
//
// The multi-user tests need root (useradd, setresuid) and skip otherwise; CI runs as root.
#include <mq.h>
#include <sqlite3.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "src/security/security_descriptor.hpp"
#include "tests/support/hresult_text.hpp"
#include "tests/support/msmq_props.hpp"
#include "tests/support/msmq_queues.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/softhsm_test_environment.hpp"
#include "tests/support/test_users.hpp"

namespace {

using mqsec::security::Ace;
using mqsec::security::SecurityDescriptor;
using mqsec::security::Sid;
using mqsec::testing::Props;
namespace sec = mqsec::security;

::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

constexpr SECURITY_INFORMATION kAll =
    sec::kOwnerSecurityInformation | sec::kGroupSecurityInformation | sec::kDaclSecurityInformation;

std::wstring make_queue(const std::wstring& stem) {
  return mqsec::testing::make_private_queue(L"qsec-", stem);
}

HRESULT get_security(const std::wstring& format, SECURITY_INFORMATION info,
                     SecurityDescriptor* out) {
  DWORD needed = 0;
  HRESULT hr = MQGetQueueSecurity(format.c_str(), info, nullptr, 0, &needed);
  if (hr != MQ_ERROR_SECURITY_DESCRIPTOR_TOO_SMALL) return hr;
  std::vector<uint8_t> buf(needed);
  DWORD again = 0;
  hr = MQGetQueueSecurity(format.c_str(), info, buf.data(), needed, &again);
  if (hr == MQ_OK && out != nullptr) *out = sec::parse_security_descriptor(buf);
  return hr;
}

HRESULT set_security(const std::wstring& format, SECURITY_INFORMATION info,
                     const SecurityDescriptor& sd) {
  std::vector<uint8_t> bytes = sec::serialize_security_descriptor(sd, kAll);
  return MQSetQueueSecurity(format.c_str(), info, bytes.data());
}

SecurityDescriptor dacl_of(std::vector<Ace> aces) {
  SecurityDescriptor sd;
  sd.dacl_present = true;
  sd.dacl = std::move(aces);
  return sd;
}

HRESULT open_as_is(const std::wstring& format, DWORD access) {
  QUEUEHANDLE h = nullptr;
  const HRESULT hr = MQOpenQueue(format.c_str(), access, MQ_DENY_NONE, &h);
  if (hr == MQ_OK) MQCloseQueue(h);
  return hr;
}

Sid me() { return Sid::unix_user(geteuid()); }  // the test config has [identity] sid = "unix"

TEST(QueueSecurity, NewQueueGetsMsmqsDefaultDescriptor) {
  const std::wstring q = make_queue(L"default");
  DWORD needed = 0;
  EXPECT_HR(MQ_ERROR_SECURITY_DESCRIPTOR_TOO_SMALL,
            MQGetQueueSecurity(q.c_str(), kAll, nullptr, 0, &needed));
  ASSERT_GT(needed, 20u);
  std::vector<uint8_t> small(needed - 1);
  DWORD needed2 = 0;
  EXPECT_HR(MQ_ERROR_SECURITY_DESCRIPTOR_TOO_SMALL,
            MQGetQueueSecurity(q.c_str(), kAll, small.data(), needed - 1, &needed2));
  EXPECT_EQ(needed2, needed);

  SecurityDescriptor sd;
  ASSERT_HR(MQ_OK, get_security(q, kAll, &sd));
  EXPECT_EQ(sd, sec::default_queue_descriptor(me(), sec::unix_group_sid(getegid())));
  ASSERT_TRUE(sd.dacl);
  ASSERT_EQ(sd.dacl->size(), 3u);
  EXPECT_EQ((*sd.dacl)[1].sid.str(), "S-1-1-0");
  EXPECT_EQ((*sd.dacl)[1].mask,
            static_cast<uint32_t>(MQSEC_GET_QUEUE_PROPERTIES | MQSEC_GET_QUEUE_PERMISSIONS |
                                  MQSEC_WRITE_MESSAGE));

  SecurityDescriptor owner_only;
  ASSERT_HR(MQ_OK, get_security(q, sec::kOwnerSecurityInformation, &owner_only));
  EXPECT_EQ(owner_only.owner, me());
  EXPECT_FALSE(owner_only.group);
  EXPECT_FALSE(owner_only.dacl_present);
}

// A queue made before descriptors were kept (store schema 4) has no row in queue_security: it
// gets MSMQ's default with the store's owner (the process's real user) as owner.
TEST(QueueSecurity, QueueWithoutAStoredDescriptorHasTheDefaultWithTheStoreOwner) {
  const std::wstring q = make_queue(L"migrated");
  sqlite3* db = nullptr;
  const auto path = mqsec::testing::SoftHsmEnv::instance().dir() / "store" / "mqsec.db";
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK) << path;
  const std::wstring wname = q.substr(q.rfind(L'\\') + 1);
  const std::string sql =
      "DELETE FROM queue_security WHERE queue_id = (SELECT id FROM queues WHERE name = '" +
      std::string(wname.begin(), wname.end()) + "')";
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_close(db);
  SecurityDescriptor sd;
  ASSERT_HR(MQ_OK, get_security(q, kAll, &sd));
  EXPECT_EQ(sd,
            sec::default_queue_descriptor(Sid::unix_user(getuid()), sec::unix_group_sid(getgid())));
  EXPECT_HR(MQ_OK, open_as_is(q, MQ_RECEIVE_ACCESS));
}

TEST(QueueSecurity, CreateWithDescriptorKeepsItsDaclAndDefaultsTheRest) {
  const Sid someone = Sid::unix_user(4242);
  const SecurityDescriptor supplied =
      dacl_of({Ace{Ace::Type::Allowed, 0, MQSEC_QUEUE_GENERIC_ALL, someone}});
  std::vector<uint8_t> bytes = sec::serialize_security_descriptor(supplied, kAll);
  const std::wstring name = L"qsec-supplied-" + std::to_wstring(getpid());
  const std::wstring path = L".\\private$\\" + name;
  Props p;
  p.wstr(PROPID_Q_PATHNAME, path.c_str());
  WCHAR buf[256];
  DWORD len = 256;
  ASSERT_HR(MQ_OK, MQCreateQueue(bytes.data(), p.queue(), buf, &len));
  SecurityDescriptor sd;
  ASSERT_HR(MQ_OK, get_security(buf, kAll, &sd));
  EXPECT_EQ(sd.owner, me());
  EXPECT_EQ(sd.dacl, supplied.dacl);
  // The creator is the owner but not in the DACL: it may read and change the descriptor only.
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, open_as_is(buf, MQ_SEND_ACCESS));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, MQDeleteQueue(buf));
  EXPECT_HR(MQ_OK, set_security(buf, sec::kDaclSecurityInformation,
                                dacl_of({Ace{Ace::Type::Allowed, 0, MQSEC_DELETE_QUEUE, me()}})));
  EXPECT_HR(MQ_OK, MQDeleteQueue(buf));
}

TEST(QueueSecurity, BadInputGetsMsmqsErrors) {
  const std::wstring q = make_queue(L"bad");
  DWORD needed = 0;
  std::vector<uint8_t> buf(512);
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER,
            MQGetQueueSecurity(q.c_str(), kAll, buf.data(), 512, nullptr));
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER,
            MQGetQueueSecurity(nullptr, kAll, buf.data(), 512, &needed));
  EXPECT_HR(MQ_ERROR_PRIVILEGE_NOT_HELD,
            MQGetQueueSecurity(q.c_str(), sec::kSaclSecurityInformation, buf.data(), 512, &needed));
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQGetQueueSecurity(L"DIRECT=OS:.\\private$\\qsec-none-such",
                                                         kAll, buf.data(), 512, &needed));
  EXPECT_HR(MQ_ERROR_ILLEGAL_FORMATNAME,
            MQGetQueueSecurity(L"no format", kAll, buf.data(), 512, &needed));

  const std::vector<uint8_t> good = sec::serialize_security_descriptor(
      dacl_of({Ace{Ace::Type::Allowed, 0, MQSEC_QUEUE_GENERIC_ALL, me()}}), kAll);
  EXPECT_HR(MQ_ERROR_INVALID_PARAMETER,
            MQSetQueueSecurity(q.c_str(), sec::kDaclSecurityInformation, nullptr));
  EXPECT_HR(MQ_ERROR_PRIVILEGE_NOT_HELD,
            MQSetQueueSecurity(q.c_str(), sec::kSaclSecurityInformation,
                               const_cast<uint8_t*>(good.data())));
  std::vector<uint8_t> lying = good;
  lying[0] = 2;  // revision
  EXPECT_HR(MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR,
            MQSetQueueSecurity(q.c_str(), sec::kDaclSecurityInformation, lying.data()));
  lying = good;
  lying[3] = 0;  // absolute format (pointers): not accepted
  EXPECT_HR(MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR,
            MQSetQueueSecurity(q.c_str(), sec::kDaclSecurityInformation, lying.data()));
  lying = good;
  lying[18] = 0x01;  // DACL offset beyond 64 KiB: refused before anything there is read
  EXPECT_HR(MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR,
            MQSetQueueSecurity(q.c_str(), sec::kDaclSecurityInformation, lying.data()));
  // Asking for a GROUP change with a descriptor that has none.
  const std::vector<uint8_t> dacl_only = sec::serialize_security_descriptor(
      sec::default_queue_descriptor(me(), me()), sec::kDaclSecurityInformation);
  EXPECT_HR(MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR,
            MQSetQueueSecurity(q.c_str(), sec::kGroupSecurityInformation,
                               const_cast<uint8_t*>(dacl_only.data())));

  // MQCreateQueue with an illegal descriptor creates nothing.
  const std::wstring name = L"qsec-illegal-" + std::to_wstring(getpid());
  const std::wstring path = L".\\private$\\" + name;
  Props p;
  p.wstr(PROPID_Q_PATHNAME, path.c_str());
  WCHAR fmt[256];
  DWORD len = 256;
  lying = good;
  lying[0] = 0;
  EXPECT_HR(MQ_ERROR_ILLEGAL_SECURITY_DESCRIPTOR,
            MQCreateQueue(lying.data(), p.queue(), fmt, &len));
  len = 256;
  EXPECT_HR(MQ_ERROR_QUEUE_NOT_FOUND, MQPathNameToFormatName(path.c_str(), fmt, &len));
}

TEST(QueueSecurity, AnEmptyDaclLocksOutEvenTheOwnerExceptForItsPermissions) {
  const std::wstring q = make_queue(L"empty");
  ASSERT_HR(MQ_OK, set_security(q, sec::kDaclSecurityInformation, dacl_of({})));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, open_as_is(q, MQ_SEND_ACCESS));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, open_as_is(q, MQ_RECEIVE_ACCESS));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, open_as_is(q, MQ_PEEK_ACCESS));
  Props props;
  props.null(PROPID_Q_TRANSACTION);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, MQGetQueueProperties(q.c_str(), props.queue()));
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, MQDeleteQueue(q.c_str()));
  // The owner still reads and changes the descriptor (READ_CONTROL, WRITE_DAC), and so gets
  // its queue back.
  SecurityDescriptor sd;
  ASSERT_HR(MQ_OK, get_security(q, kAll, &sd));
  ASSERT_TRUE(sd.dacl);
  EXPECT_TRUE(sd.dacl->empty());
  ASSERT_HR(MQ_OK, set_security(q, sec::kDaclSecurityInformation,
                                sec::default_queue_descriptor(me(), me())));
  EXPECT_HR(MQ_OK, open_as_is(q, MQ_RECEIVE_ACCESS));
  EXPECT_HR(MQ_OK, MQDeleteQueue(q.c_str()));
}

#define NEEDS_ROOT()                                                                   \
  if (geteuid() != 0) {                                                                \
    GTEST_SKIP() << "needs root: creates a user with useradd and switches a thread's " \
                    "credentials with setresuid(2)";                                   \
  }

// A root service's queue, used by a thread impersonating user B.
TEST(QueueSecurity, ImpersonatingThreadGetsOnlyWhatTheDescriptorGrants) {
  NEEDS_ROOT();
  auto b = mqsec::testing::make_temporary_user("mqqs");
  ASSERT_TRUE(b);
  const std::wstring q = make_queue(L"shared");
  struct AsB {
    HRESULT send = MQ_OK, receive = MQ_OK, peek = MQ_OK, get_props = MQ_OK, set_props = MQ_OK,
            get_sec = MQ_OK, set_sec = MQ_OK, del = MQ_OK;
  };
  auto as_b = [&] {
    AsB r;
    const std::string err = mqsec::testing::run_as_user(*b, [&] {
      r.send = open_as_is(q, MQ_SEND_ACCESS);
      r.receive = open_as_is(q, MQ_RECEIVE_ACCESS);
      r.peek = open_as_is(q, MQ_PEEK_ACCESS);
      Props props;
      props.null(PROPID_Q_TRANSACTION);
      r.get_props = MQGetQueueProperties(q.c_str(), props.queue());
      Props set;
      set.wstr(PROPID_Q_LABEL, L"changed by B");
      r.set_props = MQSetQueueProperties(q.c_str(), set.queue());
      r.get_sec = get_security(q, kAll, nullptr);
      r.set_sec = set_security(q, sec::kDaclSecurityInformation, dacl_of({}));
      r.del = MQDeleteQueue(q.c_str());
    });
    EXPECT_EQ(err, "");
    return r;
  };
  // MSMQ's default: everyone may send, get properties and permissions; nothing else.
  AsB r = as_b();
  EXPECT_HR(MQ_OK, r.send);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, r.receive);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, r.peek);
  EXPECT_HR(MQ_OK, r.get_props);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, r.set_props);
  EXPECT_HR(MQ_OK, r.get_sec);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, r.set_sec);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, r.del);

  // A queue that denies Everyone write: B cannot open it for sending; the owner still can.
  const Sid b_sid = Sid::from_string(b->unix_sid());
  ASSERT_HR(MQ_OK, set_security(
                       q, sec::kDaclSecurityInformation,
                       dacl_of({Ace{Ace::Type::Allowed, 0, MQSEC_QUEUE_GENERIC_ALL, me()},
                                Ace{Ace::Type::Denied, 0, MQSEC_WRITE_MESSAGE, sec::everyone_sid()},
                                Ace{Ace::Type::Allowed, 0, MQSEC_RECEIVE_MESSAGE, b_sid}})));
  r = as_b();
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, r.send);
  EXPECT_HR(MQ_OK, r.receive);
  EXPECT_HR(MQ_OK, r.peek);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, r.get_props);
  EXPECT_HR(MQ_OK, open_as_is(q, MQ_SEND_ACCESS));

  // Ownership to B: B may then change the DACL (WRITE_DAC) although no ACE grants it.
  SecurityDescriptor owner;
  owner.owner = b_sid;
  ASSERT_HR(MQ_OK, set_security(q, sec::kOwnerSecurityInformation, owner));
  r = as_b();
  EXPECT_HR(MQ_OK, r.get_sec);
  EXPECT_HR(MQ_OK, r.set_sec);  // to an empty DACL
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, r.del);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, open_as_is(q, MQ_SEND_ACCESS))
      << "root is no longer the owner and the DACL is empty";
}

// An ACE for a group applies to the group's members, supplementary groups included: a forked
// child that adds group 4242 to its groups (then its impersonating thread, as user B, inherits
// them) may send to a queue whose DACL lets only that group write; without the group it may not.
TEST(QueueSecurity, AGroupAceAppliesToSupplementaryMembers) {
  NEEDS_ROOT();
  auto b = mqsec::testing::make_temporary_user("mqqg");
  ASSERT_TRUE(b);
  const std::wstring q = make_queue(L"group");
  const Sid group = Sid::from_string("S-1-22-2-4242");
  ASSERT_HR(MQ_OK, set_security(q, sec::kDaclSecurityInformation,
                                dacl_of({Ace{Ace::Type::Allowed, 0, MQSEC_WRITE_MESSAGE, group}})));
  auto send_as_b = [&](bool with_group) {
    const pid_t child = ::fork();
    if (child == 0) {
      const gid_t g = 4242;
      if (with_group && ::setgroups(1, &g) != 0) ::_exit(3);
      HRESULT hr = MQ_OK;
      const std::string err =
          mqsec::testing::run_as_user(*b, [&] { hr = open_as_is(q, MQ_SEND_ACCESS); });
      ::_exit(!err.empty() ? 4 : hr == MQ_OK ? 0 : hr == MQ_ERROR_ACCESS_DENIED ? 1 : 2);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(send_as_b(true), 0) << "a member of the group (supplementary) may send";
  EXPECT_EQ(send_as_b(false), 1) << "without the group: MQ_ERROR_ACCESS_DENIED";
}

// A user other than root may make only itself (or one of its groups) the owner of a queue, as
// on Windows: handing a queue to Everyone would let every user change its permissions.
TEST(QueueSecurity, OnlyRootNamesAnyOwner) {
  NEEDS_ROOT();
  auto b = mqsec::testing::make_temporary_user("mqqo");
  ASSERT_TRUE(b);
  const std::wstring q = make_queue(L"owner");
  const Sid b_sid = Sid::from_string(b->unix_sid());
  ASSERT_HR(MQ_OK,
            set_security(q, sec::kDaclSecurityInformation,
                         dacl_of({Ace{Ace::Type::Allowed, 0, MQSEC_QUEUE_GENERIC_ALL, me()},
                                  Ace{Ace::Type::Allowed, 0, MQSEC_QUEUE_GENERIC_ALL, b_sid}})));
  HRESULT to_everyone = MQ_OK, to_root = MQ_OK, to_self = MQ_OK;
  SecurityDescriptor everyone, root, self;
  everyone.owner = sec::everyone_sid();
  root.owner = me();
  self.owner = b_sid;
  const std::string err = mqsec::testing::run_as_user(*b, [&] {
    to_everyone = set_security(q, sec::kOwnerSecurityInformation, everyone);
    to_root = set_security(q, sec::kOwnerSecurityInformation, root);
    to_self = set_security(q, sec::kOwnerSecurityInformation, self);
  });
  EXPECT_EQ(err, "");
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, to_everyone);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, to_root);
  EXPECT_HR(MQ_OK, to_self);
  SecurityDescriptor now;
  ASSERT_HR(MQ_OK, get_security(q, sec::kOwnerSecurityInformation, &now));
  ASSERT_TRUE(now.owner.has_value());
  EXPECT_EQ(now.owner->str(), b_sid.str());
  // Root (the service) may name any owner.
  EXPECT_HR(MQ_OK, set_security(q, sec::kOwnerSecurityInformation, everyone));
}

// A user without rights on a queue gets MQ_ERROR_ACCESS_DENIED for its subqueues and journal
// before any row is made for them (subqueue and journal rows are created on first open).
TEST(QueueSecurity, NoRightsNoSubqueueOrJournalRows) {
  NEEDS_ROOT();
  auto b = mqsec::testing::make_temporary_user("mqqr");
  ASSERT_TRUE(b);
  const std::wstring q = make_queue(L"rows");
  HRESULT sub = MQ_OK, journal = MQ_OK;
  const std::string err = mqsec::testing::run_as_user(*b, [&] {
    sub = open_as_is(q + L";probe", MQ_RECEIVE_ACCESS);
    journal = open_as_is(q + L";JOURNAL", MQ_RECEIVE_ACCESS);
  });
  EXPECT_EQ(err, "");
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, sub);
  EXPECT_HR(MQ_ERROR_ACCESS_DENIED, journal);
  sqlite3* db = nullptr;
  const auto path = mqsec::testing::SoftHsmEnv::instance().dir() / "store" / "mqsec.db";
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK) << path;
  const std::wstring wname = q.substr(q.rfind(L'\\') + 1);
  const std::string name(wname.begin(), wname.end());
  const std::string sql = "SELECT count(*) FROM queues WHERE name = '" + name +
                          ";probe' OR name LIKE '%" + name + "' AND name <> '" + name + "'";
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 0) << "a subqueue or journal row was made for a user "
                                             "without rights";
  sqlite3_finalize(st);
  sqlite3_close(db);
  // The owner may: then the rows exist.
  EXPECT_HR(MQ_OK, open_as_is(q + L";probe", MQ_RECEIVE_ACCESS));
}

}  // namespace
