// Certificate registration (MQRegisterCertificate, `mqsec enroll` and `mqsec register`).
#include "src/core/registration.hpp"

#include <optional>
#include <vector>

#include "mqsec/error.hpp"
#include "pkcs11/error.hpp"
#include "src/core/runtime.hpp"
#include "src/security/log.hpp"
#include "src/security/openssl.hpp"
#include "src/security/personal_store.hpp"
#include "src/security/possession.hpp"

namespace mqsec::core {

namespace {
std::string subject_of_der(std::span<const uint8_t> der) {
  security::X509Ptr cert = security::parse_der_strict(der);
  return cert ? security::subject_string(cert.get()) : std::string("(unparsable certificate)");
}
}  // namespace

Registered register_certificate(std::span<const uint8_t> der, bool if_not_exist,
                                const security::EnrollOptions& opts) {
  std::string profile_error;
  security::UserSetup setup = security::resolve_user(&profile_error);
  Registered out;
  out.sid = setup.user.sid.str();

  security::PersonalStore personal(setup);
  security::X509Ptr cert;
  // An adopted certificate becomes the internal one (the profile) once its key has proven it.
  bool adopted = false;
  auto adopt = [&](security::Adoptable a) {
    out.der = std::move(a.der);
    out.object_uri = std::move(a.object_uri);
    adopted = true;
  };
  if (der.empty()) {
    if (!profile_error.empty()) {
      log(LogLevel::Error, "cannot read the user profile: " + profile_error);
      throw Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE,
                  "cannot read the user profile: " + profile_error);
    }
    if (if_not_exist && !setup.profile.internal_certificate.empty()) {
      if (auto existing = personal.find_certificate(setup.profile.internal_certificate)) {
        // It exists: registered again below (idempotent), so a recreated store still knows it.
        out.code = MQ_INFORMATION_INTERNAL_USER_CERT_EXIST;
        out.der = std::move(*existing);
        out.object_uri = setup.profile.internal_certificate;
      }
    }
    if (out.der.empty() && opts.adopt) {
      adopt(security::choose_adoptable(personal, opts.adopt_selector));
    } else if (out.der.empty()) {
      try {
        security::Enrolled e = security::enroll_internal(setup, personal, opts);
        out.der = std::move(e.der);
        out.object_uri = std::move(e.object_uri);
      } catch (const Error& e) {
        if (e.token_error() != TokenError::KeyGenerationUnsupported) throw;
        // A card that cannot generate keys (a PIV card through OpenSC): MQCERT_REGISTER_IF_NOT_
        // EXIST takes the certificate already on it when there is exactly one with its key.
        std::vector<security::Adoptable> found;
        try {
          found = security::adoptable_certificates(personal, {});
        } catch (const std::exception&) {
          throw e;
        }
        if (if_not_exist && found.size() == 1) {
          log(LogLevel::Info, std::string(e.what()) +
                                  "; adopting the certificate on it: " + found.front().describe());
          adopt(std::move(found.front()));
        } else {
          std::string list;
          for (const auto& a : found) list += "\n  " + a.describe();
          fail(e.code(),
               std::string(e.what()) + "; " +
                   (found.empty()
                        ? "it holds no certificate with its private key either: provision the "
                          "card with its vendor tool (a key pair and its certificate), then run "
                          "`mqsec enroll --adopt`"
                        : "it holds " + std::to_string(found.size()) +
                              " certificate(s) with their private key: make one your internal "
                              "certificate with `mqsec enroll --adopt` (choose with "
                              "`--adopt 'pkcs11:id=...'` when there are several):" +
                              list),
               TokenError::KeyGenerationUnsupported);
        }
      }
    }
  } else {
    cert = security::parse_der_strict(der);
    if (!cert) {
      throw Error(MQ_ERROR_INVALID_CERTIFICATE,
                  "the buffer is not exactly one DER-encoded X.509 certificate");
    }
    out.der.assign(der.begin(), der.end());
  }

