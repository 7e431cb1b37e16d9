// GPTQ products at batch 1-8 on the tensor cores (mma.sync.m16n8k16), version 7.
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
//   - codes come straight into registers, through a ring of kAhead chunks per lane
//     refilled in place (version 7; version 4 copied a look-ahead buffer into the one
//     consumed, 20 moves per 16 tiles, and held half the chunks in flight), each chunk's
//     group loaded beside its codes;
//   - one group check per chunk: the layout guarantees each chunk lies in one group
//     (chunks_one_group), so there is no per-tile path; one accumulation chain per group.
// Per 16 x 16 tile at 4 bits, group 128 (SASS of the loop, version 7): 13.4 warp
// instructions in the products (9 to form A, one mma, half a shared load, a quarter of a
// global load, the ring's bookkeeping) + 4.4 for the group entries (35 each, per 8
// tiles) = 17.8, against 21.7 in version 4 and ~31 the bandwidth allows (16.3 bytes per
// SM cycle).
//
// Splits along K write fp32 partials in fragment order (split_k.cuh); the last block of
// each row-tile block to finish sums them in split order (deterministic) and applies the
// epilogue.
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
// Chunks of codes each lane holds in flight in its register ring: 64-128 bytes a lane
// (kAhead · Bits words; fewer at 2 and 3 bits, where more chunks a lane spill within
// kMinBlocks' registers), so 2-4 KiB a warp and 40-80 KiB an SM at 20 warps:
// the bandwidth-latency product's share of an SM is 4.26 TB/s x ~1-1.5 µs under load /
// 132 = 32-48 KiB, and a slot is in flight only from its refill to its products.
template <int Bits>
constexpr int kAhead = Bits == 8 ? 2 : Bits == 2 ? 8 : 4;
// Staged rows are padded so that a row's stride is 16 bytes past a multiple of 128: a
// quarter-warp's 16-byte loads (2 rows x 4 lanes) then fall in 32 distinct banks.
constexpr int kRowPad = 8;
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

// Blocks an SM must hold (ptxas keeps registers within 65536 / (128 · 5) = 102): 20
// warps, each with its ring of kAhead chunks in flight.
constexpr int kMinBlocks = 6;

// A group's parameters for one lane's rows gq, gq + 8, staged once per block at the
// chunk that enters the group: the scales in fp32 and the zeros as the operands the
// dequantization subtracts, so entering a group is one 16-byte shared load (version 6
// loaded them from global memory one group ahead, 2 chunks at group 128: less than an
// L2 round trip, so warps stalled at every group entry).
struct StagedGroup {
  float s_lo, s_hi;      // scales of rows gq, gq + 8
  uint32_t z_lo, z_hi;   // B + z of those rows in both halves (z_hi: 960 − (B + z) at fp16, 4 bits)
};
// [chunk][warp][gq]: one per lane quad of each warp, per chunk of the split, then the
// list of the chunks that enter a group (an int each).
constexpr int64_t kParamBytes = kWarps * 8 * int64_t(sizeof(StagedGroup));
static_assert(sizeof(StagedGroup) == 16 && kParamBytes == 512);
constexpr int64_t kChunkStageBytes = kParamBytes + int64_t(sizeof(int));
// Chunks of a split at most: warp 0 finds the entering chunks 32 at a time, kEntryRounds
// rounds, from group indices it loads before staging x (the planner keeps splits inside).
constexpr int kEntryRounds = 3;
constexpr int kMaxSplitChunks = 32 * kEntryRounds;

// Staged x rows (padded, 16-byte multiples) then the split's group parameters.
template <class T>
__host__ __device__ constexpr int64_t x_stage_bytes(int64_t M, int chunks_per) {
  return M * (int64_t(chunks_per) * kChunk + kRowPad) * int64_t(sizeof(T));
}
template <class T>
int64_t stage_bytes(int64_t M, int chunks_per) {
  return x_stage_bytes<T>(M, chunks_per) + int64_t(chunks_per) * kChunkStageBytes;
}

