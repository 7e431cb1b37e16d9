// The CUDA-core kernel, and the dispatch between it and the tensor-core one.
// Each block handles one (query row, head, key split): 4 warps walk the split's keys 32
// at a time. Scores: lane i takes key i of the 32 (its row read with 16-byte loads);
// online softmax per warp; the value sum with lanes across the head dimension. Warps
// merge in shared memory; splits merge in a second kernel (the log-sum-exp combine).
#include "backend/cuda/attention.cuh"

#include <cfloat>
#include <type_traits>

#include "backend/cuda/flash_attention.cuh"

namespace gptq::backend::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kKeysPerSplit = 256;  // decode: one block per 256 cached keys

// One split's state: running max, sum of exp, and the unnormalised output.
struct Partial {
  float m;
  float l;
};

// q · k over d <= MaxDim dims, the loop unrolled so every 16-byte load is in flight.
template <int MaxDim, class T>
__device__ __forceinline__ float dot_row(const float* qs, const T* krow, int d) {
  constexpr int kVec = 16 / sizeof(T);  // elements per 16-byte load
  float acc = 0.0f;
#pragma unroll
  for (int i = 0; i < MaxDim; i += kVec) {
    if (i >= d) break;
    const uint4 raw = *reinterpret_cast<const uint4*>(krow + i);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < kVec; ++j) acc += qs[i + j] * to_f32(e[j]);
  }
  return acc;
}

// DPL: head dimensions per lane in the value sum (head_dim <= 32 * DPL).
template <int DPL, class T>
__global__ void __launch_bounds__(kWarps * 32)
    attention_kernel(const T* q, const T* k, const T* v, const int32_t* pos, T* out, AttentionArgs a, int splits,
                     int keys_per_split, float* part) {
  pdl_begin();
  const int t = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int d = int(a.head_dim);
  const int64_t kvh = h / (a.heads / a.kv_heads);
  const int64_t p = pos[t];
  const int64_t first = a.window > 0 ? max(int64_t(0), p - a.window + 1) : 0;
  int64_t lo = first, hi = p + 1;  // keys [lo, hi)
  if (splits > 1) {
    lo = max(lo, int64_t(split) * keys_per_split);
    hi = min(hi, int64_t(split + 1) * keys_per_split);
  }
  __shared__ float qs[kMaxHeadDim];
  __shared__ float wm[kWarps], wl[kWarps];
  __shared__ float wacc[kWarps][kMaxHeadDim];
  const float scale = rsqrtf(float(d));
  for (int i = threadIdx.x; i < d; i += blockDim.x) qs[i] = to_f32(q[t * a.ldq + h * d + i]) * scale;
  __syncthreads();

  float m = -FLT_MAX, l = 0.0f, acc[DPL];
#pragma unroll
  for (int i = 0; i < DPL; ++i) acc[i] = 0.0f;
  for (int64_t base = lo + int64_t(warp) * 32; base < hi; base += kWarps * 32) {
    const int64_t j = base + lane;
    const float sc = j < hi ? dot_row<32 * DPL>(qs, k + j * a.ldk + kvh * d, d) : -FLT_MAX;
    float mx = sc;
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const float m_new = fmaxf(m, mx);
    const float corr = __expf(m - m_new);
    const float pj = j < hi ? __expf(sc - m_new) : 0.0f;
    float ps = pj;
    for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
    l = l * corr + ps;
    m = m_new;
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[i] *= corr;
    // Keys past hi have weight 0 and read row hi - 1 (written, finite) instead: no
    // branch, so the unrolled loads are all in flight.
#pragma unroll 8
    for (int jj = 0; jj < 32; ++jj) {
      const float w = __shfl_sync(0xffffffffu, pj, jj);
      const T* vrow = v + min(base + jj, hi - 1) * a.ldv + kvh * d;
#pragma unroll
      for (int i = 0; i < DPL; ++i) {
        const int dim = lane + 32 * i;
        if (dim < d) acc[i] += w * to_f32(vrow[dim]);
      }
    }
  }
  // Merge the warps.
  if (lane == 0) wm[warp] = m, wl[warp] = l;
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int dim = lane + 32 * i;
    if (dim < d) wacc[warp][dim] = acc[i];
  }
  __syncthreads();
  float M = -FLT_MAX;
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, wm[w]);
  float L = 0.0f;
  for (int w = 0; w < kWarps; ++w) L += wl[w] * __expf(wm[w] - M);
  for (int dim = threadIdx.x; dim < d; dim += blockDim.x) {
    float o = 0.0f;
    for (int w = 0; w < kWarps; ++w) o += wacc[w][dim] * __expf(wm[w] - M);
    if (splits == 1) {
      out[t * a.ldo + h * d + dim] = from_f32<T>(L > 0.0f ? o / L : 0.0f);
    } else {
      // part: [rows, heads, splits, 2 + d]
      float* pp = part + ((int64_t(t) * a.heads + h) * splits + split) * (2 + d);
      pp[2 + dim] = o;
      if (dim == 0) pp[0] = M, pp[1] = L;
    }
  }
}

