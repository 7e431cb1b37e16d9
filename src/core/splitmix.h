// splitmix64: one multiply-xorshift step per draw; seedable, fast and good enough for
// random weights and test data (not for anything that needs unpredictability).
#pragma once

#include <cstdint>

namespace gptq {

struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1), 24 bits.
  float unit() { return float(next() >> 40) * 0x1.0p-24f; }
};

}  // namespace gptq
