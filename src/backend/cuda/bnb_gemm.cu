// bitsandbytes GEMV, dequantization and LLM.int8 kernels.
//
// 4-bit GEMV: a block of 8 warps owns 8 output columns, one warp each; lanes stride over
// the column's K weights 8 at a time (one 32-bit word of 8 nibbles; when K % 8 == 0 the
// word is aligned and lies in one absmax block, since blocks hold a multiple of 8
// weights), acc += absmax · Σ x·code; otherwise weight by weight. Lanes reduce by
// shuffles in a fixed order (deterministic).
//
// LLM.int8: (1) flag the outlier columns of x (|x| >= threshold in any row); (2) one
// block per row: the absmax of the row's elements below the threshold, then CA =
// round(x·127/r), 0 in flagged columns; (3) a warp per (output column, tile of 8 rows):
// int32 Σ CA·CB with dp4a (4-byte words when K % 4 == 0), fp32 Σ x·CB·SCB/127 over
// flagged columns, y = acc·r·SCB/127² + fp + b. Every kernel starts with pdl_begin() and
// goes through launch() (common.cuh), as the backend's others do.
#include <algorithm>

#include "backend/cuda/bnb_gemm.cuh"

namespace gptq::backend::cuda {
namespace {

using quant::bnb::BnbType;

constexpr int kWarps = 8;
constexpr int kNestedBlock = 256;  // src/format/bnb_packed.h kNestedBlock

__device__ __forceinline__ float block_absmax(const BnbDeviceLayout& w, const BnbTables& t, int64_t b) {
  if (w.absmax != nullptr) return __ldg(w.absmax + b);
  return t.dynamic[__ldg(w.nested_codes + b)] * __ldg(w.nested_scales + b / kNestedBlock) + w.nested_offset;
}

__device__ __forceinline__ uint32_t code_at(const uint8_t* data, int64_t i) {
  const uint32_t byte = __ldg(data + i / 2);
  return (i & 1) ? (byte & 15u) : (byte >> 4);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ int warp_sum(int v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <int MT, class T>
__global__ void __launch_bounds__(kWarps * 32)
    bnb4_gemv_kernel(BnbDeviceLayout w, BnbTables t, const T* x, int64_t ldx, T* y, int64_t ldy, int M, Epilogue epi) {
  pdl_begin();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * kWarps + warp;
  if (n >= w.N) return;
  const int64_t K = w.K, i0 = n * K;
  float acc[MT];
#pragma unroll
  for (int m = 0; m < MT; ++m) acc[m] = 0.0f;
  if (K % 8 == 0) {
    for (int64_t k = int64_t(lane) * 8; k < K; k += 32 * 8) {
      const uint32_t word = __ldg(reinterpret_cast<const uint32_t*>(w.data + (i0 + k) / 2));
      const float a = block_absmax(w, t, (i0 + k) / w.blocksize);
      float part[MT];
#pragma unroll
      for (int m = 0; m < MT; ++m) part[m] = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        // Byte j/2 of the little-endian word; the even weight in its high nibble.
        const int shift = (j / 2) * 8 + ((j & 1) ? 0 : 4);
        const float c = t.code[(word >> shift) & 15u];
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if (m < M) part[m] += to_f32(x[m * ldx + k + j]) * c;
        }
      }
#pragma unroll
      for (int m = 0; m < MT; ++m) acc[m] += a * part[m];
    }
  } else {
    for (int64_t k = lane; k < K; k += 32) {
      const int64_t i = i0 + k;
      const float wv = t.code[code_at(w.data, i)] * block_absmax(w, t, i / w.blocksize);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < M) acc[m] += to_f32(x[m * ldx + k]) * wv;
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    const float s = warp_sum(acc[m]);
    if (lane == 0 && m < M) {
      float v = s + (w.bias != nullptr ? w.bias[n] : 0.0f);
      if (epi == Epilogue::kAccumulate) v += to_f32(y[m * ldy + n]);
      y[m * ldy + n] = from_f32<T>(v);
    }
  }
}

template <class T>
__global__ void bnb4_dequantize_kernel(BnbDeviceLayout w, BnbTables t, int64_t n0, int64_t count, T* out) {
  pdl_begin();
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= count * w.K) return;
  const int64_t i = n0 * w.K + idx;
  out[idx] = from_f32<T>(t.code[code_at(w.data, i)] * block_absmax(w, t, i / w.blocksize));
}

template <class T>
__global__ void outlier_columns_kernel(const T* x, int64_t ldx, int M, int64_t K, float threshold, int* flags) {
  pdl_begin();
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(M) * K) return;
  const int64_t m = idx / K, k = idx % K;
  if (fabsf(to_f32(x[m * ldx + k])) >= threshold) flags[k] = 1;  // racing writers all write 1
}

