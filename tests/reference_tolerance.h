// Tolerances for comparing our fp32 forward pass with transformers' fp32 forward pass.
//
// Both compute in fp32 from the same weights but sum in different orders, so they
// differ by rounding only. A length-K dot product's rounding error is, with high
// probability, below u·√K·Σ|aᵢbᵢ| (u = 2⁻²⁴; Higham & Mary's probabilistic bound,
// 2019). Each layer puts the residual stream through about 8 such products in series
// (q/k/v, scores, weights·V, o, gate/up, down); RMSNorm rescales, so relative errors
// add rather than multiply: after L layers and the head a logit's relative error is
// ≲ (8L + 1)·u·√K, K the widest reduction. Σ|aᵢbᵢ| for the head is of the order of
// the row's largest |logit| (measured: within 3x for these models), which gives
//     |Δlogit| ≤ 3 · (8L + 1) · u · √K · max|logit row|.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

namespace gptq::test {

inline double logit_tolerance(int64_t layers, int64_t widest_k, std::span<const float> ref_row) {
  double mx = 0.0;
  for (float v : ref_row) mx = std::max(mx, std::fabs(double(v)));
  const double u = std::ldexp(1.0, -24);
  return 3.0 * double(8 * layers + 1) * u * std::sqrt(double(widest_k)) * mx;
}

}  // namespace gptq::test
