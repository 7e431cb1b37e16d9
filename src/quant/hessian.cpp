#include "quant/hessian.h"

#include <cblas.h>

#include <algorithm>
#include <string>

#include "core/error.h"

namespace gptq::quant {

HessianAccumulator::HessianAccumulator(int64_t in_features) : k_(in_features) {
  if (in_features <= 0) {
    throw Error(ErrorKind::kInvalidArgument,
                "HessianAccumulator: in_features must be positive, got " +
                    std::to_string(in_features));
  }
  h_.assign(size_t(k_ * k_), 0.0);
}

void HessianAccumulator::add(const float* X, int64_t rows) {
  if (rows < 0) {
    throw Error(ErrorKind::kInvalidArgument,
                "HessianAccumulator::add: negative row count " + std::to_string(rows));
  }
  if (rows == 0) return;
  if (X == nullptr) {
    throw Error(ErrorKind::kInvalidArgument, "HessianAccumulator::add: X is null");
  }
  if (widened_.empty()) widened_.resize(size_t(kChunkRows * k_));

  const int64_t n_new = samples_ + rows;
  // The old mean is rescaled once (beta of the first chunk); every chunk of this batch
  // then adds with the batch's common weight 2/n_new.
  const double alpha = 2.0 / double(n_new);
  double beta = double(samples_) / double(n_new);
  for (int64_t r0 = 0; r0 < rows; r0 += kChunkRows) {
    const int64_t r = std::min(kChunkRows, rows - r0);
    const float* src = X + r0 * k_;
    std::copy(src, src + r * k_, widened_.begin());
    // Upper triangle of H (row-major) += alpha · Xcᵀ Xc, Xc: [r, K].
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, blasint(k_), blasint(r), alpha,
                widened_.data(), blasint(k_), beta, h_.data(), blasint(k_));
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

}  // namespace gptq::quant
