// The load-time repack of a GPTQ layer into the layout the CUDA kernels read
// (GptqDeviceLayout in gptq_gemm.cuh), in plain C++ so that it is tested on any machine:
//   - act-order made sequential: packed rows are permuted so that each group's input
//     columns are contiguous (stable sort of k by g_idx); `perm` maps back;
//   - N padded to a multiple of 4 (one 16-byte load = 4 columns);
//   - zero points unpacked to one byte each; scales kept as fp16 bit patterns.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "format/packing.h"

namespace gptq::backend::cuda {

struct GptqHostLayout {
  int bits = 0;
  int64_t K = 0, N = 0, Np = 0, G = 0;
  std::vector<int32_t> qweight;      // [K*bits/32, Np]
  std::vector<int32_t> perm;         // [K], empty when identity
  std::vector<uint16_t> scales;      // [G, Np]
  std::vector<uint8_t> zeros;        // [G, Np]
  std::vector<int32_t> block_group;  // [K / V]
};

// nullopt when some block of V = 32/gcd(bits, 32) sorted codes spans two groups (a
// g_idx no GPTQ tool writes); the CUDA backend then refuses the layer (kUnsupported).
std::optional<GptqHostLayout> repack_for_cuda(const quant::PackedLinear& p);

// The reference reading of the repacked layout: W [N, K] fp32 in the original column
// order. Tests compare it with quant::unpack of the checkpoint tensors.
std::vector<float> dequantize_host_layout(const GptqHostLayout& l);

}  // namespace gptq::backend::cuda
