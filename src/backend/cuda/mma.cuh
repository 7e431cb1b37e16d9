// Tensor-core building blocks for sm_80+ kernels, as inline PTX: asynchronous global →
// shared copies (cp.async), shared → register fragment loads (ldmatrix) and the
// m16n8k16 matrix multiply-accumulate (mma.sync) on fp16 or bf16 with fp32 accumulators.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with g = lane / 4 and
// c = lane % 4, each 32-bit register holding two 16-bit elements, the lower column first:
//   A (16 x 16, row-major)  a[0]: row g,   cols 2c, 2c+1      a[1]: row g+8, cols 2c, 2c+1
//                           a[2]: row g,   cols 8+2c, 8+2c+1  a[3]: row g+8, cols 8+2c, 8+2c+1
//   B (16 x 8, k x n)       b[0]: k 2c, 2c+1, col g           b[1]: k 8+2c, 8+2c+1, col g
//   C (16 x 8, fp32)        c[0], c[1]: row g, cols 2c, 2c+1  c[2], c[3]: row g+8, same cols
#pragma once

#include <cstdint>
#include <type_traits>

#include "backend/cuda/common.cuh"

namespace gptq::backend::cuda {

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes from global `src` to shared `dst` without passing through registers; when
// `valid` is false nothing is read and `dst` is zero-filled (src must still be a mapped
// address). Bypasses L1 (.cg): the tiles are streamed once per block.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
// The same to a shared-space address (smem_address): kernels that issue many copies
// per step keep their stage bases as such, not as generic pointers converted per copy.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
// 4 or 8 bytes from global to shared through L1 (.ca: the only form for these sizes).
template <int Bytes>
__device__ __forceinline__ void cp_async_small(uint32_t dst, const void* src) {
  static_assert(Bytes == 4 || Bytes == 8);
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(dst), "l"(src), "n"(Bytes));
}
template <int Bytes>
__device__ __forceinline__ void cp_async_small(void* dst, const void* src) {
  cp_async_small<Bytes>(smem_address(dst), src);
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8 x 8 matrices of 16-bit elements: lanes 8i..8i+7 give the addresses of matrix i's
// eight rows (16 contiguous bytes each); r[i] receives matrix i in the A/B/C pair layout
// (lane holds row lane / 4, cols 2 (lane % 4), +1).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(row)));
}
// The same with each matrix transposed: lane holds rows 2 (lane % 4), +1 of col lane / 4.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(row)));
}

// c += A B for one 16 x 8 x 16 tile; T (__half or __nv_bfloat16) is the type of A and B.
template <class T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "mma_16816: f16 or bf16");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats rounded to T and packed, `lo` in the lower half (the lower column).
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// 2^x, one MUFU instruction (relative error ~2^-22; 2^-inf = 0).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace gptq::backend::cuda
