// GPTQ GEMV (M <= 8) and dequantization, one template per bit width.
//
// GEMV work split: a block of 8 warps owns 128 output columns (each lane 4 adjacent
// columns, so one 16-byte load brings 4 columns x 32/bits codes) and a range of K; the
// warps stride over the range's code blocks, each issuing the loads of U code blocks
// before it uses any; the block's K range of x, gathered through perm, sits in shared
// memory. Per code block: the group's 4 scales and zeros; with fp16 activations (2/4/8
// bits) the codes become fp16 weights in registers and t = Σ x·w runs in half2 over the
// block's codes, then acc += t in fp32; otherwise t = Σ x·(q − z) in fp32 and
// acc += scale · t. Warps reduce in shared memory; each K split writes fp32
// partials [split, M, N]; the last split to finish a column tile (an atomic counter per
// tile) sums them in split order (deterministic), adds the bias (and y, when
// accumulating) and rounds to T. A group's products (q/k/v) share one grid: blockIdx.x
// runs over the column tiles of every job.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/gptq_gemm.cuh"

namespace gptq::backend::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kCols = 128;         // columns per block: 32 lanes x 4
constexpr int kStageFloats = 2048; // shared fp32 x values per block (8 KiB)
constexpr int kRowsWarps = 4;      // dequantize_rows_kernel: warps per block
constexpr int kRowsInputs = 64;    // and inputs each warp writes per row

__host__ __device__ constexpr int64_t ceil_tiles(int64_t np) { return (np + kCols - 1) / kCols; }

constexpr uint32_t kMagicBits = 0x4B000000u;  // the float 2^23
constexpr float kMagic = 8388608.0f;

constexpr int block_values(int bits) { return bits == 3 ? 32 : 32 / bits; }
constexpr int block_words(int bits) { return bits == 3 ? 3 : 1; }

// Code i (compile-time) of a block of Bits-bit codes held in words w[0..block_words).
template <int Bits, int I>
__device__ __forceinline__ uint32_t code(const uint32_t* w) {
  constexpr int bit = I * Bits, word = bit / 32, shift = bit % 32;
  uint32_t v = w[word] >> shift;
  if constexpr (shift + Bits > 32) v |= w[word + 1] << (32 - shift);
  return v & ((1u << Bits) - 1u);
}

template <int Bits, int I, int V>
struct CodeLoop {
  template <class F>
  __device__ __forceinline__ static void run(const uint32_t* w, F&& f) {
    f(I, code<Bits, I>(w));
    CodeLoop<Bits, I + 1, V>::run(w, f);
  }
};
template <int Bits, int V>
struct CodeLoop<Bits, V, V> {
  template <class F>
  __device__ __forceinline__ static void run(const uint32_t*, F&&) {}
};

// Which job of g the block column belongs to; `tile` becomes the column tile within it.
template <class T>
__device__ __forceinline__ int job_of(const GptqGemvGroup<T>& g, int64_t& tile) {
  int j = 0;
  while (j + 1 < g.count && tile >= ceil_tiles(g.job[j].w.Np)) tile -= ceil_tiles(g.job[j++].w.Np);
  return j;
}

