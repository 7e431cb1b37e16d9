// Prefill attention on tensor cores (FlashAttention-2's schedule). A block of 4 warps owns
// 64 query rows of one head, 16 rows per warp (one m16 tile), and walks the keys its rows
// attend in tiles of 64: K and V tiles stream into shared memory with cp.async, two
// stages deep, while the previous tile computes. Per tile each warp computes its 16 x 64
// scores S = Q Kᵀ (mma.sync m16n8k16, fp32 accumulators, Q held in registers), masks
// them where the tile is not inside every row's key range, updates the running row max
// and sum (in the log2 domain: scores prescaled by log2(e) / sqrt(d), so exp is one ex2),
// rounds P to 16 bits as the next product's A fragments and accumulates O += P V (V
// fragments through ldmatrix.trans). O is divided by the row sum once, at the end.
#include "backend/cuda/flash_attention.cuh"

#include <climits>
#include <cmath>

#include "backend/cuda/mma.cuh"

namespace gptq::backend::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRows = kWarps * 16;  // query rows per block: one m16 tile per warp
constexpr int kKeys = 64;           // keys per tile
constexpr int kThreads = kWarps * 32;

// Shared-memory row pitch in elements. The 8 extra elements (16 bytes) make the eight row
// segments one ldmatrix phase reads (rows r..r+7, the same 16 bytes of each) start 16
// bytes apart modulo 128, so they cover the 32 banks once: no conflicts, no swizzle.
template <int D>
constexpr int kPitch = D + 8;

// Q [kRows][pitch], then K and V, each two stages of [kKeys][pitch], 16-bit elements.
template <int D>
constexpr size_t kSmemBytes = size_t(kRows + 4 * kKeys) * kPitch<D> * 2;

// Queues the copy of rows [row0, row0 + N) of `src` (row stride ld, D columns) into
// tile [N][pitch]; rows at or past `end` are zero-filled instead of read.
template <int D, int N, class T>
__device__ __forceinline__ void load_tile(T* tile, const T* src, int64_t ld, int64_t row0, int64_t end) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert(N * kChunks % kThreads == 0, "load_tile: whole chunks per thread");
#pragma unroll
  for (int it = 0; it < N * kChunks / kThreads; ++it) {
    const int i = int(threadIdx.x) + it * kThreads;
    const int r = i / kChunks, col = (i % kChunks) * 8;
    const int64_t row = row0 + r;
    const bool valid = row < end;
    cp_async_16(tile + r * kPitch<D> + col, valid ? src + row * ld + col : src, valid);
  }
}

