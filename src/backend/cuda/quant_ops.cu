// The CUDA QuantOps: GPTQ's arithmetic on the device, on the backend's stream.
//
// Hessian: H [K, K] fp32, H ← β H + α XᵀX per observed chunk with the activations as they
// are (f16/bf16/f32) and fp32 accumulation: one cublasGemmEx per block pair of its upper
// block triangle (hessian_blocks), the lower triangle mirrored in when H is read.
// Products of f16/bf16 values are exact in fp32, so the error is the fp32 summation over
// the chunk's rows (≲ rows · 2⁻²⁴ relative to Σ|x_i x_j|, ~√rows · 2⁻²⁴ typically) plus
// one rounding per chunk of the running mean. Damping adds λ = 0.01–0.05 · mean(diag H)
// to every diagonal entry, far above that perturbation, so fp32 H moves the factor by
// ~1e-6 of λ. fp64 H would cost 2x the memory (K = 14336: 1.6 GiB) and, on Hopper,
// runs the GEMM on fp64 units at ~1/15 the f16 tensor-core rate: the Hessians would
// dominate the layer time (8B shape, 128 × 2048 tokens: 54 TFLOP per down_proj H).
//
// Factor: the CPU's route (backend/cpu/quant_ops.cpp) on cuSOLVER: the reversed,
// permuted, damped H (fp64 by default, from the fp32 H) → Xpotrf (upper) → Xtrtri →
// U read backwards, stored fp32. fp64 by default because the factor is where GPTQ is
// numerically fragile (ill-conditioned H, the damping retries), it keeps the GPU's U
// within fp32 rounding of the CPU's, and it is cheap: 2K³/3 flops, K = 14336 is 2 TFLOP,
// ~30–60 ms on an H200's fp64 tensor cores, once per distinct input per layer. It costs
// a K² fp64 work matrix (K = 14336: 1.6 GiB) during the factorisation;
// FactorPrecision::kF32 halves that.
//
// Sweep: blocks of ≤ 128 columns, each one launch of sweep_block (one warp per row, the
// block's U triangle in shared memory, the whole column loop in registers: quantizer,
// dynamic group parameters with the MSE search, codes, errors, in-block OBS updates),
// then the lazy update Wp[:, i2:] −= E1 · U[i1:i2, i2:] as one cublasSgemm (fp32, no
// TF32 unless the handle allows it: the backend leaves its math mode default, which
// keeps fp32 GEMMs in fp32). Codes (1 byte each), scales and zeros stay on the device
// (the SweepResult); only the per-row losses come back.
//
// Pack: the checkpoint tensors made on the device from the sweep's result, bit for bit
// what format/packing.h's pack makes of the same values (the bit layout of
// format/gptq_format.h, written by the same set_code), so only packed bytes cross to
// the host: ≈ bits/8 bytes per weight instead of one byte per code plus the host's
// packing. They are carved from the sweep's working weights Wp (4 bytes per weight,
// dead once the sweep ends), so packing needs no device memory of its own.
//
// The quantizer below mirrors format/quantizer.{h,cpp} operation for operation (IEEE
// division, round-half-even, products and differences rounded separately as the CPU
// build does with FMA contraction off), so GPU and CPU agree except where the fp32
// GEMM's summation order flips a rounding tie.
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "backend/cuda/nccl_comm.h"
#include "backend/cuda/quant_ops.cuh"
#include "core/error.h"
#include "format/fragment_layout.h"

