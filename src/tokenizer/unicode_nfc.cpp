#include "tokenizer/unicode_nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

namespace {

namespace u = unicode;

// Hangul syllables decompose and compose arithmetically (Unicode ch. 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300 || cp == utf8::kInvalid) return 0;
  const auto* end = u::kCombiningClasses + u::kCombiningClassCount;
  const auto* it = std::upper_bound(u::kCombiningClasses, end, cp,
                                    [](char32_t c, const u::CombiningRange& r) { return c < r.first; });
  if (it == u::kCombiningClasses) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

const u::Decomposition* find_decomposition(char32_t cp) {
  const auto* end = u::kDecompositions + u::kDecompositionCount;
  const auto* it = std::lower_bound(u::kDecompositions, end, cp,
                                    [](const u::Decomposition& d, char32_t c) { return d.cp < c; });
  return (it != end && it->cp == cp) ? it : nullptr;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const u::Decomposition* d = cp >= 0xC0 && cp != utf8::kInvalid ? find_decomposition(cp) : nullptr;
  if (d == nullptr) {
    out.push_back(cp);
    return;
  }
  // Table entries are one level deep; recursion depth is bounded by Unicode
  // (at most a handful of levels).
  decompose(d->first, out);
  if (d->second != 0) decompose(d->second, out);
}

char32_t compose_pair(char32_t first, char32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 &&
      second > kTBase && second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  const auto* end = u::kCompositions + u::kCompositionCount;
  const auto* it = std::lower_bound(u::kCompositions, end, std::pair{first, second},
                                    [](const u::Composition& c, const std::pair<char32_t, char32_t>& k) {
                                      return std::pair{c.first, c.second} < k;
                                    });
  return (it != end && it->first == first && it->second == second) ? it->composite : 0;
}

}  // namespace

std::string nfc(std::string_view text) {
  // Everything below U+0300 is already in NFC and composes with nothing before it.
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0xCC; })) {
    return std::string(text);
  }
  // Stray bytes keep their raw value beside the kInvalid marker so they can be
  // written back unchanged.
  std::vector<char32_t> cps;
  std::vector<unsigned char> raw;
  cps.reserve(text.size());
  for (std::size_t pos = 0; pos < text.size();) {
    const utf8::Char c = utf8::decode(text, pos);
    if (c.cp == utf8::kInvalid) {
      cps.push_back(utf8::kInvalid);
      raw.push_back(static_cast<unsigned char>(text[pos]));
    } else {
      decompose(c.cp, cps);
    }
    pos += c.len;
  }
  // Canonical ordering: stable-sort each run of non-starters by class.
  for (std::size_t i = 0; i < cps.size();) {
    if (combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition: a character joins the last starter unless a
  // character between them blocks it (same or higher class, or a starter).
  std::vector<char32_t> out;
  out.reserve(cps.size());
  std::size_t starter = SIZE_MAX;
  int last_class = -1;  // class of the last kept character after the starter; -1: none yet
  for (const char32_t cp : cps) {
    const int cls = combining_class(cp);
    const bool blocked = last_class != -1 && last_class >= cls;
    if (starter != SIZE_MAX && !blocked && cp != utf8::kInvalid) {
      if (const char32_t composite = compose_pair(out[starter], cp); composite != 0) {
        out[starter] = composite;
        continue;
      }
    }
    if (cls == 0) {
      starter = out.size();
      last_class = -1;
    } else {
      last_class = cls;
    }
    out.push_back(cp);
  }
  std::string result;
  result.reserve(text.size());
  std::size_t next_raw = 0;
  for (const char32_t cp : out) {
    if (cp == utf8::kInvalid) {
      result += static_cast<char>(raw[next_raw++]);
    } else {
      utf8::append(result, cp);
    }
  }
  return result;
}

}  // namespace gptq::tok
