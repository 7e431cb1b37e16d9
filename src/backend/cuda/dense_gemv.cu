// Dense GEMV for one row of x: one warp per output column n. Lane l reads 16-byte
// chunks l, l + 32, ... of W's row n (8 elements each), U chunks issued before any is
// used so U loads are in flight per lane; x comes through L1 (K x 2 bytes, read by every
// warp). Lanes reduce with shuffles; no split along K, so no second pass.
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

// U: 16-byte weight loads in flight per lane.
template <class T>
__global__ void __launch_bounds__(kWarps * 32) dense_gemv_kernel(DenseGemvGroup<T> g, const T* x) {
  pdl_begin();
  constexpr int U = 4;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t n = int64_t(blockIdx.x) * kWarps + warp;
  int j = 0;
  while (j + 1 < g.count && n >= g.job[j].N) n -= g.job[j++].N;
  if (n >= g.job[j].N) return;  // the last block's spare warps
  const DenseGemvJob<T>& J = g.job[j];
  const uint4* wr = reinterpret_cast<const uint4*>(J.w + n * g.K);
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  const int64_t chunks = g.K / kVec;

  float acc = 0.0f;
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
      float wf[kVec], xf[kVec];
      widen(wv[u], wf, static_cast<const T*>(nullptr));
      widen(__ldg(xr + c), xf, static_cast<const T*>(nullptr));
#pragma unroll
      for (int i = 0; i < kVec; ++i) acc += wf[i] * xf[i];
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) {
    float v = acc + (J.bias != nullptr ? J.bias[n] : 0.0f);
    if (g.epilogue == Epilogue::kAccumulate) v += to_f32(J.y[n]);
    J.y[n] = from_f32<T>(v);
  }
}

}  // namespace

bool dense_gemv_fits(const void* x, int64_t K, int64_t M) {
  return M == 1 && K % kVec == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

template <class T>
void dense_gemv(const DenseGemvGroup<T>& g, const T* x, cudaStream_t s) {
  GPTQ_CHECK(g.count >= 1 && g.count <= kMaxGroup && dense_gemv_fits(x, g.K, 1), "dense_gemv: shape");
  int64_t rows = 0;
  for (int j = 0; j < g.count; ++j) rows += g.job[j].N;
  if (rows == 0) return;
  launch(dense_gemv_kernel<T>, ceil_div(rows, kWarps), kWarps * 32, 0, s, g, x);
}

template void dense_gemv<__half>(const DenseGemvGroup<__half>&, const __half*, cudaStream_t);
template void dense_gemv<__nv_bfloat16>(const DenseGemvGroup<__nv_bfloat16>&, const __nv_bfloat16*, cudaStream_t);

}  // namespace gptq::backend::cuda
