// GPTQ products at batch 9-256 on the tensor cores (mma.sync.m16n8k16), version 6.
//
// yᵀ [N, M] = W [N, K] · xᵀ [K, M] as in gptq_mma.cu: W the A operand, formed in
// registers from the fragment layout, x the B operand (16 inputs x 8 batch rows). A block
// of 4 warps owns 128 output rows (two 16-row tiles per warp, so every B fragment feeds
// two A tiles) and all 8·MT ≥ M batch rows (above 64, 64 of them: blocks along M); a
// split of K streams through it in steps of 128 inputs (2 chunks).
//
// What differs from the general kernel at these sizes (NOTES.md, version 3.1: 0.7x cuBLAS
// fp16 at M = 16 on the 8B gate/up shape):
//   - one ring of S stages in shared memory holds, per step, x [8·MT rows][128 inputs]
//     and the codes of the block's 8 tiles [8][2 chunks][32 lanes][Bits words], filled by
//     cp.async S − 1 steps ahead: the codes need no registers while in flight, and one
//     barrier per step both publishes a stage and frees the one refilled next;
//   - B fragments come by ldmatrix.x4, two n8 tiles of one 16-input tile per instruction,
//     each shared by the warp's two row tiles;
//   - the weight is formed in fp16 as s·(q − z), one rounding (q − z exact as in the
//     other kernels, then one HMUL2 by the group's scale), so one fp32 accumulator per
//     fragment serves every group: no per-group sums, half the accumulator registers;
//   - one group check per chunk (FragmentLayout::chunks_one_group).
// Predicted per 16 x 16 weight tile at 4 bits: 13 integer/half ops to form A, MT mma,
// MT/4 ldmatrix, ~0.25 code load: ~17 warp instructions at M = 16 (bandwidth allows ~31),
// at M = 64 the 8 mma a tile bound it (the tensor pipe, not the instruction issue).
// Measured (NOTES.md, version 6): 25 instructions a tile (32 in version 5), latency-bound
// on 4 warps per scheduler at most; 1.5x cuBLAS fp16 at M = 16 on the 8B MLP shapes,
// 0.86-1.07x at M = 64.
//
// Splits along K write fp32 partials in fragment order (split_k.cuh); the last block of
// each row-tile block to finish sums them in split order (deterministic) and applies the
// epilogue.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/fragment_codes.cuh"
#include "backend/cuda/gptq_batch.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/split_k.cuh"

