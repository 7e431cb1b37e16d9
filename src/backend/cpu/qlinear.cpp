// Viewing a packed layer, and choosing the kernel by the number of rows of x.
#include "backend/cpu/qlinear.h"

namespace gptq::backend::cpu {

PackedLinearView make_view(const quant::PackedLinear& p) {
  quant::validate(p);
  PackedLinearView v;
  v.bits = p.bits;
  v.group_size = p.group_size;
  v.in_features = p.in_features;
  v.out_features = p.out_features;
  v.num_groups = p.num_groups();
  v.qweight = p.qweight.data();
  v.qzeros = p.qzeros.data();
  v.scales = p.scales.data();
  v.g_idx = p.g_idx.data();
  v.bias = p.bias.empty() ? nullptr : p.bias.data();
  v.sequential_groups = true;
  for (int64_t k = 0; k < p.in_features && v.sequential_groups; ++k) {
    const int64_t expected = p.group_size <= 0 ? 0 : k / p.group_size;
    v.sequential_groups = p.g_idx[k] == expected;
  }
  return v;
}

void qlinear_forward(const PackedLinearView& w, const float* x, int64_t M, float* y) {
  if (M <= kFusedMaxRows) {
    qlinear_fused(w, x, M, y);
  } else {
    qlinear_tiled(w, x, M, y);
  }
}

}  // namespace gptq::backend::cpu
