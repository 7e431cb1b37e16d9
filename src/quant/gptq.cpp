#include "quant/gptq.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <sstream>
#include <vector>

#include "core/error.h"

namespace gptq::quant {
namespace {

std::string module_prefix(const GptqOptions& o) { return "GPTQ module '" + o.module_name + "': "; }

void validate(backend::QuantOps& ops, const backend::SweepWeights& weights, int64_t N, int64_t K,
              const backend::Hessian& H, const GptqOptions& o) {
  validate(o.quant);
  const std::string at = module_prefix(o);
  const float* W = weights.host;
  if (W == nullptr && weights.resident.data == nullptr) throw Error(ErrorKind::kInvalidArgument, at + "W is null");
  if (W == nullptr && (weights.resident.rows != N || weights.resident.cols != K)) {
    throw Error(ErrorKind::kInvalidArgument, at + "resident W is [" + std::to_string(weights.resident.rows) + ", " +
                                                 std::to_string(weights.resident.cols) + "], expected [" +
                                                 std::to_string(N) + ", " + std::to_string(K) + "]");
  }
  if (N <= 0 || K <= 0 || H.in_features() != K) {
    throw Error(ErrorKind::kInvalidArgument, at + "bad shape N=" + std::to_string(N) +
                                                 " K=" + std::to_string(K) + " with a Hessian of K=" +
                                                 std::to_string(H.in_features()));
  }
  if (!(o.group_size == -1 || o.group_size > 0)) {
    throw Error(ErrorKind::kInvalidArgument,
                at + "group_size must be -1 or positive, got " + std::to_string(o.group_size));
  }
  if (o.block_size <= 0) {
    throw Error(ErrorKind::kInvalidArgument,
                at + "block_size must be positive, got " + std::to_string(o.block_size));
  }
  if (!(o.damp_percent >= 0.0 && o.damp_percent < 1.0) || !(o.damp_auto_increment >= 0.0)) {
    std::ostringstream m;
    m << at << "need 0 <= damp_percent < 1 and damp_auto_increment >= 0; got damp_percent="
      << o.damp_percent << " damp_auto_increment=" << o.damp_auto_increment;
    throw Error(ErrorKind::kInvalidArgument, m.str());
  }
  // In parallel: an MLP module's 16M weights are milliseconds on one core, per module.
  int bad = 0;
  if (W != nullptr) {
#pragma omp parallel for schedule(static) reduction(| : bad)
    for (int64_t i = 0; i < N * K; ++i) bad |= !std::isfinite(W[i]);
  } else {
    bad = !ops.all_finite(weights.resident);
  }
  if (bad != 0) throw Error(ErrorKind::kInvalidArgument, at + "W has NaN or Inf");
}

// perm[j] = the original column visited j-th. gs: the group width (K when ungrouped);
// the last group is partial when gs does not divide K. Sorts are stable so ties
// (e.g. H ∝ I) keep the natural order and results are reproducible; torch's argsort
// leaves ties unspecified.
std::vector<int64_t> column_order(const std::vector<double>& diag, ActOrder order, int64_t gs) {
  const int64_t K = int64_t(diag.size());
  std::vector<int64_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), int64_t(0));
  const auto by_diag_desc = [&](int64_t a, int64_t b) { return diag[a] > diag[b]; };
  switch (order) {
    case ActOrder::kNone:
      break;
    case ActOrder::kDescAct:
      std::stable_sort(perm.begin(), perm.end(), by_diag_desc);
      break;
    case ActOrder::kGroupAware: {
      // GPTQModel gar.py: compute_local_perms (each group's columns by diag(H)
      // descending), compute_global_perm with its default metric "max" (groups by their
      // largest diag(H), descending, stable), compose_final_perm (concatenate the
      // groups' local orders in the global order). Only the K / gs whole groups are
      // reordered; a partial last group stays last, in natural order
      // (extend_perm_with_tail).
      const int64_t G = K / gs;
      std::vector<double> score(static_cast<size_t>(G));
      for (int64_t g = 0; g < G; ++g) {
        std::stable_sort(perm.begin() + g * gs, perm.begin() + (g + 1) * gs, by_diag_desc);
        score[g] = diag[perm[g * gs]];
      }
      std::vector<int64_t> groups(static_cast<size_t>(G));
      std::iota(groups.begin(), groups.end(), int64_t(0));
      std::stable_sort(groups.begin(), groups.end(),
                       [&](int64_t a, int64_t b) { return score[a] > score[b]; });
      std::vector<int64_t> local = perm;
      for (int64_t j = 0; j < G; ++j) {
        std::copy(local.begin() + groups[j] * gs, local.begin() + (groups[j] + 1) * gs,
                  perm.begin() + j * gs);
      }
      break;
    }
  }
  return perm;
}

