// Decode-path quantized linear: y = x · Wᵀ for a few rows of x, reading packed qweight
// words directly (no dequantized copy of W).
//
// Work split: OpenMP threads own disjoint column ranges. Two ways to apply group
// parameters:
//   sequential groups (g_idx[k] = k / group_size, group_size a multiple of the block):
//     groups outer, column tiles inner, so each group reads a few qweight rows left to
//     right and y stays in L1; per group acc = Σ_k x[k] * q[k] over raw codes, then
//     y += s * acc - s*zero * Σ_k x[k]  -- one fma per weight, params once per group;
//   any other g_idx (act-order): column tiles outer, all of K inner, so the tile's
//     decoded parameters (G × 8 floats per vector) stay in L1 while k jumps between
//     groups; per k, w = q * s[g_idx[k]] - s*zero[g_idx[k]], then acc += x[k] * w.
//     The qweight rows are then read with a stride of N words, hence the prefetch.
#include <algorithm>
#include <string>
#include <vector>

#include <omp.h>

#include "backend/cpu/qlinear.h"
#include "backend/cpu/qlinear_detail.h"
#include "core/error.h"

namespace gptq::backend::cpu {
namespace {

using detail::GroupParams;

// One call's inputs for at most kFusedMaxRows rows of x.
struct Rows {
  const PackedLinearView& w;
  const GroupParams& p;
  const float* x;     // [rows, K]
  const float* xsum;  // [rows, G] per-group sums of x (sequential groups only)
  int64_t rows;
  float* y;           // [rows, N]
};

// Folds a k-range's accumulator of column n and row m into y.
inline void fold_scalar(const Rows& r, bool sequential, int64_t g, int64_t m, int64_t n, float acc) {
  float& out = r.y[m * r.w.out_features + n];
  if (sequential) {
    out += *r.p.s_at(g, n) * acc - *r.p.sz_at(g, n) * r.xsum[m * r.w.num_groups + g];
  } else {
    out += acc;
  }
}

// Column n over k in [k0, k1): for tails narrower than a vector, and for builds without AVX2.
void column_scalar(const Rows& r, bool sequential, int64_t g, int64_t n, int64_t k0, int64_t k1) {
  const int64_t K = r.w.in_features, N = r.w.out_features;
  float acc[kFusedMaxRows] = {};
  for (int64_t k = k0; k < k1; ++k) {
    auto q = float(quant::get_code(r.w.qweight + n, N, k, r.w.bits));
    if (!sequential) {
      const int64_t gk = r.w.g_idx[k];
      q = q * *r.p.s_at(gk, n) - *r.p.sz_at(gk, n);
    }
    for (int64_t m = 0; m < r.rows; ++m) acc[m] += r.x[m * K + k] * q;
  }
  for (int64_t m = 0; m < r.rows; ++m) fold_scalar(r, sequential, g, m, n, acc[m]);
}

#ifdef GPTQ_QLINEAR_AVX2
// Columns [n, n + 8V) over k in [k0, k1) (whole blocks), M rows of x.
template <int Bits, int M, int V, bool kSequential>
void tile_avx2(const Rows& r, int64_t g, int64_t n, int64_t k0, int64_t k1) {
  constexpr int kValues = quant::block_values(Bits);
  constexpr int kWords = quant::block_words(Bits);
  const int64_t K = r.w.in_features, N = r.w.out_features;
  __m256 acc[M][V];
  for (auto& row : acc) {
    for (auto& a : row) a = _mm256_setzero_ps();
  }
  for (int64_t kb = k0; kb < k1; kb += kValues) {
    __m256i words[V][kWords];
    for (int v = 0; v < V; ++v) detail::load_block<Bits>(r.w, kb / kValues, n + 8 * v, words[v]);
    // Eight blocks ahead: rows N words apart defeat the hardware's page-local prefetcher.
    if (kb + 8 * kValues < k1) {
      const int32_t* ahead = r.w.qweight + (kb / kValues + 8) * kWords * N + n;
      for (int j = 0; j < kWords; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(ahead + j * N), _MM_HINT_T0);
        if constexpr (V > 2) _mm_prefetch(reinterpret_cast<const char*>(ahead + j * N + 16), _MM_HINT_T0);
      }
    }
    detail::static_for<kValues>([&](auto I) {
      const int64_t k = kb + I;
      __m256 q[V];
      for (int v = 0; v < V; ++v) q[v] = detail::block_code_ps<Bits, I>(words[v]);
      if constexpr (!kSequential) {
        const int64_t gk = r.w.g_idx[k];
        for (int v = 0; v < V; ++v) {
          q[v] = _mm256_fmsub_ps(q[v], _mm256_loadu_ps(r.p.s_at(gk, n + 8 * v)),
                                 _mm256_loadu_ps(r.p.sz_at(gk, n + 8 * v)));
        }
      }
      for (int m = 0; m < M; ++m) {
        const __m256 xb = _mm256_broadcast_ss(r.x + m * K + k);
        for (int v = 0; v < V; ++v) acc[m][v] = _mm256_fmadd_ps(q[v], xb, acc[m][v]);
      }
    });
  }
  for (int m = 0; m < M; ++m) {
    for (int v = 0; v < V; ++v) {
      float* out = r.y + m * N + n + 8 * v;
      __m256 yv = _mm256_loadu_ps(out);
      if constexpr (kSequential) {
        const __m256 xs = _mm256_set1_ps(r.xsum[m * r.w.num_groups + g]);
        yv = _mm256_fmadd_ps(_mm256_loadu_ps(r.p.s_at(g, n + 8 * v)), acc[m][v], yv);
        yv = _mm256_fnmadd_ps(_mm256_loadu_ps(r.p.sz_at(g, n + 8 * v)), xs, yv);
      } else {
        yv = _mm256_add_ps(yv, acc[m][v]);
      }
      _mm256_storeu_ps(out, yv);
    }
  }
}
#endif

// Columns [c0, c1) over k in [k0, k1): wide tiles, then single vectors, then scalars.
template <int Bits, int M, bool kSequential>
void columns(const Rows& r, int64_t g, int64_t c0, int64_t c1, int64_t k0, int64_t k1) {
  int64_t n = c0;
#ifdef GPTQ_QLINEAR_AVX2
  // Four vectors of columns give one or two rows enough independent fma chains; with
  // more rows, two vectors keep the accumulators within the 16 ymm registers.
  constexpr int kWide = M <= 2 ? 4 : 2;
  for (; n + 8 * kWide <= c1; n += 8 * kWide) tile_avx2<Bits, M, kWide, kSequential>(r, g, n, k0, k1);
  for (; n + 8 <= c1; n += 8) tile_avx2<Bits, M, 1, kSequential>(r, g, n, k0, k1);
#endif
  for (; n < c1; ++n) column_scalar(r, kSequential, g, n, k0, k1);
}

template <int Bits, int M>
void fused_rows(const PackedLinearView& w, const float* x, float* y) {
  const int64_t K = w.in_features, N = w.out_features, G = w.num_groups;
  const bool sequential =
      w.sequential_groups && (G == 1 || w.group_size % quant::block_values(Bits) == 0);
  std::vector<float> xsum(std::size_t(M * G), 0.0f);
  if (sequential) {
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) xsum[m * G + w.g_idx[k]] += x[m * K + k];
    }
  }
