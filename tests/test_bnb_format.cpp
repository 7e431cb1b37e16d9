// bitsandbytes' code books and block layout (src/format/bnb_codebook.h, bnb_packed.h)
// against their published definitions, and the quantize -> dequantize error per block.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "format/bnb_codebook.h"
#include "core/dtype.h"
#include "format/bnb_packed.h"
#include "test_util.h"

namespace gptq::quant::bnb {
namespace {

// Φ⁻¹(p) by bisection on Φ(x) = erfc(−x/√2)/2, to double precision.
double inv_normal_cdf(double p) {
  double lo = -10.0, hi = 10.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = (lo + hi) / 2;
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

TEST(BnbCodebook, Nf4IsTheNormalisedQuantilesOfTheStandardNormal) {
  // QLoRA's construction (bitsandbytes create_normal_map, offset 0.9677083 = 1 − (1/30 +
  // 1/32)/2): Φ⁻¹ of 9 points linspace(offset, 0.5) minus the last for the positive
  // side, 8 points minus the last, negated, for the negative side, 0, divided by the max.
  const double offset = 0.9677083;
  std::vector<double> v = {0.0};
  for (int i = 0; i < 8; ++i) v.push_back(inv_normal_cdf(offset + (0.5 - offset) * i / 8));
  for (int i = 0; i < 7; ++i) v.push_back(-inv_normal_cdf(offset + (0.5 - offset) * i / 7));
  std::sort(v.begin(), v.end());
  // bitsandbytes computed the points with fp32 linspace: p off by up to ~6e-8, Φ⁻¹'s
  // slope is at most 1/φ(1.85) ≈ 14 at the ends and ≈ 2.5 near 0.5, divided by
  // Φ⁻¹(offset) ≈ 1.85; plus the float rounding of the table (3e-8). 2e-7 covers it,
  // 1e-4 below the closest pair of values.
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(kNf4[i], v[i] / v.back(), 2e-7) << "code " << i;
  EXPECT_EQ(kNf4[7], 0.0f);
  EXPECT_EQ(kNf4[0], -1.0f);
  EXPECT_EQ(kNf4[15], 1.0f);
}

TEST(BnbCodebook, Fp4IsSignAndTwoExponentOneMantissaBits) {
  // bitsandbytes' FP4: bit 3 sign, bits 2-1 exponent e, bit 0 mantissa m; e = 0 is
  // subnormal (m · 2⁻⁴), otherwise 2^(4−e) · (1 + m/2); normalised by the largest, 12.
  for (int q = 0; q < 16; ++q) {
    const int e = (q >> 1) & 3, m = q & 1;
    const double mag = e == 0 ? m * 0.0625 : std::ldexp(1.0 + m / 2.0, 4 - e);
    const double want = (q & 8 ? -1.0 : 1.0) * mag / 12.0;
    EXPECT_FLOAT_EQ(kFp4[q], float(want)) << "code " << q;
  }
}

TEST(BnbCodebook, DynamicMapFollowsItsDefinition) {
  const auto& m = dynamic_map();
  // Entry j of exponent e: 10^(e−6) · (0.1 + 0.9 · (j + ½) / 2^e), j < 2^e, both signs; 0; 1.
  std::vector<double> want = {0.0, 1.0};
  for (int e = 0; e < 7; ++e) {
    for (int j = 0; j < (1 << e); ++j) {
      const double v = std::pow(10.0, e - 6) * (0.1 + 0.9 * (j + 0.5) / double(1 << e));
      want.push_back(v);
      want.push_back(-v);
    }
  }
  std::sort(want.begin(), want.end());
  ASSERT_EQ(want.size(), 256u);
  for (int i = 0; i < 256; ++i) {
    EXPECT_NEAR(m[std::size_t(i)], want[std::size_t(i)], 2e-7 * std::fabs(want[std::size_t(i)])) << "entry " << i;
  }
  EXPECT_TRUE(std::is_sorted(m.begin(), m.end()));
}

template <std::size_t N>
int argmin_distance(const std::array<float, N>& t, float x) {
  int best = 0;
  for (int i = 1; i < int(N); ++i) {
    if (std::fabs(x - t[std::size_t(i)]) < std::fabs(x - t[std::size_t(best)])) best = i;
  }
  return best;
}

TEST(BnbCodebook, NearestCodesAreNearest) {
  for (int i = -10000; i <= 10000; ++i) {
    const float x = float(i) / 10000.0f;
    const uint8_t n = nearest_nf4(x);
    EXPECT_FLOAT_EQ(std::fabs(x - kNf4[n]), std::fabs(x - kNf4[std::size_t(argmin_distance(kNf4, x))])) << x;
    const uint8_t f = nearest_fp4(x);
    EXPECT_FLOAT_EQ(std::fabs(x - kFp4[f]), std::fabs(x - kFp4[std::size_t(argmin_distance(kFp4, x))])) << x;
    EXPECT_EQ((f & 8) != 0, x < 0.0f) << "fp4 sign of " << x;
    const uint8_t d = nearest_dynamic(x);
    EXPECT_FLOAT_EQ(std::fabs(x - dynamic_map()[d]), std::fabs(x - dynamic_map()[std::size_t(argmin_distance(dynamic_map(), x))]))
        << x;
  }
}

std::vector<float> normal_weights(int64_t n, unsigned seed, float sigma = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> w(static_cast<std::size_t>(n));
  for (auto& v : w) v = d(rng);
  return w;
}

// The largest distance from a code value to the edge of the interval it is chosen for.
template <std::size_t N>
double half_gap(const std::array<float, N>& t, int q) {
  double g = 0.0;
  for (int i = 0; i < int(N); ++i) {
    if (i != q && t[std::size_t(i)] != t[std::size_t(q)]) {
      // Only the neighbours on each side bound the interval.
      const bool lower = t[std::size_t(i)] < t[std::size_t(q)];
      bool nearest = true;
      for (int j = 0; j < int(N); ++j) {
        const bool between = lower ? (t[std::size_t(j)] > t[std::size_t(i)] && t[std::size_t(j)] < t[std::size_t(q)])
                                   : (t[std::size_t(j)] < t[std::size_t(i)] && t[std::size_t(j)] > t[std::size_t(q)]);
        if (between) nearest = false;
      }
      if (nearest) g = std::max(g, std::fabs(double(t[std::size_t(i)]) - t[std::size_t(q)]) / 2);
    }
  }
  return g;
}

TEST(BnbPacked, FourBitRoundTripIsWithinHalfTheLocalGapOfEachBlock) {
  // stories15M's shape: K = 288 is not a multiple of 64, so blocks span rows; 7 × 45 = 315
  // gives a short last block and an odd number of codes.
  for (auto [out, in] : {std::pair<int64_t, int64_t>{48, 288}, {7, 45}}) {
    for (BnbType t : {BnbType::kNf4, BnbType::kFp4}) {
      const auto w = normal_weights(out * in, 3);
      const BnbConfig c{.type = t, .blocksize = 64};
      const BnbPacked p = quantize_4bit(w, out, in, c);
      validate(p);
      ASSERT_EQ(p.blocks(), (out * in + 63) / 64);
      const std::vector<float> d = dequantize(p);
      const auto& book = t == BnbType::kNf4 ? kNf4 : kFp4;
      for (int64_t i = 0; i < out * in; ++i) {
        const int64_t b = i / 64;
        float a = 0.0f;
        for (int64_t j = b * 64; j < std::min(out * in, b * 64 + 64); ++j) a = std::max(a, std::fabs(w[std::size_t(j)]));
        ASSERT_EQ(p.absmax[std::size_t(b)], a);
        // |w/a − code| ≤ half the gap to the neighbour on that side; the normalisation
        // and the product each add at most one rounding of a value ≤ a.
        const uint8_t q = code_at(p, i);
        const double bound = (half_gap(book, q) + 2 * std::ldexp(1.0, -24)) * a;
        EXPECT_LE(std::fabs(double(d[std::size_t(i)]) - w[std::size_t(i)]), bound) << "weight " << i;
        // The block's absmax weight comes back exactly (its code is ±1).
        if (std::fabs(w[std::size_t(i)]) == a) {
          EXPECT_EQ(d[std::size_t(i)], w[std::size_t(i)]);
        }
      }
    }
  }
}

TEST(BnbPacked, FirstWeightOfAByteIsItsHighNibble) {
  // Weights 0 and 1 are the block's max and min: NF4 codes 15 and 0, FP4 codes 3 and 11.
  std::vector<float> w(64, 0.01f);
  w[0] = 1.0f;
  w[1] = -1.0f;
  EXPECT_EQ(quantize_4bit(w, 1, 64, {.type = BnbType::kNf4}).data[0], 0xF0);
  EXPECT_EQ(quantize_4bit(w, 1, 64, {.type = BnbType::kFp4}).data[0], 0x3B);
}

TEST(BnbPacked, DoubleQuantizedAbsmaxIsWithinHalfTheDynamicMapsGap) {
  // 1296 blocks of stories15M's 288 × 288 q_proj: 6 groups of 256, the last short.
  const auto w = normal_weights(288 * 288, 5);
  const BnbPacked f = quantize_4bit(w, 288, 288, {.type = BnbType::kNf4});
  const BnbPacked dq = quantize_4bit(w, 288, 288, {.type = BnbType::kNf4, .absmax = AbsmaxStorage::kDoubleQuant});
  ASSERT_TRUE(dq.nested.has_value());
  ASSERT_EQ(dq.nested->scales.size(), 6u);
  EXPECT_EQ(dq.data, f.data);  // codes do not depend on how absmax is stored
  double mean = 0.0;
  for (float a : f.absmax) mean += a;
  mean /= double(f.absmax.size());
  EXPECT_NEAR(dq.nested->offset, mean, 1e-7 * mean);
  const auto& m = dynamic_map();
  double gap = 0.0;
  for (int i = 0; i + 1 < 256; ++i) gap = std::max(gap, double(m[std::size_t(i + 1)] - m[std::size_t(i)]));
  for (int64_t b = 0; b < f.blocks(); ++b) {
    const double s = dq.nested->scales[std::size_t(b / kNestedBlock)];
    // Half the largest gap of the map times the group's scale, plus roundings of the
    // centring, normalisation and decode (a few ulps of absmax).
    EXPECT_NEAR(dq.block_absmax(b), f.absmax[std::size_t(b)], gap / 2 * s + 4 * std::ldexp(1.0, -24) * f.absmax[std::size_t(b)])
        << "block " << b;
  }
  EXPECT_LT(dq.bytes(), f.bytes());
  EXPECT_EQ(dq.bytes(), packed_bytes({.type = BnbType::kNf4, .absmax = AbsmaxStorage::kDoubleQuant}, 288, 288));
  EXPECT_EQ(f.bytes(), packed_bytes({.type = BnbType::kNf4}, 288, 288));
}

TEST(BnbPacked, Int8RowsRoundToHalfAStepOfTheirAbsmax) {
  const auto w = normal_weights(30 * 77, 7);
  const BnbPacked p = quantize_int8(w, 30, 77, 6.0f);
  const std::vector<float> d = dequantize(p);
  // bitsandbytes' Int8Params quantizes the weight cast to fp16.
  auto h = [](float x) { return f16_to_f32(f32_to_f16(x)); };
  for (int64_t r = 0; r < 30; ++r) {
    float a = 0.0f;
    for (int64_t k = 0; k < 77; ++k) a = std::max(a, std::fabs(h(w[std::size_t(r * 77 + k)])));
    EXPECT_EQ(p.absmax[std::size_t(r)], a);
    for (int64_t k = 0; k < 77; ++k) {
      const std::size_t i = std::size_t(r * 77 + k);
      const int q = int8_t(p.data[i]);
      EXPECT_EQ(q, int(std::nearbyint(h(w[i]) * (127.0f / a))));
      EXPECT_LE(std::abs(q), 127);
      // Half a step a/127, the fp16 rounding (half an ulp: 2^-11 relative), and the
      // roundings of the scale and the decode.
      EXPECT_LE(std::fabs(d[i] - w[i]), a / 254.0 + std::ldexp(1.0, -11) * std::fabs(w[i]) + 4 * std::ldexp(1.0, -24) * a);
    }
  }
  EXPECT_EQ(p.bytes(), packed_bytes({.type = BnbType::kInt8}, 30, 77));
}

TEST(BnbPacked, ValidateNamesWhatIsInconsistent) {
  BnbPacked p = quantize_4bit(normal_weights(64 * 3, 1), 3, 64, {.type = BnbType::kNf4});
  p.data.pop_back();
  test::expect_error([&] { validate(p); }, "4-bit codes: 95 (expected 96)", ErrorKind::kFormat);
  p = quantize_4bit(normal_weights(64 * 3, 1), 3, 64, {.type = BnbType::kNf4});
  p.absmax.push_back(1.0f);
  test::expect_error([&] { validate(p); }, "absmax: 4 (expected 3)", ErrorKind::kFormat);
  BnbPacked q = quantize_int8(normal_weights(12, 1), 3, 4, 6.0f);
  q.bias = {1.0f};
  test::expect_error([&] { validate(q); }, "bias has 1 (expected 3)", ErrorKind::kFormat);
  test::expect_error([&] { validate(BnbConfig{.type = BnbType::kNf4, .blocksize = 96}); }, "power of two",
                     ErrorKind::kInvalidArgument);
}

}  // namespace
}  // namespace gptq::quant::bnb
