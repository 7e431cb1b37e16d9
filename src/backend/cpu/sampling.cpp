#include "backend/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "backend/sampling_rule.h"
#include "core/error.h"

namespace gptq::backend::cpu {
namespace {

// The first j in [0, n) with c[j] >= target (c non-decreasing), or n - 1 when none does.
std::size_t first_reaching(const std::vector<uint64_t>& c, std::size_t n, uint64_t target) {
  const auto it = std::lower_bound(c.begin(), c.begin() + std::ptrdiff_t(n), target);
  return it == c.begin() + std::ptrdiff_t(n) ? n - 1 : std::size_t(it - c.begin());
}

}  // namespace

int32_t sample_row(std::span<const float> x, const SampleParams& p, float u) {
  if (x.empty() || int64_t(x.size()) >= sampling::kMaxVocab) {
    throw Error(ErrorKind::kInvalidArgument,
                "sample: a logits row of " + std::to_string(x.size()) + " is outside (0, 2^22) tokens");
  }
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    throw Error(ErrorKind::kInvalidArgument, "sample: temperature must be a finite number >= 0");
  }
  if (p.top_k < 0) throw Error(ErrorKind::kInvalidArgument, "sample: top-k must be >= 0");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) throw Error(ErrorKind::kInvalidArgument, "sample: top-p must be in (0, 1]");
  if (!(u >= 0.0f && u < 1.0f)) {
    throw Error(ErrorKind::kInvalidArgument, "sample: the uniform must be in [0, 1), got " + std::to_string(u));
  }
  if (p.temperature == 0.0f) return int32_t(std::max_element(x.begin(), x.end()) - x.begin());

  // K1: the first k tokens of the order, sorted as (key, then index reversed) in 64 bits,
  // descending: higher key first, lower index first among equal keys.
  const std::size_t V = x.size();
  const std::size_t k = p.top_k > 0 ? std::min<std::size_t>(V, std::size_t(p.top_k)) : V;
  std::vector<uint64_t> order(V);
  for (std::size_t i = 0; i < V; ++i) order[i] = (uint64_t(sampling::order_key(x[i])) << 32) | uint32_t(~uint32_t(i));
  std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(k), order.end(), std::greater<>());
  const auto index = [&](std::size_t j) { return int32_t(~uint32_t(order[j])); };
  // c[j]: the mass of the first j + 1 tokens of K1.
  const float mx = x[std::size_t(index(0))];
  std::vector<uint64_t> c(k);
  uint64_t run = 0;
  for (std::size_t j = 0; j < k; ++j) c[j] = run += sampling::fixed_weight(x[std::size_t(index(j))], mx, p.temperature);
  // K2 = the first n tokens, then the draw.
  std::size_t n = k;
  if (p.top_p < 1.0f) n = first_reaching(c, k, sampling::top_p_target(p.top_p, c[k - 1])) + 1;
  return index(first_reaching(c, n, sampling::draw_target(u, c[n - 1])));
}

}  // namespace gptq::backend::cpu
