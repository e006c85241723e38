// libFuzzer target for PKCS#11 URIs (RFC 7512) as pkcs11::Uri::parse reads them with p11-kit.
// Bad text may only be refused with pkcs11::Error; a refusal must not repeat a PIN given with
// pin-value (PINs are kept out of logs and error text); accepted URIs must answer every
// accessor, and object_uri() output must parse back to the same token label, serial and id.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "pkcs11/error.hpp"
#include "pkcs11/uri.hpp"
#include "tests/fuzz/pin_text.hpp"

namespace {

using namespace mqsec;

using fuzz::repeats_pin;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Configured URIs are short; the cap keeps each run fast.
  constexpr size_t kMaxInput = 4096;
  if (size > kMaxInput) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  if (text.find('\0') != std::string::npos) return 0;  // a C string ends there anyway
  try {
    pkcs11::Uri uri = pkcs11::Uri::parse(text);
    if (uri.text() != text) abort();
    (void)uri.module_path();
    (void)uri.module_name();
    (void)uri.pin_source();
    const std::string label = uri.token_label();
    const std::string serial = uri.token_serial();
    const auto id = uri.object_id();
    (void)uri.object_label();
    (void)uri.object_class();
    (void)uri.names_object();
    CK_TOKEN_INFO info{};
    std::memset(info.label, ' ', sizeof info.label);
    std::memset(info.serialNumber, ' ', sizeof info.serialNumber);
    (void)uri.matches_token(info);
    // Our own URIs for what this one names come back unchanged.
    if (label.find('\0') == std::string::npos && serial.find('\0') == std::string::npos) {
      const std::vector<uint8_t> want_id = id.value_or(std::vector<uint8_t>{0x01});
      pkcs11::Uri again = pkcs11::Uri::parse(pkcs11::object_uri(label, serial, want_id, "cert"));
      if (again.token_label() != label || again.token_serial() != serial ||
          again.object_id() != want_id)
        abort();
    }
  } catch (const pkcs11::Error& e) {
    // MQSEC_FUZZ_KNOWN_PIN_ECHO=1 skips this one check, to fuzz the rest while a reported
    // PIN echo is not fixed yet (it would otherwise be found again on almost every run).
    static const bool skip = std::getenv("MQSEC_FUZZ_KNOWN_PIN_ECHO") != nullptr;
    if (!skip && repeats_pin(e.what(), text)) abort();
  }
  return 0;
}
