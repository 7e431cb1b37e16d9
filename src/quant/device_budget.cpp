#include "quant/device_budget.h"

#include <algorithm>

#include "model/layer.h"

namespace gptq::quant {

namespace {
std::string mib(uint64_t b) { return std::to_string((b + (1u << 20) - 1) >> 20) + " MiB"; }

uint64_t gptq_work(uint64_t n, uint64_t k) { return std::max(12 * k * k, 4 * k * k + 9 * n * k + 512 * n); }
}  // namespace

std::string DeviceBudget::describe() const {
  return "weights " + mib(weights) + " + Hessians " + mib(hessians) + " + GPTQ work " + mib(gptq_work) + " + workspaces " +
         mib(reserve) + ", plus " +
         std::to_string(per_row) + " bytes per calibration token of a forward chunk";
}

DeviceBudget device_budget(const model::ModelConfig& c, const QuantizeConfig& q, DType activations) {
  const uint64_t e = dtype_size(activations);
  DeviceBudget b;
  uint64_t all_inputs = 0;
  for (model::Slot s : model::kAllSlots) {
    const auto [out, in] = model::slot_shape(c, s);
    b.weights += uint64_t(out * in) * e;
    b.gptq_work = std::max(b.gptq_work, gptq_work(uint64_t(out), uint64_t(in)));
    // One Hessian per distinct input: q/k/v read the q_proj input, gate/up the gate_proj one.
    if (s == model::Slot::kQ || s == model::Slot::kO || s == model::Slot::kGate || s == model::Slot::kDown) {
      const uint64_t h = 4 * uint64_t(in) * uint64_t(in);
      all_inputs += h;
      b.hessians = std::max(b.hessians, h);
    }
  }
  if (!q.true_sequential) b.hessians = all_inputs;
  if (q.lm_head) {
    b.hessians = std::max<uint64_t>(b.hessians, 4 * uint64_t(c.hidden) * uint64_t(c.hidden));
    b.gptq_work = std::max(b.gptq_work, gptq_work(uint64_t(c.vocab), uint64_t(c.hidden)));
  }
  const uint64_t qd = uint64_t(c.heads * c.head_dim), kvd = uint64_t(c.kv_heads * c.head_dim);
  b.per_row = e * (3 * uint64_t(c.hidden) + 2 * qd + 4 * kvd + 2 * uint64_t(c.intermediate)) + 4;
  return b;
}

}  // namespace gptq::quant
