// The C API's strings (WCHAR, LPWSTR, every VT_LPWSTR property) as the adapter sees them. src/abi
// is compiled twice: for libmqrt.so WCHAR is wchar_t (UTF-32, mq.h as C programs use it), for
// libmqrt.dll.so, the runtime .NET loads as mqrt.dll, it is char16_t (UTF-16, as on Windows:
// MQSEC_UTF16, docs/dotnet.md). Lengths are counted in WCHARs either way, so *_LEN values and the
// label limits (250, 124) are UTF-16 units in the UTF-16 build, as MSMQ counts them.
#pragma once

#include <mq.h>

#include <cstddef>
#include <string>

namespace mqsec::abi {

using WString = std::basic_string<WCHAR>;

// The length of a NUL-terminated string in WCHARs, without the NUL.
size_t wide_length(LPCWSTR s);
// Throws mqsec::Error(code) when the text is not valid Unicode (in UTF-16: an unpaired
// surrogate; in UTF-32: a surrogate or a value over U+10FFFF).
std::string wide_to_utf8(LPCWSTR s, HRESULT code);
std::u16string wide_to_utf16(LPCWSTR s, size_t n, HRESULT code);
// Text from the core and the envelope, for the caller.
WString wide_from_utf8(const std::string& s);
WString wide_from_utf16(const std::u16string& s);
// Copies s and its NUL (s.size() + 1 WCHARs) to out.
void wide_copy(WCHAR* out, const WString& s);

}  // namespace mqsec::abi
