// GPTQ products on the tensor cores (mma.sync.m16n8k16), any batch size M.
//
// yᵀ [N, M] = W [N, K] · xᵀ [K, M], W as the A operand (16 rows x 16 inputs per tile),
// x as the B operand (16 inputs x 8 batch rows). A block of 4 warps owns 64 output rows
// (one 16-row tile per warp), a range of K (its split) and 8·MT batch rows. Per step of
// 256 inputs: the block stages x (gathered through perm for act-order) in shared
// memory; each warp holds the step's codes in registers,
// loaded one step ahead (one 16/32/8/12-byte run per lane per 64 inputs, streamed past
// L1).
//
// Codes become A fragments in two operations per register: OR-ing a code q into the
// significand of B = 1024 (fp16, 0x6400) or B = 128 (bf16, 0x4300) gives B + q exactly,
// two codes per 32-bit operation, and one HSUB2 of B + z gives q − z exactly (|q − z| <
// 256). The mma sums (q − z)·x in fp32 with exact products; each group's sum is scaled
// once in fp32, so the weights are never rounded to 16 bits. Against the CUDA-core GEMV
// (gptq_gemm.cu, ~30 instructions per 8 codes) that is ~4 per 8 codes plus an eighth of
// an mma; with M <= 8 the block stages its x once, and the warps then stream their codes
// with no barrier, four accumulator chains per warp hiding the mma latency. There the
// codes arrive through a ring of quads (4 chunks) in shared memory filled by cp.async,
// several quads ahead of the mma: holding one quad ahead in registers (the first
// version) took 122 registers, allowed 4 blocks per SM and kept too few bytes in flight
// (15-30% of the bandwidth at batch 1, latency-bound).
//
// Splits along K write fp32 partials in fragment order (split_k.cuh); the last block of
// each (row tile, batch chunk) to finish sums them in split order (deterministic) and
// applies the epilogue (bias, residual add) — each thread for the elements it computed.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/fragment_codes.cuh"
#include "backend/cuda/gptq_batch.cuh"
#include "backend/cuda/gptq_decode.cuh"
#include "backend/cuda/gptq_mma.cuh"
#include "backend/cuda/gptq_sorted.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/split_k.cuh"

