#include "backend/cpu/cpu_linear.h"

#include <cblas.h>

#include "core/error.h"

namespace gptq::backend::cpu {

DenseLinear::DenseLinear(std::vector<float> weight, int64_t out, int64_t in, std::vector<float> bias)
    : weight_(std::move(weight)), bias_(std::move(bias)), out_(out), in_(in) {
  if (int64_t(weight_.size()) != out * in) {
    throw Error(ErrorKind::kInvalidArgument, "dense linear: weight size does not match [out, in]");
  }
  if (!bias_.empty() && int64_t(bias_.size()) != out) {
    throw Error(ErrorKind::kInvalidArgument, "dense linear: bias size does not match out");
  }
}

void DenseLinear::forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const {
  if (M == 1) {
    // y = W x: sgemv streams W once, which is what decode is bound by.
    cblas_sgemv(CblasRowMajor, CblasNoTrans, int(out_), int(in_), 1.0f, weight_.data(), int(in_), x, 1,
                0.0f, y, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(out_), int(in_), 1.0f, x, int(ldx),
                weight_.data(), int(in_), 0.0f, y, int(ldy));
  }
  if (!bias_.empty()) {
    for (int64_t m = 0; m < M; ++m) {
      float* row = y + m * ldy;
      for (int64_t n = 0; n < out_; ++n) row[n] += bias_[n];
    }
  }
}

}  // namespace gptq::backend::cpu
