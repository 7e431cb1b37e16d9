// Dense GEMV: one warp per output row n. Lane l reads 16-byte chunks l, l + 32, ... of
// W's row (8 elements each), U chunks issued before any is used so U loads are in flight
// per lane; x comes through L1 (it is M x K x 2 bytes, read by every warp). Lanes reduce
// with shuffles; lane m writes row m of the output. No split along K, so no second pass.
//
// Predicted (H200, 4.26 TB/s): a [N, K] f16 weight streams in 2NK / 4.26e12 s plus the
// launch; measured numbers are in NOTES.md.
#include "backend/cuda/dense_gemv.cuh"

namespace gptq::backend::cuda {
namespace {

constexpr int kWarps = 8;  // rows per block
constexpr int kVec = 8;    // elements per 16-byte load

__device__ __forceinline__ void widen(const uint4& raw, float (&f)[kVec], const __half*) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(h[i]);
    f[2 * i] = v.x, f[2 * i + 1] = v.y;
  }
}
__device__ __forceinline__ void widen(const uint4& raw, float (&f)[kVec], const __nv_bfloat16*) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x, f[2 * i + 1] = v.y;
  }
}

// MT: rows of x computed per warp (1, or kDenseGemvMaxRows with rows >= M masked).
// U: 16-byte weight loads in flight per lane.
template <int MT, class T>
__global__ void __launch_bounds__(kWarps * 32) dense_gemv_kernel(DenseGemvGroup<T> g, const T* x, int64_t ldx, int M) {
  constexpr int U = MT == 1 ? 4 : 2;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t n = int64_t(blockIdx.x) * kWarps + warp;
  int j = 0;
  while (j + 1 < g.count && n >= g.job[j].N) n -= g.job[j++].N;
  if (n >= g.job[j].N) return;  // the last block's spare warps
  const DenseGemvJob<T>& J = g.job[j];
  const uint4* wr = reinterpret_cast<const uint4*>(J.w + n * g.K);
  const int64_t chunks = g.K / kVec;

  float acc[MT];
#pragma unroll
  for (int m = 0; m < MT; ++m) acc[m] = 0.0f;
  for (int64_t c0 = lane; c0 < chunks; c0 += 32 * U) {
    uint4 wv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = c0 + 32 * u;
      // Weights are read once per product: keep them out of L1 (x lives there).
      wv[u] = c < chunks ? __ldcs(wr + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = c0 + 32 * u;
      if (c >= chunks) break;
      float wf[kVec];
      widen(wv[u], wf, static_cast<const T*>(nullptr));
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m >= M) break;
        float xf[kVec];
        widen(__ldg(reinterpret_cast<const uint4*>(x + m * ldx) + c), xf, static_cast<const T*>(nullptr));
#pragma unroll
        for (int i = 0; i < kVec; ++i) acc[m] += wf[i] * xf[i];
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
  }
  // Every lane holds every sum; lane m stores row m.
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    if (lane == m && m < M) {
      float v = acc[m] + (J.bias != nullptr ? J.bias[n] : 0.0f);
      T* out = J.y + m * J.ldy + n;
      if (g.epilogue == Epilogue::kAccumulate) v += to_f32(*out);
      *out = from_f32<T>(v);
    }
  }
}

}  // namespace

bool dense_gemv_fits(const void* x, int64_t ldx, int64_t K, int64_t M) {
  return M >= 1 && M <= kDenseGemvMaxRows && K % kVec == 0 && ldx % kVec == 0 &&
         reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

template <class T>
void dense_gemv(const DenseGemvGroup<T>& g, const T* x, int64_t ldx, int64_t M, cudaStream_t s) {
  GPTQ_CHECK(g.count >= 1 && g.count <= kMaxGroup && dense_gemv_fits(x, ldx, g.K, M), "dense_gemv: shape");
  int64_t rows = 0;
  for (int j = 0; j < g.count; ++j) rows += g.job[j].N;
  if (rows == 0) return;
  const unsigned grid = ceil_div(rows, kWarps);
  if (M == 1) {
    dense_gemv_kernel<1, T><<<grid, kWarps * 32, 0, s>>>(g, x, ldx, int(M));
  } else {
    dense_gemv_kernel<kDenseGemvMaxRows, T><<<grid, kWarps * 32, 0, s>>>(g, x, ldx, int(M));
  }
  CUDA_LAUNCH_CHECK();
}

template void dense_gemv<__half>(const DenseGemvGroup<__half>&, const __half*, int64_t, int64_t, cudaStream_t);
template void dense_gemv<__nv_bfloat16>(const DenseGemvGroup<__nv_bfloat16>&, const __nv_bfloat16*, int64_t,
                                        int64_t, cudaStream_t);

}  // namespace gptq::backend::cuda
