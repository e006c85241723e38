// Batch signatures (issue 12; docs/signature-format.md, section 10): the Merkle tree against
// RFC 6962's own recursive definition, sign_batch with software keys (every tree shape verifies
// message by message; every single-bit change of a batch-signed message, of its TBS, statement,
// index or path is rejected; a proof moved to another message is rejected; bounds), the same
// trust policy as a single signature, and on the mock token: a batch of one is byte for byte
// sign_envelope's output, a PIN-always key logs in once per batch, a removed token signs nothing.
#include <gtest/gtest.h>
#include <mq.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "mqsec/error.hpp"
#include "pkcs11/module.hpp"
#include "pkcs11/token.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/security/identity.hpp"
#include "src/security/merkle.hpp"
#include "src/security/message_auth.hpp"
#include "src/security/openssl.hpp"
#include "tests/mock/mock_pkcs11.hpp"
#include "tests/support/sign_envelope.hpp"

using namespace mqsec;
using namespace mqsec::security;

namespace {

const std::time_t kNow = std::time(nullptr);

// ---- RFC 6962, section 2.1, as written there (recursive), to check the tree against ---------

size_t largest_power_of_two_below(size_t n) {
  size_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

Bytes ref_mth(const EVP_MD* md, const std::vector<Bytes>& d, size_t lo, size_t hi) {
  if (hi - lo == 1) return merkle::leaf_hash(md, d[lo]);
  const size_t k = largest_power_of_two_below(hi - lo);
  return merkle::node_hash(md, ref_mth(md, d, lo, lo + k), ref_mth(md, d, lo + k, hi));
}

// PATH(m, D[lo:hi]): PATH(m, D[0:k]) : MTH(D[k:n]) or PATH(m - k, D[k:n]) : MTH(D[0:k]).
std::vector<Bytes> ref_path(const EVP_MD* md, const std::vector<Bytes>& d, size_t m, size_t lo,
                            size_t hi) {
  if (hi - lo == 1) return {};
  const size_t k = largest_power_of_two_below(hi - lo);
  std::vector<Bytes> p;
  if (m < k) {
    p = ref_path(md, d, m, lo, lo + k);
    p.push_back(ref_mth(md, d, lo + k, hi));
  } else {
    p = ref_path(md, d, m - k, lo + k, hi);
    p.push_back(ref_mth(md, d, lo, lo + k));
  }
  return p;
}

std::vector<Bytes> test_data(size_t n, size_t width = 40) {
  std::vector<Bytes> d(n);
  for (size_t i = 0; i < n; ++i) {
    d[i].resize(width);
    for (size_t j = 0; j < width; ++j) d[i][j] = static_cast<uint8_t>(i * 131 + j * 7 + 1);
  }
  return d;
}

std::vector<Bytes> leaves_of(const EVP_MD* md, const std::vector<Bytes>& d) {
  std::vector<Bytes> out;
  for (const Bytes& x : d) out.push_back(merkle::leaf_hash(md, x));
  return out;
}

// ---- software keys and messages -----------------------------------------------------------

struct Signer {
  PkeyPtr key;
  Bytes der;
};

Signer make_signer(const char* type, long from_days = -1, long to_days = 30) {
  Signer s;
  s.key.reset(std::string(type) == "RSA" ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256"));
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 12);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("batch"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), to_days * 86400);
  X509_set_pubkey(cert.get(), s.key.get());
  X509_sign(cert.get(), s.key.get(), EVP_sha256());
  s.der = to_der(cert.get());
  return s;
}

// Signs a digest as the token would: PKCS#1 v1.5 (DigestInfo), PSS (salt = digest length) or
// ECDSA (DER). Counts its calls.
DigestSigner software_signer(EVP_PKEY* key, SigScheme scheme, int* calls = nullptr) {
  return [key, scheme, calls](pkcs11::Hash h, std::span<const uint8_t> digest) {
    if (calls) ++*calls;
    EVP_PKEY_CTX* c = EVP_PKEY_CTX_new(key, nullptr);
    bool ok = c && EVP_PKEY_sign_init(c) == 1;
    if (ok && scheme != SigScheme::Ecdsa) {
      ok = EVP_PKEY_CTX_set_rsa_padding(
               c, scheme == SigScheme::RsaPss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_CTX_set_signature_md(c, evp_md(h)) == 1;
      if (ok && scheme == SigScheme::RsaPss) {
        ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(c, RSA_PSS_SALTLEN_DIGEST) == 1;
      }
    }
    size_t len = 0;
    ok = ok && EVP_PKEY_sign(c, nullptr, &len, digest.data(), digest.size()) == 1;
    Bytes sig(len);
    ok = ok && EVP_PKEY_sign(c, sig.data(), &len, digest.data(), digest.size()) == 1;
    EVP_PKEY_CTX_free(c);
    if (!ok) throw std::runtime_error("software signature failed");
    sig.resize(len);
    return sig;
  };
}

// Message i of a batch: the fields vary from message to message (body, label, SID or none,
// time limit), as they may within one batch.
Envelope message(const Signer& s, SigScheme scheme, uint32_t calg, size_t i) {
  Envelope e;
  for (size_t j = 0; j < 16; ++j) e.msg_id[j] = static_cast<uint8_t>(0x40 + j);
  for (size_t j = 0; j < 4; ++j) e.msg_id[16 + j] = static_cast<uint8_t>(i >> (24 - 8 * j));
  const std::string body = "message " + std::to_string(i);
  e.body.assign(body.begin(), body.end());
  e.label = u"batch";
  e.priority = static_cast<uint8_t>(i % 8);
  e.delivery = MQMSG_DELIVERY_RECOVERABLE;
  e.dest_queue = u"DIRECT=OS:h\\private$\\q";
  e.source_machine = u"h";
  e.sent_time = static_cast<uint64_t>(kNow);
  e.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
  e.hash_alg = calg;
  e.sig_scheme = scheme;
  if (i % 4 == 2) {
    e.sender_id_type = MQMSG_SENDERID_TYPE_NONE;
  } else {
    e.sender_id_type = MQMSG_SENDERID_TYPE_SID;
    e.sender_id = Sid::unix_user(1000).bytes();
  }
  if (i % 3 == 1) e.time_to_reach_queue = 60;
  e.sender_cert = s.der;
  return e;
}

std::vector<Envelope> messages(const Signer& s, SigScheme scheme, uint32_t calg, size_t n) {
  std::vector<Envelope> out;
  for (size_t i = 0; i < n; ++i) out.push_back(message(s, scheme, calg, i));
  return out;
}

std::vector<Envelope*> pointers(std::vector<Envelope>& v) {
  std::vector<Envelope*> p;
  for (Envelope& e : v) p.push_back(&e);
  return p;
}

// Signs `batch` in software with one signature; returns the number of signatures made.
int sign_all(std::vector<Envelope>& batch, const Signer& s, SigScheme scheme) {
  int calls = 0;
  std::vector<Envelope*> p = pointers(batch);
  sign_batch(p, sha256(s.der), software_signer(s.key.get(), scheme, &calls), false);
  return calls;
}

// The signature checked with OpenSSL alone over `data`, as `openssl dgst -verify` would.
bool signature_verifies(const Envelope& e, const Bytes& data) {
  X509Ptr cert = parse_der_strict(e.sender_cert);
  EVP_PKEY* pub = X509_get0_pubkey(cert.get());
  MdCtxPtr md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok =
      EVP_DigestVerifyInit(md.get(), &pctx, evp_md(hash_for(e.hash_alg, true)), nullptr, pub) == 1;
  if (ok && e.sig_scheme == SigScheme::RsaPss) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
  }
  return ok && EVP_DigestVerify(md.get(), e.signature.data(), e.signature.size(), data.data(),
                                data.size()) == 1;
}

Verdict verify(Verifier& v, const Envelope& e) { return v.verify(e, std::nullopt, kNow, false); }

}  // namespace

