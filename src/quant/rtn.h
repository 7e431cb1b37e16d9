// Round-to-nearest: the group quantizer applied to the weights as they are, with no
// Hessian and no error feedback. The baseline GPTQ is measured against, and the
// quantizer for layers without calibration data.
#pragma once

#include <cstdint>

#include "format/quant_params.h"
#include "format/quantizer.h"

namespace gptq::quant {

struct RtnOptions {
  QuantizerConfig quant = {};  // bits, sym, scale search (min/max or MSE clipping)
  int group_size = 128;        // -1: one group over all of K
};

// W: [N, K] fp32 row-major. Groups are the natural ones: g_idx[k] = k / group_size,
// G = ceil(K / group_size), the last group partial when group_size does not divide K.
// Throws kInvalidArgument for a bad shape, option or a non-finite weight.
QuantizedLinear rtn_quantize(const float* W, int64_t N, int64_t K, const RtnOptions& opts);

}  // namespace gptq::quant
