// The tensor-core fragment layout (src/format/fragment_layout.h): the repack decodes to
// exactly the checkpoint's weights, and every code sits where the header's formulas
// (the ones the CUDA kernel's register extraction is written from) say it does.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "format/fragment_layout.h"
#include "format/gptq_format.h"
#include "format/packing.h"
#include "format/random_layer.h"

namespace gptq::quant {
namespace {

struct Case {
  int bits;
  int64_t K, N;
  int group_size;
  bool act_order, sym;
};

PackedLinear random_packed(const Case& c, uint64_t seed) {
  return pack(random_quantized_linear({.bits = c.bits, .in_features = c.K, .out_features = c.N,
                                       .group_size = c.group_size, .act_order = c.act_order, .sym = c.sym},
                                      seed),
              Format::kV2);
}

std::vector<Case> cases() {
  std::vector<Case> v;
  for (int bits : {2, 3, 4, 8}) {
    v.push_back({bits, 256, 256, 128, false, true});
    v.push_back({bits, 256, 100, 32, true, false});  // act-order, asym, N % 16 != 0
    v.push_back({bits, 288, 50, -1, false, false});  // one group, K % 64 != 0
    v.push_back({bits, 576, 41, 128, true, true});   // a partial last group (SmolLM2's K)
    v.push_back({bits, 128, 8, 48, false, false});   // groups 48, 48, 32: boundaries inside 64-input chunks
    v.push_back({bits, 320, 24, 64, false, true});   // groups of one chunk: 5 chunks, the last pair a single one
    v.push_back({bits, 384, 16, 192, true, false});  // chunks in one group, pairs not (a boundary at 192)
  }
  return v;
}

// Code (row r, chunk input c) read with the header's formulas, written out again here
// independently of fragment_code: lane, tile j, register p, half h, s = 4j + p.
uint32_t documented_code(const uint32_t* w, int bits, int r, int c) {
  const int j = c / 16, k = c % 16, p = r / 8 + 2 * (k / 8), h = k % 2, s = 4 * j + p;
  switch (bits) {
    case 4: return (w[j] >> (4 * p + 16 * h)) & 0xF;
    case 8: return (w[2 * j + p / 2] >> (16 * (p & 1) + 8 * h)) & 0xFF;
    case 2: return (w[s / 8] >> (2 * (s % 8) + 16 * h)) & 0x3;
    default:
      return ((w[s / 8] >> (2 * (s % 8) + 16 * h)) & 0x3) | (((w[2] >> (s + 16 * h)) & 1u) << 2);
  }
}

TEST(FragmentLayout, DecodesToTheCheckpointWeights) {
  uint64_t seed = 11;
  for (const Case& c : cases()) {
    const PackedLinear p = random_packed(c, seed++);
    const auto l = make_fragment_layout(p);
    ASSERT_TRUE(l.has_value()) << "bits=" << c.bits << " K=" << c.K << " g=" << c.group_size;
    EXPECT_EQ(l->Kp % kFragmentChunk, 0);
    EXPECT_EQ(l->Nt, (c.N + 15) / 16);
    EXPECT_EQ(l->perm.empty(), !c.act_order);
    EXPECT_EQ(l->words.size(), std::size_t(l->Nt * (l->Kp / 64) * 32 * c.bits));
    const QuantizedLinear q = unpack(p, Format::kV2);
    const std::vector<float> w = dequantize(*l);
    for (int64_t n = 0; n < c.N; ++n) {
      for (int64_t k = 0; k < c.K; ++k) {
        const int64_t g = q.g_idx[std::size_t(k)];
        const float want = q.scales[std::size_t(g * c.N + n)] *
                           float(int(q.q[std::size_t(n * c.K + k)]) - q.zeros[std::size_t(g * c.N + n)]);
        ASSERT_EQ(w[std::size_t(n * c.K + k)], want)
            << "bits=" << c.bits << " K=" << c.K << " g=" << c.group_size << " n=" << n << " k=" << k;
      }
    }
  }
}

TEST(FragmentLayout, CodesSitWhereTheHeaderSays) {
  uint64_t seed = 23;
  for (const Case& c : cases()) {
    const PackedLinear p = random_packed(c, seed++);
    const auto l = make_fragment_layout(p);
    ASSERT_TRUE(l.has_value());
    const QuantizedLinear q = unpack(p, Format::kV2);
    const int64_t chunks = l->Kp / 64;
    for (int64_t n = 0; n < c.N; ++n) {
      for (int64_t j = 0; j < c.K; ++j) {  // j: sorted input
        const int64_t k = l->perm.empty() ? j : l->perm[std::size_t(j)];
        const int r = int(n % 16), ci = int(j % 64);
        const int lane = 4 * (r % 8) + (ci % 16 % 8) / 2;
        const uint32_t* w = l->words.data() + ((n / 16 * chunks + j / 64) * 32 + lane) * c.bits;
        ASSERT_EQ(documented_code(w, c.bits, r, ci), q.q[std::size_t(n * c.K + k)])
            << "bits=" << c.bits << " n=" << n << " sorted input " << j;
      }
    }
    // Every tile's group, and the padding: codes 0 past K and past N.
    for (int64_t t = 0; t < l->Kp / 16; ++t) {
      const int64_t first = t * 16;
      const int32_t want = first < c.K ? q.g_idx[std::size_t(l->perm.empty() ? first : l->perm[std::size_t(first)])]
                                       : int32_t(l->G - 1);
      ASSERT_EQ(l->tile_group[std::size_t(t)], want) << "tile " << t;
    }
    bool every_chunk_one_group = true;  // padding tiles included (the decode kernel's condition)
    for (int64_t ch = 0; ch < l->Kp / 64; ++ch) {
      const auto* t = &l->tile_group[std::size_t(4 * ch)];
      const bool same = t[0] == t[1] && t[1] == t[2] && t[2] == t[3];
      const bool one = same && (ch + 1) * 64 <= c.K;
      ASSERT_EQ(l->chunk_group[std::size_t(ch)], one ? t[0] : -1) << "chunk " << ch;
      every_chunk_one_group = every_chunk_one_group && same;
    }
    EXPECT_EQ(l->chunks_one_group, every_chunk_one_group) << "bits=" << c.bits << " K=" << c.K << " g=" << c.group_size;
    if (c.group_size % 64 == 0 || c.group_size == -1) {
      EXPECT_TRUE(l->chunks_one_group) << "g=" << c.group_size;
    }
    if (c.group_size == 32 || c.group_size == 48) {
      EXPECT_FALSE(l->chunks_one_group) << "g=" << c.group_size;
    }
    bool every_pair_one_group = true;  // aligned 128-input pairs of chunks, padding included
    for (int64_t t = 0; t < l->Kp / 16; t += 8) {
      for (int64_t u = t; u < std::min(t + 8, l->Kp / 16); ++u) {
        every_pair_one_group = every_pair_one_group && l->tile_group[std::size_t(u)] == l->tile_group[std::size_t(t)];
      }
    }
    EXPECT_EQ(l->pairs_one_group, every_pair_one_group) << "bits=" << c.bits << " K=" << c.K << " g=" << c.group_size;
    if (c.group_size % 128 == 0 || c.group_size == -1) {
      EXPECT_TRUE(l->pairs_one_group) << "g=" << c.group_size;
    }
    if (c.group_size == 64 || c.group_size == 192) {  // K > 128 in these cases: a pair spans two groups
      EXPECT_FALSE(l->pairs_one_group) << "g=" << c.group_size << " K=" << c.K;
    }
    for (int64_t n = 0; n < l->Nt * 16; ++n) {
      for (int64_t j = 0; j < l->Kp; ++j) {
        if (n < c.N && j < c.K) continue;
        const int r = int(n % 16), ci = int(j % 64);
        const int lane = 4 * (r % 8) + (ci % 16 % 8) / 2;
        const uint32_t* w = l->words.data() + ((n / 16 * chunks + j / 64) * 32 + lane) * c.bits;
        ASSERT_EQ(documented_code(w, c.bits, r, ci), 0u) << "padding n=" << n << " j=" << j;
      }
    }
  }
}

// Group 40 at K = 120: sorted inputs change group at 40 and 80, inside 16-input tiles,
// which one group per tile cannot describe.
TEST(FragmentLayout, GroupsSplittingATileAreDeclined) {
  EXPECT_FALSE(make_fragment_layout(random_packed({8, 120, 16, 40, false, true}, 5)).has_value());
  EXPECT_TRUE(make_fragment_layout(random_packed({8, 128, 16, 32, false, true}, 5)).has_value());
}

}  // namespace
}  // namespace gptq::quant