// ---- the tree ------------------------------------------------------------------------------

TEST(Merkle, RootsAndPathsAreRfc6962sForEveryShape) {
  const EVP_MD* md = EVP_sha256();
  std::vector<size_t> sizes;
  for (size_t n = 1; n <= 70; ++n) sizes.push_back(n);
  for (size_t n : {127, 128, 129, 255, 256, 257}) sizes.push_back(n);
  for (size_t n : sizes) {
    const std::vector<Bytes> d = test_data(n);
    const merkle::Tree tree(md, leaves_of(md, d));
    const Bytes root = ref_mth(md, d, 0, n);
    ASSERT_EQ(tree.root(), root) << "size " << n;
    for (size_t m = 0; m < n; ++m) {
      const std::vector<Bytes> path = tree.path(m);
      ASSERT_EQ(path, ref_path(md, d, m, 0, n)) << "leaf " << m << " of " << n;
      ASSERT_EQ(path.size(), merkle::path_length(m, n)) << "leaf " << m << " of " << n;
      ASSERT_EQ(merkle::root_from_path(md, merkle::leaf_hash(md, d[m]), m, n, path), root)
          << "leaf " << m << " of " << n;
    }
  }
  // One leaf: the root is the leaf, the path empty.
  const std::vector<Bytes> one = test_data(1);
  EXPECT_EQ(merkle::Tree(md, leaves_of(md, one)).root(), merkle::leaf_hash(md, one[0]));
}

TEST(Merkle, PathLengthsAreBoundedBy16AndExact) {
  size_t longest = 0;
  for (uint64_t n = 1; n <= merkle::kMaxTreeSize; ++n) {
    longest = std::max({longest, merkle::path_length(0, n), merkle::path_length(n - 1, n),
                        merkle::path_length(n / 2, n)});
  }
  EXPECT_EQ(longest, merkle::kMaxPathLength);
  EXPECT_EQ(merkle::path_length(0, 65536), 16u);
  EXPECT_EQ(merkle::path_length(65535, 65536), 16u);
  EXPECT_EQ(merkle::path_length(65536, 65537), 1u);  // beyond the format's bound, for the record
  EXPECT_EQ(merkle::path_length(0, 1), 0u);
  EXPECT_EQ(merkle::path_length(3, 3), 0u);  // index outside the tree

  const EVP_MD* md = EVP_sha256();
  const std::vector<Bytes> d = test_data(5);
  const merkle::Tree tree(md, leaves_of(md, d));
  const Bytes leaf = merkle::leaf_hash(md, d[2]);
  std::vector<Bytes> path = tree.path(2);
  ASSERT_TRUE(merkle::root_from_path(md, leaf, 2, 5, path));
  EXPECT_FALSE(merkle::root_from_path(md, leaf, 5, 5, path)) << "index = size";
  EXPECT_FALSE(merkle::root_from_path(md, leaf, 2, 0, path)) << "size 0";
  EXPECT_FALSE(merkle::root_from_path(md, leaf, 2, merkle::kMaxTreeSize + 1, path));
  std::vector<Bytes> longer = path;
  longer.push_back(path.back());
  EXPECT_FALSE(merkle::root_from_path(md, leaf, 2, 5, longer)) << "one node too many";
  std::vector<Bytes> shorter(path.begin(), path.end() - 1);
  EXPECT_FALSE(merkle::root_from_path(md, leaf, 2, 5, shorter)) << "one node short";
  std::vector<Bytes> narrow = path;
  narrow[0].pop_back();
  EXPECT_FALSE(merkle::root_from_path(md, leaf, 2, 5, narrow)) << "a short node";
  EXPECT_FALSE(merkle::root_from_path(md, Bytes(31), 2, 5, path)) << "a short leaf";
  EXPECT_THROW(merkle::Tree(md, {}), std::invalid_argument);
  EXPECT_THROW(tree.path(5), std::invalid_argument);
}

