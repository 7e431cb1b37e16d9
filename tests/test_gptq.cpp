// GPTQ, RTN, the group quantizer and the Hessian accumulator on synthetic layers.
//
// The layers' inputs are correlated (X = Z·A with A a random mixing matrix, columns
// rescaled), so H is far from diagonal and its diagonal is spread out: error feedback
// and act-order both have something to do.
//
// A central check is GPTQ's own invariant: the sequential OBS updates make the reported
// loss Σ (w − q)²/(2 d²) equal, in exact arithmetic, ½ Σ_n δ_n (H + λI) δ_nᵀ with
// δ = W − dequant(Q) in the ORIGINAL column order. A wrong error propagation, block
// update, permutation, g_idx or code placement breaks that equality.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/gptq.h"
#include "backend/cpu/hessian.h"
#include "format/quantizer.h"
#include "quant/rtn.h"
#include "synthetic_layer.h"

namespace gptq::quant {
namespace {

using backend::cpu::HessianAccumulator;
using backend::cpu::hessian_error;
using test::correlated_inputs;
using test::gaussian;

struct Layer {
  int64_t N = 0, K = 0, R = 0;
  std::vector<float> W;  // [N, K]
  std::vector<float> X;  // [R, K]
  std::vector<double> H; // [K, K] = 2/R XᵀX
};

std::vector<double> hessian_of(const std::vector<float>& X, int64_t R, int64_t K) {
  HessianAccumulator acc(K);
  // Uneven batches, as calibration sequences arrive.
  int64_t r0 = 0;
  for (int64_t b : {R / 3, R / 7, R}) {
    const int64_t r = std::min(b, R - r0);
    acc.add(X.data() + r0 * K, r);
    r0 += r;
  }
  return acc.matrix();
}

Layer make_layer(int64_t N, int64_t K, int64_t R, uint64_t seed) {
  Layer L{N, K, R, gaussian(size_t(N * K), seed, 0.05f), correlated_inputs(R, K, seed + 10), {}};
  L.H = hessian_of(L.X, R, K);
  return L;
}

std::vector<float> dequantize(const QuantizedLinear& q) {
  std::vector<float> out(static_cast<size_t>(q.out_features * q.in_features));
  for (int64_t n = 0; n < q.out_features; ++n) {
    for (int64_t k = 0; k < q.in_features; ++k) out[n * q.in_features + k] = q.dequant(n, k);
  }
  return out;
}

// ‖W Xᵀ − Ŵ Xᵀ‖²_F, computed directly from X.
double output_loss(const Layer& L, const QuantizedLinear& q) {
  const std::vector<float> Wq = dequantize(q);
  std::vector<double> D(static_cast<size_t>(L.N * L.K));
  for (size_t i = 0; i < D.size(); ++i) D[i] = double(L.W[i]) - double(Wq[i]);
  double total = 0.0;
  for (int64_t r = 0; r < L.R; ++r) {
    for (int64_t n = 0; n < L.N; ++n) {
      double y = 0.0;
      for (int64_t k = 0; k < L.K; ++k) y += D[n * L.K + k] * double(L.X[r * L.K + k]);
      total += y * y;
    }
  }
  return total;
}

std::vector<double> damped(std::vector<double> H, int64_t K, double damp) {
  double mean = 0.0;
  for (int64_t k = 0; k < K; ++k) mean += H[k * K + k] == 0.0 ? 1.0 : H[k * K + k];
  mean /= double(K);
  for (int64_t k = 0; k < K; ++k) H[k * K + k] += damp * mean;
  return H;
}

// stats.loss == ½ Σ δ (H + λI) δᵀ up to fp32 rounding in the column loop.
void expect_loss_invariant(const Layer& L, const QuantizedLinear& q, const GptqStats& s) {
  const std::vector<double> Hd = damped(L.H, L.K, s.damp_percent);
  const double exact = 0.5 * hessian_error(L.W.data(), q, Hd.data());
  EXPECT_NEAR(s.loss, exact, 2e-3 * exact) << "loss " << s.loss << " vs " << exact;
}

void expect_valid(const QuantizedLinear& q) {
  const int32_t maxq = max_code(q.bits);
  for (uint8_t c : q.q) ASSERT_LE(int32_t(c), maxq);
  for (int32_t z : q.zeros) {
    ASSERT_GE(z, 0);
    ASSERT_LE(z, maxq);
  }
  for (float s : q.scales) {
    ASSERT_GT(s, 0.0f);
    ASSERT_EQ(s, f16_to_f32(f32_to_f16(s))) << "scale not fp16-representable";
  }
  for (int32_t g : q.g_idx) {
    ASSERT_GE(g, 0);
    ASSERT_LT(g, q.num_groups());
  }
}

GptqOptions options(int bits, int group, bool sym = false) {
  return GptqOptions{.quant = {.bits = bits, .sym = sym}, .group_size = group};
}

RtnOptions rtn_options(const GptqOptions& o) {
  return RtnOptions{.quant = o.quant, .group_size = o.group_size};
}

// ---------------------------------------------------------------- Hessian accumulator

// Reference: 2/n Σ_r x_r x_rᵀ in long double over all rows at once.
// Error bound of the running form, relative to S_ij = 2/n Σ_r |x_ri x_rj|: the fp32
// products are exact in fp64; dsyrk's sums of at most n terms err by ≤ n·u (u = 2^-53);
// each of the b batches adds one rounding for alpha = 2/n_new, one for the product with
// alpha, one for beta = n_old/n_new, one for the product with beta and one for the sum,
// and later batches' betas compound: ≤ (n + 5b)·u overall, doubled for margin.
TEST(Hessian, RunningFormEqualsBatchMean) {
  const int64_t K = 40;
  const std::vector<int64_t> batches = {7, 0, 100, 1, 33, 250};
  const int64_t n = std::accumulate(batches.begin(), batches.end(), int64_t(0));
  std::vector<float> X = gaussian(size_t(n * K), 5);
  for (size_t i = 0; i < X.size(); ++i) X[i] += 0.7f;  // non-centred, all-positive-ish Gram
  HessianAccumulator acc(K);
  int64_t r0 = 0;
  for (int64_t b : batches) {
    acc.add(X.data() + r0 * K, b);
    r0 += b;
  }
  ASSERT_EQ(acc.samples(), n);
  const std::vector<double>& H = acc.matrix();
  const double u = std::ldexp(1.0, -53);
  const double bound = 2.0 * double(n + 5 * int64_t(batches.size())) * u;
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) {
      long double ref = 0.0L, absref = 0.0L;
      for (int64_t r = 0; r < n; ++r) {
        const long double p = (long double)X[r * K + i] * X[r * K + j];
        ref += p;
        absref += std::fabs(p);
      }
      ref *= 2.0L / n;
      absref *= 2.0L / n;
      EXPECT_LE(std::fabs(double(H[i * K + j] - ref)), bound * double(absref)) << i << "," << j;
      EXPECT_EQ(H[i * K + j], H[j * K + i]);
    }
  }
}

