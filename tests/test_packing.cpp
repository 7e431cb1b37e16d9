// The GPTQ packing (src/quant/gptq_format.h, src/quant/packing.h): round trips, words
// written by hand from the published layout, v1 zero wraparound, and validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "format/gptq_format.h"
#include "format/packing.h"
#include "format/random_layer.h"

namespace gptq::quant {
namespace {

// A random layer; asym zeros cover the whole code range (0 included, for v1 wraparound).
QuantizedLinear random_layer(int bits, int64_t K, int64_t N, int group_size, bool sym,
                             bool act_order, bool bias, uint32_t seed) {
  QuantizedLinear q = random_quantized_linear({.bits = bits, .in_features = K, .out_features = N,
                                               .group_size = group_size, .act_order = act_order, .sym = sym,
                                               .bias = bias},
                                              seed);
  if (!sym && q.zeros.size() >= 2) q.zeros[0] = 0, q.zeros[1] = (1 << bits) - 1;  // both ends of the range
  return q;
}

void expect_same(const QuantizedLinear& a, const QuantizedLinear& b) {
  EXPECT_EQ(a.bits, b.bits);
  EXPECT_EQ(a.group_size, b.group_size);
  EXPECT_EQ(a.in_features, b.in_features);
  EXPECT_EQ(a.out_features, b.out_features);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.zeros, b.zeros);
  EXPECT_EQ(a.scales, b.scales);
  EXPECT_EQ(a.g_idx, b.g_idx);
  EXPECT_EQ(a.bias, b.bias);
}

// Expects f() to throw gptq::Error of `kind` whose message contains `fragment`.
template <class F>
void expect_error(F f, ErrorKind kind, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing \"" << fragment << "\"";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Packing, RoundTripAllBitsSymmetryFormatsAndEdgeSizes) {
  uint32_t seed = 1;
  for (int bits : {2, 3, 4, 8}) {
    // K: the smallest K the packing holds exactly, then multiples of 32 (3-bit needs 32).
    for (int64_t K : {int64_t(block_values(bits)), int64_t(32), int64_t(64), int64_t(96)}) {
      for (int64_t N : {1, 3, 33}) {
        for (bool sym : {true, false}) {
          for (Format format : {Format::kV1, Format::kV2}) {
            for (int group_size : {-1, 16}) {
              SCOPED_TRACE("bits=" + std::to_string(bits) + " K=" + std::to_string(K) +
                           " N=" + std::to_string(N) + " sym=" + std::to_string(sym) +
                           " v" + std::to_string(format == Format::kV1 ? 1 : 2) +
                           " group_size=" + std::to_string(group_size));
              const auto q = random_layer(bits, K, N, group_size, sym, group_size > 0,
                                          N != 3, seed++);
              const PackedLinear p = pack(q, format);
              EXPECT_EQ(p.qweight_shape[0], K * bits / 32);
              EXPECT_EQ(p.qweight_shape[1], N);
              EXPECT_EQ(p.qzeros_shape[1], (N * bits + 31) / 32);
              expect_same(unpack(p, format), q);
            }
          }
        }
      }
    }
  }
}

// K = 576 (SmolLM2's hidden size) with group size 128: four whole groups and a partial
// fifth of 64 columns. GPTQModel (gptqmodel/nn_modules/qlinear/__init__.py,
// PackedGroupedQuantLinear's buffers) stores such a layer as
//   qweight [ceil(K*bits/32), N], qzeros [ceil(K/g), ceil(N*bits/32)],
//   scales [ceil(K/g), N] fp16, g_idx [K] = k // g,
// and its packer needs K % 32 == 0 (576 = 18·32). The shapes below are those numbers
// worked out by hand, not our helpers.
TEST(Packing, PartialLastGroupHasGPTQModelShapes) {
  struct Shapes {
    int bits;
    int64_t qweight_rows, qzeros_cols;  // 576*bits/32, 96*bits/32
  };
  uint32_t seed = 40;
  for (const Shapes& want : {Shapes{2, 36, 6}, Shapes{3, 54, 9}, Shapes{4, 72, 12}, Shapes{8, 144, 24}}) {
    for (bool act_order : {false, true}) {
      SCOPED_TRACE("bits=" + std::to_string(want.bits) + " act_order=" + std::to_string(act_order));
      const auto q = random_layer(want.bits, 576, 96, 128, false, act_order, true, seed++);
      ASSERT_EQ(q.num_groups(), 5);
      const PackedLinear p = pack(q, Format::kV1);
      EXPECT_EQ(p.qweight_shape, (std::array<int64_t, 2>{want.qweight_rows, 96}));
      EXPECT_EQ(p.qzeros_shape, (std::array<int64_t, 2>{5, want.qzeros_cols}));
      EXPECT_EQ(p.scales_shape, (std::array<int64_t, 2>{5, 96}));
      ASSERT_EQ(p.g_idx.size(), 576u);
      std::vector<int> members(5, 0);
      for (int64_t k = 0; k < 576; ++k) {
        if (!act_order) {
          EXPECT_EQ(p.g_idx[k], k / 128) << "k=" << k;
        }
        ++members[std::size_t(p.g_idx[k])];
      }
      EXPECT_EQ(members, (std::vector<int>{128, 128, 128, 128, 64}));
      expect_same(unpack(p, Format::kV1), q);
    }
  }
  // floor(K/g) = 4 rows, what a packer that ignored the partial group would write, is refused.
  PackedLinear p = pack(random_layer(4, 576, 96, 128, false, false, false, 50), Format::kV2);
  p.scales_shape = {4, 96};
  p.scales.resize(4 * 96);
  expect_error([&] { validate(p); }, ErrorKind::kFormat, "scales has shape [4, 96], expected [5, 96]");
}

TEST(Packing, V1StoresZeroMinusOneWrappingInBits) {
  // 4-bit, N = 8 zeros 0..7 fill one qzeros word. v1 stores zero-1 mod 16: 15, 0, 1, ... 6.
  QuantizedLinear q = random_layer(4, 32, 8, -1, false, false, false, 7);
  for (int n = 0; n < 8; ++n) q.zeros[n] = n;
  const PackedLinear v1 = pack(q, Format::kV1);
  ASSERT_EQ(v1.qzeros.size(), 1u);
  EXPECT_EQ(uint32_t(v1.qzeros[0]), 0x6543210Fu);
  EXPECT_EQ(unpack(v1, Format::kV1).zeros, q.zeros);
  const PackedLinear v2 = pack(q, Format::kV2);
  EXPECT_EQ(uint32_t(v2.qzeros[0]), 0x76543210u);

  // The same bits read as the other format are off by one, modulo 16.
  EXPECT_EQ(unpack(v1, Format::kV2).zeros[0], 15);
  EXPECT_EQ(unpack(v2, Format::kV1).zeros[0], 1);

  PackedLinear converted = v1;
  convert_v1_zeros_to_v2(converted);
  EXPECT_EQ(converted.qzeros, v2.qzeros);
  EXPECT_EQ(converted.qweight, v1.qweight);

  // 2-bit: zero 0 -> field 0b11, without touching the neighbouring field (zero 2 -> 0b01).
  QuantizedLinear q2 = random_layer(2, 16, 2, -1, false, false, false, 8);
  q2.zeros = {0, 2};
  EXPECT_EQ(uint32_t(pack(q2, Format::kV1).qzeros[0]), 0b0111u);
}

// A layer assembled word by word from the published rules, not by pack().
PackedLinear hand_layer(int bits, std::vector<uint32_t> qweight, uint32_t qzeros,
                        std::vector<uint16_t> scales) {
  PackedLinear p;
  p.bits = bits;
  p.group_size = 32;
  p.in_features = 32;
  p.out_features = 2;
  p.qweight_shape = {32 * bits / 32, 2};
  for (uint32_t w : qweight) p.qweight.push_back(int32_t(w));
  p.qzeros_shape = {1, 1};
  p.qzeros = {int32_t(qzeros)};
  p.scales_shape = {1, 2};
  p.scales = std::move(scales);
  p.g_idx.assign(32, 0);
  return p;
}

TEST(Packing, HandWritten4BitCheckpoint) {
  // K = 32, N = 2. Column 0 codes k % 16, column 1 codes 15 - k % 16: eight codes per
  // word, code k at bit 4*(k % 8) of word k / 8. qweight [4, 2] row-major.
  // qzeros [1, 1] (v1): zeros 8 and 3 stored as 7 and 2 -> 0x27. scales 1.0 and 0.5.
  const PackedLinear p = hand_layer(4,
                                    {0x76543210, 0x89ABCDEF,
                                     0xFEDCBA98, 0x01234567,
                                     0x76543210, 0x89ABCDEF,
                                     0xFEDCBA98, 0x01234567},
                                    0x27, {0x3C00, 0x3800});
  const QuantizedLinear q = unpack(p, Format::kV1);
  ASSERT_EQ(q.zeros, (std::vector<int32_t>{8, 3}));
  ASSERT_EQ(q.scales, (std::vector<float>{1.0f, 0.5f}));
  for (int k = 0; k < 32; ++k) {
    EXPECT_EQ(q.q[k], k % 16) << "k=" << k;
    EXPECT_EQ(q.q[32 + k], 15 - k % 16) << "k=" << k;
    EXPECT_EQ(q.dequant(0, k), float(k % 16 - 8)) << "k=" << k;
    EXPECT_EQ(q.dequant(1, k), 0.5f * float(15 - k % 16 - 3)) << "k=" << k;
  }
  EXPECT_EQ(pack(q, Format::kV1).qweight, p.qweight);
  EXPECT_EQ(pack(q, Format::kV1).qzeros, p.qzeros);
}

TEST(Packing, HandWritten3BitCheckpoint) {
  // K = 32, N = 2: one block of 32 codes in 3 words per column (10|1|10|1|10 split).
  // Column 0 codes k % 8, column 1 codes (3k + 1) % 8. Worked for column 0:
  //   word 0 = codes 0..9 at 3i, plus low bits 0b10 of code 10 (=2) at bits 30-31
  //          = 0x88FAC688
  //   word 1 = bit 2 of code 10 (0) at bit 0, codes 11..20 at 3(i-11)+1, bit 0 of code
  //            21 (=5, 0b101 -> 1) at bit 31 = 0xC688FAC6
  //   word 2 = bits 1-2 of code 21 (0b10) at bits 0-1, codes 22..31 at 3(i-22)+2
  //          = 0xFAC688FA
  // qzeros (v2, N = 2 padded to one word): zeros 4 and 5 -> 4 | 5 << 3 = 0x2C.
  const PackedLinear p = hand_layer(3,
                                    {0x88FAC688, 0xE1CC55E1,
                                     0xC688FAC6, 0x55E1CC55,
                                     0xFAC688FA, 0xCC55E1CC},
                                    0x2C, {0x3C00, 0x4000});
  const QuantizedLinear q = unpack(p, Format::kV2);
  ASSERT_EQ(q.zeros, (std::vector<int32_t>{4, 5}));
  for (int k = 0; k < 32; ++k) {
    EXPECT_EQ(q.q[k], k % 8) << "k=" << k;
    EXPECT_EQ(q.q[32 + k], (3 * k + 1) % 8) << "k=" << k;
    EXPECT_EQ(q.dequant(1, k), 2.0f * float((3 * k + 1) % 8 - 5)) << "k=" << k;
  }
  EXPECT_EQ(pack(q, Format::kV2).qweight, p.qweight);
}

TEST(Packing, GetSetCodeCrossWordBoundary) {
  // Every 3-bit position in a 3-word block, written alone into zeroed words.
  for (int i = 0; i < 32; ++i) {
    int32_t w[3] = {0, 0, 0};
    set_code(w, 1, i, 3, 0b101);
    // Stream bits [3i, 3i+3) hold 0b101 and nothing else is set.
    uint32_t expected[3] = {0, 0, 0};
    for (int b = 0; b < 3; ++b) {
      if ((0b101 >> b) & 1) expected[(3 * i + b) / 32] |= 1u << ((3 * i + b) % 32);
    }
    for (int j = 0; j < 3; ++j) EXPECT_EQ(uint32_t(w[j]), expected[j]) << "i=" << i << " word " << j;
    EXPECT_EQ(get_code(w, 1, i, 3), 0b101u) << "i=" << i;
  }
}

TEST(Packing, FormatFromCheckpoint) {
  EXPECT_EQ(format_from_checkpoint("gptq"), Format::kV1);
  EXPECT_EQ(format_from_checkpoint("gptq_v2"), Format::kV2);
  expect_error([] { format_from_checkpoint("awq"); }, ErrorKind::kUnsupported, "\"awq\"");
}

TEST(Packing, ValidationErrorsNameTheTensor) {
  const PackedLinear good = pack(random_layer(4, 64, 2, 32, false, true, true, 3), Format::kV2);
  EXPECT_NO_THROW(validate(good));

  PackedLinear p = good;
  p.bits = 3;  // qweight [8, 2] holds 4-bit codes; 3-bit needs [6, 2]
  p.qzeros_shape = {2, 1};
  expect_error([&] { validate(p); }, ErrorKind::kFormat,
               "qweight has shape [8, 2], expected [6, 2] ([K*bits/32, N]) for bits=3");

  p = good;
  p.qweight.pop_back();
  expect_error([&] { validate(p); }, ErrorKind::kFormat, "qweight has 15 elements, expected 16");

  p = good;
  p.g_idx[5] = 2;
  expect_error([&] { validate(p); }, ErrorKind::kFormat, "g_idx[5]=2 is out of range [0, 2)");
  p.g_idx[5] = -1;
  expect_error([&] { validate(p); }, ErrorKind::kFormat, "g_idx[5]=-1 is out of range");

  p = good;
  p.g_idx.pop_back();
  expect_error([&] { validate(p); }, ErrorKind::kFormat, "g_idx has 63 entries, expected K=64");

  p = good;
  p.scales.clear();
  p.scales_shape = {0, 0};
  expect_error([&] { unpack(p, Format::kV2); }, ErrorKind::kFormat,
               "scales has shape [0, 0], expected [2, 2]");
  p.scales_shape = good.scales_shape;
  p.scales.assign(3, 0);
  expect_error([&] { unpack(p, Format::kV2); }, ErrorKind::kFormat,
               "scales has 3 elements, expected 4");

  p = good;
  p.qzeros_shape = {1, 1};
  expect_error([&] { validate(p); }, ErrorKind::kFormat, "qzeros has shape [1, 1], expected [2, 1]");

  p = good;
  p.bias.pop_back();
  expect_error([&] { validate(p); }, ErrorKind::kFormat, "bias has 1 entries, expected 0 or N=2");

  p = good;
  p.bits = 5;
  expect_error([&] { validate(p); }, ErrorKind::kUnsupported, "bits=5 is not supported");

  p = good;
  p.in_features = 60;  // not a multiple of 8 4-bit codes per word
  expect_error([&] { validate(p); }, ErrorKind::kFormat, "in_features=60 is not a multiple of 8");

  p = good;
  p.group_size = 0;
  expect_error([&] { validate(p); }, ErrorKind::kFormat, "group_size=0 is invalid");
}

TEST(Packing, PackRejectsInconsistentLayers) {
  QuantizedLinear q = random_layer(3, 32, 4, -1, false, false, false, 5);
  q.q[7] = 8;
  expect_error([&] { pack(q, Format::kV1); }, ErrorKind::kInvalidArgument,
               "code 8 does not fit in 3 bits");
  q = random_layer(3, 32, 4, -1, false, false, false, 5);
  q.zeros[1] = 8;
  expect_error([&] { pack(q, Format::kV1); }, ErrorKind::kInvalidArgument,
               "zero 8 does not fit in 3 bits");
  q = random_layer(3, 48, 4, -1, false, false, false, 5);
  expect_error([&] { pack(q, Format::kV1); }, ErrorKind::kUnsupported,
               "in_features=48 is not a multiple of 32");
  q = random_layer(4, 32, 4, -1, false, false, false, 5);
  q.scales.pop_back();
  expect_error([&] { pack(q, Format::kV1); }, ErrorKind::kInvalidArgument,
               "scales has 3 entries, expected G*N=4");
}

}  // namespace
}  // namespace gptq::quant
