// The vectorised 16-bit widening (core/dtype.h) against the scalar conversions, for every
// one of the 65,536 bit patterns, at lengths that leave a scalar tail.
#include "core/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <vector>

namespace gptq {
namespace {

TEST(Dtype, WideningEqualsTheScalarConversionForEveryHalf) {
  std::vector<uint16_t> all(65536 + 5);  // + 5: the last 5 take the scalar tail
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i * 40503u);  // an odd multiplier: a permutation
  std::vector<float> f16(all.size()), bf16(all.size());
  widen_f16(all.data(), f16.data(), int64_t(all.size()));
  widen_bf16(all.data(), bf16.data(), int64_t(all.size()));
  int f16_off = 0, bf16_off = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    // Bits, not values: the sign of zero must survive too. A NaN stays a NaN (F16C quiets
    // the 1,022 signalling ones, so their bits differ).
    const float ref = f16_to_f32(all[i]);
    f16_off += std::isnan(ref) ? !std::isnan(f16[i]) : std::bit_cast<uint32_t>(f16[i]) != std::bit_cast<uint32_t>(ref);
    bf16_off += std::bit_cast<uint32_t>(bf16[i]) != std::bit_cast<uint32_t>(bf16_to_f32(all[i]));
  }
  EXPECT_EQ(f16_off, 0);
  EXPECT_EQ(bf16_off, 0);
  // Short lengths (all tail) and an unaligned start.
  for (int64_t n : {0, 1, 7, 9}) {
    std::vector<float> out(std::size_t(n) + 1, -1.0f);
    widen_f16(all.data() + 3, out.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(out[std::size_t(i)], f16_to_f32(all[std::size_t(i) + 3])) << n << " " << i;
    EXPECT_EQ(out[std::size_t(n)], -1.0f) << "wrote past n = " << n;
  }
}

}  // namespace
}  // namespace gptq
