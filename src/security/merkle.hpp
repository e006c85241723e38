// The Merkle tree of batch signatures (docs/signature-format.md, section 10): RFC 6962's tree
// hash with distinct leaf and node prefixes, so that an inner node can never pass for a leaf.
//
//   leaf(data)  = H(0x00 || data)
//   node(l, r)  = H(0x01 || l || r)
//   MTH(1 leaf) = that leaf's hash
//   MTH(D[n])   = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two below n
//
// The audit path of a leaf is RFC 6962's PATH(m, D[n]): the sibling hashes from the leaf's level
// up to the root. Its length follows from the index and the tree size alone (path_length), and
// a verifier insists on exactly that length.
//
// Pure functions of their inputs; the hash is an OpenSSL digest (SHA-256/384/512 in practice).
// Callers that may run across a fork() hold a pkcs11::CallScope, as for any OpenSSL call.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace mqsec::security::merkle {

using Bytes = std::vector<uint8_t>;

// The bounds of the format: at most 2^16 leaves, so an audit path has at most 16 nodes.
inline constexpr uint32_t kMaxTreeSize = 65536;
inline constexpr size_t kMaxPathLength = 16;

// H(0x00 || data) and H(0x01 || left || right). Throw std::runtime_error if OpenSSL fails.
Bytes leaf_hash(const EVP_MD* md, std::span<const uint8_t> data);
Bytes node_hash(const EVP_MD* md, std::span<const uint8_t> left, std::span<const uint8_t> right);

// The number of nodes in the audit path of leaf `index` in a tree of `size` leaves; 0 for a
// tree of one leaf. Requires index < size (returns 0 otherwise).
size_t path_length(uint64_t index, uint64_t size);

// A tree built over leaf hashes (already leaf_hash()ed), 1 .. kMaxTreeSize of them.
class Tree {
 public:
  // Throws std::invalid_argument for 0 or more than kMaxTreeSize leaves.
  Tree(const EVP_MD* md, std::vector<Bytes> leaf_hashes);
  size_t size() const noexcept { return levels_.front().size(); }
  const Bytes& root() const noexcept { return levels_.back().front(); }
  // The audit path of leaf `index` (< size()), from the leaf's level up.
  std::vector<Bytes> path(size_t index) const;

 private:
  // levels_[0] are the leaves; each next level pairs the nodes of the one below, left to
  // right, and carries an unpaired last node up unchanged (the same tree as RFC 6962's
  // recursive split).
  std::vector<std::vector<Bytes>> levels_;
};

// The root that `path` leads to from `leaf` (a leaf hash) at `index` in a tree of `size`
// leaves; nullopt when index >= size, size is 0 or above kMaxTreeSize, or the path does not
// have exactly path_length(index, size) nodes of the digest's size.
std::optional<Bytes> root_from_path(const EVP_MD* md, std::span<const uint8_t> leaf, uint64_t index,
                                    uint64_t size, const std::vector<Bytes>& path);

}  // namespace mqsec::security::merkle
