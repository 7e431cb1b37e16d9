// The split-K epilogue of the GPTQ kernels (gptq_decode.cu, gptq_batch.cu, gptq_mma.cu):
// each split of K writes its fp32 partial sums, and the last block of an output block to
// arrive sums them in split order (so the result does not depend on arrival order) and
// stores. One definition, so the three kernels cannot drift apart in the one place where
// a missing fence or a counter left non-zero corrupts a later call.
#pragma once

#include <cstdint>

#include "backend/cuda/common.cuh"

namespace gptq::backend::cuda {

// Fp32 floats of split scratch a launch of `blocks` output blocks of `threads` threads,
// each holding `per_thread` accumulators, needs for `splits` splits (none for one).
__host__ __device__ inline int64_t split_floats(int64_t blocks, int threads, int per_thread, int64_t splits) {
  return splits == 1 ? 0 : splits * blocks * threads * per_thread;
}

// Ends a block's product. acc: this thread's E fp32 accumulators, flat (E % 4 == 0, every
// index compile-time after unrolling, so they stay in registers); store_all() writes the
// block's finished outputs from acc (the caller's index mapping, bias, residual). With one
// split it stores at once. Otherwise:
//   part:    this output block's partials [splits][E / 4][threads][4] fp32, at
//            block · split_floats(1, threads, E, splits) in the scratch: kept in fragment
//            order, so a split's write and read are float4 per thread, consecutive across
//            threads (a warp moves 512 contiguous bytes per instruction; the [split, M, N]
//            layout of version 5 took a scalar access per element, 8 rows x 4 columns of
//            32-byte pieces per warp instruction);
//   split:   this block's split (blockIdx.y in every kernel);
//   counter: this output block's arrival count, zero on entry to the launch, left zero.
// Every thread of the block must call it (it holds barriers).
template <int E, class StoreAll>
__device__ __forceinline__ void finish_split(float* acc, StoreAll&& store_all, float* part, int split, int splits,
                                             int32_t* counter) {
  static_assert(E % 4 == 0, "accumulators move as float4");
  if (splits == 1) {
    store_all();
    return;
  }
  __shared__ bool last;
  float4* const base = reinterpret_cast<float4*>(part) + threadIdx.x;
  const int64_t threads = blockDim.x;
  auto at = [&](int sp, int q) { return base + (int64_t(sp) * (E / 4) + q) * threads; };
#pragma unroll
  for (int q = 0; q < E / 4; ++q) *at(split, q) = make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]);
  __threadfence();  // this block's partials are visible device-wide before it is counted
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1) == splits - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();  // ... and every other split's, before the last block reads them
  // Σ over the splits in split order (the result does not depend on arrival order).
  // U splits' loads are issued before any is summed, so ~splits / U L2 round trips
  // follow one another, not splits / 2 (19 splits took ~4 µs at two a round, measured
  // with per-block timestamps). 32 floats a thread in flight where E is small (the
  // batch 1-8 kernel, E = 4: 8 splits a round; 16 a round took it from 96 registers a
  // thread to 167), two splits a round as before for the batch kernels' E >= 16.
  constexpr int U = E >= 16 ? 2 : 32 / E;
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = 0.0f;
  for (int s0 = 0; s0 < splits; s0 += U) {
    float4 v[U][E / 4];
#pragma unroll
    for (int u = 0; u < U; ++u) {
#pragma unroll
      for (int q = 0; q < E / 4; ++q) {
        if (s0 + u < splits) v[u][q] = __ldcg(at(s0 + u, q));
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
#pragma unroll
      for (int q = 0; q < E / 4; ++q) {
        if (s0 + u < splits) {
          acc[4 * q] += v[u][q].x, acc[4 * q + 1] += v[u][q].y, acc[4 * q + 2] += v[u][q].z;
          acc[4 * q + 3] += v[u][q].w;
        }
      }
    }
  }
  store_all();
  if (threadIdx.x == 0) *counter = 0;  // ready for the next call (and graph replay)
}

}  // namespace gptq::backend::cuda
