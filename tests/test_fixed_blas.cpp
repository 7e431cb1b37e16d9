// The thread-count invariant products (backend/cpu/fixed_blas.h): the same bits with 1, 2
// and 3 threads (3 is more than the CI machine's cores, a count OpenBLAS's own splitting
// rounds differently at), and each element within the accumulation bound of an exactly
// rounded reference, on shapes that straddle the 128-wide tiles.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/fixed_blas.h"

namespace gptq::backend::cpu {
namespace {

template <class T>
std::vector<T> random_values(std::size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> v(n);
  for (T& x : v) x = T(u(rng));
  return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Runs f with the calling thread's OpenMP count set to n, then restores it.
template <class F>
void with_threads(int n, const F& f) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(before);
}

template <class T>
void check_gemm(Op op_a, Op op_b, int64_t M, int64_t N, int64_t K) {
  const int64_t lda = (op_a == Op::kN ? K : M) + 3, ldb = (op_b == Op::kN ? N : K) + 1, ldc = N + 2;
  const auto A = random_values<T>(std::size_t((op_a == Op::kN ? M : K) * lda), 1);
  const auto B = random_values<T>(std::size_t((op_b == Op::kN ? K : N) * ldb), 2);
  const auto C0 = random_values<T>(std::size_t(M * ldc), 3);
  const T alpha = T(-0.75), beta = T(0.5);
  auto at = [&](int64_t m, int64_t k) { return op_a == Op::kN ? A[m * lda + k] : A[k * lda + m]; };
  auto bt = [&](int64_t k, int64_t n) { return op_b == Op::kN ? B[k * ldb + n] : B[n * ldb + k]; };

  std::vector<T> first;
  for (int threads : {1, 2, 3}) {
    std::vector<T> C = C0;
    with_threads(threads, [&] { gemm(op_a, op_b, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc); });
    if (first.empty()) {
      first = C;
    } else {
      EXPECT_TRUE(same_bits(C, first)) << threads << " threads, M=" << M << " N=" << N << " K=" << K;
    }
  }
  // Against long double sums: a length-K dot product accumulated in T, then scaled by
  // alpha and added to beta · c, is off by at most (K + 2) · u · (|alpha| Σ|a b| + |beta c|)
  // (u = half an ulp of 1 in T; the products, sums, scaling and final add each round once).
  const long double u = std::ldexp(1.0L, -std::numeric_limits<T>::digits);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      long double s = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        s += (long double)at(m, k) * bt(k, n);
        mag += std::fabs((long double)at(m, k) * bt(k, n));
      }
      const long double c0 = C0[m * ldc + n];
      const long double ref = alpha * s + beta * c0;
      const long double bound = (K + 2) * u * (std::fabs((long double)alpha) * mag + std::fabs(beta * c0));
      ASSERT_LE(std::fabs((long double)first[m * ldc + n] - ref), bound) << "m=" << m << " n=" << n << " K=" << K;
    }
  }
  // Padding between rows is left alone.
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = N; n < ldc; ++n) ASSERT_EQ(first[m * ldc + n], C0[m * ldc + n]);
  }
}

TEST(FixedBlas, GemmIsThreadCountInvariantAndWithinTheBound) {
  for (Op a : {Op::kN, Op::kT}) {
    for (Op b : {Op::kN, Op::kT}) {
      for (int64_t M : {1, 129, 300}) {
        for (int64_t N : {1, 128, 257}) {
          for (int64_t K : {1, 100, 300}) {
            check_gemm<float>(a, b, M, N, K);
            check_gemm<double>(a, b, M, N, K);
          }
        }
      }
    }
  }
}

TEST(FixedBlas, SyrkFillsTheUpperTriangleOnly) {
  for (int64_t K : {1, 100, 128, 300}) {
    const int64_t rows = 77, ldx = K + 5, ldh = K + 1;
    const auto X = random_values<double>(std::size_t(rows * ldx), 4);
    const auto H0 = random_values<double>(std::size_t(K * ldh), 5);
    const double alpha = 2.0 / 77.0, beta = 0.25;
    std::vector<double> first;
    for (int threads : {1, 2, 3}) {
      std::vector<double> H = H0;
      with_threads(threads, [&] { syrk_upper(K, rows, alpha, X.data(), ldx, beta, H.data(), ldh); });
      if (first.empty()) {
        first = H;
      } else {
        EXPECT_TRUE(same_bits(H, first)) << threads << " threads, K=" << K;
      }
    }
    const long double u = std::ldexp(1.0L, -53);
    for (int64_t i = 0; i < K; ++i) {
      for (int64_t j = 0; j < ldh; ++j) {
        const std::size_t at = std::size_t(i * ldh + j);
        if (j < i || j >= K) {
          ASSERT_EQ(first[at], H0[at]) << "outside the upper triangle: i=" << i << " j=" << j;
          continue;
        }
        long double s = 0, mag = 0;
        for (int64_t r = 0; r < rows; ++r) {
          s += (long double)X[r * ldx + i] * X[r * ldx + j];
          mag += std::fabs((long double)X[r * ldx + i] * X[r * ldx + j]);
        }
        const long double ref = alpha * s + beta * (long double)H0[at];
        const long double bound = (rows + 2) * u * (alpha * mag + std::fabs(beta * H0[at]));
        ASSERT_LE(std::fabs((long double)first[at] - ref), bound) << "i=" << i << " j=" << j;
      }
    }
  }
}

TEST(FixedBlas, SerialBlasRestoresTheThreadCount) {
  with_threads(3, [] {
    {
      const SerialBlas serial;
      EXPECT_EQ(omp_get_max_threads(), 1);
    }
    EXPECT_EQ(omp_get_max_threads(), 3);
  });
}

}  // namespace
}  // namespace gptq::backend::cpu
