#include "format/random_layer.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/splitmix.h"

namespace gptq::quant {

QuantizedLinear random_quantized_linear(const RandomLayerSpec& spec, uint64_t seed) {
  if (spec.in_features <= 0 || spec.out_features <= 0) {
    throw Error(ErrorKind::kInvalidArgument, "random layer: K and N must be positive");
  }
  SplitMix64 rng{seed};
  QuantizedLinear q;
  q.bits = spec.bits;
  q.group_size = spec.group_size;
  q.in_features = spec.in_features;
  q.out_features = spec.out_features;
  const int64_t K = spec.in_features, N = spec.out_features, G = q.num_groups();
  const uint32_t mask = (1u << spec.bits) - 1u;
  q.q.resize(std::size_t(N * K));
  // Eight codes per draw (8 bits each, masked to the width).
  for (std::size_t i = 0; i < q.q.size(); i += 8) {
    uint64_t r = rng.next();
    for (std::size_t j = i; j < std::min(i + 8, q.q.size()); ++j, r >>= 8) q.q[j] = uint8_t(r & mask);
  }
  q.scales.resize(std::size_t(G * N));
  for (auto& s : q.scales) {
    s = f16_to_f32(f32_to_f16(spec.min_scale + (spec.max_scale - spec.min_scale) * rng.unit()));
  }
  q.zeros.resize(std::size_t(G * N));
  for (auto& z : q.zeros) z = spec.sym ? int((mask + 1) / 2) : int(rng.next() & mask);
  std::vector<int32_t> order(static_cast<std::size_t>(K));
  std::iota(order.begin(), order.end(), 0);
  if (spec.act_order) {
    for (int64_t i = K - 1; i > 0; --i) std::swap(order[std::size_t(i)], order[std::size_t(rng.next() % uint64_t(i + 1))]);
  }
  const int64_t span = spec.group_size <= 0 ? K : spec.group_size;
  q.g_idx.resize(std::size_t(K));
  for (int64_t i = 0; i < K; ++i) q.g_idx[std::size_t(order[std::size_t(i)])] = int32_t(i / span);
  if (spec.bias) {
    q.bias.resize(std::size_t(N));
    for (auto& b : q.bias) b = 0.1f * (rng.unit() - 0.5f);
  }
  return q;
}

}  // namespace gptq::quant
