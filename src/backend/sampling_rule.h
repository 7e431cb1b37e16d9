// The sampling rule every backend implements (Backend::sample), and the arithmetic it
// is defined in, compiled as the same source for the host and for CUDA devices so that
// backends agree bit for bit: for the same logits and the same uniform, every backend
// returns the same id, and the same seed gives the same text everywhere.
//
// The rule, for one logits row x[0, V) and a uniform u in [0, 1):
//   order   i comes before j when x_i > x_j, or x_i == x_j and i < j: descending logit,
//           ties by lower index (a strict total order; -0 and +0 are equal).
//   weight  w_i = exp((x_i - max x) / T) as an integer in units of 2⁻⁴² (fixed_weight);
//           masses are exact integer sums of weights, the same in any summation order.
//   top-k   K1 = the first k tokens in that order (all V when k = 0 or k >= V).
//   top-p   K2 = the shortest prefix of K1 whose mass reaches top_p_target(mass(K1))
//           (K1 itself when top_p = 1 or no prefix does). Top-k then top-p is the order
//           of transformers' warpers.
//   draw    the first token of K2 at which the running mass reaches
//           draw_target(u, mass(K2)) = floor(u · mass(K2)) + 1, i.e. exceeds u · mass(K2)
//           (the last token of K2 should none, which only a u outside [0, 1) can cause).
// Each cut is "the first token at which a running count or mass reaches a target" over a
// prefix of one order, so a GPU finds it by radix selection on the logits' bits, without
// sorting (backend/cuda/sampling.cu); the CPU sorts (backend/cpu/sampling.cpp).
//
// Why integers: the running masses decide which token is drawn, and fp32 sums taken in a
// different order (a GPU's reduction tree, its histogram atomics) differ in their last
// bits, which moves the drawn token whenever u · mass falls between the two sums. An
// exp written only with correctly rounded IEEE operations (no library exp, explicit
// fmaf so no compiler contracts differently), rounded to fixed point, gives the same
// integer on every IEEE machine, and integer sums are exact. The weight is within
// ~2 ulp of fp32 exp plus 2⁻⁴³ absolute; the uniforms are on a grid of 2⁻²⁴
// (eval::Sampler): far below what a sampled distribution can show.
//
// T = 0 is greedy: the argmax (lowest index among equal maxima). Logits must be finite or
// -inf (weight 0); with a NaN every backend still returns an id in [0, V), not the same.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define GPTQ_HOST_DEVICE __host__ __device__
#else
#define GPTQ_HOST_DEVICE
#endif

namespace gptq::backend::sampling {

inline constexpr int kFixedBits = 42;  // the weight 1 (the maximum's) is 2⁴²
// Fewer tokens than this keep every mass below 2⁶⁴ (at most 2⁴² each).
inline constexpr int64_t kMaxVocab = int64_t(1) << 22;

// The float's bits mapped so that unsigned comparison is numeric comparison, with -0
// mapped onto +0.
GPTQ_HOST_DEVICE inline uint32_t order_key(float v) {
#ifdef __CUDA_ARCH__
  uint32_t b = __float_as_uint(v);
#else
  uint32_t b = 0;
  std::memcpy(&b, &v, sizeof b);
#endif
  if (b == 0x80000000u) b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// round(exp((x - max) / T) · 2⁴²) for x <= max, T > 0, from IEEE operations only:
// a = (x - max) / T (two correctly rounded operations), a = n·ln2 + r with n = rint(a·log₂e)
// (Cody–Waite, ln2 in two parts), exp(r) by its degree-7 Taylor polynomial in Horner form
// (|r| <= 0.347: truncation 5e-9, below an fp32 ulp), then the exact scaling by 2^(42+n)
// and rounding to the nearest integer. Below a = -50 the weight is under 2⁻⁷², i.e. 0.
GPTQ_HOST_DEVICE inline uint64_t fixed_weight(float x, float max, float temperature) {
  const float a = (x - max) / temperature;
  if (!(a >= -50.0f)) return 0;  // also NaN
  const float n = rintf(a * 0x1.715476p+0f);
  float r = fmaf(-n, 0x1.62e430p-1f, a);
  r = fmaf(-n, -0x1.05c610p-29f, r);
  float p = 0x1.a01a02p-13f;  // 1/7!
  p = fmaf(p, r, 0x1.6c16c2p-10f);
  p = fmaf(p, r, 0x1.111112p-7f);
  p = fmaf(p, r, 0x1.555556p-5f);
  p = fmaf(p, r, 0x1.555556p-3f);
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.0f);
  p = fmaf(p, r, 1.0f);
  return uint64_t(llrintf(ldexpf(p, kFixedBits + int(n))));
}

// The mass top-p must reach: ceil(top_p · mass), at least 1.
GPTQ_HOST_DEVICE inline uint64_t top_p_target(float top_p, uint64_t mass) {
  const uint64_t t = uint64_t(ceil(double(top_p) * double(mass)));
  return t > 0 ? t : 1;
}

// The mass the draw must reach: floor(u · mass) + 1, at most mass for u in [0, 1) (u has
// 24 bits, so u · mass is at least 2⁻²⁴ · mass below mass, far more than fp64 rounding).
GPTQ_HOST_DEVICE inline uint64_t draw_target(float u, uint64_t mass) {
  return uint64_t(floor(double(u) * double(mass))) + 1;
}

}  // namespace gptq::backend::sampling