template <int Bits, int MT, class T>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(GptqGemvGroup<T> g, const T* x, int64_t ldx, int M, int kb_per, int splits, float* partials,
                int32_t* counters) {
  pdl_begin();
  constexpr int V = block_values(Bits), BW = block_words(Bits);
  constexpr int U = MT == 1 ? 4 : 2;  // code blocks each warp loads before using any
  // fp16 activations and codes that do not straddle words: the half2 path.
  constexpr bool kHalf = std::is_same_v<T, __half> && Bits != 3;
  constexpr int P = V / 2;  // code pairs per word
  constexpr uint32_t kPairMask = ((1u << Bits) - 1u) * 0x00010001u;
  __shared__ float xs[kStageFloats];
  __shared__ float red[kWarps][MT][kCols];
  __shared__ bool last;
  int64_t tile = blockIdx.x;
  const int j = job_of(g, tile);
  const GptqDeviceLayout& w = g.job[j].w;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t nkb = w.K / V;
  const int64_t kb0 = int64_t(blockIdx.y) * kb_per, kb1 = min(nkb, kb0 + kb_per);
  const int64_t k0 = kb0 * V, kcount = max(int64_t(0), kb1 - kb0) * V;
  // fp16 path: x staged as half2 pairs (x[j], x[j + P]) of each code block, the pairs
  // the codes come out of a word in (see below); otherwise fp32.
  __half2* const xs2 = reinterpret_cast<__half2*>(xs);
  const int64_t pairs = kcount / 2;  // half2 per row of x
  if constexpr (kHalf) {
    for (int64_t i = threadIdx.x; i < pairs * MT; i += blockDim.x) {
      const int m = int(i / pairs);
      const int64_t p = i % pairs, lo = k0 + (p / P) * V + p % P, hi = lo + P;
      const int64_t clo = w.perm != nullptr ? w.perm[lo] : lo, chi = w.perm != nullptr ? w.perm[hi] : hi;
      xs2[i] = m < M ? __halves2half2(x[m * ldx + clo], x[m * ldx + chi]) : __float2half2_rn(0.0f);
    }
  } else {
    for (int64_t i = threadIdx.x; i < kcount * MT; i += blockDim.x) {
      const int m = int(i / kcount);
      const int64_t kk = k0 + i % kcount;
      const int64_t col = w.perm != nullptr ? w.perm[kk] : kk;
      xs[i] = m < M ? to_f32(x[m * ldx + col]) : 0.0f;
    }
  }
  __syncthreads();

  const int64_t c4 = tile * kCols + lane * 4;
  float acc[MT][4];
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[m][c] = 0.0f;
  }
  if (c4 < w.Np) {
    for (int64_t kbu = kb0 + warp; kbu < kb1; kbu += kWarps * U) {
      // Issue every load of U code blocks first: the words (16 bytes per lane per
      // 32-bit row of codes) and the group index; then the group's scales and zeros.
      uint32_t words[U][4][BW];
      int64_t grp[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t kb = min(kbu + int64_t(u) * kWarps, kb1 - 1);
        grp[u] = __ldg(w.block_group + kb);
#pragma unroll
        for (int i = 0; i < BW; ++i) {
          // Codes are read once per product: streamed past L1.
          const uint4 q = __ldcs(reinterpret_cast<const uint4*>(w.qweight + (kb * BW + i) * w.Np + c4));
          words[u][0][i] = q.x, words[u][1][i] = q.y, words[u][2][i] = q.z, words[u][3][i] = q.w;
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t kb = kbu + int64_t(u) * kWarps;
        if (kb >= kb1) break;
        const uint2 sraw = __ldg(reinterpret_cast<const uint2*>(w.scales + grp[u] * w.Np + c4));
        const __half* sh = reinterpret_cast<const __half*>(&sraw);
        const uchar4 z = *reinterpret_cast<const uchar4*>(w.zeros + grp[u] * w.Np + c4);
        if constexpr (kHalf) {
          // Codes to fp16 without conversions: OR-ing a code q into the mantissa of
          // 1024.0 (0x6400) gives 1024 + q exactly, two codes per 32-bit operation (lanes
          // j and j + P of a word, masked out together); minus 1024 + z is q - z exactly;
          // times the scale is the weight rounded once, as a dequantized fp16 matrix
          // holds it. Products and the P-term sums in half2, then fp32.
          const uint8_t zc[4] = {z.x, z.y, z.z, z.w};
          const __half2* xb2 = xs2 + (kb - kb0) * P;
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const __half2 zz = __half2half2(__ushort_as_half(uint16_t(0x6400u | zc[c])));
            const __half2 s2 = __half2half2(sh[c]);
            __half2 t2[MT];
#pragma unroll
            for (int m = 0; m < MT; ++m) t2[m] = __float2half2_rn(0.0f);
#pragma unroll
            for (int jp = 0; jp < P; ++jp) {
              const uint32_t bits = ((words[u][c][0] >> (Bits * jp)) & kPairMask) | 0x64006400u;
              const __half2 wq = __hmul2(__hsub2(*reinterpret_cast<const __half2*>(&bits), zz), s2);
#pragma unroll
              for (int m = 0; m < MT; ++m) t2[m] = __hfma2(xb2[m * pairs + jp], wq, t2[m]);
            }
#pragma unroll
            for (int m = 0; m < MT; ++m) acc[m][c] += __low2float(t2[m]) + __high2float(t2[m]);
          }
          continue;
        }
        // 2^23 + z: a code q becomes 2^23 + q by OR-ing it into the mantissa of 2^23
        // (exact for q < 2^23), so q - z is one exact FADD, not an int->float
        // conversion (a quarter-rate instruction, 32 of them per 16-byte load).
        const float zf[4] = {kMagic + float(z.x), kMagic + float(z.y), kMagic + float(z.z), kMagic + float(z.w)};
        const float* xb = xs + (kb - kb0) * V;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          float t[MT];
#pragma unroll
          for (int m = 0; m < MT; ++m) t[m] = 0.0f;
          CodeLoop<Bits, 0, V>::run(words[u][c], [&](int i, uint32_t q) {
            const float wq = __uint_as_float(q | kMagicBits) - zf[c];
#pragma unroll
            for (int m = 0; m < MT; ++m) t[m] += xb[m * kcount + i] * wq;
          });
          const float sc = __half2float(sh[c]);
#pragma unroll
          for (int m = 0; m < MT; ++m) acc[m][c] += sc * t[m];
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int c = 0; c < 4; ++c) red[warp][m][lane * 4 + c] = acc[m][c];
  }
  __syncthreads();
  T* y = g.job[j].y;
  const int64_t ldy = g.job[j].ldy;
  auto store = [&](int m, int64_t n, float v) {
    if (w.bias != nullptr) v += w.bias[n];
    if (g.epilogue == Epilogue::kAccumulate) v += to_f32(y[m * ldy + n]);
    y[m * ldy + n] = from_f32<T>(v);
  };
  // This job's partials: [splits, M, N], after those of the jobs before it.
  float* part = partials;
  for (int i = 0; i < j; ++i) part += int64_t(splits) * M * g.job[i].w.N;
  for (int i = threadIdx.x; i < MT * kCols; i += blockDim.x) {
    const int m = i / kCols, col = i % kCols;
    const int64_t n = tile * kCols + col;
    if (m >= M || n >= w.N) continue;
    float sum = 0.0f;
    for (int wi = 0; wi < kWarps; ++wi) sum += red[wi][m][col];
    if (splits == 1) {
      store(m, n, sum);
    } else {
      part[(int64_t(blockIdx.y) * M + m) * w.N + n] = sum;
    }
  }
  if (splits == 1) return;
  // The last split to finish this column tile sums the partials in split order.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counters + blockIdx.x, 1) == splits - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int i = threadIdx.x; i < MT * kCols; i += blockDim.x) {
    const int m = i / kCols, col = i % kCols;
    const int64_t n = tile * kCols + col;
    if (m >= M || n >= w.N) continue;
    float sum = 0.0f;
    for (int sp = 0; sp < splits; ++sp) sum += __ldcg(part + (int64_t(sp) * M + m) * w.N + n);
    store(m, n, sum);
  }
  if (threadIdx.x == 0) counters[blockIdx.x] = 0;  // ready for the next call (and graph replay)
}