TEST(Hessian, EmptyAndInvalid) {
  HessianAccumulator acc(8);
  acc.add(nullptr, 0);
  EXPECT_EQ(acc.samples(), 0);
  for (double h : acc.matrix()) EXPECT_EQ(h, 0.0);
  EXPECT_THROW(acc.add(nullptr, -1), Error);
  EXPECT_THROW(HessianAccumulator(0), Error);
}

// ---------------------------------------------------------------- quantizer

TEST(Quantizer, AsymmetricAndSymmetricConventions) {
  const float x[] = {-1.0f, 0.5f, 2.0f};
  const RowParams a = find_row_params(x, 3, {.bits = 2, .sym = false});
  EXPECT_EQ(a.scale, 1.0f);  // (2 − (−1)) / 3
  EXPECT_EQ(a.zero, 1);      // round(1 / 1)
  EXPECT_EQ(quantize_code(-1.0f, a, 3), 0);
  EXPECT_EQ(quantize_code(0.5f, a, 3), 1);  // round half to even: 0.5 → 0
  EXPECT_EQ(quantize_code(2.0f, a, 3), 3);

  const RowParams s = find_row_params(x, 3, {.bits = 2, .sym = true});
  EXPECT_EQ(s.zero, 2);                                        // (maxq + 1) / 2
  EXPECT_EQ(s.scale, f16_to_f32(f32_to_f16(4.0f / 3.0f)));      // [−2, 2] / 3, fp16
  EXPECT_NE(s.scale, 4.0f / 3.0f);

  // Symmetric always mirrors the range: [−1, 1] for a row with no negative weight. (The
  // Python reference keeps [0, 1] around the midpoint zero there, so 1.0 saturates at 0.47.)
  const float pos[] = {0.5f, 1.0f};
  const RowParams p = find_row_params(pos, 2, {.bits = 4, .sym = true});
  EXPECT_EQ(p.zero, 8);
  EXPECT_EQ(p.scale, f16_to_f32(f32_to_f16(2.0f / 15.0f)));
  EXPECT_NEAR(dequantize_code(quantize_code(1.0f, p, 15), p), 1.0f, p.scale);
}

TEST(Quantizer, MinZeroKeepsTheRangeRepresentable) {
  // All non-negative: asymmetric zero would be 0, which v1 cannot store for other readers.
  const float pos[] = {0.25f, 1.0f, 3.0f};
  const RowParams free = find_row_params(pos, 3, {.bits = 2, .sym = false});
  EXPECT_EQ(free.zero, 0);
  const RowParams v1 = find_row_params(pos, 3, {.bits = 2, .sym = false, .min_zero = 1});
  EXPECT_EQ(v1.zero, 1);
  EXPECT_EQ(v1.scale, 1.5f);  // 3 / (maxq − 1): the top of the range stays representable
  for (float x : pos) EXPECT_LE(std::fabs(dequantize_code(quantize_code(x, v1, 3), v1) - x), v1.scale / 2);
  EXPECT_THROW(validate(QuantizerConfig{.bits = 2, .min_zero = 3}), Error);
}

