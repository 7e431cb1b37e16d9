// The code books of bitsandbytes' blockwise quantization: the 16 values of NF4 and FP4
// (4-bit weights, scaled by each block's absmax) and the 256-value signed "dynamic" map
// (8-bit, used to double-quantize the absmax values). A code is an index into its book.
//
// Values are transcribed from bitsandbytes (csrc/kernels.cu dDequantizeNF4 and
// dDequantizeFP4Tree; bitsandbytes/functional.py get_4bit_type, create_dynamic_map) and
// tested against their published definitions in tests/test_bnb_format.cpp.
#pragma once

#include <array>
#include <cstdint>

namespace gptq::quant::bnb {

// NF4 (QLoRA, Dettmers et al. 2023, §3): quantiles of N(0, 1), 8 on the positive side
// and 7 on the negative side plus an exact zero, normalised to [-1, 1]. Ascending.
extern const std::array<float, 16> kNf4;
// FP4 as bitsandbytes defines it: bit 3 the sign, bits 0-2 the magnitude index into
// {0, 0.0625, 8, 12, 4, 6, 2, 3} / 12 (an e2m1-like layout, not sorted by code).
extern const std::array<float, 16> kFp4;

// The signed dynamic map: for exponent e = 0..6, 2^e linearly spaced fractions of
// 10^(e-6) (means of linspace(0.1, 1, 2^e + 1)), both signs, plus 0 and 1. Ascending.
const std::array<float, 256>& dynamic_map();

// Nearest code to x (x already divided by the block's absmax, in [-1, 1]), ties towards
// the lower value, as bitsandbytes' decision trees (dQuantizeNF4/dQuantizeFP4) resolve
// them: the thresholds are the midpoints of adjacent code values.
uint8_t nearest_nf4(float x);
// FP4 picks the sign from x < 0 (so a tiny negative value gives code 8, "-0") and then
// the nearest magnitude.
uint8_t nearest_fp4(float x);
// Nearest entry of dynamic_map() (absmax double quantization).
uint8_t nearest_dynamic(float x);

}  // namespace gptq::quant::bnb