namespace gptq::backend::cuda {
namespace {

using namespace fragment;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kR = 2;                // row tiles per warp
constexpr int kTiles = kWarps * kR;  // row tiles per block: 128 output rows
constexpr int kChunk = 64;           // inputs per lane run of codes
constexpr int kStepChunks = 2;
constexpr int kStep = kStepChunks * kChunk;  // inputs per pipeline step
// Staged x rows are 272 bytes apart (68 words): the 8 row addresses of one ldmatrix
// matrix (16 bytes each) then fall in 32 distinct banks.
constexpr int kRowLen = kStep + 8;
// Ring stages: S − 1 steps in flight while one is multiplied. A step is ~300 cycles of a
// warp's issue at MT = 2, ~1000 at MT = 8 (128 mma), against ~800 cycles of latency.
template <int MT>
constexpr int kStages = MT == 8 ? 3 : 4;

// One stage: x [8·MT][kRowLen] fp16, then codes [kTiles][kStepChunks][32][Bits] words.
template <int MT>
constexpr int kXBytes = MT * 8 * kRowLen * 2;
template <int Bits, int MT>
constexpr int kStageBytes = kXBytes<MT> + kTiles * kStepChunks * 32 * Bits * 4;
template <int Bits, int MT>
constexpr int kSmemBytes = kStages<MT> * kStageBytes<Bits, MT>;
static_assert(kXBytes<2> % 16 == 0 && kStageBytes<3, 8> % 16 == 0, "16-byte aligned stage parts");

// Blocks per SM the register allocation must allow: 4 (<= 128 registers) at MT = 2, 3 at
// MT = 4 (the accumulators double), 2 at MT = 8 (64 accumulators a lane).
template <int MT>
constexpr int kMinBlocks = MT == 2 ? 4 : MT == 4 ? 3 : 2;

// How far one group's parameters reach: each 64-input chunk lies in one group
// (FragmentLayout::chunks_one_group: the group is checked per chunk), or each aligned
// 128-input step (pairs_one_group, group sizes that are multiples of 128: checked once
// per step, so a step's products are one straight run that the compiler schedules as a
// whole, its second chunk's shared loads hoisted over the first's products).
enum class GroupSpan { kChunk, kStep };

// grid (Σ_j ceil(Nt_j / 8), splits, ceil(M / (8·MT))), 128 threads, kSmemBytes<Bits, MT>.
// x [M, K] fp16, row stride ldx, rows 16-byte aligned and K % 8 == 0, no layer with a
// permutation (batch_applies: every copy is one cp.async of 8 inputs); M <= 8·MT, or
// MT = 8 and blockIdx.z owning rows [64z, 64z + 64) (each such block streams the codes
// again). chunks_per_split: a multiple of kStepChunks.
template <int Bits, int MT, GroupSpan Span>
__global__ void __launch_bounds__(kThreads, kMinBlocks<MT>)
    batch_kernel(MmaGroup<__half> g, const __half* __restrict__ x, int64_t ldx, int M, int chunks_per_split,
                 int splits, float* partials, int32_t* counters) {
  pdl_begin();
  static_assert(MT % 2 == 0, "ldmatrix.x4 loads two n8 tiles");
  constexpr int S = kStages<MT>;
  constexpr int kRows = MT * 8;  // staged batch rows (rows >= M repeat row M − 1)
  extern __shared__ __align__(16) unsigned char smem[];
  // This block's batch rows: x, y and M from here on are those of rows [m0, m0 + M).
  const int m0 = int(blockIdx.z) * kRows;
  x += int64_t(m0) * ldx;
  M = min(kRows, M - m0);

  int64_t tile = blockIdx.x;
  const int j = job_of<kTiles>(g, tile);
  const MmaDeviceLayout w = g.job[j].w;  // by value: indexed by j, its fields would be re-read per use
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gq = lane / 4, tq = lane % 4;
  const int64_t chunks = w.Kp / kChunk;
  const int64_t c0 = int64_t(blockIdx.y) * chunks_per_split;
  const int n = int(min(chunks, c0 + chunks_per_split) - c0);  // chunks of this split
  const int steps = (n + kStepChunks - 1) / kStepChunks;

  // Row tiles nt[r] = tile·8 + 2·warp + r. Tiles past Nt read the last tile's codes and
  // parameters (valid memory, uniform control flow); their rows are never stored.
  // Offsets are 32-bit element offsets from the layer's bases (batch_applies:
  // offsets_fit_int32), so an address is one IMAD.WIDE from them rather than 64-bit
  // pointer arithmetic rematerialized per copy.
  int64_t nt[kR];
  int code_off[kR];  // words: this lane's run of the split's first chunk in tile r
  int par_off[kR];   // row gq of tile r in a group's row [Nt·16] of scales and of zeros
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    nt[r] = tile * kTiles + warp * kR + r;
    const int64_t tl = min(nt[r], w.Nt - 1);
    code_off[r] = int(((tl * chunks + c0) * 32 + lane) * Bits);
    par_off[r] = pinned(int(tl * 16 + gq));
  }
  const uint32_t* const words = w.words;
  const int rs = int(w.Nt * 16), G = int(w.G);

