#include "eval/stats.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace gptq::eval {

MeanErr mean_stderr(std::span<const double> x) {
  MeanErr r;
  if (x.empty()) return r;
  const double n = double(x.size());
  double sum = 0.0;
  for (double v : x) sum += v;
  r.mean = sum / n;
  if (x.size() < 2) return r;
  double ss = 0.0;  // two-pass: no cancellation when the mean is large
  for (double v : x) ss += (v - r.mean) * (v - r.mean);
  r.err = std::sqrt(ss / (n - 1.0)) / std::sqrt(n);
  return r;
}

nlohmann::ordered_json to_json(const MeanErr& m) { return {{"value", m.mean}, {"stderr", m.err}}; }

double mean_covariance(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size()) throw Error(ErrorKind::kInvalidArgument, "mean_covariance: lengths differ");
  if (x.size() < 2) return 0.0;
  const double n = double(x.size());
  double mx = 0.0, my = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  double s = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) s += (x[i] - mx) * (y[i] - my);
  return s / n / (n - 1.0);
}

double percentile(std::span<const double> sorted, double fraction) {
  if (sorted.empty()) throw Error(ErrorKind::kInvalidArgument, "percentile of no values");
  if (fraction <= 0.0) return sorted.front();
  if (fraction >= 1.0) return sorted.back();
  const double p = fraction * double(sorted.size() - 1);
  const std::size_t i = std::size_t(p);
  const double t = p - double(i);
  const std::size_t j = std::min(i + 1, sorted.size() - 1);
  return (1.0 - t) * sorted[i] + t * sorted[j];
}

}  // namespace gptq::eval
