// Prefill-path quantized linear: for many rows of x the product is compute-bound, so W is
// dequantized a column tile at a time to fp32 (OpenMP over k) and multiplied by
// OpenBLAS sgemm. A tile of kTileCols columns × all of K (4 MiB at K = 4096) is reused
// by every row of x.
#include <algorithm>
#include <string>
#include <vector>

#include "backend/cpu/fixed_blas.h"
#include "backend/cpu/qlinear.h"
#include "backend/cpu/qlinear_detail.h"
#include "core/error.h"

namespace gptq::backend::cpu {
namespace {

using detail::GroupParams;

constexpr int64_t kTileCols = 256;

// wt[k, j] = W[n0 + j, k] for k < K, j < p.width: the [K, width] row-major tile Wᵀ.
template <int Bits>
void dequantize_tile(const PackedLinearView& w, const GroupParams& p, float* wt) {
  constexpr int kValues = quant::block_values(Bits);
  const int64_t blocks = w.in_features / kValues;
  const int64_t n0 = p.c0, width = p.width;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t j = 0;
#ifdef GPTQ_QLINEAR_AVX2
    for (; j + 8 <= width; j += 8) {
      __m256i words[quant::block_words(Bits)];
      detail::load_block<Bits>(w, b, n0 + j, words);
      detail::static_for<kValues>([&](auto I) {
        const int64_t k = b * kValues + I;
        const int64_t g = w.g_idx[k];
        const __m256 q = detail::block_code_ps<Bits, I>(words);
        const __m256 v = _mm256_fmsub_ps(q, _mm256_loadu_ps(p.s_at(g, n0 + j)),
                                         _mm256_loadu_ps(p.sz_at(g, n0 + j)));
        _mm256_storeu_ps(wt + k * width + j, v);
      });
    }
#endif
    for (; j < width; ++j) {
      for (int64_t k = b * kValues; k < (b + 1) * kValues; ++k) {
        wt[k * width + j] = detail::dequant_scalar(w, p, n0 + j, k);
      }
    }
  }
}

void dequantize(const PackedLinearView& w, const GroupParams& p, float* wt) {
  switch (w.bits) {
    case 2: dequantize_tile<2>(w, p, wt); break;
    case 3: dequantize_tile<3>(w, p, wt); break;
    case 4: dequantize_tile<4>(w, p, wt); break;
    case 8: dequantize_tile<8>(w, p, wt); break;
    default:
      throw Error(ErrorKind::kUnsupported, "qlinear: bits=" + std::to_string(w.bits) +
                                               " is not supported (expected 2, 3, 4 or 8)");
  }
}

}  // namespace

void qlinear_tiled(const PackedLinearView& w, const float* x, int64_t M, float* y) {
  const int64_t K = w.in_features, N = w.out_features;
  if (M <= 0) return;
  if (M >= (int64_t{1} << 31)) {
    throw Error(ErrorKind::kInvalidArgument, "qlinear: M=" + std::to_string(M) + " rows exceed sgemm's int range");
  }
  std::vector<float> wt(std::size_t(K * std::min(kTileCols, N)));  // [K, tile width]
  GroupParams p;
  for (int64_t n0 = 0; n0 < N; n0 += kTileCols) {
    const int64_t width = std::min(kTileCols, N - n0);
    p.decode(w, n0, width);
    dequantize(w, p, wt.data());
    // y[:, n0:n0+width] = x[M, K] · wt[K, width]
    gemm(Op::kN, Op::kN, M, width, K, 1.0f, x, K, wt.data(), width, 0.0f, y + n0, N);
  }
  if (w.bias) {
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) y[m * N + n] += w.bias[n];
    }
  }
}

}  // namespace gptq::backend::cpu
