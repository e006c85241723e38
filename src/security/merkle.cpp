// RFC 6962 Merkle tree for batch signatures; see merkle.hpp and docs/signature-format.md,
// section 10.
#include "src/security/merkle.hpp"

#include "src/security/openssl.hpp"

#include <stdexcept>
#include <utility>
#include <vector>

namespace mqsec::security::merkle {
namespace {

constexpr uint8_t kLeafPrefix = 0x00;
constexpr uint8_t kNodePrefix = 0x01;

Bytes digest_of(const EVP_MD* md, uint8_t prefix, std::span<const uint8_t> a,
                std::span<const uint8_t> b) {
  Bytes out(static_cast<size_t>(EVP_MD_get_size(md)));
  if (!digest_parts(md, {std::span<const uint8_t>(&prefix, 1), a, b}, out.data())) {
    throw std::runtime_error("merkle: hashing failed");
  }
  return out;
}

}  // namespace

Bytes leaf_hash(const EVP_MD* md, std::span<const uint8_t> data) {
  return digest_of(md, kLeafPrefix, data, {});
}

Bytes node_hash(const EVP_MD* md, std::span<const uint8_t> left, std::span<const uint8_t> right) {
  return digest_of(md, kNodePrefix, left, right);
}

size_t path_length(uint64_t index, uint64_t size) {
  if (index >= size) return 0;
  size_t n = 0;
  for (uint64_t m = index, s = size; s > 1; m >>= 1, s = (s + 1) >> 1) {
    if ((m ^ 1) < s) ++n;  // a sibling exists on this level (else the node is carried up)
  }
  return n;
}

Tree::Tree(const EVP_MD* md, std::vector<Bytes> leaf_hashes) {
  if (leaf_hashes.empty() || leaf_hashes.size() > kMaxTreeSize) {
    throw std::invalid_argument("merkle: a tree has 1 to 65536 leaves");
  }
  levels_.push_back(std::move(leaf_hashes));
  while (levels_.back().size() > 1) {
    const std::vector<Bytes>& below = levels_.back();
    std::vector<Bytes> up;
    up.reserve((below.size() + 1) / 2);
    for (size_t i = 0; i + 1 < below.size(); i += 2)
      up.push_back(node_hash(md, below[i], below[i + 1]));
    if (below.size() % 2 == 1) up.push_back(below.back());
    levels_.push_back(std::move(up));
  }
}

std::vector<Bytes> Tree::path(size_t index) const {
  if (index >= size()) throw std::invalid_argument("merkle: leaf index outside the tree");
  std::vector<Bytes> out;
  size_t m = index;
  for (size_t level = 0; level + 1 < levels_.size(); ++level, m >>= 1) {
    const size_t sibling = m ^ 1;
    if (sibling < levels_[level].size()) out.push_back(levels_[level][sibling]);
  }
  return out;
}

std::optional<Bytes> root_from_path(const EVP_MD* md, std::span<const uint8_t> leaf, uint64_t index,
                                    uint64_t size, const std::vector<Bytes>& path) {
  const auto width = static_cast<size_t>(EVP_MD_get_size(md));
  if (size == 0 || size > kMaxTreeSize || index >= size || leaf.size() != width ||
      path.size() != path_length(index, size)) {
    return std::nullopt;
  }
  Bytes r(leaf.begin(), leaf.end());
  size_t used = 0;
  for (uint64_t m = index, s = size; s > 1; m >>= 1, s = (s + 1) >> 1) {
    if ((m ^ 1) >= s) continue;  // no sibling: the node is carried up unchanged
    const Bytes& sibling = path[used++];
    if (sibling.size() != width) return std::nullopt;
    r = (m & 1) ? node_hash(md, sibling, r) : node_hash(md, r, sibling);
  }
  return r;
}

}  // namespace mqsec::security::merkle