namespace gptq::backend::cuda {
namespace {

using namespace fragment;

constexpr int kWarps = kBlockTiles;  // one 16-row tile per warp
constexpr int kThreads = kWarps * 32;
constexpr int kChunk = 64;               // inputs per lane run of codes
constexpr int kStep = 256;               // inputs staged per step
constexpr int kStepChunks = kStep / kChunk;
constexpr int kMaxStagedChunks = 32;  // MT = 1: inputs staged at once, in chunks
// MT = 1: quads in each warp's ring, about 8 KiB per warp whatever the width (a quad is
// 4 chunks x 32 lanes x Bits words): S − 1 quads in flight while one is multiplied.
template <int Bits>
constexpr int kRingQuads = Bits == 8 ? 2 : Bits == 4 ? 4 : Bits == 3 ? 5 : 8;
template <int Bits>
constexpr int64_t kRingBytes = int64_t(kWarps) * kRingQuads<Bits> * kStepChunks * 32 * Bits * 4;
// Dynamic shared memory a block may use (opted into once per device, gptq_mma_init).
constexpr int kMaxSmem = 96 * 1024;
// Staged rows are padded by 8 elements: row stride 132 words, so the 8 rows x 4 lanes of
// a B-fragment load fall in 32 distinct banks.
constexpr int kRowPad = 8;
constexpr int kRowLen = kStep + kRowPad;

// Shared memory of one block: x rows staged [rows][inputs + kRowPad]. MT = 1 (M <= 8)
// stages only the M rows, all of the split's inputs at once (no further barriers), after
// the code rings [kWarps][S quads][4 chunks][32 lanes][Bits words]; MT > 1 stages 8·MT
// rows, 256 inputs per step.
template <class T>
int64_t stage_bytes(int mt, int64_t M, int chunks_per) {
  return mt == 1 ? M * (int64_t(chunks_per) * kChunk + kRowPad) * int64_t(sizeof(T))
                 : int64_t(mt) * 8 * kRowLen * int64_t(sizeof(T));
}
template <int Bits, int MT>
constexpr int64_t ring_bytes() {
  return MT == 1 ? kRingBytes<Bits> : 0;
}

// grid (Σ_j ceil(Nt_j / 4), splits, ceil(M / (8·MT))), 128 threads, stage_bytes<T>.
// x [M, K] row stride ldx; vec_x: rows 16-byte aligned (ldx % 8 == 0, x aligned).
template <int Bits, int MT, class T>
__global__ void __launch_bounds__(kThreads)
    mma_kernel(MmaGroup<T> g, const T* __restrict__ x, int64_t ldx, int M, bool vec_x, int chunks_per_split,
               int splits, float* partials, int32_t* counters) {
  pdl_begin();
  using T2 = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
  // Independent accumulator chains per tile of a chunk: one mma's latency (~30 cycles)
  // would otherwise serialise a warp's whole K range when MT = 1.
  constexpr int C = MT == 1 ? 4 : 1;
  extern __shared__ __align__(16) unsigned char smem[];
  T* const xs = reinterpret_cast<T*>(smem + ring_bytes<Bits, MT>());

  int64_t tile = blockIdx.x;
  const int j = job_of(g, tile);
  const MmaDeviceLayout& w = g.job[j].w;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gq = lane / 4, tq = lane % 4;
  const int64_t nt = tile * kWarps + warp;  // this warp's 16-row tile
  const bool active = nt < w.Nt;
  const int64_t chunks = w.Kp / kChunk;
  const int64_t c0 = int64_t(blockIdx.y) * chunks_per_split, c1 = min(chunks, c0 + chunks_per_split);
  const int64_t m0 = int64_t(blockIdx.z) * MT * 8;
  const int rows = MT == 1 ? M : MT * 8;                              // staged rows
  const int64_t span = MT == 1 ? (c1 - c0) * kChunk : kStep;           // staged inputs
  const int64_t ld = span + kRowPad;                                   // staged row stride
  const int ld32 = int(ld);
  const T* const xlane = xs + gq * ld32 + 2 * tq;                       // this lane's B elements
  const int K32 = int(w.K);
  const uint32_t* run = w.words + (nt * chunks * 32 + lane) * Bits;    // + chunk · 32 · Bits
  const int64_t rs = w.Nt * 16;                                        // scale / zero row stride
  const int64_t row_lo = nt * 16 + gq;

  float acc[MT][4], tmp[C][MT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      acc[mt][i] = 0.0f;
#pragma unroll
      for (int c = 0; c < C; ++c) tmp[c][mt][i] = 0.0f;
    }
  }
  int group = -1;
  float s_lo = 0.0f, s_hi = 0.0f;  // the group's scales of rows gq, gq + 8
  T2 z_lo, z_hi;                   // B + zero of those rows, in both halves
  auto flush = [&]() {             // acc += s · Σ (q − z) x for the group just finished
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        float t = 0.0f;
#pragma unroll
        for (int c = 0; c < C; ++c) t += tmp[c][mt][i], tmp[c][mt][i] = 0.0f;
        acc[mt][i] += (i < 2 ? s_lo : s_hi) * t;
      }
    }
  };
  // The next group's parameters are loaded when a group is entered: groups run in order
  // along the sorted inputs, so that is usually the one needed next, and its loads (an L2
  // round trip) fly while this group's tiles multiply instead of stalling the first tile
  // of every group. Kept raw and converted on use, so nothing waits at the load.
  int pf_group = -1;
  __half pf_s_lo, pf_s_hi;
  uint8_t pf_z_lo = 0, pf_z_hi = 0;
  auto prefetch = [&](int tg) {
    if (tg >= w.G) return;
    pf_group = tg;
    pf_s_lo = w.scales[tg * rs + row_lo], pf_s_hi = w.scales[tg * rs + row_lo + 8];
    pf_z_lo = w.zeros[tg * rs + row_lo], pf_z_hi = w.zeros[tg * rs + row_lo + 8];
  };
  // Group tg's parameters, the previous group's sum flushed first.
  auto enter_group = [&](int tg) {
    if (group >= 0) flush();
    group = tg;
    if (tg != pf_group) prefetch(tg);  // not foreseen: load now and wait
    s_lo = __half2float(pf_s_lo);
    s_hi = __half2float(pf_s_hi);
    const uint32_t zl = Magic<T>::kBits | (uint32_t(pf_z_lo) * 0x00010001u);
    const uint32_t zh = Magic<T>::kBits | (uint32_t(pf_z_hi) * 0x00010001u);
    z_lo = *reinterpret_cast<const T2*>(&zl);
    z_hi = *reinterpret_cast<const T2*>(&zh);
    prefetch(tg + 1);
  };
  // Tile J of chunk words w4 at staged input kl, in the current group: A = (B + q) −
  // (B + z) = q − z exactly, one mma per 8 batch rows (lanes past the staged rows feed 0).
  const bool has_row = gq < rows;  // MT = 1; with MT > 1 every staged row exists
  auto tile_product = [&]<int J>(const uint32_t(&w4)[Bits], int kl) {
    uint32_t a[4];
    a_fragment<Bits, J, T>(w4, a);
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const T2 d = __hsub2(*reinterpret_cast<const T2*>(&a[p]), (p & 1) ? z_hi : z_lo);
      a[p] = *reinterpret_cast<const uint32_t*>(&d);
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      uint32_t b0 = 0, b1 = 0;
      if (MT > 1 || has_row) {
        const T* xrow = xlane + mt * 8 * ld32 + kl;
        b0 = *reinterpret_cast<const uint32_t*>(xrow);
        b1 = *reinterpret_cast<const uint32_t*>(xrow + 8);
      }
      mma_16816<T>(tmp[J % C][mt], a, b0, b1);
    }
  };
  // Chunk c of the quad: one group check when its tiles share a group (chunk_group),
  // else per tile, skipping tiles past K.
  auto chunk_product = [&](const uint32_t(&w4)[Bits], int cg, int k, int kl) {
    auto per_tile = [&]<int J>() {
      if (k + 16 * J >= K32) return;
      const int tg = __ldg(w.tile_group + (k >> 4) + J);
      if (tg != group) enter_group(tg);
      tile_product.template operator()<J>(w4, kl + 16 * J);
    };
    if (cg >= 0) {
      if (cg != group) enter_group(cg);
      tile_product.template operator()<0>(w4, kl);
      tile_product.template operator()<1>(w4, kl + 16);
      tile_product.template operator()<2>(w4, kl + 32);
      tile_product.template operator()<3>(w4, kl + 48);
    } else {
      per_tile.template operator()<0>();
      per_tile.template operator()<1>();
      per_tile.template operator()<2>();
      per_tile.template operator()<3>();
    }
  };

  // Stage x rows [m0, m0 + rows) x sorted inputs [k0, k0 + span), zeros outside.
  auto stage_x = [&](int64_t k0) {
    const int64_t lim = min(min(c1 * kChunk, k0 + span), w.K);
    const int64_t vecs = span / 8;
    for (int64_t i = threadIdx.x; i < rows * vecs; i += kThreads) {
      const int m = int(i / vecs);
      const int64_t kk = (i % vecs) * 8, row = m0 + m, k = k0 + kk;
      T* dst = xs + m * ld + kk;
      if (row < M && w.perm == nullptr && vec_x && k + 8 <= lim) {
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(x + row * ldx + k);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const int64_t ke = k + e;
          dst[e] = row < M && ke < lim ? x[row * ldx + (w.perm != nullptr ? w.perm[ke] : ke)] : from_f32<T>(0.0f);
        }
      }
    }
  };

  if constexpr (MT == 1) {
    // The warp's split streams through its ring: quad i in slot i % S. Each lane copies
    // and later reads only its own words, so the ring needs no barrier; a slot is
    // refilled one iteration after its mma consumed it (in issue order, so after its
    // shared loads returned). Past the split, empty groups keep the wait count uniform.
    constexpr int S = kRingQuads<Bits>;
    uint32_t* const ring = reinterpret_cast<uint32_t*>(smem) + (int64_t(warp) * S * kStepChunks * 32 + lane) * Bits;
    auto issue = [&](int64_t first, int slot) {
      if (active) {
#pragma unroll
        for (int c = 0; c < kStepChunks; ++c) {
          if (first + c < c1) load_run_async<Bits>(ring + (slot * kStepChunks + c) * 32 * Bits, run + (first + c) * 32 * Bits);
        }
      }
      cp_async_commit();
    };
#pragma unroll
    for (int q = 0; q < S - 1; ++q) issue(c0 + q * kStepChunks, q);  // in flight while x is staged
    if (active && c0 < c1) prefetch(__ldg(w.tile_group + c0 * (kChunk / 16)));
    stage_x(c0 * kChunk);
    __syncthreads();
    const int64_t k0 = c0 * kChunk;
    int slot = 0;
    for (int64_t q = c0; q < c1; q += kStepChunks) {
      issue(q + (S - 1) * kStepChunks, slot == 0 ? S - 1 : slot - 1);
      cp_async_wait<S - 1>();  // quad q has landed
      if (active) {
        int cg[kStepChunks];
#pragma unroll
        for (int c = 0; c < kStepChunks; ++c) cg[c] = q + c < c1 ? __ldg(w.chunk_group + q + c) : -1;
#pragma unroll
        for (int c = 0; c < kStepChunks; ++c) {
          if (q + c < c1) {
            uint32_t w4[Bits];
            read_run<Bits>(ring + (slot * kStepChunks + c) * 32 * Bits, w4);
            const int k = int((q + c) * kChunk);
            chunk_product(w4, cg[c], k, int(k - k0));
          }
        }
      }
      slot = slot + 1 == S ? 0 : slot + 1;
    }
    cp_async_wait<0>();
  } else {
    // A quad of chunks in registers, loaded one step ahead: each lane's code words and
    // each chunk's group (loaded with the codes, so no tile waits on a load for its group).
    uint32_t cur[kStepChunks][Bits], nxt[kStepChunks][Bits];
    int cur_g[kStepChunks], nxt_g[kStepChunks];
    auto load_quad = [&](int64_t first, uint32_t(&r)[kStepChunks][Bits], int(&cg)[kStepChunks]) {
#pragma unroll
      for (int c = 0; c < kStepChunks; ++c) {
        if (active && first + c < c1) {
          load_run<Bits>(run + (first + c) * 32 * Bits, r[c]);
          cg[c] = __ldg(w.chunk_group + first + c);
        }
      }
    };
    load_quad(c0, cur, cur_g);
    if (active && c0 < c1) prefetch(__ldg(w.tile_group + c0 * (kChunk / 16)));
    for (int64_t k0 = c0 * kChunk; k0 < c1 * kChunk; k0 += span) {
      stage_x(k0);
      __syncthreads();
      const int64_t stage_end = min(c1, (k0 + span) / kChunk);
      for (int64_t q = k0 / kChunk; q < stage_end; q += kStepChunks) {
        if (q + kStepChunks < c1) load_quad(q + kStepChunks, nxt, nxt_g);
        if (active) {
#pragma unroll
          for (int c = 0; c < kStepChunks; ++c) {
            if (q + c < c1) {
              const int k = int((q + c) * kChunk);
              chunk_product(cur[c], cur_g[c], k, int(k - k0));
            }
          }
        }
#pragma unroll
        for (int c = 0; c < kStepChunks; ++c) {
#pragma unroll
          for (int b = 0; b < Bits; ++b) cur[c][b] = nxt[c][b];
          cur_g[c] = nxt_g[c];
        }
      }
      __syncthreads();  // xs is restaged next step
    }
  }
  if (active && group >= 0) flush();

  // Element i of fragment mt: row nt·16 + gq (+8 for i ≥ 2), batch row m0 + mt·8 + 2·tq + (i & 1).
  T* y = g.job[j].y;
  const int64_t ldy = g.job[j].ldy, N = w.N;
  auto store = [&](int64_t m, int64_t n, float v) {
    if (w.bias != nullptr) v += w.bias[n];
    if (g.epilogue == Epilogue::kAccumulate) v += to_f32(y[m * ldy + n]);
    y[m * ldy + n] = from_f32<T>(v);
  };
  // f(m, n, v) for each output element this thread computed (inside [M, N]).
  auto for_each_element = [&](auto&& f) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t n = row_lo + (i >= 2 ? 8 : 0), m = m0 + mt * 8 + 2 * tq + (i & 1);
        if (active && n < N && m < M) f(m, n, acc[mt][i]);
      }
    }
  };
  const int64_t block = int64_t(blockIdx.z) * gridDim.x + blockIdx.x;
  finish_split<MT * 4>(&acc[0][0], [&] { for_each_element(store); },
                       partials + block * split_floats(1, kThreads, MT * 4, splits), int(blockIdx.y), splits,
                       counters + block);
}

