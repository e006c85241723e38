// Envelope codec and TBS builder; the byte layout is specified in docs/signature-format.md
// (keep the two in step: the unit test checks the document's hex vector).
#include "src/security/envelope.hpp"

#include <mq.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>

#include "src/security/merkle.hpp"

namespace mqsec::security {
namespace {

constexpr std::array<uint8_t, 4> kMagic = {'M', 'Q', 'E', 'V'};
constexpr uint16_t kVersion1 = 1;  // 23 fields: no time-to-reach-queue
constexpr uint16_t kVersion2 = 2;  // 24 fields: version 1's and time_to_reach_queue
constexpr uint16_t kVersion3 = 3;  // 25 fields: version 2's (any time limit) and batch_proof
// 26 fields: version 3's (batch_proof empty when not batch-signed) and time_to_be_received
constexpr uint16_t kVersion4 = 4;
// Domain separation for the signature: a signature over TBS v1 can never be mistaken for a
// signature over any other structure signed with the same key. The trailing NUL is included.
constexpr char kTbsDomain[] = "MQSEC-SIG-v1";
// TBS of a message with a time to be received: v1's items and that time as item 24
// (docs/signature-format.md, section 3.2), so that raising or stripping it breaks the signature.
constexpr char kTbsDomainV2[] = "MQSEC-SIG-v2";
// Domain separation for what a batch signature signs (the statement, section 10.3): never a
// TBS, never anything else signed with the key. The trailing NUL is included.
constexpr char kBatchDomain[] = "MQSEC-BATCH-v1";

// Field tags, in their one canonical order. Every field of a version is always present (an empty
// value is a zero length), so each value has exactly one encoding. Version 1 has the fields up to
// kSignature; version 2 adds kTimeToReachQueue, present exactly when there is a limit; version 3
// (batch-signed messages only) has both kTimeToReachQueue (any value) and kBatchProof.
enum Tag : uint8_t {
  kMsgId = 0x01,
  kMsgClass,
  kCorrelationId,
  kPriority,
  kDelivery,
  kAcknowledge,
  kJournal,
  kAppSpecific,
  kBodyType,
  kBody,
  kLabel,
  kResponseQueue,
  kAdminQueue,
  kDestQueue,
  kSourceMachine,
  kSentTime,
  kAuthLevel,
  kHashAlg,
  kSigScheme,
  kSenderIdType,
  kSenderId,
  kSenderCert,
  kSignature,
  kTimeToReachQueue,  // versions 2, 3 and 4
  kBatchProof,        // versions 3 and 4 (in 4: empty when not batch-signed)
  kTimeToBeReceived,  // version 4 only
  kLastTag = kTimeToBeReceived,
};

const char* tag_name(uint8_t tag) {
  // clang-format off
  static constexpr const char* kNames[] = {
      "?", "msg_id", "msg_class", "correlation_id", "priority", "delivery", "acknowledge",
      "journal", "app_specific", "body_type", "body", "label", "response_queue", "admin_queue",
      "dest_queue", "source_machine", "sent_time", "auth_level", "hash_alg", "sig_scheme",
      "sender_id_type", "sender_id", "sender_cert", "signature", "time_to_reach_queue",
      "batch_proof", "time_to_be_received"};
  // clang-format on
  static_assert(std::size(kNames) == kLastTag + 1);
  return tag <= kLastTag ? kNames[tag] : "?";
}

[[noreturn]] void envelope_fail(const std::string& why) { throw EnvelopeError("envelope: " + why); }

// ---- value ranges (shared by encode, decode and to_be_signed) ----------------------------

bool priority_ok(uint8_t v) { return v <= MQ_MAX_PRIORITY; }
bool delivery_ok(uint8_t v) {
  return v == MQMSG_DELIVERY_EXPRESS || v == MQMSG_DELIVERY_RECOVERABLE;
}
bool acknowledge_ok(uint8_t v) {
  constexpr unsigned kAll = MQMSG_ACKNOWLEDGMENT_POS_ARRIVAL | MQMSG_ACKNOWLEDGMENT_POS_RECEIVE |
                            MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL | MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE;
  return (v & ~kAll) == 0;
}
bool journal_ok(uint8_t v) { return (v & ~(MQMSG_DEADLETTER | MQMSG_JOURNAL)) == 0; }
bool auth_level_ok(uint32_t v) {
  return v == MQMSG_AUTH_LEVEL_NONE || v == MQMSG_AUTH_LEVEL_ALWAYS ||
         v == MQMSG_AUTH_LEVEL_SIG10 || v == MQMSG_AUTH_LEVEL_SIG20 || v == MQMSG_AUTH_LEVEL_SIG30;
}
bool hash_alg_ok(uint32_t v) {
  return v == 0 || v == CALG_MD5 || v == CALG_SHA1 || v == CALG_SHA_256 || v == CALG_SHA_384 ||
         v == CALG_SHA_512;
}
bool sig_scheme_ok(uint8_t v) { return v <= static_cast<uint8_t>(SigScheme::Ecdsa); }
bool sender_id_type_ok(uint32_t v) {
  return v == MQMSG_SENDERID_TYPE_NONE || v == MQMSG_SENDERID_TYPE_SID;
}
// In a version 2 envelope: "no limit" is written as version 1, so it has no version 2 form.
bool time_limit_ok(uint32_t v) { return v != kNoTimeLimit; }

// The digest size of a batch statement's hash algorithm; 0 for anything but SHA-2 (MD5 and
// SHA-1 have no batch form: batch signing is new, there is nothing to be compatible with).
size_t batch_digest_size(uint32_t calg) {
  switch (calg) {
    case CALG_SHA_256:
      return 32;
    case CALG_SHA_384:
      return 48;
    case CALG_SHA_512:
      return 64;
    default:
      return 0;
  }
}

void validate(const Envelope& e) {
  auto check = [](bool ok, uint8_t tag) {
    if (!ok) envelope_fail(std::string("value out of range: ") + tag_name(tag));
  };
  check(priority_ok(e.priority), kPriority);
  check(delivery_ok(e.delivery), kDelivery);
  check(acknowledge_ok(e.acknowledge), kAcknowledge);
  check(journal_ok(e.journal), kJournal);
  check(auth_level_ok(e.auth_level), kAuthLevel);
  check(hash_alg_ok(e.hash_alg), kHashAlg);
  check(sig_scheme_ok(static_cast<uint8_t>(e.sig_scheme)), kSigScheme);
  check(sender_id_type_ok(e.sender_id_type), kSenderIdType);
}

// ---- writing -------------------------------------------------------------------------------

// Three sinks with one interface (raw, u8, be, len, utf16be), so that the size count, the
// encoding and the streamed TBS digest all come from the same field-writing code:
// Counter (bytes only counted), Writer (into a Bytes, reserved up front) and Streamer (small
// values gathered in a buffer, large ones such as the body passed through without a copy).
class Counter {
 public:
  void raw(const void*, size_t n) { n_ += n; }
  void u8(uint8_t) { ++n_; }
  void be(uint64_t, int width) { n_ += static_cast<size_t>(width); }
  void len(size_t n, uint8_t tag) {
    if (n > std::numeric_limits<uint32_t>::max())
      envelope_fail(std::string("too long: ") + tag_name(tag));
    n_ += 4;
  }
  void utf16be(const std::u16string& s) { n_ += 2 * s.size(); }
  size_t size() const { return n_; }

