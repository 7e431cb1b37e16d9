// Row-wise kernels use one block per row (norms, NLL, argmax) with a block reduction;
// element-wise kernels one thread per element. All arithmetic is fp32.
#include <cfloat>

#include "backend/cuda/elementwise.cuh"

namespace gptq::backend::cuda {
namespace {

constexpr int kRowThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over a block of Threads threads; every thread gets the result.
template <int Threads = kRowThreads>
__device__ float block_sum(float v) {
  __shared__ float part[Threads / 32];
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  float t = 0.0f;
  for (int i = 0; i < Threads / 32; ++i) t += part[i];
  __syncthreads();
  return t;
}
__device__ float block_max(float v) {
  __shared__ float part[kRowThreads / 32];
  v = warp_max(v);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  float t = -FLT_MAX;
  for (int i = 0; i < kRowThreads / 32; ++i) t = fmaxf(t, part[i]);
  __syncthreads();
  return t;
}

template <int Threads, class T>
__global__ void __launch_bounds__(Threads) rms_norm_kernel(const T* x, int64_t ldx, T* y, int64_t ldy, const float* w, int64_t cols, float eps) {
  pdl_begin();
  const T* xr = x + blockIdx.x * ldx;
  T* yr = y + blockIdx.x * ldy;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = to_f32(xr[i]);
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum<Threads>(ss) / float(cols) + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = from_f32<T>(w[i] * (to_f32(xr[i]) * inv));
}

// One warp per (row, head).
template <class T>
__global__ void head_rms_norm_kernel(T* x, int64_t ldx, const float* w, int64_t rows, int64_t heads, int64_t d,
                                     float eps) {
  pdl_begin();
  const int64_t item = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (item >= rows * heads) return;
  T* p = x + (item / heads) * ldx + (item % heads) * d;
  const int lane = threadIdx.x % 32;
  float ss = 0.0f;
  for (int64_t i = lane; i < d; i += 32) {
    const float v = to_f32(p[i]);
    ss += v * v;
  }
  const float inv = rsqrtf(warp_sum(ss) / float(d) + eps);
  for (int64_t i = lane; i < d; i += 32) p[i] = from_f32<T>(w[i] * (to_f32(p[i]) * inv));
}

// One thread per (row, head, pair i < half): (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin).
template <class T>
__global__ void rope_kernel(T* x, int64_t ldx, const int32_t* pos, const float* inv_freq, int64_t rows, int64_t heads,
                            int64_t d) {
  pdl_begin();
  const int64_t half = d / 2;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * heads * half) return;
  const int64_t i = idx % half, h = (idx / half) % heads, r = idx / (half * heads);
  // The angle in fp32 as transformers forms it; sin/cos of that fp32 value, accurately.
  const float angle = float(pos[r]) * inv_freq[i];
  float sn, cs;
  sincosf(angle, &sn, &cs);
  T* p = x + r * ldx + h * d;
  const float a = to_f32(p[i]), b = to_f32(p[i + half]);
  p[i] = from_f32<T>(a * cs - b * sn);
  p[i + half] = from_f32<T>(b * cs + a * sn);
}

// Blocks (row, slice): the rotation of every (head, i) pair of q and of k, as rope_kernel
// computes it, then k's rotated row and v's row into cache row pos[r]; a row's work is
// spread over gridDim.y blocks (one block per row took 6 µs at decode, latency-bound).
template <class T>
__global__ void rope_write_kv_kernel(T* q, int64_t ldq, T* k, int64_t ldk, const T* v, int64_t ldv, T* kc,
                                     int64_t ldkc, T* vc, int64_t ldvc, const int32_t* pos, const float* inv_freq,
                                     int64_t q_cols, int64_t kv_cols, int64_t d) {
  pdl_begin();
  const int64_t r = blockIdx.x, p = pos[r], half = d / 2;
  const int64_t q_pairs = q_cols / 2, pairs = q_pairs + kv_cols / 2;
  for (int64_t idx = blockIdx.y * blockDim.x + threadIdx.x; idx < pairs + kv_cols; idx += gridDim.y * blockDim.x) {
    if (idx >= pairs) {
      const int64_t c = idx - pairs;
      vc[p * ldvc + c] = v[r * ldv + c];
      continue;
    }
    const bool is_q = idx < q_pairs;
    const int64_t pair = is_q ? idx : idx - q_pairs;
    const int64_t h = pair / half, i = pair % half;
    const float angle = float(p) * inv_freq[i];
    float sn, cs;
    sincosf(angle, &sn, &cs);
    T* row = is_q ? q + r * ldq : k + r * ldk;
    T* e = row + h * d;
    const float a = to_f32(e[i]), b = to_f32(e[i + half]);
    const T ra = from_f32<T>(a * cs - b * sn), rb = from_f32<T>(b * cs + a * sn);
    e[i] = ra;
    e[i + half] = rb;
    if (!is_q) {
      kc[p * ldkc + h * d + i] = ra;
      kc[p * ldkc + h * d + i + half] = rb;
    }
  }
}

template <class T>
__global__ void swiglu_kernel(T* g, int64_t ldg, const T* u, int64_t ldu, int64_t rows, int64_t cols) {
  pdl_begin();
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * cols) return;
  const int64_t r = idx / cols, c = idx % cols;
  const float v = to_f32(g[r * ldg + c]);
  g[r * ldg + c] = from_f32<T>(v / (1.0f + __expf(-v)) * to_f32(u[r * ldu + c]));
}