struct Factorised {
  std::shared_ptr<backend::InverseFactor> U;
  double damp_percent = 0.0;
  int retries = 0;
};

// GPTQModel's hessian_inverse policy: factorise P H_d Pᵀ + damp · mean(diag H_d) · I,
// raising damp by damp_auto_increment after each failure until it reaches 1.
Factorised factorise(backend::QuantOps& ops, const backend::Hessian& H, const std::vector<int64_t>& perm,
                     const std::vector<char>& dead, double mean_diag, const GptqOptions& o) {
  Factorised f;
  double damp = o.damp_percent;
  for (;;) {
    if (!(damp < 1.0)) {
      std::ostringstream m;
      m << module_prefix(o) << "Hessian is not positive definite for any damp_percent < 1"
        << " (started at " << o.damp_percent << ", " << f.retries
        << " retries); increase the calibration samples";
      throw Error(ErrorKind::kNumerical, m.str());
    }
    f.U = ops.inverse_factor(H, perm, dead, damp * mean_diag);
    if (f.U) break;
    if (o.damp_auto_increment <= 0.0) {
      std::ostringstream m;
      m << module_prefix(o) << "Cholesky failed at damp_percent=" << damp
        << " and damp_auto_increment is 0";
      throw Error(ErrorKind::kNumerical, m.str());
    }
    damp += o.damp_auto_increment;
    ++f.retries;
  }
  f.damp_percent = damp;
  return f;
}

}  // namespace

