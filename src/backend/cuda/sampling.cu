// Backend::sample, one block per row, no sort. Every cut of the rule (backend/
// sampling_rule.h: top-k, top-p, the draw) is "the first token, in descending-logit order
// with ties by lower index, at which a running count or mass reaches a target", taken
// over a prefix of that order. select() finds that token by radix selection on the
// logit's order-preserving bit pattern (the key): 8-bit digits, most significant first,
// each pass a 256-bin histogram (count and mass) of the tokens still in play; the first
// bin (from the top) at which the running sum reaches the target fixes the digit. Once
// every digit is fixed, the tokens with exactly that key are scanned in index order.
// Passes over the row: one for the maximum, then per cut 2 (f16, bf16: 16-bit keys) or
// 4 (f32) histogram passes and one scan; the weights (an exp each) are computed only for
// tokens still in play, so after top-k the later cuts cost little more than the loads.
//
// Weights and masses are the rule's integers (sampling::fixed_weight), so the shared-
// memory atomics of the histograms, whatever their order, give exactly the sums the CPU
// reference forms in sorted order: the same id as the CPU for the same logits and u.
#include <cmath>

#include "backend/cuda/sampling.cuh"

namespace gptq::backend::cuda {
namespace {

using u64 = unsigned long long;  // the type atomicAdd and the shuffles take

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kDigitBits = 8;
constexpr int kBins = 1 << kDigitBits;

// The order-preserving key of a stored value: unsigned comparison of keys is numeric
// comparison of values, with -0 mapped onto +0 (ties in the rule's sense). 16-bit types
// key on their own 16 bits, which halves the histogram passes; their order is the order
// of the floats they convert to, which the CPU reference sorts (its key is the float's).
template <class T>
struct Keys;
template <>
struct Keys<float> {
  static constexpr int kBits = 32;
  __device__ static uint32_t key(float v) { return sampling::order_key(v); }
};
__device__ __forceinline__ uint32_t key16(uint32_t b) {
  if (b == 0x8000u) b = 0;
  return (b & 0x8000u) ? (~b & 0xFFFFu) : (b | 0x8000u);
}
template <>
struct Keys<__half> {
  static constexpr int kBits = 16;
  __device__ static uint32_t key(__half v) { return key16(__half_as_ushort(v)); }
};
template <>
struct Keys<__nv_bfloat16> {
  static constexpr int kBits = 16;
  __device__ static uint32_t key(__nv_bfloat16 v) { return key16(__bfloat16_as_ushort(v)); }
};

// A count of tokens and their mass (fixed point).
struct Tally {
  u64 count;
  u64 mass;
  __device__ Tally operator+(const Tally& o) const { return {count + o.count, mass + o.mass}; }
  __device__ Tally operator-(const Tally& o) const { return {count - o.count, mass - o.mass}; }
};
enum class By { kCount, kMass };
__device__ __forceinline__ u64 measure(const Tally& t, By by) { return by == By::kCount ? t.count : t.mass; }

// A prefix of the order, named by its last token: {i : key_i > key, or key_i == key and
// i <= index}. Cut{0, INT64_MAX} holds every token (all keys are >= 0).
struct Cut {
  uint32_t key;
  int64_t index;
};
__device__ __forceinline__ bool inside(uint32_t k, int64_t i, const Cut& c) {
  return k > c.key || (k == c.key && i <= c.index);
}

// One logits row [n] and what turns a logit into a weight.
template <class T>
struct Row {
  const T* x;
  int64_t n;
  float max;
  float temperature;
  __device__ u64 mass(T v) const { return sampling::fixed_weight(to_f32(v), max, temperature); }
};

struct Shared {
  u64 count[kBins];
  u64 mass[kBins];
  u64 warp_count[kWarps];
  u64 warp_mass[kWarps];
  float warp_max[kWarps];
  Cut cut;
  Tally tally;
  int digit;
  bool found;
};

__device__ float block_max(float v, Shared& sh) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x % 32 == 0) sh.warp_max[threadIdx.x / 32] = v;
  __syncthreads();
  v = -INFINITY;
  for (int w = 0; w < kWarps; ++w) v = fmaxf(v, sh.warp_max[w]);
  __syncthreads();
  return v;
}

