// Choosing the next token from a logits row: greedy, or temperature / top-k / top-p
// sampling from a seeded generator (the same seed gives the same text).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

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
  int32_t next(std::span<const float> logits);
  // The same from a logits row [1, vocab] on a backend. Greedy runs the argmax there
  // and brings back one id; sampling brings the row to the host (vocab floats) and
  // draws from it as above, so a seed gives the same text on every backend.
  int32_t next(backend::Backend& b, backend::Tensor logits);

 private:
  SamplingOptions opts_;
  std::mt19937_64 rng_;
  backend::Buffer id_;        // I32 [1, 1] on the backend of the last call
  std::vector<float> host_;   // the row, when sampling
};

int32_t argmax(std::span<const float> logits);  // lowest index among equal maxima

}  // namespace gptq::eval
