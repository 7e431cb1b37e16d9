// Rotary embedding frequencies, computed in fp32 exactly as transformers computes them
// (default and llama3 rope types).
#pragma once

#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace gptq::model {

// inv_freq on the host: [head_dim / 2].
std::vector<float> rope_inv_freq(const ModelConfig& c);
// The same, resident on the backend.
backend::RopeTable make_rope_table(const ModelConfig& c, backend::Backend& b);

}  // namespace gptq::model