template <class T>
__global__ void add_kernel(T* a, int64_t lda, const T* x, int64_t ldx, int64_t rows, int64_t cols) {
  pdl_begin();
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * cols) return;
  const int64_t r = idx / cols, c = idx % cols;
  a[r * lda + c] = from_f32<T>(to_f32(a[r * lda + c]) + to_f32(x[r * ldx + c]));
}

template <class T>
__global__ void add_bias_kernel(T* y, int64_t ldy, const float* bias, int64_t rows, int64_t cols) {
  pdl_begin();
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * cols) return;
  const int64_t r = idx / cols, c = idx % cols;
  y[r * ldy + c] = from_f32<T>(to_f32(y[r * ldy + c]) + bias[c]);
}

template <class T>
__global__ void embed_kernel(const T* table, int64_t vocab, const int32_t* ids, T* out, int64_t ldo, int64_t cols,
                             int32_t* bad) {
  pdl_begin();
  const int32_t id = ids[blockIdx.x];
  const bool ok = id >= 0 && id < vocab;
  if (!ok && threadIdx.x == 0) *bad = 1;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    out[blockIdx.x * ldo + i] = ok ? table[int64_t(id) * cols + i] : from_f32<T>(0.0f);
  }
}

template <class T>
__global__ void write_kv_kernel(const T* k, int64_t ldk, const T* v, int64_t ldv, T* kc, int64_t ldkc, T* vc,
                                int64_t ldvc, const int32_t* pos, int64_t cols) {
  pdl_begin();
  const int64_t r = blockIdx.x, p = pos[r];
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    kc[p * ldkc + i] = k[r * ldk + i];
    vc[p * ldvc + i] = v[r * ldv + i];
  }
}

template <class T>
__global__ void token_nll_kernel(const T* logits, int64_t ld, const int32_t* targets, float* nll, int64_t vocab) {
  pdl_begin();
  const T* row = logits + blockIdx.x * ld;
  float mx = -FLT_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, to_f32(row[i]));
  mx = block_max(mx);
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) s += __expf(to_f32(row[i]) - mx);
  s = block_sum(s);
  if (threadIdx.x == 0) nll[blockIdx.x] = mx + logf(s) - to_f32(row[targets[blockIdx.x]]);
}

// Argmax in two stages: stage 1, block b of row r reduces a slice to (value, index)
// pairs; stage 2, one block per row reduces the pairs. (One block per row of a 128k
// vocabulary took 199 µs; the slices put every SM to work.)
constexpr int kArgmaxSlices = 64;

__device__ __forceinline__ void better(float& bv, int64_t& bi, float v, int64_t i) {
  if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
}

// Reduces (bv, bi) over the block; thread 0 gets the result.
__device__ void block_argmax(float& bv, int64_t& bi) {
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_down_sync(0xffffffffu, bv, o);
    const int64_t i = __shfl_down_sync(0xffffffffu, bi, o);
    better(bv, bi, v, i);
  }
  __shared__ float sv[kRowThreads / 32];
  __shared__ int64_t si[kRowThreads / 32];
  if (threadIdx.x % 32 == 0) sv[threadIdx.x / 32] = bv, si[threadIdx.x / 32] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kRowThreads / 32; ++w) better(bv, bi, sv[w], si[w]);
  }
}

template <class T>
__global__ void argmax_slices_kernel(const T* logits, int64_t ld, int64_t vocab, float* pv, int64_t* pi) {
  pdl_begin();
  const T* row = logits + blockIdx.y * ld;
  const int64_t per = (vocab + kArgmaxSlices - 1) / kArgmaxSlices;
  const int64_t lo = blockIdx.x * per, hi = min(vocab, lo + per);
  float bv = -FLT_MAX;
  int64_t bi = INT64_MAX;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) better(bv, bi, to_f32(row[i]), i);
  block_argmax(bv, bi);
  if (threadIdx.x == 0) pv[blockIdx.y * kArgmaxSlices + blockIdx.x] = bv, pi[blockIdx.y * kArgmaxSlices + blockIdx.x] = bi;
}

