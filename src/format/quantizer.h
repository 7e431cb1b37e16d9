// The group quantizer shared by GPTQ and RTN: for one output row's slice of a weight
// group it finds (scale, zero) with the GPTQModel / AutoGPTQ conventions, and maps
// weights to integer codes and back.
//
//   asymmetric: xmin = min(min(x), 0), xmax = max(max(x), 0)
//               scale = (xmax - xmin) / maxq, zero = round(-xmin / scale)
//   symmetric:  xmax = max(|xmin|, xmax), xmin = -xmax,
//               scale = (xmax - xmin) / maxq, zero = (maxq + 1) / 2
//   code  = clamp(round(x / scale) + zero, 0, maxq)      (round: half to even, as torch)
//   value = scale * (code - zero)
//
// Unlike the Python reference, the scale is rounded to an fp16-representable value
// before the zero point and the codes are derived from it, so that what GPTQ/RTN keep in
// memory is bit-for-bit what a saved checkpoint (fp16 scales) reloads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace gptq::quant {

// How the clipping range of a group is chosen.
enum class ScaleSearch {
  kMinMax,  // the full [min, max] range of the group
  kMse,     // GPTQModel's `mse` option: shrink the range while that lowers Σ|q − w|^norm
};

// GPTQModel's shrink grid for ScaleSearch::kMse: candidates p = 1 − i/grid for
// i in [0, int(maxshrink · grid)), range [p·xmin, p·xmax]. p = 1 (the min/max range)
// is the first candidate, so the search never does worse than min/max in its own norm.
struct MseGrid {
  int grid = 100;
  double maxshrink = 0.8;
  double norm = 2.4;
};

struct QuantizerConfig {
  int bits = 4;     // 2, 3, 4 or 8
  bool sym = true;  // symmetric: zero point fixed at 2^(bits-1)
  ScaleSearch scale_search = ScaleSearch::kMinMax;
  MseGrid mse = {};
  // Smallest zero point allowed (asymmetric only). 1 for v1 checkpoints: v1 stores
  // zero − 1, and a stored −1 is read back as 2^bits by AutoGPTQ and carried into the
  // neighbouring column by GPTQModel's v1 → v2 conversion; no v1 reader decodes zero 0.
  int32_t min_zero = 0;
};

// Throws Error(kInvalidArgument) for bits outside {2, 3, 4, 8} or a bad MSE grid.
void validate(const QuantizerConfig& config);

constexpr int32_t max_code(int bits) { return (int32_t(1) << bits) - 1; }

// Quantization parameters of one output row within one group.
struct RowParams {
  float scale = 1.0f;  // fp16-representable, > 0
  int32_t zero = 0;    // in [0, maxq]
};

// Parameters for the n weights x[0, n) of one row of one group.
RowParams find_row_params(const float* x, int64_t n, const QuantizerConfig& config);

// The nearest fp16 value (round to nearest even), clamped into the positive finite
// fp16 range: a scale below the smallest fp16 subnormal becomes that subnormal (the
// code then saturates instead of dividing by zero), one above 65504 becomes 65504.
float fp16_scale(float scale);

inline int32_t quantize_code(float w, RowParams p, int32_t maxq) {
  // fmax/fmin rather than std::clamp so that a NaN maps to code 0 instead of UB.
  const float q = std::nearbyint(w / p.scale) + float(p.zero);
  return int32_t(std::fmin(std::fmax(q, 0.0f), float(maxq)));
}

inline float dequantize_code(int32_t code, RowParams p) {
  return p.scale * float(code - p.zero);
}

}  // namespace gptq::quant
