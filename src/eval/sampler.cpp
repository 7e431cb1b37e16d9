#include "eval/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace gptq::eval {

int32_t argmax(std::span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingOptions& o) : opts_(o), rng_(o.seed) {
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature)) {
    throw Error(ErrorKind::kInvalidArgument, "temperature must be a finite number >= 0");
  }
  if (o.top_k < 0) throw Error(ErrorKind::kInvalidArgument, "top-k must be >= 0");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) throw Error(ErrorKind::kInvalidArgument, "top-p must be in (0, 1]");
}

int32_t Sampler::next(std::span<const float> logits) {
  if (opts_.temperature == 0.0f) return argmax(logits);
  // Candidates by descending logit; top-k then top-p (as transformers orders its warpers).
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::size_t keep = order.size();
  if (opts_.top_k > 0) keep = std::min<std::size_t>(keep, std::size_t(opts_.top_k));
  std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(keep), order.end(),
                    [&](int32_t a, int32_t b) { return logits[std::size_t(a)] > logits[std::size_t(b)]; });
  order.resize(keep);
  const double mx = logits[std::size_t(order[0])];
  std::vector<double> p(keep);
  double sum = 0.0;
  for (std::size_t i = 0; i < keep; ++i) {
    p[i] = std::exp((double(logits[std::size_t(order[i])]) - mx) / opts_.temperature);
    sum += p[i];
  }
  if (opts_.top_p < 1.0f) {
    // Smallest prefix whose mass reaches top_p (at least one token).
    double acc = 0.0;
    std::size_t n = 0;
    while (n < keep && acc < opts_.top_p * sum) acc += p[n++];
    p.resize(std::max<std::size_t>(n, 1));
  }
  std::discrete_distribution<std::size_t> pick(p.begin(), p.end());
  return order[pick(rng_)];
}

int32_t Sampler::next(backend::Backend& b, backend::Tensor logits) {
  if (opts_.temperature == 0.0f) {
    if (id_.empty() || id_.view().device != logits.device) id_ = b.alloc(1, 1, DType::kI32);
    b.argmax(logits.row_slice(0, 1), id_.view());
    int32_t id = 0;
    b.download(id_.view(), std::span(&id, 1));
    return id;
  }
  host_.resize(std::size_t(logits.cols));
  b.download(logits.row_slice(0, 1), host_);
  return next(host_);
}

}  // namespace gptq::eval
