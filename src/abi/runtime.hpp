// The runtime behind the C API: wiring of security/ and queue/ (the only place that knows
// both), shared by libmqrt's entry points and by the mqsec command.
#pragma once

#include <mq.h>

#include <filesystem>
#include <optional>
#include <span>
#include <string>

#include "src/transport/local/batch_writer.hpp"
#include "src/transport/local/store.hpp"
#include "src/security/enroll.hpp"

namespace mqsec::abi {

// The store under `dir`, opened once per process and shared by all threads.
// Throws mqsec::Error(MQ_ERROR_SERVICE_NOT_AVAILABLE) when it cannot be opened.
transport::local::Store& store_at(const std::filesystem::path& dir);

// The express writer of the store under `dir` (one per store, started on first use).
transport::local::BatchWriter& express_writer_at(const std::filesystem::path& dir);
// The group-commit writer for recoverable messages of that store (push_and_wait: fsynced
// before it returns; concurrent senders share an fsync).
transport::local::BatchWriter& recoverable_writer_at(const std::filesystem::path& dir);
// Flushes every express writer of this process (before exit, and for MQCloseQueue).
void flush_express_writers() noexcept;

// The SID a certificate (by SHA-256) is registered to, from the store's registry, cached for
// two seconds per process: MSMQ applies a new registration to processes started afterwards; we
// apply it within two seconds, and at once in the process that registered it.
std::optional<security::Bytes> registered_sid(transport::local::Store& store,
                                              const security::Bytes& cert_sha256);

// The SID the root-owned system registry ([trust] registry, /etc/mqsec/registry.d) binds a
// certificate (by SHA-256) to; nullopt when it has no entry, or the registry is missing or not
// safely owned (then it is ignored and a warning logged).
std::optional<security::Bytes> system_registered_sid(const std::filesystem::path& dir,
                                                     const security::Bytes& cert_sha256);

struct Registered {
  HRESULT code = MQ_OK;    // MQ_OK or MQ_INFORMATION_INTERNAL_USER_CERT_EXIST
  security::Bytes der;     // the registered certificate
  std::string object_uri;  // internal certificates: where it is on the token
  std::string sid;         // the SID it is bound to
};

// MQRegisterCertificate for the calling thread's user. `der` empty: the internal certificate
// (created with `opts` unless `if_not_exist` and one exists); else that external certificate,
// whose private key must be in the user's personal store. On every path the key must sign a
// fresh challenge that the certificate verifies (security::prove_possession) before anything
// is bound: nobody can bind someone else's certificate to their own SID. Throws mqsec::Error.
Registered register_certificate(std::span<const uint8_t> der, bool if_not_exist,
                                const security::EnrollOptions& opts);

}  // namespace mqsec::abi
