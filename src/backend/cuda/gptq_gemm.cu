// GPTQ GEMV (M <= 8) and dequantization, one template per bit width.
//
// GEMV work split: a block of 8 warps owns 128 output columns (each lane 4 adjacent
// columns, so one 16-byte load brings 4 columns x 32/bits codes) and a range of K; the
// warps stride over the range's code blocks; the block's K range of x, gathered through
// perm, sits in shared memory in fp32. Per code block: the group's 4 scales and zeros,
// t = Σ x·(q − z) in fp32, then acc += scale · t. Warps reduce in shared memory; each
// K split writes fp32 partials [split, M, N] and a second kernel sums them in split
// order (deterministic), adds the bias and rounds to T.
#include <algorithm>

#include "backend/cuda/gptq_gemm.cuh"

namespace gptq::backend::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kCols = 128;         // columns per block: 32 lanes x 4
constexpr int kStageFloats = 2048; // shared fp32 x values per block (8 KiB)

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

template <int Bits, int MT, class T>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(GptqDeviceLayout w, const T* x, int64_t ldx, int M, int kb_per, float* partial) {
  constexpr int V = block_values(Bits), BW = block_words(Bits);
  __shared__ float xs[kStageFloats];
  __shared__ float red[kWarps][MT][kCols];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t nkb = w.K / V;
  const int64_t kb0 = int64_t(blockIdx.y) * kb_per, kb1 = min(nkb, kb0 + kb_per);
  const int64_t k0 = kb0 * V, kcount = (kb1 - kb0) * V;
  for (int64_t j = threadIdx.x; j < kcount * MT; j += blockDim.x) {
    const int m = int(j / kcount);
    const int64_t kk = k0 + j % kcount;
    const int64_t col = w.perm != nullptr ? w.perm[kk] : kk;
    xs[j] = m < M ? to_f32(x[m * ldx + col]) : 0.0f;
  }
  __syncthreads();

  const int64_t c4 = int64_t(blockIdx.x) * kCols + lane * 4;
  float acc[MT][4];
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[m][c] = 0.0f;
  }
  if (c4 < w.Np) {
#pragma unroll 2
    for (int64_t kb = kb0 + warp; kb < kb1; kb += kWarps) {
      uint32_t words[4][BW];
#pragma unroll
      for (int i = 0; i < BW; ++i) {
        const uint4 q = __ldg(reinterpret_cast<const uint4*>(w.qweight + (kb * BW + i) * w.Np + c4));
        words[0][i] = q.x, words[1][i] = q.y, words[2][i] = q.z, words[3][i] = q.w;
      }
      const int64_t g = __ldg(w.block_group + kb);
      const uint2 sraw = __ldg(reinterpret_cast<const uint2*>(w.scales + g * w.Np + c4));
      const __half* sh = reinterpret_cast<const __half*>(&sraw);
      const uchar4 z = *reinterpret_cast<const uchar4*>(w.zeros + g * w.Np + c4);
      const float zf[4] = {float(z.x), float(z.y), float(z.z), float(z.w)};
      const float* xb = xs + (kb - kb0) * V;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float t[MT];
#pragma unroll
        for (int m = 0; m < MT; ++m) t[m] = 0.0f;
        CodeLoop<Bits, 0, V>::run(words[c], [&](int i, uint32_t q) {
          const float wq = float(q) - zf[c];
#pragma unroll
          for (int m = 0; m < MT; ++m) t[m] += xb[m * kcount + i] * wq;
        });
        const float s = __half2float(sh[c]);
#pragma unroll
        for (int m = 0; m < MT; ++m) acc[m][c] += s * t[m];
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int c = 0; c < 4; ++c) red[warp][m][lane * 4 + c] = acc[m][c];
  }
  __syncthreads();
  for (int j = threadIdx.x; j < MT * kCols; j += blockDim.x) {
    const int m = j / kCols, col = j % kCols;
    const int64_t n = int64_t(blockIdx.x) * kCols + col;
    if (m >= M || n >= w.N) continue;
    float sum = 0.0f;
    for (int wi = 0; wi < kWarps; ++wi) sum += red[wi][m][col];
    partial[(int64_t(blockIdx.y) * M + m) * w.N + n] = sum;
  }
}

template <class T>
__global__ void reduce_kernel(const float* partial, int splits, const float* bias, T* y, int64_t ldy, int M,
                              int64_t N) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(M) * N) return;
  const int64_t m = idx / N, n = idx % N;
  float s = bias != nullptr ? bias[n] : 0.0f;
  for (int i = 0; i < splits; ++i) s += partial[(int64_t(i) * M + m) * N + n];
  y[m * ldy + n] = from_f32<T>(s);
}

// One thread per (code block, column): V weights of column n, written at their
// original input columns.
template <int Bits, class T>
__global__ void dequantize_kernel(GptqDeviceLayout w, int64_t n0, int64_t count, T* out) {
  constexpr int V = block_values(Bits), BW = block_words(Bits);
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nkb = w.K / V;
  if (idx >= nkb * count) return;
  const int64_t kb = idx / count, n = n0 + idx % count;
  uint32_t words[BW];
#pragma unroll
  for (int i = 0; i < BW; ++i) words[i] = uint32_t(__ldg(w.qweight + (kb * BW + i) * w.Np + n));
  const int64_t g = w.block_group[kb];
  const float s = __half2float(w.scales[g * w.Np + n]), z = float(w.zeros[g * w.Np + n]);
  T* row = out + (n - n0) * w.K;
  CodeLoop<Bits, 0, V>::run(words, [&](int i, uint32_t q) {
    const int64_t k = kb * V + i;
    row[w.perm != nullptr ? w.perm[k] : k] = from_f32<T>(s * (float(q) - z));
  });
}

