// Certificate registration: binds a certificate to the calling thread's user's SID in the
// store's certificate registry, after proof of possession of its private key.
#pragma once

#include <mq.h>

#include <cstdint>
#include <span>
#include <string>

#include "src/security/enroll.hpp"

namespace mqsec::core {

struct Registered {
  HRESULT code = MQ_OK;    // MQ_OK or MQ_INFORMATION_INTERNAL_USER_CERT_EXIST
  security::Bytes der;     // the registered certificate
  std::string object_uri;  // internal certificates: where it is on the token
  std::string sid;         // the SID it is bound to
  bool adopted = false;    // a certificate already on the token became the internal one
};

// MQRegisterCertificate for the calling thread's user. `der` empty: the internal certificate
// (created with `opts` unless `if_not_exist` and one exists); else that external certificate,
// whose private key must be in the user's personal store. With opts.adopt (`mqsec enroll
// --adopt`), or when the token cannot generate key pairs and `if_not_exist` is set
// (MQCERT_REGISTER_IF_NOT_EXIST) and it holds exactly one certificate with its key, a
// certificate already on the token becomes the internal certificate (security::choose_adoptable).
// On every path the key must sign a fresh challenge that the certificate verifies
// (security::prove_possession) before anything is bound: nobody can bind someone else's certificate
// to their own SID. Throws mqsec::Error.
Registered register_certificate(std::span<const uint8_t> der, bool if_not_exist,
                                const security::EnrollOptions& opts);

}  // namespace mqsec::core
