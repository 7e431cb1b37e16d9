#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace gptq::tok::byte_level {

namespace {

// Printable bytes map to the same code point; the other 68 map, in byte order,
// to U+0100 upwards. This is the table GPT-2 defined and the library copies.
struct Tables {
  std::array<char32_t, 256> cp_of_byte{};
  std::array<std::string, 256> text_of_byte;
  std::array<int, 0x144> byte_of_cp{};  // -1 where the code point stands for no byte
  Tables() {
    byte_of_cp.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      cp_of_byte[b] = printable ? static_cast<char32_t>(b) : next++;
      text_of_byte[b] = utf8::encode(cp_of_byte[b]);
      byte_of_cp[cp_of_byte[b]] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& char_of_byte(unsigned char byte) { return tables().text_of_byte[byte]; }

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += char_of_byte(static_cast<unsigned char>(c));
  return out;
}

std::optional<unsigned char> byte_of_char(char32_t cp) {
  // Every mapped code point is below U+0144 (256 + 68).
  if (cp >= 0x144) return std::nullopt;
  const int b = tables().byte_of_cp[cp];
  if (b < 0) return std::nullopt;
  return static_cast<unsigned char>(b);
}

}  // namespace gptq::tok::byte_level
