// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers") for one linear layer, following GPTQModel's
// gptqmodel/quantization/gptq.py: dead columns, damping with automatic increments,
// the inverse-Hessian upper Cholesky factor, lazy batch (block) updates, act-order
// (desc_act), static groups and group-aware reordering (act_group_aware, GAR).
//
// Precision: the factorisation H + λI = LLᵀ → H⁻¹ → H⁻¹ = UᵀU runs in fp64 with
// LAPACK (ill-conditioned Hessians are the norm: few calibration rows, near-duplicate
// channels, and fp32 Cholesky is where the reference's damping retries come from). The
// factor U is then stored in fp32 and the column loop and its GEMM run in fp32, like the
// reference: the weights are fp16/bf16 to start with, and fp32 halves the dominant
// N·K² GEMM time and the K² factor memory.
//
// Memory, besides the caller's W and H: a K² fp64 work matrix during the factorisation
// (freed before the loop), the K² fp32 factor U, and an N·K fp32 working copy of W plus
// two N·block_size blocks. K = 16384: 2 GiB + 1 GiB + N·64 KiB.
#pragma once

#include <cstdint>
#include <string>

#include "format/quant_params.h"
#include "quant/quantizer.h"

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
};

// W: [N, K] fp32 row-major (torch Linear.weight); H: [K, K] fp64 row-major symmetric
// (HessianAccumulator::matrix()). Returns codes, fp16-exact scales, zeros and g_idx in
// the original column order. Throws kInvalidArgument for a bad shape or option and
// kNumerical (naming opts.module_name) for a non-finite H or one that no damping below
// 1 makes positive definite. stats may be null.
QuantizedLinear gptq_quantize(const float* W, int64_t N, int64_t K, const double* H,
                              const GptqOptions& opts, GptqStats* stats);

// Σ_n (w_n − ŵ_n) H (w_n − ŵ_n)ᵀ with ŵ = q.dequant: the layer's output error in the
// Hessian's metric. For H = 2/n XᵀX it is 2/n ‖W Xᵀ − Ŵ Xᵀ‖²_F. Costs N·K² fp64 flops.
double hessian_error(const float* W, const QuantizedLinear& q, const double* H);

}  // namespace gptq::quant
