// The CPU's 16-bit dense products (backend/cpu/cpu_linear.h): the one-row GEMV that widens
// in registers and the tiled path, each against a float64 sum of the same rounded
// weights, within the fp32 accumulation bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_linear.h"
#include "core/dtype.h"
#include "io/checkpoint.h"

namespace gptq::backend::cpu {
namespace {

TEST(CpuDense, SixteenBitProductsAgainstFloat64) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (DType dt : {DType::kF16, DType::kBF16}) {
    // K across the GEMV's paths: 32-wide body, 8-wide tail, scalar tail.
    for (int64_t K : {1, 7, 8, 9, 31, 32, 33, 40, 288, 577}) {
      const int64_t N = 37;
      std::vector<uint16_t> w(std::size_t(N * K));
      std::vector<float> wf(w.size());
      for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] = dt == DType::kF16 ? f32_to_f16(u(rng)) : f32_to_bf16(u(rng));
        wf[i] = dt == DType::kF16 ? f16_to_f32(w[i]) : bf16_to_f32(w[i]);
      }
      std::vector<float> bias(static_cast<std::size_t>(N));
      for (float& b : bias) b = u(rng);
      std::vector<std::byte> wb(w.size() * 2), bb(bias.size() * 4);
      std::memcpy(wb.data(), w.data(), wb.size());
      std::memcpy(bb.data(), bias.data(), bb.size());
      const io::TensorView wv{.name = "w", .dtype = dt, .shape = {N, K}, .data = wb};
      const io::TensorView bv{.name = "b", .dtype = DType::kF32, .shape = {N}, .data = bb};
      const DenseLinear lin(wv, &bv);
      for (int64_t M : {1, 3}) {  // 1: the register GEMV; 3: widened tiles + sgemm
        std::vector<float> x(std::size_t(M * K)), y(std::size_t(M * N), NAN);
        for (float& v : x) v = u(rng);
        lin.forward(x.data(), M, K, y.data(), N);
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t n = 0; n < N; ++n) {
            double ref = 0.0, mag = 0.0;
            for (int64_t k = 0; k < K; ++k) {
              const double p = double(wf[std::size_t(n * K + k)]) * double(x[std::size_t(m * K + k)]);
              ref += p, mag += std::fabs(p);
            }
            // In fp32 each of the K products (a 24-bit x times an 11- or 8-bit weight) and
            // each of the K − 1 sums rounds once, in any order: |err| <= (2K − 1) u Σ|w x|
            // (first order), plus the bias add's rounding, u |y|, with some slack.
            const double u32 = std::ldexp(1.0, -24);
            const double y_ref = ref + double(bias[std::size_t(n)]);
            const double tol = double(2 * K) * u32 * mag + 2 * u32 * std::fabs(y_ref) + 1e-30;
            EXPECT_NEAR(y[std::size_t(m * N + n)], y_ref, tol)
                << dtype_name(dt) << " M=" << M << " K=" << K << " n=" << n;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace gptq::backend::cpu
