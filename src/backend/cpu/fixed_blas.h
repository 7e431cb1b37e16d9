// BLAS products whose bits do not depend on the OpenMP thread count.
//
// Why: OpenBLAS splits a product among its threads, and the split decides how the output
// is blocked and which edge kernels compute each element, so the rounding changes with
// the count (sgemm with 1, 2, 3 and 16 threads gave three different results, measured).
// The count follows the machine's load (core/cpu_threads.h), so a checkpoint, a
// perplexity or a resumed run would depend on what else the machine was doing.
//
// How: the output is cut into fixed kTile x kTile tiles that do not depend on the count;
// OpenMP hands whole tiles to threads and each tile is one single-threaded BLAS call on a
// fixed shape, so every element is computed by the same instructions in the same order
// whatever the count. Cost: each tile packs its own slices of the operands (2 · kTile · K
// values against 2 · kTile² · K flops: under 1%), and a product smaller than one tile runs
// on one thread.
#pragma once

#include <cstdint>

namespace gptq::backend::cpu {

// Output tile edge: 128 rows x 128 columns (large enough for OpenBLAS's kernels to run at
// speed, small enough that the 288- and 768-wide products of small models still give
// several tiles to share among threads).
inline constexpr int64_t kTile = 128;

enum class Op { kN, kT };  // the operand as stored, or its transpose

// Row-major C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C. lda/ldb/ldc are the
// row strides of A, B and C as stored (op(A) = Aᵀ reads A as [K, M]).
void gemm(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// The upper triangle (row-major, j >= i) of H[K, K] = alpha · Xᵀ X + beta · H for
// X[rows, K] with row stride ldx; the strict lower triangle is not touched.
void syrk_upper(int64_t K, int64_t rows, double alpha, const double* X, int64_t ldx, double beta, double* H,
                int64_t ldh);

// Makes the BLAS and LAPACK calls of this thread single-threaded for the scope (for
// LAPACK routines, whose threaded versions block by the count too), then restores the
// thread's OpenMP count.
class SerialBlas {
 public:
  SerialBlas();
  ~SerialBlas();
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;

 private:
  int before_;
};

}  // namespace gptq::backend::cpu
