// Remote read: opening a queue of another machine for reading, and answering such reads here.
#include "src/core/remote_read.hpp"

#include <algorithm>

#include "mqsec/error.hpp"
#include "src/core/arrival.hpp"
#include "src/core/forwarding.hpp"
#include "src/core/queue.hpp"
#include "src/core/runtime.hpp"
#include "src/core/verification.hpp"
#include "src/security/log.hpp"
#include "src/transport/local/local_transport.hpp"
#include "src/transport/printable.hpp"

namespace mqsec::core {
namespace amqp = transport::amqp;
using transport::printable;

namespace {

amqp::ReadReply refusal(HRESULT code, std::string text) {
  amqp::ReadReply r;
  r.status = code;
  r.error = std::move(text);
  return r;
}

}  // namespace

RemoteRead open_remote_read(const security::SystemConfig& cfg, const Destination& d, bool receive) {
  if (!cfg.broker) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                "queue '" + format_name_of(d) +
                    "' is on another machine, and no [broker] is configured" +
                    (cfg.source.empty() ? std::string() : " in " + cfg.source.string()) +
                    ": a remote read travels through an AMQP 1.0 broker (docs/remote.md)");
  }
  amqp::RemoteReadOptions o;
  o.machine = d.machine;
  o.queue = d.queue;
  o.reader = cfg.machine.name.empty() ? this_machine() : cfg.machine.name;
  o.receive = receive;
  o.request_timeout = std::chrono::milliseconds(cfg.broker->request_timeout_ms);
  auto t = std::make_shared<amqp::RemoteReadTransport>(broker_settings(cfg), std::move(o));
  transport::QueueInfo info = t->info();
  return RemoteRead{std::move(info), std::move(t)};
}

RemoteReads::RemoteReads(security::SystemConfig cfg)
    : cfg_(std::move(cfg)), bounds_(rejection_bounds_of(cfg_.limits)) {}

RemoteReadCounts RemoteReads::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

amqp::ReadReply RemoteReads::handle(const amqp::ReadRequest& r) {
  const std::string name = arrival_queue_name(r.queue);
  // Appended rather than "'" + printable(...) + "'": GCC 12 at -O3 reports that operator+'s
  // insert at the front may overlap (-Wrestrict), a false positive.
  std::string who = "'";
  who += printable(r.reader);
  who += '\'';
  const std::string what = std::string(amqp::to_string(r.op)) + " on queue '" +
                           printable(name.empty() ? r.queue : name) + "'";
  // Authorization first: whether a queue that is not served exists is nobody's business.
  const auto& allowed = cfg_.agent.remote_read;
  if (name.empty() || std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
    {
      std::lock_guard lock(mu_);
      counts_.denied++;
    }
    log(LogLevel::Warning, "agent: refused a remote read from machine " + who + " (" + what +
                               "): the queue is not in [agent] remote-read" +
                               (cfg_.source.empty() ? "" : " of " + cfg_.source.string()));
    return refusal(MQ_ERROR_ACCESS_DENIED,
                   "machine '" + cfg_.machine.name + "' does not serve remote reads of queue '" +
                       printable(name.empty() ? r.queue : name) +
                       "' (its administrator lists the queues it serves in [agent] remote-read)");
  }
  try {
    amqp::ReadReply reply = answer(r, name);
    std::lock_guard lock(mu_);
    if (reply.status == MQ_OK)
      counts_.served++;
    else
      counts_.failed++;
    return reply;
  } catch (const Error& e) {
    log(LogLevel::Warning,
        "agent: remote read from machine " + who + " (" + what + ") failed: " + e.what());
    std::lock_guard lock(mu_);
    counts_.failed++;
    return refusal(e.code(), e.what());
  }
}

amqp::ReadReply RemoteReads::answer(const amqp::ReadRequest& r, const std::string& name) {
  Runtime& rt = runtime();
  auto info = rt.stores().store_at(cfg_.store_path).find_queue(name);
  if (!info) {
    return refusal(MQ_ERROR_QUEUE_NOT_FOUND,
                   "queue '" + name + "' does not exist on machine '" + cfg_.machine.name + "'");
  }
  const bool takes =
      (r.op == amqp::ReadOp::info && r.receive) || r.op == amqp::ReadOp::remove_delivered;
  if (takes && receive_share_denied(cfg_.store_path, info->id)) {
    return refusal(MQ_ERROR_SHARING_VIOLATION, "queue '" + name + "' of machine '" +
                                                   cfg_.machine.name +
                                                   "' is opened there with MQ_DENY_RECEIVE_SHARE");
  }
  transport::local::LocalQueue q(rt.stores(), cfg_.store_path, info->name, info->id);
  amqp::ReadReply reply;
  switch (r.op) {
    case amqp::ReadOp::info:
      reply.info = *info;
      break;
    case amqp::ReadOp::first:
      reply.message = q.first();
      break;
    case amqp::ReadOp::next_after:
      reply.message = q.next_after(r.priority, r.seq);
      break;
    case amqp::ReadOp::get:
      reply.message = q.get(r.seq);
      break;
    case amqp::ReadOp::remove:
      reply.number = q.remove(r.seq) ? 1 : 0;
      break;
    case amqp::ReadOp::remove_delivered:
      reply.removal = q.remove_delivered(r.seq, r.msg_id, r.sent_time, r.window_seconds);
      break;
    case amqp::ReadOp::was_delivered:
      reply.number = q.was_delivered(r.msg_id) ? 1 : 0;
      break;
    case amqp::ReadOp::count:
      reply.number = q.count();
      break;
    case amqp::ReadOp::version:
      reply.number = q.version();
      break;
    case amqp::ReadOp::record_rejection:
      // The reader found it failing (and removed it): this queue's own audit record.
      log(LogLevel::Warning, "agent: a remote reader on machine '" + printable(r.reader) +
                                 "' rejected a message of queue '" + name + "' (" +
                                 printable(r.kind) + "): " + printable(r.reason, 300));
      q.record_rejection(r.kind, r.reason, r.envelope, bounds_);
      break;
  }
  return reply;
}

void serve_remote_reads(const security::SystemConfig& cfg, RemoteReads& reads,
                        std::stop_token stop) {
  amqp::ReadServiceOptions o;
  o.machine = cfg.machine.name.empty() ? this_machine() : cfg.machine.name;
  o.log = [](std::string_view line) { log(LogLevel::Info, std::string(line)); };
  amqp::ReadService service(broker_settings(cfg), std::move(o),
                            [&reads](const amqp::ReadRequest& r) { return reads.handle(r); });
  service.run(stop);
}

}  // namespace mqsec::core
