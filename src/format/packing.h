// One quantized linear layer in checkpoint form (qweight/qzeros/scales/g_idx, the layout
// of src/quant/gptq_format.h), and the conversions to and from the unpacked
// QuantizedLinear.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "format/gptq_format.h"
#include "format/quant_params.h"

namespace gptq::quant {

struct PackedLinear {
  int bits = 4;
  int group_size = 128;      // -1: one group over all of K
  int64_t in_features = 0;   // K
  int64_t out_features = 0;  // N
  // Shapes as found in the checkpoint; validate() checks them against bits, K, N, G.
  std::array<int64_t, 2> qweight_shape{};  // [K*bits/32, N]
  std::array<int64_t, 2> qzeros_shape{};   // [G, ceil(N*bits/32)]
  std::array<int64_t, 2> scales_shape{};   // [G, N]
  std::vector<int32_t> qweight;  // [K*bits/32, N] codes packed along K
  std::vector<int32_t> qzeros;   // [G, ceil(N*bits/32)] zero points packed along N
  std::vector<uint16_t> scales;  // [G, N] fp16 bit patterns
  std::vector<int32_t> g_idx;    // [K] in [0, G)
  std::vector<float> bias;       // [N] or empty

  int64_t num_groups() const {
    return group_size <= 0 ? 1 : (in_features + group_size - 1) / group_size;
  }
};

// Checks bits, group_size, every shape and element count, and the range of g_idx;
// throws Error(kFormat) naming the tensor (kUnsupported for bits outside {2, 3, 4, 8}).
void validate(const PackedLinear& packed);

// Packs codes, zeros (stored per `format`), scales (rounded to fp16), g_idx and bias.
// Throws Error(kInvalidArgument) when `q` is inconsistent (sizes, codes or zeros out of
// range) and Error(kUnsupported) for bits or K the format cannot hold.
PackedLinear pack(const QuantizedLinear& q, Format format);

// Validates, then unpacks; zeros come back in the v2 meaning (the zero itself).
QuantizedLinear unpack(const PackedLinear& packed, Format format);

// Rewrites v1 qzeros (zero - 1) as v2 (the zero itself) in place, so kernels read one
// convention. Validates first.
void convert_v1_zeros_to_v2(PackedLinear& packed);

}  // namespace gptq::quant