TEST(Quantizer, AllZeroRowUsesUnitRange) {
  const float z[4] = {0, 0, 0, 0};
  for (bool sym : {false, true}) {
    const RowParams p = find_row_params(z, 4, {.bits = 4, .sym = sym});
    EXPECT_EQ(p.scale, f16_to_f32(f32_to_f16(2.0f / 15.0f)));
    EXPECT_EQ(p.zero, 8);  // round(1 / (2/15)) = round(7.5) = 8, and (15 + 1) / 2
    EXPECT_EQ(dequantize_code(quantize_code(0.0f, p, 15), p), 0.0f);
  }
}

TEST(Quantizer, RejectsBadBits) {
  EXPECT_THROW(validate(QuantizerConfig{.bits = 5}), Error);
  EXPECT_THROW(validate(QuantizerConfig{.bits = 1}), Error);
  EXPECT_NO_THROW(validate(QuantizerConfig{.bits = 3}));
}

// ---------------------------------------------------------------- RTN

TEST(Rtn, ErrorWithinHalfStep) {
  const int64_t N = 16, K = 64;
  const std::vector<float> W = gaussian(size_t(N * K), 3);
  for (int group : {16, -1}) {
    const RtnOptions o{.quant = {.bits = 4, .sym = false}, .group_size = group};
    const QuantizedLinear q = rtn_quantize(W.data(), N, K, o);
    expect_valid(q);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        const float s = q.scales[q.g_idx[k] * N + n];
        EXPECT_LE(std::fabs(W[n * K + k] - q.dequant(n, k)), 0.5f * s + 2e-3f * std::fabs(W[n * K + k]));
      }
    }
  }
}

// MSE clipping never loses in its own norm (p = 1 is its first candidate) and at 2–3
// bits it also lowers the plain squared reconstruction error of Gaussian weights.
TEST(Rtn, MseClippingNotWorseThanMinMax) {
  const int64_t N = 64, K = 256;
  std::vector<float> W = gaussian(size_t(N * K), 11);
  for (int bits : {2, 3}) {
    for (int group : {128, -1}) {
      const QuantizerConfig mm{.bits = bits, .sym = false};
      QuantizerConfig ms = mm;
      ms.scale_search = ScaleSearch::kMse;
      const QuantizedLinear a = rtn_quantize(W.data(), N, K, {.quant = mm, .group_size = group});
      const QuantizedLinear b = rtn_quantize(W.data(), N, K, {.quant = ms, .group_size = group});
      expect_valid(b);
      const int64_t gs = group > 0 ? group : K;
      double sq_a = 0.0, sq_b = 0.0;
      int strictly_better = 0;
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t g = 0; g < K / gs; ++g) {
          double na = 0.0, nb = 0.0;
          for (int64_t k = g * gs; k < (g + 1) * gs; ++k) {
            const double ea = a.dequant(n, k) - W[n * K + k];
            const double eb = b.dequant(n, k) - W[n * K + k];
            na += std::pow(std::fabs(ea), 2.4);
            nb += std::pow(std::fabs(eb), 2.4);
            sq_a += ea * ea;
            sq_b += eb * eb;
          }
          EXPECT_LE(nb, na * (1 + 1e-12));
          strictly_better += nb < na;
        }
      }
      EXPECT_LT(sq_b, sq_a) << "bits " << bits << " group " << group;
      EXPECT_GT(strictly_better, 0);
    }
  }
}

// ---------------------------------------------------------------- GPTQ vs RTN

struct BitsGroup {
  int bits;
  int group;
};

class GptqBeatsRtn : public ::testing::TestWithParam<BitsGroup> {};

TEST_P(GptqBeatsRtn, LowerOutputLoss) {
  const auto [bits, group] = GetParam();
  const Layer L = make_layer(48, 256, 768, 100 + bits);
  for (bool sym : {false, true}) {
    const GptqOptions o = options(bits, group, sym);
    GptqStats s;
    const QuantizedLinear g = gptq_quantize(L.W.data(), L.N, L.K, L.H.data(), o, &s);
    const QuantizedLinear r = rtn_quantize(L.W.data(), L.N, L.K, rtn_options(o));
    expect_valid(g);
    const double lg = output_loss(L, g), lr = output_loss(L, r);
    EXPECT_LT(lg, 0.8 * lr) << "bits " << bits << " group " << group << " sym " << sym;
    EXPECT_EQ(s.retries, 0);
    EXPECT_DOUBLE_EQ(s.damp_percent, 0.05);
    EXPECT_GT(s.seconds, 0.0);
    expect_loss_invariant(L, g, s);
  }
}

INSTANTIATE_TEST_SUITE_P(BitsAndGroups, GptqBeatsRtn,
                         ::testing::Values(BitsGroup{2, 32}, BitsGroup{2, -1}, BitsGroup{3, 32},
                                           BitsGroup{3, -1}, BitsGroup{4, 32}, BitsGroup{4, -1},
                                           BitsGroup{8, 32}, BitsGroup{8, -1},
                                           // 256 = 2·96 + 64: a partial last group
                                           BitsGroup{4, 96}),
                         [](const auto& info) {
                           return "b" + std::to_string(info.param.bits) + "_g" +
                                  (info.param.group < 0 ? std::string("all")
                                                        : std::to_string(info.param.group));
                         });

