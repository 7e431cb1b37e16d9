#include "quant/gptq.h"

#include <cblas.h>
#include <lapack.h>

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

void validate(const float* W, int64_t N, int64_t K, const double* H, const GptqOptions& o) {
  validate(o.quant);
  const std::string at = module_prefix(o);
  if (W == nullptr || H == nullptr) throw Error(ErrorKind::kInvalidArgument, at + "W or H is null");
  if (N <= 0 || K <= 0) {
    throw Error(ErrorKind::kInvalidArgument, at + "bad shape N=" + std::to_string(N) +
                                                 " K=" + std::to_string(K));
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
  for (int64_t i = 0; i < N * K; ++i) {
    if (!std::isfinite(W[i])) throw Error(ErrorKind::kInvalidArgument, at + "W has NaN or Inf");
  }
  for (int64_t i = 0; i < K * K; ++i) {
    if (!std::isfinite(H[i])) throw Error(ErrorKind::kNumerical, at + "Hessian has NaN or Inf");
  }
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

struct InverseFactor {
  std::vector<float> U;  // [K, K] fp32 row-major; upper triangle: H_damped⁻¹ = UᵀU
  double damp_percent = 0.0;
  int retries = 0;
};

// Factorises the permuted, dead-fixed, damped Hessian, raising the damping on failure as
// GPTQModel's hessian_inverse does. With H_p = P H Pᵀ, H_p[d, d] = 1 for dead columns and
// H_p += damp · mean(diag H_p) · I, the result is the upper Cholesky factor U of H_p⁻¹
// (H_p⁻¹ = UᵀU, positive diagonal), the matrix the reference gets from
// cholesky(cholesky_inverse(cholesky(H_p)), upper=True).
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
InverseFactor inverse_hessian_factor(const double* H, const std::vector<int64_t>& perm,
                                     const std::vector<char>& dead, double mean_diag,
                                     const GptqOptions& o) {
  const int64_t K = int64_t(perm.size());
  std::vector<double> A(static_cast<size_t>(K * K));
  InverseFactor f;
  double damp = o.damp_percent;
  for (;;) {
    if (!(damp < 1.0)) {
      std::ostringstream m;
      m << module_prefix(o) << "Hessian is not positive definite for any damp_percent < 1"
        << " (started at " << o.damp_percent << ", " << f.retries
        << " retries); increase the calibration samples";
      throw Error(ErrorKind::kNumerical, m.str());
    }
    const double lambda = damp * mean_diag;
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
    LAPACK_dpotrf(&upper, &n, A.data(), &n, &info);
    if (info == 0) LAPACK_dtrtri(&upper, &non_unit, &n, A.data(), &n, &info);
    bool ok = info == 0;
    for (int64_t i = 0; ok && i < K; ++i) ok = std::isfinite(A[size_t(i * K + i)]);
    if (ok) break;
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
  f.U.assign(size_t(K * K), 0.0f);
  const double* last = A.data() + (K * K - 1);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = i; j < K; ++j) f.U[size_t(i * K + j)] = float(last[-(i * K + j)]);
  }
  return f;
}

}  // namespace

