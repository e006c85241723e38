// Journals, as MSMQ keeps them for queues of this machine (target journaling, and source
// journaling of messages that never leave the computer):
// - a queue with PROPID_Q_JOURNAL = MQ_JOURNAL keeps each message a receive takes from it (not a
//   peek, not an expiry) in its journal, DIRECT=OS:.\private$\<queue>;JOURNAL;
// - otherwise a message sent from this machine with MQMSG_JOURNAL in PROPID_M_JOURNAL is kept,
//   when a receive takes it, in the machine journal DIRECT=OS:.\SYSTEM$;JOURNAL (MSMQ keeps at
//   most one copy per computer: the queue's journal wins).
// The copy is the received row itself, moved into the journal in the receive's store transaction
// (an aborted transactional receive moves it back). Journals are store queues with reserved
// names no path name can make ('\' in them), read-only for applications.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "src/transport/local/store.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

inline constexpr std::string_view kMachineJournalName = "system$\\journal";
inline constexpr std::string_view kJournalPrefix = "journal\\";

// The store name of queue `queue`'s journal.
inline std::string journal_queue_name(std::string_view queue) {
  return std::string(kJournalPrefix) + std::string(queue);
}
// The queue whose journal `store_queue_name` is; nullopt for any other name (the machine
// journal included).
inline std::optional<std::string> queue_of_journal(std::string_view store_queue_name) {
  if (!store_queue_name.starts_with(kJournalPrefix)) return std::nullopt;
  return std::string(store_queue_name.substr(kJournalPrefix.size()));
}
inline bool is_journal_queue_name(std::string_view store_queue_name) {
  return store_queue_name == kMachineJournalName || queue_of_journal(store_queue_name);
}

// The journal queue `journal_name` in `store`, created when missing (race-safe). A queue's
// journal needs the queue: MQ_ERROR_QUEUE_NOT_FOUND when it does not exist. Throws what the
// store throws.
transport::QueueInfo ensure_journal_queue(transport::local::Store& store,
                                          std::string_view journal_name);

}  // namespace mqsec::core
