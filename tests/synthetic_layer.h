// Synthetic linear layers for the GPTQ tests: Gaussian weights and correlated inputs
// (X = Z·A with A a random mixing matrix, columns rescaled), so H = 2/R XᵀX is far from
// diagonal and its diagonal is spread out: error feedback and act-order both have
// something to do.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace gptq::test {

inline std::vector<float> gaussian(size_t n, uint64_t seed, float sigma = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// X = Z·A, then column k scaled by exp(u_k), u_k ~ U(-1.5, 1.5).
inline std::vector<float> correlated_inputs(int64_t R, int64_t K, uint64_t seed) {
  const std::vector<float> Z = gaussian(size_t(R * K), seed);
  std::vector<float> A = gaussian(size_t(K * K), seed + 1, 1.0f / std::sqrt(float(K)));
  for (int64_t k = 0; k < K; ++k) A[k * K + k] += 0.5f;
  std::mt19937_64 rng(seed + 2);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  std::vector<float> colscale(static_cast<size_t>(K));
  for (float& s : colscale) s = std::exp(u(rng));
  std::vector<float> X(size_t(R * K), 0.0f);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t t = 0; t < K; ++t) {
      const float z = Z[r * K + t];
      for (int64_t k = 0; k < K; ++k) X[r * K + k] += z * A[t * K + k];
    }
    for (int64_t k = 0; k < K; ++k) X[r * K + k] *= colscale[k];
  }
  return X;
}

}  // namespace gptq::test
