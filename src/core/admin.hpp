// Queue administration of the queue manager whose store is under `store_dir` (the system
// configuration's [store] path): create, delete, find and list queues, the rejected-messages
// record, and lookups in the store's certificate registry. Used by MQCreateQueue,
// MQDeleteQueue, MQPathNameToFormatName and the mqsec command's queue verbs.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "src/core/destination.hpp"
#include "src/transport/transport.hpp"

namespace mqsec::core {

// Creates the queue q (name lower-cased, label, authenticate, transactional, trust demand,
// authorized signers, all in one row) and returns its format name. Throws mqsec::Error
// (MQ_ERROR_QUEUE_EXISTS, MQ_ERROR_INVALID_PARAMETER, storage errors).
std::string create_queue(const std::filesystem::path& store_dir, const transport::QueueInfo& q);
// Deletes a queue and its messages, after this process's express messages are committed.
// Throws MQ_ERROR_QUEUE_NOT_FOUND.
void delete_queue(const std::filesystem::path& store_dir, const Destination& d);
std::optional<transport::QueueInfo> find_queue(const std::filesystem::path& store_dir,
                                               const Destination& d);

struct QueueStatus {
  transport::QueueInfo info;
  size_t messages = 0;  // waiting in the queue
};
std::vector<QueueStatus> list_queues(const std::filesystem::path& store_dir);  // by name

// The rejected-messages record of `queue`, or of every queue when it is empty (oldest first).
std::vector<transport::Rejection> rejections(const std::filesystem::path& store_dir,
                                             const std::string& queue);

// The SID the store's certificate registry binds a certificate (by its DER) to, read now.
std::optional<transport::Bytes> registered_sid_of(const std::filesystem::path& store_dir,
                                                  std::span<const uint8_t> cert_der);

}  // namespace mqsec::core
