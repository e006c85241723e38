// The message envelope: the one byte format of an mqsec message (store and any transport), and
// the "to-be-signed" (TBS) bytes that a message signature covers. The format is versioned,
// deterministic (exactly one encoding per value) and specified byte by byte in
// docs/signature-format.md so that an independent verifier can be written from the document.
// A batch-signed message (one device signature over a Merkle tree of many messages' TBS,
// section 10 of that document) is format version 3 and carries its BatchProof.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace mqsec::security {

using Bytes = std::vector<uint8_t>;

// How `signature` was made. The digest is hash_alg over to_be_signed(), or, for a batch-signed
// message, over batch_statement(batch).
enum class SigScheme : uint8_t { None = 0, RsaPkcs1 = 1, RsaPss = 2, Ecdsa = 3 };

// Bounds of a batch signature (docs/signature-format.md, section 10).
inline constexpr uint32_t kMaxBatchSize = 65536;  // leaves of one tree (2^16)
inline constexpr size_t kMaxBatchPath = 16;       // nodes of one audit path

// What a batch-signed message carries besides the signature (envelope field 0x19, format
// version 3): the signed statement's content (hash algorithm, tree size, root) and the message's
// place in the tree (leaf index, audit path). tree_size 0 means "not batch-signed": the
// signature is over TBS itself (versions 1 and 2). A batch has at least 2 messages; a batch of
// one is an ordinary signature.
struct BatchProof {
  uint32_t hash_alg = 0;    // the statement's CALG: SHA-256, SHA-384 or SHA-512 only
  uint32_t tree_size = 0;   // 0 (not batch-signed) or 2 .. kMaxBatchSize
  Bytes root;               // the tree's root, the digest size of hash_alg
  uint32_t leaf_index = 0;  // < tree_size
  std::vector<Bytes> path;  // the audit path, leaf level first, each the digest size
  bool present() const noexcept { return tree_size != 0; }
  friend bool operator==(const BatchProof&, const BatchProof&) = default;
};

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
  // PROPID_M_TIME_TO_BE_RECEIVED in seconds from sent_time; kNoTimeLimit = none. A limit makes
  // the envelope format version 4 and is signed (TBS v2, docs/signature-format.md, section 3).
  uint32_t time_to_be_received = kNoTimeLimit;
  // Set when `signature` is a batch signature (format version 3); not covered by TBS (it is
  // what binds TBS to the signed statement).
  BatchProof batch;
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
// writer produced), else version 2 (one more field); version 3 (fields 0x18 and 0x19 always)
// when the message is batch-signed, whatever its time limit; version 4 (fields 0x18, 0x19, empty
// when not batch-signed, and 0x1A) when it has a time to be received. decode() accepts all four.
// encode() also throws EnvelopeError for a batch proof that batch_proof_problem() refuses.
// Throws EnvelopeError on any malformed input: bad magic or version, truncation, trailing
// bytes, lengths beyond the input or wrong for a fixed-width field, unknown, duplicate,
// missing or out-of-order field tags, odd UTF-16 length, out-of-range values. Never reads out
// of bounds; allocates at most about the input's size. encode(decode(b)) == b for every
// accepted b. Field-to-field consistency (e.g. signed <=> certificate present) is the
// verifier's business, not the codec's.
Envelope decode(std::span<const uint8_t> bytes);

// The message id of an encoded envelope without decoding the rest: true, `id` set, when `bytes`
// starts with the magic, a known format version and the id field (tag 0x01, length 20), which
// every version puts first (bytes 11..30). Nothing else is checked: decode() and verification
// still decide; the claimed receive uses it only as a key and compares it with the verified
// id (transport/local Store::claim_next). Constant time, no allocation, never throws.
bool peek_msg_id(std::span<const uint8_t> bytes, std::array<uint8_t, 20>& id) noexcept;

// The exact bytes the signature covers, or for a batch-signed message the bytes its Merkle leaf
// is made of (never includes `signature`, time_to_reach_queue nor the batch proof;
// includes SHA-256 of sender_cert instead of the certificate). Throws EnvelopeError under the same
// conditions as encode().
Bytes to_be_signed(const Envelope& e);
// The same with SHA-256(e.sender_cert) already computed (senders and receivers cache it).
Bytes to_be_signed(const Envelope& e, std::span<const uint8_t> cert_sha256);

// Where write_to_be_signed puts the bytes: in order, in pieces of any size (the body passed
// through as one piece, straight from the envelope).
class ByteSink {
 public:
  virtual void update(std::span<const uint8_t> bytes) = 0;

 protected:
  ~ByteSink() = default;
};
// to_be_signed(e, cert_sha256)'s bytes, given to `out` instead of copied into a buffer (the
// signing path hashes them as they come). Throws like to_be_signed.
void write_to_be_signed(const Envelope& e, std::span<const uint8_t> cert_sha256, ByteSink& out);

// Why `p` (present()) is not a well-formed batch proof, or nullptr: hash algorithm not SHA-2,
// tree size outside 2 .. kMaxBatchSize, leaf index not below it, root or a path node not the
// digest size, path length not the one index and size imply. Never names field contents.
const char* batch_proof_problem(const BatchProof& p);

// The statement a batch signature signs (docs/signature-format.md, section 10.3): domain tag
// "MQSEC-BATCH-v1" NUL, hash_alg, tree_size, root. Throws EnvelopeError when
// batch_proof_problem(p) says the proof is malformed.
Bytes batch_statement(const BatchProof& p);

// Envelope field 0x19's value (section 10.4): batch_statement(p), then leaf_index (u32),
// the path's length (u8) and its nodes. Throws EnvelopeError like batch_statement.
Bytes encode_batch_proof(const BatchProof& p);

}  // namespace mqsec::security