// q: [rows, heads * D] (row stride ldq); k, v: [capacity, kv_heads * D] (ldk, ldv);
// pos: [rows]; out: [rows, heads * D] (ldo). Grid (heads, ceil(rows / 64)): block (h, y)
// computes head h of the query rows [64 y', 64 y' + 64), y' = gridDim.y - 1 - y, so that
// under causal masking the blocks with the most keys start first. Padding rows past
// `rows` compute nothing and write nothing.
template <class T, int D>
__global__ void __launch_bounds__(kThreads)
    flash_attention_kernel(const T* q, const T* k, const T* v, const int32_t* pos, T* out, AttentionArgs a) {
  pdl_begin();
  constexpr int P = kPitch<D>;
  extern __shared__ uint4 smem[];  // uint4: 16-byte aligned for cp.async and ldmatrix
  T* const qs = reinterpret_cast<T*>(smem);
  T* const ks = qs + kRows * P;
  T* const vs = ks + 2 * kKeys * P;
  __shared__ int warp_range[2][kWarps];

  const int h = int(blockIdx.x);
  const int64_t t0 = int64_t(gridDim.y - 1 - blockIdx.y) * kRows;
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int g = lane / 4, c = lane % 4;  // fragment row group and column pair (mma.cuh)
  const int64_t kvh = h / (a.heads / a.kv_heads);
  const T* const qh = q + h * D;
  const T* const kh = k + kvh * D;
  const T* const vh = v + kvh * D;

  // Keys [first, last] of this thread's fragment rows g and g + 8 of the warp's 16; a
  // padding row gets the empty range [INT_MAX, -1].
  int first[2], last[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t t = t0 + warp * 16 + g + 8 * r;
    first[r] = INT_MAX, last[r] = -1;
    if (t < a.rows) {
      const int64_t p = pos[t];
      first[r] = int(a.window > 0 ? max(int64_t(0), p - a.window + 1) : 0);
      last[r] = int(p);
    }
  }
  // Over the warp's 16 rows: keys some row attends [any_lo, any_hi], and keys every row
  // attends [all_lo, all_hi] (empty when all_lo > all_hi).
  int any_lo = min(first[0], first[1]), any_hi = max(last[0], last[1]);
  int all_lo = max(first[0], first[1]), all_hi = min(last[0], last[1]);
#pragma unroll
  for (int o = 4; o < 32; o <<= 1) {
    any_lo = min(any_lo, __shfl_xor_sync(0xffffffffu, any_lo, o));
    any_hi = max(any_hi, __shfl_xor_sync(0xffffffffu, any_hi, o));
    all_lo = max(all_lo, __shfl_xor_sync(0xffffffffu, all_lo, o));
    all_hi = min(all_hi, __shfl_xor_sync(0xffffffffu, all_hi, o));
  }
  if (lane == 0) warp_range[0][warp] = any_lo, warp_range[1][warp] = any_hi;
  __syncthreads();
  // The block's keys [lo, hi]: every tile starts at lo + 64 i; rows past hi (possibly past
  // the cache) are zero-filled. Within [lo, hi] a key no row attends is still read (with
  // weight 0): the cache is written in order, so it is finite.
  int lo = INT_MAX, hi = -1;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) lo = min(lo, warp_range[0][w]), hi = max(hi, warp_range[1][w]);
  const int tiles = (hi - lo) / kKeys + 1;  // hi >= lo: the block has at least one real row

  load_tile<D, kRows>(qs, qh, a.ldq, t0, a.rows);
  load_tile<D, kKeys>(ks, kh, a.ldk, lo, int64_t(hi) + 1);
  load_tile<D, kKeys>(vs, vh, a.ldv, lo, int64_t(hi) + 1);
  cp_async_commit();

  const float scale_log2 = 1.4426950408889634f * rsqrtf(float(D));  // log2(e) / sqrt(d)
  uint32_t qf[D / 16][4];  // the warp's Q rows as A fragments, one per 16 head dims
  float o[D / 8][4];       // O: 16 rows x D, as C fragments of 8 dims
  float m[2] = {-INFINITY, -INFINITY};  // running max of the prescaled scores, rows g, g + 8
  float l[2] = {0.0f, 0.0f};            // this thread's part of the running sums of 2^(s - m)
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;

  for (int tile = 0; tile < tiles; ++tile) {
    const int j0 = lo + tile * kKeys;
    const int stage = tile & 1;
    if (tile + 1 < tiles) {
      const int next = (tile + 1) & 1;
      load_tile<D, kKeys>(ks + next * kKeys * P, kh, a.ldk, j0 + kKeys, int64_t(hi) + 1);
      load_tile<D, kKeys>(vs + next * kKeys * P, vh, a.ldv, j0 + kKeys, int64_t(hi) + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (tile == 0) {
#pragma unroll
      for (int kd = 0; kd < D / 16; ++kd) ldmatrix_x4(qf[kd], qs + (warp * 16 + lane % 16) * P + kd * 16 + (lane / 16) * 8);
    }
    // Warp-uniform: skip a tile none of the warp's rows attends (sliding windows, gaps).
    if (j0 <= any_hi && j0 + kKeys - 1 >= any_lo) {
      const T* const kt = ks + stage * kKeys * P;
      const T* const vt = vs + stage * kKeys * P;
      // S = Q Kᵀ: 16 rows x 64 keys as 8 C fragments of 8 keys. One ldmatrix_x4 gives the
      // B fragments of 16 keys x 16 dims: matrices (keys 0-7 | 8-15) x (dims 0-7 | 8-15).
      float s[kKeys / 8][4];
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int kd = 0; kd < D / 16; ++kd) {
#pragma unroll
        for (int n = 0; n < kKeys / 16; ++n) {
          uint32_t b[4];
          ldmatrix_x4(b, kt + (n * 16 + lane % 8 + (lane / 16) * 8) * P + kd * 16 + ((lane / 8) % 2) * 8);
          mma_16816<T>(s[2 * n], qf[kd], b[0], b[1]);
          mma_16816<T>(s[2 * n + 1], qf[kd], b[2], b[3]);
        }
      }
      // Scale; mask keys outside a row's range to -inf unless the tile lies inside every
      // row's range (the common case under causal masking: all but the diagonal tile).
      const bool inside = j0 >= all_lo && j0 + kKeys - 1 <= all_hi;
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = j0 + n * 8 + 2 * c + (e & 1), r = e >> 1;
          s[n][e] = inside || (j >= first[r] && j <= last[r]) ? s[n][e] * scale_log2 : -INFINITY;
        }
      }
      // Online softmax per row: the 4 lanes of a quad share a row, 16 scores each.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = m[r];
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // A row with no key yet (mx = -inf) subtracts 0, so its weights are 2^-inf = 0
        // rather than NaN; its O and l are still 0, so the factor does not matter.
        const float base = mx == -INFINITY ? 0.0f : mx;
        const float corr = exp2_approx(m[r] - base);
        m[r] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < kKeys / 8; ++n) {
          s[n][2 * r] = exp2_approx(s[n][2 * r] - base);
          s[n][2 * r + 1] = exp2_approx(s[n][2 * r + 1] - base);
          sum += s[n][2 * r] + s[n][2 * r + 1];
        }
        l[r] = l[r] * corr + sum;
