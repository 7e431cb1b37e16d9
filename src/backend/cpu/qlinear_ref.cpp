// The obvious reference: every weight decoded from the packed tensors on its own,
// y[m, n] = sum_k x[m, k] * (scale * (q - zero)), accumulated in k order.
#include "backend/cpu/qlinear.h"
#include "core/dtype.h"
#include "format/gptq_format.h"

namespace gptq::backend::cpu {

void qgemm_ref(const PackedLinearView& w, const float* x, int64_t M, float* y) {
  const int64_t K = w.in_features, N = w.out_features;
  const int64_t zcols = quant::qzeros_cols(N, w.bits);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = w.g_idx[k];
        const auto q = int32_t(quant::get_code(w.qweight + n, N, k, w.bits));
        const auto zero = int32_t(quant::get_code(w.qzeros + g * zcols, 1, n, w.bits));
        const float weight = f16_to_f32(w.scales[g * N + n]) * float(q - zero);
        acc += x[m * K + k] * weight;
      }
      y[m * N + n] = acc + (w.bias ? w.bias[n] : 0.0f);
    }
  }
}

}  // namespace gptq::backend::cpu
