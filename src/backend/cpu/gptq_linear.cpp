#include "backend/cpu/gptq_linear.h"

#include <cstring>
#include <vector>

namespace gptq::backend::cpu {

GptqLinear::GptqLinear(quant::PackedLinear packed) : packed_(std::move(packed)), view_(make_view(packed_)) {}

uint64_t GptqLinear::weight_bytes() const {
  return packed_.qweight.size() * 4 + packed_.qzeros.size() * 4 + packed_.scales.size() * 2 +
         packed_.g_idx.size() * 4 + packed_.bias.size() * 4;
}

std::string GptqLinear::describe() const {
  std::string s = "gptq " + std::to_string(packed_.bits) + "-bit g" + std::to_string(packed_.group_size);
  if (!view_.sequential_groups) s += " act-order";
  return s;
}

void GptqLinear::forward(const float* x, int64_t M, int64_t ldx, float* y, int64_t ldy) const {
  const int64_t K = packed_.in_features, N = packed_.out_features;
  if (ldx == K && ldy == N) {
    qlinear_forward(view_, x, M, y);
    return;
  }
  // The kernels take dense rows; strided views are packed first.
  std::vector<float> xs(std::size_t(M * K)), ys(std::size_t(M * N));
  for (int64_t m = 0; m < M; ++m) std::memcpy(&xs[std::size_t(m * K)], x + m * ldx, std::size_t(K) * 4);
  qlinear_forward(view_, xs.data(), M, ys.data());
  for (int64_t m = 0; m < M; ++m) std::memcpy(y + m * ldy, &ys[std::size_t(m * N)], std::size_t(N) * 4);
}

}  // namespace gptq::backend::cpu
