// libFuzzer target for queue names and the text conversions in front of them: path names
// (core::queue_from_path), format names (core::queue_from_format) and the WCHAR/UTF-8/UTF-16
// conversions of src/core/text.hpp that every queue name and label goes through. Bad input
// may only be refused with mqsec::Error; what is accepted must keep the documented invariants
// (a queue name is 1..124 lower-case bytes without separators, and names round-trip).
//
// Input: the first byte chooses how the rest is read. Even: UTF-8 text (as the queue layer
// sees names); odd: UTF-32 code units (as an application passes WCHAR strings), which are
// converted with to_utf8 first, exactly as the C API does.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "mqsec/error.hpp"
#include "src/core/text.hpp"
#include "src/core/destination.hpp"
#include "src/core/locate.hpp"

namespace {

using namespace mqsec;

void check_queue(const std::string& q) {
  if (q.empty() || q.size() > MQ_MAX_Q_NAME_LEN) abort();
  if (q.find_first_of("\\/\r\n\t") != std::string::npos) abort();
  for (unsigned char c : q) {
    if (c < 0x20 || std::tolower(c) != c) abort();
  }
  // The names mqsec hands out for a queue lead back to it.
  if (core::queue_from_format(core::format_name_of(q)) != q) abort();
  if (core::queue_from_path(".\\private$\\" + q) != q) abort();
}

void names(std::string_view text) {
  try {
    check_queue(core::queue_from_path(text));
  } catch (const Error& e) {
    if (e.code() != MQ_ERROR_ILLEGAL_QUEUE_PATHNAME &&
        e.code() != MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION)
      abort();
  }
  try {
    check_queue(core::queue_from_format(text));
  } catch (const Error& e) {
    if (e.code() != MQ_ERROR_ILLEGAL_FORMATNAME &&
        e.code() != MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION)
      abort();
  }
  // PUBLIC=<guid> (MQInstanceToFormatName's names): a GUID read from it prints back as a name
  // that reads as the same GUID; anything else is MQ_ERROR_ILLEGAL_FORMATNAME.
  try {
    const core::MachineGuid g = core::guid_of_public_format(text);
    const core::MachineGuid back = core::guid_of_public_format(core::public_format_name(g));
    if (std::memcmp(&g, &back, sizeof g) != 0) abort();
  } catch (const Error& e) {
    if (e.code() != MQ_ERROR_ILLEGAL_FORMATNAME) abort();
  }
  // A public queue's path name is never a private queue's.
  if (core::is_public_path(text) && text.find("private$\\") != std::string_view::npos) abort();
}

// Arbitrary bytes as UTF-8 / UTF-16: decoding replaces what is invalid, so the result is
// always valid Unicode that converts back without an error.
void conversions_of_bytes(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::wstring w = core::from_utf8(bytes);
  if (w.find(L'\0') != std::wstring::npos) return;  // NUL ends a C string; nothing to check
  const std::string utf8 = core::to_utf8(w.c_str(), MQ_ERROR_ILLEGAL_FORMATNAME);
  if (core::from_utf8(utf8) != w) abort();
  const std::u16string u16 = core::utf8_to_utf16(bytes);
  if (core::utf16_to_utf8(u16) != utf8) abort();
  std::u16string units(size / 2, u'\0');
  if (!units.empty()) std::memcpy(units.data(), data, units.size() * 2);
  const std::wstring from16 = core::from_utf16(units);
  if (core::to_utf16(from16.data(), from16.size(), MQ_ERROR_ILLEGAL_PROPERTY_VALUE).size() <
      from16.size())
    abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Names are at most a few hundred characters; the cap keeps each run fast.
  constexpr size_t kMaxInput = 4096;
  if (size == 0 || size > kMaxInput) return 0;
  const bool wide = data[0] & 1;
  ++data;
  --size;
  conversions_of_bytes(data, size);
  if (!wide) {
    names(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
  }
  // An application's WCHAR string: whole UTF-32 code units up to the first NUL.
  std::wstring w(size / sizeof(wchar_t), L'\0');
  if (!w.empty()) std::memcpy(w.data(), data, w.size() * sizeof(wchar_t));
  w.resize(std::wcslen(w.c_str()));
  std::string utf8;
  try {
    utf8 = core::to_utf8(w.c_str(), MQ_ERROR_ILLEGAL_FORMATNAME);
  } catch (const Error& e) {
    if (e.code() != MQ_ERROR_ILLEGAL_FORMATNAME) abort();
    return 0;  // not Unicode: refused, as MQOpenQueue refuses it
  }
  if (core::from_utf8(utf8) != w) abort();  // valid text round-trips exactly
  try {
    const std::u16string u16 = core::to_utf16(w.c_str(), w.size(), MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
    if (core::from_utf16(u16) != w || core::utf16_to_utf8(u16) != utf8) abort();
  } catch (const Error&) {
    abort();  // to_utf8 accepted it, so to_utf16 must too
  }
  names(utf8);
  return 0;
}
