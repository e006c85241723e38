// The message envelope: the one byte format of an mqsec message (store and any transport), and
// the "to-be-signed" (TBS) bytes that a message signature covers. The format is versioned,
// deterministic (exactly one encoding per value) and specified byte by byte in
// docs/signature-format.md so that an independent verifier can be written from the document.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace mqsec::security {

using Bytes = std::vector<uint8_t>;

// How `signature` was made. The digest is always hash_alg over to_be_signed().
enum class SigScheme : uint8_t { None = 0, RsaPkcs1 = 1, RsaPss = 2, Ecdsa = 3 };

// PROPID_M_TIME_TO_REACH_QUEUE's "no limit" (MSMQ's INFINITE). An envelope without a limit is
// written as format version 1; one with a limit as version 2 (docs/signature-format.md).
inline constexpr uint32_t kNoTimeLimit = 0xFFFFFFFFu;

struct Envelope {
  uint16_t msg_class = 0;            // PROPID_M_CLASS
  std::array<uint8_t, 20> msg_id{};  // PROPID_M_MSGID (16-byte GUID + 4-byte sequence)
  std::array<uint8_t, 20> correlation_id{};
  uint8_t priority = 3, delivery = 0, acknowledge = 0, journal = 0;
  uint32_t app_specific = 0, body_type = 0;
  Bytes body;
  std::u16string label, response_queue, admin_queue, dest_queue;  // queues as format names
  std::u16string source_machine;  // source queue manager (host name)
  uint64_t sent_time = 0;         // Unix seconds
  uint32_t auth_level = 0;        // PROPID_M_AUTH_LEVEL as requested
  uint32_t hash_alg = 0;          // CALG_* (0 when unsigned)
  SigScheme sig_scheme = SigScheme::None;
  uint32_t sender_id_type = 0;  // MQMSG_SENDERID_TYPE_*
  Bytes sender_id;              // binary SID, empty when type NONE
  Bytes sender_cert;            // DER, empty when unsigned
  Bytes signature;              // empty when unsigned
  // PROPID_M_TIME_TO_REACH_QUEUE in seconds from sent_time; kNoTimeLimit = none. Not covered by
  // the signature (docs/signature-format.md, section 3.1).
  uint32_t time_to_reach_queue = kNoTimeLimit;
  friend bool operator==(const Envelope&, const Envelope&) = default;
};

// Malformed envelope bytes, or an Envelope value that the format cannot represent.
// The message names the offending field and never contains field contents.
class EnvelopeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The whole envelope, signature included.
// Throws EnvelopeError if a field is out of its documented range (priority > 7, unknown
// delivery, acknowledge or journal bits, auth_level, hash_alg, sig_scheme or sender_id_type) or
// longer than 2^32-1 bytes; decode() accepts every output of encode().
Bytes encode(const Envelope& e);

// Format version 1 when time_to_reach_queue is kNoTimeLimit (byte for byte what every earlier
// writer produced), else version 2 (one more field). decode() accepts both.
// Throws EnvelopeError on any malformed input: bad magic or version, truncation, trailing
// bytes, lengths beyond the input or wrong for a fixed-width field, unknown, duplicate,
// missing or out-of-order field tags, odd UTF-16 length, out-of-range values. Never reads out
// of bounds; allocates at most about the input's size. encode(decode(b)) == b for every
// accepted b. Field-to-field consistency (e.g. signed <=> certificate present) is the
// verifier's business, not the codec's.
Envelope decode(std::span<const uint8_t> bytes);

// The exact bytes the signature covers (never includes `signature` nor time_to_reach_queue;
// includes SHA-256 of sender_cert instead of the certificate). Throws EnvelopeError under the same
// conditions as encode().
Bytes to_be_signed(const Envelope& e);
// The same with SHA-256(e.sender_cert) already computed (senders and receivers cache it).
Bytes to_be_signed(const Envelope& e, std::span<const uint8_t> cert_sha256);

}  // namespace mqsec::security
