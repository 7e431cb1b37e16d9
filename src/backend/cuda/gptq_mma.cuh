// GPTQ products on the tensor cores, from the fragment-order layout of
// src/format/fragment_layout.h (built once at load). Launchers take raw device pointers
// and a stream.
#pragma once

#include "backend/cuda/common.cuh"

namespace gptq::backend::cuda {

// How a layer's device arrays were written, which decides whether a kernel may read them
// before its programmatic-launch wait (common.cuh): by kernels earlier in the stream (the
// device quantizer's layout; such a kernel may still be running when a dependent one
// starts), or copied from the host before any launch that reads them (the load path).
enum class WeightsWritten { kByKernels, kBeforeLaunch };

// The device copy of one layer in fragment order (every field as in FragmentLayout):
//   words      uint32 [Nt][Kp/64][32][bits]  codes in A-fragment order
//   scales     fp16   [G][Nt*16]             padded rows: 0
//   zeros      uint8  [G][Nt*16]             v2 zero points
//   tile_group int32  [Kp/16]                the group of each 16-input tile
//   chunk_group int32 [Kp/64]                a chunk's one group, or -1
//   perm       int32  [K] or null            sorted input j reads x column perm[j]
struct MmaDeviceLayout {
  int bits = 0;
  int64_t K = 0, N = 0, Kp = 0, Nt = 0, G = 0;
  const uint32_t* words = nullptr;
  const __half* scales = nullptr;
  const uint8_t* zeros = nullptr;
  const int32_t* tile_group = nullptr;
  const int32_t* chunk_group = nullptr;
  const int32_t* perm = nullptr;
  const float* bias = nullptr;  // [N] or null
  bool chunks_one_group = false;  // FragmentLayout::chunks_one_group
  bool pairs_one_group = false;   // FragmentLayout::pairs_one_group
  WeightsWritten written = WeightsWritten::kByKernels;
};

// Whether every code word (Nt·16·Kp·Bits/32) and group parameter (G·Nt·16) of w has an
// index below 2^31: the batch 1-64 kernels address them by 32-bit offsets from the
// layer's bases (one IMAD.WIDE per address); a layer past that takes the general kernel.
inline bool offsets_fit_int32(const MmaDeviceLayout& w) {
  constexpr int64_t kLimit = int64_t(1) << 31;
  return w.Nt * 16 * w.Kp / 32 * w.bits < kLimit && w.G * w.Nt * 16 < kLimit;
}

// Whether the mma kernels take `bits` with activations of `act`: fp16 every width;
// bf16 2/3/4 bits (128 + q must be exact in bf16's 8-bit significand, so not 8-bit).
bool mma_supported(int bits, DType act);

// Opts the batch-1 and batch 9-256 kernels into their shared memory (code rings + staged x, above the
// default 48 KiB); once per device, before any launch (the backend's constructor).
void gptq_mma_init();

// Products of one x [M, K] (q/k/v, gate/up) in one launch, and their split scratch
// (common.cuh's grouped-launch types on this layout).
template <class T>
using MmaGroup = ProductGroup<MmaDeviceLayout, T>;
using MmaScratch = SplitScratch;
template <class T>
MmaScratch gptq_mma_scratch(const MmaGroup<T>& g, int64_t M);

// y_j = x W_jᵀ + b_j (or +=, per the epilogue), any M ≥ 1: codes dequantized in
// registers into mma.m16n8k16 A fragments, fp32 accumulation, split along K with a
// deterministic last-block reduction.
template <class T>
void gptq_mma(const MmaGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
              cudaStream_t s);

}  // namespace gptq::backend::cuda
