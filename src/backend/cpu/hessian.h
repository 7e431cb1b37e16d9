// The GPTQ Hessian of one linear layer's input, H = 2/n Σ x xᵀ over every calibration
// row x seen so far (the Hessian of the layer's squared output error in its weights).
//
// Accumulated in the running form GPTQ uses, so H is a mean at every point and its
// entries stay on the scale of one x xᵀ however many rows arrive:
//   H ← H · n_old/n_new + 2/n_new · XᵀX,   n_new = n_old + rows.
//
// Precision: fp64 throughout. Each fp32 activation row is widened to fp64 and the batch
// Gram matrix comes from a syrk in fixed tiles (backend/cpu/fixed_blas.h: the same
// bits with any thread count). The products x_i·x_j of fp32 values are exact in
// fp64 (24 + 24 significand bits < 53), so the only error is fp64 summation, about
// n · 2^-53 relative to Σ|x_i x_j| — far below what an fp32 accumulator gives over the
// ~10^5 rows of a typical calibration set (GPTQModel's fp32 addmm loses ~n · 2^-24).
// dsyrk does half the flops of a general XᵀX GEMM; fp64 costs about 2x an fp32 syrk,
// which is accepted for a matrix whose inverse Cholesky factor drives the whole solve.
//
// Memory: K² doubles for H (K = 4096: 128 MiB; 11008: 924 MiB; 16384: 2 GiB), plus a
// widening buffer of at most kChunkRows · K doubles.
#pragma once

#include <cstdint>
#include <vector>

#include "format/quant_params.h"

namespace gptq::backend::cpu {

class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t in_features);

  // X: [rows, K] fp32 row-major activations, rows `stride` floats apart (stride 0: K).
  // rows == 0 is a no-op (an MoE expert that received no token).
  void add(const float* X, int64_t rows, int64_t stride = 0);
  // Replaces H (tests, tools): h is [K, K] row-major symmetric.
  void assign(std::vector<double> h, int64_t samples);

  // H: [K, K] fp64 row-major, symmetric (both triangles filled), 2/n Σ x xᵀ; all zero
  // before the first row.
  const std::vector<double>& matrix() const { return h_; }
  int64_t samples() const { return samples_; }
  int64_t in_features() const { return k_; }

 private:
  static constexpr int64_t kChunkRows = 256;

  int64_t k_;
  int64_t samples_ = 0;
  std::vector<double> h_;       // [K, K]; upper triangle is accumulated, lower mirrored
  std::vector<double> widened_; // [kChunkRows, K] fp64 copy of a chunk of X
};

// Σ_n (w_n − ŵ_n) H (w_n − ŵ_n)ᵀ with ŵ = q.dequant: the layer's output error in the
// Hessian's metric. For H = 2/n XᵀX it is 2/n ‖W Xᵀ − Ŵ Xᵀ‖²_F. W: [N, K] fp32, H: [K, K]
// fp64 row-major. Costs N·K² fp64 flops.
double hessian_error(const float* W, const quant::QuantizedLinear& q, const double* H);

}  // namespace gptq::backend::cpu
