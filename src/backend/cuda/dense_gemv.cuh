// Dense products for one row (decode): y = x Wᵀ + b, W [N, K] row-major in the
// activation type (f16 or bf16), streamed once with 16-byte loads. Several products of
// the same x (q/k/v, gate/up) run in one launch. More rows and f32 go to cuBLAS: a
// version computing 8 rows per warp took 73 µs on Llama-3.1-8B's gate (14336 x 4096)
// at M = 8 where cuBLAS takes 31 µs, flat from M = 2 on.
#pragma once

#include "backend/cuda/common.cuh"

namespace gptq::backend::cuda {

template <class T>
struct DenseGemvJob {
  const T* w = nullptr;         // [N, K]
  const float* bias = nullptr;  // [N] or null
  T* y = nullptr;               // [1, N]
  int64_t N = 0;
};

template <class T>
struct DenseGemvGroup {
  DenseGemvJob<T> job[kMaxGroup];
  int count = 0;
  int64_t K = 0;
  Epilogue epilogue = Epilogue::kStore;
};

// Whether dense_gemv takes x [M, K]: M = 1, K a multiple of 8 and x 16-byte aligned
// (one 16-byte load is 8 elements).
bool dense_gemv_fits(const void* x, int64_t K, int64_t M);

// y_j[1, N_j] = x[1, K] W_jᵀ + b_j (or +=, per the epilogue) for every job j of g.
template <class T>
void dense_gemv(const DenseGemvGroup<T>& g, const T* x, cudaStream_t s);

}  // namespace gptq::backend::cuda