namespace gptq::backend::cuda {
namespace {

// As CUDA_CHECK (common.cuh), for cuSOLVER's status codes.
#define CUSOLVER_CHECK(stmt)                                                          \
  do {                                                                                \
    const cusolverStatus_t st_ = (stmt);                                              \
    if (st_ != CUSOLVER_STATUS_SUCCESS) {                                             \
      throw_cuda(#stmt, __FILE__, __LINE__, "cusolver status " + std::to_string(int(st_))); \
    }                                                                                 \
  } while (0)

constexpr int kMaxBlock = 128;             // sweep columns per launch (GptqOptions::block_size ≤ this)
constexpr int kSlots = kMaxBlock / 32;     // block columns each lane of a row's warp holds
constexpr int kSweepWarps = 8;             // rows per sweep CTA
constexpr float kMinSubnormal = 5.9604645e-8f;  // 2^-24

// ---- the quantizer, device twin of format/quantizer.{h,cpp} -------------------------

struct DeviceQuantizer {
  int32_t maxq = 15;
  bool sym = true;
  bool mse = false;
  int steps = 0;      // int(maxshrink · grid)
  int grid = 100;
  double norm = 2.4;
  int32_t min_zero = 0;
};

struct Params {
  float scale;
  int32_t zero;
};

__device__ __forceinline__ float fp16_scale(float s) {
  if (!(s < 65504.0f)) return 65504.0f;
  const float h = __half2float(__float2half_rn(s));
  return h > 0.0f ? h : kMinSubnormal;
}

__device__ __forceinline__ Params range_params(float xmin, float xmax, const DeviceQuantizer& q) {
  Params p;
  p.scale = fp16_scale(__fdiv_rn(__fsub_rn(xmax, xmin), float(q.maxq)));
  if (q.sym) {
    p.zero = (q.maxq + 1) / 2;
    return p;
  }
  const float z = rintf(__fdiv_rn(-xmin, p.scale));
  p.zero = int32_t(fminf(fmaxf(z, 0.0f), float(q.maxq)));
  if (p.zero < q.min_zero) {
    p.zero = q.min_zero;
    p.scale = fp16_scale(fmaxf(__fdiv_rn(xmax, float(q.maxq - q.min_zero)), __fdiv_rn(-xmin, float(q.min_zero))));
  }
  return p;
}

__device__ __forceinline__ int32_t quantize(float w, Params p, int32_t maxq) {
  const float c = __fadd_rn(rintf(__fdiv_rn(w, p.scale)), float(p.zero));
  return int32_t(fminf(fmaxf(c, 0.0f), float(maxq)));
}

__device__ __forceinline__ float dequantize(int32_t code, Params p) { return __fmul_rn(p.scale, float(code - p.zero)); }

// Butterfly reductions: every lane ends with the same bits, so every lane takes the
// same branch on the result.
__device__ __forceinline__ float warp_min(float v) {
  for (int m = 16; m > 0; m >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, m));
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

// find_row_params over x(0) … x(n − 1), by one warp; every lane returns the result.
template <class Load>
__device__ Params warp_row_params(Load x, int64_t n, const DeviceQuantizer& q) {
  const int lane = int(threadIdx.x & 31);
  float xmin = 0.0f, xmax = 0.0f;
  for (int64_t k = lane; k < n; k += 32) {
    const float v = x(k);
    xmin = fminf(xmin, v);
    xmax = fmaxf(xmax, v);
  }
  xmin = warp_min(xmin);
  xmax = warp_max(xmax);
  if (q.sym) {
    xmax = fmaxf(-xmin, xmax);
    xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  Params best = range_params(xmin, xmax, q);
  if (q.mse) {
    double best_err = INFINITY;
    for (int i = 0; i < q.steps; ++i) {
      const float shrink = float(1.0 - double(i) / double(q.grid));
      const Params cand = range_params(__fmul_rn(shrink, xmin), __fmul_rn(shrink, xmax), q);
      double err = 0.0;
      for (int64_t k = lane; k < n; k += 32) {
        const float v = x(k);
        const float e = __fsub_rn(dequantize(quantize(v, cand, q.maxq), cand), v);
        err += pow(double(fabsf(e)), q.norm);
      }
      err = warp_sum(err);
      if (err < best_err) {
        best_err = err;
        best = cand;
      }
    }
  }
  return best;
}

// ---- kernels --------------------------------------------------------------------------
// Launched as the backend's are (common.cuh launch(), programmatic dependent launch), so
// each begins with pdl_begin(): nothing is read before the previous work has finished.

// One warp per (row n, group g): kPerRow (G = 1, gs = K, W as it is) or kStatic (dead
// columns read as 0). scales/zeros: [G, N].
__global__ void group_params_kernel(const float* W, const char* dead, int64_t N, int64_t K, int64_t G, int64_t gs,
                                    bool mask_dead, DeviceQuantizer q, float* scales, int32_t* zeros) {
  pdl_begin();
  const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (w >= N * G) return;
  const int64_t n = w / G, g = w % G, off = g * gs, width = K - off < gs ? K - off : gs;
  const float* row = W + n * K + off;
  const Params p = warp_row_params([&](int64_t t) { return mask_dead && dead[off + t] ? 0.0f : row[t]; }, width, q);
  if ((threadIdx.x & 31) == 0) {
    scales[g * N + n] = p.scale;
    zeros[g * N + n] = p.zero;
  }
}

// Launch shape of the elementwise [rows, cols] kernels below: x over columns, y over
// rows (striding past the grid's 65535 limit on y: lm_head has N = vocab rows).
dim3 matrix_grid(int64_t rows, int64_t cols) {
  return dim3(ceil_div(cols, 256), unsigned(std::min<int64_t>(rows, 65535)));
}

// Wp[n, j] = W[n, perm[j]], 0 at dead columns.
__global__ void gather_kernel(const float* W, const int64_t* perm, const char* dead, int64_t N, int64_t K, float* Wp) {
  pdl_begin();
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= K) return;
  const int64_t c = perm[j];
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) Wp[n * K + j] = dead[c] ? 0.0f : W[n * K + c];
}

struct SweepArgs {
  const float* U;  // [K, K] upper factor, visiting order
  float* Wp;       // [N, K] working weights, visiting order
  uint8_t* q;      // [N, K] codes, original order
  float* E1;       // [N, cnt] scaled errors of this block
  float* scales;   // [G, N]
  int32_t* zeros;  // [G, N]
  double* row_loss;  // [N]
  const int64_t* perm;
  const int32_t* group_of;
  int64_t N, K, i1, cnt, gs;
  bool dynamic;
  DeviceQuantizer quant;
};

// Columns [i1, i1 + cnt) for kSweepWarps rows: the CPU sweep's inner loop, one warp per
// row, lane l holding the block columns l, l + 32, l + 64, l + 96 in registers.
__global__ void __launch_bounds__(kSweepWarps * 32) sweep_block(SweepArgs a) {
  extern __shared__ float Us[];  // [cnt, cnt]: U[i1 + r, i1 + c]
  pdl_begin();
  const int64_t cnt = a.cnt;
  for (int64_t idx = threadIdx.x; idx < cnt * cnt; idx += blockDim.x) {
    const int64_t r = idx / cnt, c = idx % cnt;
    Us[idx] = c >= r ? a.U[(a.i1 + r) * a.K + a.i1 + c] : 0.0f;
  }
  __syncthreads();
  const int lane = int(threadIdx.x & 31);
  const int64_t n = int64_t(blockIdx.x) * kSweepWarps + threadIdx.x / 32;
  if (n >= a.N) return;
  const int32_t maxq = a.quant.maxq;
  const float* wrow = a.Wp + n * a.K;
  float w[kSlots];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int64_t t = lane + 32 * s;
    w[s] = t < cnt ? wrow[a.i1 + t] : 0.0f;
  }
  Params p{1.0f, 0};
  if (a.dynamic && a.i1 % a.gs != 0) {  // a group begun in an earlier block
    const int64_t g = a.group_of[a.i1];
    p = {a.scales[g * a.N + n], a.zeros[g * a.N + n]};
  }
  double loss = 0.0;
  for (int64_t i = 0; i < cnt; ++i) {
    const int64_t j = a.i1 + i;
    const int64_t g = a.group_of[j];
    if (a.dynamic) {
      if (j % a.gs == 0) {
        // From Wp, i.e. the weights as of the start of this block, as on the CPU.
        const float* src = wrow + j;
        p = warp_row_params([&](int64_t t) { return src[t]; }, a.K - j < a.gs ? a.K - j : a.gs, a.quant);
        if (lane == 0) {
          a.scales[g * a.N + n] = p.scale;
          a.zeros[g * a.N + n] = p.zero;
        }
      }
    } else {
      p = {a.scales[g * a.N + n], a.zeros[g * a.N + n]};
    }
    const int owner = int(i & 31), slot = int(i >> 5);
    float mine = w[0];
#pragma unroll
    for (int s = 1; s < kSlots; ++s) {
      if (slot == s) mine = w[s];
    }
    const float wi = __shfl_sync(0xffffffffu, mine, owner);
    const int32_t code = quantize(wi, p, maxq);
    const float diff = __fsub_rn(wi, dequantize(code, p));
    const float d = Us[i * cnt + i];
    const float e = __fdiv_rn(diff, d);
    if (lane == owner) {
      a.q[n * a.K + a.perm[j]] = uint8_t(code);
      a.E1[n * cnt + i] = e;
      loss += double(diff) * double(diff) / (2.0 * double(d) * double(d));
    }
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int64_t t = lane + 32 * s;
      if (t > i && t < cnt) w[s] = __fsub_rn(w[s], __fmul_rn(e, Us[i * cnt + t]));
    }
  }
  loss = warp_sum(loss);
  if (lane == 0) a.row_loss[n] += loss;  // this warp owns row n: deterministic
}

// x[i] *= w for i < n: a rank's share of a pooled Hessian before the all-reduce sums it.
// Grid-stride, one float per thread per step.
__global__ void scale_kernel(float* x, int64_t n, float w) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    x[i] *= w;
  }
}

// A[i, j] (row-major, j ≤ i) = H_p[K−1−i, K−1−j] with H_p = P H_d Pᵀ + λI: the
// column-major upper triangle LAPACK-style routines read (see the CPU's layout note).
template <class T>
__global__ void reversed_damped_kernel(const float* H, const int64_t* perm, const char* dead, double lambda, int64_t K,
                                       T* A) {
  pdl_begin();
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= K) return;
  const int64_t cj = perm[K - 1 - j];
  for (int64_t i = blockIdx.y; i < K; i += gridDim.y) {
    const int64_t ci = perm[K - 1 - i];
    A[i * K + j] = j > i    ? T(0)
                   : i == j ? T((dead[ci] ? 1.0 : double(H[ci * K + ci])) + lambda)
                            : T(H[ci * K + cj]);
  }
}

// U[i, j] = A[(K−1−i)·K + (K−1−j)] for j ≥ i, else 0; *bad set when a diagonal entry
// is not finite.
template <class T>
__global__ void factor_from_inverse_kernel(const T* A, int64_t K, float* U, int* bad) {
  pdl_begin();
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= K) return;
  for (int64_t i = blockIdx.y; i < K; i += gridDim.y) {
    const float v = j >= i ? float(A[(K - 1 - i) * K + (K - 1 - j)]) : 0.0f;
    U[i * K + j] = v;
    if (i == j && !isfinite(v)) atomicOr(bad, 1);
  }
}

template <class T>
__global__ void non_finite_kernel(const T* x, int64_t n, int* bad) {
  pdl_begin();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (!isfinite(float(x[i]))) {
      atomicOr(bad, 1);
      return;
    }
  }
}

// out [N, K] fp32 = w [N, K] (row stride ld) widened: exact for f16/bf16/f32.
template <class T>
__global__ void widen_weights_kernel(const T* w, int64_t ld, int64_t N, int64_t K, float* out) {
  pdl_begin();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * K; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = float(w[(i / K) * ld + i % K]);
  }
}

// ---- packing: device twin of format/packing.cpp's pack --------------------------------

// Words [0, block_words(bits)) of the stream of codes c[0 .. count), count ≤
// block_values(bits), padded with zero bits: laid out by set_code (gptq_format.h).
__device__ __forceinline__ void pack_block(const uint8_t* c, int64_t count, int bits, int32_t (&words)[3]) {
  words[0] = words[1] = words[2] = 0;
  for (int64_t i = 0; i < count; ++i) quant::set_code(words, 1, i, bits, c[i]);
}

// qweight [K*bits/32, N]: thread (column n, block b of V codes along K) packs
// q[n, bV .. (b+1)V) into rows [bW, (b+1)W) of column n (V, W: block_values/words).
// Threads along x are adjacent columns: the word stores coalesce.
__global__ void pack_qweight_kernel(const uint8_t* q, int64_t N, int64_t K, int bits, int32_t* qweight) {
  pdl_begin();
  const int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= N) return;
  const int V = quant::block_values(bits), W = quant::block_words(bits);
  for (int64_t b = blockIdx.y; b < K / V; b += gridDim.y) {
    int32_t words[3];
    pack_block(q + n * K + b * V, V, bits, words);
    for (int t = 0; t < W; ++t) qweight[(b * W + t) * N + n] = words[t];
  }
}

