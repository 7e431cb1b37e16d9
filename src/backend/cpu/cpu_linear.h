// CPU linear layers: every Linear the CPU backend hands out derives from CpuLinear.
#pragma once

#include <vector>

#include "backend/backend.h"

namespace gptq::backend::cpu {

class CpuLinear : public Linear {
 public:
  // y[m, :] = x[m, :] Wᵀ + b for m < M; x row stride ldx, y row stride ldy (floats).
  virtual void forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const = 0;
};

// fp32 weights, products through OpenBLAS sgemm (all cores).
class DenseLinear final : public CpuLinear {
 public:
  DenseLinear(std::vector<float> weight, int64_t out, int64_t in, std::vector<float> bias);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  uint64_t weight_bytes() const override { return weight_.size() * sizeof(float); }
  std::string describe() const override { return "f32"; }
  void forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const override;

  const float* weight() const { return weight_.data(); }  // [out, in]
  const std::vector<float>& bias() const { return bias_; }

 private:
  std::vector<float> weight_;  // [out, in]
  std::vector<float> bias_;    // [out] or empty
  int64_t out_, in_;
};

}  // namespace gptq::backend::cpu
