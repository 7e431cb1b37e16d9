#include "backend/cpu/cpu_linear.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#if defined(__F16C__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "backend/cpu/fixed_blas.h"
#include "core/error.h"
#include "io/checkpoint.h"

namespace gptq::backend::cpu {

namespace {
constexpr int64_t kTileRows = 64;  // rows of W widened per tile (see widened_product)

#if defined(__F16C__) && defined(__FMA__)
// 8 weights of a 16-bit row widened to fp32 in registers.
template <DType D>
inline __m256 widen8(const uint16_t* w) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
  if constexpr (D == DType::kF16) {
    return _mm256_cvtph_ps(h);
  } else {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// y[n] = Σ_k W[n, k] x[k] for a 16-bit W [N, K] row-major: the decode product (M = 1),
// bound by reading W. Widening in registers reads its 2 bytes per weight once; the tiled
// path writes and rereads a 4-byte copy. Four accumulators of 8 lanes per row, fp32.
template <DType D>
void gemv_16bit(const uint16_t* W, int64_t N, int64_t K, const float* x, float* y) {
#pragma omp parallel for schedule(static) if (N * K >= kParallelMacs)
  for (int64_t n = 0; n < N; ++n) {
    const uint16_t* w = W + n * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
      a0 = _mm256_fmadd_ps(widen8<D>(w + k), _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(widen8<D>(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
      a2 = _mm256_fmadd_ps(widen8<D>(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
      a3 = _mm256_fmadd_ps(widen8<D>(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    for (; k + 8 <= K; k += 8) a0 = _mm256_fmadd_ps(widen8<D>(w + k), _mm256_loadu_ps(x + k), a0);
    const __m256 s8 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    float sum = _mm_cvtss_f32(s4);
    for (; k < K; ++k) sum += (D == DType::kF16 ? f16_to_f32(w[k]) : bf16_to_f32(w[k])) * x[k];
    y[n] = sum;
  }
}
#endif
}  // namespace

void widened_product(int64_t N, int64_t K, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy,
                     const std::function<void(int64_t first, int64_t count, float* dst)>& widen) {
  const int64_t tiles = (N + kTileRows - 1) / kTileRows;
#pragma omp parallel if (M * N * K >= kParallelMacs)
  {
    omp_set_num_threads(1);  // OpenBLAS on this thread alone, in a team of one too (backend/cpu/fixed_blas.h)
    std::vector<float> tile(std::size_t(kTileRows * K));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t first = t * kTileRows, rows = std::min(kTileRows, N - first);
      widen(first, rows, tile.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(rows), int(K), 1.0f, x, int(ldx), tile.data(),
                  int(K), 0.0f, y + first, int(ldy));
    }
  }
}

void add_bias(std::span<const float> bias, int64_t M, float* y, int64_t ldy) {
  if (bias.empty()) return;
  for (int64_t m = 0; m < M; ++m) {
    float* row = y + m * ldy;
    for (std::size_t n = 0; n < bias.size(); ++n) row[n] += bias[n];
  }
}

DenseLinear::DenseLinear(const io::TensorView& w, const io::TensorView* bias)
    : dtype_(w.dtype), out_(0), in_(0) {
  if (w.shape.size() != 2) {
    throw Error(ErrorKind::kFormat, "tensor \"" + w.name + "\" has shape " + w.shape_string() + ", expected [out, in]");
  }
  if (dtype_ != DType::kF32 && dtype_ != DType::kF16 && dtype_ != DType::kBF16) {
    throw Error(ErrorKind::kUnsupported, "tensor \"" + w.name + "\" has dtype " + std::string(dtype_name(dtype_)) +
                                             "; dense weights must be F32, F16 or BF16");
  }
  out_ = w.shape[0];
  in_ = w.shape[1];
  bytes_.assign(w.data.begin(), w.data.end());
  if (bias != nullptr) bias_ = io::to_f32(*bias, {out_}, "dense linear bias");
}

std::string DenseLinear::describe() const { return std::string(dtype_name(dtype_)); }

void DenseLinear::widen_rows(int64_t first, int64_t count, float* dst) const {
  const int64_t n = count * in_, off = first * in_;
  if (dtype_ == DType::kF32) {
    std::memcpy(dst, bytes_.data() + off * 4, std::size_t(n) * 4);
    return;
  }
  const auto* src = reinterpret_cast<const uint16_t*>(bytes_.data()) + off;
  if (dtype_ == DType::kF16) {
    widen_f16(src, dst, n);
  } else {
    widen_bf16(src, dst, n);
  }
}

void DenseLinear::row_f32(int64_t r, float* dst) const { widen_rows(r, 1, dst); }

void DenseLinear::forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const {
  if (dtype_ == DType::kF32) {
    const auto* w = reinterpret_cast<const float*>(bytes_.data());
    // y[M, out] = x[M, in] · Wᵀ in fixed tiles (at M = 1, OpenBLAS streams each tile's W rows once).
    gemm(Op::kN, Op::kT, M, out_, in_, 1.0f, x, ldx, w, in_, 0.0f, y, ldy);
  } else {
#if defined(__F16C__) && defined(__FMA__)
    if (M == 1) {
      const auto* w = reinterpret_cast<const uint16_t*>(bytes_.data());
      if (dtype_ == DType::kF16) {
        gemv_16bit<DType::kF16>(w, out_, in_, x, y);
      } else {
        gemv_16bit<DType::kBF16>(w, out_, in_, x, y);
      }
      add_bias(bias_, M, y, ldy);
      return;
    }
#endif
    widened_product(out_, in_, x, M, ldx, y, ldy,
                    [this](int64_t first, int64_t count, float* dst) { widen_rows(first, count, dst); });
  }
  add_bias(bias_, M, y, ldy);
}

}  // namespace gptq::backend::cpu
