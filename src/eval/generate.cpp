#include "eval/generate.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "core/error.h"

namespace gptq::eval {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

GenerateResult generate(model::Model& m, std::span<const int32_t> prompt, const GenerateOptions& o) {
  if (o.max_new_tokens < 0) throw Error(ErrorKind::kInvalidArgument, "max_new_tokens must be >= 0");
  Sampler sampler(o.sampling);
  const model::ModelConfig& c = m.config();
  if (prompt.empty()) throw Error(ErrorKind::kInvalidArgument, "the prompt has no tokens");
  if (int64_t(prompt.size()) >= c.max_positions) {
    throw Error(ErrorKind::kInvalidArgument, "the prompt has " + std::to_string(prompt.size()) +
                                                 " tokens; the model's context is " + std::to_string(c.max_positions));
  }
  const int64_t budget = std::min<int64_t>(o.max_new_tokens, c.max_positions - int64_t(prompt.size()));
  auto cache = m.new_cache(int64_t(prompt.size()) + std::max<int64_t>(budget, 1));

  GenerateResult r;
  const auto t0 = std::chrono::steady_clock::now();
  backend::Tensor logits = m.forward_last(prompt, cache);
  r.prefill_seconds = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < budget; ++i) {
    const int32_t next = sampler.next(m.backend(), logits);
    ++r.sampled;
    if (std::find(c.eos_ids.begin(), c.eos_ids.end(), next) != c.eos_ids.end()) {
      r.eos = true;
      break;
    }
    r.tokens.push_back(next);
    if (o.on_token) o.on_token(next);
    if (i + 1 < budget) logits = m.forward_last(std::span(&next, 1), cache);
  }
  r.decode_seconds = seconds_since(t1);
  return r;
}

}  // namespace gptq::eval
