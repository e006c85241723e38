// UTF-32 / UTF-16 / UTF-8 conversions.
#include "src/core/text.hpp"

#include "mqsec/error.hpp"

namespace mqsec::core {
namespace {

bool valid(char32_t c) { return c <= 0x10FFFF && (c < 0xD800 || c > 0xDFFF); }

void put_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

void put_utf16(std::u16string& out, char32_t c) {
  if (c < 0x10000) {
    out += static_cast<char16_t>(c);
  } else {
    c -= 0x10000;
    out += static_cast<char16_t>(0xD800 + (c >> 10));
    out += static_cast<char16_t>(0xDC00 + (c & 0x3FF));
  }
}

std::u32string decode_utf8(const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    unsigned char b = static_cast<unsigned char>(s[i]);
    int n = b < 0x80 ? 0 : (b >> 5) == 6 ? 1 : (b >> 4) == 14 ? 2 : (b >> 3) == 30 ? 3 : -1;
    if (n < 0 || i + static_cast<size_t>(n) >= s.size()) {
      out += U'\uFFFD';
      ++i;
      continue;
    }
    char32_t c = n == 0 ? b : b & (0x3F >> n);
    bool ok = true;
    for (int k = 1; k <= n; ++k) {
      unsigned char cb = static_cast<unsigned char>(s[i + k]);
      ok = ok && (cb & 0xC0) == 0x80;
      c = (c << 6) | (cb & 0x3F);
    }
    static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};  // shortest form only
    if (!ok || c < kMin[n] || !valid(c)) {
      out += U'\uFFFD';
      ++i;
      continue;
    }
    out += c;
    i += static_cast<size_t>(n) + 1;
  }
  return out;
}

}  // namespace

std::string to_utf8(const wchar_t* s, HRESULT code) {
  std::string out;
  for (; *s; ++s) {
    char32_t c = static_cast<char32_t>(*s);
    if (!valid(c)) throw Error(code, "string is not valid Unicode");
    put_utf8(out, c);
  }
  return out;
}

std::wstring from_utf8(const std::string& s) {
  std::wstring out;
  for (char32_t c : decode_utf8(s)) out += static_cast<wchar_t>(c);
  return out;
}

std::u16string to_utf16(const wchar_t* s, size_t n, HRESULT code) {
  std::u16string out;
  for (size_t i = 0; i < n; ++i) {
    char32_t c = static_cast<char32_t>(s[i]);
    if (!valid(c)) throw Error(code, "string is not valid Unicode");
    put_utf16(out, c);
  }
  return out;
}

std::wstring from_utf16(const std::u16string& s) {
  std::wstring out;
  for (size_t i = 0; i < s.size(); ++i) {
    char32_t c = s[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < s.size() && s[i + 1] >= 0xDC00 &&
        s[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      ++i;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;
    }
    out += static_cast<wchar_t>(c);
  }
  return out;
}

std::u16string utf8_to_utf16(const std::string& s) {
  std::u16string out;
  for (char32_t c : decode_utf8(s)) put_utf16(out, c);
  return out;
}

std::string utf16_to_utf8(const std::u16string& s) {
  std::string out;
  for (wchar_t c : from_utf16(s)) put_utf8(out, static_cast<char32_t>(c));
  return out;
}

}  // namespace mqsec::core
