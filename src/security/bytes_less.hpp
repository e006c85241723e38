// The order of the caches keyed by byte strings (digests, DER): std::map<Bytes, ..., BytesLess>.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace mqsec::security {

// A strict weak order on byte strings: shorter first, equal lengths by memcmp. Not
// lexicographic, which no cache needs (they are only searched, never listed in order). Used
// instead of std::less<std::vector<uint8_t>>, whose inlined operator<=> GCC 12 at -O3 reports
// as a memcmp reading more than PTRDIFF_MAX bytes (-Wstringop-overread; a false positive: the
// bound is the shorter vector's size). Here the bound is one vector's own size, and memcmp is
// only called on two non-empty buffers of that size.
struct BytesLess {
  bool operator()(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) const noexcept {
    if (a.size() != b.size()) return a.size() < b.size();
    return !a.empty() && std::memcmp(a.data(), b.data(), a.size()) < 0;
  }
};

// The same for keys that pair a byte string with a small discriminator.
template <class T>
struct BytesPairLess {
  bool operator()(const std::pair<std::vector<uint8_t>, T>& a,
                  const std::pair<std::vector<uint8_t>, T>& b) const noexcept {
    if (BytesLess{}(a.first, b.first)) return true;
    if (BytesLess{}(b.first, a.first)) return false;
    return a.second < b.second;
  }
};

}  // namespace mqsec::security
