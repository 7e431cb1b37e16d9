// The reference implementation of the sampling rule (backend/sampling_rule.h): a sort
// and running integer sums, as plain as the rule itself. The CPU backend's
// Backend::sample runs it per row, and eval::Sampler calls it on host rows, so a host
// row and a backend row with the same values give the same id.
#pragma once

#include <cstdint>
#include <span>

#include "backend/backend.h"

namespace gptq::backend::cpu {

// The id the rule draws from `logits` with uniform u. Throws kInvalidArgument for an
// empty row or one longer than sampling::kMaxVocab, T < 0 or not finite, top_k < 0,
// top_p outside (0, 1] or u outside [0, 1).
int32_t sample_row(std::span<const float> logits, const SampleParams& p, float u);

}  // namespace gptq::backend::cpu
