// Causal GQA attention over a KV cache, for prefill (many query rows) and decode (one).
// Two kernels: on CUDA cores, one block per query row, split along the keys
// ("flash-decoding") so that a long cache fills the GPU; and for prefill in f16/bf16, on
// tensor cores, one block per 64 query rows (flash_attention.cuh).
#pragma once

#include "backend/backend.h"
#include "backend/cuda/common.cuh"

namespace gptq::backend::cuda {

struct AttentionArgs {
  int64_t rows = 0;        // query rows T
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;    // <= kMaxHeadDim, a multiple of 8
  int64_t window = 0;      // sliding window, 0: unlimited
  int64_t capacity = 0;    // cache rows; every position is < capacity
  int64_t ldq = 0, ldk = 0, ldv = 0, ldo = 0;  // row strides (elements)
  AttentionKernel kernel = AttentionKernel::kAuto;
};

inline constexpr int64_t kMaxHeadDim = 256;
// kAuto runs the tensor-core kernel from this many query rows up (where it applies).
// Below it the blocks of 64 rows are mostly padding and the per-row kernel is tuned.
inline constexpr int64_t kTensorCoreMinRows = 16;

// Scratch floats attention() needs for `a` (the split partials), 0 when none.
int64_t attention_workspace_floats(const AttentionArgs& a);

// out[t, h] = softmax(q[t, h] · K[first..p]ᵀ / sqrt(d)) V[first..p], p = pos[t], for the
// kv head h / (heads / kv_heads). q, out: [rows, heads*d]; k, v: [capacity, kv_heads*d].
// The launch shape depends only on `a` (not on pos), so a decode step replays as a graph.
template <class T>
void attention(const T* q, const T* k, const T* v, const int32_t* pos, T* out, const AttentionArgs& a,
               float* workspace, cudaStream_t s);

}  // namespace gptq::backend::cuda
