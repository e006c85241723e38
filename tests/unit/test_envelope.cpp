// Unit tests of the envelope codec and the to-be-signed (TBS) bytes: round trips, one encoding
// per value, the hex vectors printed in docs/signature-format.md (sections 8 and 10.8),
// rejection of malformed input (batch proofs of format version 3 included), and which fields
// the signature covers.
#include "src/security/envelope.hpp"

#include <gtest/gtest.h>
#include <mq.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "src/security/merkle.hpp"

namespace mqsec::security {
namespace {

Bytes from_hex(const std::string& hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// The document's hex with its spaces removed.
std::string doc_hex(const char* spaced) {
  std::string s;
  for (const char* p = spaced; *p; ++p) {
    if (*p != ' ') s += *p;
  }
  return s;
}

std::string to_hex(const Bytes& b) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s += kDigits[x >> 4];
    s += kDigits[x & 15];
  }
  return s;
}

// The small envelope of docs/signature-format.md, section "Example".
Envelope doc_example() {
  Envelope e;
  for (int i = 0; i < 16; ++i) e.msg_id[i] = static_cast<uint8_t>(0xA0 + i);
  e.msg_id[19] = 1;
  e.msg_class = MQMSG_CLASS_NORMAL;
  e.priority = 3;
  e.delivery = MQMSG_DELIVERY_RECOVERABLE;
  e.app_specific = 42;
  e.body_type = 0x1011;  // VT_VECTOR | VT_UI1
  e.body = {'h', 'i'};
  e.label = u"L";
  e.dest_queue = u"DIRECT=OS:h\\q";
  e.source_machine = u"h";
  e.sent_time = 1700000000;
  e.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
  e.hash_alg = CALG_SHA_256;
  e.sig_scheme = SigScheme::Ecdsa;
  e.sender_id_type = MQMSG_SENDERID_TYPE_SID;
  // S-1-22-1-1000 (Samba's Unix-user SID), binary form.
  e.sender_id = {0x01, 0x02, 0, 0, 0, 0, 0, 0x16, 0x01, 0, 0, 0, 0xE8, 0x03, 0, 0};
  e.sender_cert = {0x30, 0x03, 0x02, 0x01, 0x01};  // a stand-in, not a real certificate
  e.signature = {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01};
  return e;
}

// Copied from the document, one line per field, so a drift in either is caught.
// clang-format off
const char* const kDocEnvelopeHex =
    "4d514556 "
    "0001 "
    "01 00000014 a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00000001 "
    "02 00000002 0000 "
    "03 00000014 0000000000000000000000000000000000000000 "
    "04 00000001 03 "
    "05 00000001 01 "
    "06 00000001 00 "
    "07 00000001 00 "
    "08 00000004 0000002a "
    "09 00000004 00001011 "
    "0a 00000002 6869 "
    "0b 00000002 004c "
    "0c 00000000 "
    "0d 00000000 "
    "0e 0000001a 004400490052004500430054003d004f0053003a0068005c0071 "
    "0f 00000002 0068 "
    "10 00000008 000000006553f100 "
    "11 00000004 00000001 "
    "12 00000004 0000800c "
    "13 00000001 03 "
    "14 00000004 00000001 "
    "15 00000010 0102000000000016 01000000e8030000 "
    "16 00000005 3003020101 "
    "17 00000008 3006020101020101";

const char* const kDocTbsHex =
    "4d515345432d5349472d763100 "
    "00000014 0000000000000000000000000000000000000000 "
    "00000004 0000002a "
    "00000002 6869 "
    "00000002 004c "
    "00000000 "
    "00000000 "
    "00000002 0068 "
    "00000001 01 "
    "00000001 03 "
    "00000001 00 "
    "00000001 00 "
    "00000002 0000 "
    "00000004 00001011 "
    "00000000 "
    "0000001a 004400490052004500430054003d004f0053003a0068005c0071 "
    "00000014 a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00000001 "
    "00000008 000000006553f100 "
    "00000004 00000001 "
    "00000004 0000800c "
    "00000001 03 "
    "00000004 00000001 "
    "00000010 0102000000000016 01000000e8030000 "
    "00000020 1b65f68a522c858715f5dd951cd0402dc16691778814bf0759822b7a257421d0";
// clang-format on

// Every field away from its default, with non-ASCII and non-BMP text and a body longer than
// 64 KiB so that length prefixes use more than their low 16 bits.
Envelope full_example() {
  Envelope e = doc_example();
  e.msg_class = MQMSG_CLASS_NACK_BAD_SIGNATURE;
  for (int i = 0; i < 20; ++i) e.correlation_id[i] = static_cast<uint8_t>(i * 7 + 1);
  e.priority = 7;
  e.acknowledge = MQMSG_ACKNOWLEDGMENT_FULL_RECEIVE;
  e.journal = MQMSG_JOURNAL | MQMSG_DEADLETTER;
  e.app_specific = 0xFFFFFFFF;
  e.body.resize(70000);
  for (size_t i = 0; i < e.body.size(); ++i) e.body[i] = static_cast<uint8_t>(i * 31);
  e.label = u"Bestellung \u00fc \U0001F600";
  e.response_queue = u"DIRECT=OS:host\\private$\\replies";
  e.admin_queue = u"DIRECT=OS:host\\private$\\admin";
  e.sent_time = 0xFEDCBA9876543210ull;
  e.auth_level = MQMSG_AUTH_LEVEL_SIG30;
  e.hash_alg = CALG_SHA_512;
  e.sig_scheme = SigScheme::RsaPss;
  e.sender_cert.assign(900, 0x5A);
  e.signature.assign(256, 0xC3);
  return e;
}

struct FieldPos {
  uint8_t tag;
  size_t tag_offset;  // offset of the tag byte
  uint32_t length;
  size_t value_offset;
};

// Walks a known-good encoding (test helper only; it trusts its input).
std::vector<FieldPos> fields_of(const Bytes& b) {
  std::vector<FieldPos> out;
  size_t p = 6;
  while (p < b.size()) {
    FieldPos f{b[p], p, 0, p + 5};
    for (int i = 1; i <= 4; ++i) f.length = (f.length << 8) | b[p + i];
    out.push_back(f);
    p = f.value_offset + f.length;
  }
  return out;
}

FieldPos field_with_tag(const Bytes& b, uint8_t tag) {
  for (const auto& f : fields_of(b)) {
    if (f.tag == tag) return f;
  }
  ADD_FAILURE() << "no field with tag " << int(tag);
  return {};
}

void put_be32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

void expect_rejected(const Bytes& b, const std::string& what) {
  EXPECT_THROW(decode(b), EnvelopeError) << what;
}

// One valid change per field; every Envelope member appears exactly once.
std::vector<std::pair<std::string, std::function<void(Envelope&)>>> field_mutations() {
  return {
      {"msg_class", [](Envelope& e) { e.msg_class ^= 0x8000; }},
      {"msg_id (guid)", [](Envelope& e) { e.msg_id[0] ^= 1; }},
      {"msg_id (sequence)", [](Envelope& e) { e.msg_id[19] ^= 1; }},
      {"correlation_id", [](Envelope& e) { e.correlation_id[10] ^= 1; }},
      {"priority", [](Envelope& e) { e.priority = e.priority == 3 ? 4 : 3; }},
      {"delivery", [](Envelope& e) { e.delivery ^= 1; }},
      {"acknowledge", [](Envelope& e) { e.acknowledge ^= MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL; }},
      {"journal", [](Envelope& e) { e.journal ^= MQMSG_JOURNAL; }},
      {"app_specific", [](Envelope& e) { e.app_specific += 1; }},
      {"body_type", [](Envelope& e) { e.body_type += 1; }},
      {"body", [](Envelope& e) { e.body.push_back(0); }},
      {"label", [](Envelope& e) { e.label += u'x'; }},
      {"response_queue", [](Envelope& e) { e.response_queue += u'x'; }},
      {"admin_queue", [](Envelope& e) { e.admin_queue += u'x'; }},
      {"dest_queue", [](Envelope& e) { e.dest_queue += u'x'; }},
      {"source_machine", [](Envelope& e) { e.source_machine += u'x'; }},
      {"sent_time", [](Envelope& e) { e.sent_time += 1; }},
      {"auth_level",
       [](Envelope& e) {
         e.auth_level = e.auth_level == MQMSG_AUTH_LEVEL_SIG20 ? MQMSG_AUTH_LEVEL_SIG30
                                                               : MQMSG_AUTH_LEVEL_SIG20;
       }},
      {"hash_alg",
       [](Envelope& e) { e.hash_alg = e.hash_alg == CALG_SHA_384 ? CALG_SHA_256 : CALG_SHA_384; }},
      {"sig_scheme",
       [](Envelope& e) {
         e.sig_scheme =
             e.sig_scheme == SigScheme::RsaPkcs1 ? SigScheme::Ecdsa : SigScheme::RsaPkcs1;
       }},
      {"sender_id_type", [](Envelope& e) { e.sender_id_type ^= 1; }},
      {"sender_id", [](Envelope& e) { e.sender_id.push_back(0); }},
      {"sender_cert", [](Envelope& e) { e.sender_cert.back() ^= 1; }},
      {"signature", [](Envelope& e) { e.signature.back() ^= 1; }},
      {"time_to_reach_queue",
       [](Envelope& e) { e.time_to_reach_queue = e.time_to_reach_queue == 60 ? 61 : 60; }},
      {"time_to_be_received",
       [](Envelope& e) { e.time_to_be_received = e.time_to_be_received == 30 ? 31 : 30; }},
      {"batch_proof",
       [](Envelope& e) {
         if (e.batch.present()) {
           e.batch.root[0] ^= 1;
         } else {  // a well-formed proof (it need not verify: this is the codec)
           e.batch.hash_alg = CALG_SHA_256;
           e.batch.tree_size = 2;
           e.batch.leaf_index = 1;
           e.batch.root.assign(32, 0x11);
           e.batch.path = {Bytes(32, 0x22)};
         }
       }},
  };
}

TEST(Envelope, RoundTripsFullAndDefaultValues) {
  for (const Envelope& e : {full_example(), doc_example(), Envelope{}}) {
    Bytes b = encode(e);
    EXPECT_EQ(decode(b), e);
  }
}

TEST(Envelope, HasExactlyOneEncodingPerValue) {
  const Envelope e = full_example();
  const Bytes b = encode(e);
  EXPECT_EQ(encode(Envelope(e)), b);
  EXPECT_EQ(encode(decode(b)), b);
  // Every field change yields a different encoding, which decodes back to the changed value.
  for (const auto& [name, mutate] : field_mutations()) {
    Envelope m = e;
    mutate(m);
    Bytes mb = encode(m);
    EXPECT_NE(mb, b) << name;
    EXPECT_EQ(decode(mb), m) << name;
  }
}

TEST(Envelope, MatchesTheDocumentedHexVector) {
  const Envelope e = doc_example();
  EXPECT_EQ(to_hex(encode(e)), doc_hex(kDocEnvelopeHex));
  EXPECT_EQ(to_hex(to_be_signed(e)), doc_hex(kDocTbsHex));
  EXPECT_EQ(decode(from_hex(doc_hex(kDocEnvelopeHex))), e);
}

// Version 2: the example of the document with a time to reach queue of 60 seconds.
Envelope doc_example_v2() {
  Envelope e = doc_example();
  e.time_to_reach_queue = 60;
  return e;
}

// The document's version 2 example: version 1's bytes with version 2 and one more field.
std::string doc_v2_hex() {
  std::string v1 = doc_hex(kDocEnvelopeHex);
  return v1.substr(0, 8) + "0002" + v1.substr(12) + "18000000040000003c";
}

TEST(Envelope, WithoutATimeLimitIsVersion1ByteForByte) {
  const Envelope e = doc_example();
  ASSERT_EQ(e.time_to_reach_queue, kNoTimeLimit);
  const Bytes b = encode(e);
  EXPECT_EQ(b.size(), 257u);
  EXPECT_EQ(b[4], 0);
  EXPECT_EQ(b[5], 1);
  EXPECT_EQ(to_hex(b), doc_hex(kDocEnvelopeHex));
  EXPECT_EQ(decode(b).time_to_reach_queue, kNoTimeLimit);
}

TEST(Envelope, WithATimeLimitIsVersion2AndRoundTrips) {
  const Envelope e = doc_example_v2();
  const Bytes b = encode(e);
  EXPECT_EQ(to_hex(b), doc_v2_hex());
  EXPECT_EQ(b.size(), 257u + 9u);
  EXPECT_EQ(decode(b), e);
  EXPECT_EQ(encode(decode(b)), b);
  // The limit is not signed: TBS is version 1's, domain tag included.
  EXPECT_EQ(to_hex(to_be_signed(e)), doc_hex(kDocTbsHex));
  // The edges: 0 (must arrive within the second it was sent) and INFINITE - 1.
  for (uint32_t v : {0u, 1u, 0xFFFFFFFEu}) {
    Envelope m = full_example();
    m.time_to_reach_queue = v;
    EXPECT_EQ(decode(encode(m)), m) << v;
  }
}

// ---- format version 4: a time to be received (PROPID_M_TIME_TO_BE_RECEIVED) ---------------

Envelope doc_batch_signed(uint32_t index);  // below, with the other version 3 examples

TEST(Envelope, WithATimeToBeReceivedIsVersion4AndRoundTrips) {
  // Version 1's fields, 0x18 (any value), 0x19 empty, 0x1A: version 1's bytes plus 3 fields.
  Envelope e = doc_example();
  e.time_to_be_received = 30;
  const Bytes b = encode(e);
  EXPECT_EQ(b[5], 4);
  std::string v1 = doc_hex(kDocEnvelopeHex);
  EXPECT_EQ(to_hex(b), v1.substr(0, 8) + "0004" + v1.substr(12) + "1800000004ffffffff" +
                           "1900000000" + "1a000000040000001e");
  EXPECT_EQ(decode(b), e);
  EXPECT_EQ(encode(decode(b)), b);
  // Signed: TBS is version 1's items under the MQSEC-SIG-v2 tag, then the time (item 24).
  const std::string tbs1 = doc_hex(kDocTbsHex);
  EXPECT_EQ(to_hex(to_be_signed(e)),
            "4d515345432d5349472d763200" + tbs1.substr(26) + "000000040000001e");
  // With the other limits and a batch proof, at the edges.
  for (uint32_t v : {0u, 1u, 0xFFFFFFFEu}) {
    for (const Envelope& base : {full_example(), doc_batch_signed(1)}) {
      Envelope m = base;
      m.time_to_be_received = v;
      m.time_to_reach_queue = v == 1 ? kNoTimeLimit : 7;
      const Bytes mb = encode(m);
      EXPECT_EQ(mb[5], 4) << v;
      EXPECT_EQ(decode(mb), m) << v;
      EXPECT_EQ(encode(decode(mb)), mb) << v;
    }
  }
}

TEST(Envelope, Version4IsStrict) {
  Envelope e = doc_example();
  e.time_to_be_received = 30;
  const Bytes v4 = encode(e);
  // "No limit" has only the earlier versions' forms.
  Bytes m = v4;
  put_be32(m, m.size() - 4, 0xFFFFFFFF);
  expect_rejected(m, "version 4 with time_to_be_received INFINITE");
  // Version 4 without field 0x1A, or labelled version 3 (0x1A trailing, 0x19 empty).
  m = Bytes(v4.begin(), v4.end() - 9);
  expect_rejected(m, "version 4 without time_to_be_received");
  m = v4;
  m[5] = 3;
  expect_rejected(m, "version 3 with time_to_be_received");
  // Without field 0x19.
  m = Bytes(v4.begin(), v4.end() - 14);
  m.insert(m.end(), v4.end() - 9, v4.end());
  expect_rejected(m, "version 4 without batch_proof");
  // Truncated anywhere, and a trailing byte.
  for (size_t n = 0; n < v4.size(); ++n) {
    expect_rejected(Bytes(v4.begin(), v4.begin() + static_cast<ptrdiff_t>(n)), "truncated v4");
  }
  m = v4;
  m.push_back(0);
  expect_rejected(m, "version 4 with a trailing byte");
}

TEST(Envelope, Version2IsStrict) {
  const Bytes v1 = encode(doc_example());
  const Bytes v2 = encode(doc_example_v2());
  // A version 1 body labelled version 2 (the limit field missing) and the other way round
  // (a trailing field).
  Bytes m = v1;
  m[5] = 2;
  expect_rejected(m, "version 2 without time_to_reach_queue");
  m = v2;
  m[5] = 1;
  expect_rejected(m, "version 1 with time_to_reach_queue");
  // "No limit" has only the version 1 form.
  m = v2;
  put_be32(m, m.size() - 4, 0xFFFFFFFF);
  expect_rejected(m, "version 2 with time_to_reach_queue INFINITE");
  Envelope e = doc_example();
  e.time_to_reach_queue = kNoTimeLimit;
  EXPECT_EQ(encode(e), v1);
  // Every truncation, every other tag byte of the new field, wrong widths, a duplicate, a
  // trailing byte.
  for (size_t n = 0; n < v2.size(); ++n) {
    expect_rejected(Bytes(v2.begin(), v2.begin() + static_cast<ptrdiff_t>(n)),
                    "v2 truncated to " + std::to_string(n));
  }
  const FieldPos f = field_with_tag(v2, 0x18);
  ASSERT_EQ(f.length, 4u);
  ASSERT_EQ(f.value_offset + 4, v2.size());
  for (int v = 0; v < 256; ++v) {
    if (v == 0x18) continue;
    m = v2;
    m[f.tag_offset] = static_cast<uint8_t>(v);
    expect_rejected(m, "time_to_reach_queue tag -> " + std::to_string(v));
  }
  m = v2;
  put_be32(m, f.tag_offset + 1, 5);
  m.push_back(0);
  expect_rejected(m, "time_to_reach_queue 5 bytes wide");
  m = v2;
  put_be32(m, f.tag_offset + 1, 3);
  m.pop_back();
  expect_rejected(m, "time_to_reach_queue 3 bytes wide");
  m = v2;
  m.insert(m.end(), v2.begin() + static_cast<ptrdiff_t>(f.tag_offset), v2.end());
  expect_rejected(m, "time_to_reach_queue twice");
  m = v2;
  m.push_back(0);
  expect_rejected(m, "v2 trailing byte");
}

TEST(Envelope, RejectsEveryTruncation) {
  // Every field non-empty, with a body short enough to try every prefix length.
  Envelope full = full_example();
  full.body.resize(300);
  for (const Envelope& e : {doc_example(), full, Envelope{}}) {
    const Bytes b = encode(e);
    for (size_t n = 0; n < b.size(); ++n) {
      expect_rejected(Bytes(b.begin(), b.begin() + static_cast<ptrdiff_t>(n)),
                      "truncated to " + std::to_string(n));
    }
  }
}

TEST(Envelope, RejectsAnyOtherTagByte) {
  const Bytes b = encode(doc_example());
  const auto fields = fields_of(b);
  ASSERT_EQ(fields.size(), 23u);
  for (size_t i = 0; i < fields.size(); ++i) {
    ASSERT_EQ(fields[i].tag, i + 1) << "canonical order is 1..23";
    for (int v = 0; v < 256; ++v) {
      if (v == fields[i].tag) continue;
      Bytes m = b;
      m[fields[i].tag_offset] = static_cast<uint8_t>(v);
      expect_rejected(m, "tag " + std::to_string(i + 1) + " -> " + std::to_string(v));
    }
  }
}

TEST(Envelope, RejectsDuplicateMissingAndReorderedFields) {
  const Bytes b = encode(doc_example());
  const auto f = fields_of(b);
  auto span_of = [&](size_t i) {
    return Bytes(b.begin() + static_cast<ptrdiff_t>(f[i].tag_offset),
                 b.begin() + static_cast<ptrdiff_t>(f[i].value_offset + f[i].length));
  };
  auto prefix = [&](size_t i) {
    return Bytes(b.begin(), b.begin() + static_cast<ptrdiff_t>(f[i].tag_offset));
  };
  for (size_t i = 0; i < f.size(); ++i) {
    // Field i twice.
    Bytes dup = prefix(i);
    Bytes one = span_of(i);
    dup.insert(dup.end(), one.begin(), one.end());
    dup.insert(dup.end(), b.begin() + static_cast<ptrdiff_t>(f[i].tag_offset), b.end());
    expect_rejected(dup, "duplicate field " + std::to_string(i + 1));
    // Field i left out.
    Bytes missing = prefix(i);
    missing.insert(missing.end(),
                   b.begin() + static_cast<ptrdiff_t>(f[i].value_offset + f[i].length), b.end());
    expect_rejected(missing, "missing field " + std::to_string(i + 1));
    // Fields i and i+1 swapped.
    if (i + 1 < f.size()) {
      Bytes swapped = prefix(i);
      Bytes next = span_of(i + 1);
      swapped.insert(swapped.end(), next.begin(), next.end());
      swapped.insert(swapped.end(), one.begin(), one.end());
      swapped.insert(swapped.end(),
                     b.begin() + static_cast<ptrdiff_t>(f[i + 1].value_offset + f[i + 1].length),
                     b.end());
      ASSERT_EQ(swapped.size(), b.size());
      expect_rejected(swapped, "swapped fields " + std::to_string(i + 1));
    }
  }
}

TEST(Envelope, RejectsTrailingBytes) {
  Bytes b = encode(doc_example());
  b.push_back(0);
  expect_rejected(b, "one trailing zero byte");
  b = encode(doc_example());
  Bytes extra = {0x17, 0, 0, 0, 0};  // a second, empty signature field
  b.insert(b.end(), extra.begin(), extra.end());
  expect_rejected(b, "trailing field");
}

TEST(Envelope, RejectsBadMagicAndVersion) {
  const Bytes b = encode(doc_example());
  for (size_t i = 0; i < 4; ++i) {
    Bytes m = b;
    m[i] ^= 0x20;
    expect_rejected(m, "magic byte " + std::to_string(i));
  }
  for (uint16_t v : {0, 3, 0x0100, 0x0201, 0xFFFF}) {
    Bytes m = b;
    m[4] = static_cast<uint8_t>(v >> 8);
    m[5] = static_cast<uint8_t>(v);
    expect_rejected(m, "version " + std::to_string(v));
  }
  expect_rejected(Bytes{}, "empty input");
}

TEST(Envelope, RejectsHugeAndWrongLengths) {
  const Bytes b = encode(full_example());
  for (const auto& f : fields_of(b)) {
    const size_t remaining = b.size() - f.value_offset;
    for (uint64_t len : {uint64_t{0xFFFFFFFF}, uint64_t{0x80000000}, uint64_t{remaining + 1}}) {
      Bytes m = b;
      put_be32(m, f.tag_offset + 1, static_cast<uint32_t>(len));
      expect_rejected(m, "tag " + std::to_string(f.tag) + " length " + std::to_string(len));
    }
  }
  // Fixed-width fields with one byte more or less (input kept self-consistent otherwise).
  const Bytes d = encode(doc_example());
  for (uint8_t tag : {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 18, 19, 20}) {
    const FieldPos f = field_with_tag(d, tag);
    Bytes longer = d;
    put_be32(longer, f.tag_offset + 1, f.length + 1);
    longer.insert(longer.begin() + static_cast<ptrdiff_t>(f.value_offset), 0);
    expect_rejected(longer, "fixed field one byte long, tag " + std::to_string(tag));
    Bytes shorter = d;
    put_be32(shorter, f.tag_offset + 1, f.length - 1);
    shorter.erase(shorter.begin() + static_cast<ptrdiff_t>(f.value_offset));
    expect_rejected(shorter, "fixed field one byte short, tag " + std::to_string(tag));
  }
}

TEST(Envelope, RejectsOddUtf16Length) {
  const Bytes d = encode(doc_example());
  for (uint8_t tag : {0x0b, 0x0e, 0x0f}) {  // label, dest_queue, source_machine
    const FieldPos f = field_with_tag(d, tag);
    ASSERT_GE(f.length, 2u);
    Bytes m = d;
    put_be32(m, f.tag_offset + 1, f.length - 1);
    m.erase(m.begin() + static_cast<ptrdiff_t>(f.value_offset));
    expect_rejected(m, "odd UTF-16 length, tag " + std::to_string(tag));
  }
}

TEST(Envelope, RejectsOutOfRangeValuesWhenDecodingAndEncoding) {
  struct Case {
    uint8_t tag;
    uint64_t bad;
    std::function<void(Envelope&)> set_bad;
  };
  const std::vector<Case> cases = {
      {0x04, 8, [](Envelope& e) { e.priority = 8; }},
      {0x05, 2, [](Envelope& e) { e.delivery = 2; }},
      {0x06, 0x10, [](Envelope& e) { e.acknowledge = 0x10; }},
      {0x07, 4, [](Envelope& e) { e.journal = 4; }},
      {0x11, 3, [](Envelope& e) { e.auth_level = 3; }},
      {0x12, 0x8005, [](Envelope& e) { e.hash_alg = 0x8005; }},
      {0x13, 4, [](Envelope& e) { e.sig_scheme = static_cast<SigScheme>(4); }},
      {0x14, 2, [](Envelope& e) { e.sender_id_type = 2; }},
  };
  const Bytes d = encode(doc_example());
  for (const auto& c : cases) {
    const FieldPos f = field_with_tag(d, c.tag);
    Bytes m = d;
    for (uint32_t i = 0; i < f.length; ++i) {
      m[f.value_offset + i] = static_cast<uint8_t>(c.bad >> (8 * (f.length - 1 - i)));
    }
    expect_rejected(m, "out-of-range value, tag " + std::to_string(c.tag));
    Envelope e = doc_example();
    c.set_bad(e);
    EXPECT_THROW(encode(e), EnvelopeError) << "tag " << int(c.tag);
    EXPECT_THROW(to_be_signed(e), EnvelopeError) << "tag " << int(c.tag);
  }
  // The edges of each range are accepted.
  Envelope e = doc_example();
  e.priority = MQ_MAX_PRIORITY;
  e.acknowledge = 0x0F;
  e.journal = 0x03;
  e.auth_level = MQMSG_AUTH_LEVEL_SIG30;
  e.hash_alg = CALG_MD5;
  e.sig_scheme = SigScheme::Ecdsa;
  EXPECT_EQ(decode(encode(e)), e);
}

TEST(ToBeSigned, StartsWithDomainTagAndEndsWithCertificateDigest) {
  const Envelope e = full_example();
  const Bytes tbs = to_be_signed(e);
  const std::string domain("MQSEC-SIG-v1\0", 13);
  ASSERT_GT(tbs.size(), domain.size() + 36);
  EXPECT_EQ(std::string(tbs.begin(), tbs.begin() + 13), domain);
  Bytes digest(SHA256_DIGEST_LENGTH);
  SHA256(e.sender_cert.data(), e.sender_cert.size(), digest.data());
  EXPECT_EQ(Bytes(tbs.end() - 36, tbs.end() - 32), (Bytes{0, 0, 0, 32}));
  EXPECT_EQ(Bytes(tbs.end() - 32, tbs.end()), digest);
  // Neither the certificate nor the signature is in TBS, only the digest.
  EXPECT_EQ(std::search(tbs.begin(), tbs.end(), e.signature.begin(), e.signature.end()), tbs.end());
  EXPECT_EQ(std::search(tbs.begin(), tbs.end(), e.sender_cert.begin(), e.sender_cert.end()),
            tbs.end());
}

TEST(ToBeSigned, ChangesWithEverySignedFieldAndNotWithTheSignature) {
  for (const Envelope& base : {doc_example(), full_example()}) {
    const Bytes tbs = to_be_signed(base);
    for (const auto& [name, mutate] : field_mutations()) {
      Envelope m = base;
      mutate(m);
      if (name == "signature" || name == "time_to_reach_queue" || name == "batch_proof") {
        EXPECT_EQ(to_be_signed(m), tbs) << name;
      } else {
        EXPECT_NE(to_be_signed(m), tbs) << name;
      }
    }
    Envelope m = base;
    m.signature.clear();
    EXPECT_EQ(to_be_signed(m), tbs) << "signature removed";
  }
}

// A time to be received is signed (MQSEC-SIG-v2, item 24): raising it, lowering it or
// stripping it (re-encoding the envelope without it) changes TBS, so the signature no longer
// verifies (review 3, finding 8). A message without one keeps MQSEC-SIG-v1's TBS.
TEST(ToBeSigned, ATimeToBeReceivedIsSignedUnderItsOwnDomainTag) {
  Envelope e = doc_example();
  ASSERT_EQ(e.time_to_be_received, kNoTimeLimit);
  const Bytes v1 = to_be_signed(e);
  EXPECT_EQ(std::string(v1.begin(), v1.begin() + 13), std::string("MQSEC-SIG-v1\0", 13));
  e.time_to_be_received = 30;
  const Bytes v2 = to_be_signed(e);
  EXPECT_EQ(std::string(v2.begin(), v2.begin() + 13), std::string("MQSEC-SIG-v2\0", 13));
  // v1's items, then item 24: len 4, the seconds big-endian.
  EXPECT_EQ(Bytes(v2.begin() + 13, v2.end() - 8), Bytes(v1.begin() + 13, v1.end()));
  EXPECT_EQ(Bytes(v2.end() - 8, v2.end()), (Bytes{0, 0, 0, 4, 0, 0, 0, 30}));
  Envelope raised = e;
  raised.time_to_be_received = 0xFFFFFFFE;
  EXPECT_NE(to_be_signed(raised), v2);
  Envelope stripped = e;
  stripped.time_to_be_received = kNoTimeLimit;
  EXPECT_NE(to_be_signed(stripped), v2);
  // A time to reach queue is still not signed.
  Envelope ttrq = e;
  ttrq.time_to_reach_queue = 5;
  EXPECT_EQ(to_be_signed(ttrq), v2);
}

TEST(ToBeSigned, FieldBoundariesAreUnambiguous) {
  // The same characters split differently between neighbouring fields must give different TBS.
  Envelope a = doc_example(), b = doc_example();
  a.label = u"ab";
  a.response_queue = u"";
  b.label = u"a";
  b.response_queue = u"b";
  EXPECT_NE(to_be_signed(a), to_be_signed(b));
  a = b = doc_example();
  a.body = {'x'};
  a.label = u"";
  b.body = {};
  b.label = u"";
  b.sender_id.insert(b.sender_id.begin(), 'x');
  EXPECT_NE(to_be_signed(a), to_be_signed(b));
}

// write_to_be_signed (the signing path hashes TBS as it is written, without building it) gives
// exactly to_be_signed's bytes, whatever the sizes: values shorter and longer than its 512-byte
// gathering buffer, strings that straddle it, empty ones, TBS v1 and v2. A body of 512 bytes or
// more reaches the sink as one piece, the envelope's own bytes (not a copy).
TEST(ToBeSigned, StreamedBytesAreTheSameAsTheBuiltOnes) {
  struct Recorder final : ByteSink {
    Bytes all;
    std::vector<std::span<const uint8_t>> pieces;
    void update(std::span<const uint8_t> b) override {
      EXPECT_FALSE(b.empty());
      all.insert(all.end(), b.begin(), b.end());
      pieces.push_back(b);
    }
  };
  const Bytes cert_sha(32, 0xAB);
  std::vector<Envelope> cases = {doc_example(), full_example(), Envelope{}};
  for (size_t body : {0, 1, 200, 511, 512, 513, 1024, 5000}) {
    for (size_t label : {0, 3, 255, 256, 300, 2000}) {
      Envelope e = doc_example();
      e.body.assign(body, static_cast<uint8_t>(body));
      e.label.assign(label, static_cast<char16_t>(0x4100 + label % 7));
      e.dest_queue.assign(label / 2 + 1, u'q');
      if (label % 2 == 1) e.time_to_be_received = 42;
      cases.push_back(e);
    }
  }
  for (const Envelope& e : cases) {
    Recorder r;
    write_to_be_signed(e, cert_sha, r);
    EXPECT_EQ(r.all, to_be_signed(e, cert_sha)) << e.body.size() << " " << e.label.size();
    if (e.body.size() >= 512) {
      const bool passed_through = std::any_of(r.pieces.begin(), r.pieces.end(), [&](auto p) {
        return p.data() == e.body.data() && p.size() == e.body.size();
      });
      EXPECT_TRUE(passed_through) << e.body.size();
    }
  }
  // The same refusals as to_be_signed.
  Envelope bad = doc_example();
  bad.priority = 8;
  Recorder r;
  EXPECT_THROW(write_to_be_signed(bad, cert_sha, r), EnvelopeError);
  EXPECT_THROW(write_to_be_signed(doc_example(), Bytes(20), r), EnvelopeError);
  EXPECT_TRUE(r.all.empty());
}

// encode() counts the size first and allocates once; the result is unchanged (the hex vector
// test pins the bytes), and exactly as large as it needs to be.
TEST(Envelope, EncodingIsAllocatedAtItsExactSize) {
  for (const Envelope& e : {doc_example(), full_example()}) {
    const Bytes b = encode(e);
    EXPECT_EQ(b.capacity(), b.size());
    EXPECT_EQ(decode(b), e);
  }
}

}  // namespace
}  // namespace mqsec::security