QuantizedLinear gptq_quantize(const float* W, int64_t N, int64_t K, const double* H,
                              const GptqOptions& o, GptqStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  validate(W, N, K, H, o);
  const QuantizerConfig& qc = o.quant;
  const int32_t maxq = max_code(qc.bits);
  const bool grouped = o.group_size > 0;
  const int64_t gs = grouped ? o.group_size : K;
  // Dynamic groups: (scale, zero) found when the loop reaches a group's first column,
  // from the error-compensated weights.
  const bool dynamic = grouped && !o.static_groups;

  QuantizedLinear out;
  out.bits = qc.bits;
  out.group_size = grouped ? o.group_size : -1;
  out.in_features = K;
  out.out_features = N;
  const int64_t G = out.num_groups();
  out.q.assign(size_t(N * K), 0);
  out.scales.assign(size_t(G * N), 0.0f);
  out.zeros.assign(size_t(G * N), 0);
  out.g_idx.assign(size_t(K), 0);

  // Dead columns (an input channel that was always 0): diag 1 so H stays invertible,
  // weight 0 so it quantizes exactly to 0 (the code equal to the zero point).
  std::vector<double> diag(static_cast<size_t>(K));
  std::vector<char> dead(static_cast<size_t>(K));
  double mean_diag = 0.0;
  for (int64_t k = 0; k < K; ++k) {
    dead[k] = H[k * K + k] == 0.0;
    diag[k] = dead[k] ? 1.0 : H[k * K + k];
    mean_diag += diag[k];
  }
  mean_diag /= double(K);

  // Ungrouped: one (scale, zero) per row from the original W, before dead columns are
  // zeroed (the reference calls find_params(W) first).
  if (!grouped) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const RowParams p = find_row_params(W + n * K, K, qc);
      out.scales[n] = p.scale;
      out.zeros[n] = p.zero;
    }
  }
  // Static groups: every group's parameters from the un-permuted W with dead columns
  // zeroed, before any error feedback.
  if (grouped && o.static_groups) {
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
          const RowParams p = find_row_params(slice.data(), width, qc);
          out.scales[g * N + n] = p.scale;
          out.zeros[g * N + n] = p.zero;
        }
      }
    }
  }

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
    out.g_idx[perm[j]] = group_of[j];
  }

  InverseFactor inv = inverse_hessian_factor(H, perm, dead, mean_diag, o);
  const float* U = inv.U.data();

  // Wp: [N, K] working weights in visiting order, dead columns zeroed. Columns past the
  // current block carry the error feedback of every finished block.
  std::vector<float> Wp(static_cast<size_t>(N * K));
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t j = 0; j < K; ++j) {
      Wp[n * K + j] = dead[perm[j]] ? 0.0f : W[n * K + perm[j]];
    }
  }

  const int64_t B = std::min<int64_t>(o.block_size, K);
  std::vector<float> W1(static_cast<size_t>(N * B));  // [N, cnt] block, updated per column
  std::vector<float> E1(static_cast<size_t>(N * B));  // [N, cnt] scaled errors (w − q) / d
  double loss = 0.0;
  for (int64_t i1 = 0; i1 < K; i1 += B) {
    const int64_t i2 = std::min(i1 + B, K);
    const int64_t cnt = i2 - i1;
    // Rows are independent inside a block (each row has its own scale, zero and error
    // chain), so each thread runs the whole column loop for its rows: no barrier per
    // column.
#pragma omp parallel for schedule(static) reduction(+ : loss)
    for (int64_t n = 0; n < N; ++n) {
      const float* wrow = Wp.data() + n * K;
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
          const RowParams p = find_row_params(wrow + j, std::min(gs, K - j), qc);
          out.scales[g * N + n] = p.scale;
          out.zeros[g * N + n] = p.zero;
        }
        const RowParams p{out.scales[g * N + n], out.zeros[g * N + n]};
        const int32_t code = quantize_code(w1[i], p, maxq);
        out.q[n * K + perm[j]] = uint8_t(code);
        const float diff = w1[i] - dequantize_code(code, p);
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
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(N), blasint(K - i2),
                  blasint(cnt), -1.0f, E1.data(), blasint(cnt), U + i1 * K + i2, blasint(K),
                  1.0f, Wp.data() + i2, blasint(K));
    }
  }

  if (stats != nullptr) {
    stats->loss = loss;
    stats->damp_percent = inv.damp_percent;
    stats->retries = inv.retries;
    stats->seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return out;
}

double hessian_error(const float* W, const QuantizedLinear& q, const double* H) {
  const int64_t N = q.out_features;
  const int64_t K = q.in_features;
  constexpr int64_t kRows = 64;  // rows per dsymm, bounds the scratch to 2 · 64 · K
  std::vector<double> D(static_cast<size_t>(kRows * K));
  std::vector<double> DH(static_cast<size_t>(kRows * K));
  double total = 0.0;
  for (int64_t n0 = 0; n0 < N; n0 += kRows) {
    const int64_t r = std::min(kRows, N - n0);
    for (int64_t a = 0; a < r; ++a) {
      for (int64_t k = 0; k < K; ++k) {
        D[a * K + k] = double(W[(n0 + a) * K + k]) - double(q.dequant(n0 + a, k));
      }
    }
    // DH: [r, K] = D [r, K] · H [K, K] (H symmetric).
    cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, blasint(r), blasint(K), 1.0, H,
                blasint(K), D.data(), blasint(K), 0.0, DH.data(), blasint(K));
    for (int64_t i = 0; i < r * K; ++i) total += D[i] * DH[i];
  }
  return total;
}

}  // namespace gptq::quant
