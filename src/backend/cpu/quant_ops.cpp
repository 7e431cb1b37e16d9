// The reference QuantOps: fp64 Hessians (a tiled syrk, backend/cpu/hessian.h), the fp64
// LAPACK factorisation, and the fp32 column sweep with OpenMP over rows and one tiled
// sgemm per block for the lazy update. Every product is thread-count invariant
// (backend/cpu/fixed_blas.h), so a checkpoint does not depend on the machine's load.
//
// Memory per module, besides W and H: a K² fp64 work matrix during the factorisation
// (freed before the sweep), the K² fp32 factor U, and an N·K fp32 working copy of W plus
// two N·block_size blocks. K = 16384: 2 GiB + 1 GiB + N·64 KiB.
#include "backend/quant_ops.h"

#include <lapack.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/fixed_blas.h"
#include "backend/cpu/hessian.h"
#include "core/cpu_threads.h"
#include "core/dtype.h"
#include "core/error.h"

namespace gptq::backend {
namespace {

using quant::RowParams;

class CpuHessian final : public Hessian {
 public:
  explicit CpuHessian(int64_t k) : Hessian(k), acc(k) {}
  void sync() { samples_ = acc.samples(); }
  cpu::HessianAccumulator acc;
};

struct CpuFactor final : InverseFactor {
  std::vector<float> U;  // [K, K] fp32 row-major, upper triangle
};

CpuHessian& cpu_hessian(Hessian& h) {
  auto* c = dynamic_cast<CpuHessian*>(&h);
  GPTQ_CHECK(c != nullptr, "cpu quant ops: Hessian made by another backend");
  return *c;
}
const CpuHessian& cpu_hessian(const Hessian& h) { return cpu_hessian(const_cast<Hessian&>(h)); }

// The sweep's result on the host: the unpacked layer itself.
struct CpuSweepResult final : SweepResult {
  CpuSweepResult(quant::QuantizedLinear q, double loss) : SweepResult(loss), q(std::move(q)) {}
  quant::QuantizedLinear q;
};

const CpuSweepResult& cpu_result(const SweepResult& r) {
  const auto* c = dynamic_cast<const CpuSweepResult*>(&r);
  GPTQ_CHECK(c != nullptr, "cpu quant ops: sweep result made by another backend");
  return *c;
}

class CpuQuantOps final : public QuantOps {
 public:
  std::unique_ptr<Hessian> hessian(int64_t in_features) override { return std::make_unique<CpuHessian>(in_features); }

  void accumulate(Hessian& h, Tensor x) override {
    GPTQ_CHECK(x.device == Device::kCpu && x.cols == h.in_features(), "cpu accumulate: tensor shape or device");
    fit_threads_to_load();
    CpuHessian& c = cpu_hessian(h);
    c.acc.add(x.as<float>(), x.rows, x.stride);
    c.sync();
  }
  void assign(Hessian& h, std::span<const double> host, int64_t samples) override {
    CpuHessian& c = cpu_hessian(h);
    c.acc.assign({host.begin(), host.end()}, samples);
    c.sync();
  }
  std::vector<double> download(const Hessian& h) override { return cpu_hessian(h).acc.matrix(); }
  std::vector<double> diagonal(const Hessian& h) override {
    const int64_t K = h.in_features();
    const double* H = cpu_hessian(h).acc.matrix().data();
    std::vector<double> d(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) d[k] = H[k * K + k];
    return d;
  }
  bool all_finite(const Hessian& h) override {
    for (double v : cpu_hessian(h).acc.matrix()) {
      if (!std::isfinite(v)) return false;
    }
    return true;
  }
  // Resident weights are any host tensor here (the sweep itself takes fp32 host weights).
  bool all_finite(Tensor w) override {
    for (int64_t r = 0; r < w.rows; ++r) {
      const std::byte* row = static_cast<const std::byte*>(w.data) + r * w.stride * int64_t(dtype_size(w.dtype));
      for (int64_t c = 0; c < w.cols; ++c) {
        uint16_t h = 0;
        float v = 0.0f;
        switch (w.dtype) {
          case DType::kF32: std::memcpy(&v, row + 4 * c, 4); break;
          case DType::kF16: std::memcpy(&h, row + 2 * c, 2); v = f16_to_f32(h); break;
          case DType::kBF16: std::memcpy(&h, row + 2 * c, 2); v = bf16_to_f32(h); break;
          default: GPTQ_CHECK(false, "cpu all_finite: weights must be F32, F16 or BF16");
        }
        if (!std::isfinite(v)) return false;
      }
    }
    return true;
  }

