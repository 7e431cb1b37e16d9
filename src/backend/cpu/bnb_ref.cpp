// The scalar twins of the bitsandbytes kernels: every weight decoded on its own, sums in
// k order, the LLM.int8 decomposition written out as its definition (bnb_linear.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/bnb_linear.h"

namespace gptq::backend::cpu {

using quant::bnb::BnbPacked;

void bnb4_gemm_ref(const BnbPacked& w, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) {
  const int64_t K = w.in_features, N = w.out_features;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t i = n * K + k;
        acc += x[m * ldx + k] * (quant::bnb::code_value(w.type, quant::bnb::code_at(w, i)) * w.block_absmax(i / w.blocksize));
      }
      y[m * ldy + n] = acc + (w.bias.empty() ? 0.0f : w.bias[std::size_t(n)]);
    }
  }
}

void int8_gemm_ref(const BnbPacked& w, const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) {
  const int64_t K = w.in_features, N = w.out_features;
  const float t = w.threshold;
  std::vector<char> outlier(static_cast<std::size_t>(K), 0);
  if (t > 0.0f) {
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) outlier[std::size_t(k)] |= std::fabs(x[m * ldx + k]) >= t;
    }
  }
  const auto* cb = reinterpret_cast<const int8_t*>(w.data.data());
  std::vector<int32_t> ca(static_cast<std::size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    float r = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      if (t <= 0.0f || std::fabs(xr[k]) < t) r = std::max(r, std::fabs(xr[k]));
    }
    const float scale = r > 0.0f ? 127.0f / r : 0.0f;
    for (int64_t k = 0; k < K; ++k) ca[std::size_t(k)] = outlier[std::size_t(k)] ? 0 : int32_t(std::nearbyint(xr[k] * scale));
    for (int64_t n = 0; n < N; ++n) {
      int32_t acc = 0;
      float fp = 0.0f;
      const float wscale = w.absmax[std::size_t(n)] * (1.0f / 127.0f);
      for (int64_t k = 0; k < K; ++k) {
        acc += ca[std::size_t(k)] * int32_t(cb[n * K + k]);
        if (outlier[std::size_t(k)]) fp = std::fma(xr[k], float(cb[n * K + k]) * wscale, fp);
      }
      // Fused multiply-adds written out, as the kernel has them (no contraction left to choose).
      y[m * ldy + n] = std::fma(float(acc), r * w.absmax[std::size_t(n)] * (1.0f / 16129.0f), fp) +
                       (w.bias.empty() ? 0.0f : w.bias[std::size_t(n)]);
    }
  }
}

}  // namespace gptq::backend::cpu
