// PIN checks shared by the fuzz targets that feed PKCS#11 URIs (fuzz_uri, fuzz_config): does
// an error message repeat the pin-value of the input?
#pragma once

#include <cctype>
#include <string>
#include <string_view>

namespace mqsec::fuzz {

// p11-kit skips whitespace inside URIs ("pin-value =1234" is a pin-value), so PIN checks look
// at the text without it.
inline std::string without_space(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (!std::isspace(static_cast<unsigned char>(c))) out += c;
  }
  return out;
}

// The raw value of a pin-value attribute, if the text has one ("" when absent).
inline std::string pin_value_of(std::string_view text_in) {
  const std::string text = without_space(text_in);
  for (size_t i = 0; (i = text.find("pin-value=", i)) != std::string::npos; ++i) {
    const char before = i == 0 ? ';' : text[i - 1];
    if (before != ';' && before != '?' && before != '&' && before != ':') continue;
    const size_t start = i + 10;
    const size_t end = text.find_first_of(";&", start);
    return text.substr(start, end == std::string::npos ? end : end - start);
  }
  return {};
}

// True when an error message repeats the PIN of `text`.
inline bool repeats_pin(std::string_view message, std::string_view text) {
  const std::string pin = pin_value_of(text);
  return !pin.empty() && without_space(message).find("pin-value=" + pin) != std::string::npos;
}

}  // namespace mqsec::fuzz
