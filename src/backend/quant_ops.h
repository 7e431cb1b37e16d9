// The compute GPTQ needs, per backend: Hessian accumulation where the activations are,
// the damped inverse-Hessian factor, and the blocked column sweep. The algorithm that
// drives it (column order, dead columns, groups, the damping retries, statistics) is
// written once, in src/quant/gptq.cpp; implementations here do arithmetic only.
//
// Why the interface lives in the backend layer and not in src/quant: the CUDA
// implementation belongs with the CUDA backend (its stream, cuBLAS handle and memory),
// and the layers only link downwards (core <- io <- tokenizer <- format <- backend <-
// model <- quant). Its parameter types (QuantizerConfig, QuantizedLinear) are format
// types for the same reason.
//
// Implementations: src/backend/cpu/quant_ops.cpp (OpenBLAS/LAPACK/OpenMP, the
// reference) and src/backend/cuda/quant_ops.cu (cuBLAS/cuSOLVER, fused sweep kernels).
// Obtain one with make_quant_ops (src/backend/registry.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/device_comm.h"
#include "format/packing.h"
#include "format/quant_params.h"
#include "format/quantizer.h"

namespace gptq::backend {

// The arithmetic of the damped inverse-Hessian factor on a device (the CPU's is fp64):
// fp64 by default; fp32 halves its K² work matrix (K = 14336: 1.6 → 0.8 GiB) and is
// ~17% faster (bench/bench_cuda_factor, H200), for runs whose memory cap needs it.
enum class FactorPrecision : uint8_t { kF64, kF32 };

// H = 2/n Σ x xᵀ over the n input rows of one linear seen so far: [K, K], symmetric,
// in the memory of the QuantOps that made it (fp64 on the CPU, fp32 on CUDA).
class Hessian {
 public:
  virtual ~Hessian() = default;
  int64_t in_features() const { return k_; }
  int64_t samples() const { return samples_; }

 protected:
  explicit Hessian(int64_t k) : k_(k) {}
  int64_t k_;
  int64_t samples_ = 0;
};

// The upper Cholesky factor U of (P H_d Pᵀ + λI)⁻¹ = UᵀU: [K, K] fp32, visiting order.
class InverseFactor {
 public:
  virtual ~InverseFactor() = default;
};

// Where a row's (scale, zero) for a group comes from.
enum class GroupParams : uint8_t {
  kPerRow,   // ungrouped: one per row, from the original W (dead columns not zeroed)
  kStatic,   // every group's, from the un-permuted W with dead columns zeroed, before the sweep
  kDynamic,  // when the sweep reaches a group's first visited column, from the weights as of
             // the start of that block (error feedback of earlier blocks included)
};

// A module's weights for the sweep, [N, K] row-major, holding the checkpoint's values
// exactly: fp32 in host memory, or a tensor in the QuantOps' own memory (on CUDA: the
// dense layer the calibration passes already hold, when its dtype is the checkpoint's),
// which spares the host conversion and the upload (the 8B shape: 28 GB of fp32 weights).
struct SweepWeights {
  const float* host = nullptr;
  Tensor resident;  // when host is null: [N, K], F32/F16/BF16
};

// What the sweep does, decided by the algorithm. j counts visited columns.
struct SweepPlan {
  quant::QuantizerConfig quant;
  GroupParams params = GroupParams::kDynamic;
  int64_t group_size = 0;             // columns per group; K when ungrouped
  int64_t block_size = 128;           // columns per lazy batch update
  std::span<const int64_t> perm;      // [K] the original column visited j-th
  std::span<const int32_t> group_of;  // [K] the stored group of the column visited j-th
  std::span<const char> dead;         // [K] by original column: the input was always 0
};

// What a sweep produced, kept in the memory of the QuantOps that made it (device memory
// on CUDA): codes [N, K] one byte each (original column order), scales and zeros [G, N]
// (v2 meaning), and the layout it was given (shape, bits, group size, g_idx). From
// there it is packed into checkpoint tensors (QuantOps::pack) or read back unpacked
// (QuantOps::download); on CUDA only what is asked for crosses to the host.
class SweepResult {
 public:
  virtual ~SweepResult() = default;
  // Σ (w − q)² / (2 d²) over every weight, d = U[j, j] of its visited column.
  double loss() const { return loss_; }

