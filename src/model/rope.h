// Rotary embedding frequencies, computed in fp32 exactly as transformers computes them
// (default and llama3 rope types).
#pragma once

#include "backend/backend.h"
#include "model/config.h"

namespace gptq::model {

backend::RopeTable make_rope_table(const ModelConfig& c);

}  // namespace gptq::model
