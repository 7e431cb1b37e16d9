#include "model/rope.h"

#include <cmath>
#include <numbers>

namespace gptq::model {

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv_freq(static_cast<std::size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    // inv_freq = 1 / theta^(2i / d), every step in fp32 like the reference.
    const float exponent = float(2 * i) / float(c.head_dim);
    const float base = std::pow(float(c.rope.theta), exponent);
    inv_freq[std::size_t(i)] = 1.0f / base;
  }
  if (c.rope.scaling == RopeScaling::kLlama3) {
    // Llama 3.1 frequency scaling: long wavelengths are divided by `factor`, short ones
    // kept, and the band between is interpolated smoothly.
    const auto& r = c.rope;
    const float old_ctx = float(r.original_max_position);
    const float low_wavelen = old_ctx / float(r.low_freq_factor);
    const float high_wavelen = old_ctx / float(r.high_freq_factor);
    for (float& f : inv_freq) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
      float scaled = wavelen > low_wavelen ? f / float(r.factor) : f;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const float smooth = (old_ctx / wavelen - float(r.low_freq_factor)) /
                             (float(r.high_freq_factor) - float(r.low_freq_factor));
        scaled = (1.0f - smooth) * scaled / float(r.factor) + smooth * scaled;
      }
      f = scaled;
    }
  }
  return inv_freq;
}

backend::RopeTable make_rope_table(const ModelConfig& c, backend::Backend& b) {
  return {.head_dim = c.head_dim, .inv_freq = b.vector(rope_inv_freq(c))};
}

}  // namespace gptq::model
