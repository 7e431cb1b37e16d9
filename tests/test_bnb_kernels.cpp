// The CPU bitsandbytes kernels (src/backend/cpu/bnb_linear.h) against their scalar twins,
// and the LLM.int8 product against the dense product it approximates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/bnb_linear.h"
#include "format/bnb_packed.h"

namespace gptq::backend::cpu {
namespace {

using quant::bnb::AbsmaxStorage;
using quant::bnb::BnbConfig;
using quant::bnb::BnbPacked;
using quant::bnb::BnbType;

std::vector<float> uniform(int64_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

struct Shape {
  int64_t N, K;
};
// K = 288 (stories15M: blocks span rows), odd K (rows start mid-byte), K = 576 and
// N % 8 != 0 (SmolLM2), K below one block.
const Shape kShapes[] = {{48, 288}, {37, 75}, {41, 576}, {9, 40}};

TEST(BnbKernels, FourBitMatchesTheTwin) {
  std::mt19937 rng(11);
  for (const Shape s : kShapes) {
    for (BnbType t : {BnbType::kNf4, BnbType::kFp4}) {
      for (AbsmaxStorage a : {AbsmaxStorage::kF32, AbsmaxStorage::kDoubleQuant}) {
        BnbPacked p = quant::bnb::quantize_4bit(uniform(s.N * s.K, rng, -0.1f, 0.1f), s.N, s.K,
                                                {.type = t, .blocksize = 64, .absmax = a});
        p.bias = uniform(s.N, rng);
        for (int64_t M : {1, 2, 3, 4, 5, 9}) {
          // Strided rows (ldx > K, ldy > N), as the model's views can be.
          const int64_t ldx = s.K + 3, ldy = s.N + 5;
          const std::vector<float> x = uniform(M * ldx, rng);
          std::vector<float> y(std::size_t(M * ldy), std::nanf("")), r(y.size(), std::nanf(""));
          bnb4_gemm(p, x.data(), M, ldx, y.data(), ldy);
          bnb4_gemm_ref(p, x.data(), M, ldx, r.data(), ldy);
          for (int64_t m = 0; m < M; ++m) {
            for (int64_t n = 0; n < s.N; ++n) {
              // Both sum the same K products in fp32 in different orders (the kernel
              // scales each block's partial sum by its absmax): each is within
              // γ_{K+2}·Σ|x·w| of the exact sum (Higham's worst case), so they are
              // within twice that of each other.
              double mag = std::fabs(p.bias[std::size_t(n)]);
              for (int64_t k = 0; k < s.K; ++k) {
                const int64_t i = n * s.K + k;
                mag += std::fabs(x[std::size_t(m * ldx + k)] *
                                 quant::bnb::code_value(t, quant::bnb::code_at(p, i)) * p.block_absmax(i / 64));
              }
              const double tol = 2.0 * double(s.K + 2) * std::ldexp(1.0, -24) * mag;
              const std::size_t at = std::size_t(m * ldy + n);
              ASSERT_NEAR(y[at], r[at], tol) << "type " << int(t) << " M=" << M << " N=" << s.N << " K=" << s.K
                                             << " at " << m << "," << n;
            }
          }
        }
      }
    }
  }
}

// x rows uniform in [-1, 1] with a few outlier columns of magnitude 8-10.
std::vector<float> with_outliers(int64_t M, int64_t K, std::mt19937& rng, const std::vector<int64_t>& cols) {
  std::vector<float> x = uniform(M * K, rng);
  std::uniform_real_distribution<float> big(8.0f, 10.0f);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k : cols) x[std::size_t(m * K + k)] = (m % 2 ? -1.0f : 1.0f) * big(rng);
  }
  return x;
}

TEST(BnbKernels, Int8MatchesTheTwinExactly) {
  std::mt19937 rng(12);
  for (const Shape s : kShapes) {
    for (float threshold : {6.0f, 0.0f}) {
      BnbPacked p = quant::bnb::quantize_int8(uniform(s.N * s.K, rng, -0.1f, 0.1f), s.N, s.K, threshold);
      p.bias = uniform(s.N, rng);
      for (int64_t M : {1, 3, 4, 9}) {
        const std::vector<float> x = with_outliers(M, s.K, rng, {1, s.K - 2});
        std::vector<float> y(std::size_t(M * s.N), std::nanf("")), r(y.size(), std::nanf(""));
        int8_gemm(p, x.data(), M, s.K, y.data(), s.N);
        int8_gemm_ref(p, x.data(), M, s.K, r.data(), s.N);
        // The same integer sums (exact) and the same fp32 operations in the same order.
        for (std::size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], r[i]) << "M=" << M << " K=" << s.K << " at " << i;
      }
    }
  }
}

TEST(BnbKernels, Int8FollowsTheDecompositionWrittenOut) {
  // bitsandbytes' MatMul8bitLt at inference, in double from the outlier columns the test
  // planted (not from the kernels' detection): r excludes the outliers, their columns
  // are zero in CA and multiply the dequantized weights in floating point. The kernel
  // must agree to fp32 rounding of its final scaling and of the outlier sum (a few ulps
  // of the terms' magnitude). With the decomposition missing, r would be 8-10 instead of
  // <= 1 and every CA different: errors of whole quantization steps.
  std::mt19937 rng(13);
  const int64_t N = 24, K = 288, M = 3;
  const BnbPacked p = quant::bnb::quantize_int8(uniform(N * K, rng, -0.1f, 0.1f), N, K, 6.0f);
  const auto* cb = reinterpret_cast<const int8_t*>(p.data.data());
  const std::vector<int64_t> cols = {5, 100, 287};
  const std::vector<float> x = with_outliers(M, K, rng, cols);
  std::vector<float> y(std::size_t(M * N));
  int8_gemm(p, x.data(), M, K, y.data(), N);
  auto outlier = [&](int64_t k) { return std::find(cols.begin(), cols.end(), k) != cols.end(); };
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x.data() + m * K;
    float r = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      if (!outlier(k)) r = std::max(r, std::fabs(xr[k]));
    }
    for (int64_t n = 0; n < N; ++n) {
      const double scb = p.absmax[std::size_t(n)];
      int64_t dot = 0;
      double fp = 0.0, mag = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t w8 = cb[n * K + k];
        if (outlier(k)) {
          fp += double(xr[k]) * double(w8) * scb / 127.0;
          mag += std::fabs(double(xr[k]) * double(w8) * scb / 127.0);
        } else {
          dot += int64_t(std::nearbyint(xr[k] * (127.0f / r))) * w8;
        }
      }
      const double main = double(dot) * r * scb / (127.0 * 127.0);
      const double want = main + fp;
      EXPECT_NEAR(y[std::size_t(m * N + n)], want, 8 * std::ldexp(1.0, -24) * (std::fabs(main) + mag)) << m << "," << n;
    }
  }
}

}  // namespace
}  // namespace gptq::backend::cpu