 protected:
  explicit SweepResult(double loss) : loss_(loss) {}
  double loss_;
};

class QuantOps {
 public:
  virtual ~QuantOps() = default;

  // A zero Hessian for a linear with K = in_features inputs.
  virtual std::unique_ptr<Hessian> hessian(int64_t in_features) = 0;
  // H ← H · n/(n + r) + 2/(n + r) · XᵀX for x: [r, K] in this backend's memory and
  // activation dtype (any row stride). r = 0 is a no-op.
  virtual void accumulate(Hessian& h, Tensor x) = 0;
  // H := host ([K, K] fp64 row-major, symmetric), as if from `samples` rows (tests, tools).
  virtual void assign(Hessian& h, std::span<const double> host, int64_t samples) = 0;
  // The ranks' Hessians of one input pooled in place, device to device: on every rank of
  // `comm`, H := Σ_r weight_r H_r, as if from `rows` rows. Every rank calls it with the same
  // h shape. False when this QuantOps cannot (the CPU's, or another backend's comm): the
  // caller then pools through the host (download, sum, assign).
  virtual bool pool(Hessian& h, double weight, int64_t rows, DeviceComm& comm) { return false; }
  virtual std::vector<double> download(const Hessian& h) = 0;  // [K, K] fp64 row-major
  virtual std::vector<double> diagonal(const Hessian& h) = 0;  // [K]
  virtual bool all_finite(const Hessian& h) = 0;
  // Whether every value of a resident weight tensor is finite (SweepWeights::resident).
  virtual bool all_finite(Tensor w) = 0;

  // The factor for H_d = H with H_d[c, c] = 1 at dead columns c, permuted (row j of
  // P H_d Pᵀ is column perm[j]) and damped by λ on the diagonal. Null when the damped
  // matrix is not numerically positive definite: the caller raises λ.
  virtual std::unique_ptr<InverseFactor> inverse_factor(const Hessian& h, std::span<const int64_t> perm,
                                                        std::span<const char> dead, double lambda) = 0;

  // GPTQ's column sweep over W: [N, K] row-major, original column order (SweepWeights).
  // `layout` has its shape, bits, group size and g_idx set (its q, scales and zeros are
  // not read). A CUDA result lives in the QuantOps' scratch: it is valid until the next
  // sweep or inverse_factor on the same QuantOps (pack and download check, kInvalidArgument).
  virtual std::unique_ptr<SweepResult> sweep(const SweepWeights& W, const InverseFactor& U, const SweepPlan& plan,
                                             const quant::QuantizedLinear& layout) = 0;
  // The codes, scales and zeros unpacked into `out` (which gets the layout's shape and g_idx).
  virtual void download(const SweepResult& r, quant::QuantizedLinear& out) = 0;
  // The checkpoint tensors (qweight, qzeros with zeros stored per `format`, fp16 scales,
  // g_idx; no bias), byte for byte what quant::pack (format/packing.h) makes of download(r).
  virtual quant::PackedLinear pack(const SweepResult& r, quant::Format format) = 0;
  // The layer r makes on `b` (the backend this QuantOps serves) for the next calibration
  // passes: what b.gptq_linear makes of pack(r, kV2) with `bias` ([N] or empty), the
  // same bytes, built where r is without a round trip through the host where b can.
  virtual std::unique_ptr<Linear> swap_in(Backend& b, const SweepResult& r, std::vector<float> bias) = 0;
};

// The reference implementation (src/backend/cpu/quant_ops.cpp); serves the CPU backend.
std::unique_ptr<QuantOps> make_cpu_quant_ops();

}  // namespace gptq::backend