// qzeros [G, cols]: thread (block b of V columns, group g) packs the stored zeros of
// columns [bV, min(N, (b+1)V)), zero bits past N, and writes the block's words that
// lie inside the row's cols = ceil(N*bits/32). Stored as format/gptq_format.h's
// stored_zero: v1 (zero − 1) mod 2^bits, v2 the zero.
__global__ void pack_qzeros_kernel(const int32_t* zeros, int64_t N, int64_t G, int64_t cols, int bits, bool v1,
                                   int32_t* qzeros) {
  pdl_begin();
  const int V = quant::block_values(bits), W = quant::block_words(bits);
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b * V >= N) return;
  const quant::Format f = v1 ? quant::Format::kV1 : quant::Format::kV2;
  for (int64_t g = blockIdx.y; g < G; g += gridDim.y) {
    uint8_t stored[32];  // V ≤ 32
    const int64_t count = N - b * V < V ? N - b * V : V;
    for (int64_t i = 0; i < count; ++i) stored[i] = uint8_t(quant::stored_zero(zeros[g * N + b * V + i], bits, f));
    int32_t words[3];
    pack_block(stored, count, bits, words);
    for (int t = 0; t < W && b * W + t < cols; ++t) qzeros[g * cols + b * W + t] = words[t];
  }
}

// fp16 bit patterns of the fp32 scales, round to nearest even as f32_to_f16 (core/dtype.h);
// the sweep's scales are fp16-exact and finite (fp16_scale), so both give the same bits.
__global__ void pack_scales_kernel(const float* scales, int64_t n, uint16_t* out) {
  pdl_begin();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = __half_as_ushort(__float2half_rn(scales[i]));
  }
}

// ---- swap-in, GEMV layout: device twin of gptq_repack.cpp's repack_for_cuda ----------
// (the identity order with N a multiple of 4, where its qweight is the checkpoint's and
// only the zero points change form)

// zeros [G, N] int32 → out [G, N] one byte each, as repack_for_cuda reads them back from
// v2 qzeros: the stored code, masked to `bits`.
__global__ void zero_bytes_kernel(const int32_t* zeros, int64_t n, int bits, uint8_t* out) {
  pdl_begin();
  const int32_t mask = (1 << bits) - 1;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = uint8_t(int32_t(quant::stored_zero(zeros[i], bits, quant::Format::kV2)) & mask);
  }
}

// ---- swap-in: device twin of format/fragment_layout.cpp's make_fragment_layout --------

// words [Nt][Kp/64][32][bits]: thread (row tile nt, chunk c, lane) writes its lane's run
// of `bits` words: the 32 codes (tile j, register p, half h) of fragment_slot's
// inverse, row nt·16 + g + 8(p & 1), sorted input c·64 + 16j + 2t + 8(p >> 1) + h
// (g = lane / 4, t = lane % 4), read from the codes at column perm[input] (or input).
// Padding (rows ≥ N, inputs ≥ K) is code 0.
__global__ void fragment_words_kernel(const uint8_t* q, const int32_t* perm, int64_t N, int64_t K, int64_t Kp,
                                      int64_t Nt, int bits, uint32_t* words) {
  pdl_begin();
  const int64_t chunks = Kp / quant::kFragmentChunk;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= Nt * chunks * quant::kFragmentLanes) return;
  const int lane = int(idx % quant::kFragmentLanes);
  const int64_t c = (idx / quant::kFragmentLanes) % chunks, nt = idx / (quant::kFragmentLanes * chunks);
  uint32_t w[8] = {};  // bits ≤ 8
  const int g = lane / 4, t = lane % 4;
  for (int j = 0; j < 4; ++j) {
    for (int p = 0; p < 4; ++p) {
      for (int h = 0; h < 2; ++h) {
        const int64_t n = nt * quant::kFragmentRows + g + 8 * (p & 1);
        const int64_t k = c * quant::kFragmentChunk + quant::kFragmentTile * j + 2 * t + 8 * (p >> 1) + h;
        if (n >= N || k >= K) continue;
        const int64_t col = perm != nullptr ? perm[k] : k;
        quant::set_fragment_code(w, bits, {.lane = lane, .j = j, .p = p, .h = h}, q[n * K + col]);
      }
    }
  }
  for (int i = 0; i < bits; ++i) words[idx * bits + i] = w[i];
}

// scales fp16 and zeros uint8, [G][rows] with rows = Nt·16: the sweep's (fp16-exact)
// scales and (v2) zeros, 0 in the padding rows.
__global__ void fragment_params_kernel(const float* scales, const int32_t* zeros, int64_t N, int64_t G, int64_t rows,
                                       __half* out_scales, uint8_t* out_zeros) {
  pdl_begin();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < G * rows; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = i / rows, n = i % rows;
    out_scales[i] = __float2half_rn(n < N ? scales[g * N + n] : 0.0f);
    out_zeros[i] = n < N ? uint8_t(zeros[g * N + n]) : uint8_t(0);
  }
}

// ---- the Hessian's two triangles -------------------------------------------------------

// Block b of nb along K, [bound(b), bound(b + 1)): multiples of 64 (16-byte aligned
// operand offsets for the tensor cores), the last block taking the rest.
__host__ __device__ inline int64_t hessian_bound(int64_t K, int nb, int b) {
  return b >= nb ? K : (K * b / nb) / 64 * 64;
}
__device__ inline int hessian_block(int64_t K, int nb, int64_t i) {
  int b = 0;
  while (b + 1 < nb && i >= hessian_bound(K, nb, b + 1)) ++b;
  return b;
}

// H: [K, K] row-major, valid where block(row) ≥ block(col) (what the block-triangular
// accumulation computes, see CudaQuantOps::accumulate); fills the rest from its mirror,
// H[i, j] = H[j, i] for block(i) < block(j). 32×32 tiles through shared memory, so both
// the reads and the writes coalesce; a tile is copied when its rows' block lies below its
// columns' block (tiles straddling a block bound check each element).
__global__ void mirror_hessian_kernel(float* H, int64_t K, int nb) {
  pdl_begin();
  __shared__ float tile[32][33];
  const int64_t i0 = int64_t(blockIdx.y) * 32, j0 = int64_t(blockIdx.x) * 32;  // destination tile rows i, cols j
  if (i0 >= K || j0 >= K) return;
  // The tile holds an element to fill only if its first row's block lies below its last
  // column's block.
  if (hessian_block(K, nb, i0) >= hessian_block(K, nb, j0 + 31 < K ? j0 + 31 : K - 1)) return;
  // Read the source tile H[j0.., i0..] (rows j, cols i), coalesced along i.
  for (int r = threadIdx.y; r < 32; r += blockDim.y) {
    const int64_t j = j0 + r, i = i0 + threadIdx.x;
    tile[r][threadIdx.x] = j < K && i < K ? H[j * K + i] : 0.0f;
  }
  __syncthreads();
  for (int r = threadIdx.y; r < 32; r += blockDim.y) {
    const int64_t i = i0 + r, j = j0 + threadIdx.x;
    if (i < K && j < K && hessian_block(K, nb, i) < hessian_block(K, nb, j)) H[i * K + j] = tile[threadIdx.x][r];
  }
}

// ---- the QuantOps ---------------------------------------------------------------------

// Accumulated by block triangles (see CudaQuantOps::accumulate): `blocks` blocks along K,
// and whether the uncomputed triangle has been filled in since the last accumulation.
class CudaHessian final : public Hessian {
 public:
  CudaHessian(int64_t k, std::shared_ptr<void> mem, int blocks) : Hessian(k), mem(std::move(mem)), blocks(blocks) {}
  float* data() const { return static_cast<float*>(mem.get()); }
  void set_samples(int64_t n) { samples_ = n; }
  std::shared_ptr<void> mem;  // [K, K] fp32
  int blocks = 1;
  bool mirrored = true;
};