std::unique_ptr<backend::SweepResult> gptq_quantize_resident(backend::QuantOps& ops, const backend::SweepWeights& W,
                                                             int64_t N, int64_t K, const backend::Hessian& H,
                                                             const GptqOptions& o, GptqStats* stats,
                                                             FactorCache* cache) {
  const auto t0 = std::chrono::steady_clock::now();
  validate(ops, W, N, K, H, o);
  if (!ops.all_finite(H)) throw Error(ErrorKind::kNumerical, module_prefix(o) + "Hessian has NaN or Inf");
  const bool grouped = o.group_size > 0;
  const int64_t gs = grouped ? o.group_size : K;

  QuantizedLinear layout;  // for the sweep: shape, bits, group size, g_idx
  layout.bits = o.quant.bits;
  layout.group_size = grouped ? o.group_size : -1;
  layout.in_features = K;
  layout.out_features = N;
  layout.g_idx.assign(size_t(K), 0);

  // Dead columns (an input channel that was always 0): diag 1 so H stays invertible,
  // weight 0 so it quantizes exactly to 0 (the code equal to the zero point).
  std::vector<double> diag = ops.diagonal(H);
  std::vector<char> dead(static_cast<size_t>(K));
  double mean_diag = 0.0;
  for (int64_t k = 0; k < K; ++k) {
    dead[k] = diag[k] == 0.0;
    if (dead[k]) diag[k] = 1.0;
    mean_diag += diag[k];
  }
  mean_diag /= double(K);

  const std::vector<int64_t> perm = column_order(diag, o.act_order, gs);
  // group_of[j]: the stored group of the column visited j-th. Natural order and
  // desc_act with dynamic groups form groups in visiting order (j / gs, so desc_act's
  // g_idx scatters); static groups and GAR keep each column in its original group
  // (perm[j] / gs; GPTQModel reorders GAR's scales back the same way).
  // (For static groups under GAR, GPTQModel indexes its precomputed groups by visiting
  // position instead; that pairs columns with another group's parameters, so the
  // original-group mapping is used here.)
  const bool original_groups = o.static_groups || o.act_order == ActOrder::kGroupAware;
  std::vector<int32_t> group_of(static_cast<size_t>(K));
  for (int64_t j = 0; j < K; ++j) {
    group_of[j] = int32_t(grouped ? (original_groups ? perm[j] : j) / gs : 0);
    layout.g_idx[perm[j]] = group_of[j];
  }

  using Clock = std::chrono::steady_clock;
  const auto t_factor = Clock::now();
  // Dead columns and mean(diag H) follow from H, so H, the order and the policy decide the factor.
  const bool reuse = cache != nullptr && cache->U && cache->hessian == &H && cache->perm == perm &&
                     cache->damp_percent == o.damp_percent && cache->damp_auto_increment == o.damp_auto_increment;
  Factorised f;
  if (reuse) {
    f = {.U = cache->U, .damp_percent = cache->used_damp, .retries = cache->retries};
  } else {
    if (cache != nullptr) cache->clear();  // its factor's memory goes before the next one is made
    f = factorise(ops, H, perm, dead, mean_diag, o);
    if (cache != nullptr) {
      *cache = {.hessian = &H, .perm = perm, .damp_percent = o.damp_percent,
                .damp_auto_increment = o.damp_auto_increment, .U = f.U, .used_damp = f.damp_percent,
                .retries = f.retries};
    }
  }
  const auto t_sweep = Clock::now();
  // Ungrouped: one (scale, zero) per row from the original W, before dead columns are
  // zeroed (the reference calls find_params(W) first). Static groups: every group's
  // parameters from the un-permuted W with dead columns zeroed, before any error
  // feedback. Otherwise found when the sweep reaches a group's first column, from the
  // error-compensated weights.
  const backend::SweepPlan plan{
      .quant = o.quant,
      .params = !grouped          ? backend::GroupParams::kPerRow
                : o.static_groups ? backend::GroupParams::kStatic
                                  : backend::GroupParams::kDynamic,
      .group_size = gs,
      .block_size = o.block_size,
      .perm = perm,
      .group_of = group_of,
      .dead = dead};
  std::unique_ptr<backend::SweepResult> codes = ops.sweep(W, *f.U, plan, layout);
  const auto t_end = Clock::now();

  if (stats != nullptr) {
    stats->loss = codes->loss();
    stats->damp_percent = f.damp_percent;
    stats->retries = f.retries;
    stats->seconds = std::chrono::duration<double>(t_end - t0).count();
    stats->factor_seconds = std::chrono::duration<double>(t_sweep - t_factor).count();
    stats->sweep_seconds = std::chrono::duration<double>(t_end - t_sweep).count();
    stats->factor_reused = reuse;
  }
  return codes;
}

QuantizedLinear gptq_quantize(backend::QuantOps& ops, const float* W, int64_t N, int64_t K,
                              const backend::Hessian& H, const GptqOptions& o, GptqStats* stats) {
  QuantizedLinear out;
  ops.download(*gptq_quantize_resident(ops, {.host = W}, N, K, H, o, stats), out);
  return out;
}

QuantizedLinear gptq_quantize(const float* W, int64_t N, int64_t K, const double* H,
                              const GptqOptions& o, GptqStats* stats) {
  if (H == nullptr || K <= 0) {
    throw Error(ErrorKind::kInvalidArgument, module_prefix(o) + "H is null or K=" + std::to_string(K));
  }
  const std::unique_ptr<backend::QuantOps> ops = backend::make_cpu_quant_ops();
  const std::unique_ptr<backend::Hessian> h = ops->hessian(K);
  ops->assign(*h, std::span<const double>(H, size_t(K * K)), 0);
  return gptq_quantize(*ops, W, N, K, *h, o, stats);
}

}  // namespace gptq::quant
