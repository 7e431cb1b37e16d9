// CPU quantized-linear kernels (src/backend/cpu/qlinear.h): the scalar reference against
// exact arithmetic, and the fused and tiled paths against the reference.
//
// Tolerance. With unit roundoff u = 2^-24 and γ_n = n·u / (1 - n·u), a sum of n fp32
// products in any order is off by at most γ_n Σ|x||w| (Higham, Accuracy and Stability
// of Numerical Algorithms, §3.1). The paths differ in how they form each weight:
//   reference  w = s·(q - z), one rounding, then a K-term sum plus bias;
//   act-order  w = q·s - fl(s·z) with an fma: error ≤ u·(q·|s| + |s|·z) + u·|w|;
//   sequential per group y += s·Σx·q - fl(s·z)·Σx, i.e. the products x·q and x·z are
//              summed separately, so cancellation between them is not free.
// Every variant is a sum of at most 2K + G + 2 ≤ 3K + 2 rounded terms, each bounded by
// |x|·|s|·(q + z) (or |bias|), so each path's error from the exact value is at most
// γ_{3K+8}·B with B = |bias| + Σ_k |x_k|·|s_{g(k),n}|·(q_{n,k} + z_{g(k),n}), and two
// paths differ by at most twice that. The bound is computed per output from the data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <omp.h>

#include "backend/cpu/qlinear.h"
#include "core/dtype.h"
#include "format/packing.h"
#include "format/random_layer.h"

namespace gptq::backend::cpu {
namespace {

using quant::Format;
using quant::PackedLinear;
using quant::QuantizedLinear;

double gamma(int64_t n) {
  const double u = std::ldexp(1.0, -24);
  return double(n) * u / (1.0 - double(n) * u);
}

struct Case {
  int bits;
  int64_t K, N;
  int group_size;
  bool act_order, sym, bias;
};

std::string name(const Case& c, int64_t M) {
  return "bits=" + std::to_string(c.bits) + " K=" + std::to_string(c.K) + " N=" +
         std::to_string(c.N) + " group_size=" + std::to_string(c.group_size) +
         " act_order=" + std::to_string(c.act_order) + " sym=" + std::to_string(c.sym) +
         " bias=" + std::to_string(c.bias) + " M=" + std::to_string(M);
}

QuantizedLinear random_layer(const Case& c, std::mt19937& rng) {
  return quant::random_quantized_linear({.bits = c.bits, .in_features = c.K, .out_features = c.N, .group_size = c.group_size,
                                  .act_order = c.act_order, .sym = c.sym, .bias = c.bias},
                                 rng());
}

// B[m, n] of the header comment.
std::vector<double> error_scale(const QuantizedLinear& q, const std::vector<float>& x, int64_t M) {
  const int64_t K = q.in_features, N = q.out_features;
  std::vector<double> b(std::size_t(M * N));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double sum = q.bias.empty() ? 0.0 : std::fabs(q.bias[n]);
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = q.g_idx[k];
        sum += std::fabs(x[m * K + k]) * std::fabs(q.scales[g * N + n]) *
               (q.q[n * K + k] + q.zeros[g * N + n]);
      }
      b[m * N + n] = sum;
    }
  }
  return b;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<double>& tol, const char* what) {
  int reported = 0;
  for (std::size_t i = 0; i < got.size() && reported < 5; ++i) {
    if (!(std::fabs(double(got[i]) - want[i]) <= tol[i])) {
      ADD_FAILURE() << what << " output " << i << ": " << got[i] << " vs " << want[i]
                    << " (tolerance " << tol[i] << ")";
      ++reported;
    }
  }
}