// With H ∝ I the inverse factor is diagonal, no error is fed forward, and GPTQ must
// reproduce RTN bit for bit (codes, scales, zeros), whatever the options.
TEST(Gptq, IdentityHessianEqualsRtn) {
  const int64_t N = 24, K = 128;
  const std::vector<float> W = gaussian(size_t(N * K), 21, 0.1f);
  std::vector<double> I(size_t(K * K), 0.0);
  for (int64_t k = 0; k < K; ++k) I[k * K + k] = 1.0;
  for (int group : {32, 48, -1}) {  // 128 = 2·48 + 32: a partial last group
    for (bool sym : {false, true}) {
      for (ActOrder order : {ActOrder::kNone, ActOrder::kDescAct, ActOrder::kGroupAware}) {
        for (double damp : {0.0, 0.05}) {
          GptqOptions o = options(3, group, sym);
          o.act_order = order;
          o.damp_percent = damp;
          o.quant.scale_search = sym ? ScaleSearch::kMse : ScaleSearch::kMinMax;
          const QuantizedLinear g = gptq_quantize(W.data(), N, K, I.data(), o, nullptr);
          const QuantizedLinear r = rtn_quantize(W.data(), N, K, rtn_options(o));
          EXPECT_EQ(g.q, r.q);
          EXPECT_EQ(g.scales, r.scales);
          EXPECT_EQ(g.zeros, r.zeros);
          EXPECT_EQ(g.g_idx, r.g_idx);
        }
      }
    }
  }
}

// ---------------------------------------------------------------- act order, groups

std::vector<int64_t> diag_order(const Layer& L) {
  std::vector<int64_t> perm(static_cast<size_t>(L.K));
  std::iota(perm.begin(), perm.end(), int64_t(0));
  std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
    return L.H[a * L.K + a] > L.H[b * L.K + b];
  });
  return perm;
}

TEST(Gptq, DescActGroupsFormedInPermutedOrder) {
  const Layer L = make_layer(32, 256, 768, 7);
  GptqOptions o = options(4, 32);
  o.act_order = ActOrder::kDescAct;
  GptqStats s;
  const QuantizedLinear g = gptq_quantize(L.W.data(), L.N, L.K, L.H.data(), o, &s);
  expect_valid(g);
  const std::vector<int64_t> perm = diag_order(L);
  for (int64_t i = 0; i < L.K; ++i) EXPECT_EQ(g.g_idx[perm[i]], i / 32);
  std::vector<int> count(size_t(g.num_groups()), 0);
  for (int32_t x : g.g_idx) ++count[x];
  for (int c : count) EXPECT_EQ(c, 32);
  EXPECT_FALSE(std::is_sorted(g.g_idx.begin(), g.g_idx.end()));
  // Dequantizing through g_idx in the original order gives back exactly what the loop
  // quantized: the loss identity only holds for the right placement.
  expect_loss_invariant(L, g, s);
  const QuantizedLinear r = rtn_quantize(L.W.data(), L.N, L.K, rtn_options(o));
  EXPECT_LT(output_loss(L, g), 0.8 * output_loss(L, r));
}

TEST(Gptq, StaticGroupsUseUnpermutedWeights) {
  const Layer L = make_layer(32, 256, 768, 8);
  for (ActOrder order : {ActOrder::kNone, ActOrder::kDescAct, ActOrder::kGroupAware}) {
    GptqOptions o = options(4, 64);
    o.act_order = order;
    o.static_groups = true;
    GptqStats s;
    const QuantizedLinear g = gptq_quantize(L.W.data(), L.N, L.K, L.H.data(), o, &s);
    expect_valid(g);
    for (int64_t k = 0; k < L.K; ++k) ASSERT_EQ(g.g_idx[k], k / 64);
    for (int64_t n = 0; n < L.N; ++n) {
      for (int64_t gr = 0; gr < 4; ++gr) {
        const RowParams p = find_row_params(L.W.data() + n * L.K + gr * 64, 64, o.quant);
        EXPECT_EQ(g.scales[gr * L.N + n], p.scale);
        EXPECT_EQ(g.zeros[gr * L.N + n], p.zero);
      }
    }
    expect_loss_invariant(L, g, s);
    const QuantizedLinear r = rtn_quantize(L.W.data(), L.N, L.K, rtn_options(o));
    EXPECT_LT(output_loss(L, g), 0.8 * output_loss(L, r));
  }
}

