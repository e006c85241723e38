// libFuzzer target for the envelope codec: decode must reject bad input only with
// EnvelopeError (anything else, a sanitizer report or a crash is a bug), and whatever decodes
// must re-encode to exactly the input bytes (one encoding per value) and yield a TBS.
#include "src/security/envelope.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Real envelopes can be larger; the cap keeps each run fast and memory bounded.
  constexpr size_t kMaxInput = 1 << 20;
  if (size > kMaxInput) return 0;
  using namespace mqsec::security;
  Envelope e;
  try {
    e = decode(std::span<const uint8_t>(data, size));
  } catch (const EnvelopeError&) {
    return 0;  // rejected cleanly: the expected outcome for most inputs
  }
  const Bytes again = encode(e);
  if (again.size() != size || std::memcmp(again.data(), data, size) != 0) abort();
  (void)to_be_signed(e);
  return 0;
}