  // Proof of possession, on every path (external, existing internal, newly enrolled): the
  // certificate's private key must be on the caller's token AND sign a fresh challenge that
  // the certificate verifies. Finding a key by CKA_ID or public key proves nothing by itself:
  // anyone can put someone else's certificate on their token next to a key of their own.
  if (!cert) {
    cert = security::parse_der_strict(out.der);
    if (!cert) {
      fail(MQ_ERROR_INVALID_CERTIFICATE, "cannot register the internal certificate '" +
                                             out.object_uri + "': the object on token '" +
                                             personal.token()->label() +
                                             "' is not exactly one DER-encoded X.509 certificate");
    }
  }
  try {
    auto key = personal.find_key_for(cert.get(), out.der);
    if (!key) {
      fail(MQ_ERROR_INVALID_CERTIFICATE,
           "cannot register '" + security::subject_string(cert.get()) +
               "': its private key is not in the caller's personal store (token '" +
               personal.token()->label() + "')");
    }
    if (std::string why = key->exposure();
        adopted && !why.empty() && !setup.config.allow_extractable_keys) {
      fail(MQ_ERROR_INVALID_CERTIFICATE,
           "cannot adopt '" + security::subject_string(cert.get()) + "': its private key " +
               (why.rfind("was", 0) == 0 ? why : "is " + why) +
               ", so a copy may exist outside the token (security contexts refuse it); set "
               "[token] allow-extractable-keys = true in the system config to allow such keys");
    }
    security::prove_possession(personal, cert.get(), *key);
  } catch (const pkcs11::Error& e) {
    security::throw_mapped(e, MQ_ERROR_CORRUPTED_SECURITY_DATA, "certificate registration");
  }

  if (adopted) {
    security::set_internal_certificate(setup.profile, out.object_uri);
    log(LogLevel::Info, "adopted " + out.object_uri + " (" + subject_of_der(out.der) +
                            ") as the internal certificate of user '" + setup.user.name + "'");
    out.adopted = true;
  }

  // Registrations are never last-writer-wins: a certificate bound to another SID stays bound
  // to it (MQ_ERROR_INVALID_CERTIFICATE, nothing changed). The store refuses the rebind inside
  // its transaction; the check before it gives the same answer with a clearer message.
  const security::Bytes digest = security::sha256(out.der);
  auto rebind_refused = [&](const std::string& detail) {
    std::string why = "cannot register '" + subject_of_der(out.der) + "' to " + out.sid +
                      ": it is registered to another SID" + detail +
                      " (a registration is never replaced; the owner of that SID keeps it)";
    log(LogLevel::Error, why);
    return Error(MQ_ERROR_INVALID_CERTIFICATE, why);
  };
  auto store_failed = [](const Error& e) {
    log(LogLevel::Error, std::string("certificate registry: ") + e.what());
    return Error(MQ_ERROR_CANNOT_OPEN_CERT_STORE, std::string("certificate registry: ") + e.what());
  };
  transport::local::Store* registry = nullptr;
  std::optional<security::Bytes> bound;
  try {
    registry = &runtime().stores().store_at(setup.config.store_path);
    bound = registry->certificate_sid(digest);
  } catch (const Error& e) {
    throw store_failed(e);
  }
  if (bound && *bound != setup.user.sid.bytes()) {
    std::string owner;
    try {
      owner = " (" + security::Sid::from_bytes(*bound).str() + ")";
    } catch (const std::invalid_argument&) {
    }
    throw rebind_refused(owner);
  }
  try {
    registry->bind_certificate(digest, out.der, setup.user.sid.bytes(), setup.user.uid);
  } catch (const Error& e) {
    // The store's own refusal: a registration to another SID committed since the check.
    if (e.code() == MQ_ERROR_INVALID_CERTIFICATE)
      throw rebind_refused(std::string(": ") + e.what());
    throw store_failed(e);
  }
  runtime().forget_registrations();  // this process sees its own registration at once
  return out;
}

}  // namespace mqsec::core