// Blocks along K for the triangular accumulation: with nb blocks the product computes
// nb(nb + 1)/2 of nb² block pairs (nb = 4: 62.5% of the flops). Below K = 2048 the
// smaller GEMMs would lose more in efficiency than the skipped blocks save.
int hessian_blocks(int64_t K) { return K >= 4096 ? 4 : K >= 2048 ? 2 : 1; }

struct CudaFactor final : InverseFactor {
  std::shared_ptr<void> U;  // [K, K] fp32
};

// The device memory of a swapped-in layer, counted as it is allocated; uploads are ordered
// on the context's stream (the caller syncs before its host buffers go).
struct LayerMemory {
  const DeviceContext& ctx;
  std::vector<std::shared_ptr<void>> blocks;
  uint64_t total = 0;

  void* alloc(uint64_t bytes) {
    blocks.push_back(ctx.alloc(bytes, "a gptq tensor"));
    total += bytes;
    return blocks.back().get();
  }
  void* upload(const void* host, uint64_t bytes) {
    void* m = alloc(bytes);
    CUDA_CHECK(cudaMemcpyAsync(m, host, bytes, cudaMemcpyHostToDevice, ctx.stream));
    return m;
  }
  // bias: [N] or empty (null then).
  const float* bias(const std::vector<float>& b, int64_t N) {
    if (b.empty()) return nullptr;
    GPTQ_CHECK(int64_t(b.size()) == N, "cuda swap_in: bias has " + std::to_string(b.size()) +
                                           " entries, expected N=" + std::to_string(N));
    return static_cast<const float*>(upload(b.data(), b.size() * 4));
  }
};

// Pointers into the QuantOps' scratch, valid while `generation` is the scratch's.
struct CudaSweepResult final : SweepResult {
  CudaSweepResult(double loss, quant::QuantizedLinear layout) : SweepResult(loss), layout(std::move(layout)) {}
  quant::QuantizedLinear layout;  // shape, bits, group size, g_idx (no codes)
  uint64_t generation = 0;
  const uint8_t* codes = nullptr;   // [N, K]
  const float* scales = nullptr;    // [G, N]
  const int32_t* zeros = nullptr;   // [G, N]
  void* spare = nullptr;            // the sweep's working weights, free for the packed tensors
  uint64_t spare_bytes = 0;
};

cudaDataType_t act_type(DType t) {
  switch (t) {
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF32: return CUDA_R_32F;
    default: throw Error(ErrorKind::kInvalidArgument, "cuda accumulate: activations must be f16, bf16 or f32");
  }
}

class CudaQuantOps final : public QuantOps {
 public:
  CudaQuantOps(const DeviceContext& ctx, FactorPrecision precision) : ctx_(ctx), precision_(precision) {
    CUDA_CHECK(cudaSetDevice(ctx.device));
    CUSOLVER_CHECK(cusolverDnCreate(&solver_));
    CUSOLVER_CHECK(cusolverDnSetStream(solver_, ctx.stream));
    CUSOLVER_CHECK(cusolverDnCreateParams(&params_));
    flag_ = ctx_.alloc(sizeof(int), "a status flag");
    CUDA_CHECK(cudaFuncSetAttribute(sweep_block, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(kMaxBlock * kMaxBlock * sizeof(float))));
  }
  ~CudaQuantOps() override {
    cudaStreamSynchronize(ctx_.stream);
    cusolverDnDestroyParams(params_);
    cusolverDnDestroy(solver_);
  }

  std::unique_ptr<Hessian> hessian(int64_t K) override {
    GPTQ_CHECK(K > 0, "cuda hessian: in_features must be positive");
    auto mem = ctx_.alloc(uint64_t(K * K) * 4, "a [" + std::to_string(K) + ", " + std::to_string(K) + "] Hessian");
    CUDA_CHECK(cudaMemsetAsync(mem.get(), 0, uint64_t(K * K) * 4, ctx_.stream));
    return std::make_unique<CudaHessian>(K, std::move(mem), hessian_blocks(K));
  }

