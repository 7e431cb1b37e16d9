// The CUDA backend's load-time repack (src/backend/cuda/gptq_repack.h), plain C++ but
// compiled only with the CUDA backend: its reference reading must give back exactly the
// weights of the checkpoint tensors, including a partial last group (K = 576, g128).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "format/packing.h"

#ifdef GPTQ_HAVE_CUDA
#include "backend/cuda/gptq_repack.h"
#endif

namespace gptq {
namespace {

#ifdef GPTQ_HAVE_CUDA

// A random layer whose group g holds span columns (the last fewer), shuffled for act-order.
quant::QuantizedLinear random_layer(int bits, int64_t K, int64_t N, int group_size, bool act_order,
                                    uint32_t seed) {
  std::mt19937 rng(seed);
  quant::QuantizedLinear q;
  q.bits = bits;
  q.group_size = group_size;
  q.in_features = K;
  q.out_features = N;
  const int64_t G = q.num_groups();
  std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  q.q.resize(std::size_t(N * K));
  for (auto& c : q.q) c = uint8_t(code(rng));
  q.scales.resize(std::size_t(G * N));
  for (auto& s : q.scales) s = f16_to_f32(f32_to_f16(scale(rng)));
  q.zeros.resize(std::size_t(G * N));
  for (auto& z : q.zeros) z = code(rng);
  std::vector<int32_t> order(static_cast<std::size_t>(K));
  std::iota(order.begin(), order.end(), 0);
  if (act_order) std::shuffle(order.begin(), order.end(), rng);
  q.g_idx.resize(std::size_t(K));
  for (int64_t i = 0; i < K; ++i) q.g_idx[std::size_t(order[std::size_t(i)])] = int32_t(i / group_size);
  return q;
}

TEST(GptqRepack, PartialLastGroupDequantizesToTheCheckpointWeights) {
  uint32_t seed = 1;
  for (int bits : {2, 3, 4, 8}) {
    for (bool act_order : {false, true}) {
      SCOPED_TRACE("bits=" + std::to_string(bits) + " act_order=" + std::to_string(act_order));
      const int64_t K = 576, N = 41;  // N pads to 44
      const quant::QuantizedLinear q = random_layer(bits, K, N, 128, act_order, seed++);
      const auto l = backend::cuda::repack_for_cuda(quant::pack(q, quant::Format::kV2));
      ASSERT_TRUE(l.has_value());
      EXPECT_EQ(l->G, 5);
      EXPECT_EQ(l->Np, 44);
      EXPECT_EQ(l->scales.size(), std::size_t(5 * 44));
      EXPECT_EQ(l->perm.empty(), !act_order);
      // Sorted by group, the blocks of V codes run 128/V per whole group, then 64/V for
      // the partial one.
      const int64_t V = quant::block_values(bits);
      ASSERT_EQ(l->block_group.size(), std::size_t(K / V));
      for (int64_t b = 0; b < K / V; ++b) EXPECT_EQ(l->block_group[std::size_t(b)], b * V / 128) << "block " << b;
      // Both sides compute scale * float(q - zero) in fp32 from the same fp16 scale and
      // integers: equal bit for bit.
      const std::vector<float> w = backend::cuda::dequantize_host_layout(*l);
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = 0; k < K; ++k) ASSERT_EQ(w[std::size_t(n * K + k)], q.dequant(n, k)) << "n=" << n << " k=" << k;
      }
    }
  }
}

// A partial group that ends inside a block of V codes: 3-bit blocks hold 32 codes, and
// group size 48 at K = 128 (groups 48, 48, 32) puts groups 0 and 1 in block 1. The
// repack declines (the CUDA backend then refuses the layer with kUnsupported).
TEST(GptqRepack, GroupsSplittingABlockAreDeclined) {
  const quant::QuantizedLinear q = random_layer(3, 128, 8, 48, false, 9);
  EXPECT_FALSE(backend::cuda::repack_for_cuda(quant::pack(q, quant::Format::kV2)).has_value());
}

#else

TEST(GptqRepack, NeedsTheCudaBackend) {
  GTEST_SKIP() << "built without the CUDA backend (GPTQ_CUDA=OFF): src/backend/cuda/gptq_repack.cpp is not compiled";
}

#endif

}  // namespace
}  // namespace gptq
