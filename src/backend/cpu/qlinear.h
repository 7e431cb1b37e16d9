// Quantized linear layer on the CPU, computed straight from the packed GPTQ tensors:
//   y[M, N] = x[M, K] · Wᵀ + bias,   W[n, k] = scales[g, n] * (q[n, k] - zero[g, n]),
//   g = g_idx[k], layout as in src/quant/gptq_format.h, zeros in the v2 meaning.
//
// Three implementations of the same product:
//   qgemm_ref     element-by-element scalar reference (tests only);
//   qlinear_fused decode path: dequantize-and-multiply from the packed words, 4 rows of x
//                 at a time, OpenMP over columns, AVX2/FMA when compiled with them;
//   qlinear_tiled prefill path: dequantize column tiles of W to fp32, then cblas_sgemm.
// qlinear_forward picks fused for M <= kFusedMaxRows and tiled otherwise.
#pragma once

#include <cstdint>

#include "format/packing.h"

namespace gptq::backend::cpu {

// Non-owning view of one layer's packed tensors (see make_view).
struct PackedLinearView {
  int bits = 4;
  int group_size = 128;
  int64_t in_features = 0;   // K
  int64_t out_features = 0;  // N
  int64_t num_groups = 0;    // G
  const int32_t* qweight = nullptr;  // [K*bits/32, N]
  const int32_t* qzeros = nullptr;   // [G, ceil(N*bits/32)], v2 zeros
  const uint16_t* scales = nullptr;  // [G, N] fp16
  const int32_t* g_idx = nullptr;    // [K] in [0, G)
  const float* bias = nullptr;       // [N] or null
  // g_idx[k] == k / group_size for every k, so groups are contiguous runs of k.
  bool sequential_groups = false;
};

// Validates `packed` (throws gptq::Error) and views it. Its qzeros must hold v2 zeros:
// run quant::convert_v1_zeros_to_v2 on v1 checkpoints when loading. `packed` must outlive
// the view.
PackedLinearView make_view(const quant::PackedLinear& packed);

inline constexpr int64_t kFusedMaxRows = 4;

// x: [M, K] row-major fp32; y: [M, N] row-major fp32, overwritten. M >= 0.
void qlinear_forward(const PackedLinearView& w, const float* x, int64_t M, float* y);
void qlinear_fused(const PackedLinearView& w, const float* x, int64_t M, float* y);
void qlinear_tiled(const PackedLinearView& w, const float* x, int64_t M, float* y);
void qgemm_ref(const PackedLinearView& w, const float* x, int64_t M, float* y);
inline void qgemv_ref(const PackedLinearView& w, const float* x, float* y) {
  qgemm_ref(w, x, 1, y);
}

}  // namespace gptq::backend::cpu
