// Quantized linear throughput on the CPU: qgemv (M = 1, fused path) and qgemm (M = 256,
// tiled path) against OpenBLAS fp32 sgemv / sgemm of the same shape. Prints the median
// of several repetitions as GFLOP/s (2·M·N·K per product) and GB/s of weight bytes read
// (packed qweight + qzeros + scales for quantized, 4·N·K for fp32).
//
//   OMP_WAIT_POLICY=passive bench_qlinear [reps]      (reps default 15)
// Passive waiting matters on few cores: spinning OpenMP workers left over from one
// kernel otherwise starve OpenBLAS's own threads in the next (sgemv 3x slower on 2 cores).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include <cblas.h>
#include <omp.h>

#include "backend/cpu/qlinear.h"
#include "core/dtype.h"
#include "format/packing.h"
#include "format/random_layer.h"

namespace {

using gptq::backend::cpu::PackedLinearView;
using gptq::quant::QuantizedLinear;

double median_seconds(int reps, const std::function<void()>& run) {
  run();  // warm caches and thread pools
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[reps / 2];
}

QuantizedLinear random_layer(int bits, int64_t K, int64_t N, int group_size, bool act_order) {
  return gptq::quant::random_quantized_linear(
      {.bits = bits, .in_features = K, .out_features = N, .group_size = group_size, .act_order = act_order,
       .sym = false},
      1);
}

void report(const char* what, int64_t M, int64_t K, int64_t N, double bytes, double seconds) {
  std::printf("  %-26s M=%-4lld %9.3f ms %8.2f GFLOP/s %7.2f GB/s\n", what, (long long)M,
              seconds * 1e3, 2.0 * double(M * N * K) / seconds * 1e-9, bytes / seconds * 1e-9);
}

void bench_shape(int64_t K, int64_t N, int reps) {
  std::printf("K=%lld N=%lld\n", (long long)K, (long long)N);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  constexpr int64_t kBatch = 256;
  std::vector<float> x(std::size_t(kBatch * K)), y(std::size_t(kBatch * N));
  for (auto& v : x) v = value(rng);
  std::vector<float> w(std::size_t(N * K));  // [N, K]
  for (auto& v : w) v = value(rng) * 0.01f;

  const double f32_bytes = 4.0 * double(N * K);
  report("fp32 sgemv", 1, K, N, f32_bytes, median_seconds(reps, [&] {
           cblas_sgemv(CblasRowMajor, CblasNoTrans, int(N), int(K), 1.0f, w.data(), int(K),
                       x.data(), 1, 0.0f, y.data(), 1);
         }));
  report("fp32 sgemm", kBatch, K, N, f32_bytes, median_seconds(reps, [&] {
           cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(kBatch), int(N), int(K), 1.0f,
                       x.data(), int(K), w.data(), int(K), 0.0f, y.data(), int(N));
         }));

  struct Variant { int bits; bool act_order; const char* name; };
  for (const Variant v : {Variant{4, false, "4-bit g128"}, Variant{4, true, "4-bit g128 act-order"},
                          Variant{3, false, "3-bit g128"}, Variant{3, true, "3-bit g128 act-order"}}) {
    const int group_size = int(std::min<int64_t>(128, K));
    const auto packed = gptq::quant::pack(random_layer(v.bits, K, N, group_size, v.act_order),
                                          gptq::quant::Format::kV2);
    const PackedLinearView view = gptq::backend::cpu::make_view(packed);
    const double bytes = 4.0 * double(packed.qweight.size() + packed.qzeros.size()) +
                         2.0 * double(packed.scales.size());
    char label[64];
    std::snprintf(label, sizeof label, "%s qgemv", v.name);
    report(label, 1, K, N, bytes, median_seconds(reps, [&] {
             gptq::backend::cpu::qlinear_forward(view, x.data(), 1, y.data());
           }));
    std::snprintf(label, sizeof label, "%s qgemm", v.name);
    report(label, kBatch, K, N, bytes, median_seconds(std::max(3, reps / 3), [&] {
             gptq::backend::cpu::qlinear_forward(view, x.data(), kBatch, y.data());
           }));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::clamp(std::atoi(argv[1]), 1, 1000) : 15;
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  std::printf("threads: OpenMP %d (OMP_WAIT_POLICY=%s), medians of %d reps (qgemm: %d)\n",
              omp_get_max_threads(), wait ? wait : "unset", reps, std::max(3, reps / 3));
  bench_shape(4096, 4096, reps);
  bench_shape(288, 768, reps);
  return 0;
}