  // Step t into stage t % S: this lane's code runs, and x rows [0, kRows) x inputs
  // [k0, k0 + 128), 8 per copy (zero-filled past K). Past the last step only the (empty)
  // group is committed, so the wait count stays uniform. Addresses are fixed per thread
  // but for the step's offsets: copy `it` of thread t is row it·8 + t / 16 (clamped to
  // M − 1), inputs (t % 16)·8 of the step. A chunk past the split (its last step's second
  // chunk when the split's count is odd) copies the step's first chunk again, unused: no
  // branch per copy.
  constexpr int kVecs = kStep / 8;
  static_assert(kRows * kVecs == MT * kThreads, "MT copies of 8 inputs per thread per step");
  const uint32_t stage0 = smem_address(smem);
  const int kk = (int(threadIdx.x) % kVecs) * 8;
  const uint32_t x_dst = stage0 + uint32_t(((int(threadIdx.x) / kVecs) * kRowLen + kk) * 2);
  int x_row[MT];  // element offset of the copy's row in x (M · ldx < 2^31: M <= 64)
#pragma unroll
  for (int it = 0; it < MT; ++it) x_row[it] = min(it * 8 + int(threadIdx.x) / kVecs, M - 1) * int(ldx);
  const uint32_t c_dst = stage0 + uint32_t(kXBytes<MT> + (warp * kR * kStepChunks * 32 + lane) * Bits * 4);
  // Issue state, advanced one step per call (loop-carried, so the compiler keeps it in
  // registers instead of recomputing the offsets from the tile index per copy): the step
  // issued next, its first chunk's code offset in tile 0 (tile 1's is `tile1` words on,
  // or the same tile at the last tile), and its first input column.
  int next_step = 0, code_pos = code_off[0], x_k = int(c0) * kChunk + kk;
  const int tile1 = code_off[1] - code_off[0];
  static_assert(kR == 2 && kStepChunks == 2, "the issue state below spells out two tiles and two chunks");
  // x is zero-filled past the split's end (and so past K): a chunk past the split, whose
  // codes are a copy of its step's first chunk, then adds 0 (GroupSpan::kStep runs it).
  const int k_end = int(min(w.K, (c0 + n) * kChunk));
  auto issue = [&]() {
    if (next_step < steps) {
      const uint32_t stage = (unsigned(next_step) % S) * kStageBytes<Bits, MT>;
      const int second = next_step * kStepChunks + 1 < n ? 32 * Bits : 0;
      const uint32_t* const src0 = words + code_pos;
      const uint32_t* const src1 = words + (code_pos + tile1);
      const uint32_t dst = c_dst + stage;
      load_run_async<Bits>(dst, src0);                                       // tile 0, chunk 0
      load_run_async<Bits>(dst + 32 * Bits * 4, src0 + second);              // tile 0, chunk 1
      load_run_async<Bits>(dst + 2 * 32 * Bits * 4, src1);                   // tile 1, chunk 0
      load_run_async<Bits>(dst + 3 * 32 * Bits * 4, src1 + second);          // tile 1, chunk 1
      const bool inside = x_k < k_end;  // K % 8 == 0: all 8 inputs or none
#pragma unroll
      for (int it = 0; it < MT; ++it) {
        cp_async_16(x_dst + stage + it * 8 * kRowLen * 2, x + (inside ? x_row[it] + x_k : 0), inside);
      }
      ++next_step, code_pos += kStepChunks * 32 * Bits, x_k += kStep;
    }
    cp_async_commit();
  };

  // The current group's parameters per row tile: scales of rows gq, gq + 8 in both
  // halves, B + zero likewise, and −(64 + zero) of row gq + 8 (4 bits, a_minus_zero).
  int group = -1;
  __half2 s_lo[kR], s_hi[kR], z_lo[kR], z_hi[kR], z_hi16[kR];
  // The next group's, loaded on entering a group so their L2 round trip overlaps this
  // group's products; kept raw, converted on use.
  int pf_group = -1;
  __half pf_s[kR][2];
  uint32_t pf_z[kR][2] = {};  // the zero byte, zero-extended
  auto prefetch = [&](int tg) {
    if (tg >= G) return;
    pf_group = tg;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const int off = tg * rs + par_off[r];
      pf_s[r][0] = w.scales[off], pf_s[r][1] = w.scales[off + 8];
      pf_z[r][0] = w.zeros[off], pf_z[r][1] = w.zeros[off + 8];
    }
  };
  auto enter_group = [&](int tg) {
    group = tg;
    if (tg != pf_group) prefetch(tg);  // not foreseen (a group skipped): load now and wait
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      s_lo[r] = __half2half2(pf_s[r][0]);
      s_hi[r] = __half2half2(pf_s[r][1]);
      const uint32_t zl = magic_plus<__half>(pf_z[r][0]), zh = magic_plus<__half>(pf_z[r][1]);
      z_lo[r] = *reinterpret_cast<const __half2*>(&zl);
      z_hi[r] = *reinterpret_cast<const __half2*>(&zh);
      z_hi16[r] = __hsub2(__float2half2_rn(960.0f), z_hi[r]);  // 960 − (1024 + z)
    }
    prefetch(tg + 1);
  };

  // A = s·(q − z) of tile J of chunk words c, row tile r. q − z exactly as in
  // gptq_decode.cu (4 bits: the odd registers' codes masked in place, 1024 + 16q, one
  // HFMA2 by 1/16 with −(64 + z)); then one HMUL2 by the scale: the one rounding.
  auto weights = [&]<int J>(const uint32_t(&c)[Bits], int r, uint32_t(&a)[4]) {
    __half2 v[4];
    if constexpr (Bits == 4) {
      const uint32_t lo = c[J], hi = c[J] >> 8, magic = Magic<__half>::kBits;
      const __half2 sixteenth = __float2half2_rn(0.0625f);
      const uint32_t q[4] = {mask_or<0x000F000Fu>(lo, magic), mask_or<0x00F000F0u>(lo, magic),
                             mask_or<0x000F000Fu>(hi, magic), mask_or<0x00F000F0u>(hi, magic)};
      v[0] = __hsub2(*reinterpret_cast<const __half2*>(&q[0]), z_lo[r]);
      v[1] = __hfma2(*reinterpret_cast<const __half2*>(&q[1]), sixteenth, z_hi16[r]);
      v[2] = __hsub2(*reinterpret_cast<const __half2*>(&q[2]), z_lo[r]);
      v[3] = __hfma2(*reinterpret_cast<const __half2*>(&q[3]), sixteenth, z_hi16[r]);
    } else {
      uint32_t q[4];
      a_fragment<Bits, J, __half>(c, q);
#pragma unroll
      for (int p = 0; p < 4; ++p) v[p] = __hsub2(*reinterpret_cast<const __half2*>(&q[p]), (p & 1) ? z_hi[r] : z_lo[r]);
    }
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const __half2 sw = __hmul2(v[p], (p & 1) ? s_hi[r] : s_lo[r]);
      a[p] = *reinterpret_cast<const uint32_t*>(&sw);
    }
  };

  float acc[kR][MT][4] = {};
  // ldmatrix row addresses: lane l gives row (l / 16)·8 + l % 8 of the pair of n8 tiles,
  // inputs ((l / 8) % 2)·8 of the 16-input tile, so r[0], r[1] are b0, b1 of the first
  // n8 tile and r[2], r[3] of the second (mma.cuh's B layout).
  const int b_lane = pinned(((lane / 16) * 8 + lane % 8) * kRowLen + ((lane / 8) % 2) * 8);