struct Split {
  int splits;
  int kb_per;
};

Split split_for(const GptqDeviceLayout& w, int mt) {
  const int v = w.bits == 3 ? 32 : 32 / w.bits;
  const int64_t nkb = w.K / v;
  const int64_t kb_max = std::max<int64_t>(1, kStageFloats / mt / v);
  const int64_t blocks_x = (w.Np + kCols - 1) / kCols;
  // Aim for about 2 blocks per SM of an H100/H200 (132 SMs), each warp >= 2 code blocks.
  const int64_t want = std::max<int64_t>(1, (264 + blocks_x - 1) / blocks_x);
  int64_t splits = std::max<int64_t>((nkb + kb_max - 1) / kb_max, std::min(want, std::max<int64_t>(1, nkb / (2 * kWarps))));
  const int64_t kb_per = (nkb + splits - 1) / splits;
  splits = (nkb + kb_per - 1) / kb_per;
  return {int(splits), int(kb_per)};
}

int rows_tile(int64_t M) { return M == 1 ? 1 : kGemvMaxRows; }

template <int Bits, class T>
void gemv_bits(const GptqDeviceLayout& w, const T* x, int64_t ldx, T* y, int64_t ldy, int64_t M, float* ws,
               cudaStream_t s) {
  const int mt = rows_tile(M);
  const Split sp = split_for(w, mt);
  const dim3 grid(ceil_div(w.Np, kCols), unsigned(sp.splits));
  if (mt == 1) {
    gemv_kernel<Bits, 1, T><<<grid, kWarps * 32, 0, s>>>(w, x, ldx, int(M), sp.kb_per, ws);
  } else {
    gemv_kernel<Bits, kGemvMaxRows, T><<<grid, kWarps * 32, 0, s>>>(w, x, ldx, int(M), sp.kb_per, ws);
  }
  CUDA_LAUNCH_CHECK();
  reduce_kernel<T><<<ceil_div(M * w.N, 256), 256, 0, s>>>(ws, sp.splits, w.bias, y, ldy, int(M), w.N);
  CUDA_LAUNCH_CHECK();
}

}  // namespace

int64_t gptq_gemv_workspace_floats(const GptqDeviceLayout& w, int64_t M) {
  return int64_t(split_for(w, rows_tile(M)).splits) * M * w.N;
}

template <class T>
void gptq_gemv(const GptqDeviceLayout& w, const T* x, int64_t ldx, T* y, int64_t ldy, int64_t M, float* workspace,
               cudaStream_t s) {
  GPTQ_CHECK(M >= 1 && M <= kGemvMaxRows, "gptq_gemv: M out of range");
  switch (w.bits) {
    case 2: gemv_bits<2, T>(w, x, ldx, y, ldy, M, workspace, s); return;
    case 3: gemv_bits<3, T>(w, x, ldx, y, ldy, M, workspace, s); return;
    case 4: gemv_bits<4, T>(w, x, ldx, y, ldy, M, workspace, s); return;
    case 8: gemv_bits<8, T>(w, x, ldx, y, ldy, M, workspace, s); return;
    default: GPTQ_CHECK(false, "gptq_gemv: unsupported bits");
  }
}

template <class T>
void gptq_dequantize(const GptqDeviceLayout& w, int64_t n0, int64_t count, T* out, cudaStream_t s) {
  const int v = w.bits == 3 ? 32 : 32 / w.bits;
  const unsigned grid = ceil_div((w.K / v) * count, 256);
  switch (w.bits) {
    case 2: dequantize_kernel<2, T><<<grid, 256, 0, s>>>(w, n0, count, out); break;
    case 3: dequantize_kernel<3, T><<<grid, 256, 0, s>>>(w, n0, count, out); break;
    case 4: dequantize_kernel<4, T><<<grid, 256, 0, s>>>(w, n0, count, out); break;
    case 8: dequantize_kernel<8, T><<<grid, 256, 0, s>>>(w, n0, count, out); break;
    default: GPTQ_CHECK(false, "gptq_dequantize: unsupported bits");
  }
  CUDA_LAUNCH_CHECK();
}

template void gptq_gemv<float>(const GptqDeviceLayout&, const float*, int64_t, float*, int64_t, int64_t, float*,
                               cudaStream_t);
template void gptq_gemv<__half>(const GptqDeviceLayout&, const __half*, int64_t, __half*, int64_t, int64_t, float*,
                                cudaStream_t);
template void gptq_gemv<__nv_bfloat16>(const GptqDeviceLayout&, const __nv_bfloat16*, int64_t, __nv_bfloat16*,
                                       int64_t, int64_t, float*, cudaStream_t);
template void gptq_dequantize<float>(const GptqDeviceLayout&, int64_t, int64_t, float*, cudaStream_t);
template void gptq_dequantize<__half>(const GptqDeviceLayout&, int64_t, int64_t, __half*, cudaStream_t);
template void gptq_dequantize<__nv_bfloat16>(const GptqDeviceLayout&, int64_t, int64_t, __nv_bfloat16*,
                                             cudaStream_t);

}  // namespace gptq::backend::cuda
