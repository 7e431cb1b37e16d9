// Unicode data for NFC, generated into unicode_tables.cpp by scripts/make_unicode_tables.py.
// Every table is sorted by its first field for binary search.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gptq::tok::unicode {

struct CombiningRange {
  char32_t first, last;
  uint8_t ccc;  // canonical combining class, non-zero
};
struct Decomposition {
  char32_t cp, first, second;  // second == 0 for a singleton
};
struct Composition {
  char32_t first, second, composite;
};

extern const CombiningRange kCombiningClasses[];
extern const Decomposition kDecompositions[];
extern const Composition kCompositions[];
extern const std::size_t kCombiningClassCount, kDecompositionCount, kCompositionCount;

}  // namespace gptq::tok::unicode
