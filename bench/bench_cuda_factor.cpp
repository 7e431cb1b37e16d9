// GPTQ's per-layer linear algebra on the GPU, at the Hessian sizes of real models: the
// Hessian accumulation H += XᵀX of one forward chunk (cublasGemmEx, f16 activations, fp32
// accumulate) and the damped inverse factor (cuSOLVER potrf + trtri) in fp64 and in fp32,
// so that the factor's precision is chosen by measurement (issue: "fp32 or fp64 —
// measure and justify").
//
//   bench_cuda_factor [--rows 4096] [--reps 5] [--json]
//
// Per K (2048, 4096, 8192, 14336): medians of --reps timed calls after one warm-up, the
// achieved TFLOP/s (accumulate: 2·rows·K²; factor: K³/3 + K³/3 for potrf + trtri), and
// what the fp32 factor changes: the loss of one GPTQ quantization of the same random W
// ([256, K], 4-bit g128) with either factor (the factor itself is opaque).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "core/error.h"
#include "quant/gptq.h"
#ifdef GPTQ_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
#ifndef GPTQ_HAVE_CUDA
  (void)argc;
  (void)argv;
  std::fprintf(stderr, "bench_cuda_factor: built without CUDA\n");
  return 0;
#else
  using namespace gptq;
  int64_t rows = 4096;
  int reps = 5;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) {
      rows = std::stoll(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::stoi(argv[++i]);
    } else if (a == "--json") {
      json = true;
    } else {
      std::fprintf(stderr, "usage: bench_cuda_factor [--rows N] [--reps N] [--json]\n");
      return 2;
    }
  }
  if (backend::cuda_device_count() == 0) {
    std::fprintf(stderr, "bench_cuda_factor: skipped: no CUDA device\n");
    return 0;
  }
  try {
    auto gpu = backend::make_backend("cuda:0", {.activations = DType::kF16});
    auto f64 = backend::cuda::make_cuda_quant_ops(*gpu, backend::FactorPrecision::kF64);
    auto f32 = backend::cuda::make_cuda_quant_ops(*gpu, backend::FactorPrecision::kF32);
    nlohmann::json out = nlohmann::json::array();
    std::printf("%6s %12s %9s %12s %9s %12s %9s %14s\n", "K", "accum ms", "TFLOP/s", "fp64 fac ms", "TFLOP/s",
                "fp32 fac ms", "TFLOP/s", "loss32/loss64-1");
    for (const int64_t K : {2048, 4096, 8192, 14336}) {
      // X: [rows, K] correlated activations (a rank-16 mix plus noise), so H is dense.
      std::mt19937_64 rng(static_cast<uint64_t>(K));
      std::normal_distribution<float> d(0.0f, 1.0f);
      const int64_t rank = 16;
      std::vector<float> Z(size_t(rows * rank)), A(size_t(rank * K)), X(size_t(rows * K));
      for (float& z : Z) z = d(rng);
      for (float& a : A) a = d(rng) / 4.0f;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t k = 0; k < K; ++k) X[size_t(r * K + k)] = 0.1f * d(rng);
        for (int64_t t = 0; t < rank; ++t) {
          const float z = Z[size_t(r * rank + t)];
          for (int64_t k = 0; k < K; ++k) X[size_t(r * K + k)] += z * A[size_t(t * K + k)];
        }
      }
      backend::Buffer x = gpu->alloc(rows, K, DType::kF16);
      gpu->upload(X, x.view());
      auto h = f64->hessian(K);
      std::vector<double> acc_ms;
      for (int i = 0; i <= reps; ++i) {
        gpu->synchronize();
        const auto t0 = Clock::now();
        f64->accumulate(*h, x.view());
        gpu->synchronize();
        if (i > 0) acc_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      // The same H for the fp32 factor, copied through the host (a tool, not the path).
      auto h32 = f32->hessian(K);
      f32->assign(*h32, f64->download(*h), h->samples());
      std::vector<int64_t> perm(static_cast<size_t>(K));
      std::iota(perm.begin(), perm.end(), int64_t(0));
      const std::vector<char> dead(static_cast<size_t>(K), 0);
      const std::vector<double> diag = f64->diagonal(*h);
      const double lambda = 0.05 * std::accumulate(diag.begin(), diag.end(), 0.0) / double(K);
      auto time_factor = [&](backend::QuantOps& ops, const backend::Hessian& H) {
        std::vector<double> ms;
        for (int i = 0; i <= reps; ++i) {
          gpu->synchronize();
          const auto t0 = Clock::now();
          auto U = ops.inverse_factor(H, perm, dead, lambda);
          gpu->synchronize();
          if (!U) throw Error(ErrorKind::kNumerical, "bench_cuda_factor: not positive definite at K=" + std::to_string(K));
          if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        }
        return median(ms);
      };
      const double ms64 = time_factor(*f64, *h), ms32 = time_factor(*f32, *h32);
      // Agreement: the loss of one GPTQ quantization of the same W with either factor.
      const int64_t N = 256;
      std::vector<float> W(size_t(N * K));
      for (float& w : W) w = 0.02f * d(rng);
      quant::GptqOptions o;
      o.quant.bits = 4;
      o.group_size = 128;
      o.damp_percent = 0.05;
      quant::GptqStats s64, s32;
      quant::gptq_quantize(*f64, W.data(), N, K, *h, o, &s64);
      quant::gptq_quantize(*f32, W.data(), N, K, *h32, o, &s32);
      const double acc = median(acc_ms), flop_acc = 2.0 * double(rows) * double(K) * double(K);
      const double flop_fac = 2.0 * double(K) * double(K) * double(K) / 3.0;
      std::printf("%6lld %12.3f %9.1f %12.2f %9.1f %12.2f %9.1f %14.2e\n", static_cast<long long>(K), acc,
                  flop_acc / acc / 1e9, ms64, flop_fac / ms64 / 1e9, ms32, flop_fac / ms32 / 1e9,
                  s32.loss / s64.loss - 1.0);
      out.push_back({{"K", K}, {"rows", rows}, {"accumulate_ms", acc}, {"factor_f64_ms", ms64},
                     {"factor_f32_ms", ms32}, {"loss_f32_over_f64", s32.loss / s64.loss}});
    }
    if (json) std::printf("%s\n", out.dump(1).c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_cuda_factor: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}