template <class T>
__global__ void combine_kernel(const float* part, T* out, AttentionArgs a, int splits) {
  pdl_begin();
  const int t = blockIdx.x, h = blockIdx.y, d = int(a.head_dim);
  const float* pp = part + (int64_t(t) * a.heads + h) * splits * (2 + d);
  float M = -FLT_MAX;
  for (int s = 0; s < splits; ++s) {
    if (pp[s * (2 + d) + 1] > 0.0f) M = fmaxf(M, pp[s * (2 + d)]);
  }
  float L = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float l = pp[s * (2 + d) + 1];
    if (l > 0.0f) L += l * __expf(pp[s * (2 + d)] - M);
  }
  for (int dim = threadIdx.x; dim < d; dim += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < splits; ++s) {
      if (pp[s * (2 + d) + 1] > 0.0f) o += pp[s * (2 + d) + 2 + dim] * __expf(pp[s * (2 + d)] - M);
    }
    out[t * a.ldo + h * d + dim] = from_f32<T>(o / L);
  }
}

// Splits only for few query rows (decode): prefill already has rows x heads blocks.
int splits_for(const AttentionArgs& a) {
  if (a.rows > 4) return 1;
  return int(std::max<int64_t>(1, (a.capacity + kKeysPerSplit - 1) / kKeysPerSplit));
}

}  // namespace

int64_t attention_workspace_floats(const AttentionArgs& a) {
  const int splits = splits_for(a);
  return splits == 1 ? 0 : a.rows * a.heads * splits * (2 + a.head_dim);
}

template <class T>
void attention(const T* q, const T* k, const T* v, const int32_t* pos, T* out, const AttentionArgs& a,
               float* workspace, cudaStream_t s) {
  if (a.rows == 0) return;
  if constexpr (!std::is_same_v<T, float>) {
    const bool want = a.kernel == AttentionKernel::kTensorCore ||
                      (a.kernel == AttentionKernel::kAuto && a.rows >= kTensorCoreMinRows);
    if (want && flash_attention_supports(a, q, k, v, out)) {
      flash_attention(q, k, v, pos, out, a, s);
      return;
    }
  }
  const int splits = splits_for(a);
  const dim3 grid(unsigned(a.rows), unsigned(a.heads), unsigned(splits));
  if (a.head_dim <= 64) {
    launch(attention_kernel<2, T>, grid, kWarps * 32, 0, s, q, k, v, pos, out, a, splits, kKeysPerSplit, workspace);
  } else if (a.head_dim <= 128) {
    launch(attention_kernel<4, T>, grid, kWarps * 32, 0, s, q, k, v, pos, out, a, splits, kKeysPerSplit, workspace);
  } else {
    launch(attention_kernel<8, T>, grid, kWarps * 32, 0, s, q, k, v, pos, out, a, splits, kKeysPerSplit, workspace);
  }
  if (splits > 1) {
    launch(combine_kernel<T>, dim3(unsigned(a.rows), unsigned(a.heads)), 128, 0, s, workspace, out, a, splits);
  }
}

template void attention<float>(const float*, const float*, const float*, const int32_t*, float*,
                               const AttentionArgs&, float*, cudaStream_t);
template void attention<__half>(const __half*, const __half*, const __half*, const int32_t*, __half*,
                                const AttentionArgs&, float*, cudaStream_t);
template void attention<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*,
                                       const int32_t*, __nv_bfloat16*, const AttentionArgs&, float*, cudaStream_t);

}  // namespace gptq::backend::cuda