  std::unique_ptr<InverseFactor> inverse_factor(const Hessian& h, std::span<const int64_t> perm,
                                                std::span<const char> dead, double lambda) override;
  std::unique_ptr<SweepResult> sweep(const SweepWeights& W, const InverseFactor& U, const SweepPlan& plan,
                                     const quant::QuantizedLinear& layout) override;
  void download(const SweepResult& r, quant::QuantizedLinear& out) override { out = cpu_result(r).q; }
  // The reference packer itself.
  quant::PackedLinear pack(const SweepResult& r, quant::Format format) override {
    return quant::pack(cpu_result(r).q, format);
  }
  std::unique_ptr<Linear> swap_in(Backend& b, const SweepResult& r, std::vector<float> bias) override {
    quant::PackedLinear p = quant::pack(cpu_result(r).q, quant::Format::kV2);
    p.bias = std::move(bias);
    return b.gptq_linear(std::move(p));
  }
};

// With H_p = P H_d Pᵀ + λI: the upper Cholesky factor U of H_p⁻¹ (H_p⁻¹ = UᵀU, positive
// diagonal), the matrix GPTQModel gets from cholesky(cholesky_inverse(cholesky(H_p)),
// upper=True).
//
// Route: with J the reversal permutation, factor the reversed matrix J H_p J = RᵀR
// (dpotrf, R upper) and invert R (dtrtri). Then H_p = (J Rᵀ J)(J R J) = QᵀQ with
// Q = J R J lower, so H_p⁻¹ = Q⁻¹ Q⁻ᵀ and U = Q⁻ᵀ = J R⁻ᵀ J is upper with a positive
// diagonal: by uniqueness, the same U. That is K³/3 + K³/3 flops against the reference's
// K³/3 (potrf) + 2K³/3 (potri) + K³/3 (potrf), it never forms H_p⁻¹ explicitly, and the
// only step that can fail is the one the damping retries are about.
//
// Layout: LAPACK is column-major. A row-major buffer read column-major is its transpose,
// so working on the column-major upper triangle means filling the row-major lower one:
// A[i, j] = H_p[K−1−i, K−1−j] for j <= i. After dtrtri the column-major upper triangle
// holds R⁻¹, i.e. R⁻¹(r, c) = A[c·K + r], and U(i, j) = R⁻¹(K−1−j, K−1−i) =
// A[(K−1−i)·K + (K−1−j)]: U is the buffer read backwards.
std::unique_ptr<InverseFactor> CpuQuantOps::inverse_factor(const Hessian& h, std::span<const int64_t> perm,
                                                           std::span<const char> dead, double lambda) {
  fit_threads_to_load();
  const int64_t K = h.in_features();
  const double* H = cpu_hessian(h).acc.matrix().data();
  std::vector<double> A(static_cast<size_t>(K * K));
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < K; ++i) {
    const int64_t c = perm[K - 1 - i];  // original column of reversed position i
    const double* hrow = H + c * K;
    double* arow = A.data() + i * K;
    for (int64_t j = 0; j < i; ++j) arow[j] = hrow[perm[K - 1 - j]];
    arow[i] = (dead[c] ? 1.0 : hrow[c]) + lambda;
  }
  // Fortran LAPACK (OpenBLAS's), column-major: see the layout note above.
  const char upper = 'U';
  const char non_unit = 'N';
  const lapack_int n = lapack_int(K);
  lapack_int info = 0;
  {
    // Single-threaded: OpenBLAS's threaded potrf and trtri give other bits with 2 or 3
    // threads than with 1 (measured at K = 2048 and 4096), which would put the machine's
    // load into U (backend/cpu/fixed_blas.h). Cost, measured on the 2-core CI machine:
    // K = 2048 0.14 s (0.08 s on 2 threads), K = 4096 1.02 s (0.56 s).
    const cpu::SerialBlas serial;
    LAPACK_dpotrf(&upper, &n, A.data(), &n, &info);
    if (info == 0) LAPACK_dtrtri(&upper, &non_unit, &n, A.data(), &n, &info);
  }
  bool ok = info == 0;
  for (int64_t i = 0; ok && i < K; ++i) ok = std::isfinite(A[size_t(i * K + i)]);
  if (!ok) return nullptr;
  auto f = std::make_unique<CpuFactor>();
  f->U.assign(size_t(K * K), 0.0f);
  const double* last = A.data() + (K * K - 1);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = i; j < K; ++j) f->U[size_t(i * K + j)] = float(last[-(i * K + j)]);
  }
  return f;
}

