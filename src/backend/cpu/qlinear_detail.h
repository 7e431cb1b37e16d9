// Pieces shared by the fused and tiled quantized-linear kernels (internal to
// src/backend/cpu/qlinear_*.cpp): fp32 group parameters and, with AVX2, extraction of
// 8 columns' codes at once from packed qweight words.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "backend/cpu/qlinear.h"
#include "core/dtype.h"
#include "format/gptq_format.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GPTQ_QLINEAR_AVX2 1
#endif

namespace gptq::backend::cpu::detail {

// fp32 scale and scale*zero of columns [c0, c0 + width) for every group, so a weight is
// one fma away from its code: w = q * s - sz. Stored per 8-column vector, all groups of a
// vector together ([ceil(width/8), G, 8]), so a column tile's parameters are a few KiB
// of contiguous memory whatever g_idx looks like; a [G, width] table would put the
// groups of one column a whole row apart, on the same L1 sets.
struct GroupParams {
  int64_t c0 = 0;
  int64_t width = 0;
  int64_t groups = 0;
  std::vector<float> s;
  std::vector<float> sz;

  void decode(const PackedLinearView& w, int64_t first_col, int64_t cols) {
    c0 = first_col;
    width = cols;
    groups = w.num_groups;
    const int64_t zcols = quant::qzeros_cols(w.out_features, w.bits);
    const auto size = std::size_t((width + 7) / 8 * 8 * groups);
    s.assign(size, 0.0f);
    sz.assign(size, 0.0f);
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t n = c0; n < c0 + width; ++n) {
        const float scale = f16_to_f32(w.scales[g * w.out_features + n]);
        const auto zero = float(quant::get_code(w.qzeros + g * zcols, 1, n, w.bits));
        s[index(g, n)] = scale;
        sz[index(g, n)] = scale * zero;
      }
    }
  }
  // For n - c0 a multiple of 8, the 8 values of columns n .. n+7 are contiguous.
  std::size_t index(int64_t g, int64_t n) const {
    const int64_t j = n - c0;
    return std::size_t((j / 8 * groups + g) * 8 + j % 8);
  }
  const float* s_at(int64_t g, int64_t n) const { return &s[index(g, n)]; }
  const float* sz_at(int64_t g, int64_t n) const { return &sz[index(g, n)]; }
};

// Weight W[n, k] from the packed tensors and decoded parameters (scalar paths and tails).
inline float dequant_scalar(const PackedLinearView& w, const GroupParams& p, int64_t n, int64_t k) {
  const auto q = float(quant::get_code(w.qweight + n, w.out_features, k, w.bits));
  const int64_t g = w.g_idx[k];
  return q * *p.s_at(g, n) - *p.sz_at(g, n);
}

// Calls f(std::integral_constant<int, I>) for I = 0 .. Count-1, unrolled at compile time.
template <int Count, class F>
inline void static_for(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
  }(std::make_integer_sequence<int, Count>{});
}

#ifdef GPTQ_QLINEAR_AVX2
// Code I of a block for 8 adjacent columns: words[j] holds word j of the block for those
// columns. Shifts are compile-time; a code crossing a word (3-bit codes 10 and 21) takes
// its high bits from the next word.
template <int Bits, int I>
inline __m256 block_code_ps(const __m256i* words) {
  constexpr int bit = I * Bits;
  constexpr int word = bit / 32;
  constexpr int shift = bit % 32;
  __m256i v = _mm256_srli_epi32(words[word], shift);
  if constexpr (shift + Bits > 32) {
    v = _mm256_or_si256(v, _mm256_slli_epi32(words[word + 1], 32 - shift));
  }
  if constexpr (shift + Bits != 32) {
    v = _mm256_and_si256(v, _mm256_set1_epi32(int(quant::code_mask(Bits))));
  }
  return _mm256_cvtepi32_ps(v);
}

// Loads the block_words(Bits) words of block `block` for columns n .. n+7.
template <int Bits>
inline void load_block(const PackedLinearView& w, int64_t block, int64_t n, __m256i* words) {
  constexpr int kWords = quant::block_words(Bits);
  const int32_t* base = w.qweight + block * kWords * w.out_features + n;
  for (int j = 0; j < kWords; ++j) {
    words[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + j * w.out_features));
  }
}
#endif

}  // namespace gptq::backend::cpu::detail