// ---- format version 3: batch-signed messages (docs/signature-format.md, section 10) --------

namespace mqsec::security {
namespace {

// Section 10.8: the message of section 8 with sequence number seq (1, 2, 3) in a batch of three.
Envelope doc_batch_message(uint8_t seq) {
  Envelope e = doc_example();
  e.msg_id[19] = seq;
  return e;
}

// Copied from the document, section 10.8.
// clang-format off
const char* const kDocLeaves[] = {
    "47e7492ddc87b894214be8591139559b71d18ee2270026108af9676962978bed",
    "61800b0ee0c50b75694ddd1518cc709b589dbc51a97580f4afa3edd23d1b9891",
    "c7e720f20105d3c046cef4f533a9988a9309b9a6a0a13c63c8de2c830c45341d"};
const char* const kDocNode01 = "d97ee738fa0208a306736360b401e18101dde7e50e3d923db49c5ece58395f39";
const char* const kDocRoot = "20dc83c81ca4f58d8d192d23aed2b6b5768523d8077151f6fc1479bbf6bb3f68";
const char* const kDocStatementHex =
    "4d515345432d42415443482d763100 "
    "0000800c "
    "00000003 "
    "20dc83c81ca4f58d8d192d23aed2b6b5768523d8077151f6fc1479bbf6bb3f68";
const char* const kDocProof2Hex =
    "4d515345432d42415443482d7631000000800c00000003 "
    "20dc83c81ca4f58d8d192d23aed2b6b5768523d8077151f6fc1479bbf6bb3f68 "
    "00000002 "
    "01 "
    "d97ee738fa0208a306736360b401e18101dde7e50e3d923db49c5ece58395f39";
// clang-format on

BatchProof doc_proof(uint32_t index) {
  BatchProof p;
  p.hash_alg = CALG_SHA_256;
  p.tree_size = 3;
  p.root = from_hex(kDocRoot);
  p.leaf_index = index;
  if (index == 0) p.path = {from_hex(kDocLeaves[1]), from_hex(kDocLeaves[2])};
  if (index == 1) p.path = {from_hex(kDocLeaves[0]), from_hex(kDocLeaves[2])};
  if (index == 2) p.path = {from_hex(kDocNode01)};
  return p;
}

Envelope doc_batch_signed(uint32_t index) {
  Envelope e = doc_batch_message(static_cast<uint8_t>(index + 1));
  e.batch = doc_proof(index);
  return e;
}

// The document's version 3 example: version 1's hex with version 3, sequence number 3, and
// fields 24 and 25 appended.
std::string doc_v3_hex() {
  std::string v1 = doc_hex(kDocEnvelopeHex);
  std::string h = v1.substr(0, 8) + "0003" + v1.substr(12);
  // magic 8, version 4, tag 2, length 8, GUID 32 hex digits: then the sequence number
  const size_t seq_at = 8 + 4 + 2 + 8 + 32;
  EXPECT_EQ(h.substr(seq_at, 8), "00000001");
  h.replace(seq_at, 8, "00000003");
  return h + "18" + "00000004" + "ffffffff" + "19" + "0000005c" + doc_hex(kDocProof2Hex);
}

// Replaces the last field of an encoding (field 0x19 of a version 3 envelope) with `value`.
Bytes with_last_field(const Bytes& b, const Bytes& value) {
  const FieldPos last = fields_of(b).back();
  Bytes m(b.begin(), b.begin() + static_cast<ptrdiff_t>(last.tag_offset + 1));
  for (int i = 3; i >= 0; --i) m.push_back(static_cast<uint8_t>(value.size() >> (8 * i)));
  m.insert(m.end(), value.begin(), value.end());
  return m;
}

TEST(BatchEnvelope, MatchesTheDocumentedExample) {
  const EVP_MD* md = EVP_sha256();
  std::vector<Bytes> leaves;
  for (uint8_t seq = 1; seq <= 3; ++seq) {
    const Bytes tbs = to_be_signed(doc_batch_message(seq));
    leaves.push_back(merkle::leaf_hash(md, tbs));
    EXPECT_EQ(to_hex(leaves.back()), kDocLeaves[seq - 1]) << "leaf " << int(seq - 1);
  }
  // The first message is section 8's, so its leaf is H(00 || the TBS printed there).
  Bytes tbs0 = from_hex(doc_hex(kDocTbsHex));
  EXPECT_EQ(to_hex(merkle::leaf_hash(md, tbs0)), kDocLeaves[0]);
  EXPECT_EQ(to_hex(merkle::node_hash(md, leaves[0], leaves[1])), kDocNode01);
  merkle::Tree tree(md, leaves);
  EXPECT_EQ(to_hex(tree.root()), kDocRoot);
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(tree.path(i), doc_proof(i).path) << i;

  EXPECT_EQ(to_hex(batch_statement(doc_proof(2))), doc_hex(kDocStatementHex));
  EXPECT_EQ(batch_statement(doc_proof(2)).size(), 55u);
  EXPECT_EQ(to_hex(encode_batch_proof(doc_proof(2))), doc_hex(kDocProof2Hex));
  EXPECT_EQ(encode_batch_proof(doc_proof(2)).size(), 92u);
  EXPECT_EQ(encode_batch_proof(doc_proof(0)).size(), 124u);
  EXPECT_EQ(to_hex(encode_batch_proof(doc_proof(0))),
            doc_hex(kDocStatementHex) + "00000000" + "02" + kDocLeaves[1] + kDocLeaves[2]);

  const Envelope e = doc_batch_signed(2);
  const Bytes b = encode(e);
  EXPECT_EQ(to_hex(b), doc_v3_hex());
  EXPECT_EQ(b.size(), 363u);
  EXPECT_EQ(decode(b), e);
  // TBS does not depend on the proof: the leaf is the message's own TBS.
  Envelope plain = e;
  plain.batch = {};
  EXPECT_EQ(to_be_signed(e), to_be_signed(plain));
}

TEST(BatchEnvelope, IsVersion3WhateverTheTimeLimitAndRoundTrips) {
  for (uint32_t limit : {kNoTimeLimit, 0u, 60u, 0xFFFFFFFEu}) {
    for (uint32_t index = 0; index < 3; ++index) {
      Envelope e = doc_batch_signed(index);
      e.time_to_reach_queue = limit;
      const Bytes b = encode(e);
      EXPECT_EQ(b[4], 0);
      EXPECT_EQ(b[5], 3);
      EXPECT_EQ(fields_of(b).size(), 25u);
      EXPECT_EQ(decode(b), e);
      EXPECT_EQ(encode(decode(b)), b);
    }
  }
  // The largest batch: 65536 leaves, a path of 16 nodes, with SHA-512 (field 25: 1116 bytes).
  Envelope e = full_example();
  e.batch.hash_alg = CALG_SHA_512;
  e.batch.tree_size = kMaxBatchSize;
  e.batch.leaf_index = kMaxBatchSize - 1;
  e.batch.root.assign(64, 0xAB);
  e.batch.path.assign(kMaxBatchPath, Bytes(64, 0xCD));
  const Bytes b = encode(e);
  EXPECT_EQ(field_with_tag(b, 0x19).length, 1116u);
  EXPECT_EQ(decode(b), e);
}

TEST(BatchEnvelope, RejectsEveryTruncationAndOtherTagBytes) {
  const Bytes b = encode(doc_batch_signed(0));
  for (size_t n = 0; n < b.size(); ++n) {
    expect_rejected(Bytes(b.begin(), b.begin() + static_cast<ptrdiff_t>(n)),
                    "v3 truncated to " + std::to_string(n));
  }
  for (uint8_t tag : {0x18, 0x19}) {
    const FieldPos f = field_with_tag(b, tag);
    for (int v = 0; v < 256; ++v) {
      if (v == tag) continue;
      Bytes m = b;
      m[f.tag_offset] = static_cast<uint8_t>(v);
      expect_rejected(m, "tag " + std::to_string(tag) + " -> " + std::to_string(v));
    }
  }
  Bytes m = b;
  m.push_back(0);
  expect_rejected(m, "v3 trailing byte");
  // Field 25 twice; field 24 left out.
  const FieldPos f25 = field_with_tag(b, 0x19), f24 = field_with_tag(b, 0x18);
  m = b;
  m.insert(m.end(), b.begin() + static_cast<ptrdiff_t>(f25.tag_offset), b.end());
  expect_rejected(m, "batch_proof twice");
  m = b;
  m.erase(m.begin() + static_cast<ptrdiff_t>(f24.tag_offset),
          m.begin() + static_cast<ptrdiff_t>(f25.tag_offset));
  expect_rejected(m, "v3 without time_to_reach_queue");
}

TEST(BatchEnvelope, RejectsMalformedProofs) {
  const Bytes b = encode(doc_batch_signed(2));
  const Bytes good = encode_batch_proof(doc_proof(2));
  ASSERT_EQ(with_last_field(b, good), b);
  auto patched = [&](size_t at, std::initializer_list<uint8_t> bytes) {
    Bytes v = good;
    size_t i = at;
    for (uint8_t x : bytes) v[i++] = x;
    return v;
  };
  // Offsets in the proof: domain 0..14, hash_alg 15, tree_size 19, root 23, leaf_index 55,
  // path_len 59, node 60.
  std::vector<std::pair<std::string, Bytes>> cases;
  for (size_t i = 0; i < 15; ++i) {
    Bytes v = good;
    v[i] ^= 0x01;
    cases.emplace_back("domain byte " + std::to_string(i), v);
  }
  cases.emplace_back("hash MD5", patched(15, {0, 0, 0x80, 0x03}));
  cases.emplace_back("hash SHA-1", patched(15, {0, 0, 0x80, 0x04}));
  cases.emplace_back("hash 0", patched(15, {0, 0, 0, 0}));
  cases.emplace_back("hash SHA-384 with SHA-256 sizes", patched(15, {0, 0, 0x80, 0x0D}));
  cases.emplace_back("tree size 0", patched(19, {0, 0, 0, 0}));
  cases.emplace_back("tree size 1", patched(19, {0, 0, 0, 1}));
  cases.emplace_back("tree size 65537", patched(19, {0, 1, 0, 1}));
  cases.emplace_back("tree size 4 (leaf 2 needs 2 nodes)", patched(19, {0, 0, 0, 4}));
  cases.emplace_back("leaf index = tree size", patched(55, {0, 0, 0, 3}));
  cases.emplace_back("leaf index 0 (needs 2 nodes)", patched(55, {0, 0, 0, 0}));
  cases.emplace_back("path_len 0", patched(59, {0}));
  cases.emplace_back("path_len 2", patched(59, {2}));
  cases.emplace_back("path_len 17", patched(59, {17}));
  cases.emplace_back("path_len 255", patched(59, {255}));
  Bytes longer = good;
  longer.push_back(0);
  cases.emplace_back("one trailing byte", longer);
  Bytes shorter = good;
  shorter.pop_back();
  cases.emplace_back("one byte short", shorter);
  Bytes two_nodes = good;
  two_nodes[59] = 2;
  two_nodes.insert(two_nodes.end(), 32, 0x5A);
  cases.emplace_back("two nodes for a one-node path", two_nodes);
  cases.emplace_back("empty", Bytes{});
  for (const auto& [what, value] : cases) expect_rejected(with_last_field(b, value), what);

  // The same rules on the encoding side, and for batch_statement.
  std::vector<std::pair<std::string, std::function<void(BatchProof&)>>> bad = {
      {"hash SHA-1", [](BatchProof& p) { p.hash_alg = CALG_SHA1; }},
      {"hash SHA-384 (sizes)", [](BatchProof& p) { p.hash_alg = CALG_SHA_384; }},
      {"tree size 1", [](BatchProof& p) { p.tree_size = 1; }},
      {"tree size 65537", [](BatchProof& p) { p.tree_size = kMaxBatchSize + 1; }},
      {"index = size", [](BatchProof& p) { p.leaf_index = 3; }},
      {"short root", [](BatchProof& p) { p.root.pop_back(); }},
      {"path too long", [](BatchProof& p) { p.path.push_back(Bytes(32)); }},
      {"path empty", [](BatchProof& p) { p.path.clear(); }},
      {"short node", [](BatchProof& p) { p.path[0].pop_back(); }},
  };
  for (const auto& [what, mutate] : bad) {
    Envelope e = doc_batch_signed(2);
    mutate(e.batch);
    EXPECT_NE(batch_proof_problem(e.batch), nullptr) << what;
    EXPECT_THROW(encode(e), EnvelopeError) << what;
    EXPECT_THROW(batch_statement(e.batch), EnvelopeError) << what;
    EXPECT_NO_THROW(to_be_signed(e)) << what << ": TBS does not depend on the proof";
  }
  EXPECT_EQ(batch_proof_problem(doc_proof(2)), nullptr);
}

// A reader that predates batch signatures (versions 1 and 2) stops at the version field; and
// even a reader that took the version for 1 or 2 would find trailing fields, not a message.
TEST(BatchEnvelope, ReadersOfVersions1And2RejectBatchSignedMessages) {
  const Bytes b = encode(doc_batch_signed(2));
  ASSERT_EQ(b[4], 0);
  ASSERT_EQ(b[5], 3);
  for (uint8_t v : {1, 2}) {
    Bytes m = b;
    m[5] = v;
    expect_rejected(m, "version 3 body labelled " + std::to_string(v));
  }
  // A version 2 envelope with field 25 appended is not a version 2 envelope.
  Envelope e = doc_batch_signed(2);
  e.time_to_reach_queue = 60;
  Envelope plain = e;
  plain.batch = {};
  Bytes v2 = encode(plain);
  ASSERT_EQ(v2[5], 2);
  const FieldPos f25 = field_with_tag(encode(e), 0x19);
  const Bytes v3 = encode(e);
  v2.insert(v2.end(), v3.begin() + static_cast<ptrdiff_t>(f25.tag_offset), v3.end());
  expect_rejected(v2, "version 2 with a batch proof");
  // Version 5 and above are unknown to this reader, as version 3 was to the one before.
  Bytes m = b;
  m[5] = 5;
  try {
    decode(m);
    ADD_FAILURE() << "version 5 accepted";
  } catch (const EnvelopeError& err) {
    EXPECT_NE(std::string(err.what()).find("unsupported format version"), std::string::npos);
  }
}

// The claimed receive's id peek (Store::claim_next): the id decode() reads, from every format
// version, without decoding; nothing for anything that does not start like an envelope.
TEST(Envelope, PeekMsgIdReadsTheIdOfEveryVersion) {
  for (const Envelope& e : {doc_example(), full_example(), doc_batch_signed(1)}) {
    const Bytes b = encode(e);
    std::array<uint8_t, 20> id{};
    ASSERT_TRUE(peek_msg_id(b, id));
    EXPECT_EQ(id, e.msg_id);
    EXPECT_EQ(id, decode(b).msg_id);
  }
  const Bytes good = encode(doc_example());
  std::array<uint8_t, 20> id{};
  EXPECT_FALSE(peek_msg_id(std::span(good).first(30), id)) << "too short";
  for (size_t at : {size_t{0}, size_t{5}, size_t{6}, size_t{10}}) {
    Bytes bad = good;
    bad[at] ^= 0x40;  // magic, version, tag, length
    EXPECT_FALSE(peek_msg_id(bad, id)) << at;
  }
  EXPECT_FALSE(peek_msg_id({}, id));
}

}  // namespace
}  // namespace mqsec::security
