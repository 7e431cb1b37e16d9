// UTF-8 helpers shared by the tokenizer stages. Input text may hold invalid
// UTF-8 (the Rust library cannot receive it, we can): an invalid byte is treated
// as a one-byte "character" so that byte_fallback / byte-level models still
// encode it losslessly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gptq::tok::utf8 {

inline constexpr char32_t kInvalid = 0xFFFFFFFF;

struct Char {
  char32_t cp;      // code point, or kInvalid for a stray byte
  std::size_t len;  // bytes consumed (1..4), never 0
};

// Decodes the character at s[pos] (pos < s.size()). Rejects overlongs,
// surrogates and values above U+10FFFF as the Unicode standard requires.
Char decode(std::string_view s, std::size_t pos);

void append(std::string& out, char32_t cp);
std::string encode(char32_t cp);

// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes U+FFFD.
std::string to_valid_lossy(std::string_view bytes);
bool is_valid(std::string_view bytes);

// Rust's char::is_whitespace (the Unicode White_Space property).
bool is_whitespace(char32_t cp);

// Byte offset of the start of the last character in s (s non-empty).
std::size_t last_char_start(std::string_view s);

}  // namespace gptq::tok::utf8