  void accumulate(Hessian& h, Tensor x) override {
    CudaHessian& c = mine(h);
    const int64_t K = c.in_features();
    GPTQ_CHECK(x.device == Device::kCuda && x.cols == K && (x.stride >= K || x.rows <= 1),
               "cuda accumulate: x must be a device tensor [rows, K]");
    if (x.rows == 0) return;
    const int64_t n_new = c.samples() + x.rows;
    const float alpha = float(2.0 / double(n_new)), beta = float(double(c.samples()) / double(n_new));
    const cudaDataType_t t = act_type(x.dtype);
    // Column-major view: x row-major [r, K] is Xᵀ [K, r]; H = Xᵀ (Xᵀ)ᵀ. H is symmetric,
    // so only the block pairs (I, J), I ≤ J, of its column-major form are computed:
    // H[I, J] = X_Iᵀ X_J, one GEMM each; the other triangle is filled in from them when
    // H is next read (complete()). Each computed entry is the same dot product as in the
    // full GEMM (only cuBLAS's choice of kernel for the smaller shape may differ).
    const int ld = int(std::max<int64_t>(x.stride, K));
    const int nb = c.blocks;
    const size_t elem = dtype_size(x.dtype);
    for (int J = 0; J < nb; ++J) {
      const int64_t j0 = hessian_bound(K, nb, J), j1 = hessian_bound(K, nb, J + 1);
      for (int I = 0; I <= J; ++I) {
        const int64_t i0 = hessian_bound(K, nb, I), i1 = hessian_bound(K, nb, I + 1);
        const auto* xi = static_cast<const std::byte*>(x.data) + size_t(i0) * elem;
        const auto* xj = static_cast<const std::byte*>(x.data) + size_t(j0) * elem;
        CUBLAS_CHECK(cublasGemmEx(ctx_.cublas, CUBLAS_OP_N, CUBLAS_OP_T, int(i1 - i0), int(j1 - j0), int(x.rows),
                                  &alpha, xi, t, ld, xj, t, ld, &beta, c.data() + i0 + j0 * K, CUDA_R_32F, int(K),
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      }
    }
    c.mirrored = nb == 1;
    c.set_samples(n_new);
  }

  void assign(Hessian& h, std::span<const double> host, int64_t samples) override {
    CudaHessian& c = mine(h);
    const int64_t K = c.in_features();
    GPTQ_CHECK(int64_t(host.size()) == K * K && samples >= 0, "cuda assign: expected K*K values");
    const std::vector<float> f(host.begin(), host.end());
    CUDA_CHECK(cudaMemcpyAsync(c.data(), f.data(), f.size() * 4, cudaMemcpyHostToDevice, ctx_.stream));
    sync();
    c.mirrored = true;
    c.set_samples(samples);
  }
  // H := Σ_r weight_r H_r by one NCCL all-reduce of the mirrored fp32 K² matrix on this
  // QuantOps' stream: NCCL's ring or tree sums in an order fixed by the world size and
  // the topology, and every rank receives the same bits. Cost: K² · 4 bytes per rank
  // over NVLink (K = 14336: 822 MB).
  bool pool(Hessian& h, double weight, int64_t rows, DeviceComm& comm) override {
#ifdef GPTQ_HAVE_NCCL
    auto* nc = dynamic_cast<NcclComm*>(&comm);
    if (nc == nullptr || nc->device() != ctx_.device) return false;
    CudaHessian& c = mine(h);
    complete(c);
    const int64_t n = c.in_features() * c.in_features();
    launch(scale_kernel, dim3(unsigned(std::min<int64_t>(ceil_div(n, 256), 4096))), dim3(256), 0, ctx_.stream,
           c.data(), n, float(weight));
    nccl_check(ncclAllReduce(c.data(), c.data(), size_t(n), ncclFloat, ncclSum, nc->get(), ctx_.stream),
               "ncclAllReduce (pooling a Hessian)");
    c.set_samples(rows);
    return true;
#else
    (void)h, (void)weight, (void)rows, (void)comm;
    return false;
#endif
  }
  std::vector<double> download(const Hessian& h) override {
    const CudaHessian& c = complete(h);
    std::vector<float> f(size_t(c.in_features() * c.in_features()));
    CUDA_CHECK(cudaMemcpyAsync(f.data(), c.data(), f.size() * 4, cudaMemcpyDeviceToHost, ctx_.stream));
    sync();
    return {f.begin(), f.end()};
  }
  std::vector<double> diagonal(const Hessian& h) override {
    const CudaHessian& c = mine(h);
    const int64_t K = c.in_features();
    std::vector<float> f(static_cast<size_t>(K));
    CUDA_CHECK(cudaMemcpy2DAsync(f.data(), 4, c.data(), size_t(K + 1) * 4, 4, size_t(K), cudaMemcpyDeviceToHost,
                                 ctx_.stream));
    sync();
    return {f.begin(), f.end()};
  }
  bool all_finite(const Hessian& h) override {
    const CudaHessian& c = mine(h);
    clear_flag();
    const int64_t n = c.in_features() * c.in_features();
    launch(non_finite_kernel<float>, unsigned(std::min<int64_t>(ceil_div(n, 256), 4096)), 256, 0, ctx_.stream, c.data(),
           n, flag());
    return read_flag() == 0;
  }

  std::unique_ptr<InverseFactor> inverse_factor(const Hessian& h, std::span<const int64_t> perm,
                                                std::span<const char> dead, double lambda) override {
    const CudaHessian& c = complete(h);
    const int64_t K = c.in_features();
    GPTQ_CHECK(int64_t(perm.size()) == K && int64_t(dead.size()) == K, "cuda inverse_factor: plan size");
    const bool f64 = precision_ == FactorPrecision::kF64;
    const uint64_t elem = f64 ? 8 : 4;
    begin(piece(perm.size_bytes()) + piece(dead.size_bytes()) + piece(uint64_t(K * K) * elem),
          "the " + std::string(f64 ? "fp64" : "fp32") + " factorisation of a [" + std::to_string(K) + ", " +
              std::to_string(K) + "] Hessian");
    const auto dperm = put(perm.data(), perm.size_bytes());
    const auto ddead = put(dead.data(), dead.size_bytes());
    const auto A = take(uint64_t(K * K) * elem);
    const dim3 grid = matrix_grid(K, K);
    const auto* hp = c.data();
    const auto* pp = static_cast<const int64_t*>(dperm);
    const auto* dp = static_cast<const char*>(ddead);
    if (f64) {
      launch(reversed_damped_kernel<double>, grid, 256, 0, ctx_.stream, hp, pp, dp, lambda, K,
             static_cast<double*>(A));
    } else {
      launch(reversed_damped_kernel<float>, grid, 256, 0, ctx_.stream, hp, pp, dp, lambda, K,
             static_cast<float*>(A));
    }
    if (!factor_upper(A, K, f64) || !invert_upper(A, K, f64)) return nullptr;  // not positive definite at this λ
    auto f = std::make_unique<CudaFactor>();
    f->U = ctx_.alloc(uint64_t(K * K) * 4, "the inverse-Hessian factor");
    auto* up = static_cast<float*>(f->U.get());
    if (f64) {
      launch(factor_from_inverse_kernel<double>, grid, 256, 0, ctx_.stream, static_cast<const double*>(A), K, up,
             flag());
    } else {
      launch(factor_from_inverse_kernel<float>, grid, 256, 0, ctx_.stream, static_cast<const float*>(A), K, up,
             flag());
    }
    if (read_flag() != 0) return nullptr;
    return f;
  }

  // The halves of a K-wide triangle at most this wide go to cuSOLVER whole; wider ones are
  // split in two (recursively). cuSOLVER's own Xpotrf and Xtrtri work in panels so narrow
  // that on the 8B shape they took ~240 ms a layer in ~10⁴ launches (K = 14336: 3800 trmm
  // calls for the inverse alone) for ~2·K³/3 flops that the fp64 tensor cores do in ~30 ms;
  // halving puts almost all of the flops into a few large cuBLAS calls.
  static constexpr int64_t kTriangleBase = 1024;

  // In place, A: [n, n] column-major at `a` with leading dimension ld (fp64, or fp32 when not
  // f64): its upper triangle becomes U with UᵀU = A (the lower one is not read). False
  // when A is not numerically positive definite. With A = [A11 A12; A12ᵀ A22]:
  // U11 = chol(A11), U12 = U11⁻ᵀ A12, U22 = chol(A22 − U12ᵀ U12).
  bool factor_upper(void* a, int64_t n, bool f64, int64_t ld = 0) {
    if (ld == 0) ld = n;
    const size_t e = f64 ? 8 : 4;
    auto at = [&](int64_t i, int64_t j) { return static_cast<std::byte*>(a) + size_t(i + j * ld) * e; };
    if (n <= kTriangleBase) {
      const cudaDataType_t t = f64 ? CUDA_R_64F : CUDA_R_32F;
      size_t dev_bytes = 0, host_bytes = 0;
      CUSOLVER_CHECK(cusolverDnXpotrf_bufferSize(solver_, params_, CUBLAS_FILL_MODE_UPPER, n, t, a, ld, t, &dev_bytes,
                                                 &host_bytes));
      void* work = solver_workspace(dev_bytes);
      std::vector<std::byte> host_work(host_bytes);
      clear_flag();
      CUSOLVER_CHECK(cusolverDnXpotrf(solver_, params_, CUBLAS_FILL_MODE_UPPER, n, t, a, ld, t, work, dev_bytes,
                                      host_work.data(), host_work.size(), flag()));
      return read_flag() == 0;
    }
    const int64_t n1 = split_point(n), n2 = n - n1;
    if (!factor_upper(a, n1, f64, ld)) return false;
    const double one = 1.0, minus_one = -1.0;
    const float onef = 1.0f, minus_onef = -1.0f;
    if (f64) {
      CUBLAS_CHECK(cublasDtrsm(ctx_.cublas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T,
                               CUBLAS_DIAG_NON_UNIT, int(n1), int(n2), &one, reinterpret_cast<const double*>(at(0, 0)),
                               int(ld), reinterpret_cast<double*>(at(0, n1)), int(ld)));
      CUBLAS_CHECK(cublasDsyrk(ctx_.cublas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T, int(n2), int(n1), &minus_one,
                               reinterpret_cast<const double*>(at(0, n1)), int(ld), &one,
                               reinterpret_cast<double*>(at(n1, n1)), int(ld)));
    } else {
      CUBLAS_CHECK(cublasStrsm(ctx_.cublas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T,
                               CUBLAS_DIAG_NON_UNIT, int(n1), int(n2), &onef, reinterpret_cast<const float*>(at(0, 0)),
                               int(ld), reinterpret_cast<float*>(at(0, n1)), int(ld)));
      CUBLAS_CHECK(cublasSsyrk(ctx_.cublas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T, int(n2), int(n1), &minus_onef,
                               reinterpret_cast<const float*>(at(0, n1)), int(ld), &onef,
                               reinterpret_cast<float*>(at(n1, n1)), int(ld)));
    }
    return factor_upper(at(n1, n1), n2, f64, ld);
  }

  // In place, as factor_upper: the upper triangle of U becomes U⁻¹ (the lower one is not
  // touched). inv [U11 U12; 0 U22] = [U11⁻¹, −U11⁻¹ U12 U22⁻¹; 0, U22⁻¹]: the diagonal
  // blocks first, then U12 by two in-place trmm (cuBLAS takes C = B for BLAS's in-place
  // form), so no workspace. False when a diagonal entry is zero.
  bool invert_upper(void* a, int64_t n, bool f64, int64_t ld = 0) {
    if (ld == 0) ld = n;
    const size_t e = f64 ? 8 : 4;
    auto at = [&](int64_t i, int64_t j) { return static_cast<std::byte*>(a) + size_t(i + j * ld) * e; };
    if (n <= kTriangleBase) {
      const cudaDataType_t t = f64 ? CUDA_R_64F : CUDA_R_32F;
      size_t dev_bytes = 0, host_bytes = 0;
      CUSOLVER_CHECK(cusolverDnXtrtri_bufferSize(solver_, CUBLAS_FILL_MODE_UPPER, CUBLAS_DIAG_NON_UNIT, n, t, a, ld,
                                                 &dev_bytes, &host_bytes));
      void* work = solver_workspace(dev_bytes);
      std::vector<std::byte> host_work(host_bytes);
      clear_flag();
      CUSOLVER_CHECK(cusolverDnXtrtri(solver_, CUBLAS_FILL_MODE_UPPER, CUBLAS_DIAG_NON_UNIT, n, t, a, ld, work,
                                      dev_bytes, host_work.data(), host_work.size(), flag()));
      return read_flag() == 0;
    }
    const int64_t n1 = split_point(n), n2 = n - n1;
    if (!invert_upper(a, n1, f64, ld) || !invert_upper(at(n1, n1), n2, f64, ld)) return false;
    const double one = 1.0, minus_one = -1.0;
    const float onef = 1.0f, minus_onef = -1.0f;
    if (f64) {
      auto* b = reinterpret_cast<double*>(at(0, n1));
      CUBLAS_CHECK(cublasDtrmm(ctx_.cublas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                               CUBLAS_DIAG_NON_UNIT, int(n1), int(n2), &one, reinterpret_cast<const double*>(at(0, 0)),
                               int(ld), b, int(ld), b, int(ld)));
      CUBLAS_CHECK(cublasDtrmm(ctx_.cublas, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                               CUBLAS_DIAG_NON_UNIT, int(n1), int(n2), &minus_one,
                               reinterpret_cast<const double*>(at(n1, n1)), int(ld), b, int(ld), b, int(ld)));
    } else {
      auto* b = reinterpret_cast<float*>(at(0, n1));
      CUBLAS_CHECK(cublasStrmm(ctx_.cublas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                               CUBLAS_DIAG_NON_UNIT, int(n1), int(n2), &onef, reinterpret_cast<const float*>(at(0, 0)),
                               int(ld), b, int(ld), b, int(ld)));
      CUBLAS_CHECK(cublasStrmm(ctx_.cublas, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                               CUBLAS_DIAG_NON_UNIT, int(n1), int(n2), &minus_onef,
                               reinterpret_cast<const float*>(at(n1, n1)), int(ld), b, int(ld), b, int(ld)));
    }
    return true;
  }

  // The first half of an n-wide split, a multiple of 256 columns (whole tensor-core tiles).
  static int64_t split_point(int64_t n) { return std::max<int64_t>(256, (n / 2) / 256 * 256); }

  // The cuSOLVER workspace, grown to `bytes` (the old one may still be in use: synced first).
  void* solver_workspace(size_t bytes) {
    if (bytes > solver_work_bytes_) {
      sync();
      solver_work_.reset();
      solver_work_ = ctx_.alloc(std::max<size_t>(bytes, 1), "the cuSOLVER workspace");
      solver_work_bytes_ = bytes;
    }
    return solver_work_.get();
  }

  bool all_finite(Tensor w) override {
    GPTQ_CHECK(w.device == Device::kCuda && (w.stride == w.cols || w.rows <= 1),
               "cuda all_finite: a contiguous device tensor");
    clear_flag();
    const int64_t n = w.rows * w.cols;
    const unsigned grid = unsigned(std::min<int64_t>(ceil_div(n, 256), 4096));
    switch (w.dtype) {
      case DType::kF16: launch(non_finite_kernel<__half>, grid, 256, 0, ctx_.stream, static_cast<const __half*>(w.data), n, flag()); break;
      case DType::kBF16:
        launch(non_finite_kernel<__nv_bfloat16>, grid, 256, 0, ctx_.stream, static_cast<const __nv_bfloat16*>(w.data), n,
               flag());
        break;
      case DType::kF32: launch(non_finite_kernel<float>, grid, 256, 0, ctx_.stream, static_cast<const float*>(w.data), n, flag()); break;
      default: GPTQ_CHECK(false, "cuda all_finite: F32, F16 or BF16");
    }
    return read_flag() == 0;
  }

  std::unique_ptr<SweepResult> sweep(const SweepWeights& W, const InverseFactor& factor, const SweepPlan& plan,
                                     const quant::QuantizedLinear& layout) override {
    const auto* cf = dynamic_cast<const CudaFactor*>(&factor);
    GPTQ_CHECK(cf != nullptr, "cuda quant ops: factor made by another backend");
    const int64_t N = layout.out_features, K = layout.in_features, G = layout.num_groups(), gs = plan.group_size;
    if (plan.block_size > kMaxBlock) {
      throw Error(ErrorKind::kUnsupported, "cuda GPTQ sweep: block_size " + std::to_string(plan.block_size) +
                                               " (at most " + std::to_string(kMaxBlock) + ")");
    }
    const quant::QuantizerConfig& qc = plan.quant;
    const DeviceQuantizer dq{.maxq = quant::max_code(qc.bits),
                             .sym = qc.sym,
                             .mse = qc.scale_search == quant::ScaleSearch::kMse,
                             .steps = int(qc.mse.maxshrink * double(qc.mse.grid)),
                             .grid = qc.mse.grid,
                             .norm = qc.mse.norm,
                             .min_zero = qc.min_zero};
    const int64_t B = std::min<int64_t>(plan.block_size, K);
    // Wp's memory takes the packed tensors once the sweep is done (pack).
    const uint64_t wp_bytes = std::max(uint64_t(N * K) * 4, packed_bytes(layout));
    begin(piece(plan.perm.size_bytes()) + piece(plan.group_of.size_bytes()) + piece(plan.dead.size_bytes()) +
              2 * piece(uint64_t(G * N) * 4) + piece(uint64_t(N) * 8) + piece(uint64_t(N * K)) +
              piece(uint64_t(N * K) * 4) + piece(wp_bytes) + piece(uint64_t(N * B) * 4),
          "the sweep of a [" + std::to_string(N) + ", " + std::to_string(K) + "] module");
    const auto dperm = put(plan.perm.data(), plan.perm.size_bytes());
    const auto dgroup = put(plan.group_of.data(), plan.group_of.size_bytes());
    const auto ddead = put(plan.dead.data(), plan.dead.size_bytes());
    const auto scales = zeroed(uint64_t(G * N) * 4);
    const auto zeros = zeroed(uint64_t(G * N) * 4);
    const auto row_loss = zeroed(uint64_t(N) * 8);
    const auto codes = zeroed(uint64_t(N * K));
    const auto Wp = take(wp_bytes);
    const float* w = nullptr;
    if (W.host != nullptr) {
      w = static_cast<const float*>(put(W.host, uint64_t(N * K) * 4));
    } else {
      // The dense layer's own weights, already on the device: widened here, no transfer.
      const Tensor& r = W.resident;
      GPTQ_CHECK(r.device == Device::kCuda && r.rows == N && r.cols == K && r.stride >= K,
                 "cuda sweep: resident weights must be a device tensor [N, K]");
      auto* wide = static_cast<float*>(take(uint64_t(N * K) * 4));
      const unsigned grid = unsigned(std::min<int64_t>(ceil_div(N * K, 256), 8192));
      switch (r.dtype) {
        case DType::kF16:
          launch(widen_weights_kernel<__half>, grid, 256, 0, ctx_.stream, static_cast<const __half*>(r.data),
                 r.stride, N, K, wide);
          break;
        case DType::kBF16:
          launch(widen_weights_kernel<__nv_bfloat16>, grid, 256, 0, ctx_.stream,
                 static_cast<const __nv_bfloat16*>(r.data), r.stride, N, K, wide);
          break;
        case DType::kF32:
          launch(widen_weights_kernel<float>, grid, 256, 0, ctx_.stream, static_cast<const float*>(r.data), r.stride,
                 N, K, wide);
          break;
        default: GPTQ_CHECK(false, "cuda sweep: resident weights must be F32, F16 or BF16");
      }
      w = wide;
    }
    const char* dd = static_cast<const char*>(ddead);
    if (plan.params != GroupParams::kDynamic) {
      const int64_t pg = plan.params == GroupParams::kPerRow ? 1 : G;
      const int64_t pw = plan.params == GroupParams::kPerRow ? K : gs;
      launch(group_params_kernel, ceil_div(N * pg * 32, 256), 256, 0, ctx_.stream, w, dd, N, K, pg, pw,
             plan.params == GroupParams::kStatic, dq, static_cast<float*>(scales), static_cast<int32_t*>(zeros));
    }
    launch(gather_kernel, matrix_grid(N, K), 256, 0, ctx_.stream, w, static_cast<const int64_t*>(dperm), dd, N, K,
           static_cast<float*>(Wp));
    const auto E1 = take(uint64_t(N * B) * 4);
    const float* U = static_cast<const float*>(cf->U.get());
    SweepArgs a{.U = U,
                .Wp = static_cast<float*>(Wp),
                .q = static_cast<uint8_t*>(codes),
                .E1 = static_cast<float*>(E1),
                .scales = static_cast<float*>(scales),
                .zeros = static_cast<int32_t*>(zeros),
                .row_loss = static_cast<double*>(row_loss),
                .perm = static_cast<const int64_t*>(dperm),
                .group_of = static_cast<const int32_t*>(dgroup),
                .N = N,
                .K = K,
                .gs = gs,
                .dynamic = plan.params == GroupParams::kDynamic,
                .quant = dq};
    for (int64_t i1 = 0; i1 < K; i1 += B) {
      const int64_t i2 = std::min(i1 + B, K);
      a.i1 = i1;
      a.cnt = i2 - i1;
      launch(sweep_block, ceil_div(N, kSweepWarps), kSweepWarps * 32, size_t(a.cnt * a.cnt) * 4, ctx_.stream, a);
      if (i2 < K) {
        // Row-major Wp[:, i2:] −= E1 [N, cnt] · U[i1:i2, i2:]; column-major that is
        // Wpᵀ[i2:, :] −= U[i1:i2, i2:]ᵀ · E1ᵀ with U's rows read as columns.
        const float minus_one = -1.0f, one = 1.0f;
        CUBLAS_CHECK(cublasSgemm(ctx_.cublas, CUBLAS_OP_N, CUBLAS_OP_N, int(K - i2), int(N), int(a.cnt), &minus_one,
                                 U + i1 * K + i2, int(K), a.E1, int(a.cnt), &one, a.Wp + i2, int(K)));
      }
    }
    std::vector<double> losses(static_cast<size_t>(N));
    get(losses.data(), row_loss, losses.size() * 8);
    sync();
    double loss = 0.0;
    for (double l : losses) loss += l;
    auto r = std::make_unique<CudaSweepResult>(loss, layout);
    r->generation = generation_;
    r->codes = static_cast<const uint8_t*>(codes);
    r->scales = static_cast<const float*>(scales);
    r->zeros = static_cast<const int32_t*>(zeros);
    r->spare = Wp;
    r->spare_bytes = wp_bytes;
    return r;
  }

  void download(const SweepResult& result, quant::QuantizedLinear& out) override {
    const CudaSweepResult& r = current(result);
    out = r.layout;
    const int64_t N = out.out_features, K = out.in_features, G = out.num_groups();
    out.q.resize(size_t(N * K));
    out.scales.resize(size_t(G * N));
    out.zeros.resize(size_t(G * N));
    get(out.q.data(), r.codes, out.q.size());
    get(out.scales.data(), r.scales, out.scales.size() * 4);
    get(out.zeros.data(), r.zeros, out.zeros.size() * 4);
    sync();
  }

  quant::PackedLinear pack(const SweepResult& result, quant::Format format) override {
    const CudaSweepResult& r = current(result);
    const quant::QuantizedLinear& l = r.layout;
    const int bits = l.bits;
    const int64_t N = l.out_features, K = l.in_features, G = l.num_groups();
    GPTQ_CHECK(quant::bits_supported(bits) && quant::packs_exactly(K, bits),
               "cuda pack: bits " + std::to_string(bits) + " and K " + std::to_string(K) + " do not pack");
    quant::PackedLinear p;
    p.bits = bits;
    p.group_size = l.group_size;
    p.in_features = K;
    p.out_features = N;
    p.qweight_shape = {quant::qweight_rows(K, bits), N};
    p.qzeros_shape = {G, quant::qzeros_cols(N, bits)};
    p.scales_shape = {G, N};
    p.qweight.resize(size_t(p.qweight_shape[0] * N));
    p.qzeros.resize(size_t(G * p.qzeros_shape[1]));
    p.scales.resize(size_t(G * N));
    p.g_idx = l.g_idx;
    const uint64_t qw = p.qweight.size() * 4, qz = p.qzeros.size() * 4;
    GPTQ_CHECK(packed_bytes(l) <= r.spare_bytes, "cuda pack: the sweep's spare memory is too small");
    auto* dqw = static_cast<int32_t*>(r.spare);
    auto* dqz = reinterpret_cast<int32_t*>(static_cast<std::byte*>(r.spare) + piece(qw));
    auto* dsc = reinterpret_cast<uint16_t*>(static_cast<std::byte*>(r.spare) + piece(qw) + piece(qz));
    const int V = quant::block_values(bits);
    launch(pack_qweight_kernel, dim3(ceil_div(N, 128), unsigned(std::min<int64_t>(K / V, 65535))), 128, 0,
           ctx_.stream, r.codes, N, K, bits, dqw);
    launch(pack_qzeros_kernel, dim3(ceil_div(ceil_div(N, V), 128), unsigned(std::min<int64_t>(G, 65535))), 128, 0,
           ctx_.stream, r.zeros, N, G, p.qzeros_shape[1], bits, format == quant::Format::kV1, dqz);
    launch(pack_scales_kernel, unsigned(std::min<int64_t>(ceil_div(G * N, 256), 4096)), 256, 0, ctx_.stream,
           r.scales, G * N, dsc);
    get(p.qweight.data(), dqw, qw);
    get(p.qzeros.data(), dqz, qz);
    get(p.scales.data(), dsc, p.scales.size() * 2);
    sync();
    return p;
  }

  std::unique_ptr<Linear> swap_in(Backend& b, const SweepResult& result, std::vector<float> bias) override {
    GPTQ_CHECK(&b == ctx_.backend, "cuda swap_in: a layer for another backend");
    const CudaSweepResult& r = current(result);
    const quant::QuantizedLinear& l = r.layout;
    std::optional<quant::FragmentLayout> order;
    if (ctx_.takes_fragment_layout(l.bits)) order = quant::fragment_order(l.bits, l.in_features, l.out_features,
                                                                          l.num_groups(), l.g_idx);
    if (!order) {
      if (auto l = gemv_swap_in(r, bias)) return l;
      // Act-order, or an N the GEMV layout pads: from the packed tensors, as a load.
      quant::PackedLinear p = pack(result, quant::Format::kV2);
      p.bias = std::move(bias);
      return b.gptq_linear(std::move(p));
    }
    const quant::FragmentLayout& f = *order;
    const int64_t N = l.out_features, K = l.in_features, rows = f.row_stride();
    LayerMemory mem{ctx_};
    MmaDeviceLayout d{.bits = f.bits, .K = K, .N = N, .Kp = f.Kp, .Nt = f.Nt, .G = f.G,
                      .chunks_one_group = f.chunks_one_group, .pairs_one_group = f.pairs_one_group};
    const uint64_t word_count = uint64_t(f.Nt * (f.Kp / quant::kFragmentChunk) * quant::kFragmentLanes);
    auto* words = static_cast<uint32_t*>(mem.alloc(word_count * uint64_t(f.bits) * 4));
    auto* scales = static_cast<__half*>(mem.alloc(uint64_t(f.G * rows) * 2));
    auto* zeros = static_cast<uint8_t*>(mem.alloc(uint64_t(f.G * rows)));
    d.words = words;
    d.scales = scales;
    d.zeros = zeros;
    d.tile_group = static_cast<const int32_t*>(mem.upload(f.tile_group.data(), f.tile_group.size() * 4));
    d.chunk_group = static_cast<const int32_t*>(mem.upload(f.chunk_group.data(), f.chunk_group.size() * 4));
    if (!f.perm.empty()) d.perm = static_cast<const int32_t*>(mem.upload(f.perm.data(), f.perm.size() * 4));
    d.bias = mem.bias(bias, N);
    launch(fragment_words_kernel, unsigned(ceil_div(int64_t(word_count), 128)), 128, 0, ctx_.stream, r.codes,
           d.perm, N, K, f.Kp, f.Nt, f.bits, words);
    launch(fragment_params_kernel, unsigned(std::min<int64_t>(ceil_div(f.G * rows, 256), 4096)), 256, 0,
           ctx_.stream, r.scales, r.zeros, N, f.G, rows, scales, zeros);
    sync();  // the host maps above must outlive their transfers
    return ctx_.fragment_linear(d, l.group_size, std::move(mem.blocks), mem.total);
  }

 private:
  // The GEMV-layout layer of r built on the device (what b.gptq_linear makes of pack(r,
  // kV2) when the backend does not take the fragment order), or null where
  // repack_for_cuda would reorder or pad (act-order's permuted g_idx; N % 4 ≠ 0) or
  // refuse (a block of codes in two groups). The checkpoint's qweight is then the
  // layout's, so the swap-in costs three small kernels instead of a download, a host
  // repack and an upload (~20 ms a module on the 8B shape).
  std::unique_ptr<Linear> gemv_swap_in(const CudaSweepResult& r, const std::vector<float>& bias) {
    const quant::QuantizedLinear& l = r.layout;
    const int bits = l.bits, V = quant::block_values(bits);
    const int64_t N = l.out_features, K = l.in_features, G = l.num_groups();
    if (N % 4 != 0 || K % V != 0 || !std::is_sorted(l.g_idx.begin(), l.g_idx.end())) return nullptr;
    std::vector<int32_t> block_group(size_t(K / V));
    for (int64_t kb = 0; kb < K / V; ++kb) {
      block_group[size_t(kb)] = l.g_idx[size_t(kb * V)];
      if (l.g_idx[size_t(kb * V + V - 1)] != block_group[size_t(kb)]) return nullptr;  // sorted: the ends decide
    }
    LayerMemory mem{ctx_};
    GptqDeviceLayout d{.bits = bits, .K = K, .N = N, .Np = N, .G = G};
    auto* qweight = static_cast<int32_t*>(mem.alloc(uint64_t(quant::qweight_rows(K, bits) * N) * 4));
    auto* scales = static_cast<uint16_t*>(mem.alloc(uint64_t(G * N) * 2));
    auto* zeros = static_cast<uint8_t*>(mem.alloc(uint64_t(G * N)));
    d.qweight = qweight;
    d.scales = reinterpret_cast<const __half*>(scales);
    d.zeros = zeros;
    d.block_group = static_cast<const int32_t*>(mem.upload(block_group.data(), block_group.size() * 4));
    d.bias = mem.bias(bias, N);
    launch(pack_qweight_kernel, dim3(ceil_div(N, 128), unsigned(std::min<int64_t>(K / V, 65535))), 128, 0,
           ctx_.stream, r.codes, N, K, bits, qweight);
    launch(pack_scales_kernel, unsigned(std::min<int64_t>(ceil_div(G * N, 256), 4096)), 256, 0, ctx_.stream,
           r.scales, G * N, scales);
    launch(zero_bytes_kernel, unsigned(std::min<int64_t>(ceil_div(G * N, 256), 4096)), 256, 0, ctx_.stream,
           r.zeros, G * N, bits, zeros);
    sync();  // the host vectors above must outlive their transfers
    return ctx_.gemv_linear(d, l.group_size, std::move(mem.blocks), mem.total);
  }

  CudaHessian& mine(Hessian& h) const {
    auto* c = dynamic_cast<CudaHessian*>(&h);
    GPTQ_CHECK(c != nullptr, "cuda quant ops: Hessian made by another backend");
    return *c;
  }
  const CudaHessian& mine(const Hessian& h) const { return mine(const_cast<Hessian&>(h)); }
  // H with both triangles filled in (a const read that completes the representation).
  const CudaHessian& complete(const Hessian& h) {
    CudaHessian& c = mine(const_cast<Hessian&>(h));
    if (!c.mirrored) {
      const int64_t K = c.in_features();
      const unsigned tiles = unsigned(ceil_div(K, 32));
      launch(mirror_hessian_kernel, dim3(tiles, tiles), dim3(32, 8), 0, ctx_.stream, c.data(), K, c.blocks);
      c.mirrored = true;
    }
    return c;
  }
  // A result of this QuantOps whose scratch has not been reused since.
  const CudaSweepResult& current(const SweepResult& r) const {
    const auto* c = dynamic_cast<const CudaSweepResult*>(&r);
    GPTQ_CHECK(c != nullptr, "cuda quant ops: sweep result made by another backend");
    if (c->generation != generation_) {
      throw Error(ErrorKind::kInvalidArgument, "cuda quant ops: a sweep result read after a later sweep or "
                                               "factorisation reused its memory");
    }
    return *c;
  }

  void sync() { CUDA_CHECK(cudaStreamSynchronize(ctx_.stream)); }
  // A call's temporaries (column order, masks, the factorisation, the sweep's weights,
  // codes and errors) are carved from one block kept from call to call: a cudaMalloc and
  // a cudaFree (which waits for the whole device) per buffer and module cost more than a
  // small module's arithmetic. begin() sizes the block for the call, growing it (the old
  // one freed first, so the peak is the larger, not the sum); take() carves the pieces in
  // order, each rounded by piece(). The factor U, which outlives its call, is allocated
  // on its own. One stream orders a call's use of the block after the previous call's.
  static uint64_t piece(uint64_t bytes) { return (bytes + 255) / 256 * 256; }
  // pack's carving: qweight K·N·bits/8, qzeros G·ceil(N·bits/32)·4, scales 2·G·N bytes;
  // at most 4·N·K (Wp) but for the piece rounding of tiny layers, since G ≤ K.
  static uint64_t packed_bytes(const quant::QuantizedLinear& l) {
    const int64_t N = l.out_features, K = l.in_features, G = l.num_groups();
    return piece(uint64_t(quant::qweight_rows(K, l.bits) * N) * 4) +
           piece(uint64_t(G * quant::qzeros_cols(N, l.bits)) * 4) + piece(uint64_t(G * N) * 2);
  }
  void begin(uint64_t bytes, const std::string& what) {
    scratch_used_ = 0;
    ++generation_;
    if (bytes <= scratch_bytes_) return;
    sync();
    scratch_.reset();
    scratch_bytes_ = 0;
    scratch_ = ctx_.alloc(bytes, "GPTQ's scratch (" + what + ")");
    scratch_bytes_ = bytes;
  }
  void* take(uint64_t bytes) {
    GPTQ_CHECK(scratch_used_ + piece(bytes) <= scratch_bytes_, "cuda quant ops: scratch sized too small");
    void* p = static_cast<std::byte*>(scratch_.get()) + scratch_used_;
    scratch_used_ += piece(bytes);
    return p;
  }
  void* put(const void* host, uint64_t bytes) {
    void* m = take(bytes);
    CUDA_CHECK(cudaMemcpyAsync(m, host, bytes, cudaMemcpyHostToDevice, ctx_.stream));
    sync();  // pageable host memory: the caller may free it on return
    return m;
  }
  void* zeroed(uint64_t bytes) {
    void* m = take(bytes);
    CUDA_CHECK(cudaMemsetAsync(m, 0, bytes, ctx_.stream));
    return m;
  }
  void get(void* host, const void* dev, uint64_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
  }
  int* flag() { return static_cast<int*>(flag_.get()); }
  void clear_flag() { CUDA_CHECK(cudaMemsetAsync(flag(), 0, sizeof(int), ctx_.stream)); }
  int read_flag() {
    int v = 0;
    CUDA_CHECK(cudaMemcpyAsync(&v, flag(), sizeof(int), cudaMemcpyDeviceToHost, ctx_.stream));
    sync();
    return v;
  }

  DeviceContext ctx_;
  FactorPrecision precision_;
  cusolverDnHandle_t solver_ = nullptr;
  cusolverDnParams_t params_ = nullptr;
  std::shared_ptr<void> flag_;  // int: cuSOLVER info, or a kernel's "bad value seen"
  std::shared_ptr<void> scratch_;
  uint64_t scratch_bytes_ = 0, scratch_used_ = 0;
  uint64_t generation_ = 0;  // begin() calls so far: a SweepResult's pointers are good while it matches
  std::shared_ptr<void> solver_work_;  // cuSOLVER's device workspace, grown as needed
  uint64_t solver_work_bytes_ = 0;
};

}  // namespace

std::unique_ptr<QuantOps> make_quant_ops(const DeviceContext& ctx, FactorPrecision factor) {
  return std::make_unique<CudaQuantOps>(ctx, factor);
}

}  // namespace gptq::backend::cuda
