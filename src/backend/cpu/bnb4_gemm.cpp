// Fast 4-bit (NF4/FP4) products. Up to kBnbFusedMaxRows rows of x: codes decoded in
// registers, OpenMP over output rows; each row of W is walked in segments that lie in
// one absmax block, acc_seg = Σ x[k] · code(q_k), then y += absmax_b · acc_seg (one
// multiply per block instead of per weight). With AVX2, 8 codes (4 bytes) at a time:
// the nibbles shifted into 8 lanes, looked up in the 16-entry book with two 8-lane
// permutes, bit 3 choosing between them. More rows: tiles of W dequantized to fp32, then
// sgemm (widened_product, as the dense 16-bit path does).

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/bnb_linear.h"
#include "format/bnb_codebook.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GPTQ_BNB_AVX2 1
#endif

namespace gptq::backend::cpu {

using quant::bnb::BnbPacked;

namespace {


const float* book(const BnbPacked& w) {
  return (w.type == quant::bnb::BnbType::kFp4 ? quant::bnb::kFp4 : quant::bnb::kNf4).data();
}

// acc[m] += Σ_{k in [k0, k1)} x[m, k] · code(q[i0 + k]) for one row of W starting at flat index i0.
template <int M>
void segment_scalar(const BnbPacked& w, const float* table, const float* x, int64_t ldx, int64_t i0, int64_t k0,
                    int64_t k1, float* acc) {
  for (int64_t k = k0; k < k1; ++k) {
    const float c = table[quant::bnb::code_at(w, i0 + k)];
    for (int m = 0; m < M; ++m) acc[m] += x[m * ldx + k] * c;
  }
}

#ifdef GPTQ_BNB_AVX2
struct Book {
  __m256 lo, hi;  // codes 0-7 and 8-15
  explicit Book(const float* t) : lo(_mm256_loadu_ps(t)), hi(_mm256_loadu_ps(t + 8)) {}
  // The 8 weights of the 4 bytes at p (weight 2j in the high nibble of byte j).
  __m256 decode(const uint8_t* p) const {
    uint32_t word;
    std::memcpy(&word, p, 4);
    const __m256i shifts = _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24);
    const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(word)), shifts), _mm256_set1_epi32(15));
    const __m256 l = _mm256_permutevar8x32_ps(lo, idx), h = _mm256_permutevar8x32_ps(hi, idx);
    return _mm256_blendv_ps(l, h, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
};

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

// y[m, n] for one output row n and M rows of x.
template <int M>
void row_fused(const BnbPacked& w, const float* table, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  const int64_t K = w.in_features, B = w.blocksize, i0 = n * K;
  float total[M] = {};
#ifdef GPTQ_BNB_AVX2
  const Book bk(table);
  __m256 vtotal[M];
  for (auto& v : vtotal) v = _mm256_setzero_ps();
#endif
  for (int64_t k0 = 0; k0 < K;) {
    const int64_t b = (i0 + k0) / B;
    const int64_t k1 = std::min(K, (b + 1) * B - i0);
    const float a = w.block_absmax(b);
    float acc[M] = {};
    int64_t k = k0;
    // Odd flat start (K odd): one weight on its own, then whole bytes.
    if ((i0 + k) % 2 != 0) {
      segment_scalar<M>(w, table, x, ldx, i0, k, k + 1, acc);
      ++k;
    }
#ifdef GPTQ_BNB_AVX2
    __m256 vacc[M];
    for (auto& v : vacc) v = _mm256_setzero_ps();
    for (; k + 8 <= k1; k += 8) {
      const __m256 wv = bk.decode(w.data.data() + (i0 + k) / 2);
      for (int m = 0; m < M; ++m) vacc[m] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + m * ldx + k), vacc[m]);
    }
    const __m256 av = _mm256_set1_ps(a);
    for (int m = 0; m < M; ++m) vtotal[m] = _mm256_fmadd_ps(vacc[m], av, vtotal[m]);
#endif
    segment_scalar<M>(w, table, x, ldx, i0, k, k1, acc);
    for (int m = 0; m < M; ++m) total[m] += acc[m] * a;
    k0 = k1;
  }
  const float bias = w.bias.empty() ? 0.0f : w.bias[std::size_t(n)];
  for (int m = 0; m < M; ++m) {
#ifdef GPTQ_BNB_AVX2
    total[m] += hsum(vtotal[m]);
#endif
    y[m * ldy + n] = total[m] + bias;
  }
}

template <int M>
void fused(const BnbPacked& w, const float* x, int64_t ldx, float* y, int64_t ldy) {
  const float* table = book(w);
  const int64_t N = w.out_features;
#pragma omp parallel for schedule(static) if (M * N * w.in_features >= kParallelMacs)
  for (int64_t n = 0; n < N; ++n) row_fused<M>(w, table, x, ldx, n, y, ldy);
}

void tiled(const BnbPacked& w, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) {
  const float* table = book(w);
  const int64_t K = w.in_features;
  widened_product(w.out_features, K, x, M, ldx, y, ldy, [&](int64_t first, int64_t count, float* dst) {
    for (int64_t i = first * K, j = 0; j < count * K; ++i, ++j) {
      dst[j] = table[quant::bnb::code_at(w, i)] * w.block_absmax(i / w.blocksize);
    }
  });
  add_bias(w.bias, M, y, ldy);
}

}  // namespace

void bnb4_gemm(const BnbPacked& w, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) {
  if (M > kBnbFusedMaxRows) {
    tiled(w, x, M, ldx, y, ldy);
    return;
  }
  switch (M) {
    case 0: break;
    case 1: fused<1>(w, x, ldx, y, ldy); break;
    case 2: fused<2>(w, x, ldx, y, ldy); break;
    case 3: fused<3>(w, x, ldx, y, ldy); break;
    default: fused<4>(w, x, ldx, y, ldy); break;
  }
}

}  // namespace gptq::backend::cpu