 private:
  size_t n_ = 0;
};

// The big-endian integers and lengths both writers below put out, through their raw().
template <class Out>
class BigEndianOut {
 public:
  void be(uint64_t v, int width) {
    uint8_t b[8];
    for (int i = 0; i < width; ++i) b[i] = static_cast<uint8_t>(v >> (8 * (width - 1 - i)));
    static_cast<Out*>(this)->raw(b, static_cast<size_t>(width));
  }
  void len(size_t n, uint8_t tag) {
    if (n > std::numeric_limits<uint32_t>::max())
      envelope_fail(std::string("too long: ") + tag_name(tag));
    be(n, 4);
  }
};

class Writer : public BigEndianOut<Writer> {
 public:
  explicit Writer(size_t reserve = 0) { out_.reserve(reserve); }
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  void u8(uint8_t v) { out_.push_back(v); }
  void utf16be(const std::u16string& s) {
    const size_t at = out_.size();
    out_.resize(at + 2 * s.size());
    uint8_t* o = out_.data() + at;
    for (char16_t c : s) {
      *o++ = static_cast<uint8_t>(c >> 8);
      *o++ = static_cast<uint8_t>(c);
    }
  }
  Bytes take() { return std::move(out_); }

 private:
  Bytes out_;
};

class Streamer : public BigEndianOut<Streamer> {
 public:
  explicit Streamer(ByteSink& sink) : sink_(sink) {}
  void raw(const void* p, size_t n) {
    if (n == 0) return;  // an empty field's data() may be null: memcpy must not see it
    const auto* b = static_cast<const uint8_t*>(p);
    if (n > sizeof(buf_) - used_) {
      flush();
      if (n >= sizeof(buf_)) {
        sink_.update({b, n});  // the body (and any long value): straight from the envelope
        return;
      }
    }
    std::memcpy(buf_ + used_, b, n);
    used_ += n;
  }
  void u8(uint8_t v) { raw(&v, 1); }
  void utf16be(const std::u16string& s) {
    for (char16_t c : s) {
      if (sizeof(buf_) - used_ < 2) flush();
      buf_[used_++] = static_cast<uint8_t>(c >> 8);
      buf_[used_++] = static_cast<uint8_t>(c);
    }
  }
  void flush() {
    if (used_ != 0) sink_.update({buf_, used_});
    used_ = 0;
  }

