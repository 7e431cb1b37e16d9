// GPTQ products at batch 1-8 on the tensor cores (mma.sync.m16n8k16), version 4.
//
// yᵀ [N, M] = W [N, K] · xᵀ [K, M] as in gptq_mma.cu: W is the A operand, dequantized in
// registers from the fragment layout (B + q OR-ed, one HSUB2 of B + z: q − z exactly), x
// the B operand (16 inputs x 8 batch rows, rows past M fed as 0), fp32 accumulation and
// each group's sum scaled once in fp32. A block of 4 warps owns 64 output rows (a 16-row
// tile per warp) and a split of K; each warp streams its tile's codes over the split.
//
// What differs from the general kernel (NOTES.md, version 3.1: 53 instructions per 16 x
// 16 tile against a budget of ~31 at the bandwidth limit):
//   - x is staged once per block, before any product, in the order the fragments read it:
//     per 64-input chunk, lane t's 16 values of the chunk's 4 tiles are contiguous, so a
//     lane reads its B operands of a chunk in two 16-byte loads (two 4-byte loads per tile
//     before). One barrier per block.
//   - codes come straight into registers, kAhead chunks ahead (no ring in shared memory,
//     no cp.async bookkeeping), with each chunk's group loaded beside them;
//   - one group check per chunk: the layout guarantees each chunk lies in one group
//     (chunks_one_group), so there is no per-tile path.
// Predicted per 16 x 16 tile at 4 bits: 7 integer ops + 4 HSUB2 to form A, one mma, half
// a shared load, a quarter of a global load, ~1 for the group's flush: ~14 warp
// instructions, inside the ~31 the bandwidth allows (16.3 bytes per SM cycle).
//
// Splits along K write fp32 partials in fragment order (split_k.cuh); the last block of each row-tile block
// to finish sums them in split order (deterministic) and applies the epilogue.
#include <algorithm>
#include <map>
#include <mutex>
#include <utility>
#include <type_traits>

#include "backend/cuda/fragment_codes.cuh"
#include "backend/cuda/gptq_decode.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/split_k.cuh"