#pragma unroll
  for (int t = 0; t < S - 1; ++t) issue();
  // A chunk's group is that of its first tile (chunks_one_group; chunk_group is −1 for a
  // chunk that runs past K, whose padded tiles carry none).
  const int32_t* const chunk_tiles = w.tile_group + c0 * (kChunk / 16);  // + 4i: chunk i's group
  if (n > 0) prefetch(__ldg(chunk_tiles));  // the split's first group, in flight with the first stages

  // The groups of step t's chunks (−1: past the split), loaded a step ahead: a fresh
  // line of tile_group is an L2 round trip every few steps. GroupSpan::kStep: the step's
  // group, that of its first chunk, in cg[0].
  int cg[kStepChunks], cg_next[kStepChunks];
  auto step_groups = [&](int t, int(&out)[kStepChunks]) {
#pragma unroll
    for (int c = 0; c < (Span == GroupSpan::kStep ? 1 : kStepChunks); ++c) {
      const int i = t * kStepChunks + c;
      out[c] = i < n ? __ldg(chunk_tiles + 4 * i) : -1;
    }
  };
  step_groups(0, cg_next);
  for (int t = 0; t < steps; ++t) {
#pragma unroll
    for (int c = 0; c < (Span == GroupSpan::kStep ? 1 : kStepChunks); ++c) cg[c] = cg_next[c];
    step_groups(t + 1, cg_next);
    cp_async_wait<S - 2>();  // step t's copies of this thread have landed
    __syncthreads();         // ... and every thread's; step t − 1's stage is free
    issue();  // step t + S − 1
    const unsigned char* const stage = smem + (t % S) * kStageBytes<Bits, MT>;
    const __half* const xs = reinterpret_cast<const __half*>(stage) + b_lane;
    const uint32_t* const cs = reinterpret_cast<const uint32_t*>(stage + kXBytes<MT>);
    // Both chunks' codes first, so their shared-load latency overlaps the first products.
    uint32_t codes[kStepChunks][kR][Bits];
#pragma unroll
    for (int c = 0; c < kStepChunks; ++c) {
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        read_run<Bits>(cs + (((warp * kR + r) * kStepChunks + c) * 32 + lane) * Bits, codes[c][r]);
      }
    }
    if constexpr (Span == GroupSpan::kStep) {
      if (cg[0] != group) enter_group(cg[0]);
    }
