// Shared by the CUDA backend's translation units: error checks that become the
// library's typed error, and the activation element types.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "core/dtype.h"
#include "core/error.h"

namespace gptq::backend::cuda {

[[noreturn]] void throw_cuda(const char* stmt, const char* file, int line, const std::string& msg);

// Every CUDA runtime / cuBLAS call goes through these: a failure throws
// Error(kDevice, "<statement> at file:line: <reason>").
#define CUDA_CHECK(stmt)                                                                  \
  do {                                                                                    \
    const cudaError_t err_ = (stmt);                                                      \
    if (err_ != cudaSuccess) ::gptq::backend::cuda::throw_cuda(#stmt, __FILE__, __LINE__, \
                                                                cudaGetErrorString(err_)); \
  } while (0)
#define CUBLAS_CHECK(stmt)                                                                       \
  do {                                                                                           \
    const cublasStatus_t st_ = (stmt);                                                           \
    if (st_ != CUBLAS_STATUS_SUCCESS) ::gptq::backend::cuda::throw_cuda(#stmt, __FILE__, __LINE__, \
                                                                        cublasGetStatusString(st_)); \
  } while (0)

// Programmatic dependent launch (sm_90+). Every kernel starts with pdl_begin(): the wait
// returns once the work before it in the stream has finished and its writes are visible
// (so no kernel reads or writes anything early), and the trigger then lets the next
// kernel's launch start while this one runs. A launch thus overlaps its predecessor's
// execution instead of following its completion: decode is a chain of ~10 small
// kernels per layer, each paying that launch latency. No-ops below sm_90.
// A kernel may instead trigger first and wait later (pdl_trigger, then pdl_wait), reading
// before the wait only memory that no kernel ahead of it in the stream writes: weights
// copied in before the launch (WeightsWritten::kBeforeLaunch, gptq_mma.cuh).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
__device__ __forceinline__ void pdl_begin() {
  pdl_wait();
  pdl_trigger();
}

// Whether the current device takes the programmatic-serialization launch attribute.
bool pdl_supported();

// kernel<<<grid, block, smem, s>>>(args...) with programmatic stream serialization
// allowed where the device has it; a launch error throws (naming this file and line).
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_supported() ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

// v, opaque to the compiler: ptxas cannot recompute it from what it was computed from.
// A per-thread constant set before a loop then stays in its register; below its register
// cap ptxas otherwise rematerializes such values inside the loop (a 64-bit clamp and
// multiply per use), which costs issue slots in loops bound by instruction issue.
__device__ __forceinline__ int pinned(int v) {
  asm volatile("" : "+r"(v));
  return v;
}

// Element conversions to and from the fp32 the kernels compute in.
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Calls f.template operator()<T>() with T the element type of `dtype` (F32, F16, BF16).
template <class F>
void with_act_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kF32: f.template operator()<float>(); return;
    case DType::kF16: f.template operator()<__half>(); return;
    case DType::kBF16: f.template operator()<__nv_bfloat16>(); return;
    default: GPTQ_CHECK(false, "cuda: activations must be F32, F16 or BF16");
  }
}

// How a product's result lands in y: stored, or added to what y holds (the residual add
// folded into the product).
enum class Epilogue { kStore, kAccumulate };

// Most products one grouped launch runs (q/k/v is the largest group).
inline constexpr int kMaxGroup = 3;

// One product of a grouped launch: y[M, N] (row stride ldy) from layer w, whose device
// layout is Layout (GptqDeviceLayout for the GEMV, MmaDeviceLayout for the mma kernel).
template <class Layout, class T>
struct ProductJob {
  Layout w;
  T* y = nullptr;
  int64_t ldy = 0;
};

// Products of the same x [M, K] (q/k/v, gate/up) in one launch; all jobs share K and bits.
template <class Layout, class T>
struct ProductGroup {
  ProductJob<Layout, T> job[kMaxGroup];
  int count = 0;
  Epilogue epilogue = Epilogue::kStore;
  int max_splits = 0;  // splits of K at most (BackendOptions::gptq_max_splits; 0: the planner's)
};

// Scratch a split-K launch needs: fp32 partials and int32 tile counters. The counters
// must be zero before the first call; every call leaves them zero.
struct SplitScratch {
  int64_t floats = 0;
  int64_t counters = 0;
};

// SMs of the current device (a host-side attribute query, no synchronisation; cheap
// enough per launch, and right on whichever device the calling thread has set).
inline int sm_count() {
  int dev = 0, v = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
  return v;
}

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

// A planner's split count under a group's max_splits (0: no cap), never below `least`
// (the split count a kernel's staging needs).
inline int64_t capped_splits(int64_t planned, int64_t least, int max_splits) {
  return max_splits > 0 ? std::max(least, std::min<int64_t>(planned, max_splits)) : planned;
}

// L2 bytes of the current device (as sm_count).
inline int64_t l2_bytes() {
  int dev = 0, v = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrL2CacheSize, dev));
  return v;
}

}  // namespace gptq::backend::cuda
