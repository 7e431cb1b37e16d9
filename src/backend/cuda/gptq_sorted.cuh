// Act-order products through a sorted copy of x: the layout stores W's inputs in
// quantization order (perm), so a product reads x column perm[k] for sorted input k.
// Gathering that per block and per step inside the kernels costs one scattered load per
// element (8B lm_head act-order at M = 8: 437 µs against 129 sym, NOTES.md version 4);
// gathering it once per product into a dense copy lets every kernel read x as for a
// layer without act-order.
#pragma once

#include <cstdint>

#include "backend/cuda/common.cuh"

namespace gptq::backend::cuda {

// Row stride of the sorted copy of x [M, K]: K rounded up to 8 (16-byte rows).
inline int64_t sorted_ld(int64_t K) { return (K + 7) / 8 * 8; }

// out [M, sorted_ld(K)] = x [M, K] (row stride ldx) with column k from x's column
// perm[k] (perm [K], a permutation of [0, K); null: the identity, an aligned copy);
// columns [K, sorted_ld(K)) are zero.
template <class T>
void gather_sorted(const T* x, int64_t ldx, int64_t M, int64_t K, const int32_t* perm, T* out, cudaStream_t s);

}  // namespace gptq::backend::cuda