struct Plan {
  int mt;           // 8-row batch fragments per block
  int64_t mchunks;  // blocks along M
  int splits, chunks_per;
};

// Splits K so the grid fills the GPU: ~4 blocks per SM while a block's work is light
// (few batch rows: the product streams codes), fewer as it grows (the fp32 partials
// then cost as much as the codes).
template <class T>
Plan plan_for(const MmaGroup<T>& g, int64_t M) {
  Plan p{};
  // Up to 64 batch rows per block (MT = 8: 32 accumulators and 32 group sums per lane,
  // ~170 registers); more rows take more blocks along M, each streaming the codes again.
  p.mt = M <= 8 ? 1 : M <= 16 ? 2 : M <= 32 ? 4 : 8;
  p.mchunks = (M + p.mt * 8 - 1) / (p.mt * 8);
  const int64_t chunks = g.job[0].w.Kp / kChunk;
  const int64_t blocks = group_tiles(g) * p.mchunks;
  // Blocks to fill the GPU: for one batch fragment what fits at once (shared memory
  // decides: 228 KiB / (32 KiB of code rings + staged x) = 6 per SM, 24 warps, each with
  // S − 1 quads in flight), fewer as blocks grow.
  const int64_t target = int64_t(sm_count()) * (p.mt == 1 ? 6 : p.mt == 2 ? 4 : 2);
  // MT = 1 stages its whole split: at most kMaxStagedChunks chunks (8 rows x 2048
  // inputs x 2 bytes = 32 KiB).
  // And at least two quads per warp: a block's fixed cost (staging, the split's partials
  // and its reduction) is ~15 instructions per tile at one quad.
  const int64_t least = p.mt == 1 ? (chunks + kMaxStagedChunks - 1) / kMaxStagedChunks : 1;
  const int64_t most = std::max<int64_t>(least, chunks / (2 * kStepChunks));
  const int64_t splits = capped_splits(std::clamp<int64_t>((target + blocks - 1) / blocks, least, most), least,
                                      g.max_splits);
  p.chunks_per = int((chunks + splits - 1) / splits);
  p.splits = int((chunks + p.chunks_per - 1) / p.chunks_per);
  return p;
}

