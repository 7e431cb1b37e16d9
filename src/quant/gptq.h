// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers") for one linear layer, following GPTQModel's
// gptqmodel/quantization/gptq.py: dead columns, damping with automatic increments,
// the inverse-Hessian upper Cholesky factor, lazy batch (block) updates, act-order
// (desc_act), static groups and group-aware reordering (act_group_aware, GAR).
//
// The algorithm is here, once: the column order, dead columns, groups, the damping
// retries and the statistics. The arithmetic (factorisation, column sweep, Hessians) is
// a backend's QuantOps (src/backend/quant_ops.h): fp64 LAPACK factorisation and an fp32
// sweep on the CPU, the reference; cuSOLVER and fused sweep kernels on CUDA.
//
// Precision: the factorisation H + λI = LLᵀ → H⁻¹ → H⁻¹ = UᵀU runs in fp64
// (ill-conditioned Hessians are the norm: few calibration rows, near-duplicate channels,
// and fp32 Cholesky is where the reference's damping retries come from). The factor U
// is then stored in fp32 and the column loop and its GEMM run in fp32, like the
// reference: the weights are fp16/bf16 to start with, and fp32 halves the dominant
// N·K² GEMM time and the K² factor memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/quant_ops.h"
#include "format/quant_params.h"
#include "format/quantizer.h"

namespace gptq::quant {

// The order in which GPTQ visits the input columns. One enum because the two act-order
// modes exclude each other (GPTQModel's QuantizeConfig turns act_group_aware off when
// desc_act is set). With group_size −1, kGroupAware sees one group: desc_act's order.
enum class ActOrder {
  kNone,        // natural order 0..K-1; g_idx[k] = k / group_size
  kDescAct,     // desc_act: by diag(H) descending. Groups are formed in that permuted
                // order (unless static_groups), so g_idx is a scattered, non-monotone map
  kGroupAware,  // act_group_aware (GAR): columns sorted by diag(H) within each group,
                // groups sorted by their largest diag(H). Group membership is unchanged,
                // so g_idx stays k / group_size (monotone, kernel friendly)
};

struct GptqOptions {
  QuantizerConfig quant = {};  // bits, sym, scale search (min/max or MSE clipping)
  int group_size = 128;        // -1: one group over all of K; else G = ceil(K / group_size)
  ActOrder act_order = ActOrder::kNone;
  // Compute every group's (scale, zero) up front from the un-permuted W, before any
  // error feedback; groups are then the natural ones even under kDescAct, and g_idx is
  // k / group_size. No effect with group_size −1.
  bool static_groups = false;
  double damp_percent = 0.05;        // λ = damp_percent · mean(diag H), in [0, 1)
  double damp_auto_increment = 0.01; // on a failed Cholesky; 0: fail at once
  int block_size = 128;              // columns per lazy batch update
  std::string module_name = "linear";  // for error messages
};

struct GptqStats {
  // Σ (w − q)² / (2 d²) over every weight, d the diagonal of U at its column: GPTQModel's
  // Σ Losses. In exact arithmetic it equals ½ Σ_n δ_n (H + λI) δ_nᵀ, δ = W − Q; GPTQModel
  // logs it divided by the sample count (HessianAccumulator::samples()).
  double loss = 0.0;
  double damp_percent = 0.0;  // the damping that finally factorised
  int retries = 0;            // failed factorisations before that
  double seconds = 0.0;       // wall time of gptq_quantize
  double factor_seconds = 0.0;  // of which the factorisations (ends with the device's result read back)
  double sweep_seconds = 0.0;   // and the sweep (ends with the codes complete in the QuantOps' memory)
  bool factor_reused = false;   // the factor came from the FactorCache
};

// The last factorisation, for the next module that reads the same Hessian in the same
// column order with the same damping: q/k/v share one H and gate/up another, and the
// factor depends on H, the order, the dead columns and the damping policy only (not on
// W), so each distinct input is factorised once per layer. It is keyed by the Hessian's
// address: whoever owns the Hessians clears it before one is changed or freed.
struct FactorCache {
  const backend::Hessian* hessian = nullptr;
  std::vector<int64_t> perm;
  double damp_percent = 0.0, damp_auto_increment = 0.0;
  std::shared_ptr<backend::InverseFactor> U;
  double used_damp = 0.0;  // what the first factorisation settled on, and its retries
  int retries = 0;
  void clear() { *this = {}; }
};

// W: [N, K] fp32 row-major (torch Linear.weight), host; H: the module's input Hessian,
// made by `ops`. Returns codes, fp16-exact scales, zeros and g_idx in the original
// column order. Throws kInvalidArgument for a bad shape or option and kNumerical
// (naming opts.module_name) for a non-finite H or one that no damping below 1 makes
// positive definite. stats may be null.
QuantizedLinear gptq_quantize(backend::QuantOps& ops, const float* W, int64_t N, int64_t K,
                              const backend::Hessian& H, const GptqOptions& opts, GptqStats* stats);

// The same, leaving the result where `ops` computed it (device memory on CUDA), to be
// packed there (QuantOps::pack) so that only checkpoint tensors cross to the host; valid
// as QuantOps::sweep's result is. gptq_quantize is this followed by QuantOps::download.
// `cache` (may be null) supplies and keeps the factor; a reused one adds no factor time.
// W may also be the weights already in ops' memory (backend::SweepWeights::resident).
std::unique_ptr<backend::SweepResult> gptq_quantize_resident(backend::QuantOps& ops, const backend::SweepWeights& W,
                                                             int64_t N, int64_t K, const backend::Hessian& H,
                                                             const GptqOptions& opts, GptqStats* stats,
                                                             FactorCache* cache = nullptr);

// The same with H: [K, K] fp64 row-major symmetric on the host, on the CPU reference
// QuantOps (tests, tools).
QuantizedLinear gptq_quantize(const float* W, int64_t N, int64_t K, const double* H,
                              const GptqOptions& opts, GptqStats* stats);

}  // namespace gptq::quant
