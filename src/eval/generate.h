// Autoregressive generation: the prompt prefilled in one forward, then one token at a
// time through the KV cache, each chosen by the Sampler, until an EOS id of the model's
// generation config, max_new_tokens, or the end of the model's context.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "eval/sampler.h"
#include "model/model.h"

namespace gptq::eval {

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  SamplingOptions sampling;
  // Called with each new token as it is produced (an EOS that stops generation is not
  // passed): streams text, reports progress, or throws to stop early.
  std::function<void(int32_t)> on_token;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // the new tokens, without the prompt and without the EOS
  int64_t sampled = 0;          // tokens drawn, the EOS included
  bool eos = false;             // stopped at an EOS id
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
};

// Throws kInvalidArgument when max_new_tokens < 0, the sampling options are bad, or the
// prompt is empty or fills the model's context.
GenerateResult generate(model::Model& m, std::span<const int32_t> prompt, const GenerateOptions& o);

}  // namespace gptq::eval