template <int Bits, int MT, class T>
void launch_mma(const MmaGroup<T>& g, const Plan& p, const T* x, int64_t ldx, int64_t M, float* partials,
                int32_t* counters, cudaStream_t s) {
  const int64_t smem = ring_bytes<Bits, MT>() + stage_bytes<T>(MT, M, p.chunks_per);
  GPTQ_CHECK(smem <= kMaxSmem, "gptq_mma: shared memory exceeds the opted-in size");  // plan_for keeps it inside
  const bool vec_x = ldx % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const dim3 grid(unsigned(group_tiles(g)), unsigned(p.splits), unsigned(p.mchunks));
  launch(mma_kernel<Bits, MT, T>, grid, kThreads, size_t(smem), s, g, x, ldx, int(M), vec_x, p.chunks_per, p.splits,
         partials, counters);
}

template <int Bits, class T>
void mma_bits(const MmaGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
              cudaStream_t s) {
  const Plan p = plan_for(g, M);
  switch (p.mt) {
    case 1: launch_mma<Bits, 1, T>(g, p, x, ldx, M, partials, counters, s); return;
    case 2: launch_mma<Bits, 2, T>(g, p, x, ldx, M, partials, counters, s); return;
    case 4: launch_mma<Bits, 4, T>(g, p, x, ldx, M, partials, counters, s); return;
    default: launch_mma<Bits, 8, T>(g, p, x, ldx, M, partials, counters, s); return;
  }
}

