// Dense products for few rows (decode): y = x Wᵀ + b, W [N, K] row-major in the
// activation type (f16 or bf16), streamed once with 16-byte loads. Several products of
// the same x (q/k/v, gate/up) run in one launch. Larger batches and f32 go to cuBLAS.
#pragma once

#include "backend/cuda/common.cuh"

namespace gptq::backend::cuda {

inline constexpr int kDenseGemvMaxRows = 8;

template <class T>
struct DenseGemvJob {
  const T* w = nullptr;         // [N, K]
  const float* bias = nullptr;  // [N] or null
  T* y = nullptr;               // [M, ldy]
  int64_t ldy = 0;
  int64_t N = 0;
};

template <class T>
struct DenseGemvGroup {
  DenseGemvJob<T> job[kMaxGroup];
  int count = 0;
  int64_t K = 0;
  Epilogue epilogue = Epilogue::kStore;
};

// Whether dense_gemv takes x [M, K] with row stride ldx: K and ldx multiples of 8 and x
// 16-byte aligned (one 16-byte load is 8 elements), M <= kDenseGemvMaxRows.
bool dense_gemv_fits(const void* x, int64_t ldx, int64_t K, int64_t M);

// y_j[M, N_j] = x[M, K] W_jᵀ + b_j (or +=, per the epilogue) for every job j of g.
template <class T>
void dense_gemv(const DenseGemvGroup<T>& g, const T* x, int64_t ldx, int64_t M, cudaStream_t s);

}  // namespace gptq::backend::cuda
