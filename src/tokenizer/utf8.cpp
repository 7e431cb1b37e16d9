#include "tokenizer/utf8.h"

namespace gptq::tok::utf8 {

namespace {

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// How many bytes of a well-formed sequence start at s[pos]; 0 if none does.
// The second-byte ranges follow Table 3-7 of the Unicode standard, which is also
// what defines "maximal subpart" for lossy conversion.
std::size_t valid_length(std::string_view s, std::size_t pos, char32_t* cp_out) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    *cp_out = b0;
    return 1;
  }
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  char32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2, cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3, cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4, cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (std::size_t i = 1; i < need; ++i) {
    if (pos + i >= s.size()) return 0;
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if (i == 1 ? (b < lo || b > hi) : !is_continuation(b)) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  *cp_out = cp;
  return need;
}

// Length of the maximal subpart of an ill-formed sequence starting at pos:
// the lead byte plus the continuation bytes that were still acceptable.
std::size_t maximal_subpart(std::string_view s, std::size_t pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  std::size_t len = 1;
  while (len < need && pos + len < s.size()) {
    const auto b = static_cast<unsigned char>(s[pos + len]);
    const bool ok = len == 1 ? (b >= lo && b <= hi) : is_continuation(b);
    if (!ok) break;
    ++len;
  }
  return len;
}

}  // namespace

Char decode(std::string_view s, std::size_t pos) {
  char32_t cp = 0;
  const std::size_t len = valid_length(s, pos, &cp);
  if (len == 0) return {kInvalid, 1};
  return {cp, len};
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string encode(char32_t cp) {
  std::string out;
  append(out, cp);
  return out;
}

std::string to_valid_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    char32_t cp = 0;
    const std::size_t len = valid_length(bytes, pos, &cp);
    if (len > 0) {
      out.append(bytes.substr(pos, len));
      pos += len;
    } else {
      append(out, 0xFFFD);
      pos += maximal_subpart(bytes, pos);
    }
  }
  return out;
}

bool is_valid(std::string_view bytes) {
  for (std::size_t pos = 0; pos < bytes.size();) {
    const Char c = decode(bytes, pos);
    if (c.cp == kInvalid) return false;
    pos += c.len;
  }
  return true;
}

bool is_whitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::size_t last_char_start(std::string_view s) {
  std::size_t pos = s.size() - 1;
  // Step back over at most three continuation bytes, then check that they really
  // belong to the lead byte found; otherwise the last byte stands alone.
  std::size_t start = pos;
  while (start > 0 && pos - start < 3 && is_continuation(static_cast<unsigned char>(s[start]))) {
    --start;
  }
  const Char c = decode(s, start);
  return (c.cp != kInvalid && start + c.len == s.size()) ? start : pos;
}

}  // namespace gptq::tok::utf8
