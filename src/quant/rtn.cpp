#include "quant/rtn.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace gptq::quant {

QuantizedLinear rtn_quantize(const float* W, int64_t N, int64_t K, const RtnOptions& o) {
  validate(o.quant);
  if (W == nullptr || N <= 0 || K <= 0) {
    throw Error(ErrorKind::kInvalidArgument, "RTN: bad input, N=" + std::to_string(N) +
                                                 " K=" + std::to_string(K));
  }
  if (!(o.group_size == -1 || o.group_size > 0)) {
    throw Error(ErrorKind::kInvalidArgument,
                "RTN: group_size must be -1 or positive, got " + std::to_string(o.group_size));
  }
  for (int64_t i = 0; i < N * K; ++i) {
    if (!std::isfinite(W[i])) throw Error(ErrorKind::kInvalidArgument, "RTN: W has NaN or Inf");
  }
  const int32_t maxq = max_code(o.quant.bits);
  const int64_t gs = o.group_size > 0 ? o.group_size : K;

  QuantizedLinear out;
  out.bits = o.quant.bits;
  out.group_size = o.group_size;
  out.in_features = K;
  out.out_features = N;
  const int64_t G = out.num_groups();
  out.q.resize(size_t(N * K));
  out.scales.resize(size_t(G * N));
  out.zeros.resize(size_t(G * N));
  out.g_idx.resize(size_t(K));
  for (int64_t k = 0; k < K; ++k) out.g_idx[k] = int32_t(k / gs);

#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t g = 0; g < G; ++g) {
      const float* w = W + n * K + g * gs;
      const int64_t width = std::min(gs, K - g * gs);  // the last group may be partial
      const RowParams p = find_row_params(w, width, o.quant);
      out.scales[g * N + n] = p.scale;
      out.zeros[g * N + n] = p.zero;
      for (int64_t t = 0; t < width; ++t) out.q[n * K + g * gs + t] = uint8_t(quantize_code(w[t], p, maxq));
    }
  }
  return out;
}

}  // namespace gptq::quant
