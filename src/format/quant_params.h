// The quantized form of one linear layer, unpacked: what GPTQ/RTN produce and what the
// packer (src/quant/packing.h) turns into qweight/qzeros/scales/g_idx.
//
// Dequantization, for out row n and in column k:
//   g = g_idx[k];  w[n, k] = scales[g * N + n] * (q[n * K + k] - zeros[g * N + n])
#pragma once

#include <cstdint>
#include <vector>

namespace gptq::quant {

struct QuantizedLinear {
  int bits = 4;          // 2, 3, 4 or 8
  int group_size = 128;  // -1: one group over all of K
  int64_t in_features = 0;   // K
  int64_t out_features = 0;  // N
  std::vector<uint8_t> q;    // [N, K] integer codes in [0, 2^bits)
  std::vector<float> scales; // [G, N], values exactly representable in fp16 (saved as fp16)
  std::vector<int32_t> zeros;  // [G, N] integer zero points in [0, 2^bits) (v2 meaning)
  std::vector<int32_t> g_idx;  // [K] group of each input column, in [0, G)
  std::vector<float> bias;     // [N] or empty

  int64_t num_groups() const {
    return group_size <= 0 ? 1 : (in_features + group_size - 1) / group_size;
  }
  float dequant(int64_t n, int64_t k) const {
    const int64_t g = g_idx[k];
    return scales[g * out_features + n] *
           float(int(q[n * in_features + k]) - zeros[g * out_features + n]);
  }
};

}  // namespace gptq::quant