#pragma unroll
    for (int c = 0; c < kStepChunks; ++c) {
      if constexpr (Span == GroupSpan::kChunk) {
        if (cg[c] < 0) break;
        if (cg[c] != group) enter_group(cg[c]);
      }
      auto tile_products = [&]<int J>() {
        uint32_t b[MT / 2][4];
#pragma unroll
        for (int np = 0; np < MT / 2; ++np) ldmatrix_x4(b[np], xs + np * 16 * kRowLen + c * kChunk + J * 16);
#pragma unroll
        for (int r = 0; r < kR; ++r) {
          uint32_t a[4];
          weights.template operator()<J>(codes[c][r], r, a);
#pragma unroll
          for (int nn = 0; nn < MT; ++nn) mma_16816<__half>(acc[r][nn], a, b[nn / 2][(nn % 2) * 2], b[nn / 2][(nn % 2) * 2 + 1]);
        }
      };
      tile_products.template operator()<0>();
      tile_products.template operator()<1>();
      tile_products.template operator()<2>();
      tile_products.template operator()<3>();
    }
  }
  cp_async_wait<0>();

  // Element i of fragment (r, nn): row nt[r]·16 + gq (+8 for i ≥ 2), batch row
  // nn·8 + 2·tq + (i & 1).
  const int64_t ldy = g.job[j].ldy, N = w.N;
  __half* const y = g.job[j].y + int64_t(m0) * ldy;
  auto store = [&](int64_t m, int64_t row, float v) {
    if (w.bias != nullptr) v += w.bias[row];
    if (g.epilogue == Epilogue::kAccumulate) v += __half2float(y[m * ldy + row]);
    y[m * ldy + row] = __float2half(v);
  };
  auto for_each_element = [&](auto&& f) {
#pragma unroll
    for (int r = 0; r < kR; ++r) {
#pragma unroll
      for (int nn = 0; nn < MT; ++nn) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int64_t row = nt[r] * 16 + gq + (i >= 2 ? 8 : 0), m = nn * 8 + 2 * tq + (i & 1);
          if (row < N && m < M) f(m, row, acc[r][nn][i]);
        }
      }
    }
  };
  constexpr int E = kR * MT * 4;
  const int64_t block = int64_t(blockIdx.z) * gridDim.x + blockIdx.x;  // output block (row tiles, batch rows)
  finish_split<E>(&acc[0][0][0], [&] { for_each_element(store); },
                  partials + block * split_floats(1, kThreads, E, splits), int(blockIdx.y), splits, counters + block);
}

// 8-row batch fragments per block for M rows (MT even: ldmatrix.x4 takes two).
int mt_for(int64_t M) { return M <= 16 ? 2 : M <= 32 ? 4 : 8; }

// f.template operator()<MT>() for M's fragment count.
template <class F>
decltype(auto) with_mt(int64_t M, F&& f) {
  switch (mt_for(M)) {
    case 2: return f.template operator()<2>();
    case 4: return f.template operator()<4>();
    default: return f.template operator()<8>();
  }
}

// Blocks of batch_kernel<Bits, MT, kChunk> resident per SM (registers and the fixed ring
// decide; the kStep variant is held to the same kMinBlocks). Cached for the process: the
// hosts this runs on carry one GPU model.
template <int Bits, int MT>
int resident_blocks() {
  static const int blocks = [] {
    int b = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, batch_kernel<Bits, MT, GroupSpan::kChunk>,
                                                             kThreads, size_t(kSmemBytes<Bits, MT>)));
    return std::max(b, 1);
  }();
  return blocks;
}

// kStep when every job's aligned chunk pairs lie in one group.
GroupSpan span_of(const MmaGroup<__half>& g) {
  for (int j = 0; j < g.count; ++j) {
    if (!g.job[j].w.pairs_one_group) return GroupSpan::kChunk;
  }
  return GroupSpan::kStep;
}

struct Plan {
  int splits, chunks_per;
};

// Blocks along M: one per 8·MT batch rows (more than one only at MT = 8, M > 64).
int64_t row_blocks(int64_t M, int mt) {
  return (M + mt * 8 - 1) / (mt * 8);
}