TEST(Gptq, GroupAwareReorderingKeepsMonotoneGroups) {
  const Layer L = make_layer(32, 256, 768, 9);
  GptqOptions o = options(4, 32);
  o.act_order = ActOrder::kGroupAware;
  GptqStats s;
  const QuantizedLinear g = gptq_quantize(L.W.data(), L.N, L.K, L.H.data(), o, &s);
  expect_valid(g);
  for (int64_t k = 0; k < L.K; ++k) ASSERT_EQ(g.g_idx[k], k / 32);
  expect_loss_invariant(L, g, s);
  GptqOptions plain = o;
  plain.act_order = ActOrder::kNone;
  const QuantizedLinear n = gptq_quantize(L.W.data(), L.N, L.K, L.H.data(), plain, nullptr);
  EXPECT_NE(g.q, n.q) << "the reordering changed nothing";
  const QuantizedLinear r = rtn_quantize(L.W.data(), L.N, L.K, rtn_options(o));
  EXPECT_LT(output_loss(L, g), 0.8 * output_loss(L, r));
  EXPECT_LT(output_loss(L, g), 1.2 * output_loss(L, n));
}

// ---------------------------------------------------------------- partial last group
// K = 576 at group size 128, SmolLM2's hidden size: G = 5, the last group 64 wide.

constexpr int64_t kPartialK = 576, kPartialGroup = 128;

// GPTQModel's visiting order, written here from its description (gptq.py, gar.py):
// desc_act sorts every column by diag(H) descending; GAR sorts each whole group's columns
// so, orders the whole groups by their largest diag(H), and appends the columns of the
// partial group in natural order (extend_perm_with_tail). Sorts stable, as ours.
std::vector<int64_t> gptqmodel_order(const Layer& L, ActOrder order, int64_t gs) {
  if (order == ActOrder::kDescAct) return diag_order(L);
  const auto diag = [&](int64_t k) { return L.H[k * L.K + k]; };
  const int64_t whole = L.K / gs;
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(whole));
  for (int64_t g = 0; g < whole; ++g) {
    for (int64_t k = g * gs; k < (g + 1) * gs; ++k) groups[g].push_back(k);
    std::stable_sort(groups[g].begin(), groups[g].end(), [&](int64_t a, int64_t b) { return diag(a) > diag(b); });
  }
  std::stable_sort(groups.begin(), groups.end(),
                   [&](const auto& a, const auto& b) { return diag(a.front()) > diag(b.front()); });
  std::vector<int64_t> perm;
  for (const auto& g : groups) perm.insert(perm.end(), g.begin(), g.end());
  for (int64_t k = whole * gs; k < L.K; ++k) perm.push_back(k);
  return perm;
}

// An act order is plain GPTQ on the permuted problem (W[:, perm], H[perm][:, perm]), its
// codes and groups mapped back. Bit for bit: with damp_percent 0, λ = 0 whatever order
// diag(H) is summed in, and both runs then factorise the same matrix. A wrong order, a
// partial group reordered or given the wrong width, or a misplaced group fails it.
TEST(Gptq, PartialLastGroupFollowsGPTQModelOrder) {
  const Layer L = make_layer(24, kPartialK, 768, 31);
  const int64_t K = L.K, N = L.N, gs = kPartialGroup;
  for (ActOrder order : {ActOrder::kDescAct, ActOrder::kGroupAware}) {
    SCOPED_TRACE(order == ActOrder::kDescAct ? "desc_act" : "group-aware");
    GptqOptions o = options(4, int(gs));
    o.damp_percent = 0.0;
    o.act_order = order;
    GptqStats s;
    const QuantizedLinear a = gptq_quantize(L.W.data(), N, K, L.H.data(), o, &s);
    ASSERT_EQ(s.retries, 0);
    ASSERT_EQ(a.num_groups(), 5);
    expect_valid(a);
    expect_loss_invariant(L, a, s);

    const std::vector<int64_t> perm = gptqmodel_order(L, order, gs);
    std::vector<float> Wp(L.W.size());
    std::vector<double> Hp(L.H.size());
    for (int64_t j = 0; j < K; ++j) {
      for (int64_t n = 0; n < N; ++n) Wp[n * K + j] = L.W[n * K + perm[j]];
      for (int64_t i = 0; i < K; ++i) Hp[j * K + i] = L.H[perm[j] * K + perm[i]];
    }
    o.act_order = ActOrder::kNone;
    const QuantizedLinear b = gptq_quantize(Wp.data(), N, K, Hp.data(), o, nullptr);
    for (int64_t j = 0; j < K; ++j) {
      // desc_act groups columns by visiting position; GAR keeps each in its own group.
      const int64_t ga = order == ActOrder::kDescAct ? j / gs : perm[j] / gs;
      ASSERT_EQ(a.g_idx[perm[j]], ga) << "j=" << j;
      for (int64_t n = 0; n < N; ++n) {
        ASSERT_EQ(a.q[n * K + perm[j]], b.q[n * K + j]) << "n=" << n << " j=" << j;
        ASSERT_EQ(a.scales[ga * N + n], b.scales[j / gs * N + n]) << "n=" << n << " j=" << j;
        ASSERT_EQ(a.zeros[ga * N + n], b.zeros[j / gs * N + n]) << "n=" << n << " j=" << j;
      }
    }
  }
}

