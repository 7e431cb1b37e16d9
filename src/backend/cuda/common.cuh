// Shared by the CUDA backend's translation units: error checks that become the
// library's typed error, and the activation element types.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

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
// After a kernel launch: launch-configuration errors surface here, not at the next sync.
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

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

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

}  // namespace gptq::backend::cuda