// grid (Σ_j ceil(Nt_j / 4), splits), 128 threads, stage_bytes<T>(M, chunks_per_split).
// x [M, K] row stride ldx; vec_x: rows 16-byte aligned (ldx % 8 == 0, x aligned).
template <int Bits, class T>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    decode_kernel(MmaGroup<T> g, const T* __restrict__ x, int64_t ldx, int M, bool vec_x, int chunks_per_split,
                  int splits, float* partials, int32_t* counters) {
  pdl_begin();
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

  // The ring: slot d holds chunk i + d (codes and group) while chunks [i, i + D) are
  // consumed; a slot is refilled with chunk i + d + D as soon as its products are formed,
  // so D chunks stay in flight with no copies between buffers (slots compile-time).
  uint32_t codes[D][Bits];
  int chunk_group[D];
  auto fetch = [&](int c, uint32_t(&w)[Bits], int& cg) {  // chunk c of the split, if any
    if (c < n) {
      load_run<Bits>(run + int64_t(c) * 32 * Bits, w);
      cg = __ldg(chunk_tiles + 4 * c);
    }
  };
  if (active) {
#pragma unroll
    for (int d = 0; d < D; ++d) fetch(d, codes[d], chunk_group[d]);
  }
  // Warp 0: the groups of chunks c = 32r + lane and c − 1, for the staging below.
  int split_group[kEntryRounds][2] = {};
  if (warp == 0) {
#pragma unroll
    for (int r = 0; r < kEntryRounds; ++r) {
      const int c = 32 * r + lane;
      if (c < n) split_group[r][0] = __ldg(chunk_tiles + 4 * c);
      if (c > 0 && c < n) split_group[r][1] = __ldg(chunk_tiles + 4 * (c - 1));
    }
  }

  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  // The group's Σ (q − z) x, one chain: each warp's 4 products of a chunk depend on one
  // another, but ~6 warps a scheduler interleave theirs (two chains cost 8 more
  // instructions per group entry, ~1 a tile at group 128).
  float sum[4] = {};
  int group = -1;
  float s_lo = 0.0f, s_hi = 0.0f;  // the group's scales of rows gq, gq + 8
  T2 z_lo, z_hi;                   // B + zero of those rows, in both halves; z_hi at
                                   // fp16, 4 bits: −(64 + zero) (a_minus_zero)
  const int64_t row_lo = nt * 16 + gq;
  auto flush = [&]() {  // with nothing summed yet (s = 0, sums 0) it adds 0
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      acc[i] += (i < 2 ? s_lo : s_hi) * sum[i];
      sum[i] = 0.0f;
    }
  };

  // Stage x rows [0, M) x sorted inputs of the split, in staged_position order, zeros
  // past K; 8 consecutive inputs (half a tile: one B pair of each lane t) per step.
  {
    const int64_t k0 = c0 * kChunk;
    const int vecs = n * (kChunk / 8);
    for (int i = threadIdx.x; i < M * vecs; i += kThreads) {
      const int m = i / vecs, v = i % vecs;
      const int c = v / (kChunk / 8), k8 = (v % (kChunk / 8)) * 8;  // chunk, its first input of the 8
      const int64_t k = k0 + int64_t(c) * kChunk + k8;
      uint32_t pair[4];
      if (w.perm == nullptr && vec_x && k + 8 <= w.K) {
        const uint4 u = *reinterpret_cast<const uint4*>(x + m * ldx + k);
        pair[0] = u.x, pair[1] = u.y, pair[2] = u.z, pair[3] = u.w;
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          T v2[2];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t ke = k + 2 * e + h;
            v2[h] = ke < w.K ? x[m * ldx + (w.perm != nullptr ? w.perm[ke] : ke)] : from_f32<T>(0.0f);
          }
          pair[e] = *reinterpret_cast<const uint32_t*>(v2);
        }
      }
      // Inputs k8 + 2e, +1 are one pair: staged at staged_position(k8 + 2e), contiguous.
      uint32_t* dst = reinterpret_cast<uint32_t*>(xs + m * ld + c * kChunk);