// The partial group's (scale, zero) come from its 64 columns alone: RTN's, and GPTQ's
// with static groups (computed before any error feedback) under every order.
TEST(Gptq, PartialLastGroupParamsCoverOnlyItsColumns) {
  const Layer L = make_layer(16, kPartialK, 768, 32);
  const int64_t K = L.K, N = L.N, last = K / kPartialGroup * kPartialGroup;
  const auto expect_last_group = [&](const QuantizedLinear& q, const QuantizerConfig& qc) {
    ASSERT_EQ(q.num_groups(), 5);
    for (int64_t k = 0; k < K; ++k) ASSERT_EQ(q.g_idx[k], k / kPartialGroup);
    for (int64_t n = 0; n < N; ++n) {
      const RowParams p = find_row_params(L.W.data() + n * K + last, K - last, qc);
      EXPECT_EQ(q.scales[4 * N + n], p.scale) << "n=" << n;
      EXPECT_EQ(q.zeros[4 * N + n], p.zero) << "n=" << n;
    }
  };
  GptqOptions o = options(3, int(kPartialGroup));
  expect_last_group(rtn_quantize(L.W.data(), N, K, rtn_options(o)), o.quant);
  o.static_groups = true;
  for (ActOrder order : {ActOrder::kNone, ActOrder::kDescAct, ActOrder::kGroupAware}) {
    o.act_order = order;
    GptqStats s;
    const QuantizedLinear g = gptq_quantize(L.W.data(), N, K, L.H.data(), o, &s);
    expect_last_group(g, o.quant);
    expect_loss_invariant(L, g, s);
  }
}

TEST(Gptq, BlockSizeDoesNotChangeTheSolution) {
  const Layer L = make_layer(16, 192, 512, 12);
  GptqOptions o = options(4, 64);
  GptqStats s1, s2;
  o.block_size = 64;
  const QuantizedLinear a = gptq_quantize(L.W.data(), L.N, L.K, L.H.data(), o, &s1);
  o.block_size = 32;  // groups still start on block starts: identical maths
  const QuantizedLinear b = gptq_quantize(L.W.data(), L.N, L.K, L.H.data(), o, &s2);
  size_t differ = 0;
  for (size_t i = 0; i < a.q.size(); ++i) differ += a.q[i] != b.q[i];
  EXPECT_LE(differ, a.q.size() / 1000);  // only fp32 summation-order ties may flip
  EXPECT_NEAR(s1.loss, s2.loss, 1e-3 * s1.loss);
}

// q/k/v read one Hessian: the second and third module reuse the first one's factor and
// get exactly what a fresh factorisation gives them (the same arithmetic on the same H),
// damping retries included; another column order or another Hessian refactorises.
TEST(Gptq, FactorCacheFactorisesEachHessianOnce) {
  const int64_t N = 16, K = 128;
  Layer L = make_layer(N, K, 512, 14);
  double mean = 0.0;
  for (int64_t k = 0; k < K; ++k) mean += L.H[k * K + k] / double(K);
  for (int64_t k = 0; k < K; ++k) L.H[k * K + k] -= 0.02 * mean;  // indefinite: damping retries
  const std::vector<float> W2 = gaussian(size_t(N * K), 99, 0.05f);
  const auto ops = backend::make_cpu_quant_ops();
  const auto h = ops->hessian(K), other = ops->hessian(K);
  ops->assign(*h, L.H, 512);
  ops->assign(*other, L.H, 512);
  GptqOptions o = options(4, 32);
  o.damp_percent = 0.01;
  o.damp_auto_increment = 0.01;
  auto run = [&](const std::vector<float>& W, const backend::Hessian& H, const GptqOptions& opt, FactorCache* c,
                 GptqStats* st) {
    QuantizedLinear q;
    ops->download(*gptq_quantize_resident(*ops, {.host = W.data()}, N, K, H, opt, st, c), q);
    return q;
  };
  FactorCache cache;
  GptqStats first, second, fresh;
  run(L.W, *h, o, &cache, &first);
  const QuantizedLinear b = run(W2, *h, o, &cache, &second);
  const QuantizedLinear b_fresh = run(W2, *h, o, nullptr, &fresh);
  EXPECT_FALSE(first.factor_reused);
  EXPECT_TRUE(second.factor_reused);
  EXPECT_GE(first.retries, 1);
  EXPECT_EQ(second.retries, first.retries);
  EXPECT_EQ(second.damp_percent, fresh.damp_percent);
  EXPECT_EQ(b.q, b_fresh.q);
  EXPECT_EQ(b.scales, b_fresh.scales);
  EXPECT_EQ(second.loss, fresh.loss);
  GptqStats s;
  GptqOptions gar = o;
  gar.act_order = ActOrder::kGroupAware;  // another order: another factor
  run(W2, *h, gar, &cache, &s);
  EXPECT_FALSE(s.factor_reused);
  run(W2, *other, gar, &cache, &s);  // another Hessian, equal or not
  EXPECT_FALSE(s.factor_reused);
  GptqOptions damp = gar;
  damp.damp_percent = 0.02;
  run(W2, *other, damp, &cache, &s);
  EXPECT_FALSE(s.factor_reused);
  cache.clear();
  run(W2, *other, damp, &cache, &s);
  EXPECT_FALSE(s.factor_reused);
}

