#include "tests/support/store_invariants.hpp"

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/transport/local/claim_owner.hpp"

namespace mqsec::testing {
namespace {

using Db = std::unique_ptr<sqlite3, int (*)(sqlite3*)>;
using Stmt = std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)>;

Stmt prepare(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    sqlite3_finalize(st);
    st = nullptr;
  }
  return Stmt(st, sqlite3_finalize);
}

// A query whose rows are the offenders, one text column describing each.
struct Check {
  const char* what;
  const char* sql;
};

constexpr Check kChecks[] = {
    {"a claim of a message that is not there",
     "SELECT 'seq ' || c.seq || ' of queue ' || c.queue_id || ', owner ' || c.owner"
     " FROM claims c WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.seq = c.seq)"},
    {"a claim filed under another queue than its message's",
     "SELECT 'seq ' || c.seq || ': claim in queue ' || c.queue_id || ', message in queue ' ||"
     " m.queue_id FROM claims c JOIN messages m ON m.seq = c.seq WHERE m.queue_id <> c.queue_id"},
    {"a message of a queue that does not exist",
     "SELECT 'seq ' || seq || ' of queue ' || queue_id FROM messages m"
     " WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.id = m.queue_id)"},
    {"a delivered id of a queue that does not exist",
     "SELECT 'queue ' || queue_id || ', id ' || hex(msg_id) FROM delivered d"
     " WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.id = d.queue_id)"},
    {"an arrived id of a queue that does not exist",
     "SELECT 'queue ' || queue_id || ', id ' || hex(msg_id) FROM arrived a"
     " WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.id = a.queue_id)"},
    {"a signer of a queue that does not exist",
     "SELECT 'queue ' || queue_id || ', ' || kind || ' ' || value FROM queue_signers s"
     " WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.id = s.queue_id)"},
    {"a security descriptor of a queue that does not exist",
     "SELECT 'queue ' || queue_id FROM queue_security s"
     " WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.id = s.queue_id)"},
    {"a message whose priority is not an integer 0..7",
     "SELECT 'seq ' || seq || ', priority ' || quote(priority) FROM messages"
     " WHERE typeof(priority) <> 'integer' OR priority NOT BETWEEN 0 AND 7"},
};

// Calls `row` with the first column (as text) of each row `sql` yields; a line in `out` when the
// query cannot run or fails midway.
template <typename Row>
void for_each_row(sqlite3* db, const char* what, const std::string& sql,
                  std::vector<std::string>& out, Row row) {
  Stmt st = prepare(db, sql);
  if (!st) {
    out.push_back(std::string(what) + ": the query failed: " + sqlite3_errmsg(db));
    return;
  }
  int rc = 0;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    const auto* text = sqlite3_column_text(st.get(), 0);
    row(std::string(text != nullptr ? reinterpret_cast<const char*>(text) : "(null)"));
  }
  if (rc != SQLITE_DONE)
    out.push_back(std::string(what) + ": reading failed: " + sqlite3_errmsg(db));
}

// Each row of the check's query is one offender: a line for the check when there are any.
void run_check(sqlite3* db, const Check& c, std::vector<std::string>& out) {
  int64_t n = 0;
  std::string first;
  for_each_row(db, c.what, c.sql, out, [&](std::string line) {
    if (n++ == 0) first = std::move(line);
  });
  if (n > 0)
    out.push_back(std::string(c.what) + ": " + std::to_string(n) + " row(s), e.g. " + first);
}

}  // namespace

std::vector<std::string> store_invariant_violations(const std::filesystem::path& store_dir) {
  std::vector<std::string> out;
  sqlite3* raw = nullptr;
  const std::string path = (store_dir / "mqsec.db").string();
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  Db db(raw, sqlite3_close);
  if (rc != SQLITE_OK) return {"opening " + path + " failed: " + sqlite3_errstr(rc)};
  sqlite3_busy_timeout(db.get(), 10000);
  // One snapshot for every check: BEGIN alone takes none; the first read does, and every later
  // read of the transaction sees the same one.
  if (sqlite3_exec(db.get(), "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return {std::string("starting a read transaction failed: ") + sqlite3_errmsg(db.get())};
  }
  for (const Check& c : kChecks) run_check(db.get(), c, out);
  for_each_row(db.get(), "claim owners", "SELECT DISTINCT owner FROM claims", out,
               [&out](const std::string& owner) {
                 if (!transport::local::parse_claim_owner(owner)) {
                   out.push_back("a claim owner mqsec does not write: '" + owner + "'");
                 }
               });
  for_each_row(db.get(), "integrity_check", "PRAGMA integrity_check", out,
               [&out](const std::string& line) {
                 if (line != "ok") out.push_back("integrity_check: " + line);
               });
  (void)sqlite3_exec(db.get(), "COMMIT", nullptr, nullptr, nullptr);
  return out;
}

}  // namespace mqsec::testing
