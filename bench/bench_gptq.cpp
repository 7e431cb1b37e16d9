// Times GPTQ on Llama-sized layers: 4-bit, group 128, symmetric, no act-order.
//
//   bench_gptq            N×K = 4096×4096 (q/k/v/o_proj) and 4096×11008 (down_proj)
//   bench_gptq N K [R]    one custom shape; R calibration rows (default 4096)
//
// Inputs are correlated (X = Z·A with a rank-512 mixing A plus noise) so H is dense
// and well spread, like real activations. Reports the Hessian accumulation and the
// quantization separately: they scale as R·K² and K³ + N·K² respectively.
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "quant/gptq.h"
#include "backend/cpu/hessian.h"
#include "quant/rtn.h"

namespace {

using gptq::quant::GptqOptions;
using gptq::quant::GptqStats;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<float> gaussian(size_t n, uint64_t seed, float sigma) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void run(int64_t N, int64_t K, int64_t R) {
  constexpr int64_t kRank = 512;
  const std::vector<float> W = gaussian(size_t(N * K), 1, 0.02f);
  const std::vector<float> Z = gaussian(size_t(R * kRank), 2, 1.0f);
  const std::vector<float> A = gaussian(size_t(kRank * K), 3, 1.0f / 16.0f);
  std::vector<float> X = gaussian(size_t(R * K), 4, 0.1f);  // noise, then += Z·A
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(R), int(K), int(kRank), 1.0f,
              Z.data(), int(kRank), A.data(), int(K), 1.0f, X.data(), int(K));

  auto t0 = std::chrono::steady_clock::now();
  gptq::backend::cpu::HessianAccumulator acc(K);
  for (int64_t r0 = 0; r0 < R; r0 += 2048) acc.add(X.data() + r0 * K, std::min<int64_t>(2048, R - r0));
  const double t_hessian = seconds_since(t0);

  const GptqOptions o{.quant = {.bits = 4, .sym = true}, .group_size = 128};
  GptqStats s;
  const gptq::quant::QuantizedLinear q =
      gptq::quant::gptq_quantize(W.data(), N, K, acc.matrix().data(), o, &s);

  t0 = std::chrono::steady_clock::now();
  const gptq::quant::QuantizedLinear r =
      gptq::quant::rtn_quantize(W.data(), N, K, {.quant = o.quant, .group_size = o.group_size});
  const double t_rtn = seconds_since(t0);

  const double e_gptq = gptq::backend::cpu::hessian_error(W.data(), q, acc.matrix().data());
  const double e_rtn = gptq::backend::cpu::hessian_error(W.data(), r, acc.matrix().data());
  std::printf(
      "N=%lld K=%lld R=%lld  hessian %.2f s  gptq %.2f s (retries %d, damp %.3f)  rtn %.3f s"
      "  output error gptq/rtn %.3f\n",
      (long long)N, (long long)K, (long long)R, t_hessian, s.seconds, s.retries, s.damp_percent,
      t_rtn, e_gptq / e_rtn);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3) {
    run(std::atoll(argv[1]), std::atoll(argv[2]), argc >= 4 ? std::atoll(argv[3]) : 4096);
    return 0;
  }
  run(4096, 4096, 4096);
  run(4096, 11008, 4096);
  return 0;
}