namespace gptq::backend::cuda {
namespace {

using namespace fragment;

constexpr int kWarps = kBlockTiles;
constexpr int kThreads = kWarps * 32;
constexpr int kChunk = 64;  // inputs per lane run of codes
// Chunks of codes each lane holds in flight in registers: ~64 bytes a lane whatever the
// width (kAhead · Bits words), so 2 KiB a warp and ~48 KiB an SM at 24 warps, about
// twice the bandwidth-latency product's share of an SM (4.26 TB/s x ~0.6 µs / 132).
template <int Bits>
constexpr int kAhead = Bits == 8 ? 2 : Bits == 2 ? 8 : 4;
// Staged rows are padded so that a row's stride is 16 bytes past a multiple of 128: a
// quarter-warp's 16-byte loads (2 rows x 4 lanes) then fall in 32 distinct banks.
constexpr int kRowPad = 8;
// 16-byte vectors of x each thread has in flight while staging (4 registers each).
constexpr int kStageBatch = 4;
// Staged x per block at most: the default dynamic shared memory, no opt-in.
constexpr int64_t kMaxStageBytes = 48 * 1024;

// Where staged chunk position holds input k (0..63) of the chunk: lane t = (k % 8) / 2
// reads 16 values from t·16: tile j's b0 pair (inputs 16j + 2t, +1) at 4j, its b1 pair
// (16j + 8 + 2t, +1) at 4j + 2 (mma.cuh's B layout).
__host__ __device__ constexpr int staged_position(int k) {
  const int j = k / 16, kk = k % 16;
  return ((kk % 8) / 2) * 16 + j * 4 + (kk / 8) * 2 + kk % 2;
}
static_assert(staged_position(0) == 0 && staged_position(1) == 1 && staged_position(8) == 2);
static_assert(staged_position(2) == 16 && staged_position(16) == 4 && staged_position(63) == 63);

template <class T>
int64_t stage_bytes(int64_t M, int chunks_per) {
  return M * (int64_t(chunks_per) * kChunk + kRowPad) * int64_t(sizeof(T));
}

// grid (Σ_j ceil(Nt_j / 4), splits), 128 threads, stage_bytes<T>(M, chunks_per_split).
// x [M, K] row stride ldx; vec_x: rows 16-byte aligned (ldx % 8 == 0, x aligned).
template <int Bits, class T>
__global__ void __launch_bounds__(kThreads)
    decode_kernel(MmaGroup<T> g, const T* __restrict__ x, int64_t ldx, int M, bool vec_x, int chunks_per_split,
                  int splits, float* partials, int32_t* counters) {
  pdl_trigger();
  using T2 = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
  constexpr int D = kAhead<Bits>;
  extern __shared__ __align__(16) unsigned char smem[];
  T* const xs = reinterpret_cast<T*>(smem);

  int64_t tile = blockIdx.x;
  const int j = job_of(g, tile);
  const MmaDeviceLayout w = g.job[j].w;  // by value: indexed by j, its fields would be re-read per use
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gq = lane / 4, tq = lane % 4;
  const int64_t nt = tile * kWarps + warp;  // this warp's 16-row tile
  const bool active = nt < w.Nt;
  const int64_t chunks = w.Kp / kChunk;
  const int64_t c0 = int64_t(blockIdx.y) * chunks_per_split;
  const int n = int(min(chunks, c0 + chunks_per_split) - c0);  // chunks of this split
  const int ld = n * kChunk + kRowPad;                        // staged row stride
  const uint32_t* const run = w.words + ((nt * chunks + c0) * 32 + lane) * Bits;  // + i · 32 · Bits
  const int32_t* const chunk_tiles = w.tile_group + c0 * (kChunk / 16);         // + 4i: chunk i's group
  // Weights copied in before the launch are read before the wait for the kernels ahead
  // (their DRAM round trip then overlaps the predecessor's tail and this launch); x, the
  // partials and y only after it. Uniform per block (one job).
  const bool early = w.written == WeightsWritten::kBeforeLaunch;
  if (!early) pdl_wait();

  // Codes and groups of chunks [i, i + D) of the split, issued before x is staged (and,
  // where `early`, before the wait for the kernels ahead).
  // (Two such buffers alternating instead of a copy into `cur` save ~5% of the loop's
  // instructions but take 128 registers, down from 80: 4 blocks an SM instead of 6.)
  struct Ahead {
    uint32_t codes[D][Bits] = {};
    int group[D] = {};
  };
  Ahead next;
  auto fetch = [&](int i, Ahead& a) {
#pragma unroll
    for (int d = 0; d < D; ++d) {
      if (active && i + d < n) {
        load_run<Bits>(run + int64_t(i + d) * 32 * Bits, a.codes[d]);
        a.group[d] = __ldg(chunk_tiles + 4 * (i + d));
      }
    }
  };
  fetch(0, next);

  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  float sum[2][4] = {};  // the group's Σ (q − z) x, two chains (even / odd tiles)
  int group = -1;
  float s_lo = 0.0f, s_hi = 0.0f;  // the group's scales of rows gq, gq + 8
  T2 z_lo, z_hi;                   // B + zero of those rows, in both halves
  __half2 z_hi16;                  // −(64 + zero) of row gq + 8 (fp16 at 4 bits, a_minus_zero)
  const int64_t row_lo = nt * 16 + gq;
  // This lane's rows gq, gq + 8 of the scales and zeros [G][Nt·16]: group tg's at
  // tg · rs + par_off (decode_applies: offsets_fit_int32; pinned, common.cuh).
  const int par_off = pinned(int(row_lo));
  const int rs = int(w.Nt * 16), G = int(w.G);
  auto flush = [&]() {  // with nothing summed yet (s = 0, sums 0) it adds 0
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      acc[i] += (i < 2 ? s_lo : s_hi) * (sum[0][i] + sum[1][i]);
      sum[0][i] = sum[1][i] = 0.0f;
    }
  };
  // The next group's parameters are loaded on entering a group (groups run in order),
  // so their L2 round trip overlaps this group's products; kept raw, converted on use.
  int pf_group = -1;
  __half pf_s_lo, pf_s_hi;
  uint32_t pf_z_lo = 0, pf_z_hi = 0;  // the zero bytes, zero-extended
  auto prefetch = [&](int tg) {
    if (tg >= G) return;
    const int off = tg * rs + par_off;
    pf_group = tg;
    pf_s_lo = w.scales[off], pf_s_hi = w.scales[off + 8];
    pf_z_lo = w.zeros[off], pf_z_hi = w.zeros[off + 8];
  };
  if (active && n > 0) prefetch(__ldg(chunk_tiles));  // the split's first group, in flight while x is staged
  if (early) pdl_wait();