__global__ void argmax_final_kernel(const float* pv, const int64_t* pi, int32_t* out) {
  pdl_begin();
  float bv = -FLT_MAX;
  int64_t bi = INT64_MAX;
  for (int i = threadIdx.x; i < kArgmaxSlices; i += blockDim.x) {
    better(bv, bi, pv[blockIdx.x * kArgmaxSlices + i], pi[blockIdx.x * kArgmaxSlices + i]);
  }
  block_argmax(bv, bi);
  if (threadIdx.x == 0) out[blockIdx.x] = int32_t(bi == INT64_MAX ? 0 : bi);
}

template <class D, class S>
__global__ void convert_kernel(const S* src, int64_t lds, D* dst, int64_t ldd, int64_t rows, int64_t cols) {
  pdl_begin();
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * cols) return;
  const int64_t r = idx / cols, c = idx % cols;
  dst[r * ldd + c] = from_f32<D>(to_f32(src[r * lds + c]));
}

unsigned grid_for(int64_t n) { return ceil_div(n, kRowThreads); }

}  // namespace

template <class T>
void rms_norm(const T* x, int64_t ldx, T* y, int64_t ldy, const float* w, int64_t rows, int64_t cols, float eps,
              cudaStream_t s) {
  if (rows == 0) return;
  // Few rows (decode): a 1024-thread block per row, so one row's loads are all in flight
  // at once (measured: 8 µs with 256 threads for a 2048-wide row, latency-bound).
  if (rows <= 16) {
    launch(rms_norm_kernel<1024, T>, unsigned(rows), 1024, 0, s, x, ldx, y, ldy, w, cols, eps);
  } else {
    launch(rms_norm_kernel<kRowThreads, T>, unsigned(rows), kRowThreads, 0, s, x, ldx, y, ldy, w, cols, eps);
  }
}
template <class T>
void head_rms_norm(T* x, int64_t ldx, const float* w, int64_t rows, int64_t cols, int64_t head_dim, float eps,
                   cudaStream_t s) {
  const int64_t items = rows * (cols / head_dim);
  if (items == 0) return;
  launch(head_rms_norm_kernel<T>, ceil_div(items, kRowThreads / 32), kRowThreads, 0, s, x, ldx, w, rows, cols / head_dim,
                                                                                  head_dim, eps);
}
template <class T>
void rope(T* x, int64_t ldx, const int32_t* pos, const float* inv_freq, int64_t rows, int64_t cols, int64_t head_dim,
          cudaStream_t s) {
  const int64_t n = rows * (cols / head_dim) * (head_dim / 2);
  if (n == 0) return;
  launch(rope_kernel<T>, grid_for(n), kRowThreads, 0, s, x, ldx, pos, inv_freq, rows, cols / head_dim, head_dim);
}
template <class T>
void rope_write_kv(T* q, int64_t ldq, T* k, int64_t ldk, const T* v, int64_t ldv, T* kc, int64_t ldkc, T* vc,
                   int64_t ldvc, const int32_t* pos, const float* inv_freq, int64_t rows, int64_t q_cols,
                   int64_t kv_cols, int64_t head_dim, cudaStream_t s) {
  if (rows == 0) return;
  const unsigned slices = ceil_div((q_cols + kv_cols) / 2 + kv_cols, 128);
  launch(rope_write_kv_kernel<T>, dim3(unsigned(rows), slices), 128, 0, s, q, ldq, k, ldk, v, ldv, kc, ldkc, vc, ldvc, pos,
                                                                   inv_freq, q_cols, kv_cols, head_dim);
}
template <class T>
void swiglu(T* gate, int64_t ldg, const T* up, int64_t ldu, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows * cols == 0) return;
  launch(swiglu_kernel<T>, grid_for(rows * cols), kRowThreads, 0, s, gate, ldg, up, ldu, rows, cols);
}
template <class T>
void add(T* acc, int64_t lda, const T* x, int64_t ldx, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows * cols == 0) return;
  launch(add_kernel<T>, grid_for(rows * cols), kRowThreads, 0, s, acc, lda, x, ldx, rows, cols);
}
template <class T>
void add_bias(T* y, int64_t ldy, const float* bias, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows * cols == 0) return;
  launch(add_bias_kernel<T>, grid_for(rows * cols), kRowThreads, 0, s, y, ldy, bias, rows, cols);
}
template <class T>
void embed(const T* table, int64_t vocab, const int32_t* ids, T* out, int64_t ldo, int64_t rows, int64_t cols,
           int32_t* bad, cudaStream_t s) {
  if (rows == 0) return;
  launch(embed_kernel<T>, unsigned(rows), kRowThreads, 0, s, table, vocab, ids, out, ldo, cols, bad);
}
template <class T>
void write_kv(const T* k, int64_t ldk, const T* v, int64_t ldv, T* kc, int64_t ldkc, T* vc, int64_t ldvc,
              const int32_t* pos, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows == 0) return;
  launch(write_kv_kernel<T>, unsigned(rows), kRowThreads, 0, s, k, ldk, v, ldv, kc, ldkc, vc, ldvc, pos, cols);
}
template <class T>
void token_nll(const T* logits, int64_t ld, const int32_t* targets, float* nll, int64_t rows, int64_t vocab,
               cudaStream_t s) {
  if (rows == 0) return;
  launch(token_nll_kernel<T>, unsigned(rows), kRowThreads, 0, s, logits, ld, targets, nll, vocab);
}
int64_t argmax_workspace_floats(int64_t rows) { return rows * kArgmaxSlices * 3; }

