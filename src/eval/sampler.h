// Choosing the next token from a logits row: greedy, or temperature / top-k / top-p
// sampling by the rule of backend/sampling_rule.h, with one uniform per step drawn from a
// seeded generator on the host, so the same seed gives the same text on every backend.
#pragma once

#include <cstdint>
#include <random>
#include <span>

#include "backend/backend.h"

namespace gptq::eval {

struct SamplingOptions {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int64_t top_k = 0;         // 0: no top-k cut
  float top_p = 1.0f;        // 1: no nucleus cut
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& o);  // throws kInvalidArgument on bad options
  // The id the CPU backend's Backend::sample gives for this row and the next uniform.
  int32_t next(std::span<const float> logits);
  // The same from a logits row [1, vocab] on a backend: argmax (greedy) or sample runs
  // there, and one id comes back.
  int32_t next(backend::Backend& b, backend::Tensor logits);

 private:
  // u in [0, 1) on a grid of 2⁻²⁴, exact in the F32 tensor it travels in: the top 24
  // bits of one generator output, so every backend consumes the generator alike.
  float uniform() { return float(rng_() >> 40) * 0x1p-24f; }

  SamplingOptions opts_;
  backend::SampleParams params_;
  std::mt19937_64 rng_;
  backend::Buffer id_;  // I32 [1, 1] on the backend of the last call
  backend::Buffer u_;   // F32 [1, 1] on the same backend
};

int32_t argmax(std::span<const float> logits);  // lowest index among equal maxima

}  // namespace gptq::eval
