#include "format/bnb_codebook.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace gptq::quant::bnb {

// bitsandbytes csrc/kernels.cu, dDequantizeNF4 (the same 16 floats as functional.py's
// get_4bit_type("nf4")).
const std::array<float, 16> kNf4 = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// bitsandbytes csrc/kernels.cu, dDequantizeFP4Tree: magnitudes {0, 0.0625, 8, 12, 4, 6,
// 2, 3} / 12 for codes 0-7, negated for codes 8-15.
const std::array<float, 16> kFp4 = {
    0.0f, 0.0625f / 12.0f, 8.0f / 12.0f, 1.0f, 4.0f / 12.0f, 0.5f, 2.0f / 12.0f, 0.25f,
    -0.0f, -0.0625f / 12.0f, -8.0f / 12.0f, -1.0f, -4.0f / 12.0f, -0.5f, -2.0f / 12.0f, -0.25f};

const std::array<float, 256>& dynamic_map() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): torch.linspace
  // in fp32; here in double and rounded once, which can differ from torch's by an ulp.
  static const std::array<float, 256> map = [] {
    std::vector<float> v;
    for (int e = 0; e < 7; ++e) {
      const int items = (1 << e) + 1;
      const double scale = std::pow(10.0, e - 6);
      for (int i = 0; i + 1 < items; ++i) {
        const double lo = 0.1 + 0.9 * i / (items - 1), hi = 0.1 + 0.9 * (i + 1) / (items - 1);
        const auto m = float(scale * (lo + hi) / 2.0);
        v.push_back(m);
        v.push_back(-m);
      }
    }
    v.push_back(0.0f);
    v.push_back(1.0f);
    std::sort(v.begin(), v.end());
    std::array<float, 256> a{};
    std::copy(v.begin(), v.end(), a.begin());
    return a;
  }();
  return map;
}

namespace {

// Index of the nearest value in an ascending table: the number of midpoints below x
// (x exactly on a midpoint stays below it).
template <std::size_t N>
uint8_t nearest_sorted(const std::array<float, N>& table, float x) {
  std::size_t i = 0;
  while (i + 1 < N && x > (table[i] + table[i + 1]) * 0.5f) ++i;
  return uint8_t(i);
}

}  // namespace

uint8_t nearest_nf4(float x) { return nearest_sorted(kNf4, x); }

uint8_t nearest_fp4(float x) {
  // Codes 0-7 by ascending magnitude: 0, 1, 6, 7, 4, 5, 2, 3.
  static constexpr std::array<uint8_t, 8> kByMagnitude = {0, 1, 6, 7, 4, 5, 2, 3};
  const uint8_t sign = x < 0.0f ? 8 : 0;
  const float a = std::fabs(x);
  std::size_t i = 0;
  while (i + 1 < 8 && a > (kFp4[kByMagnitude[i]] + kFp4[kByMagnitude[i + 1]]) * 0.5f) ++i;
  return uint8_t(kByMagnitude[i] | sign);
}

uint8_t nearest_dynamic(float x) {
  const auto& m = dynamic_map();
  // Binary search for the first entry >= x, then the nearer of it and its predecessor.
  const auto it = std::lower_bound(m.begin(), m.end(), x);
  if (it == m.begin()) return 0;
  if (it == m.end()) return 255;
  const auto hi = std::size_t(it - m.begin());
  return uint8_t(x - m[hi - 1] <= m[hi] - x ? hi - 1 : hi);
}

}  // namespace gptq::quant::bnb