// Inclusive scan of t over the lanes of a warp.
__device__ Tally warp_inclusive_scan(Tally t) {
  const int lane = threadIdx.x % 32;
  for (int o = 1; o < 32; o <<= 1) {
    const u64 c = __shfl_up_sync(0xffffffffu, t.count, o);
    const u64 m = __shfl_up_sync(0xffffffffu, t.mass, o);
    if (lane >= o) t = t + Tally{c, m};
  }
  return t;
}

// The exclusive scan of v over the block in thread order; *total gets the block's sum.
__device__ Tally block_exclusive_scan(Tally v, Tally* total, Shared& sh) {
  const Tally inc = warp_inclusive_scan(v);
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 31) sh.warp_count[warp] = inc.count, sh.warp_mass[warp] = inc.mass;
  __syncthreads();
  Tally base{0, 0}, all{0, 0};
  for (int w = 0; w < kWarps; ++w) {
    const Tally t{sh.warp_count[w], sh.warp_mass[w]};
    if (w < warp) base = base + t;
    all = all + t;
  }
  __syncthreads();
  *total = all;
  return base + inc - v;
}

// The first token of `limit` (in the rule's order) at which the running count or mass
// (`by`) reaches target >= 1: *cut ends there and *through is the tally of the prefix
// it ends. When the whole of `limit` falls short, returns false with *cut = limit and
// *through = its tally. Called by every thread of the block.
template <class T>
__device__ bool select(const Row<T>& row, const Cut& limit, By by, u64 target, Cut* cut, Tally* through,
                       Shared& sh) {
  const int tid = threadIdx.x, lane = tid % 32;
  uint32_t prefix = 0;  // the digits fixed so far, in place
  Tally above{0, 0};    // tokens of `limit` whose key is above every key still in play
  for (int shift = Keys<T>::kBits - kDigitBits; shift >= 0; shift -= kDigitBits) {
    for (int d = tid; d < kBins; d += kThreads) sh.count[d] = 0, sh.mass[d] = 0;
    __syncthreads();
    // In play: tokens of `limit` whose key agrees with `prefix` above this digit.
    const uint32_t high = shift + kDigitBits >= 32 ? 0u : ~0u << (shift + kDigitBits);
    for (int64_t i = tid; i < row.n; i += kThreads) {
      const T v = row.x[i];
      const uint32_t k = Keys<T>::key(v);
      if (((k ^ prefix) & high) != 0 || !inside(k, i, limit)) continue;
      const int d = int(k >> shift) & (kBins - 1);
      atomicAdd(&sh.count[d], 1ull);
      atomicAdd(&sh.mass[d], row.mass(v));
    }
    __syncthreads();
    if (tid < 32) {
      // Lane L sums digits 255 - 8L down to 248 - 8L (higher keys come first in the
      // order); the first lane whose running sum reaches the target walks its bins.
      constexpr int kPerLane = kBins / 32;
      Tally own{0, 0};
      for (int j = 0; j < kPerLane; ++j) {
        const int d = kBins - 1 - kPerLane * lane - j;
        own = own + Tally{sh.count[d], sh.mass[d]};
      }
      const Tally inc = warp_inclusive_scan(own);
      const unsigned reached = __ballot_sync(0xffffffffu, measure(above + inc, by) >= target);
      if (reached == 0) {
        if (lane == 31) sh.found = false, sh.tally = above + inc;
      } else if (lane == __ffs(reached) - 1) {
        Tally run = above + inc - own;
        for (int j = 0; j < kPerLane; ++j) {
          const int d = kBins - 1 - kPerLane * lane - j;
          const Tally bin{sh.count[d], sh.mass[d]};
          if (measure(run + bin, by) >= target) {
            sh.digit = d;
            break;
          }
          run = run + bin;
        }
        sh.found = true, sh.tally = run;
      }
    }
    __syncthreads();
    const bool found = sh.found;
    if (!found) *cut = limit, *through = sh.tally;  // only on the first digit: later ones narrow a bin that reached
    prefix |= uint32_t(sh.digit) << shift;
    above = sh.tally;
    __syncthreads();
    if (!found) return false;
  }
  // Every digit fixed: the tokens of `limit` with key == prefix, in index order, hold the
  // one where the target is reached (above < target <= above + their tally). Thread t
  // scans the contiguous slice [t * per, (t + 1) * per).
  const int64_t per = (row.n + kThreads - 1) / kThreads;
  const int64_t lo = min(row.n, tid * per), hi = min(row.n, lo + per);
  Tally own{0, 0};
  for (int64_t i = lo; i < hi; ++i) {
    const T v = row.x[i];
    const uint32_t k = Keys<T>::key(v);
    if (k == prefix && inside(k, i, limit)) own = own + Tally{1, row.mass(v)};
  }
  Tally total;
  Tally run = above + block_exclusive_scan(own, &total, sh);
  if (measure(run, by) < target && measure(run + own, by) >= target) {  // exactly one thread
    for (int64_t i = lo; i < hi; ++i) {
      const T v = row.x[i];
      const uint32_t k = Keys<T>::key(v);
      if (k != prefix || !inside(k, i, limit)) continue;
      run = run + Tally{1, row.mass(v)};
      if (measure(run, by) >= target) {
        sh.cut = Cut{prefix, i}, sh.tally = run;
        break;
      }
    }
  }
  __syncthreads();
  *cut = sh.cut, *through = sh.tally;
  __syncthreads();
  return true;
}