// Dense rows for cuBLAS: grid (ceil(count / 32), ceil(K / 256)), 128 threads. Warp w of
// block (x, y) takes columns c = 32x + lane (weight rows n0 + c) at layout inputs
// [256y + 64w, + 64): lane c reads its column's code words (consecutive lanes, consecutive
// columns: coalesced), decodes 64 values into row `lane` of a shared tile, and the warp
// then writes the tile as 16-byte vectors, 8 lanes per 128-byte row piece. (Writing each
// lane's values straight to its row, 16 bytes a store K elements apart, ran at 6% of the
// bandwidth; the transposed [K, count] tile this replaces wrote 64 bytes per row per warp
// store.) Each value is s·(q − z), exact in fp32 (fp16 s, |q − z| < 256), rounded once.
template <int Bits, class T>
__global__ void __launch_bounds__(kRowsWarps * 32)
    dequantize_rows_kernel(GptqDeviceLayout w, int64_t n0, int64_t count, T* out, int64_t ldo) {
  pdl_begin();
  constexpr int V = block_values(Bits), BW = block_words(Bits), kBlocks = kRowsInputs / V;
  constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte vector
  // Rows padded by one vector: a row is 36 words (fp16; 68 fp32), so the 8 lanes of a
  // 16-byte store phase start 4 banks apart, and a row's vectors are one 128-byte phase.
  constexpr int kLen = kRowsInputs + kVec;
  __shared__ __align__(16) T tile[kRowsWarps][32][kLen];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t c = int64_t(blockIdx.x) * 32 + lane, n = n0 + c;
  const int64_t kb0 = (int64_t(blockIdx.y) * kRowsWarps + warp) * kBlocks, nkb = w.K / V;
  T(&t)[32][kLen] = tile[warp];
  if (c < count) {
    uint32_t words[kBlocks][BW];
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
#pragma unroll
      for (int i = 0; i < BW; ++i) {
        words[b][i] = kb0 + b < nkb ? uint32_t(__ldcs(w.qweight + ((kb0 + b) * BW + i) * w.Np + n)) : 0u;
      }
    }
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      if (kb0 + b >= nkb) break;
      const int64_t g = w.block_group[kb0 + b];
      const float s = __half2float(w.scales[g * w.Np + n]), z = kMagic + float(w.zeros[g * w.Np + n]);
      __align__(16) T v[V];
      CodeLoop<Bits, 0, V>::run(words[b], [&](int i, uint32_t q) {
        v[i] = from_f32<T>(s * (__uint_as_float(q | kMagicBits) - z));
      });
      // V values = V·sizeof(T) bytes, 8 (8-bit fp16) or a multiple of 16.
      if constexpr (V * sizeof(T) == 8) {
        *reinterpret_cast<uint2*>(&t[lane][b * V]) = *reinterpret_cast<const uint2*>(v);
      } else {
#pragma unroll
        for (int e = 0; e < int(V * sizeof(T) / 16); ++e) {
          reinterpret_cast<uint4*>(&t[lane][b * V])[e] = reinterpret_cast<const uint4*>(v)[e];
        }
      }
    }
  }
  __syncwarp();
  constexpr int kRowVecs = kRowsInputs / kVec;
  const int64_t rows = min(int64_t(32), count - int64_t(blockIdx.x) * 32);