  // Stage x rows [0, M) x sorted inputs of the split, in staged_position order, zeros
  // past K; 8 consecutive inputs (half a tile: one B pair of each lane t) per vector.
  // Where rows are whole 16-byte vectors (no permutation, aligned, K % 8 == 0) each
  // thread loads kStageBatch vectors before storing any: one load and its store per
  // step kept one L2 round trip in flight, M · vecs / 128 in a row (16 at M = 8 on 2048
  // inputs, ~5 µs in per-block timestamps). The general path stays one vector a step and
  // out of the unrolled batch: the kernel's code is shared with the loops of the other
  // blocks on the SM, and inlining it 4 times (2x the kernel's code) made lm_head and
  // gate/up 4-18% slower (NOTES.md, version 9).
  {
    const int64_t k0 = c0 * kChunk;
    const int vecs = n * (kChunk / 8), total = M * vecs;
    // Vector i: row i / vecs, vector v = i % vecs of the split (inputs k0 + 8v ..
    // k0 + 8v + 7, chunk v / 8). Inputs k8 + 2e, +1 are one pair: staged at
    // staged_position(k8 + 2e), contiguous.
    auto store = [&](unsigned m, unsigned v, uint4 p) {
      const unsigned k8 = (v % (kChunk / 8)) * 8;
      uint32_t* dst = reinterpret_cast<uint32_t*>(xs + m * ld + (v / (kChunk / 8)) * kChunk);
      dst[staged_position(k8) / 2] = p.x, dst[staged_position(k8 + 2) / 2] = p.y;
      dst[staged_position(k8 + 4) / 2] = p.z, dst[staged_position(k8 + 6) / 2] = p.w;
    };
    if (w.perm == nullptr && vec_x && w.K % 8 == 0) {
      for (unsigned i0 = threadIdx.x; i0 < unsigned(total); i0 += kThreads * kStageBatch) {
        uint4 u[kStageBatch];
        unsigned m[kStageBatch], v[kStageBatch];
#pragma unroll
        for (int b = 0; b < kStageBatch; ++b) {
          const unsigned i = i0 + b * kThreads;
          m[b] = i / unsigned(vecs), v[b] = i % unsigned(vecs);
          const int64_t k = k0 + int64_t(v[b]) * 8;
          u[b] = i < unsigned(total) && k < w.K ? *reinterpret_cast<const uint4*>(x + m[b] * ldx + k)
                                                : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int b = 0; b < kStageBatch; ++b) {
          if (i0 + b * kThreads < unsigned(total)) store(m[b], v[b], u[b]);
        }
      }
    } else {
      for (int i = threadIdx.x; i < total; i += kThreads) {
        const int m = i / vecs, v = i % vecs;
        const int64_t k = k0 + int64_t(v) * 8;
        uint32_t pair[4];
        for (int e = 0; e < 4; ++e) {
          T v2[2];
          for (int h = 0; h < 2; ++h) {
            const int64_t ke = k + 2 * e + h;
            v2[h] = ke < w.K ? x[m * ldx + (w.perm != nullptr ? w.perm[ke] : ke)] : from_f32<T>(0.0f);
          }
          pair[e] = *reinterpret_cast<const uint32_t*>(v2);
        }
        store(m, v, make_uint4(pair[0], pair[1], pair[2], pair[3]));
      }
    }
  }
  __syncthreads();
  auto enter_group = [&](int tg) {
    flush();
    group = tg;
    if (tg != pf_group) prefetch(tg);  // not foreseen (a group skipped): load now and wait
    s_lo = __half2float(pf_s_lo);
    s_hi = __half2float(pf_s_hi);
    const uint32_t zl = magic_plus<T>(pf_z_lo), zh = magic_plus<T>(pf_z_hi);
    z_lo = *reinterpret_cast<const T2*>(&zl);
    z_hi = *reinterpret_cast<const T2*>(&zh);
    if constexpr (std::is_same_v<T, __half>) z_hi16 = __hsub2(__float2half2_rn(960.0f), z_hi);  // 960 − (1024 + z)
    prefetch(tg + 1);
  };

