// An MSMQ internal transaction (MQBeginTransaction) of this process: the sends and receives
// made in it, and its commit and abort. Sends are kept in memory, already signed, and written
// at commit, all of them in one durable store transaction (in send order, all or none).
// Receives and moves take the message out of its queue at once (no other receiver sees it)
// into a holding queue of the process in the store (core/holding.hpp); the commit
// deletes it there (or journals it, or puts it into the move's target) in the same store
// transaction as the sends, an abort puts it back in its old place. A process that dies with
// a transaction open (SIGKILL, crash) leaves its holding queues behind, and the next process
// that recovers them puts their messages back (an exit through exit() aborts open
// transactions: abort_all_at_exit). Only queues of this machine's store take part (a remote
// queue is refused by the caller, core/queue.cpp). A transaction belongs to the process that
// began it: a forked child cannot use it.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <memory>
#include <mutex>
#include <vector>

#include "src/transport/local/local_transport.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

class Transaction {
 public:
  enum class State { Active, Committed, Aborted };

  Transaction();
  // Aborts the transaction if it is still active and ours (an uncommitted transaction
  // released is aborted); a forked child's copy is only forgotten.
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // The unit of work's id (XACTTRANSINFO.uow): random, 16 bytes.
  const std::array<uint8_t, 16>& uow() const noexcept { return uow_; }
  State state();
  // Whether this process began it (a forked child's copy is not usable).
  bool ours() const noexcept;

  // Throws mqsec::Error(MQ_ERROR_TRANSACTION_USAGE) unless the transaction is active and ours.
  void check_usable();
  // A send in the transaction: the encoded (signed) envelope, written at commit.
  void add_send(std::shared_ptr<transport::local::LocalQueue> queue, int priority,
                transport::Bytes envelope);
  // The id of the holding queue (this process's, holding.hpp) for messages received (move:
  // moved) from `source` in a transaction. Throws MQ_ERROR_TRANSACTION_USAGE unless the transaction
  // is usable (and for a queue of another store).
  int64_t holding_for(transport::local::LocalQueue& source, bool move);
  // A message the transaction received (already moved into holding queue `holding`, its
  // delivered id recorded): at commit it goes into `journal` (0: deleted), at abort back into
  // `queue`. If the transaction is not usable any more, the message is put back now and this
  // throws MQ_ERROR_TRANSACTION_USAGE.
  void add_receive(std::shared_ptr<transport::local::LocalQueue> queue, transport::StoredMessage m,
                   transport::Bytes msg_id, int64_t holding, int64_t journal);

  // MQMoveMessage in the transaction: message m, already moved from `from` into holding queue
  // `holding`, enters `to` (same seq) at commit, or goes back into `from` at abort.
  void add_move(std::shared_ptr<transport::local::LocalQueue> from,
                std::shared_ptr<transport::local::LocalQueue> to, transport::StoredMessage m,
                int64_t holding);
  // MQMarkMessageRejected: marks message `seq` of queue `queue_id` of `store` if an active
  // transaction of this process received it; at that transaction's commit its sender gets a
  // NACK (MQMSG_CLASS_NACK_RECEIVE_REJECTED, from `machine`, admin queue resolved in
  // `store_dir`) when it asked for negative receive acknowledgments. False: no such message.
  static bool mark_rejected(transport::local::Store& store, int64_t queue_id, int64_t seq,
                            const std::filesystem::path& store_dir, const std::string& machine);

  // ITransaction::Commit: S_OK; XACT_E_NOTRANSACTION when it is not active (or not ours);
  // XACT_E_ABORTED when the sends could not be written (a queue deleted meanwhile, a storage
  // error): the transaction is aborted then (received messages put back).
  HRESULT commit();
  // ITransaction::Abort: S_OK, or XACT_E_NOTRANSACTION when it is not active (or not ours).
  HRESULT abort();

  // At exit(): aborts every transaction of this process still active (MSMQ aborts a
  // transaction the application did not commit). Registered on the first transaction.
  static void abort_all_at_exit() noexcept;

 private:
  struct Send {
    std::shared_ptr<transport::local::LocalQueue> queue;
    int priority;
    transport::Bytes envelope;
  };
  struct Received {
    std::shared_ptr<transport::local::LocalQueue> queue;
    transport::StoredMessage message;
    transport::Bytes msg_id;
    std::shared_ptr<transport::local::LocalQueue> move_to;  // MQMoveMessage's target
    int64_t holding = 0;                                    // where it waits (holding.hpp)
    int64_t journal = 0;                                    // where a commit puts it; 0: nowhere
    bool rejected = false;                                  // MQMarkMessageRejected
    std::filesystem::path nack_store;                       // where its NACK is resolved
    std::string nack_machine;                               // and from which machine
  };
  // At commit, after the store's commit: the NACKs of messages marked rejected.
  void send_rejection_nacks(const std::vector<Received>& done) noexcept;
  // Puts the received and moved messages back (each has its own seq: its old place).
  void restore_locked() noexcept;
  // A transaction writes one store, so that its commit is one durable SQLite transaction: the
  // first queue binds it, a queue of another store is MQ_ERROR_TRANSACTION_USAGE.
  void bind_store_locked(transport::local::Store& store);

  std::mutex mu_;
  State state_ = State::Active;
  const pid_t pid_;
  std::array<uint8_t, 16> uow_{};
  std::vector<Send> sends_;
  std::vector<Received> received_;
  transport::local::Store* store_ = nullptr;  // bound by the first send or receive
};

}  // namespace mqsec::core
