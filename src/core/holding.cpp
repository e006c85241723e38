// Holding queues of transactions (holding.hpp).
#include "src/core/holding.hpp"

#include <unistd.h>

#include <chrono>
#include <charconv>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <vector>

#include "pkcs11/call_gate.hpp"
#include "src/security/envelope.hpp"
#include "src/security/log.hpp"
#include "src/transport/local/process_identity.hpp"

namespace mqsec::core {
namespace {

// "<pid>.<start>" of this process (read once per thread and process: a forked child's pid
// differs).
std::string own_token() {
  thread_local pid_t pid = 0;
  thread_local std::string token;
  if (pid != ::getpid()) {
    pid = ::getpid();
    token = std::to_string(pid) + "." + std::to_string(transport::local::own_start_time());
  }
  return token;
}

struct Parsed {
  pid_t pid = 0;
  uint64_t start = 0;
  int64_t source = 0;
  bool move = false;
};

// "xact$\<pid>.<start>\<source>.<r|m>"
std::optional<Parsed> parse(std::string_view name) {
  if (!name.starts_with(kHoldingPrefix)) return std::nullopt;
  name.remove_prefix(kHoldingPrefix.size());
  const size_t a = name.find('\\');
  if (a == std::string_view::npos) return std::nullopt;
  const std::string_view owner = name.substr(0, a);
  std::string_view tail = name.substr(a + 1);
  const size_t dot = owner.find('.');
  if (dot == std::string_view::npos || tail.size() < 3 || tail[tail.size() - 2] != '.') {
    return std::nullopt;
  }
  Parsed p;
  p.move = tail.back() == 'm';
  if (!p.move && tail.back() != 'r') return std::nullopt;
  tail.remove_suffix(2);
  auto num = [](std::string_view s, auto& out) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && end == s.data() + s.size() && !s.empty();
  };
  if (!num(owner.substr(0, dot), p.pid) || !num(owner.substr(dot + 1), p.start) ||
      !num(tail, p.source)) {
    return std::nullopt;
  }
  return p;
}

bool owner_alive(const Parsed& p) { return transport::local::process_may_run(p.pid, p.start); }

// Moves the messages of holding queue `id` back into their source queue (forgetting their
// delivered-id records: they are delivered again, not refused as replays) and drops it;
// `p` is its parsed name (nullopt: not a name of ours, its messages have nowhere to go).
// How many went back. Throws what the store throws.
size_t give_back(transport::local::Store& store, int64_t id, const std::string& name,
                 const std::optional<Parsed>& p) {
  // Its messages, in receive order (the envelopes stay alive for the settle's spans).
  std::vector<transport::StoredMessage> held;
  for (auto m = store.first(id); m; m = store.next_after(id, m->priority, m->seq)) {
    held.push_back(std::move(*m));
  }
  std::vector<std::array<uint8_t, 20>> ids(held.size());
  std::vector<transport::local::Store::Settle> moves;
  for (size_t i = 0; i < held.size() && p; ++i) {
    transport::local::Store::Settle s{id, held[i].seq, p->source, {}};
    if (!p->move) {
      try {
        ids[i] = security::decode(held[i].envelope).msg_id;
        s.forget_id = ids[i];
      } catch (const std::exception&) {
        // Undecodable: back all the same; its receiver rejects it again.
      }
    }
    moves.push_back(s);
    moves.push_back({id, held[i].seq, 0, {}});  // its queue is gone: dropped
  }
  if (!p) {  // not a name of ours: its messages have nowhere to go
    for (const auto& m : held) moves.push_back({id, m.seq, 0, {}});
  }
  const int64_t drop = id;
  const size_t moved = store.settle({}, moves, std::span(&drop, 1));
  if (moved != held.size()) {
    log(LogLevel::Error, "transaction recovery: " + std::to_string(held.size() - moved) +
                             " message(s) of '" + name +
                             "' could not go back (their queue was deleted): dropped");
  } else if (moved != 0) {
    log(LogLevel::Warning, "transaction recovery: " + std::to_string(moved) +
                               " message(s) of a transaction whose process ended without "
                               "committing it went back into their queue (" +
                               name + ")");
  }
  return moved;
}

// Store::take_over_earlier_holder's part (set below): the holding queues named after this
// process that were there before its Store took the name were left by an earlier holder of it (a
// process of an earlier boot, or the program before an exec, with this pid and start tick).
// Their owner looks alive, since it is us: without this they would stay held while we run.
// Called in the Store's constructor, so before any Store of this process can use one.
void give_back_earlier_holders(transport::local::Store& store) noexcept {
  try {
    const std::string ours = std::string(kHoldingPrefix) + own_token() + "\\";
    for (const auto& [id, name] : store.queues_with_prefix(ours)) {
      if (id <= store.queues_before_owner()) give_back(store, id, name, parse(name));
    }
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("transaction recovery failed: ") + e.what());
  }
}

[[maybe_unused]] const bool g_hook_set =
    (transport::local::Store::set_take_over_hook(&give_back_earlier_holders), true);

}  // namespace

int64_t holding_queue_id(transport::local::Store& store, int64_t source_id, bool move) {
  transport::QueueInfo row;
  row.name = std::string(kHoldingPrefix) + own_token() + "\\" + std::to_string(source_id) +
             (move ? ".m" : ".r");
  row.label = "messages of open transactions";
  // Looked up each time (one indexed read), not cached: made again should it be gone.
  return store.ensure_queue(row).id;
}

size_t recover_orphaned_holdings(transport::local::Store& store) noexcept {
  size_t back = 0;
  try {
    for (const auto& [id, name] : store.queues_with_prefix(kHoldingPrefix)) {
      const std::optional<Parsed> p = parse(name);
      if (p && owner_alive(*p)) continue;
      back += give_back(store, id, name, p);
    }
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("transaction recovery failed: ") + e.what());
  }
  return back;
}

void recover_orphaned_holdings_now_and_then(transport::local::Store& store) noexcept {
  struct Last {
    std::mutex mu;
    std::map<std::pair<pid_t, transport::local::Store*>, std::chrono::steady_clock::time_point>
        when;
  };
  static Last* const last = [] {
    auto* made = new Last();                // immortal, as the transaction registry
    pkcs11::register_fork_mutex(made->mu);  // held briefly: a fork must not leave it held
    return made;
  }();
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(last->mu);
    auto& when = last->when[{::getpid(), &store}];
    if (when.time_since_epoch().count() != 0 && now - when < std::chrono::seconds(1)) return;
    when = now;
  }
  recover_orphaned_holdings(store);
}

}  // namespace mqsec::core