#pragma omp parallel
  {
    // Split whole 8-column vectors evenly; the last thread also takes the N % 8 tail.
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t vectors = N / 8;
    const int64_t c0 = vectors * t / threads * 8;
    const int64_t c1 = t + 1 == threads ? N : vectors * (t + 1) / threads * 8;
    if (c1 > c0) {
      GroupParams p;
      p.decode(w, c0, c1 - c0);
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = c0; n < c1; ++n) y[m * N + n] = w.bias ? w.bias[n] : 0.0f;
      }
      const Rows r{w, p, x, xsum.data(), M, y};
      if (sequential) {
        const int64_t span = G == 1 ? K : w.group_size;
        for (int64_t g = 0; g < G; ++g) {
          columns<Bits, M, true>(r, g, c0, c1, g * span, std::min(K, (g + 1) * span));
        }
      } else {
        columns<Bits, M, false>(r, 0, c0, c1, 0, K);
      }
    }
  }
}

template <int Bits>
void fused_bits(const PackedLinearView& w, const float* x, int64_t M, float* y) {
  const int64_t K = w.in_features, N = w.out_features;
  for (int64_t m0 = 0; m0 < M; m0 += kFusedMaxRows) {
    const float* xs = x + m0 * K;
    float* ys = y + m0 * N;
    switch (std::min(kFusedMaxRows, M - m0)) {
      case 1: fused_rows<Bits, 1>(w, xs, ys); break;
      case 2: fused_rows<Bits, 2>(w, xs, ys); break;
      case 3: fused_rows<Bits, 3>(w, xs, ys); break;
      default: fused_rows<Bits, 4>(w, xs, ys); break;
    }
  }
}

}  // namespace

void qlinear_fused(const PackedLinearView& w, const float* x, int64_t M, float* y) {
  switch (w.bits) {
    case 2: fused_bits<2>(w, x, M, y); break;
    case 3: fused_bits<3>(w, x, M, y); break;
    case 4: fused_bits<4>(w, x, M, y); break;
    case 8: fused_bits<8>(w, x, M, y); break;
    default:
      throw Error(ErrorKind::kUnsupported, "qlinear: bits=" + std::to_string(w.bits) +
                                               " is not supported (expected 2, 3, 4 or 8)");
  }
}

}  // namespace gptq::backend::cpu