template <class T>
__global__ void quantize_rows_kernel(const T* x, int64_t ldx, int64_t K, float threshold, const int* flags,
                                     int8_t* ca, float* row_scale) {
  pdl_begin();
  __shared__ float red[32];
  const int64_t m = blockIdx.x;
  const T* xr = x + m * ldx;
  float r = 0.0f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const float v = fabsf(to_f32(xr[k]));
    if (threshold <= 0.0f || v < threshold) r = fmaxf(r, v);
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) r = fmaxf(r, __shfl_xor_sync(0xffffffffu, r, o));
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = r;
  __syncthreads();
  if (threadIdx.x < 32) {
    r = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o /= 2) r = fmaxf(r, __shfl_xor_sync(0xffffffffu, r, o));
    if (threadIdx.x == 0) red[0] = r;
  }
  __syncthreads();
  r = red[0];
  if (threadIdx.x == 0) row_scale[m] = r;
  const float scale = r > 0.0f ? 127.0f / r : 0.0f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    // __float2int_rn rounds half to even, as torch.round.
    ca[m * K + k] = flags[k] ? int8_t(0) : int8_t(__float2int_rn(to_f32(xr[k]) * scale));
  }
}

template <class T>
__global__ void __launch_bounds__(kWarps * 32)
    int8_matmul_kernel(BnbDeviceLayout w, const T* x, int64_t ldx, const int8_t* ca, const float* row_scale,
                       const int* flags, T* y, int64_t ldy, int M, Epilogue epi) {
  pdl_begin();
  constexpr int MT = kBnbGemvMaxRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * kWarps + warp;
  const int m0 = int(blockIdx.y) * MT;
  if (n >= w.N) return;
  const int64_t K = w.K;
  const auto* cb = reinterpret_cast<const int8_t*>(w.data) + n * K;
  const float scb = __ldg(w.absmax + n), wscale = scb * (1.0f / 127.0f);
  int acc[MT];
  float fp[MT];
#pragma unroll
  for (int r = 0; r < MT; ++r) acc[r] = 0, fp[r] = 0.0f;
  if (K % 4 == 0) {
    for (int64_t k = int64_t(lane) * 4; k < K; k += 32 * 4) {
      const int wq = __ldg(reinterpret_cast<const int*>(cb + k));
#pragma unroll
      for (int r = 0; r < MT; ++r) {
        if (m0 + r < M) acc[r] = __dp4a(*reinterpret_cast<const int*>(ca + int64_t(m0 + r) * K + k), wq, acc[r]);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (flags[k + j]) {
          const float wv = float(cb[k + j]) * wscale;
#pragma unroll
          for (int r = 0; r < MT; ++r) {
            if (m0 + r < M) fp[r] += to_f32(x[int64_t(m0 + r) * ldx + k + j]) * wv;
          }
        }
      }
    }
  } else {
    for (int64_t k = lane; k < K; k += 32) {
      const int wq = cb[k];
      const bool outlier = flags[k] != 0;
#pragma unroll
      for (int r = 0; r < MT; ++r) {
        if (m0 + r < M) {
          acc[r] += int(ca[int64_t(m0 + r) * K + k]) * wq;
          if (outlier) fp[r] += to_f32(x[int64_t(m0 + r) * ldx + k]) * (float(wq) * wscale);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < MT; ++r) {
    const int a = warp_sum(acc[r]);
    const float f = warp_sum(fp[r]);
    const int m = m0 + r;
    if (lane == 0 && m < M) {
      float v = float(a) * (row_scale[m] * scb * (1.0f / 16129.0f)) + f + (w.bias != nullptr ? w.bias[n] : 0.0f);
      if (epi == Epilogue::kAccumulate) v += to_f32(y[int64_t(m) * ldy + n]);
      y[int64_t(m) * ldy + n] = from_f32<T>(v);
    }
  }
}

struct Int8Workspace {
  int* flags;
  int8_t* ca;
  float* row_scale;
};

// flags int [K], row_scale float [M], then ca int8 [M, K] (4-byte aligned: K and M
// counts of 4-byte elements before it).
Int8Workspace carve(const BnbDeviceLayout& w, int64_t M, void* ws) {
  auto* base = static_cast<char*>(ws);
  Int8Workspace c;
  c.flags = reinterpret_cast<int*>(base);
  c.row_scale = reinterpret_cast<float*>(base + w.K * 4);
  c.ca = reinterpret_cast<int8_t*>(base + w.K * 4 + M * 4);
  return c;
}

}  // namespace

template <class T>
void bnb4_gemv(const BnbDeviceLayout& w, const BnbTables& t, const T* x, int64_t ldx, T* y, int64_t ldy, int64_t M,
               Epilogue epi, cudaStream_t s) {
  GPTQ_CHECK(M >= 1 && M <= kBnbGemvMaxRows, "bnb4_gemv: M out of range");
  const unsigned grid = ceil_div(w.N, kWarps);
  if (M == 1) {
    launch(bnb4_gemv_kernel<1, T>, grid, kWarps * 32, 0, s, w, t, x, ldx, y, ldy, int(M), epi);
  } else {
    launch(bnb4_gemv_kernel<kBnbGemvMaxRows, T>, grid, kWarps * 32, 0, s, w, t, x, ldx, y, ldy, int(M), epi);
  }
}

template <class T>
void bnb4_dequantize(const BnbDeviceLayout& w, const BnbTables& t, int64_t n0, int64_t count, T* out, cudaStream_t s) {
  launch(bnb4_dequantize_kernel<T>, ceil_div(count * w.K, 256), 256, 0, s, w, t, n0, count, out);
}

int64_t int8_workspace_bytes(const BnbDeviceLayout& w, int64_t M) { return w.K * 4 + M * 4 + M * w.K; }

template <class T>
void int8_linear(const BnbDeviceLayout& w, const T* x, int64_t ldx, T* y, int64_t ldy, int64_t M, Epilogue epi,
                 void* workspace, cudaStream_t s) {
  GPTQ_CHECK(w.K < 133000, "int8_linear: in_features too large for exact int32 sums");
  const Int8Workspace c = carve(w, M, workspace);
  CUDA_CHECK(cudaMemsetAsync(c.flags, 0, size_t(w.K) * 4, s));
  if (w.threshold > 0.0f) {
    launch(outlier_columns_kernel<T>, ceil_div(M * w.K, 256), 256, 0, s, x, ldx, int(M), w.K, w.threshold, c.flags);
  }
  launch(quantize_rows_kernel<T>, unsigned(M), 256, 0, s, x, ldx, w.K, w.threshold, c.flags, c.ca, c.row_scale);
  const dim3 grid(ceil_div(w.N, kWarps), ceil_div(M, kBnbGemvMaxRows));
  launch(int8_matmul_kernel<T>, grid, kWarps * 32, 0, s, w, x, ldx, static_cast<const int8_t*>(c.ca),
         static_cast<const float*>(c.row_scale), static_cast<const int*>(c.flags), y, ldy, int(M), epi);
}

#define GPTQ_BNB_INSTANTIATE(T)                                                                                   \
  template void bnb4_gemv<T>(const BnbDeviceLayout&, const BnbTables&, const T*, int64_t, T*, int64_t, int64_t,   \
                             Epilogue, cudaStream_t);                                                             \
  template void bnb4_dequantize<T>(const BnbDeviceLayout&, const BnbTables&, int64_t, int64_t, T*, cudaStream_t); \
  template void int8_linear<T>(const BnbDeviceLayout&, const T*, int64_t, T*, int64_t, int64_t, Epilogue, void*,     \
                               cudaStream_t);
GPTQ_BNB_INSTANTIATE(float)
GPTQ_BNB_INSTANTIATE(__half)
GPTQ_BNB_INSTANTIATE(__nv_bfloat16)
#undef GPTQ_BNB_INSTANTIATE

}  // namespace gptq::backend::cuda