  // A = q − z for tile J of chunk words c. In general B + q (the magic OR-ed in) less
  // B + z, one HSUB2. fp16 at 4 bits: the codes of odd registers (row gq + 8) sit at bits
  // 4-7 of each half's byte and are masked in place, giving 1024 + 16q; one HFMA2 by
  // 1/16 with −(64 + z) gives q − z (every step exact in fp16). One shift per word
  // instead of three, 9 operations per tile instead of 11.
  auto a_minus_zero = [&]<int J>(const uint32_t(&c)[Bits], uint32_t(&a)[4]) {
    if constexpr (Bits == 4 && std::is_same_v<T, __half>) {
      const uint32_t lo = c[J], hi = c[J] >> 8, magic = Magic<T>::kBits;
      const __half2 sixteenth = __float2half2_rn(0.0625f);
      __half2 v[4];
      const uint32_t r[4] = {mask_or<0x000F000Fu>(lo, magic), mask_or<0x00F000F0u>(lo, magic),
                             mask_or<0x000F000Fu>(hi, magic), mask_or<0x00F000F0u>(hi, magic)};
      v[0] = __hsub2(*reinterpret_cast<const __half2*>(&r[0]), z_lo);
      v[1] = __hfma2(*reinterpret_cast<const __half2*>(&r[1]), sixteenth, z_hi16);
      v[2] = __hsub2(*reinterpret_cast<const __half2*>(&r[2]), z_lo);
      v[3] = __hfma2(*reinterpret_cast<const __half2*>(&r[3]), sixteenth, z_hi16);
#pragma unroll
      for (int p = 0; p < 4; ++p) a[p] = *reinterpret_cast<const uint32_t*>(&v[p]);
    } else {
      a_fragment<Bits, J, T>(c, a);
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        const T2 v = __hsub2(*reinterpret_cast<const T2*>(&a[p]), (p & 1) ? z_hi : z_lo);
        a[p] = *reinterpret_cast<const uint32_t*>(&v);
      }
    }
  };

  if (active) {
    // Lanes past the batch (gq >= M) read the last row: their products land in output
    // columns that are never stored, so no zeros need staging or selecting.
    const T* const xlane = xs + min(gq, M - 1) * ld + tq * 16;  // + i · 64: chunk i's 16 values
    auto products = [&](int i, const Ahead& a) {
#pragma unroll
      for (int d = 0; d < D; ++d) {
        if (i + d >= n) break;
        if (a.group[d] != group) enter_group(a.group[d]);
        const uint4 lo = *reinterpret_cast<const uint4*>(xlane + (i + d) * kChunk);
        const uint4 hi = *reinterpret_cast<const uint4*>(xlane + (i + d) * kChunk + 8);
        const uint32_t b[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
        auto tile_product = [&]<int J>() {
          uint32_t av[4];
          a_minus_zero.template operator()<J>(a.codes[d], av);
          mma_16816<T>(sum[J % 2], av, b[2 * J], b[2 * J + 1]);
        };
        tile_product.template operator()<0>();
        tile_product.template operator()<1>();
        tile_product.template operator()<2>();
        tile_product.template operator()<3>();
      }
    };
    for (int i = 0; i < n; i += D) {
      const Ahead cur = next;
      fetch(i + D, next);
      products(i, cur);
    }
    if (group >= 0) flush();
  }

  // Element i of the fragment: row nt·16 + gq (+8 for i ≥ 2), batch row 2·tq + (i & 1).
  T* y = g.job[j].y;
  const int64_t ldy = g.job[j].ldy, N = w.N;
  auto store = [&](int64_t m, int64_t r, float v) {
    if (w.bias != nullptr) v += w.bias[r];
    if (g.epilogue == Epilogue::kAccumulate) v += to_f32(y[m * ldy + r]);
    y[m * ldy + r] = from_f32<T>(v);
  };
  auto for_each_element = [&](auto&& f) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t r = row_lo + (i >= 2 ? 8 : 0), m = 2 * tq + (i & 1);
      if (active && r < N && m < M) f(m, r, acc[i]);
    }
  };
  finish_split<4>(acc, [&] { for_each_element(store); },
                  partials + int64_t(blockIdx.x) * split_floats(1, kThreads, 4, splits), int(blockIdx.y), splits,
                  counters + blockIdx.x);
}

struct Plan {
  int splits, chunks_per;
};

// Blocks of decode_kernel<Bits, T> resident per SM with M staged rows of `chunks_per`
// chunks (registers decide at small M: ~80 a thread, 6 blocks; staged x can at M = 8).
// Cached for the process: the hosts this runs on carry one GPU model.
template <int Bits, class T>
int resident_blocks(int64_t M, int chunks_per) {
  static std::mutex mutex;
  static std::map<std::pair<int64_t, int>, int> cache;
  const std::lock_guard lock(mutex);
  auto [it, fresh] = cache.try_emplace({M, chunks_per}, 0);
  if (fresh) {
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&it->second, decode_kernel<Bits, T>, kThreads,
                                                             size_t(stage_bytes<T>(M, chunks_per))));
    it->second = std::max(it->second, 1);
  }
  return it->second;
}

