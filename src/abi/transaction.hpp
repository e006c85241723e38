// MSMQ internal transactions at the C API: MQBeginTransaction's ITransaction objects
// (include/transact.h) and what a pTransaction argument names.
#pragma once

#include <mq.h>

#include <memory>

#include "src/core/transaction.hpp"

namespace mqsec::abi {

// What MQSendMessage's or MQReceiveMessage's pTransaction names.
struct TransactionArg {
  bool single = false;                    // MQ_SINGLE_MESSAGE
  std::shared_ptr<core::Transaction> tx;  // a transaction of MQBeginTransaction
};

// MQ_NO_TRANSACTION and MQ_SINGLE_MESSAGE, or a live ITransaction of MQBeginTransaction of this
// process, still active. Throws mqsec::Error: MQ_ERROR_DTC_CONNECT for MQ_MTS_TRANSACTION and
// MQ_XA_TRANSACTION (no DTC, no XA transaction manager on Linux), MQ_ERROR_TRANSACTION_USAGE for
// any other pointer (not one of ours, or released) and for a committed or aborted transaction.
TransactionArg transaction_arg(ITransaction* p);

}  // namespace mqsec::abi
