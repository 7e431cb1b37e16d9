// Prefill attention on tensor cores, in the manner of FlashAttention-2: a block owns 64
// query rows of one head and walks the keys in tiles of 64, S = Q Kᵀ and O += P V on
// mma.sync, the softmax online in registers. Same semantics as attention()
// (attention.cuh); attention() dispatches here.
#pragma once

#include "backend/cuda/attention.cuh"

namespace gptq::backend::cuda {

// Opts the kernels in to the shared memory they use, on the current device; once per
// device before the first flash_attention() there (the CUDA backend's constructor).
void flash_attention_init();

// Whether the tensor-core kernel takes `a` with these pointers: head_dim 64 or 128,
// heads a multiple of kv_heads, every row stride a multiple of 8 elements and every
// pointer 16-byte aligned (the tiles move in 16-byte copies). The element type (f16 or
// bf16) is the caller's check.
bool flash_attention_supports(const AttentionArgs& a, const void* q, const void* k, const void* v, const void* out);

// attention() for T = __half or __nv_bfloat16 where flash_attention_supports(a, ...).
template <class T>
void flash_attention(const T* q, const T* k, const T* v, const int32_t* pos, T* out, const AttentionArgs& a,
                     cudaStream_t s);

}  // namespace gptq::backend::cuda