#pragma unroll
  for (int i = 0; i < 32 * kRowVecs / 32; ++i) {
    const int vi = i * 32 + lane, row = vi / kRowVecs, e0 = vi % kRowVecs * kVec;
    const int64_t k = kb0 * V + e0;
    if (row >= rows || k >= w.K) continue;
    // K is a multiple of V and of 8 at fp16 widths but 8-bit (K % 4): a tail vector there.
    T* dst = out + (int64_t(blockIdx.x) * 32 + row) * ldo + k;
    if (k + kVec <= w.K) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(&t[row][e0]);
    } else {
      for (int e = 0; e < w.K - k; ++e) dst[e] = t[row][e0 + e];
    }
  }
}

struct Split {
  int splits;
  int kb_per;
};

int rows_tile(int64_t M) { return M == 1 ? 1 : kGemvMaxRows; }

template <class T>
int64_t group_tiles(const GptqGemvGroup<T>& g) {
  int64_t tiles = 0;
  for (int j = 0; j < g.count; ++j) tiles += ceil_tiles(g.job[j].w.Np);
  return tiles;
}

// One K split for the whole group (its jobs share K), sized so the grid has about two
// blocks per SM of an H100/H200 (132 SMs), each warp at least two code blocks.
template <class T>
Split split_for(const GptqGemvGroup<T>& g, int mt) {
  const GptqDeviceLayout& w = g.job[0].w;
  const int v = block_values(w.bits);
  const int64_t nkb = w.K / v;
  const int64_t kb_max = std::max<int64_t>(1, kStageFloats / mt / v);
  const int64_t tiles = group_tiles(g);
  const int64_t want = std::max<int64_t>(1, (264 + tiles - 1) / tiles);
  int64_t splits =
      std::max<int64_t>((nkb + kb_max - 1) / kb_max, std::min(want, std::max<int64_t>(1, nkb / (2 * kWarps))));
  const int64_t kb_per = (nkb + splits - 1) / splits;
  splits = (nkb + kb_per - 1) / kb_per;
  return {int(splits), int(kb_per)};
}

template <int Bits, class T>
void gemv_bits(const GptqGemvGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
               cudaStream_t s) {
  const int mt = rows_tile(M);
  const Split sp = split_for(g, mt);
  const dim3 grid(unsigned(group_tiles(g)), unsigned(sp.splits));
  if (mt == 1) {
    launch(gemv_kernel<Bits, 1, T>, grid, kWarps * 32, 0, s, g, x, ldx, int(M), sp.kb_per, sp.splits, partials, counters);
  } else {
    launch(gemv_kernel<Bits, kGemvMaxRows, T>, grid, kWarps * 32, 0, s, g, x, ldx, int(M), sp.kb_per, sp.splits, partials, counters);
  }
}

}  // namespace

