// Journals (journal.hpp).
#include "src/core/journal.hpp"

#include <mq.h>

#include "mqsec/error.hpp"

namespace mqsec::core {

transport::QueueInfo ensure_journal_queue(transport::local::Store& store,
                                          std::string_view journal_name) {
  const std::string name(journal_name);
  if (auto q = store.find_queue(name)) return *q;
  const std::optional<std::string> of = queue_of_journal(name);
  transport::QueueInfo info;
  info.name = name;
  info.label = of ? "journal of " + *of : "machine journal";
  try {
    // Created only while its queue exists (checked in the creating store transaction).
    return store.ensure_queue(info, of ? std::string_view(*of) : std::string_view());
  } catch (const Error& e) {
    if (e.code() != MQ_ERROR_QUEUE_NOT_FOUND) throw;
    throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue '" + *of + "' does not exist (nor its journal)");
  }
}

}  // namespace mqsec::core
