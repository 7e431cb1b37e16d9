// bitsandbytes-quantized linear layers on the CPU (src/format/bnb_packed.h's layout),
// multiplied straight from the packed codes:
//   4-bit:  y[m, n] = Σ_k x[m, k] · code(q[n·K + k]) · absmax[(n·K + k) / blocksize] + b[n]
//   LLM.int8, as bitsandbytes' MatMul8bitLt with a threshold t > 0 at inference:
//     outlier columns O = { k : |x[m, k]| >= t for some row m of this call },
//     row scale  r[m] = max |x[m, k]| over elements below t,
//     CA[m, k]  = round(x[m, k] · 127 / r[m]) for k ∉ O, 0 for k ∈ O   (half to even),
//     y[m, n]   = (Σ_k CA[m, k] · CB[n, k]) · r[m] · SCB[n] / 127²       (exact int32 sum)
//               + Σ_{k ∈ O} x[m, k] · CB[n, k] · SCB[n] / 127 + b[n].
//     With t = 0 there are no outliers and r[m] = max_k |x[m, k]|.
//
// Each product has a scalar twin (*_ref, element by element in k order) that the fast
// kernels are tested against (tests/test_bnb_kernels.cpp, tests/test_backend_ops.cpp).
#pragma once

#include "backend/cpu/cpu_linear.h"
#include "format/bnb_packed.h"

namespace gptq::backend::cpu {

class BnbLinear final : public CpuLinear {
 public:
  explicit BnbLinear(quant::bnb::BnbPacked packed);  // validated
  int64_t in_features() const override { return packed_.in_features; }
  int64_t out_features() const override { return packed_.out_features; }
  uint64_t weight_bytes() const override { return packed_.bytes(); }
  std::string describe() const override;
  void forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const override;
  const quant::bnb::BnbPacked& packed() const { return packed_; }

 private:
  quant::bnb::BnbPacked packed_;
};

// x: [M, K] row-major (row stride ldx), y: [M, N] (row stride ldy), overwritten.
void bnb4_gemm(const quant::bnb::BnbPacked& w, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy);
void bnb4_gemm_ref(const quant::bnb::BnbPacked& w, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy);
void int8_gemm(const quant::bnb::BnbPacked& w, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy);
void int8_gemm_ref(const quant::bnb::BnbPacked& w, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy);

// Rows of x up to which bnb4_gemm decodes codes in registers; above, it dequantizes
// tiles of W to fp32 and calls sgemm.
inline constexpr int64_t kBnbFusedMaxRows = 4;

}  // namespace gptq::backend::cpu