#pragma unroll
      for (int e = 0; e < 4; ++e) dst[staged_position(k8 + 2 * e) / 2] = pair[e];
    }
  }
  // Stage the parameters of each group the split enters, at the chunk entering it (the
  // split's first chunk, and each whose group differs from the previous chunk's): warp 0
  // lists those chunks (ballots over the group indices it loaded first), then item
  // (entry e, warp, gq) of all threads stages rows nt·16 + gq and + 8 of the scales and
  // zeros [G][Nt·16] (decode_applies: offsets_fit_int32) at slot [chunk][warp][gq]. The
  // loads of kBatch items are issued before any is stored: about one L2 round trip per
  // kBatch items a thread, not one per item. Slots of other chunks are never read.
  StagedGroup* const staged = reinterpret_cast<StagedGroup*>(smem + x_stage_bytes<T>(M, chunks_per_split));
  int* const entry = reinterpret_cast<int*>(staged + chunks_per_split * kWarps * 8);
  __shared__ int entries;
  if (warp == 0) {
    int count = 0;
#pragma unroll
    for (int r = 0; r < kEntryRounds; ++r) {
      const int c = 32 * r + lane;
      const bool enters = c < n && (c == 0 || split_group[r][0] != split_group[r][1]);
      const unsigned mask = __ballot_sync(~0u, enters);
      if (enters) entry[count + __popc(mask & ((1u << lane) - 1))] = c;
      count += __popc(mask);
    }
    if (lane == 0) entries = count;
  }
  __syncthreads();
  {
    constexpr int kBatch = 4;
    const int items = entries * kWarps * 8;
    for (int i0 = threadIdx.x; i0 < items; i0 += kBatch * kThreads) {
      __half sc[kBatch][2];
      uint8_t zp[kBatch][2];
      int slot[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = i0 + u * kThreads, r = i % (kWarps * 8);  // r: warp · 8 + gq of the block
        const int64_t row = (tile * kWarps + r / 8) * 16 + r % 8;
        slot[u] = -1;
        if (i < items && row < w.Nt * 16) {
          const int c = entry[i / (kWarps * 8)];
          slot[u] = c * (kWarps * 8) + r;
          const int off = __ldg(chunk_tiles + 4 * c) * int(w.Nt * 16) + int(row);
          sc[u][0] = w.scales[off], sc[u][1] = w.scales[off + 8];
          zp[u][0] = w.zeros[off], zp[u][1] = w.zeros[off + 8];
        }
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        if (slot[u] < 0) continue;
        StagedGroup p;
        p.s_lo = __half2float(sc[u][0]), p.s_hi = __half2float(sc[u][1]);
        p.z_lo = magic_plus<T>(zp[u][0]), p.z_hi = magic_plus<T>(zp[u][1]);
        if constexpr (Bits == 4 && std::is_same_v<T, __half>) {
          const __half2 zh = __hsub2(__float2half2_rn(960.0f), *reinterpret_cast<const __half2*>(&p.z_hi));
          p.z_hi = *reinterpret_cast<const uint32_t*>(&zh);  // 960 − (1024 + z) = −(64 + z)
        }
        staged[slot[u]] = p;
      }
    }
  }
  __syncthreads();
  // Chunk c (of the split) enters group tg: the last group's sums are scaled into acc.
  auto enter_group = [&](int tg, int c) {
    flush();
    group = tg;
    const uint4 p = *reinterpret_cast<const uint4*>(staged + c * (kWarps * 8) + warp * 8 + gq);
    s_lo = __uint_as_float(p.x), s_hi = __uint_as_float(p.y);
    z_lo = *reinterpret_cast<const T2*>(&p.z);
    z_hi = *reinterpret_cast<const T2*>(&p.w);
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
      v[1] = __hfma2(*reinterpret_cast<const __half2*>(&r[1]), sixteenth, z_hi);
      v[2] = __hsub2(*reinterpret_cast<const __half2*>(&r[2]), z_lo);
      v[3] = __hfma2(*reinterpret_cast<const __half2*>(&r[3]), sixteenth, z_hi);
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
    // Chunk c of the split from ring slot d (= c % D), then slot d refilled with c + D.
    auto consume = [&]<int d>(int c) {
      if (chunk_group[d] != group) enter_group(chunk_group[d], c);
      const uint4 lo = *reinterpret_cast<const uint4*>(xlane + c * kChunk);
      const uint4 hi = *reinterpret_cast<const uint4*>(xlane + c * kChunk + 8);
      const uint32_t b[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
      auto tile_product = [&]<int J>() {
        uint32_t av[4];
        a_minus_zero.template operator()<J>(codes[d], av);
        mma_16816<T>(sum, av, b[2 * J], b[2 * J + 1]);
      };
      tile_product.template operator()<0>();
      tile_product.template operator()<1>();
      tile_product.template operator()<2>();
      tile_product.template operator()<3>();
      fetch(c + D, codes[d], chunk_group[d]);
    };
    // Whole turns of the ring without a bound check on the products, then the rest.
    int i = 0;
    for (; i + D <= n; i += D) {
      [&]<int... d>(std::integer_sequence<int, d...>) {
        (consume.template operator()<d>(i + d), ...);
      }(std::make_integer_sequence<int, D>{});
    }
    [&]<int... d>(std::integer_sequence<int, d...>) {
      ((i + d < n ? consume.template operator()<d>(i + d) : void()), ...);
    }(std::make_integer_sequence<int, D>{});
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
// kMaxStageBytes; a split keeps at least kAhead chunks (one turn of the ring), so the
// codes in flight are not cut short by its end. Layers with more row blocks than fit
// (lm_head) take no split.
template <int Bits, class T>
Plan plan_for(const MmaGroup<T>& g, int64_t M) {
  const int64_t chunks = g.job[0].w.Kp / kChunk;
  const int64_t blocks = group_tiles(g);
  const int64_t most_per = std::min<int64_t>(
      kMaxSplitChunks,
      (kMaxStageBytes - M * kRowPad * int64_t(sizeof(T))) / (M * kChunk * int64_t(sizeof(T)) + kChunkStageBytes));
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
  GPTQ_CHECK(smem <= kMaxStageBytes, "gptq_decode: staged x and groups exceed the shared memory");  // plan_for keeps it inside
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
