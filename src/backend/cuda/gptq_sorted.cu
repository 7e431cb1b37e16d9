// The sorted copy of x for act-order products (gptq_sorted.cuh).
#include "backend/cuda/gptq_sorted.cuh"

namespace gptq::backend::cuda {
namespace {

constexpr int kThreads = 256;

// grid (ceil(ld / 256), M), 256 threads: one output element per thread. Reads of x are
// scattered within a row (perm), writes coalesced; x [M, K] is small beside the weights.
template <class T>
__global__ void __launch_bounds__(kThreads)
    gather_kernel(const T* __restrict__ x, int64_t ldx, int64_t K, const int32_t* __restrict__ perm, T* out,
                  int64_t ld) {
  pdl_begin();
  const int64_t k = int64_t(blockIdx.x) * kThreads + threadIdx.x, m = blockIdx.y;
  if (k < ld) out[m * ld + k] = k < K ? x[m * ldx + (perm != nullptr ? perm[k] : k)] : from_f32<T>(0.0f);
}

}  // namespace

template <class T>
void gather_sorted(const T* x, int64_t ldx, int64_t M, int64_t K, const int32_t* perm, T* out, cudaStream_t s) {
  GPTQ_CHECK(M >= 1 && M <= 65535 && K >= 1, "gather_sorted: shape");
  const int64_t ld = sorted_ld(K);
  launch(gather_kernel<T>, dim3(unsigned(ceil_div(ld, kThreads)), unsigned(M)), kThreads, 0, s, x, ldx, K, perm,
         out, ld);
}

template void gather_sorted<__half>(const __half*, int64_t, int64_t, int64_t, const int32_t*, __half*, cudaStream_t);
template void gather_sorted<__nv_bfloat16>(const __nv_bfloat16*, int64_t, int64_t, int64_t, const int32_t*,
                                           __nv_bfloat16*, cudaStream_t);

}  // namespace gptq::backend::cuda
