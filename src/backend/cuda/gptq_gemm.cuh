// GPTQ matrix products on the GPU, from a load-time copy of the checkpoint tensors
// (GptqDeviceLayout). Launchers take raw device pointers and a stream.
#pragma once

#include "backend/cuda/common.cuh"

namespace gptq::backend::cuda {

// The device copy of one GPTQ layer, K = in_features, N = out_features, Np = N rounded
// up to a multiple of 4 (padded columns have code 0, zero 0, scale 0):
//   qweight int32 [K*bits/32, Np]  the checkpoint's packing along K, rows permuted so that
//                                  groups are contiguous (act-order made sequential)
//   perm    int32 [K] or null      packed row k holds input column perm[k] (null: identity)
//   scales  fp16  [G, Np]
//   zeros   uint8 [G, Np]          v2 zero points, unpacked
//   block_group int32 [K / V]      the group of each block of V = 32/gcd(bits,32) codes
//                                  (one group per block: the loader checks it)
struct GptqDeviceLayout {
  int bits = 0;
  int64_t K = 0, N = 0, Np = 0, G = 0;
  const int32_t* qweight = nullptr;
  const int32_t* perm = nullptr;
  const __half* scales = nullptr;
  const uint8_t* zeros = nullptr;
  const int32_t* block_group = nullptr;
  const float* bias = nullptr;  // [N] or null
};

inline constexpr int kGemvMaxRows = 8;

// Products of the GEMV (common.cuh's grouped-launch types on this layout).
template <class T>
using GptqGemvGroup = ProductGroup<GptqDeviceLayout, T>;
using GemvScratch = SplitScratch;

// Scratch gptq_gemv needs for M rows of g.
template <class T>
GemvScratch gptq_gemv_scratch(const GptqGemvGroup<T>& g, int64_t M);

// y_j = x W_jᵀ + b_j (or +=, per the epilogue) for M <= kGemvMaxRows: dequantized in
// registers, fp32 accumulation, split along K; the last block of each column tile sums
// the splits in split order (deterministic) and writes y.
template <class T>
void gptq_gemv(const GptqGemvGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
               cudaStream_t s);

// W's rows [n0, n0 + count) as dense rows out [count, ldo] in T, for products through
// cuBLAS when M is large: column j is the layout's input j, in its sorted order (an
// act-order x is gathered into that order once, gptq_sorted.cuh); columns j < K written.
// ldo >= K and a multiple of 8 (16-byte rows); out 16-byte aligned.
template <class T>
void gptq_dequantize(const GptqDeviceLayout& w, int64_t n0, int64_t count, T* out, int64_t ldo, cudaStream_t s);

}  // namespace gptq::backend::cuda
