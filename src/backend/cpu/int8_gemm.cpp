// Fast LLM.int8 product (definition in bnb_linear.h). The activations are quantized
// once per call to int16 lanes (values in [-127, 127]); each output row's int8 weights are
// widened 16 at a time and multiplied with _mm256_madd_epi16, pairs summed into int32
// lanes (|sum| <= K · 127², exact in int32 for K < 133 000); up to 4 rows of x share each
// widened weight vector. OpenMP over output rows. The outlier columns, few by design,
// are a short fp32 loop over their indices.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/bnb_linear.h"
#include "core/error.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GPTQ_INT8_AVX2 1
#endif

namespace gptq::backend::cpu {

using quant::bnb::BnbPacked;

namespace {

constexpr int kRowBlock = 4;

struct QuantizedX {
  int64_t K = 0;
  std::vector<int16_t> ca;       // [M, K]
  std::vector<float> row_scale;  // [M] r[m]
  std::vector<int64_t> outliers; // outlier column indices, ascending
};

QuantizedX quantize_x(const BnbPacked& w, const float* x, int64_t M, int64_t ldx) {
  const int64_t K = w.in_features;
  const float t = w.threshold;
  QuantizedX q{.K = K};
  std::vector<char> is_outlier(static_cast<std::size_t>(K), 0);
  if (t > 0.0f) {
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) is_outlier[std::size_t(k)] |= std::fabs(x[m * ldx + k]) >= t;
    }
    for (int64_t k = 0; k < K; ++k) {
      if (is_outlier[std::size_t(k)]) q.outliers.push_back(k);
    }
  }
  q.ca.resize(std::size_t(M * K));
  q.row_scale.resize(std::size_t(M));
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    float r = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      if (t <= 0.0f || std::fabs(xr[k]) < t) r = std::max(r, std::fabs(xr[k]));
    }
    q.row_scale[std::size_t(m)] = r;
    const float scale = r > 0.0f ? 127.0f / r : 0.0f;
    int16_t* out = &q.ca[std::size_t(m * K)];
    for (int64_t k = 0; k < K; ++k) out[k] = is_outlier[std::size_t(k)] ? 0 : int16_t(std::nearbyint(xr[k] * scale));
  }
  return q;
}

// Σ_k ca[m, k] · cb[k] for R rows of ca.
template <int R>
void dots(const int16_t* ca, int64_t K, const int8_t* cb, int32_t* out) {
  int64_t k = 0;
  int32_t tail[R] = {};
#ifdef GPTQ_INT8_AVX2
  __m256i acc[R];
  for (auto& a : acc) a = _mm256_setzero_si256();
  for (; k + 16 <= K; k += 16) {
    const __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cb + k)));
    for (int r = 0; r < R; ++r) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ca + r * K + k));
      acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(xv, wv));
    }
  }
  for (int r = 0; r < R; ++r) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc[r]), _mm256_extracti128_si256(acc[r], 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    tail[r] = _mm_cvtsi128_si32(s);
  }
#endif
  for (; k < K; ++k) {
    for (int r = 0; r < R; ++r) tail[r] += int32_t(ca[r * K + k]) * int32_t(cb[k]);
  }
  for (int r = 0; r < R; ++r) out[r] = tail[r];
}

template <int R>
void row_block(const BnbPacked& w, const QuantizedX& q, const float* x, int64_t ldx, int64_t m0, int64_t n, float* y,
               int64_t ldy) {
  const int64_t K = w.in_features;
  const auto* cb = reinterpret_cast<const int8_t*>(w.data.data()) + n * K;
  int32_t acc[R];
  dots<R>(&q.ca[std::size_t(m0 * K)], K, cb, acc);
  const float scb = w.absmax[std::size_t(n)], wscale = scb * (1.0f / 127.0f);
  const float bias = w.bias.empty() ? 0.0f : w.bias[std::size_t(n)];
  for (int r = 0; r < R; ++r) {
    const int64_t m = m0 + r;
    // Explicit fused multiply-adds, as in the twin (bnb_ref.cpp): left to the compiler,
    // contraction differs between the two (it did at -march=native on AVX-512: 1 ulp).
    float fp = 0.0f;
    for (const int64_t k : q.outliers) fp = std::fma(x[m * ldx + k], float(cb[k]) * wscale, fp);
    y[m * ldy + n] = std::fma(float(acc[r]), q.row_scale[std::size_t(m)] * scb * (1.0f / 16129.0f), fp) + bias;
  }
}

}  // namespace

void int8_gemm(const BnbPacked& w, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) {
  const int64_t K = w.in_features, N = w.out_features;
  GPTQ_CHECK(K < 133000, "int8_gemm: in_features too large for exact int32 sums");
  const QuantizedX q = quantize_x(w, x, M, ldx);
#pragma omp parallel for schedule(static) if (M * N * K >= kParallelMacs)
  for (int64_t n = 0; n < N; ++n) {
    int64_t m0 = 0;
    for (; m0 + kRowBlock <= M; m0 += kRowBlock) row_block<kRowBlock>(w, q, x, ldx, m0, n, y, ldy);
    for (; m0 < M; ++m0) row_block<1>(w, q, x, ldx, m0, n, y, ldy);
  }
}

}  // namespace gptq::backend::cpu
