// GPTQ products at decode batch sizes (M <= 8) on the tensor cores, from the fragment
// layout: the batch-1..8 kernel of the tensor-core family. gptq_mma (gptq_mma.cu) hands
// these products here when decode_applies; the rest keep its general kernel.
#pragma once

#include "backend/cuda/gptq_mma.cuh"

namespace gptq::backend::cuda {

inline constexpr int64_t kDecodeMaxRows = 8;

// Whether gptq_decode takes g at M rows: M <= 8 and every layer's chunks each in one
// group (MmaDeviceLayout::chunks_one_group: groups of 64, 128, ..., or one group).
template <class T>
bool decode_applies(const MmaGroup<T>& g, int64_t M);

// The split scratch gptq_decode needs for M rows of g.
template <class T>
SplitScratch gptq_decode_scratch(const MmaGroup<T>& g, int64_t M);

// y_j = x W_jᵀ + b_j (or +=, per the epilogue) for decode_applies(g, M): as gptq_mma,
// with x staged once per block in the order the B fragments are read, codes held
// several chunks ahead in registers, and one group check per 64 inputs.
template <class T>
void gptq_decode(const MmaGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
                 cudaStream_t s);

}  // namespace gptq::backend::cuda