 private:
  ByteSink& sink_;
  uint8_t buf_[512];
  size_t used_ = 0;
};

// Field values are written by one set of functions shared by the envelope (which prefixes a
// tag) and TBS (which does not), so both always agree on value encodings.
template <class W>
struct ValueWriter {
  W& w;
  bool tagged;
  void head(uint8_t tag, size_t n) {
    if (tagged) w.u8(tag);
    w.len(n, tag);
  }
  void uint(uint8_t tag, uint64_t v, int width) {
    head(tag, static_cast<size_t>(width));
    w.be(v, width);
  }
  void bytes(uint8_t tag, std::span<const uint8_t> b) {
    head(tag, b.size());
    w.raw(b.data(), b.size());
  }
  void str(uint8_t tag, const std::u16string& s) {
    if (s.size() > std::numeric_limits<uint32_t>::max() / 2) {
      envelope_fail(std::string("too long: ") + tag_name(tag));
    }
    head(tag, s.size() * 2);
    w.utf16be(s);
  }
};

// ---- reading -------------------------------------------------------------------------------

class EnvelopeReader {
 public:
  explicit EnvelopeReader(std::span<const uint8_t> in) : in_(in) {}
  size_t left() const { return in_.size() - pos_; }
  std::span<const uint8_t> take(size_t n, const char* what) {
    if (n > left()) envelope_fail(std::string("truncated: ") + what);
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  static uint64_t be(std::span<const uint8_t> b) {
    uint64_t v = 0;
    for (uint8_t x : b) v = (v << 8) | x;
    return v;
  }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

// Reads the next field header, insisting on `want` as its tag, and returns the value bytes.
std::span<const uint8_t> field(EnvelopeReader& r, uint8_t want) {
  uint8_t tag = r.take(1, "field tag")[0];
  if (tag != want) {
    if (tag == 0 || tag > kLastTag) envelope_fail("unknown field tag " + std::to_string(tag));
    if (tag == want - 1) envelope_fail(std::string("duplicate field: ") + tag_name(tag));
    if (tag < want) envelope_fail(std::string("field out of order: ") + tag_name(tag));
    envelope_fail(std::string("missing field: ") + tag_name(want));
  }
  auto n = static_cast<size_t>(EnvelopeReader::be(r.take(4, "field length")));
  if (n > r.left()) envelope_fail(std::string("length beyond end of input: ") + tag_name(tag));
  return r.take(n, tag_name(tag));
}

uint64_t fixed(EnvelopeReader& r, uint8_t tag, size_t width) {
  auto v = field(r, tag);
  if (v.size() != width)
    envelope_fail(std::string("wrong length for fixed-width field: ") + tag_name(tag));
  return EnvelopeReader::be(v);
}

template <typename T, typename Ok>
T checked(EnvelopeReader& r, uint8_t tag, Ok ok) {
  uint64_t v = fixed(r, tag, sizeof(T));
  if (!ok(static_cast<T>(v))) envelope_fail(std::string("value out of range: ") + tag_name(tag));
  return static_cast<T>(v);
}

std::array<uint8_t, 20> id20(EnvelopeReader& r, uint8_t tag) {
  auto v = field(r, tag);
  if (v.size() != 20)
    envelope_fail(std::string("wrong length for fixed-width field: ") + tag_name(tag));
  std::array<uint8_t, 20> a{};
  std::memcpy(a.data(), v.data(), 20);
  return a;
}

Bytes blob(EnvelopeReader& r, uint8_t tag) {
  auto v = field(r, tag);
  return Bytes(v.begin(), v.end());
}

std::u16string str(EnvelopeReader& r, uint8_t tag) {
  auto v = field(r, tag);
  if (v.size() % 2 != 0) envelope_fail(std::string("odd UTF-16 length: ") + tag_name(tag));
  std::u16string s(v.size() / 2, u'\0');
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = static_cast<char16_t>((v[2 * i] << 8) | v[2 * i + 1]);
  }
  return s;
}

bool any(uint64_t) { return true; }

// Field 0x19: statement (domain, hash_alg, tree_size, root), leaf_index, path_len, path nodes.
// Reads nothing beyond the field and allocates at most its size.
// In version 4 the field may be empty (`optional`): not batch-signed.
BatchProof batch_proof(EnvelopeReader& outer, bool optional = false) {
  EnvelopeReader r(field(outer, kBatchProof));
  BatchProof p;
  if (optional && r.left() == 0) return p;
  auto domain = r.take(sizeof(kBatchDomain), "batch_proof (statement domain tag)");
  if (!std::equal(domain.begin(), domain.end(), kBatchDomain)) {
    envelope_fail("batch_proof: unknown statement domain tag");
  }
  p.hash_alg = static_cast<uint32_t>(EnvelopeReader::be(r.take(4, "batch_proof (hash_alg)")));
  p.tree_size = static_cast<uint32_t>(EnvelopeReader::be(r.take(4, "batch_proof (tree_size)")));
  const size_t width = batch_digest_size(p.hash_alg);
  if (width == 0) envelope_fail("batch_proof: hash algorithm is not SHA-256, SHA-384 or SHA-512");
  auto root = r.take(width, "batch_proof (root)");
  p.root.assign(root.begin(), root.end());
  p.leaf_index = static_cast<uint32_t>(EnvelopeReader::be(r.take(4, "batch_proof (leaf_index)")));
  const size_t n = r.take(1, "batch_proof (path length)")[0];
  if (n > kMaxBatchPath) envelope_fail("batch_proof: audit path longer than 16 nodes");
  for (size_t i = 0; i < n; ++i) {
    auto node = r.take(width, "batch_proof (path node)");
    p.path.emplace_back(node.begin(), node.end());
  }
  if (r.left() != 0) envelope_fail("batch_proof: trailing bytes");
  if (const char* why = batch_proof_problem(p)) envelope_fail(std::string("batch_proof: ") + why);
  return p;
}

}  // namespace

namespace {

// The envelope's fields into `w` (validated by the caller); `proof`: encode_batch_proof(e.batch)
// when the message is batch-signed.
template <class W>
void write_envelope(W& w, const Envelope& e, std::span<const uint8_t> proof) {
  w.raw(kMagic.data(), kMagic.size());
  const bool batch = e.batch.present();
  const bool limited = e.time_to_reach_queue != kNoTimeLimit;
  const bool ttbr = e.time_to_be_received != kNoTimeLimit;
  w.be(ttbr ? kVersion4 : batch ? kVersion3 : limited ? kVersion2 : kVersion1, 2);
  ValueWriter<W> f{w, true};
  f.bytes(kMsgId, e.msg_id);
  f.uint(kMsgClass, e.msg_class, 2);
  f.bytes(kCorrelationId, e.correlation_id);
  f.uint(kPriority, e.priority, 1);
  f.uint(kDelivery, e.delivery, 1);
  f.uint(kAcknowledge, e.acknowledge, 1);
  f.uint(kJournal, e.journal, 1);
  f.uint(kAppSpecific, e.app_specific, 4);
  f.uint(kBodyType, e.body_type, 4);
  f.bytes(kBody, e.body);
  f.str(kLabel, e.label);
  f.str(kResponseQueue, e.response_queue);
  f.str(kAdminQueue, e.admin_queue);
  f.str(kDestQueue, e.dest_queue);
  f.str(kSourceMachine, e.source_machine);
  f.uint(kSentTime, e.sent_time, 8);
  f.uint(kAuthLevel, e.auth_level, 4);
  f.uint(kHashAlg, e.hash_alg, 4);
  f.uint(kSigScheme, static_cast<uint8_t>(e.sig_scheme), 1);
  f.uint(kSenderIdType, e.sender_id_type, 4);
  f.bytes(kSenderId, e.sender_id);
  f.bytes(kSenderCert, e.sender_cert);
  f.bytes(kSignature, e.signature);
  if (limited || batch || ttbr) f.uint(kTimeToReachQueue, e.time_to_reach_queue, 4);
  if (batch) {
    f.bytes(kBatchProof, proof);
  } else if (ttbr) {
    f.bytes(kBatchProof, std::span<const uint8_t>{});
  }
  if (ttbr) f.uint(kTimeToBeReceived, e.time_to_be_received, 4);
}

// The TBS items into `w` (validated by the caller).
template <class W>
void write_tbs(W& w, const Envelope& e, std::span<const uint8_t> cert_digest) {
  const bool ttbr = e.time_to_be_received != kNoTimeLimit;
  // sizeof includes the NUL, which is part of the tag.
  if (ttbr) {
    w.raw(kTbsDomainV2, sizeof(kTbsDomainV2));
  } else {
    w.raw(kTbsDomain, sizeof(kTbsDomain));
  }
  ValueWriter<W> f{w, false};  // TBS items: 32-bit length + value, no tag
  // MSMQ 2.0's signed fields, in MSMQ's order.
  f.bytes(kCorrelationId, e.correlation_id);
  f.uint(kAppSpecific, e.app_specific, 4);
  f.bytes(kBody, e.body);
  f.str(kLabel, e.label);
  f.str(kResponseQueue, e.response_queue);
  f.str(kAdminQueue, e.admin_queue);
  f.str(kSourceMachine, e.source_machine);
  f.uint(kDelivery, e.delivery, 1);
  f.uint(kPriority, e.priority, 1);
  f.uint(kJournal, e.journal, 1);
  f.uint(kAcknowledge, e.acknowledge, 1);
  f.uint(kMsgClass, e.msg_class, 2);
  f.uint(kBodyType, e.body_type, 4);
  w.be(0, 4);  // connector type: always empty in mqsec (no connector servers)
  f.str(kDestQueue, e.dest_queue);
  // mqsec's additions: identity, replay context and the signing parameters themselves, so that
  // no field a verifier acts on can be changed without breaking the signature.
  f.bytes(kMsgId, e.msg_id);
  f.uint(kSentTime, e.sent_time, 8);
  f.uint(kAuthLevel, e.auth_level, 4);
  f.uint(kHashAlg, e.hash_alg, 4);
  f.uint(kSigScheme, static_cast<uint8_t>(e.sig_scheme), 1);
  f.uint(kSenderIdType, e.sender_id_type, 4);
  f.bytes(kSenderId, e.sender_id);
  f.bytes(kSenderCert, cert_digest);
  // A time to be received is signed (item 24 of MQSEC-SIG-v2); time_to_reach_queue is
  // deliberately not (docs/signature-format.md, section 3.1).
  if (ttbr) f.uint(kTimeToBeReceived, e.time_to_be_received, 4);
}

void check_cert_digest(std::span<const uint8_t> cert_digest) {
  if (cert_digest.size() != SHA256_DIGEST_LENGTH)
    envelope_fail("certificate digest is not SHA-256 sized");
}

}  // namespace

Bytes encode(const Envelope& e) {
  validate(e);
  const Bytes proof = e.batch.present() ? encode_batch_proof(e.batch) : Bytes{};
  // Counted first, so the one allocation is the right size (growing the buffer field by field
  // copied the body several times).
  Counter n;
  write_envelope(n, e, proof);
  Writer w(n.size());
  write_envelope(w, e, proof);
  return w.take();
}

bool peek_msg_id(std::span<const uint8_t> bytes, std::array<uint8_t, 20>& id) noexcept {
  // magic (4), version (2), then the first field: tag (1), length (4), value.
  constexpr size_t kIdAt = 4 + 2 + 1 + 4;
  if (bytes.size() < kIdAt + id.size()) return false;
  if (!std::equal(kMagic.begin(), kMagic.end(), bytes.begin())) return false;
  const uint16_t version = static_cast<uint16_t>(bytes[4] << 8 | bytes[5]);
  if (version != kVersion1 && version != kVersion2 && version != kVersion3 &&
      version != kVersion4) {
    return false;
  }
  if (bytes[6] != kMsgId || bytes[7] != 0 || bytes[8] != 0 || bytes[9] != 0 ||
      bytes[10] != id.size()) {
    return false;
  }
  std::copy_n(bytes.begin() + kIdAt, id.size(), id.begin());
  return true;
}

Envelope decode(std::span<const uint8_t> bytes) {
  EnvelopeReader r(bytes);
  auto magic = r.take(kMagic.size(), "magic");
  if (!std::equal(magic.begin(), magic.end(), kMagic.begin())) envelope_fail("bad magic");
  const uint64_t version = EnvelopeReader::be(r.take(2, "version"));
  if (version != kVersion1 && version != kVersion2 && version != kVersion3 &&
      version != kVersion4) {
    envelope_fail("unsupported format version");
  }

  Envelope e;
  e.msg_id = id20(r, kMsgId);
  e.msg_class = checked<uint16_t>(r, kMsgClass, any);
  e.correlation_id = id20(r, kCorrelationId);
  e.priority = checked<uint8_t>(r, kPriority, priority_ok);
  e.delivery = checked<uint8_t>(r, kDelivery, delivery_ok);
  e.acknowledge = checked<uint8_t>(r, kAcknowledge, acknowledge_ok);
  e.journal = checked<uint8_t>(r, kJournal, journal_ok);
  e.app_specific = checked<uint32_t>(r, kAppSpecific, any);
  e.body_type = checked<uint32_t>(r, kBodyType, any);
  e.body = blob(r, kBody);
  e.label = str(r, kLabel);
  e.response_queue = str(r, kResponseQueue);
  e.admin_queue = str(r, kAdminQueue);
  e.dest_queue = str(r, kDestQueue);
  e.source_machine = str(r, kSourceMachine);
  e.sent_time = checked<uint64_t>(r, kSentTime, any);
  e.auth_level = checked<uint32_t>(r, kAuthLevel, auth_level_ok);
  e.hash_alg = checked<uint32_t>(r, kHashAlg, hash_alg_ok);
  e.sig_scheme = static_cast<SigScheme>(checked<uint8_t>(r, kSigScheme, sig_scheme_ok));
  e.sender_id_type = checked<uint32_t>(r, kSenderIdType, sender_id_type_ok);
  e.sender_id = blob(r, kSenderId);
  e.sender_cert = blob(r, kSenderCert);
  e.signature = blob(r, kSignature);
  if (version == kVersion2) {
    e.time_to_reach_queue = checked<uint32_t>(r, kTimeToReachQueue, time_limit_ok);
  } else if (version == kVersion3) {
    e.time_to_reach_queue = checked<uint32_t>(r, kTimeToReachQueue, any);
    e.batch = batch_proof(r);
  } else if (version == kVersion4) {
    e.time_to_reach_queue = checked<uint32_t>(r, kTimeToReachQueue, any);
    e.batch = batch_proof(r, /*optional=*/true);
    e.time_to_be_received = checked<uint32_t>(r, kTimeToBeReceived, time_limit_ok);
  }
  if (r.left() != 0) envelope_fail("trailing bytes after last field");
  return e;
}

Bytes to_be_signed(const Envelope& e) {
  Bytes cert_digest(SHA256_DIGEST_LENGTH);
  SHA256(e.sender_cert.data(), e.sender_cert.size(), cert_digest.data());
  return to_be_signed(e, cert_digest);
}

Bytes to_be_signed(const Envelope& e, std::span<const uint8_t> cert_digest) {
  validate(e);
  check_cert_digest(cert_digest);
  Counter n;
  write_tbs(n, e, cert_digest);
  Writer w(n.size());
  write_tbs(w, e, cert_digest);
  return w.take();
}

void write_to_be_signed(const Envelope& e, std::span<const uint8_t> cert_digest, ByteSink& out) {
  validate(e);
  check_cert_digest(cert_digest);
  Streamer w(out);
  write_tbs(w, e, cert_digest);
  w.flush();
}

const char* batch_proof_problem(const BatchProof& p) {
  const size_t width = batch_digest_size(p.hash_alg);
  if (width == 0) return "hash algorithm is not SHA-256, SHA-384 or SHA-512";
  if (p.tree_size < 2 || p.tree_size > kMaxBatchSize) return "tree size outside 2 .. 65536";
  if (p.leaf_index >= p.tree_size) return "leaf index not below the tree size";
  if (p.root.size() != width) return "root is not the size of the hash algorithm's digest";
  if (p.path.size() != merkle::path_length(p.leaf_index, p.tree_size)) {
    return "audit path length does not match the leaf index and tree size";
  }
  for (const Bytes& node : p.path) {
    if (node.size() != width) return "audit path node is not the size of the digest";
  }
  return nullptr;
}

Bytes batch_statement(const BatchProof& p) {
  if (const char* why = batch_proof_problem(p)) envelope_fail(std::string("batch_proof: ") + why);
  Writer w;
  w.raw(kBatchDomain, sizeof(kBatchDomain));  // with its NUL
  w.be(p.hash_alg, 4);
  w.be(p.tree_size, 4);
  w.raw(p.root.data(), p.root.size());
  return w.take();
}

Bytes encode_batch_proof(const BatchProof& p) {
  Writer w;
  Bytes statement = batch_statement(p);  // checks the whole proof
  w.raw(statement.data(), statement.size());
  w.be(p.leaf_index, 4);
  w.u8(static_cast<uint8_t>(p.path.size()));  // at most kMaxBatchPath
  for (const Bytes& node : p.path) w.raw(node.data(), node.size());
  return w.take();
}

}  // namespace mqsec::security
