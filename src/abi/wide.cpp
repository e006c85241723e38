// WCHAR strings of either build of the C API (see wide.hpp).
#include "src/abi/wide.hpp"

#include <algorithm>

#include "mqsec/error.hpp"
#include "src/core/text.hpp"

namespace mqsec::abi {

size_t wide_length(LPCWSTR s) {
  size_t n = 0;
  while (s[n] != 0) ++n;
  return n;
}

void wide_copy(WCHAR* out, const WString& s) {
  std::copy(s.c_str(), s.c_str() + s.size() + 1, out);
}

#if defined(MQSEC_UTF16)

namespace {

bool high(char16_t c) { return c >= 0xD800 && c <= 0xDBFF; }
bool low(char16_t c) { return c >= 0xDC00 && c <= 0xDFFF; }

// s[0..n) as a checked std::u16string: every surrogate in a high-low pair.
std::u16string checked(LPCWSTR s, size_t n, HRESULT code) {
  for (size_t i = 0; i < n; ++i) {
    if (high(s[i]) && i + 1 < n && low(s[i + 1])) {
      ++i;
    } else if (high(s[i]) || low(s[i])) {
      throw Error(code, "string is not valid UTF-16 (an unpaired surrogate at unit " +
                            std::to_string(i) + ")");
    }
  }
  return std::u16string(s, n);
}

}  // namespace

std::string wide_to_utf8(LPCWSTR s, HRESULT code) {
  return core::utf16_to_utf8(checked(s, wide_length(s), code));
}

std::u16string wide_to_utf16(LPCWSTR s, size_t n, HRESULT code) { return checked(s, n, code); }

WString wide_from_utf8(const std::string& s) { return core::utf8_to_utf16(s); }

WString wide_from_utf16(const std::u16string& s) { return s; }

#else

std::string wide_to_utf8(LPCWSTR s, HRESULT code) { return core::to_utf8(s, code); }

std::u16string wide_to_utf16(LPCWSTR s, size_t n, HRESULT code) {
  return core::to_utf16(s, n, code);
}

WString wide_from_utf8(const std::string& s) { return core::from_utf8(s); }

WString wide_from_utf16(const std::u16string& s) { return core::from_utf16(s); }

#endif

}  // namespace mqsec::abi
