#include "backend/cpu/fixed_blas.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <limits>
#include <string>
#include <type_traits>

#include "backend/cpu/cpu_linear.h"
#include "core/error.h"

namespace gptq::backend::cpu {
namespace {

blasint blas_dim(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<blasint>::max()) {
    throw Error(ErrorKind::kInvalidArgument,
                std::string("BLAS product: ") + what + " = " + std::to_string(v) + " is outside BLAS's int range");
  }
  return blasint(v);
}

CBLAS_TRANSPOSE cblas_op(Op o) { return o == Op::kN ? CblasNoTrans : CblasTrans; }

// f(t) for every tile t in [0, tiles), shared out among the team; inside, each thread's
// nested count is 1, so OpenBLAS runs every call on the calling thread alone (it does so
// by itself inside an active region, but a team of one is an inactive region and it would
// fork again).
template <class F>
void for_each_tile(int64_t tiles, int64_t macs, const F& f) {
#pragma omp parallel if (tiles > 1 && macs >= kParallelMacs)
  {
    omp_set_num_threads(1);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) f(t);
  }
}

template <class T>
void gemm_tiled(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  const blasint k = blas_dim(K, "K"), la = blas_dim(lda, "lda"), lb = blas_dim(ldb, "ldb"), lc = blas_dim(ldc, "ldc");
  blas_dim(M, "M");
  blas_dim(N, "N");
  const int64_t tiles_n = (N + kTile - 1) / kTile;
  const int64_t tiles = (M + kTile - 1) / kTile * tiles_n;
  for_each_tile(tiles, M * N * std::max<int64_t>(K, 1), [&](int64_t t) {
    const int64_t i0 = t / tiles_n * kTile, j0 = t % tiles_n * kTile;
    const blasint m = blasint(std::min(kTile, M - i0)), n = blasint(std::min(kTile, N - j0));
    // Rows i0.. of op(A): rows of A, or columns of A when it is stored transposed; the
    // same for the columns j0.. of op(B).
    const T* a = op_a == Op::kN ? A + i0 * lda : A + i0;
    const T* b = op_b == Op::kN ? B + j0 : B + j0 * ldb;
    T* c = C + i0 * ldc + j0;
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm(CblasRowMajor, cblas_op(op_a), cblas_op(op_b), m, n, k, alpha, a, la, b, lb, beta, c, lc);
    } else {
      cblas_dgemm(CblasRowMajor, cblas_op(op_a), cblas_op(op_b), m, n, k, alpha, a, la, b, lb, beta, c, lc);
    }
  });
}

}  // namespace

void gemm(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_tiled(op_a, op_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_tiled(op_a, op_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Tiles (bi, bj) of the upper block triangle, bj >= bi: a syrk on the diagonal, a
// general product Xᵢᵀ Xⱼ above it.
void syrk_upper(int64_t K, int64_t rows, double alpha, const double* X, int64_t ldx, double beta, double* H,
                int64_t ldh) {
  if (K <= 0) return;
  const blasint r = blas_dim(rows, "rows"), lx = blas_dim(ldx, "ldx"), lh = blas_dim(ldh, "ldh");
  blas_dim(K, "K");
  const int64_t nb = (K + kTile - 1) / kTile;
  const int64_t tiles = nb * (nb + 1) / 2;
  for_each_tile(tiles, K * K / 2 * std::max<int64_t>(rows, 1), [&](int64_t t) {
    // Tile t in row-major order of the upper block triangle: row bi holds nb − bi tiles.
    int64_t bi = 0, first = 0;
    while (first + (nb - bi) <= t) first += nb - bi++;
    const int64_t bj = bi + (t - first);
    const int64_t i0 = bi * kTile, j0 = bj * kTile;
    const blasint m = blasint(std::min(kTile, K - i0)), n = blasint(std::min(kTile, K - j0));
    double* h = H + i0 * ldh + j0;
    if (bi == bj) {
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, m, r, alpha, X + i0, lx, beta, h, lh);
    } else {
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, r, alpha, X + i0, lx, X + j0, lx, beta, h, lh);
    }
  });
}

SerialBlas::SerialBlas() : before_(omp_get_max_threads()) { omp_set_num_threads(1); }
SerialBlas::~SerialBlas() { omp_set_num_threads(before_); }

}  // namespace gptq::backend::cpu