// A group narrower than the block that starts inside the block takes its range from the
// weights as the block began: the error that the block's earlier columns feed forward
// lives in the block's working copy only until the lazy update (GPTQModel's gptq.py calls
// find_params on W, not W1, and so do the CPU and CUDA sweeps). So the groups of the first
// block visited get the plain range of the original weights, in any order, while their
// columns are quantized with the feedback applied. Kept on purpose, not only for parity:
// with GPTQModel's own Hessians of stories15M's 42 modules (4-bit g32 sym, GAR), ranges
// from the updated weights instead gave a 0.45% larger Σ δ H δᵀ in total (49.172 vs 48.954)
// and a larger one in 40 modules of 42.
TEST(Gptq, GroupsInsideABlockTakeTheRangeAtTheBlockStart) {
  const Layer L = make_layer(16, 256, 768, 13);
  const int64_t N = L.N, K = L.K, gs = 32;
  for (ActOrder order : {ActOrder::kNone, ActOrder::kGroupAware}) {
    SCOPED_TRACE(order == ActOrder::kNone ? "natural" : "group-aware");
    std::vector<int64_t> perm(static_cast<size_t>(K));
    std::iota(perm.begin(), perm.end(), int64_t(0));
    if (order == ActOrder::kGroupAware) perm = gptqmodel_order(L, order, gs);
    GptqOptions o = options(4, int(gs), true);
    o.act_order = order;
    o.block_size = 128;
    GptqStats s;
    const QuantizedLinear a = gptq_quantize(L.W.data(), N, K, L.H.data(), o, &s);
    expect_valid(a);
    expect_loss_invariant(L, a, s);
    // Blocks one group wide: each group starts a block, after every earlier column's
    // update. Its range is then that of the updated weights, which differs from the
    // original range in almost every row (the fp16 scale hides a change below 2^-11).
    o.block_size = int(gs);
    const QuantizedLinear b = gptq_quantize(L.W.data(), N, K, L.H.data(), o, nullptr);
    int64_t moved = 0;
    for (int64_t j = 0; j < 128; j += gs) {  // the first block's groups, in visiting order
      const int64_t g = perm[j] / gs;          // kept in its own group: g_idx = k / gs
      for (int64_t n = 0; n < N; ++n) {
        const RowParams p = find_row_params(L.W.data() + n * K + g * gs, gs, o.quant);
        ASSERT_EQ(a.scales[g * N + n], p.scale) << "group " << g << " row " << n;
        ASSERT_EQ(a.zeros[g * N + n], p.zero) << "group " << g << " row " << n;
        if (j > 0) moved += b.scales[g * N + n] != p.scale;
      }
    }
    EXPECT_GT(moved, 3 * N / 2) << "feedback before a group's start should move its range";
  }
}

// ---------------------------------------------------------------- damping, failures

TEST(Gptq, IndefiniteHessianTakesDampingIncrements) {
  const int64_t N = 8, K = 64;
  const std::vector<float> W = gaussian(size_t(N * K), 31);
  std::vector<double> H(size_t(K * K), 0.0);
  for (int64_t k = 0; k < K; ++k) H[k * K + k] = 1.0;
  H[0 * K + 1] = H[1 * K + 0] = 1.025;  // eigenvalues 1 ± 1.025: needs λ > 0.025
  GptqOptions o = options(4, 32);
  o.damp_percent = 0.01;
  o.damp_auto_increment = 0.01;
  GptqStats s;
  const QuantizedLinear q = gptq_quantize(W.data(), N, K, H.data(), o, &s);
  expect_valid(q);
  EXPECT_EQ(s.retries, 2);  // 0.01 and 0.02 fail, 0.03 factorises
  EXPECT_NEAR(s.damp_percent, 0.03, 1e-12);
}

TEST(Gptq, RankDeficientHessianTakesDampingIncrements) {
  const int64_t N = 16, K = 64, R = 16;  // fewer calibration rows than inputs
  Layer L = make_layer(N, K, R, 41);
  double mean = 0.0;
  for (int64_t k = 0; k < K; ++k) mean += L.H[k * K + k] / double(K);
  // The null space of XᵀX (dimension K − R) gets eigenvalue −1e-6·mean: certainly not
  // positive definite, as fp rounding often makes such matrices in practice.
  for (int64_t k = 0; k < K; ++k) L.H[k * K + k] -= 1e-6 * mean;
  GptqOptions o = options(4, 32);
  o.damp_percent = 0.0;
  GptqStats s;
  const QuantizedLinear q = gptq_quantize(L.W.data(), N, K, L.H.data(), o, &s);
  expect_valid(q);
  EXPECT_GE(s.retries, 1);
  EXPECT_GT(s.damp_percent, 0.0);
  EXPECT_LT(output_loss(L, q), output_loss(L, rtn_quantize(L.W.data(), N, K, rtn_options(o))));
}

