#include "quant/device_budget.h"

#include <algorithm>

#include "core/error.h"
#include "model/layer.h"

namespace gptq::quant {

namespace {
std::string mib(uint64_t b) { return std::to_string((b + (1u << 20) - 1) >> 20) + " MiB"; }

// The CUDA QuantOps' scratch for one module, kept at its largest from module to module
// (backend/cuda/quant_ops.cu): the fp64 factorisation, or the sweep's weights, working
// weights, codes, block errors, and scales and zeros (groups of 8 columns or more).
uint64_t gptq_scratch(uint64_t n, uint64_t k, uint64_t factor_bytes) {
  return std::max(factor_bytes * k * k, 10 * n * k + 512 * n);
}

// Chunks of this many rows keep every linear a large product; beyond it residency wins.
constexpr int64_t kEfficientRows = 2048;

bool streams(StoreHome activations, StoreHome residual) {
  return activations == StoreHome::kHost || residual == StoreHome::kHost;
}
}  // namespace

std::string DeviceBudget::describe() const {
  return "weights " + mib(weights) + " + Hessians " + mib(hessians) + " + GPTQ work " + mib(gptq_work) + " + workspaces " +
         mib(reserve) + " + upload staging " + mib(staging) + ", plus " + std::to_string(per_row) + " bytes per calibration token of a forward chunk and " +
         std::to_string(per_token) + " per calibration token and activation store kept on the device";
}

DeviceBudget device_budget(const model::ModelConfig& c, const QuantizeConfig& q, DType activations,
                           backend::FactorPrecision factor) {
  const uint64_t e = dtype_size(activations), fe = factor == backend::FactorPrecision::kF64 ? 8 : 4;
  DeviceBudget b;
  uint64_t all_inputs = 0, scratch = 0, k_max = 0;
  for (model::Slot s : model::kAllSlots) {
    const auto [out, in] = model::slot_shape(c, s);
    b.weights += uint64_t(out * in) * e;
    scratch = std::max(scratch, gptq_scratch(uint64_t(out), uint64_t(in), fe));
    k_max = std::max(k_max, uint64_t(in));
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
    scratch = std::max(scratch, gptq_scratch(uint64_t(c.vocab), uint64_t(c.hidden), fe));
  }
  b.gptq_work = 4 * k_max * k_max + scratch;  // the fp32 factor U of the module at hand, and the scratch
  const uint64_t qd = uint64_t(c.heads * c.head_dim), kvd = uint64_t(c.kv_heads * c.head_dim);
  b.per_row = e * (4 * uint64_t(c.hidden) + 2 * qd + 4 * kvd + 2 * uint64_t(c.intermediate));
  b.per_token = e * uint64_t(c.hidden);
  b.staging = 3 * uint64_t(kEmbedSliceRows) * uint64_t(c.hidden) * 4;
  return b;
}

ActivationPlan plan_activations(const DeviceBudget& need, uint64_t cap, const ActivationNeeds& a) {
  const uint64_t positions = 4 * uint64_t(a.tokens), store = need.per_token * uint64_t(a.tokens);
  const StoreHome kept = a.keep_residual ? StoreHome::kHost : StoreHome::kNone;
  struct Option {
    StoreHome activations, residual;
    int stores_on_device;
  };
  std::vector<Option> options;
  if (a.device_stores) {
    if (a.keep_residual) options.push_back({StoreHome::kDevice, StoreHome::kDevice, 2});
    options.push_back({StoreHome::kDevice, kept, 1});
  }
  options.push_back({StoreHome::kHost, kept, 0});
  const int64_t enough = std::min(a.wanted_rows, std::max(a.longest, kEfficientRows));
  for (std::size_t i = 0; i < options.size(); ++i) {
    const Option& o = options[i];
    const uint64_t resident = need.fixed() + positions + uint64_t(o.stores_on_device) * store;
    const uint64_t per_row = need.per_row + (streams(o.activations, o.residual) ? need.per_token : 0);
    const int64_t fit = cap > resident ? int64_t((cap - resident) / per_row) : 0;
    const bool last = i + 1 == options.size();
    if (fit >= (last ? a.longest : enough)) {
      const int64_t rows = std::min(a.wanted_rows, fit);
      return {.activations = o.activations, .residual = o.residual, .chunk_rows = rows,
              .bytes = resident + uint64_t(rows) * per_row};
    }
  }
  // The last option streams the activations.
  const uint64_t least = need.fixed() + positions + uint64_t(a.longest) * (need.per_row + need.per_token);
  throw Error(ErrorKind::kDevice, "quantizing needs at least " + std::to_string(least) + " bytes of device memory (" +
                                      need.describe() + "; the longest sample has " + std::to_string(a.longest) +
                                      " tokens), more than the " + std::to_string(cap) + " bytes available");
}

}  // namespace gptq::quant
