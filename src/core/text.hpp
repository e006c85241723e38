// Text conversions, shared by the C API adapter (src/abi), the core and the mqsec command: MSMQ's
// WCHAR strings are wchar_t here (UTF-32 on Linux). Inside, queue names are UTF-8 and envelope
// text is UTF-16 (as MSMQ signs it).
#pragma once

#include <mq.h>

#include <string>

namespace mqsec::core {

// Throws mqsec::Error(code) when the text is not valid Unicode.
std::string to_utf8(const wchar_t* s, HRESULT code);
std::wstring from_utf8(const std::string& s);
std::u16string to_utf16(const wchar_t* s, size_t n, HRESULT code);
std::wstring from_utf16(const std::u16string& s);
std::u16string utf8_to_utf16(const std::string& s);
std::string utf16_to_utf8(const std::u16string& s);

}  // namespace mqsec::core