template <class T>
GemvScratch gptq_gemv_scratch(const GptqGemvGroup<T>& g, int64_t M) {
  const int64_t splits = split_for(g, rows_tile(M)).splits;
  int64_t floats = 0;
  for (int j = 0; j < g.count; ++j) floats += splits * M * g.job[j].w.N;
  return {.floats = splits == 1 ? 0 : floats, .counters = group_tiles(g)};
}

template <class T>
void gptq_gemv(const GptqGemvGroup<T>& g, const T* x, int64_t ldx, int64_t M, float* partials, int32_t* counters,
               cudaStream_t s) {
  GPTQ_CHECK(M >= 1 && M <= kGemvMaxRows && g.count >= 1 && g.count <= kMaxGroup, "gptq_gemv: M or group size");
  for (int j = 1; j < g.count; ++j) {
    GPTQ_CHECK(g.job[j].w.bits == g.job[0].w.bits && g.job[j].w.K == g.job[0].w.K, "gptq_gemv: group mismatch");
  }
  switch (g.job[0].w.bits) {
    case 2: gemv_bits<2, T>(g, x, ldx, M, partials, counters, s); return;
    case 3: gemv_bits<3, T>(g, x, ldx, M, partials, counters, s); return;
    case 4: gemv_bits<4, T>(g, x, ldx, M, partials, counters, s); return;
    case 8: gemv_bits<8, T>(g, x, ldx, M, partials, counters, s); return;
    default: GPTQ_CHECK(false, "gptq_gemv: unsupported bits");
  }
}

template <class T>
void gptq_dequantize(const GptqDeviceLayout& w, int64_t n0, int64_t count, T* out, int64_t ldo, cudaStream_t s) {
  GPTQ_CHECK(count > 0 && n0 >= 0 && n0 + count <= w.N, "gptq_dequantize: rows");
  GPTQ_CHECK(ldo >= w.K && ldo % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0,
             "gptq_dequantize: output rows must be 16-byte aligned and hold K");
  const dim3 grid(ceil_div(count, 32), ceil_div(w.K, int64_t(kRowsInputs) * kRowsWarps));
  GPTQ_CHECK(grid.y <= 65535, "gptq_dequantize: K too large");
  const int threads = kRowsWarps * 32;
  switch (w.bits) {
    case 2: launch(dequantize_rows_kernel<2, T>, grid, threads, 0, s, w, n0, count, out, ldo); break;
    case 3: launch(dequantize_rows_kernel<3, T>, grid, threads, 0, s, w, n0, count, out, ldo); break;
    case 4: launch(dequantize_rows_kernel<4, T>, grid, threads, 0, s, w, n0, count, out, ldo); break;
    case 8: launch(dequantize_rows_kernel<8, T>, grid, threads, 0, s, w, n0, count, out, ldo); break;
    default: GPTQ_CHECK(false, "gptq_dequantize: unsupported bits");
  }
}

template GemvScratch gptq_gemv_scratch<float>(const GptqGemvGroup<float>&, int64_t);
template void gptq_gemv<float>(const GptqGemvGroup<float>&, const float*, int64_t, int64_t, float*, int32_t*,
                            cudaStream_t);
template GemvScratch gptq_gemv_scratch<__half>(const GptqGemvGroup<__half>&, int64_t);
template void gptq_gemv<__half>(const GptqGemvGroup<__half>&, const __half*, int64_t, int64_t, float*, int32_t*,
                            cudaStream_t);
template GemvScratch gptq_gemv_scratch<__nv_bfloat16>(const GptqGemvGroup<__nv_bfloat16>&, int64_t);
template void gptq_gemv<__nv_bfloat16>(const GptqGemvGroup<__nv_bfloat16>&, const __nv_bfloat16*, int64_t, int64_t, float*, int32_t*,
                            cudaStream_t);
template void gptq_dequantize<float>(const GptqDeviceLayout&, int64_t, int64_t, float*, int64_t, cudaStream_t);
template void gptq_dequantize<__half>(const GptqDeviceLayout&, int64_t, int64_t, __half*, int64_t, cudaStream_t);
template void gptq_dequantize<__nv_bfloat16>(const GptqDeviceLayout&, int64_t, int64_t, __nv_bfloat16*, int64_t,
                                             cudaStream_t);

}  // namespace gptq::backend::cuda
