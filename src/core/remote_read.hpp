// Remote read (MSMQ's MQOpenQueue with receive or peek access on a queue of another machine;
// docs/remote.md, "Remote read"): both ends of it in the core.
//
// - The reader: open_remote_read gives the queue's settings (the destination's QueueInfo, from
//   an "info" request) and a transport (transport::amqp::RemoteReadTransport) whose calls are
//   requests to the destination's agent. Queue::open builds the reader's policy from them and
//   the reader's own system configuration, and Queue::receive runs unchanged: every message is
//   verified by the reader (as it was on arrival at the destination), failing ones are removed
//   and recorded there and NACKed from here.
// - The destination: RemoteReads answers those requests on the local store, for the queues
//   [agent] remote-read names only (anything else: MQ_ERROR_ACCESS_DENIED); `mqsec agent`
//   serves them with transport::amqp::ReadService (serve_remote_reads).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>

#include "src/core/destination.hpp"
#include "src/security/config.hpp"
#include "src/transport/transport.hpp"
#include "transport/amqp/remote_read.hpp"

namespace mqsec::core {

struct RemoteRead {
  transport::QueueInfo info;  // the queue's settings on the destination machine
  std::shared_ptr<transport::QueueTransport> transport;
};

// Opens queue `d` (a queue of another machine) for reading through its machine's agent, with
// the broker and request timeout of `cfg` ([broker]). receive: opened for receiving (else
// peeking). Throws mqsec::Error: MQ_ERROR_SERVICE_NOT_AVAILABLE (no [broker], the broker is
// unreachable), MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE (no answer: that machine's agent does not
// run), MQ_ERROR_ACCESS_DENIED (that machine does not serve remote reads of the queue),
// MQ_ERROR_QUEUE_NOT_FOUND, MQ_ERROR_SHARING_VIOLATION (receive, and a receiver there holds it
// with MQ_DENY_RECEIVE_SHARE).
RemoteRead open_remote_read(const security::SystemConfig& cfg, const Destination& d, bool receive);

struct RemoteReadCounts {
  uint64_t served = 0;
  uint64_t denied = 0;  // queues not in [agent] remote-read
  uint64_t failed = 0;  // other errors (no such queue, store busy, ...)
};

// The destination's side: answers requests on the queues of the store cfg.store_path that
// cfg.agent.remote_read names. Safe to call from several threads.
class RemoteReads {
 public:
  explicit RemoteReads(security::SystemConfig cfg);
  transport::amqp::ReadReply handle(const transport::amqp::ReadRequest& r);
  RemoteReadCounts counts() const;

 private:
  transport::amqp::ReadReply answer(const transport::amqp::ReadRequest& r, const std::string& name);

  const security::SystemConfig cfg_;
  const transport::RejectionBounds bounds_;  // this machine's [limits] for the record
  mutable std::mutex mu_;
  RemoteReadCounts counts_;
};

// Serves remote reads of this machine (cfg.machine.name) until `stop` (mqsec agent's thread):
// transport::amqp::ReadService over RemoteReads, reconnecting with backoff; problems are logged.
// Throws mqsec::Error only for settings that cannot work (no [broker], password source).
void serve_remote_reads(const security::SystemConfig& cfg, RemoteReads& reads,
                        std::stop_token stop);

}  // namespace mqsec::core