// Splits K so that the grid is at most one wave of resident blocks: every block then
// starts at once and streams its split to the end, instead of a second, nearly empty
// wave (measured: 1.05-1.13 waves doubled the tail of the 8B shapes at batch 1, where
// 6 blocks an SM was asked for and rounding up gave more). Staged x stays inside
// kMaxStageBytes; a split keeps at least kAhead chunks, so the codes in flight are not
// cut short by its end. Layers with more row blocks than fit (lm_head) take no split.
template <int Bits, class T>
Plan plan_for(const MmaGroup<T>& g, int64_t M) {
  const int64_t chunks = g.job[0].w.Kp / kChunk;
  const int64_t blocks = group_tiles(g);
  const int64_t most_per = (kMaxStageBytes / (M * int64_t(sizeof(T))) - kRowPad) / kChunk;
  const int64_t least = (chunks + most_per - 1) / most_per;
  const int64_t most = std::max<int64_t>(least, chunks / kAhead<Bits>);
  auto split = [&](int64_t splits) {
    Plan p{};
    p.chunks_per = int((chunks + splits - 1) / splits);
    p.splits = int((chunks + p.chunks_per - 1) / p.chunks_per);
    return p;
  };
  // Residency depends on the staged bytes, which depend on the split: sized at one
  // split's length first, then at the length that choice gives.
  Plan p = split(least);
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t wave = int64_t(sm_count()) * resident_blocks<Bits, T>(M, p.chunks_per);
    p = split(capped_splits(std::clamp<int64_t>(wave / blocks, least, most), least, g.max_splits));
  }
  return p;
}

template <class T>
Plan plan_any(const MmaGroup<T>& g, int64_t M) {
  return with_bits<T>(g.job[0].w.bits, "gptq_decode", [&]<int Bits>() { return plan_for<Bits, T>(g, M); });
}

template <int Bits, class T>
void launch_decode(const MmaGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
                   cudaStream_t s) {
  const Plan p = plan_for<Bits, T>(g, M);
  const int64_t smem = stage_bytes<T>(M, p.chunks_per);
  GPTQ_CHECK(smem <= kMaxStageBytes, "gptq_decode: staged x exceeds the shared memory");  // plan_for keeps it inside
  const bool vec_x = ldx % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const dim3 grid(unsigned(group_tiles(g)), unsigned(p.splits));
  launch(decode_kernel<Bits, T>, grid, kThreads, size_t(smem), s, g, x, ldx, int(M), vec_x, p.chunks_per, p.splits,
         partials, counters);
}

}  // namespace

template <class T>
bool decode_applies(const MmaGroup<T>& g, int64_t M) {
  if (M < 1 || M > kDecodeMaxRows) return false;
  for (int j = 0; j < g.count; ++j) {
    if (!g.job[j].w.chunks_one_group || !offsets_fit_int32(g.job[j].w)) return false;
  }
  return true;
}

template <class T>
SplitScratch gptq_decode_scratch(const MmaGroup<T>& g, int64_t M) {
  const Plan p = plan_any(g, M);
  return {.floats = split_floats(group_tiles(g), kThreads, 4, p.splits), .counters = group_tiles(g)};
}

template <class T>
void gptq_decode(const MmaGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
                 cudaStream_t s) {
  GPTQ_CHECK(decode_applies(g, M), "gptq_decode: M above 8, or a layer whose chunks span groups");
  with_bits<T>(g.job[0].w.bits, "gptq_decode",
               [&]<int Bits>() { launch_decode<Bits, T>(g, x, ldx, M, partials, counters, s); });
}

template bool decode_applies<__half>(const MmaGroup<__half>&, int64_t);
template bool decode_applies<__nv_bfloat16>(const MmaGroup<__nv_bfloat16>&, int64_t);
template SplitScratch gptq_decode_scratch<__half>(const MmaGroup<__half>&, int64_t);
template SplitScratch gptq_decode_scratch<__nv_bfloat16>(const MmaGroup<__nv_bfloat16>&, int64_t);
template void gptq_decode<__half>(const MmaGroup<__half>&, const __half*, int64_t, int64_t, float*, int32_t*,
                                  cudaStream_t);
template void gptq_decode<__nv_bfloat16>(const MmaGroup<__nv_bfloat16>&, const __nv_bfloat16*, int64_t, int64_t,
                                         float*, int32_t*, cudaStream_t);

}  // namespace gptq::backend::cuda