// Splits K so that the grid is at most one wave of resident blocks (as gptq_decode.cu:
// a block's warps issue a dependent chain of dequantize-then-mma per tile, so an SM
// needs several blocks to keep its bandwidth share busy; measured: one block per SM on
// 8B gate/up at M = 16 ran at 26% of the bandwidth), with at least kStages<MT> steps per
// split (a shorter split never fills its ring: on the 8B q/o and k/v shapes 2 steps a
// split ran 5-15% slower than 4, NOTES.md version 6), and the launch's fp32 partials
// within a quarter of L2: they are written and read back there, never reaching DRAM.
template <int Bits, int MT>
Plan plan_for(const MmaGroup<__half>& g, int64_t M) {
  const int64_t chunks = g.job[0].w.Kp / kChunk;
  const int64_t blocks = group_tiles<kTiles>(g) * row_blocks(M, MT);
  const int64_t wave = int64_t(sm_count()) * resident_blocks<Bits, MT>();
  const int64_t split_bytes = blocks * kThreads * kR * MT * 4 * int64_t(sizeof(float));  // one split's partials
  const int64_t in_l2 = l2_bytes() / 4 / split_bytes;
  const int64_t most = std::max<int64_t>(1, std::min(chunks / (kStages<MT> * kStepChunks), in_l2));
  const int64_t splits = capped_splits(std::clamp<int64_t>(wave / blocks, 1, most), 1, g.max_splits);
  Plan p{};
  p.chunks_per = int((chunks + splits - 1) / splits);
  p.chunks_per += p.chunks_per % kStepChunks;
  p.splits = int((chunks + p.chunks_per - 1) / p.chunks_per);
  return p;
}

Plan plan_any(const MmaGroup<__half>& g, int64_t M) {
  return with_bits<__half>(g.job[0].w.bits, "gptq_batch", [&]<int Bits>() {
    return with_mt(M, [&]<int MT>() { return plan_for<Bits, MT>(g, M); });
  });
}

template <int Bits, int MT>
void launch_batch(const MmaGroup<__half>& g, const __half* x, int64_t ldx, int64_t M, float* partials,
                  int32_t* counters, cudaStream_t s) {
  const Plan p = plan_for<Bits, MT>(g, M);
  const dim3 grid(unsigned(group_tiles<kTiles>(g)), unsigned(p.splits), unsigned(row_blocks(M, MT)));
  auto kernel = span_of(g) == GroupSpan::kStep ? batch_kernel<Bits, MT, GroupSpan::kStep>
                                               : batch_kernel<Bits, MT, GroupSpan::kChunk>;
  launch(kernel, grid, kThreads, size_t(kSmemBytes<Bits, MT>), s, g, x, ldx, int(M), p.chunks_per, p.splits, partials,
         counters);
}

template <int Bits, int MT>
void allow_smem_mt() {
  CUDA_CHECK(cudaFuncSetAttribute(batch_kernel<Bits, MT, GroupSpan::kChunk>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes<Bits, MT>));
  CUDA_CHECK(cudaFuncSetAttribute(batch_kernel<Bits, MT, GroupSpan::kStep>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes<Bits, MT>));
}
template <int Bits>
void allow_smem() {
  allow_smem_mt<Bits, 2>();
  allow_smem_mt<Bits, 4>();
  allow_smem_mt<Bits, 8>();
}

}  // namespace

void gptq_batch_init() {
  allow_smem<2>();
  allow_smem<3>();
  allow_smem<4>();
  allow_smem<8>();
}

bool batch_applies(const MmaGroup<__half>& g, int64_t M) {
  if (M <= 8 || M > kBatchMaxRows || g.job[0].w.K % 8 != 0) return false;
  for (int j = 0; j < g.count; ++j) {
    const MmaDeviceLayout& w = g.job[j].w;
    if (!w.chunks_one_group || w.perm != nullptr) return false;
    if (!offsets_fit_int32(w)) return false;
  }
  return true;
}

SplitScratch gptq_batch_scratch(const MmaGroup<__half>& g, int64_t M) {
  const Plan p = plan_any(g, M);
  const int mt = mt_for(M);
  const int64_t blocks = group_tiles<kTiles>(g) * row_blocks(M, mt);
  return {.floats = split_floats(blocks, kThreads, kR * mt * 4, p.splits), .counters = blocks};
}

void gptq_batch(const MmaGroup<__half>& g, const __half* x, int64_t ldx, int64_t M, float* partials,
                int32_t* counters, cudaStream_t s) {
  GPTQ_CHECK(batch_applies(g, M) && ldx % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0,
             "gptq_batch: M, K % 8, a permutation, a group span, or x's rows not 16-byte aligned");
  with_bits<__half>(g.job[0].w.bits, "gptq_batch", [&]<int Bits>() {
    with_mt(M, [&]<int MT>() { launch_batch<Bits, MT>(g, x, ldx, M, partials, counters, s); });
  });
}

}  // namespace gptq::backend::cuda
