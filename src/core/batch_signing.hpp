// The batch-signing pipeline (issue 12, item 3; docs/configuration.md "Batch signing"): with
// [signing] batch-max-messages > 1, the authenticated messages one security context sends with
// one hash algorithm are signed in batches, one device signature per batch
// (security::sign_batch, docs/signature-format.md section 10), by a background signer per
// (process, context, hash algorithm, weak-hash setting).
//
// Deferred signing (the default): Queue::send prepares the envelope (every field final: message
// id, sent time, destination, certificate, SID), queues it here and returns. The signer takes
// what is queued once the first message has waited batch-max-delay-ms or batch-max-messages are
// there (or a flush asks), signs them with one signature and hands the signed envelopes to their
// queues' transports, in the order they were queued, one call per run of messages for one queue
// and delivery mode (QueueTransport::send_batch: the local store writes a run in one
// transaction). Only then is a message in a store (a local
// queue, or the outgoing queue of a remote one) and visible to receivers: an unsigned message is
// never stored. A signing failure turns each message of the batch into a rejection record (kind
// "signing-failed") in its queue's store and a NACK (MQMSG_CLASS_NACK_BAD_SIGNATURE) to its admin
// queue when its acknowledge level asks for negative arrival acknowledgements.
//
// Waiting mode ([signing] batch-wait, and sends inside a transaction): the caller blocks until its
// message is signed and handed to the transport, and gets a signing failure as its own error;
// concurrent senders on one context still share signatures.
//
// What survives what: a queued message lives in this process's memory only until its batch is
// signed (at most about batch-max-delay-ms plus one device signature, longer when the token is
// slower than the senders). MQCloseQueue, MQFreeSecurityContext and process exit wait (bounded)
// for what is queued; a process that is killed (SIGKILL, a crash) before that loses the messages
// not yet signed, recoverable ones included, as it would lose express ones: they were never
// stored, so they are never delivered, unsigned or otherwise.
//
// fork(): a child does not inherit the signer threads; messages its parent had queued stay the
// parent's (never signed or sent by the child). The child's own batched sends start its own
// signers (keyed by process id).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>

#include "src/core/verification.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

// One message waiting for its batch signature.
struct PendingSend {
  security::Envelope envelope;  // prepared (security::prepare_envelope), every other field final
  std::shared_ptr<security::SecurityContext> context;  // keeps the key alive until signed
  std::shared_ptr<transport::QueueTransport> transport;
  std::shared_ptr<const QueuePolicy> policy;  // where failures are recorded and NACKed from
  std::string queue_name;                     // for logs
  int priority = 0;
  transport::Delivery delivery = transport::Delivery::Recoverable;
};

struct BatchSettings {
  uint32_t max_messages = 1;  // 2 .. 65,536
  std::chrono::milliseconds max_delay{10};
};

// The background signer of one (context, hash algorithm, weak-hash setting) in one process.
class BatchSigner {
 public:
  BatchSigner(uint32_t hash_alg, bool allow_weak) : hash_alg_(hash_alg), allow_weak_(allow_weak) {}
  ~BatchSigner();
  BatchSigner(const BatchSigner&) = delete;
  BatchSigner& operator=(const BatchSigner&) = delete;

  // Queues `m`. wait: blocks until it is signed and handed to its transport, and rethrows a
  // signing or storage failure (nothing is recorded or NACKed then: the caller got the error).
  // Without wait, returns once queued (it blocks only while more than twice
  // settings.max_messages + 1,024 messages are queued: memory stays bounded when the token is
  // slower than the senders).
  void submit(PendingSend m, const BatchSettings& settings, bool wait);

  // Signs what is queued now without waiting for the window, and waits until it is handed
  // over (or `deadline`). False on timeout.
  bool flush(std::chrono::steady_clock::time_point deadline);

  // Device signatures made and messages signed by this signer (tests, bench).
  uint64_t signatures() const;
  uint64_t messages() const;

 private:
  struct Waiter {
    bool done = false;
    std::exception_ptr error;
  };
  struct Item {
    PendingSend send;
    std::shared_ptr<Waiter> waiter;  // null: deferred
    std::chrono::steady_clock::time_point queued;
  };
  void run();
  void sign_and_hand_over(std::deque<Item>& batch);

  const uint32_t hash_alg_;
  const bool allow_weak_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // to the signer: something queued, a flush, stop
  std::condition_variable done_cv_;  // to submitters and flushers: a batch handed over
  std::deque<Item> pending_;
  BatchSettings settings_;
  uint64_t queued_ = 0;     // messages ever queued
  uint64_t completed_ = 0;  // messages handed over (or failed)
  uint64_t flush_to_ = 0;   // sign without waiting until completed_ reaches this
  uint64_t signatures_ = 0, messages_ = 0;
  bool running_ = false;  // the thread runs (it ends after an idle while)
  bool stop_ = false;
  std::thread thread_;
};

// The process's batch signers, owned by the Runtime.
class BatchSigners {
 public:
  BatchSigners();
  BatchSigners(const BatchSigners&) = delete;
  BatchSigners& operator=(const BatchSigners&) = delete;

  // The signer for this process, `ctx`, hash algorithm, weak-hash setting and batch size cap
  // (created on first use; the first one also registers the flush at exit). One signer per cap:
  // a signer cuts its batches at the cap of the last submit, so queues with different caps
  // ([signing] batch-limit, profiles, set_batching) must not share one, or a capped queue's
  // messages could share a larger batch of another queue's.
  std::shared_ptr<BatchSigner> get(const security::SecurityContext* ctx, uint32_t hash_alg,
                                   bool allow_weak, uint32_t max_messages);
  // flush() on every signer of this process (ctx null) or of one context. False when one did
  // not finish by `deadline`.
  bool flush(const security::SecurityContext* ctx, std::chrono::steady_clock::time_point deadline);
  // Totals over this process's signers (tests, bench).
  uint64_t signatures() const;
  uint64_t messages() const;

 private:
  using Key = std::tuple<pid_t, const security::SecurityContext*, uint32_t, bool, uint32_t>;
  mutable std::mutex mu_;  // leaf lock, registered with the fork locks
  std::map<Key, std::shared_ptr<BatchSigner>> signers_;
};

// How long MQCloseQueue, MQFreeSecurityContext and exit wait for queued messages.
inline constexpr std::chrono::milliseconds kBatchFlushBound{10000};

}  // namespace mqsec::core
