// Dense 16-bit rows of a fragment-order GPTQ layer (format/fragment_layout.h), for the
// products above the tensor-core crossover (BackendOptions::gptq_mma_max_rows): cuBLAS
// then multiplies x by a tile of W that this kernel wrote, one tile of rows at a time.
#pragma once

#include "backend/cuda/gptq_mma.cuh"

namespace gptq::backend::cuda {

// out [count, ldo] in T: row c is weight row n0 + c, column j is the layout's input j,
// in its sorted order (an act-order layer's x is gathered into that order once,
// gptq_sorted.cuh, instead of scattering W's columns); columns j < K are written, the
// rest left as they are. n0 % 16 == 0; ldo >= K and a multiple of 8 (16-byte rows); out
// 16-byte aligned. Each value is s·(q − z) rounded once to T, as the mma kernels form it.
template <class T>
void gptq_mma_dequantize(const MmaDeviceLayout& w, int64_t n0, int64_t count, T* out, int64_t ldo,
                         cudaStream_t s);

}  // namespace gptq::backend::cuda
