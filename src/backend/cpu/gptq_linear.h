// A GPTQ-quantized linear layer on the CPU: keeps the packed tensors and multiplies
// straight from them (src/backend/cpu/qlinear.h picks the kernel by batch size).
#pragma once

#include "backend/cpu/cpu_linear.h"
#include "backend/cpu/qlinear.h"
#include "format/packing.h"

namespace gptq::backend::cpu {

class GptqLinear final : public CpuLinear {
 public:
  explicit GptqLinear(quant::PackedLinear packed);  // v2 zeros; validated
  int64_t in_features() const override { return packed_.in_features; }
  int64_t out_features() const override { return packed_.out_features; }
  uint64_t weight_bytes() const override;
  std::string describe() const override;
  void forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const override;
  const quant::PackedLinear& packed() const { return packed_; }

 private:
  quant::PackedLinear packed_;
  PackedLinearView view_;
};

}  // namespace gptq::backend::cpu