template <int Bits, class T>
void allow_smem() {
  CUDA_CHECK(cudaFuncSetAttribute(mma_kernel<Bits, 1, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmem));
}

}  // namespace

void gptq_mma_init() {
  gptq_batch_init();
  allow_smem<2, __half>();
  allow_smem<3, __half>();
  allow_smem<4, __half>();
  allow_smem<8, __half>();
  allow_smem<2, __nv_bfloat16>();
  allow_smem<3, __nv_bfloat16>();
  allow_smem<4, __nv_bfloat16>();
}

bool mma_supported(int bits, DType act) {
  if (act == DType::kF16) return bits == 2 || bits == 3 || bits == 4 || bits == 8;
  if (act == DType::kBF16) return bits == 2 || bits == 3 || bits == 4;
  return false;
}

namespace {

// Scratch and launch of one group on the fastest kernel that takes it: batch 1-8, batch
// 9-256 (fp16, x's rows 16-byte aligned: gptq_mma sees to it), else the general one.
template <class T>
MmaScratch direct_scratch(const MmaGroup<T>& g, int64_t M) {
  if (decode_applies(g, M)) return gptq_decode_scratch(g, M);
  if constexpr (std::is_same_v<T, __half>) {
    if (batch_applies(g, M)) return gptq_batch_scratch(g, M);
  }
  const Plan p = plan_for(g, M);
  return {.floats = split_floats(group_tiles(g) * p.mchunks, kThreads, p.mt * 4, p.splits),
          .counters = group_tiles(g) * p.mchunks};
}

template <class T>
void direct(const MmaGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
            cudaStream_t s) {
  if (decode_applies(g, M)) {
    gptq_decode(g, x, ldx, M, partials, counters, s);
    return;
  }
  if constexpr (std::is_same_v<T, __half>) {
    if (batch_applies(g, M)) {
      gptq_batch(g, x, ldx, M, partials, counters, s);
      return;
    }
  }
  with_bits<T>(g.job[0].w.bits, "gptq_mma", [&]<int Bits>() { mma_bits<Bits, T>(g, x, ldx, M, partials, counters, s); });
}

// At M >= 2, act-order layers, and any layer when x's rows are not 16-byte aligned, run
// on a copy of x (gptq_sorted.cuh): gathered into each layer's sorted order once instead
// of per block and step, or copied to aligned rows. Each layer then runs alone (the
// group's layers may carry different permutations), on its copy, in turn, in one buffer
// after the largest layer's split partials. (At M = 1 the batch-1 kernel gathers its few
// inputs while staging.)
template <class T>
bool through_copy(const MmaGroup<T>& g, const T* x, int64_t ldx, int64_t M) {
  if (M < 2) return false;
  if (ldx % 8 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0) return true;
  for (int j = 0; j < g.count; ++j) {
    if (g.job[j].w.perm != nullptr) return true;
  }
  return false;
}
template <class T>
MmaGroup<T> alone_sorted(const MmaGroup<T>& g, int j) {
  MmaGroup<T> one = g;
  one.count = 1;
  one.job[0] = g.job[j];
  one.job[0].w.perm = nullptr;
  return one;
}
// The split scratch of the layers alone: the most any one needs; fp32 floats, rounded to
// 16 bytes so the copy of x after it starts aligned.
template <class T>
MmaScratch alone_scratch(const MmaGroup<T>& g, int64_t M) {
  MmaScratch most{};
  for (int j = 0; j < g.count; ++j) {
    const MmaScratch one = direct_scratch(alone_sorted(g, j), M);
    most.floats = std::max(most.floats, one.floats);
    most.counters = std::max(most.counters, one.counters);
  }
  most.floats = (most.floats + 3) / 4 * 4;
  return most;
}

}  // namespace

