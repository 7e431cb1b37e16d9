// CPU linear layers: every Linear the CPU backend hands out derives from CpuLinear.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "backend/backend.h"

namespace gptq::backend::cpu {

// Below this many multiply-adds a product runs on one thread: forking the team costs
// more than it saves, and on a loaded machine every fork waits for a descheduled thread
// (stories15M's 768 x 288 decode products, 0.2 M MACs each, ran 10-20x slower in eval
// with two threads and a competing process).
inline constexpr int64_t kParallelMacs = int64_t(1) << 22;

// y[M, N] = x[M, K] Wᵀ for a W kept in a compact form, where widen(first, count, dst)
// writes W's rows [first, first + count) to dst as fp32 [count, K]. One parallel region:
// each thread widens 64-row tiles into its own scratch (64 x 4096 x 4 B = 1 MiB stays in
// L2 while sgemm reads it M times) and multiplies them with single-threaded BLAS
// (OpenBLAS runs serially inside an OpenMP region).
void widened_product(int64_t N, int64_t K, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy,
                     const std::function<void(int64_t first, int64_t count, float* dst)>& widen);

// y[m, :] += bias for m < M (no-op for an empty bias).
void add_bias(std::span<const float> bias, int64_t M, float* y, int64_t ldy);

class CpuLinear : public Linear {
 public:
  // y[m, :] = x[m, :] Wᵀ + b for m < M; x row stride ldx, y row stride ldy (floats).
  virtual void forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const = 0;
};

// Dense weights kept in the checkpoint's dtype (F32, F16 or BF16): no fp32 copy of a
// 16-bit model. F32 multiplies straight through OpenBLAS; 16-bit weights are widened
// tile by tile into per-thread fp32 scratch and multiplied there; one row of x (decode)
// multiplies them widened in registers instead (gemv_16bit in cpu_linear.cpp).
class DenseLinear final : public CpuLinear {
 public:
  DenseLinear(const io::TensorView& weight, const io::TensorView* bias);
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  uint64_t weight_bytes() const override { return bytes_.size(); }
  std::string describe() const override;
  void forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const override;

  // Row r of W ([out, in]) widened to fp32 into dst[in].
  void row_f32(int64_t r, float* dst) const;

 private:
  void widen_rows(int64_t first, int64_t count, float* dst) const;  // dst: [count, in]

  std::vector<std::byte> bytes_;  // W [out, in] in dtype_
  DType dtype_;
  std::vector<float> bias_;       // [out] or empty
  int64_t out_, in_;
};

}  // namespace gptq::backend::cpu
