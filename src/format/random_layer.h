// Random quantized layers for kernel tests and benchmarks: uniform codes and zero points,
// scales in a plausible range, optionally an act-order g_idx (a random permutation of K
// cut into groups) and a bias. Deterministic in the seed; fast enough for 100M+ codes.
#pragma once

#include <cstdint>

#include "format/quant_params.h"

namespace gptq::quant {

struct RandomLayerSpec {
  int bits = 4;
  int64_t in_features = 0;   // K
  int64_t out_features = 0;  // N
  int group_size = 128;      // -1: one group
  bool act_order = false;    // g_idx from a random permutation of the input columns
  bool sym = true;           // zero point 2^(bits-1) everywhere (as GPTQ's sym writes)
  bool bias = false;
  float min_scale = 0.001f, max_scale = 0.1f;  // scales are rounded to fp16 values
};

QuantizedLinear random_quantized_linear(const RandomLayerSpec& spec, uint64_t seed);

}  // namespace gptq::quant
