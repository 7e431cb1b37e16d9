#include "eval/sampler.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/sampling.h"
#include "core/error.h"

namespace gptq::eval {

int32_t argmax(std::span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingOptions& o)
    : opts_(o), params_{.temperature = o.temperature, .top_k = o.top_k, .top_p = o.top_p}, rng_(o.seed) {
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature)) {
    throw Error(ErrorKind::kInvalidArgument, "temperature must be a finite number >= 0");
  }
  if (o.top_k < 0) throw Error(ErrorKind::kInvalidArgument, "top-k must be >= 0");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) throw Error(ErrorKind::kInvalidArgument, "top-p must be in (0, 1]");
}

int32_t Sampler::next(std::span<const float> logits) {
  if (opts_.temperature == 0.0f) return argmax(logits);
  return backend::cpu::sample_row(logits, params_, uniform());
}

int32_t Sampler::next(backend::Backend& b, backend::Tensor logits) {
  if (id_.empty() || id_.view().device != logits.device) {
    id_ = b.alloc(1, 1, DType::kI32);
    u_ = b.alloc(1, 1, DType::kF32);
  }
  if (opts_.temperature == 0.0f) {
    b.argmax(logits.row_slice(0, 1), id_.view());
  } else {
    const float u = uniform();
    b.upload(std::span(&u, 1), u_.view());
    b.sample(logits.row_slice(0, 1), u_.view(), params_, id_.view());
  }
  int32_t id = 0;
  b.download(id_.view(), std::span(&id, 1));
  return id;
}

}  // namespace gptq::eval
