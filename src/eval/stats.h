// Summary statistics shared by the evaluation commands.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

namespace gptq::eval {

struct MeanErr {
  double mean = 0.0;
  double err = 0.0;  // standard error of the mean
};

// mean and sample standard deviation / √n: lm-eval's mean_stderr, and the same value as
// llama.cpp's sqrt((Σx²/n − mean²)/(n − 1)). stderr is 0 for fewer than 2 values.
MeanErr mean_stderr(std::span<const double> x);
nlohmann::ordered_json to_json(const MeanErr& m);  // {"value", "stderr"}

// Sample covariance of the two means, cov(x, y) / n, as llama.cpp's kl_divergence
// computes it ((Σxy/n − x̄ȳ)/(n − 1)); 0 for fewer than 2 pairs.
double mean_covariance(std::span<const double> x, std::span<const double> y);

// Linear interpolation between order statistics at fraction·(n − 1) of the sorted
// values (llama.cpp's percentile; numpy's default "linear" method). `sorted` ascending,
// non-empty; fraction in [0, 1].
double percentile(std::span<const double> sorted, double fraction);

}  // namespace gptq::eval
