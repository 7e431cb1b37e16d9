#include "backend/cpu/hessian.h"

#include <cblas.h>

#include <algorithm>
#include <string>

#include "backend/cpu/fixed_blas.h"
#include "core/error.h"

namespace gptq::backend::cpu {

HessianAccumulator::HessianAccumulator(int64_t in_features) : k_(in_features) {
  if (in_features <= 0) {
    throw Error(ErrorKind::kInvalidArgument,
                "HessianAccumulator: in_features must be positive, got " +
                    std::to_string(in_features));
  }
  h_.assign(size_t(k_ * k_), 0.0);
}

void HessianAccumulator::assign(std::vector<double> h, int64_t samples) {
  if (int64_t(h.size()) != k_ * k_ || samples < 0) {
    throw Error(ErrorKind::kInvalidArgument, "HessianAccumulator::assign: expected " + std::to_string(k_ * k_) +
                                                 " values and samples >= 0, got " + std::to_string(h.size()) +
                                                 " and " + std::to_string(samples));
  }
  h_ = std::move(h);
  samples_ = samples;
}

void HessianAccumulator::add(const float* X, int64_t rows, int64_t stride) {
  if (rows < 0) {
    throw Error(ErrorKind::kInvalidArgument,
                "HessianAccumulator::add: negative row count " + std::to_string(rows));
  }
  if (rows == 0) return;
  if (X == nullptr) {
    throw Error(ErrorKind::kInvalidArgument, "HessianAccumulator::add: X is null");
  }
  if (stride == 0) stride = k_;
  if (stride < k_) {
    throw Error(ErrorKind::kInvalidArgument, "HessianAccumulator::add: row stride " + std::to_string(stride) +
                                                 " < K = " + std::to_string(k_));
  }
  if (widened_.empty()) widened_.resize(size_t(kChunkRows * k_));

  const int64_t n_new = samples_ + rows;
  // The old mean is rescaled once (beta of the first chunk); every chunk of this batch
  // then adds with the batch's common weight 2/n_new.
  const double alpha = 2.0 / double(n_new);
  double beta = double(samples_) / double(n_new);
  for (int64_t r0 = 0; r0 < rows; r0 += kChunkRows) {
    const int64_t r = std::min(kChunkRows, rows - r0);
    for (int64_t i = 0; i < r; ++i) {
      const float* src = X + (r0 + i) * stride;
      std::copy(src, src + k_, widened_.begin() + i * k_);
    }
    // Upper triangle of H (row-major) += alpha · Xcᵀ Xc, Xc: [r, K].
    syrk_upper(k_, r, alpha, widened_.data(), k_, beta, h_.data(), k_);
    beta = 1.0;
  }
  samples_ = n_new;

  // Mirror the upper triangle so matrix() is a plain dense symmetric matrix. O(K²),
  // small next to the rows · K² of the syrk.
#pragma omp parallel for schedule(static)
  for (int64_t i = 1; i < k_; ++i) {
    for (int64_t j = 0; j < i; ++j) h_[size_t(i * k_ + j)] = h_[size_t(j * k_ + i)];
  }
}

double hessian_error(const float* W, const quant::QuantizedLinear& q, const double* H) {
  const int64_t N = q.out_features;
  const int64_t K = q.in_features;
  constexpr int64_t kRows = 64;  // rows per dsymm, bounds the scratch to 2 · 64 · K
  std::vector<double> D(static_cast<size_t>(kRows * K));
  std::vector<double> DH(static_cast<size_t>(kRows * K));
  double total = 0.0;
  for (int64_t n0 = 0; n0 < N; n0 += kRows) {
    const int64_t r = std::min(kRows, N - n0);
    for (int64_t a = 0; a < r; ++a) {
      for (int64_t k = 0; k < K; ++k) {
        D[a * K + k] = double(W[(n0 + a) * K + k]) - double(q.dequant(n0 + a, k));
      }
    }
    // DH: [r, K] = D [r, K] · H [K, K] (H symmetric).
    cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, blasint(r), blasint(K), 1.0, H,
                blasint(K), D.data(), blasint(K), 0.0, DH.data(), blasint(K));
    for (int64_t i = 0; i < r * K; ++i) total += D[i] * DH[i];
  }
  return total;
}

}  // namespace gptq::backend::cpu
