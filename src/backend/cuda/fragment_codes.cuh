// Device reading of the fragment-order codes (src/format/fragment_layout.h): a lane's
// run of words for one 64-input chunk, and the mma.m16n8k16 A registers formed from it.
// Shared by the tensor-core kernels (gptq_mma.cu, gptq_decode.cu).
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/gptq_mma.cuh"
#include "backend/cuda/mma.cuh"

namespace gptq::backend::cuda::fragment {

// The magic: B + q for a code q OR-ed into each 16-bit half.
template <class T>
struct Magic;
template <>
struct Magic<__half> {
  static constexpr uint32_t kBits = 0x64006400u;  // 1024.0 in both halves
};
template <>
struct Magic<__nv_bfloat16> {
  static constexpr uint32_t kBits = 0x43004300u;  // 128.0 in both halves
};

// B + z in both halves for a zero point z < 256 (zero-extended): the byte z under the
// magic's exponent byte, [z, e, z, e], one byte permute (an OR of z · 0x10001 is three
// instructions). Exact while z fits the significand: z < 1024 in fp16, z < 128 in bf16
// (the mma kernels take bf16 at 2-4 bits only).
template <class T>
__device__ __forceinline__ uint32_t magic_plus(uint32_t z) {
  return __byte_perm(z, Magic<T>::kBits, 0x5050);
}

// (x & Mask) | bits in one LOP3: written as C, the AND and the OR of two immediates
// compile to two (LOP3 takes one immediate; here `bits` is a register).
template <uint32_t Mask>
__device__ __forceinline__ uint32_t mask_or(uint32_t x, uint32_t bits) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(r) : "r"(x), "n"(Mask), "r"(bits));  // 0xea: (a & b) | c
  return r;
}

// Register p of tile j (compile-time) from a lane's chunk words: codes at bits [0, bits)
// and [16, 16 + bits), the magic OR-ed in (fragment_layout.h gives the bit positions).
template <int Bits, int J, int P, class T>
__device__ __forceinline__ uint32_t a_register(const uint32_t (&w)[Bits]) {
  constexpr int s = 4 * J + P;
  if constexpr (Bits == 4) {
    return mask_or<0x000F000Fu>(w[J] >> (4 * P), Magic<T>::kBits);
  } else if constexpr (Bits == 8) {
    // Bytes (P & 1) · 2 and + 1 of word 2J + P/2 into the low bytes of the halves; the
    // high bytes from the second operand (0x64: fp16 only, see mma_supported).
    return __byte_perm(w[2 * J + P / 2], 0x64646464u, (P & 1) ? 0x7362 : 0x5140);
  } else if constexpr (Bits == 2) {
    return mask_or<0x00030003u>(w[s / 8] >> (2 * (s % 8)), Magic<T>::kBits);
  } else {
    static_assert(Bits == 3);
    const uint32_t hi = mask_or<0x00040004u>(s >= 2 ? w[2] >> (s - 2) : w[2] << (2 - s), Magic<T>::kBits);
    return mask_or<0x00030003u>(w[s / 8] >> (2 * (s % 8)), hi);
  }
}

// The four A registers of tile J (compile-time) of a chunk.
template <int Bits, int J, class T>
__device__ __forceinline__ void a_fragment(const uint32_t (&w)[Bits], uint32_t (&a)[4]) {
  a[0] = a_register<Bits, J, 0, T>(w);
  a[1] = a_register<Bits, J, 1, T>(w);
  a[2] = a_register<Bits, J, 2, T>(w);
  a[3] = a_register<Bits, J, 3, T>(w);
}

// One lane's words of one chunk; codes are read once per product, so past L1.
template <int Bits>
__device__ __forceinline__ void load_run(const uint32_t* p, uint32_t (&r)[Bits]) {
  if constexpr (Bits == 4) {
    const uint4 v = __ldcs(reinterpret_cast<const uint4*>(p));
    r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
  } else if constexpr (Bits == 8) {
    const uint4 v = __ldcs(reinterpret_cast<const uint4*>(p));
    const uint4 u = __ldcs(reinterpret_cast<const uint4*>(p) + 1);
    r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w, r[4] = u.x, r[5] = u.y, r[6] = u.z, r[7] = u.w;
  } else if constexpr (Bits == 2) {
    const uint2 v = __ldcs(reinterpret_cast<const uint2*>(p));
    r[0] = v.x, r[1] = v.y;
  } else {
    r[0] = __ldcs(p), r[1] = __ldcs(p + 1), r[2] = __ldcs(p + 2);  // 12-byte runs: 4-byte aligned
  }
}

