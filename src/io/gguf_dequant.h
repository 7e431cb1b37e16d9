// Dequantizing ggml blocks to fp32. Block layouts (little-endian; d, dmin are fp16 unless
// noted; j is the value's index inside its block):
//   Q4_0  [d][qs:16]               x = d·(q−8), q = qs[j] & 15 for j < 16, qs[j−16] >> 4 after
//   Q4_1  [d][m][qs:16]            x = d·q + m, q as Q4_0
//   Q8_0  [d][qs:32 i8]            x = d·qs[j]
//   Q8_K  [d:f32][qs:256 i8][bsums:16 i16]   x = d·qs[j] (bsums are only a matmul aid)
//   Q4_K  [d][dmin][scales:12][qs:128]       8 sub-blocks of 32, each with a 6-bit scale sc
//         and min m packed in `scales`; x = d·sc·q − dmin·m. Values 64c..64c+31 are the low
//         nibbles of qs[32c..32c+31], values 64c+32.. their high nibbles.
//   Q5_K  [d][dmin][scales:12][qh:32][qs:128] as Q4_K plus a fifth bit: bit s of qh[j mod 32]
//         adds 16 to the value of sub-block s.
//   Q6_K  [ql:128][qh:64][scales:16 i8][d]   16 sub-blocks of 16, x = d·scale·(q − 32) with q
//         6 bits: 4 from ql, 2 from qh (per 128-value half n, quarter k, lane l < 32: ql byte
//         64n + l + 32·(k & 1), low nibble for k < 2; qh byte 32n + l, bits 2k..2k+1;
//         scale 8n + 2k + l / 16).
// Sub-block scales of Q4_K/Q5_K (6 bits each, s = 0..7): for s < 4, sc = scales[s] & 63,
// m = scales[s + 4] & 63; else sc = (scales[s + 4] & 15) | (scales[s − 4] >> 6) << 4,
// m = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "io/gguf.h"

namespace gptq::io {

// Whole blocks of `type` in `data` to out (data.size() / block_bytes · block_values floats).
// Throws kUnsupported for a type that is not dequantizable, kInvalidArgument on sizes.
void dequantize(GgmlType type, std::span<const std::byte> data, std::span<float> out);

// The scalar reference twin: value `i` computed straight from the layout above, one value
// at a time. Tests check dequantize() against it; it is not meant to be fast.
float dequantize_reference(GgmlType type, std::span<const std::byte> data, int64_t i);

// A tensor dequantized into `out` (F32, F16 or BF16), row-major as shape() gives it.
std::vector<std::byte> dequantize_tensor(const GgufTensorInfo& t, DType out);

}  // namespace gptq::io
