// Choosing the next token from a logits row: greedy, or temperature / top-k / top-p
// sampling from a seeded generator (the same seed gives the same text).
#pragma once

#include <cstdint>
#include <random>
#include <span>

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
  int32_t next(std::span<const float> logits);

 private:
  SamplingOptions opts_;
  std::mt19937_64 rng_;
};

int32_t argmax(std::span<const float> logits);  // lowest index among equal maxima

}  // namespace gptq::eval
