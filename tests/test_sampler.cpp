// The sampling rule (backend/sampling_rule.h) and eval::Sampler on the host: the fixed-
// point weight against exp, the cuts on hand-worked rows, the distribution drawn against
// the exact one (chi-square), greedy as argmax, and the host row and the CPU backend
// giving the same ids. The backend-against-CPU agreement is tests/test_backend_ops.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "backend/cpu/sampling.h"
#include "backend/sampling_rule.h"
#include "eval/sampler.h"
#include "test_util.h"

namespace gptq {
namespace {

using backend::SampleParams;
using backend::cpu::sample_row;

TEST(SamplingRule, FixedWeightIsExpInUnitsOfTwoToTheMinus42) {
  // Per sampling_rule.h: the reduction costs <= 1 ulp, the Horner steps and the
  // polynomial's truncation <= 2 ulp, the scaling is exact and the final rounding
  // 2⁻⁴³ absolute; an fp32 ulp is <= 2⁻²³ relative: |w − e^a| <= 2⁻²¹·e^a + 2⁻⁴³.
  EXPECT_EQ(backend::sampling::fixed_weight(3.5f, 3.5f, 0.7f), uint64_t(1) << 42);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-60.0f, 0.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = d(rng), T = i % 3 == 0 ? 0.5f : i % 3 == 1 ? 1.0f : 1.7f;
    const float a = x / T;  // max = 0: the argument the rule computes
    const double want = std::exp(double(a));
    const double got = std::ldexp(double(backend::sampling::fixed_weight(x, 0.0f, T)), -42);
    ASSERT_LE(std::fabs(got - want), std::ldexp(want, -21) + std::ldexp(1.0, -43)) << "x=" << x << " T=" << T;
  }
  EXPECT_EQ(backend::sampling::fixed_weight(-std::numeric_limits<float>::infinity(), 0.0f, 1.0f), 0u);
}

TEST(SamplingRule, OrderKeyOrdersLikeTheFloats) {
  const std::vector<float> v = {-std::numeric_limits<float>::infinity(), -1e30f, -2.5f, -1e-40f, -0.0f, 0.0f,
                                1e-40f, 1.0f, 3e38f, std::numeric_limits<float>::infinity()};
  for (std::size_t i = 0; i + 1 < v.size(); ++i) {
    const uint32_t a = backend::sampling::order_key(v[i]), b = backend::sampling::order_key(v[i + 1]);
    if (v[i] == v[i + 1]) {
      EXPECT_EQ(a, b) << v[i];
    } else {
      EXPECT_LT(a, b) << v[i] << " < " << v[i + 1];
    }
  }
}

TEST(SamplingRule, CutsOnAHandWorkedRow) {
  // Weights at T = 1 in order: tokens 1, 2 (tie: lower index first) weigh 1 each, token 3
  // e⁻¹, token 0 e⁻². Mass 2.5032.
  const std::vector<float> x = {1.0f, 3.0f, 3.0f, 2.0f};
  const auto id = [&](int64_t k, float p, float u) { return sample_row(x, {.temperature = 1.0f, .top_k = k, .top_p = p}, u); };
  // top-k 1: the first of the tie, whatever u.
  EXPECT_EQ(id(1, 1.0f, 0.0f), 1);
  EXPECT_EQ(id(1, 1.0f, 0.999f), 1);
  // top-k 2: tokens 1 and 2, half the mass each: u < 1/2 draws 1, u >= 1/2 draws 2.
  EXPECT_EQ(id(2, 1.0f, 0.4999f), 1);
  EXPECT_EQ(id(2, 1.0f, 0.5f), 2);
  // top-p 0.3 keeps one token (0.3 · 2.503 = 0.75 <= 1); 0.4 and 0.79 two (1.001, 1.978
  // in (1, 2]); 0.8 three (2.003 > 2).
  EXPECT_EQ(id(0, 0.3f, 0.999f), 1);
  EXPECT_EQ(id(0, 0.4f, 0.999f), 2);
  EXPECT_EQ(id(0, 0.79f, 0.999f), 2);
  EXPECT_EQ(id(0, 0.8f, 0.999f), 3);
  // The whole row: the last token holds the top e⁻²/2.503 = 5.4% of [0, 1).
  EXPECT_EQ(id(0, 1.0f, 0.95f), 0);
  EXPECT_EQ(id(0, 1.0f, 0.94f), 3);
  // Greedy: the argmax, lowest index among equal maxima.
  EXPECT_EQ(sample_row(x, {.temperature = 0.0f}, 0.7f), 1);
}

TEST(SamplingRule, RejectsBadArguments) {
  const std::vector<float> x = {0.0f, 1.0f};
  test::expect_error([&] { sample_row(x, {}, 1.0f); }, "uniform", ErrorKind::kInvalidArgument);
  test::expect_error([&] { sample_row(x, {.top_p = 0.0f}, 0.5f); }, "top-p", ErrorKind::kInvalidArgument);
  test::expect_error([&] { sample_row(x, {.temperature = -1.0f}, 0.5f); }, "temperature", ErrorKind::kInvalidArgument);
  test::expect_error([&] { sample_row({}, {}, 0.5f); }, "logits row", ErrorKind::kInvalidArgument);
}

// The exact distribution of the rule for logits given in descending order (ties already
// in index order), computed directly from its definition in fp64.
std::vector<double> exact_distribution(const std::vector<double>& desc, double T, std::size_t k, double p) {
  k = k == 0 ? desc.size() : std::min(k, desc.size());
  std::vector<double> w(k);
  double m1 = 0.0;
  for (std::size_t j = 0; j < k; ++j) m1 += w[j] = std::exp((desc[j] - desc[0]) / T);
  std::size_t n = 0;
  double c = 0.0;
  while (n < k && c < p * m1) c += w[n++];
  w.resize(n);
  for (double& v : w) v /= c;
  return w;
}

TEST(Sampler, DrawsTheRulesDistribution) {
  // Eight logits in descending order L placed at positions perm (the tie 2, 2 at
  // positions 0 < 3, so index order agrees with L's order).
  const std::vector<double> L = {3.0, 2.0, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0};
  const std::vector<int> perm = {5, 0, 3, 7, 1, 6, 2, 4};
  std::vector<float> row(L.size());
  for (std::size_t j = 0; j < L.size(); ++j) row[std::size_t(perm[j])] = float(L[j]);
  struct Case {
    float T;
    int64_t k;
    float p;
  };
  for (const Case& c : {Case{1.0f, 0, 1.0f}, Case{0.7f, 5, 1.0f}, Case{1.5f, 0, 0.8f}, Case{1.0f, 2, 1.0f},
                        Case{1.0f, 6, 0.6f}, Case{2.0f, 0, 1.0f}}) {
    const std::vector<double> q = exact_distribution(L, c.T, std::size_t(c.k), c.p);
    eval::Sampler s({.temperature = c.T, .top_k = c.k, .top_p = c.p, .seed = 11});
    constexpr int kDraws = 40000;
    std::vector<int> count(L.size(), 0);
    for (int i = 0; i < kDraws; ++i) ++count[std::size_t(s.next(row))];
    // Tokens the cuts remove are never drawn; the kept ones by Pearson's chi-square with
    // q.size() - 1 degrees of freedom, against its 1 − 10⁻⁶ quantile (Wilson–Hilferty:
    // df·(1 − 2/(9df) + z·√(2/(9df)))³, z = 4.753): a correct sampler fails one seed in
    // a million; a probability off by 1% of a 10% token adds ~4 to the statistic.
    double chi2 = 0.0;
    for (std::size_t j = 0; j < L.size(); ++j) {
      const int n = count[std::size_t(perm[j])];
      if (j >= q.size()) {
        EXPECT_EQ(n, 0) << "token of rank " << j << " is outside the kept set (T=" << c.T << " k=" << c.k << ")";
        continue;
      }
      const double e = q[j] * kDraws;
      chi2 += (n - e) * (n - e) / e;
    }
    if (q.size() < 2) continue;
    const double df = double(q.size() - 1), h = 2.0 / (9.0 * df);
    const double crit = df * std::pow(1.0 - h + 4.753 * std::sqrt(h), 3.0);
    EXPECT_LT(chi2, crit) << "T=" << c.T << " top_k=" << c.k << " top_p=" << c.p;
  }
}

TEST(Sampler, GreedyIsTheArgmaxOnTheHostAndOnTheBackend) {
  const std::vector<float> row = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};  // tie: the lower index
  eval::Sampler s({.temperature = 0.0f, .seed = 3});
  EXPECT_EQ(s.next(row), 1);
  auto b = backend::make_cpu_backend();
  auto t = b->alloc(1, int64_t(row.size()));
  b->upload(row, t.view());
  EXPECT_EQ(s.next(*b, t.view()), 1);
}

TEST(Sampler, HostRowsAndTheCpuBackendGiveTheSameIds) {
  // The same options and seed, one Sampler per path: each step draws one uniform, so the
  // two stay in step, and the host row and the backend row give the same id.
  auto b = backend::make_cpu_backend();
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 3.0f);
  const eval::SamplingOptions o{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 21};
  eval::Sampler host(o), dev(o), other({.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 22});
  const int64_t vocab = 3000;
  auto t = b->alloc(1, vocab);
  std::vector<float> row(static_cast<std::size_t>(vocab));
  int differ = 0;
  for (int step = 0; step < 200; ++step) {
    for (auto& x : row) x = g(rng);
    b->upload(row, t.view());
    const int32_t a = host.next(row);
    EXPECT_EQ(a, dev.next(*b, t.view())) << "step " << step;
    differ += a != other.next(row);
  }
  EXPECT_GT(differ, 100) << "another seed should draw other tokens";
}

}  // namespace
}  // namespace gptq
