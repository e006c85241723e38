// The expiry sweep (expiry_sweep.hpp).
#include "src/core/expiry_sweep.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/admin.hpp"
#include "src/core/dead_letter.hpp"
#include "src/core/expiry.hpp"
#include "src/core/journal.hpp"
#include "src/core/queue.hpp"
#include "src/core/runtime.hpp"
#include "src/core/subqueue.hpp"
#include "src/core/text.hpp"
#include "src/security/envelope.hpp"
#include "src/security/log.hpp"
#include "src/transport/local/local_transport.hpp"

namespace mqsec::core {
namespace {

// Messages read per store query while catching up.
constexpr size_t kScanChunk = 512;

// The earliest second at which `e` may be expired (its own clock's deadline; a message from
// another machine is given the clock skew on top when it is due), or 0 without a time limit.
int64_t earliest_deadline(const security::Envelope& e) {
  if (e.time_to_be_received == security::kNoTimeLimit) return 0;
  const auto sent = static_cast<int64_t>(std::min<uint64_t>(e.sent_time, INT64_MAX / 4));
  return sent + static_cast<int64_t>(e.time_to_be_received) + 1;  // expired() is "now > limit"
}

}  // namespace

bool sweeps_queue(const std::string& name) {
  if (is_journal_queue_name(name) || is_dead_letter_queue_name(name)) return false;
  if (is_application_queue(name)) return true;
  return is_subqueue(name) && is_application_queue(main_queue_of(name));
}

ExpirySweeper::ExpirySweeper(security::SystemConfig cfg) : cfg_(std::move(cfg)) {}

ExpirySweeper::~ExpirySweeper() = default;

void ExpirySweeper::rescan() noexcept {
  scanned_to_ = 0;
  pending_.clear();
  queues_.clear();
}

std::shared_ptr<Queue> ExpirySweeper::queue_for(int64_t queue_id, const std::string& name) {
  auto it = queues_.find(queue_id);
  if (it != queues_.end()) return it->second;
  Destination d;
  d.queue = name;
  Access peek;
  peek.peek = true;
  peek.queue_manager = true;  // whoever the queue's DACL lets peek
  auto q = Queue::open(d, peek, /*deny_receive_share=*/false);
  queues_.emplace(queue_id, q);
  return q;
}

int64_t ExpirySweeper::try_expire(int64_t seq, int64_t now, size_t& expired_count) {
  transport::local::Store& store = runtime().stores().store_at(cfg_.store_path);
  std::optional<transport::StoredMessage> m = store.get_any(seq);
  if (!m) return 0;  // received, purged or expired by someone else
  const std::optional<std::string> name = store.queue_name(m->queue_id);
  if (!name || !sweeps_queue(*name)) return 0;
  security::Envelope e;
  try {
    e = security::decode(m->envelope);
  } catch (const std::exception&) {
    return 0;  // malformed: the receive path rejects it
  }
  const int64_t earliest = earliest_deadline(e);
  if (earliest == 0) return 0;
  std::shared_ptr<Queue> q = queue_for(m->queue_id, *name);
  const bool from_here = e.source_machine == utf8_to_utf16(q->policy().machine);
  const int64_t skew = from_here ? 0 : q->policy().max_clock_skew_seconds;
  if (!expired(e, now, skew)) return earliest + skew;
  // As a peek at this very message: the receive path verifies it and, being expired, takes it
  // out (dead-letter queue or deleted) and NACKs it; it offers nothing.
  Lookup at;
  at.where = LookupWhere::Current;
  at.id = static_cast<uint64_t>(seq);
  try {
    q->receive_by_lookup_id(at, [](const Delivered&) { return MQ_OK; });
  } catch (const Error& ex) {
    // What a lookup says when the message it names was taken out (by this peek, or by someone
    // else meanwhile); the store tells which.
    if (ex.code() != MQ_ERROR_MESSAGE_NOT_FOUND) throw;
  }
  std::optional<transport::StoredMessage> after = store.get_any(seq);
  if (!after || after->queue_id != m->queue_id) expired_count++;
  return 0;
}

SweepCounts ExpirySweeper::sweep(int64_t now) {
  SweepCounts c;
  transport::local::Store& store = runtime().stores().store_at(cfg_.store_path);
  // Catch up with every message that arrived since the last pass.
  for (;;) {
    const std::vector<transport::StoredMessage> chunk = store.scan_after(scanned_to_, kScanChunk);
    for (const transport::StoredMessage& m : chunk) {
      c.scanned++;
      scanned_to_ = std::max(scanned_to_, m.seq);
      try {
        const int64_t deadline = earliest_deadline(security::decode(m.envelope));
        if (deadline != 0) pending_.emplace(deadline, m.seq);
      } catch (const std::exception&) {
        // Malformed: the receive path rejects it when it meets it.
      }
    }
    if (chunk.size() < kScanChunk) break;
  }
  // Then every message whose deadline has passed.
  std::vector<std::pair<int64_t, int64_t>> later;
  while (!pending_.empty() && pending_.begin()->first <= now) {
    const int64_t seq = pending_.begin()->second;
    pending_.erase(pending_.begin());
    try {
      if (const int64_t again = try_expire(seq, now, c.expired); again != 0) {
        later.emplace_back(std::max(again, now + 1), seq);
      }
    } catch (const Error& ex) {
      // Busy store, queue deleted meanwhile, trust store unreadable...: try again next pass.
      log(LogLevel::Warning, "expiry sweep: message " + std::to_string(seq) +
                                 " could not be expired now: " + ex.what());
      later.emplace_back(now + 1, seq);
    }
  }
  for (const auto& [deadline, seq] : later) pending_.emplace(deadline, seq);
  c.pending = pending_.size();
  return c;
}

}  // namespace mqsec::core