// The tally of the whole row.
template <class T>
__device__ Tally row_tally(const Row<T>& row, Shared& sh) {
  Tally own{0, 0};
  for (int64_t i = threadIdx.x; i < row.n; i += kThreads) own = own + Tally{1, row.mass(row.x[i])};
  Tally total;
  block_exclusive_scan(own, &total, sh);
  return total;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    sample_kernel(const T* logits, int64_t ld, const float* uniforms, int32_t* out, int64_t vocab, float temperature,
                  int64_t top_k, float top_p) {
  pdl_begin();
  __shared__ Shared sh;
  const T* x = logits + int64_t(blockIdx.x) * ld;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) mx = fmaxf(mx, to_f32(x[i]));
  const Row<T> row{x, vocab, block_max(mx, sh), temperature};

  // top-k: the k-th token by count; its prefix's mass is mass(K1).
  const Cut whole{0, INT64_MAX};
  Cut kept = whole;
  Tally tally;
  if (top_k > 0 && top_k < vocab) {
    select(row, whole, By::kCount, u64(top_k), &kept, &tally, sh);
  } else {
    tally = row_tally(row, sh);
  }
  // top-p: the first token at which the mass reaches top_p · mass(K1).
  if (top_p < 1.0f) select(row, kept, By::kMass, sampling::top_p_target(top_p, tally.mass), &kept, &tally, sh);
  // The draw: the first token at which the mass exceeds u · mass(K2); should none (a u
  // outside [0, 1)), the last token of K2 (by count), as in the reference.
  Cut chosen;
  Tally through;
  if (!select(row, kept, By::kMass, sampling::draw_target(uniforms[blockIdx.x], tally.mass), &chosen, &through, sh)) {
    select(row, kept, By::kCount, tally.count, &chosen, &through, sh);
  }
  if (threadIdx.x == 0) out[blockIdx.x] = int32_t(chosen.index);
}

}  // namespace

template <class T>
void sample(const T* logits, int64_t ld, const float* uniforms, int32_t* out, int64_t rows, int64_t vocab,
            float temperature, int64_t top_k, float top_p, cudaStream_t s) {
  if (rows == 0) return;
  launch(sample_kernel<T>, unsigned(rows), kThreads, 0, s, logits, ld, uniforms, out, vocab, temperature, top_k, top_p);
}

template void sample<float>(const float*, int64_t, const float*, int32_t*, int64_t, int64_t, float, int64_t, float,
                            cudaStream_t);
template void sample<__half>(const __half*, int64_t, const float*, int32_t*, int64_t, int64_t, float, int64_t, float,
                             cudaStream_t);
template void sample<__nv_bfloat16>(const __nv_bfloat16*, int64_t, const float*, int32_t*, int64_t, int64_t, float,
                                    int64_t, float, cudaStream_t);

}  // namespace gptq::backend::cuda