void expect_numerical_naming_module(const std::vector<double>& H, int64_t K, GptqOptions o) {
  const std::vector<float> W = gaussian(size_t(4 * K), 51);
  o.module_name = "model.layers.3.mlp.down_proj";
  try {
    gptq_quantize(W.data(), 4, K, H.data(), o, nullptr);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNumerical);
    EXPECT_NE(std::string(e.what()).find("model.layers.3.mlp.down_proj"), std::string::npos)
        << e.what();
  }
}

TEST(Gptq, HopelessHessianThrowsNumerical) {
  const int64_t K = 32;
  std::vector<double> H(size_t(K * K), 0.0);
  for (int64_t k = 0; k < K; ++k) H[k * K + k] = 1.0;
  std::vector<double> nan_h = H;
  nan_h[3 * K + 5] = nan_h[5 * K + 3] = std::nan("");
  expect_numerical_naming_module(nan_h, K, options(4, 32));

  std::vector<double> indefinite = H;
  indefinite[0 * K + 1] = indefinite[1 * K + 0] = 3.0;  // needs λ > 2·mean: impossible
  expect_numerical_naming_module(indefinite, K, options(4, 32));

  GptqOptions no_retry = options(4, 32);
  no_retry.damp_auto_increment = 0.0;
  H[0 * K + 1] = H[1 * K + 0] = 1.2;
  expect_numerical_naming_module(H, K, no_retry);
}

TEST(Gptq, InvalidArguments) {
  const int64_t N = 4, K = 128;
  const std::vector<float> W = gaussian(size_t(N * K), 61);
  std::vector<double> H(size_t(K * K), 0.0);
  for (int64_t k = 0; k < K; ++k) H[k * K + k] = 1.0;
  try {
    gptq_quantize(W.data(), N, K, H.data(), options(4, -2), nullptr);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    const std::string m = e.what();
    EXPECT_NE(m.find("group_size must be -1 or positive, got -2"), std::string::npos) << m;
  }
  EXPECT_THROW(gptq_quantize(W.data(), N, K, H.data(), options(4, 0), nullptr), Error);
  EXPECT_THROW(gptq_quantize(W.data(), N, K, H.data(), options(5, 32), nullptr), Error);
  GptqOptions bad_damp = options(4, 32);
  bad_damp.damp_percent = 1.0;
  EXPECT_THROW(gptq_quantize(W.data(), N, K, H.data(), bad_damp, nullptr), Error);
  EXPECT_THROW(rtn_quantize(W.data(), N, K, {.quant = {.bits = 4}, .group_size = 0}), Error);
  // A weight that is not finite, anywhere (the check runs in parallel chunks).
  for (const int64_t at : {int64_t(0), N * K / 2 + 3, N * K - 1}) {
    std::vector<float> bad = W;
    bad[std::size_t(at)] = at == 0 ? std::nanf("") : std::numeric_limits<float>::infinity();
    try {
      gptq_quantize(bad.data(), N, K, H.data(), options(4, 32), nullptr);
      ADD_FAILURE() << "no exception for a bad weight at " << at;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("W has NaN or Inf"), std::string::npos) << e.what();
    }
  }
}

// ---------------------------------------------------------------- dead columns

TEST(Gptq, DeadColumnsQuantizeToZero) {
  const int64_t N = 24, K = 128, R = 512;
  Layer L{N, K, R, gaussian(size_t(N * K), 71, 0.05f), correlated_inputs(R, K, 72), {}};
  const std::vector<int64_t> dead = {3, 17, 64, 127};
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t k : dead) L.X[r * K + k] = 0.0f;
  }
  L.H = hessian_of(L.X, R, K);
  for (int64_t k : dead) ASSERT_EQ(L.H[k * K + k], 0.0);
  for (ActOrder order : {ActOrder::kNone, ActOrder::kDescAct}) {
    for (bool sym : {false, true}) {
      GptqOptions o = options(4, 32, sym);
      o.act_order = order;
      const QuantizedLinear q = gptq_quantize(L.W.data(), N, K, L.H.data(), o, nullptr);
      expect_valid(q);
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t k : dead) ASSERT_EQ(q.dequant(n, k), 0.0f) << n << "," << k;
      }
      EXPECT_LT(output_loss(L, q), 0.8 * output_loss(L, rtn_quantize(L.W.data(), N, K, rtn_options(o))));
    }
  }
}

TEST(Gptq, MseClippingRuns) {
  const Layer L = make_layer(32, 128, 512, 81);
  GptqOptions o = options(3, 32);
  o.quant.scale_search = ScaleSearch::kMse;
  GptqStats s;
  const QuantizedLinear g = gptq_quantize(L.W.data(), L.N, L.K, L.H.data(), o, &s);
  expect_valid(g);
  expect_loss_invariant(L, g, s);
  EXPECT_LT(output_loss(L, g), 0.8 * output_loss(L, rtn_quantize(L.W.data(), L.N, L.K, rtn_options(o))));
}

}  // namespace
}  // namespace gptq::quant
