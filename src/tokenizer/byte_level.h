// GPT-2's reversible byte <-> printable character table, used by the ByteLevel
// pre-tokenizer (bytes -> characters) and decoder (characters -> bytes).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace gptq::tok::byte_level {

// The UTF-8 text of the character standing for each byte.
const std::string& char_of_byte(unsigned char byte);
// Maps every byte of `bytes` to its character.
std::string encode(std::string_view bytes);
// The byte a character stands for, if it stands for one.
std::optional<unsigned char> byte_of_char(char32_t cp);

// The GPT-2 pre-tokenization regex (ByteLevel with use_regex=true).
inline constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace gptq::tok::byte_level