// Sized for either route (x's alignment is not known here): the direct one, or the layers
// alone with the copy [M, sorted_ld(K)] of T after their partials.
template <class T>
MmaScratch gptq_mma_scratch(const MmaGroup<T>& g, int64_t M) {
  const MmaScratch direct = direct_scratch(g, M);
  if (M < 2) return direct;
  MmaScratch copy = alone_scratch(g, M);
  copy.floats += (M * sorted_ld(g.job[0].w.K) * int64_t(sizeof(T)) + 3) / 4;
  return {.floats = std::max(direct.floats, copy.floats), .counters = std::max(direct.counters, copy.counters)};
}

template <class T>
void gptq_mma(const MmaGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
              cudaStream_t s) {
  GPTQ_CHECK(M >= 1 && g.count >= 1 && g.count <= kMaxGroup, "gptq_mma: M or group size");
  for (int j = 1; j < g.count; ++j) {
    GPTQ_CHECK(g.job[j].w.bits == g.job[0].w.bits && g.job[j].w.K == g.job[0].w.K, "gptq_mma: group mismatch");
  }
  if (!through_copy(g, x, ldx, M)) {
    direct(g, x, ldx, M, partials, counters, s);
    return;
  }
  const int64_t K = g.job[0].w.K;
  T* const copy = reinterpret_cast<T*>(partials + alone_scratch(g, M).floats);
  for (int j = 0; j < g.count; ++j) {
    gather_sorted(x, ldx, M, K, g.job[j].w.perm, copy, s);
    direct(alone_sorted(g, j), static_cast<const T*>(copy), sorted_ld(K), M, partials, counters, s);
  }
}

template MmaScratch gptq_mma_scratch<__half>(const MmaGroup<__half>&, int64_t);
template MmaScratch gptq_mma_scratch<__nv_bfloat16>(const MmaGroup<__nv_bfloat16>&, int64_t);
template void gptq_mma<__half>(const MmaGroup<__half>&, const __half*, int64_t, int64_t, float*, int32_t*,
                               cudaStream_t);
template void gptq_mma<__nv_bfloat16>(const MmaGroup<__nv_bfloat16>&, const __nv_bfloat16*, int64_t, int64_t,
                                      float*, int32_t*, cudaStream_t);

}  // namespace gptq::backend::cuda