// Packs the layer (v1 then converted, as a loader would), runs every path on M rows and
// checks them: reference vs exact, fused and tiled vs reference.
void check_case(const Case& c, int64_t M, uint32_t seed) {
  SCOPED_TRACE(name(c, M));
  std::mt19937 rng(seed);
  const QuantizedLinear q = random_layer(c, rng);
  PackedLinear packed = quant::pack(q, Format::kV1);
  quant::convert_v1_zeros_to_v2(packed);
  const PackedLinearView view = make_view(packed);
  EXPECT_EQ(view.sequential_groups, !c.act_order || q.num_groups() == 1);

  const int64_t K = c.K, N = c.N;
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> x(std::size_t(M * K));
  for (auto& v : x) v = value(rng);

  std::vector<double> exact(std::size_t(M * N));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double sum = q.bias.empty() ? 0.0 : q.bias[n];
      for (int64_t k = 0; k < K; ++k) sum += double(x[m * K + k]) * double(q.dequant(n, k));
      exact[m * N + n] = sum;
    }
  }
  const std::vector<double> b = error_scale(q, x, M);
  std::vector<double> one_path(b.size()), two_paths(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) {
    one_path[i] = gamma(3 * K + 8) * b[i];
    two_paths[i] = 2 * one_path[i];
  }

  std::vector<float> ref(std::size_t(M * N)), fused(ref.size()), tiled(ref.size()), fwd(ref.size());
  qgemm_ref(view, x.data(), M, ref.data());
  qlinear_fused(view, x.data(), M, fused.data());
  qlinear_tiled(view, x.data(), M, tiled.data());
  qlinear_forward(view, x.data(), M, fwd.data());
  expect_close(ref, exact, one_path, "reference vs exact");
  const std::vector<double> ref_d(ref.begin(), ref.end());
  expect_close(fused, ref_d, two_paths, "fused vs reference");
  expect_close(tiled, ref_d, two_paths, "tiled vs reference");
  // The entry point is exactly one of the two paths, chosen by M.
  EXPECT_EQ(fwd, M <= kFusedMaxRows ? fused : tiled);
}

TEST(QLinear, AllPathsMatchReference) {
  uint32_t seed = 100;
  for (int bits : {2, 3, 4, 8}) {
    for (bool act_order : {false, true}) {
      // K, N: N below one vector, vector + tail, several wide tiles + vector + tail;
      // group sizes that are / are not a multiple of a 3-bit block, and one group.
      const Case cases[] = {
          {bits, 32, 3, -1, act_order, true, false},
          {bits, 64, 40, 32, act_order, false, true},
          {bits, 288, 77, 32, act_order, false, true},
          {bits, 256, 300, 64, act_order, true, true},
          {bits, 96, 19, 48, act_order, false, false},
          // SmolLM2's K = 576 at group 128: four whole groups and a partial one of 64.
          {bits, 576, 41, 128, act_order, false, true},
      };
      for (const Case& c : cases) {
        for (int64_t M : {1, 2, 3, 4, 5, 64}) check_case(c, M, seed++);
      }
    }
  }
}

TEST(QLinear, OddThreadCountsSplitColumnsCorrectly) {
  const int saved = omp_get_max_threads();
  for (int threads : {1, 3, 5}) {
    omp_set_num_threads(threads);
    SCOPED_TRACE("threads=" + std::to_string(threads));
    check_case({4, 128, 100, 32, false, false, true}, 1, 7);
    check_case({3, 128, 100, 32, true, false, true}, 3, 8);
  }
  omp_set_num_threads(saved);
}

TEST(QLinear, EmptyBatchWritesNothing) {
  std::mt19937 rng(1);
  const QuantizedLinear q = random_layer({4, 32, 8, -1, false, true, true}, rng);
  const PackedLinear packed = quant::pack(q, Format::kV2);
  const PackedLinearView view = make_view(packed);
  float y = 42.0f;
  qlinear_forward(view, nullptr, 0, &y);
  qlinear_tiled(view, nullptr, 0, &y);
  EXPECT_EQ(y, 42.0f);
}

}  // namespace
}  // namespace gptq::backend::cpu