// load_run's run into shared memory by cp.async (no registers held while it flies) at
// shared-space address dst (smem_address); dst and src are 16-byte aligned at 2/4/8 bits
// (runs of 8/16/32 bytes), 4-byte at 3.
template <int Bits>
__device__ __forceinline__ void load_run_async(uint32_t dst, const uint32_t* src) {
  if constexpr (Bits == 4) {
    cp_async_16(dst, src, true);
  } else if constexpr (Bits == 8) {
    cp_async_16(dst, src, true);
    cp_async_16(dst + 16, src + 4, true);
  } else if constexpr (Bits == 2) {
    cp_async_small<8>(dst, src);
  } else {
    cp_async_small<4>(dst, src), cp_async_small<4>(dst + 4, src + 1), cp_async_small<4>(dst + 8, src + 2);
  }
}
template <int Bits>
__device__ __forceinline__ void load_run_async(uint32_t* dst, const uint32_t* src) {
  load_run_async<Bits>(smem_address(dst), src);
}

// A lane's run back from its ring slot, as one vector load where the width allows (a
// warp then reads 32 consecutive runs: no bank conflicts; 3-bit runs are 3 words apart,
// odd, so their word loads are conflict-free too).
template <int Bits>
__device__ __forceinline__ void read_run(const uint32_t* p, uint32_t (&r)[Bits]) {
  if constexpr (Bits == 4) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
  } else if constexpr (Bits == 8) {
    const uint4 v = reinterpret_cast<const uint4*>(p)[0], u = reinterpret_cast<const uint4*>(p)[1];
    r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w, r[4] = u.x, r[5] = u.y, r[6] = u.z, r[7] = u.w;
  } else if constexpr (Bits == 2) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    r[0] = v.x, r[1] = v.y;
  } else {
    r[0] = p[0], r[1] = p[1], r[2] = p[2];
  }
}

// Row tiles of a block (one 16-row tile per warp of 4 unless a kernel says otherwise:
// gptq_batch.cu takes 8), and the blocks of a group's grid along x: each job's
// ceil(Nt / Per), in job order.
inline constexpr int kBlockTiles = 4;
template <int Per = kBlockTiles>
__host__ __device__ constexpr int64_t block_tiles(int64_t nt) {
  return (nt + Per - 1) / Per;
}
template <int Per = kBlockTiles, class T>
int64_t group_tiles(const MmaGroup<T>& g) {
  int64_t t = 0;
  for (int j = 0; j < g.count; ++j) t += block_tiles<Per>(g.job[j].w.Nt);
  return t;
}
// Which job of g block `tile` belongs to; `tile` becomes the block tile within it.
template <int Per = kBlockTiles, class T>
__device__ __forceinline__ int job_of(const MmaGroup<T>& g, int64_t& tile) {
  int j = 0;
  while (j + 1 < g.count && tile >= block_tiles<Per>(g.job[j].w.Nt)) tile -= block_tiles<Per>(g.job[j++].w.Nt);
  return j;
}

// f.template operator()<Bits>() for the layout's widths with activations T: 2, 3, 4 and
// 8 bits (8 with fp16 only: mma_supported); `what` names the caller in the error.
template <class T, class F>
decltype(auto) with_bits(int bits, const char* what, F&& f) {
  switch (bits) {
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    case 8:
      if constexpr (std::is_same_v<T, __half>) return f.template operator()<8>();
      [[fallthrough]];
    default: throw Error(ErrorKind::kUnsupported, std::string(what) + ": unsupported bits for these activations");
  }
}

}  // namespace gptq::backend::cuda::fragment