// Every single-bit change of a leaf's data (a message's TBS), of the index or of any path node
// leads elsewhere than the root, or is refused. The tree size is another matter: the same path
// from leaf 0 fits every size from 9 to 16 and reaches the same root, so only the signature
// over the statement binds it (checked in BatchSign.EveryBitOfStatementIndexPath...).
TEST(Merkle, EverySingleBitOfDataIndexAndPathMatters) {
  const EVP_MD* md = EVP_sha256();
  const size_t n = 9;  // 2^3 + 1
  const std::vector<Bytes> d = test_data(n, 120);
  const merkle::Tree tree(md, leaves_of(md, d));
  for (size_t m : {0u, 2u, 7u, 8u}) {
    const std::vector<Bytes> path = tree.path(m);
    const Bytes leaf = merkle::leaf_hash(md, d[m]);
    for (size_t bit = 0; bit < d[m].size() * 8; ++bit) {
      Bytes x = d[m];
      x[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
      EXPECT_NE(merkle::root_from_path(md, merkle::leaf_hash(md, x), m, n, path), tree.root())
          << "data bit " << bit << " of leaf " << m;
    }
    for (int bit = 0; bit < 32; ++bit) {
      const uint64_t other = m ^ (uint64_t{1} << bit);
      EXPECT_NE(merkle::root_from_path(md, leaf, other, n, path), tree.root())
          << "index bit " << bit << " of leaf " << m;
    }
    for (size_t node = 0; node < path.size(); ++node) {
      for (size_t bit = 0; bit < path[node].size() * 8; ++bit) {
        std::vector<Bytes> p = path;
        p[node][bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
        EXPECT_NE(merkle::root_from_path(md, leaf, m, n, p), tree.root())
            << "bit " << bit << " of path node " << node << " of leaf " << m;
      }
    }
  }
  EXPECT_EQ(merkle::root_from_path(md, merkle::leaf_hash(md, d[0]), 0, 13, tree.path(0)),
            tree.root())
      << "the size is not bound by the path: it must be (and is) in the signed statement";
}

// The second-preimage trick: without prefixes, an inner node's two children, concatenated,
// pass for a leaf one level up. With 0x00 / 0x01 they hash to something else.
TEST(Merkle, PrefixesKeepAnInnerNodeFromPassingForALeaf) {
  const EVP_MD* md = EVP_sha256();
  const std::vector<Bytes> d = test_data(4);
  const std::vector<Bytes> l = leaves_of(md, d);
  const merkle::Tree tree(md, l);
  const Bytes n01 = merkle::node_hash(md, l[0], l[1]), n23 = merkle::node_hash(md, l[2], l[3]);
  Bytes children = l[0];
  children.insert(children.end(), l[1].begin(), l[1].end());
  EXPECT_NE(merkle::leaf_hash(md, children), n01);
  EXPECT_NE(merkle::root_from_path(md, merkle::leaf_hash(md, children), 0, 2, {n23}), tree.root());
  // The path length is fixed by index and size: a one-node path for leaf 0 of 4 is refused.
  EXPECT_FALSE(merkle::root_from_path(md, merkle::leaf_hash(md, children), 0, 4, {n23}));
  // What the prefixes prevent, shown on a tree without them.
  auto h = [&](const Bytes& x) {
    Bytes out(32);
    unsigned len = 0;
    EVP_Digest(x.data(), x.size(), out.data(), &len, md, nullptr);
    return out;
  };
  auto cat = [](Bytes a, const Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const Bytes u0 = h(d[0]), u1 = h(d[1]), u2 = h(d[2]), u3 = h(d[3]);
  const Bytes u_root = h(cat(h(cat(u0, u1)), h(cat(u2, u3))));
  const Bytes fake_message = cat(u0, u1);  // not one of the four messages
  EXPECT_EQ(h(cat(h(fake_message), h(cat(u2, u3)))), u_root) << "the trick, without prefixes";
  // Only a signed tree size stops a known inner node offered as a leaf hash: hence tree_size is
  // in the statement, and a leaf is always rebuilt from the message.
  EXPECT_EQ(merkle::root_from_path(md, n01, 0, 2, {n23}), tree.root());
}

// ---- signing and verifying batches -----------------------------------------------------------

TEST(BatchSign, EveryTreeShapeVerifiesMessageByMessage) {
  Verifier v;
  const Signer ec = make_signer("EC"), rsa = make_signer("RSA");
  struct Case {
    const Signer* signer;
    SigScheme scheme;
    uint32_t calg;
    std::vector<size_t> sizes;
  };
  const Case cases[] = {
      {&ec, SigScheme::Ecdsa, CALG_SHA_256, {2, 3, 4, 5, 7, 8, 9, 16, 17, 32, 33}},
      {&rsa, SigScheme::RsaPkcs1, CALG_SHA_384, {3, 4}},
      {&rsa, SigScheme::RsaPss, CALG_SHA_512, {5}},
  };
  for (const Case& c : cases) {
    for (size_t n : c.sizes) {
      SCOPED_TRACE("size " + std::to_string(n) + ", scheme " +
                   std::to_string(static_cast<int>(c.scheme)));
      std::vector<Envelope> batch = messages(*c.signer, c.scheme, c.calg, n);
      const std::vector<Envelope> before = batch;
      ASSERT_EQ(sign_all(batch, *c.signer, c.scheme), 1) << "one signature per batch";
      const Bytes statement = batch_statement(batch[0].batch);
      for (size_t i = 0; i < n; ++i) {
        const Envelope& e = batch[i];
        EXPECT_EQ(e.batch.tree_size, n);
        EXPECT_EQ(e.batch.leaf_index, i);
        EXPECT_EQ(e.batch.hash_alg, c.calg);
        EXPECT_EQ(e.batch.path.size(), merkle::path_length(i, n));
        EXPECT_EQ(e.signature, batch[0].signature);
        EXPECT_EQ(batch_statement(e.batch), statement);
        // Only the signature and the proof were filled in.
        Envelope unsigned_copy = e;
        unsigned_copy.signature.clear();
        unsigned_copy.batch = {};
        EXPECT_EQ(unsigned_copy, before[i]);
        // The statement's signature, checked by OpenSSL alone; the message by the Verifier,
        // in memory and as a receiver gets it (decoded from its bytes).
        EXPECT_TRUE(signature_verifies(e, statement));
        const Bytes bytes = encode(e);
        EXPECT_EQ(bytes[5], 3) << "format version 3";
        const Envelope received = decode(bytes);
        EXPECT_EQ(received, e);
        Verdict d = verify(v, received);
        EXPECT_TRUE(d.ok) << "message " << i << ": " << d.reason;
        EXPECT_TRUE(d.signed_message);
        EXPECT_EQ(d.authenticated_ex, MQMSG_AUTHENTICATED_SIG20);
        EXPECT_EQ(d.subject, "CN=batch");
      }
    }
  }
}

TEST(BatchSign, BatchOfOneIsAnOrdinarySignature) {
  Verifier v;
  const Signer ec = make_signer("EC"), rsa = make_signer("RSA");
  for (size_t i : {0u, 1u}) {  // message 1 has a time limit: version 2
    std::vector<Envelope> one = {message(ec, SigScheme::Ecdsa, CALG_SHA_256, i)};
    ASSERT_EQ(sign_all(one, ec, SigScheme::Ecdsa), 1);
    const Envelope& e = one[0];
    EXPECT_FALSE(e.batch.present());
    EXPECT_EQ(encode(e)[5], i == 1 ? 2 : 1);
    EXPECT_TRUE(signature_verifies(e, to_be_signed(e))) << "a signature over TBS itself";
    EXPECT_TRUE(verify(v, decode(encode(e))).ok);
  }
  // RSA PKCS#1 v1.5 is deterministic: byte for byte what the single-message reference signer
  // (tests/support/sign_envelope.hpp) makes.
  Envelope a = message(rsa, SigScheme::RsaPkcs1, CALG_SHA_256, 0);
  Envelope b = a;
  std::vector<Envelope*> p = {&a};
  sign_batch(p, sha256(rsa.der), software_signer(rsa.key.get(), SigScheme::RsaPkcs1), false);
  mqsec::testing::sign_envelope(b, rsa.key.get());
  EXPECT_EQ(encode(a), encode(b));
}

// Every single-bit change anywhere in the bytes of a batch-signed message (its signed fields,
// the statement, the index, the path, the signature, the certificate) is rejected: by the
// decoder or by the verifier. The only exception is the one unsigned field, time_to_reach_queue
// (docs/signature-format.md, section 3.1), whose changes are exactly the ones that still verify.
TEST(BatchSign, EverySingleBitChangeOfAnEncodedMessageIsRejected) {
  Verifier v;
  const Signer ec = make_signer("EC");
  std::vector<Envelope> batch = messages(ec, SigScheme::Ecdsa, CALG_SHA_256, 9);
  sign_all(batch, ec, SigScheme::Ecdsa);
  for (size_t index : {2u, 8u}) {  // 4 path nodes; 1 path node
    const Bytes good = encode(batch[index]);
    ASSERT_TRUE(verify(v, decode(good)).ok);
    // Where field 0x18's value is (fields_of walks the encoding).
    size_t pos = 6, limit_from = 0;
    while (pos < good.size()) {
      size_t len = (size_t{good[pos + 1]} << 24) | (size_t{good[pos + 2]} << 16) |
                   (size_t{good[pos + 3]} << 8) | good[pos + 4];
      if (good[pos] == 0x18) limit_from = pos + 5;
      pos += 5 + len;
    }
    ASSERT_NE(limit_from, 0u);
    size_t decoded_and_rejected = 0, undecodable = 0;
    for (size_t bit = 0; bit < good.size() * 8; ++bit) {
      Bytes m = good;
      m[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
      const bool unsigned_field = bit / 8 >= limit_from && bit / 8 < limit_from + 4;
      Envelope e;
      try {
        e = decode(m);
      } catch (const EnvelopeError&) {
        ++undecodable;
        EXPECT_FALSE(unsigned_field) << "bit " << bit;
        continue;
      }
      const Verdict d = verify(v, e);
      if (unsigned_field) {
        EXPECT_TRUE(d.ok) << "time_to_reach_queue bit " << bit << ": " << d.reason;
      } else {
        ++decoded_and_rejected;
        EXPECT_FALSE(d.ok) << "bit " << bit << " of message " << index << " verified";
        // hash_alg 0x800c -> 0x8004 (SHA-1) decodes and is refused as a weak hash first.
        EXPECT_TRUE(d.kind == "signature" || d.kind == "certificate" || d.kind == "weak-hash")
            << d.kind;
      }
    }
    EXPECT_GT(decoded_and_rejected, good.size() * 4) << "most changes decode, then fail";
    EXPECT_GT(undecodable, 0u);
  }
}

// A time to be received is signed (TBS v2), alone and in a batch: raised, lowered or stripped
// (the envelope re-encoded without it), the message no longer verifies (review 3, finding 8).
TEST(BatchSign, ATimeToBeReceivedIsSignedAloneAndInABatch) {
  Verifier v;
  const Signer ec = make_signer("EC");
  for (size_t n : {1u, 3u}) {
    std::vector<Envelope> batch = messages(ec, SigScheme::Ecdsa, CALG_SHA_256, n);
    for (Envelope& e : batch) e.time_to_be_received = 30;
    sign_all(batch, ec, SigScheme::Ecdsa);
    const Envelope& good = batch[n - 1];
    EXPECT_EQ(good.batch.present(), n > 1);
    ASSERT_TRUE(verify(v, decode(encode(good))).ok) << n;
    for (uint32_t other : {0u, 29u, 31u, 0xFFFFFFFEu, kNoTimeLimit}) {
      Envelope e = good;
      e.time_to_be_received = other;
      const Verdict d = verify(v, decode(encode(e)));
      EXPECT_FALSE(d.ok) << n << " messages, time " << other;
      EXPECT_EQ(d.kind, "signature") << n << " messages, time " << other;
    }
  }
}

// The same, field by field on the decoded message: each bit of the statement (hash algorithm,
// tree size, root), of the leaf index and of every path node; and every bit of the message's
// TBS bytes as the verifier rebuilds them (through the fields they come from: body and id).
TEST(BatchSign, EveryBitOfStatementIndexPathAndSignedFieldsIsRejected) {
  Verifier v;
  const Signer ec = make_signer("EC");
  std::vector<Envelope> batch = messages(ec, SigScheme::Ecdsa, CALG_SHA_256, 17);  // 2^4 + 1
  sign_all(batch, ec, SigScheme::Ecdsa);
  for (size_t index : {0u, 5u, 16u}) {
    const Envelope good = batch[index];
    ASSERT_TRUE(verify(v, good).ok);
    auto rejected = [&](const Envelope& e, const std::string& what) {
      const Verdict d = verify(v, e);
      EXPECT_FALSE(d.ok) << what << " of message " << index;
      EXPECT_EQ(d.kind, "signature") << what;
    };
    for (int bit = 0; bit < 32; ++bit) {
      Envelope e = good;
      e.batch.hash_alg ^= 1u << bit;
      rejected(e, "hash_alg bit " + std::to_string(bit));
      e = good;
      e.batch.tree_size ^= 1u << bit;
      rejected(e, "tree_size bit " + std::to_string(bit));
      e = good;
      e.batch.leaf_index ^= 1u << bit;
      rejected(e, "leaf_index bit " + std::to_string(bit));
    }
    for (size_t bit = 0; bit < good.batch.root.size() * 8; ++bit) {
      Envelope e = good;
      e.batch.root[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
      rejected(e, "root bit " + std::to_string(bit));
    }
    for (size_t node = 0; node < good.batch.path.size(); ++node) {
      for (size_t bit = 0; bit < 256; ++bit) {
        Envelope e = good;
        e.batch.path[node][bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
        rejected(e, "path node " + std::to_string(node) + " bit " + std::to_string(bit));
      }
    }
    for (size_t bit = 0; bit < good.body.size() * 8; ++bit) {
      Envelope e = good;
      e.body[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
      rejected(e, "body bit " + std::to_string(bit));
    }
    for (size_t bit = 0; bit < 160; ++bit) {
      Envelope e = good;
      e.msg_id[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
      rejected(e, "msg_id bit " + std::to_string(bit));
    }
    Envelope e = good;
    e.batch.path.push_back(Bytes(32));
    rejected(e, "one path node more");
    e = good;
    e.batch.path.pop_back();
    rejected(e, "one path node less");
    e = good;
    e.signature.back() ^= 1;
    rejected(e, "signature");
  }
  // A tree size whose path shape is the same for leaf 0 (17 -> 19): the path still reaches the
  // root, and it is the signature over the statement that fails.
  Envelope e = batch[0];
  e.batch.tree_size = 19;
  ASSERT_EQ(merkle::path_length(0, 19), e.batch.path.size());
  const Verdict d = verify(v, e);
  EXPECT_FALSE(d.ok);
  EXPECT_NE(d.reason.find("signature over the batch statement does not verify"), std::string::npos)
      << d.reason;
}

TEST(BatchSign, ProofMovedToAnotherMessageIsRejected) {
  Verifier v;
  const Signer ec = make_signer("EC");
  const size_t n = 8;
  std::vector<Envelope> batch = messages(ec, SigScheme::Ecdsa, CALG_SHA_256, n);
  sign_all(batch, ec, SigScheme::Ecdsa);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(verify(v, batch[i]).ok);
    for (size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      Envelope moved = batch[j];
      moved.batch = batch[i].batch;  // the whole proof of message i on message j
      Verdict d = verify(v, moved);
      EXPECT_FALSE(d.ok) << "proof of " << i << " on message " << j;
      EXPECT_EQ(d.kind, "signature");
      moved = batch[j];
      moved.batch.leaf_index = batch[i].batch.leaf_index;  // only the index
      EXPECT_FALSE(verify(v, moved).ok) << "index of " << i << " on message " << j;
      moved = batch[j];
      moved.batch.path = batch[i].batch.path;  // only the path
      EXPECT_FALSE(verify(v, moved).ok) << "path of " << i << " on message " << j;
      // The bytes of field 25 copied into another message's envelope.
      Bytes bytes = encode(batch[j]);
      const Bytes from = encode_batch_proof(batch[i].batch);
      const Bytes own = encode_batch_proof(batch[j].batch);
      ASSERT_EQ(Bytes(bytes.end() - static_cast<ptrdiff_t>(own.size()), bytes.end()), own);
      if (from.size() == own.size()) {
        std::copy(from.begin(), from.end(), bytes.end() - static_cast<ptrdiff_t>(own.size()));
        EXPECT_FALSE(verify(v, decode(bytes)).ok) << "field 25 of " << i << " in " << j;
      }
    }
  }
  // A proof and signature from another batch by the same key, for the same position.
  std::vector<Envelope> other = messages(ec, SigScheme::Ecdsa, CALG_SHA_256, n);
  for (Envelope& e : other) e.body.push_back('!');
  sign_all(other, ec, SigScheme::Ecdsa);
  for (size_t i = 0; i < n; ++i) {
    Envelope moved = batch[i];
    moved.batch = other[i].batch;
    moved.signature = other[i].signature;
    EXPECT_FALSE(verify(v, moved).ok) << "the other batch's proof, message " << i;
  }
}

// A reader that skipped the proof and took the signature for one over TBS (section 7) sees a
// signature that does not verify; a statement signature is never a TBS signature.
TEST(BatchSign, WithoutItsProofABatchSignedMessageDoesNotVerify) {
  Verifier v;
  const Signer ec = make_signer("EC");
  std::vector<Envelope> batch = messages(ec, SigScheme::Ecdsa, CALG_SHA_256, 2);
  sign_all(batch, ec, SigScheme::Ecdsa);
  Envelope stripped = batch[0];
  stripped.batch = {};
  Verdict d = verify(v, stripped);
  EXPECT_FALSE(d.ok);
  EXPECT_NE(d.reason.find("does not verify"), std::string::npos) << d.reason;
  EXPECT_FALSE(signature_verifies(batch[0], to_be_signed(batch[0])));
  // And a proof added to a singly-signed message does not make it verify either.
  std::vector<Envelope> one = {message(ec, SigScheme::Ecdsa, CALG_SHA_256, 0)};
  sign_all(one, ec, SigScheme::Ecdsa);
  Envelope grafted = one[0];
  grafted.batch = batch[0].batch;
  EXPECT_FALSE(verify(v, grafted).ok);
  // An unsigned-looking message with a proof is not taken for an unsigned message.
  Envelope none = batch[0];
  none.sig_scheme = SigScheme::None;
  d = verify(v, none);
  EXPECT_FALSE(d.ok);
  EXPECT_TRUE(d.signed_message);
}

TEST(BatchSign, StatementHashMustBeTheMessages) {
  Verifier v;
  const Signer ec = make_signer("EC");
  // A sender that hashed the tree with SHA-384 for SHA-256 messages (the TBS says SHA-256).
  std::vector<Envelope> batch = messages(ec, SigScheme::Ecdsa, CALG_SHA_256, 3);
  const EVP_MD* md = EVP_sha384();
  std::vector<Bytes> leaves;
  for (const Envelope& e : batch) leaves.push_back(merkle::leaf_hash(md, to_be_signed(e)));
  merkle::Tree tree(md, leaves);
  BatchProof p;
  p.hash_alg = CALG_SHA_384;
  p.tree_size = 3;
  p.root = tree.root();
  p.path = tree.path(0);
  const Bytes sig = software_signer(ec.key.get(), SigScheme::Ecdsa)(pkcs11::Hash::Sha384, [&] {
    Bytes s = batch_statement(p);
    Bytes d(48);
    unsigned len = 0;
    EVP_Digest(s.data(), s.size(), d.data(), &len, md, nullptr);
    return d;
  }());
  Envelope e = batch[1];
  e.batch = p;
  e.batch.leaf_index = 1;
  e.batch.path = tree.path(1);
  e.signature = sig;
  Verdict d = verify(v, e);
  EXPECT_FALSE(d.ok);
  EXPECT_EQ(d.kind, "signature");
  EXPECT_NE(d.reason.find("hash algorithm"), std::string::npos) << d.reason;
}

TEST(BatchSign, BoundsAndMisuseAreRefusedAndLeaveTheEnvelopesUnchanged) {
  const Signer ec = make_signer("EC");
  const DigestSigner sign = software_signer(ec.key.get(), SigScheme::Ecdsa);
  const Bytes digest = sha256(ec.der);
  auto code_of = [&](std::vector<Envelope*> p, bool allow_weak = false) -> HRESULT {
    try {
      sign_batch(p, digest, sign, allow_weak);
    } catch (const Error& e) {
      return e.code();
    }
    return MQ_OK;
  };
  EXPECT_EQ(code_of({}), MQ_ERROR_INVALID_PARAMETER) << "empty";
  Envelope e = message(ec, SigScheme::Ecdsa, CALG_SHA_256, 0);
  const Envelope before = e;
  EXPECT_EQ(code_of(std::vector<Envelope*>(kMaxBatchSize + 1, &e)), MQ_ERROR_INVALID_PARAMETER)
      << "65537 messages";
  EXPECT_EQ(code_of({&e, nullptr}), MQ_ERROR_INVALID_PARAMETER) << "a null envelope";
  Envelope other_hash = message(ec, SigScheme::Ecdsa, CALG_SHA_384, 1);
  EXPECT_EQ(code_of({&e, &other_hash}), MQ_ERROR_INVALID_PARAMETER) << "two hashes";
  Envelope other_cert = message(make_signer("EC"), SigScheme::Ecdsa, CALG_SHA_256, 1);
  EXPECT_EQ(code_of({&e, &other_cert}), MQ_ERROR_INVALID_PARAMETER) << "two certificates";
  Envelope unprepared;
  EXPECT_EQ(code_of({&unprepared}), MQ_ERROR_INVALID_PARAMETER) << "not prepared";
  // Weak hashes: refused unless allowed, and never in a batch of two or more.
  Envelope sha1_a = message(ec, SigScheme::Ecdsa, CALG_SHA1, 0);
  Envelope sha1_b = message(ec, SigScheme::Ecdsa, CALG_SHA1, 1);
  EXPECT_EQ(code_of({&sha1_a}), MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
  EXPECT_EQ(code_of({&sha1_a, &sha1_b}, true), MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
  EXPECT_FALSE(sha1_a.batch.present());
  EXPECT_TRUE(sha1_a.signature.empty());
  EXPECT_EQ(code_of({&sha1_a}, true), MQ_OK) << "one SHA-1 message, allowed: signed alone";
  EXPECT_EQ(e, before);
  // A device that fails: nothing is changed.
  std::vector<Envelope> batch = messages(ec, SigScheme::Ecdsa, CALG_SHA_256, 4);
  const std::vector<Envelope> unsigned_batch = batch;
  std::vector<Envelope*> p = pointers(batch);
  EXPECT_THROW(sign_batch(
                   p, digest,
                   [](pkcs11::Hash, std::span<const uint8_t>) -> Bytes {
                     throw Error(MQ_ERROR_CANNOT_SIGN_DATA_EX, "the device failed");
                   },
                   false),
               Error);
  EXPECT_EQ(batch, unsigned_batch);
}

TEST(BatchSign, LargestBatchOf65536) {
  Verifier v;
  const Signer ec = make_signer("EC");
  std::vector<Envelope> batch(kMaxBatchSize, message(ec, SigScheme::Ecdsa, CALG_SHA_256, 0));
  for (size_t i = 0; i < batch.size(); ++i) {
    for (size_t j = 0; j < 4; ++j)
      batch[i].msg_id[16 + j] = static_cast<uint8_t>(i >> (24 - 8 * j));
  }
  ASSERT_EQ(sign_all(batch, ec, SigScheme::Ecdsa), 1);
  for (size_t i : {size_t{0}, size_t{12345}, size_t{kMaxBatchSize - 1}}) {
    EXPECT_EQ(batch[i].batch.path.size(), 16u);
    EXPECT_TRUE(verify(v, decode(encode(batch[i]))).ok) << i;
  }
}

// The trust policy, SID confirmation and sent-time rules apply to a batch-signed message as to
// a single signature: they act on the message's own signed fields.
TEST(BatchVerify, SamePolicyAsASingleSignature) {
  Verifier v;
  const Signer ec = make_signer("EC");
  std::vector<Envelope> batch = messages(ec, SigScheme::Ecdsa, CALG_SHA_256, 3);
  sign_all(batch, ec, SigScheme::Ecdsa);
  const Envelope& e = batch[0];  // carries SID S-1-22-1-1000
  Verdict good = v.verify(e, Sid::unix_user(1000).bytes(), kNow, false);
  EXPECT_TRUE(good.ok) << good.reason;
  EXPECT_TRUE(good.sender_confirmed);
  Verdict other = v.verify(e, Sid::unix_user(1001).bytes(), kNow, false);
  EXPECT_FALSE(other.ok);
  EXPECT_EQ(other.kind, "sid-mismatch");
  VerifyPolicy p;
  p.now = kNow - 1000;  // the message was sent 1000 s "in the future"
  p.max_clock_skew_seconds = 300;
  EXPECT_EQ(v.verify(e, p).kind, "clock");
  p.now = kNow + 8 * 86400;
  p.max_clock_skew_seconds = 300;
  p.replay_window_seconds = 7 * 86400;
  EXPECT_EQ(v.verify(e, p).kind, "too-old");
  p.now = kNow + 365 * 86400;  // the certificate has expired by then
  p.replay_window_seconds = 0;
  EXPECT_EQ(v.verify(e, p).kind, "certificate");
}

// ---- on a token (the mock module): the same path sign_envelope takes ---------------------

namespace {

class BatchOnToken : public ::testing::Test {
 protected:
  void SetUp() override {
    mock::reset();
    setenv("MQSEC_TEST_PIN", "1234", 1);
    char dir[] = "/tmp/mqsec-batch-pinstate-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    state_dir_ = dir;
    setenv("MQSEC_STATE_DIR", dir, 1);
    auto module = pkcs11::Module::from_function_list(mock::function_list(), "mock");
    token_ = pkcs11::Token::open(module, pkcs11::Uri::parse("pkcs11:token=mock-a"));
    token_->login("env:MQSEC_TEST_PIN");
  }
  void TearDown() override {
    if (!state_dir_.empty()) {
      std::error_code ignored;  // a test's leftovers in a temporary directory
      std::filesystem::remove_all(state_dir_, ignored);
    }
  }
  // A context on a new key of `type` ("EC", "RSA") on the token.
  std::shared_ptr<SecurityContext> context(const char* type, pkcs11::Scheme scheme,
                                           bool pin_always = false) {
    signers_.push_back(make_signer(type));
    const Signer& s = signers_.back();
    const uint8_t id = static_cast<uint8_t>(signers_.size());
    const CK_OBJECT_HANDLE h =
        mock::add_key(0, s.key.get(), {id}, "k", s.der, true, false, pin_always);
    const size_t size = scheme == pkcs11::Scheme::Ecdsa ? 64 : 256;
    UserIdentity user;
    user.sid = Sid::unix_user(1000);
    return std::make_shared<SecurityContext>(
        s.der, parse_der_strict(s.der), token_, "env:MQSEC_TEST_PIN",
        pkcs11::SignKey{h, scheme, size, pin_always}, Bytes{id}, user);
  }
  // Message i, prepared for signing with ctx (what the signing pipeline will do).
  static Envelope prepared(const SecurityContext& ctx, size_t i, bool attach_sid = true) {
    Envelope e;
    e.msg_id[19] = static_cast<uint8_t>(i);
    e.body = {'b', static_cast<uint8_t>(i)};
    e.dest_queue = u"DIRECT=OS:h\\private$\\q";
    e.sent_time = static_cast<uint64_t>(kNow);
    e.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
    if (i % 2 == 1) e.time_to_reach_queue = 30;
    prepare_envelope(e, ctx, CALG_SHA_256, false, attach_sid);
    return e;
  }
  std::string state_dir_;
  std::shared_ptr<pkcs11::Token> token_;
  std::vector<Signer> signers_;
};

}  // namespace

TEST_F(BatchOnToken, BatchOfOneIsByteForByteSignEnvelope) {
  auto rsa = context("RSA", pkcs11::Scheme::RsaPkcs1);  // deterministic signatures
  for (size_t i : {0u, 1u}) {                           // version 1 and version 2
    for (bool sid : {true, false}) {
      Envelope single;
      single.msg_id[19] = static_cast<uint8_t>(i);
      single.body = {'b', static_cast<uint8_t>(i)};
      single.dest_queue = u"DIRECT=OS:h\\private$\\q";
      single.sent_time = static_cast<uint64_t>(kNow);
      single.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
      if (i % 2 == 1) single.time_to_reach_queue = 30;
      sign_envelope(single, *rsa, CALG_SHA_256, false, sid);
      Envelope batched = prepared(*rsa, i, sid);
      std::vector<Envelope*> p = {&batched};
      sign_batch(p, *rsa, false);
      EXPECT_EQ(encode(batched), encode(single)) << "message " << i << ", SID " << sid;
      EXPECT_EQ(encode(batched)[5], i == 1 ? 2 : 1);
    }
  }
  // ECDSA signatures are randomized: everything but the signature is identical, both verify.
  Verifier v;
  auto ec = context("EC", pkcs11::Scheme::Ecdsa);
  Envelope single;
  single.msg_id[19] = 0;
  single.body = {'b', 0};
  single.dest_queue = u"DIRECT=OS:h\\private$\\q";
  single.sent_time = static_cast<uint64_t>(kNow);
  single.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
  sign_envelope(single, *ec, CALG_SHA_256, false, true);
  Envelope batched = prepared(*ec, 0);
  std::vector<Envelope*> p = {&batched};
  sign_batch(p, *ec, false);
  EXPECT_TRUE(verify(v, single).ok);
  EXPECT_TRUE(verify(v, batched).ok);
  batched.signature = single.signature;
  EXPECT_EQ(encode(batched), encode(single));
}

TEST_F(BatchOnToken, EveryMessageOfATokenSignedBatchVerifiesWithOneCSign) {
  Verifier v;
  for (auto [type, scheme] :
       {std::pair{"EC", pkcs11::Scheme::Ecdsa}, std::pair{"RSA", pkcs11::Scheme::RsaPss},
        std::pair{"RSA", pkcs11::Scheme::RsaPkcs1}}) {
    auto ctx = context(type, scheme);
    std::vector<Envelope> batch;
    for (size_t i = 0; i < 5; ++i) batch.push_back(prepared(*ctx, i));
    std::vector<Envelope*> p = pointers(batch);
    const int signs = mock::call_count("C_Sign");
    sign_batch(p, *ctx, false);
    EXPECT_EQ(mock::call_count("C_Sign") - signs, 1);
    for (const Envelope& e : batch) {
      Verdict d = verify(v, decode(encode(e)));
      EXPECT_TRUE(d.ok) << d.reason;
    }
  }
}

// Issue 12, item 4: a PIN-always key needs one context-specific login per batch, not per message.
TEST_F(BatchOnToken, PinAlwaysKeyLogsInOncePerBatch) {
  Verifier v;
  auto ctx = context("EC", pkcs11::Scheme::Ecdsa, true);
  std::vector<Envelope> batch;
  for (size_t i = 0; i < 16; ++i) batch.push_back(prepared(*ctx, i));
  std::vector<Envelope*> p = pointers(batch);
  int logins = mock::call_count("C_Login"), signs = mock::call_count("C_Sign");
  sign_batch(p, *ctx, false);
  EXPECT_EQ(mock::call_count("C_Login") - logins, 1);
  EXPECT_EQ(mock::call_count("C_Sign") - signs, 1);
  for (const Envelope& e : batch) EXPECT_TRUE(verify(v, e).ok);
  // The same 4 messages one by one: one login each.
  logins = mock::call_count("C_Login");
  for (size_t i = 0; i < 4; ++i) {
    Envelope e = batch[i];
    sign_envelope(e, *ctx, CALG_SHA_256, false, true);
  }
  EXPECT_EQ(mock::call_count("C_Login") - logins, 4);
}

// A token pulled before the batch's one signature: the call fails as sign_envelope's does, and
// no envelope carries a signature or a proof. Put back, the same context signs the batch.
TEST_F(BatchOnToken, RemovedTokenSignsNothing) {
  Verifier v;
  auto ctx = context("EC", pkcs11::Scheme::Ecdsa);
  std::vector<Envelope> batch;
  for (size_t i = 0; i < 6; ++i) batch.push_back(prepared(*ctx, i));
  const std::vector<Envelope> unsigned_batch = batch;
  std::vector<Envelope*> p = pointers(batch);
  mock::set_token_present(0, false);
  try {
    sign_batch(p, *ctx, false);
    FAIL() << "signed without a token";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_CANNOT_SIGN_DATA_EX) << e.what();
  }
  EXPECT_EQ(batch, unsigned_batch);
  mock::set_token_present(0, true);
  sign_batch(p, *ctx, false);
  for (const Envelope& e : batch) EXPECT_TRUE(verify(v, e).ok);
}

TEST_F(BatchOnToken, EnvelopesPreparedWithAnotherContextAreRefused) {
  auto a = context("EC", pkcs11::Scheme::Ecdsa);
  auto b = context("EC", pkcs11::Scheme::Ecdsa);
  Envelope ea = prepared(*a, 0), eb = prepared(*b, 1);
  std::vector<Envelope*> p = {&ea, &eb};
  try {
    sign_batch(p, *a, false);
    FAIL() << "signed another context's envelope";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), MQ_ERROR_INVALID_PARAMETER);
  }
  EXPECT_TRUE(ea.signature.empty());
}