#pragma unroll
        for (int i = 0; i < D / 8; ++i) o[i][2 * r] *= corr, o[i][2 * r + 1] *= corr;
      }
      // O += P V, 16 keys per step: P's C fragments of keys 16 kk..+7 and +8..+15 are the
      // A fragment's left and right halves. One ldmatrix_x4_trans gives the B fragments
      // of 16 keys x 16 dims: matrices (keys 0-7 | 8-15) x (dims 0-7 | 8-15), transposed.
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        const uint32_t pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dn = 0; dn < D / 16; ++dn) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, vt + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * P + dn * 16 + (lane / 16) * 8);
          mma_16816<T>(o[2 * dn], pa, b[0], b[1]);
          mma_16816<T>(o[2 * dn + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next iteration's copy overwrites this stage
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int64_t t = t0 + warp * 16 + g + 8 * r;
    if (t < a.rows) {
      const float inv = 1.0f / l[r];  // > 0: a real row attends at least its own key
      T* const orow = out + t * a.ldo + h * D;
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        *reinterpret_cast<uint32_t*>(orow + i * 8 + 2 * c) = pack2<T>(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
      }
    }
  }
}

// Above 48 KB of dynamic shared memory a kernel must opt in, once per device.
template <class T, int D>
void allow_smem() {
  CUDA_CHECK(cudaFuncSetAttribute(flash_attention_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  int(kSmemBytes<D>)));
}

template <class T, int D>
void launch_flash(const T* q, const T* k, const T* v, const int32_t* pos, T* out, const AttentionArgs& a,
                  cudaStream_t s) {
  launch(flash_attention_kernel<T, D>, dim3(unsigned(a.heads), ceil_div(a.rows, kRows)), kThreads, kSmemBytes<D>, s,
         q, k, v, pos, out, a);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void flash_attention_init() {
  allow_smem<__half, 64>();
  allow_smem<__half, 128>();
  allow_smem<__nv_bfloat16, 64>();
  allow_smem<__nv_bfloat16, 128>();
}

bool flash_attention_supports(const AttentionArgs& a, const void* q, const void* k, const void* v, const void* out) {
  return (a.head_dim == 64 || a.head_dim == 128) && a.kv_heads > 0 && a.heads % a.kv_heads == 0 &&
         a.capacity <= INT_MAX && ceil_div(a.rows, kRows) <= 65535 && a.ldq % 8 == 0 && a.ldk % 8 == 0 && a.ldv % 8 == 0 && a.ldo % 8 == 0 &&
         aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out);
}

template <class T>
void flash_attention(const T* q, const T* k, const T* v, const int32_t* pos, T* out, const AttentionArgs& a,
                     cudaStream_t s) {
  if (a.head_dim == 64) {
    launch_flash<T, 64>(q, k, v, pos, out, a, s);
  } else {
    launch_flash<T, 128>(q, k, v, pos, out, a, s);
  }
}

template void flash_attention<__half>(const __half*, const __half*, const __half*, const int32_t*, __half*,
                                      const AttentionArgs&, cudaStream_t);
template void flash_attention<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*,
                                             const int32_t*, __nv_bfloat16*, const AttentionArgs&, cudaStream_t);

}  // namespace gptq::backend::cuda