std::unique_ptr<SweepResult> CpuQuantOps::sweep(const SweepWeights& weights, const InverseFactor& factor,
                                                const SweepPlan& plan, const quant::QuantizedLinear& layout) {
  fit_threads_to_load();
  GPTQ_CHECK(weights.host != nullptr, "cpu sweep: the weights must be fp32 host memory");
  const float* W = weights.host;
  const auto* cf = dynamic_cast<const CpuFactor*>(&factor);
  GPTQ_CHECK(cf != nullptr, "cpu quant ops: factor made by another backend");
  const quant::QuantizerConfig& qc = plan.quant;
  const int64_t N = layout.out_features, K = layout.in_features, G = layout.num_groups(), gs = plan.group_size;
  const int32_t maxq = quant::max_code(qc.bits);
  const bool dynamic = plan.params == GroupParams::kDynamic;
  const std::span<const int64_t> perm = plan.perm;
  const std::span<const int32_t> group_of = plan.group_of;
  const std::span<const char> dead = plan.dead;
  const float* U = cf->U.data();
  quant::QuantizedLinear out = layout;
  out.q.assign(size_t(N * K), 0);
  out.scales.assign(size_t(G * N), 0.0f);
  out.zeros.assign(size_t(G * N), 0);

  if (plan.params == GroupParams::kPerRow) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const RowParams p = quant::find_row_params(W + n * K, K, qc);
      out.scales[n] = p.scale;
      out.zeros[n] = p.zero;
    }
  }
  if (plan.params == GroupParams::kStatic) {
#pragma omp parallel
    {
      std::vector<float> slice(static_cast<size_t>(gs));
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t g = 0; g < G; ++g) {
          const int64_t width = std::min(gs, K - g * gs);  // the last group may be partial
          for (int64_t t = 0; t < width; ++t) {
            const int64_t k = g * gs + t;
            slice[t] = dead[k] ? 0.0f : W[n * K + k];
          }
          const RowParams p = quant::find_row_params(slice.data(), width, qc);
          out.scales[g * N + n] = p.scale;
          out.zeros[g * N + n] = p.zero;
        }
      }
    }
  }

  // Wp: [N, K] working weights in visiting order, dead columns zeroed. Columns past the
  // current block carry the error feedback of every finished block.
  std::vector<float> Wp(static_cast<size_t>(N * K));
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t j = 0; j < K; ++j) {
      Wp[n * K + j] = dead[perm[j]] ? 0.0f : W[n * K + perm[j]];
    }
  }

  const int64_t B = std::min<int64_t>(plan.block_size, K);
  std::vector<float> W1(static_cast<size_t>(N * B));  // [N, cnt] block, updated per column
  std::vector<float> E1(static_cast<size_t>(N * B));  // [N, cnt] scaled errors (w − q) / d
  // Per row, summed in row order at the end: the same bits on any thread count (a
  // reduction's partial sums follow the threads' split).
  std::vector<double> row_loss(static_cast<size_t>(N), 0.0);
  for (int64_t i1 = 0; i1 < K; i1 += B) {
    const int64_t i2 = std::min(i1 + B, K);
    const int64_t cnt = i2 - i1;
    // Rows are independent inside a block (each row has its own scale, zero and error
    // chain), so each thread runs the whole column loop for its rows: no barrier per
    // column.
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* wrow = Wp.data() + n * K;
      double& loss = row_loss[size_t(n)];
      float* w1 = W1.data() + n * cnt;
      float* e1 = E1.data() + n * cnt;
      std::copy(wrow + i1, wrow + i2, w1);
      for (int64_t i = 0; i < cnt; ++i) {
        const int64_t j = i1 + i;
        const int64_t g = group_of[j];
        if (dynamic && j % gs == 0) {
          // As the reference, a group's range is taken from Wp, i.e. the weights as of
          // the start of this block (in-block feedback lives in W1 only). With
          // group_size a multiple of block_size the two coincide. The last group
          // visited is partial when gs does not divide K.
          const RowParams p = quant::find_row_params(wrow + j, std::min(gs, K - j), qc);
          out.scales[g * N + n] = p.scale;
          out.zeros[g * N + n] = p.zero;
        }
        const RowParams p{out.scales[g * N + n], out.zeros[g * N + n]};
        const int32_t code = quant::quantize_code(w1[i], p, maxq);
        out.q[n * K + perm[j]] = uint8_t(code);
        const float diff = w1[i] - quant::dequantize_code(code, p);
        const float d = U[j * K + j];
        loss += double(diff) * double(diff) / (2.0 * double(d) * double(d));
        // OBS update of the rest of the block: w1[t] −= (w − q)/d · U[j, t].
        const float e = diff / d;
        const float* urow = U + j * K + i1;
        for (int64_t t = i + 1; t < cnt; ++t) w1[t] -= e * urow[t];
        e1[i] = e;
      }
    }
    // Lazy batch update of every later column: Wp[:, i2:] −= E1 · U[i1:i2, i2:].
    if (i2 < K) {
      cpu::gemm(cpu::Op::kN, cpu::Op::kN, N, K - i2, cnt, -1.0f, E1.data(), cnt, U + i1 * K + i2, K, 1.0f, Wp.data() + i2, K);
    }
  }
  double loss = 0.0;
  for (const double l : row_loss) loss += l;
  return std::make_unique<CpuSweepResult>(std::move(out), loss);
}

}  // namespace

std::unique_ptr<QuantOps> make_cpu_quant_ops() { return std::make_unique<CpuQuantOps>(); }

}  // namespace gptq::backend