template <class T>
void argmax(const T* logits, int64_t ld, int32_t* out, int64_t rows, int64_t vocab, float* workspace, cudaStream_t s) {
  if (rows == 0) return;
  float* pv = workspace;
  auto* pi = reinterpret_cast<int64_t*>(workspace + rows * kArgmaxSlices + (rows * kArgmaxSlices) % 2);
  launch(argmax_slices_kernel<T>, dim3(kArgmaxSlices, unsigned(rows)), kRowThreads, 0, s, logits, ld, vocab, pv, pi);
  launch(argmax_final_kernel, unsigned(rows), kRowThreads, 0, s, pv, pi, out);
}

template <class D, class S>
void convert(const S* src, int64_t lds, D* dst, int64_t ldd, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows * cols == 0) return;
  launch(convert_kernel<D, S>, grid_for(rows * cols), kRowThreads, 0, s, src, lds, dst, ldd, rows, cols);
}

#define GPTQ_INSTANTIATE(T)                                                                                     \
  template void rms_norm<T>(const T*, int64_t, T*, int64_t, const float*, int64_t, int64_t, float, cudaStream_t); \
  template void head_rms_norm<T>(T*, int64_t, const float*, int64_t, int64_t, int64_t, float, cudaStream_t);     \
  template void rope<T>(T*, int64_t, const int32_t*, const float*, int64_t, int64_t, int64_t, cudaStream_t);     \
  template void swiglu<T>(T*, int64_t, const T*, int64_t, int64_t, int64_t, cudaStream_t);                       \
  template void add<T>(T*, int64_t, const T*, int64_t, int64_t, int64_t, cudaStream_t);                          \
  template void add_bias<T>(T*, int64_t, const float*, int64_t, int64_t, cudaStream_t);                          \
  template void embed<T>(const T*, int64_t, const int32_t*, T*, int64_t, int64_t, int64_t, int32_t*, cudaStream_t); \
  template void write_kv<T>(const T*, int64_t, const T*, int64_t, T*, int64_t, T*, int64_t, const int32_t*,      \
                            int64_t, int64_t, cudaStream_t);                                                     \
  template void rope_write_kv<T>(T*, int64_t, T*, int64_t, const T*, int64_t, T*, int64_t, T*, int64_t,          \
                                 const int32_t*, const float*, int64_t, int64_t, int64_t, int64_t, cudaStream_t); \
  template void token_nll<T>(const T*, int64_t, const int32_t*, float*, int64_t, int64_t, cudaStream_t);         \
  template void argmax<T>(const T*, int64_t, int32_t*, int64_t, int64_t, float*, cudaStream_t);                  \
  template void convert<T, float>(const float*, int64_t, T*, int64_t, int64_t, int64_t, cudaStream_t);
GPTQ_INSTANTIATE(__half)
GPTQ_INSTANTIATE(__nv_bfloat16)
GPTQ_INSTANTIATE(float)
#undef GPTQ_INSTANTIATE
template void convert<float, __half>(const __half*, int64_t, float*, int64_t, int64_t, int64_t, cudaStream_t);
template void convert<float, __nv_bfloat16>(const __nv_bfloat16*, int64_t, float*, int64_t, int64_t, int64_t,
                                            cudaStream_t);
template void convert<__half, __nv_bfloat16>(const __nv_bfloat16*, int64_t, __half*, int64_t, int64_t, int64_t, cudaStream_t);
template void convert<__nv_bfloat16, __half>(const __half*, int64_t, __nv_bfloat16*, int64_t, int64_t, int64_t, cudaStream_t);

}  // namespace gptq::backend::cuda
