// The sorted copy of x for act-order products (gptq_sorted.cuh).
#include "backend/cuda/gptq_sorted.cuh"

namespace gptq::backend::cuda {
namespace {

constexpr int kThreads = 256;

// Below this many rows the element kernel spreads each row over blocks (a row kernel
// would leave SMs idle) and x is small enough that its scattered reads stay cheap.
constexpr int64_t kRowKernelMinRows = 128;
// The row kernel holds one row of x in shared memory; at most the default 48 KiB, so no
// opt-in is needed (fp16 K <= 24576: every Llama shape to 8B).
constexpr int64_t kRowKernelMaxSmem = 48 << 10;

// grid (ceil(ld / 256), min(M, 65535)), 256 threads: one output element per thread and
// row, rows strided by gridDim.y; for small M. Reads of x are scattered within a row
// (perm): each warp's 32 reads touch up to 32 sectors, which is what limits it at large
// M (NOTES.md, version 10).
template <class T>
__global__ void __launch_bounds__(kThreads)
    gather_kernel(const T* __restrict__ x, int64_t ldx, int64_t M, int64_t K, const int32_t* __restrict__ perm,
                  T* out, int64_t ld) {
  pdl_begin();
  const int64_t k = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (k >= ld) return;
  const int64_t src = k < K ? (perm != nullptr ? perm[k] : k) : -1;
  for (int64_t m = blockIdx.y; m < M; m += gridDim.y) out[m * ld + k] = src >= 0 ? x[m * ldx + src] : from_f32<T>(0.0f);
}

// grid (min(M, 65535)), 256 threads, dynamic shared memory K * sizeof(T): a block copies
// row m of x [M, K] into shared memory with coalesced (16-byte where aligned) loads, then
// writes out[m, k] = row[perm[k]] coalesced; rows strided by gridDim.x. DRAM moves x once
// and its copy once; the scattered reads are shared-memory bank conflicts, not sectors.
template <class T>
__global__ void __launch_bounds__(kThreads)
    gather_rows_kernel(const T* __restrict__ x, int64_t ldx, int64_t M, int K, const int32_t* __restrict__ perm,
                       T* out, int64_t ld) {
  extern __shared__ uint4 row_storage[];
  T* row = reinterpret_cast<T*>(row_storage);
  constexpr int kVec = 16 / sizeof(T);
  pdl_begin();
  for (int64_t m = blockIdx.x; m < M; m += gridDim.x) {
    const T* xr = x + m * ldx;
    if (reinterpret_cast<uintptr_t>(xr) % 16 == 0 && K % kVec == 0) {
      for (int v = threadIdx.x; v < K / kVec; v += kThreads) row_storage[v] = reinterpret_cast<const uint4*>(xr)[v];
    } else {
      for (int k = threadIdx.x; k < K; k += kThreads) row[k] = xr[k];
    }
    __syncthreads();
    T* o = out + m * ld;
    for (int k = threadIdx.x; k < ld; k += kThreads) o[k] = k < K ? row[perm[k]] : from_f32<T>(0.0f);
    __syncthreads();  // the next row overwrites `row`
  }
}

}  // namespace

template <class T>
void gather_sorted(const T* x, int64_t ldx, int64_t M, int64_t K, const int32_t* perm, T* out, cudaStream_t s) {
  const int64_t ld = sorted_ld(K);
  GPTQ_CHECK(M >= 1 && K >= 1 && ceil_div(ld, kThreads) < (int64_t(1) << 31), "gather_sorted: shape");
  const int64_t row_bytes = K * int64_t(sizeof(T));
  if (perm != nullptr && M >= kRowKernelMinRows && row_bytes <= kRowKernelMaxSmem) {
    launch(gather_rows_kernel<T>, dim3(unsigned(std::min<int64_t>(M, 65535))), kThreads,
           size_t(ceil_div(row_bytes, 16) * 16), s, x, ldx, M, int(K), perm, out, ld);
    return;
  }
  launch(gather_kernel<T>, dim3(unsigned(ceil_div(ld, kThreads)), unsigned(std::min<int64_t>(M, 65535))), kThreads, 0,
         s, x, ldx, M, K, perm, out, ld);
}

template void gather_sorted<float>(const float*, int64_t, int64_t, int64_t, const int32_t*, float*, cudaStream_t);
template void gather_sorted<__half>(const __half*, int64_t, int64_t, int64_t, const int32_t*, __half*, cudaStream_t);
template void gather_sorted<__nv_bfloat16>(const __nv_bfloat16*, int64_t, int64_t, int64_t, const int32_t*,
                                           __nv_bfloat16*, cudaStream_t);

}  // namespace gptq::backend::cuda
