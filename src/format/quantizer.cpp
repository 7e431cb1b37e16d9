#include "format/quantizer.h"

#include <limits>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace gptq::quant {

void validate(const QuantizerConfig& config) {
  if (config.bits != 2 && config.bits != 3 && config.bits != 4 && config.bits != 8) {
    throw Error(ErrorKind::kInvalidArgument,
                "quantizer: bits must be 2, 3, 4 or 8, got " + std::to_string(config.bits));
  }
  if (config.min_zero < 0 || config.min_zero >= max_code(config.bits)) {
    throw Error(ErrorKind::kInvalidArgument, "quantizer: min_zero must be in [0, maxq), got " +
                                                 std::to_string(config.min_zero));
  }
  if (config.scale_search == ScaleSearch::kMse) {
    const MseGrid& g = config.mse;
    if (g.grid < 1 || !(g.maxshrink > 0.0 && g.maxshrink <= 1.0) || !(g.norm > 0.0)) {
      throw Error(ErrorKind::kInvalidArgument,
                  "quantizer: MSE grid needs grid >= 1, maxshrink in (0, 1], norm > 0; got grid=" +
                      std::to_string(g.grid) + " maxshrink=" + std::to_string(g.maxshrink) +
                      " norm=" + std::to_string(g.norm));
    }
  }
}

float fp16_scale(float scale) {
  constexpr float kMinSubnormal = 5.9604645e-8f;  // 2^-24, the smallest positive fp16
  constexpr float kMaxHalf = 65504.0f;
  if (!(scale < kMaxHalf)) return kMaxHalf;  // also catches NaN / inf
  const float h = f16_to_f32(f32_to_f16(scale));
  return h > 0.0f ? h : kMinSubnormal;
}

namespace {

// Scale and zero for the range [xmin, xmax] (xmin <= 0 <= xmax, not both 0).
RowParams params_for_range(float xmin, float xmax, int32_t maxq, bool sym, int32_t min_zero) {
  RowParams p;
  p.scale = fp16_scale((xmax - xmin) / float(maxq));
  if (sym) {
    p.zero = (maxq + 1) / 2;
    return p;
  }
  // xmin <= 0 so -xmin/scale >= 0; the fp16 rounding of the scale can push it a
  // fraction past maxq, hence the clamp.
  const float z = std::nearbyint(-xmin / p.scale);
  p.zero = int32_t(std::fmin(std::fmax(z, 0.0f), float(maxq)));
  if (p.zero < min_zero) {
    // Representable with zero z: [-z·scale, (maxq - z)·scale]; grow the scale to keep
    // both ends of the range inside it.
    p.zero = min_zero;
    p.scale = fp16_scale(std::fmax(xmax / float(maxq - min_zero), -xmin / float(min_zero)));
  }
  return p;
}

// Σ |dequant(quant(x)) − x|^norm over the slice: the MSE search objective.
double clip_error(const float* x, int64_t n, RowParams p, int32_t maxq, double norm) {
  double err = 0.0;
  for (int64_t k = 0; k < n; ++k) {
    const float e = dequantize_code(quantize_code(x[k], p, maxq), p) - x[k];
    err += std::pow(double(std::fabs(e)), norm);
  }
  return err;
}

}  // namespace

RowParams find_row_params(const float* x, int64_t n, const QuantizerConfig& config) {
  const int32_t maxq = max_code(config.bits);
  // The range always contains 0, so that zero is exactly representable.
  float xmin = 0.0f;
  float xmax = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    xmin = std::fmin(xmin, x[k]);
    xmax = std::fmax(xmax, x[k]);
  }
  if (config.sym) {
    // Symmetric: [-m, m] with m = max |x|. (The Python reference mirrors xmin only when it
    // is negative, so a group with no negative weight gets range [0, m] around the
    // midpoint zero and saturates at m/2; we always mirror.)
    xmax = std::fmax(-xmin, xmax);
    xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {  // all-zero row: any scale reproduces it exactly
    xmin = -1.0f;
    xmax = 1.0f;
  }
  RowParams best = params_for_range(xmin, xmax, maxq, config.sym, config.min_zero);
  if (config.scale_search == ScaleSearch::kMse) {
    const MseGrid& g = config.mse;
    double best_err = std::numeric_limits<double>::infinity();
    const int steps = int(g.maxshrink * double(g.grid));
    for (int i = 0; i < steps; ++i) {
      const float shrink = float(1.0 - double(i) / double(g.grid));
      const RowParams cand = params_for_range(shrink * xmin, shrink * xmax, maxq, config.sym, config.min_zero);
      const double err = clip_error(x, n, cand, maxq, g.norm);
      if (err < best_err) {
        best_err = err;
        best = cand;
      }
    }
  }
  return best;
}

}  // namespace gptq::quant
