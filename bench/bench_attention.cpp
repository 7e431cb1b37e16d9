// Prefill attention on one GPU: the CUDA-core kernel against the tensor-core kernel on the
// same shapes and inputs, in one run.
//   bench_attention [--device cuda:N] [--dtype f16|bf16] [--shapes 1b|8b|all]
//                   [--t 512,2048,4096] [--start S] [--window W] [--reps N] [--peak TFLOP/s] [--json]
// Shapes (published configs): Llama-3.2-1B, 32 heads / 8 KV heads of 64; Llama-3.1-8B,
// 32 / 8 of 128. A call is a prefill of T rows at positions S..S+T-1 over a cache of S+T
// rows (S = 0: from an empty cache; S > 0 with small T: where the kernels cross over).
// FLOPs: 2 products (Q Kᵀ, P V) x 2 per multiply-add x d x heads x the attended (row,
// key) pairs, Σ_t min(S + t + 1, W) (≈ T²/2 for a causal prefill from 0).
// Each time is the median over reps of one CUDA graph replaying the call several times,
// divided by that count; the fraction is against --peak (H200 dense fp16: 989 TFLOP/s).
// "diff" is ‖out_tensor − out_simt‖ / ‖out_simt‖ on the same inputs (a sanity check;
// tests/test_backend_ops.cpp holds the bounds).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "graph_timer.h"
#include "core/dtype.h"
#include "core/error.h"

using namespace gptq;

namespace {

struct Shape {
  const char* model;
  int64_t heads, kv_heads, d;
};
const Shape kShapes[] = {{"1b", 32, 8, 64}, {"8b", 32, 8, 128}};

struct Kernel {
  const char* name;
  backend::AttentionKernel kind;
};
const Kernel kKernels[] = {{"simt", backend::AttentionKernel::kSimt},
                           {"tensor", backend::AttentionKernel::kTensorCore}};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');) out.push_back(t);
  return out;
}

// Seconds per call of `work`: a graph of calls lasting ~20 ms replayed reps times, median.
double time_call(backend::Backend& b, const std::function<void()>& work, int reps) {
  return bench::seconds_per_call(b, work, reps, 2e-2);
}

}  // namespace

int main(int argc, char** argv) try {
  std::string device = "cuda", shapes = "all", ts = "512,2048,4096", dtype = "f16";
  int64_t start = 0, window = 0;
  int reps = 10;
  double peak = 989.0;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    const std::string a = argv[i];
    if (a == "--device") device = next();
    else if (a == "--dtype") dtype = next();
    else if (a == "--shapes") shapes = next();
    else if (a == "--t") ts = next();
    else if (a == "--start") start = std::max<int64_t>(0, std::stoll(next()));
    else if (a == "--window") window = std::max<int64_t>(0, std::stoll(next()));
    else if (a == "--reps") reps = std::max(1, std::stoi(next()));
    else if (a == "--peak") peak = std::stod(next());
    else if (a == "--json") json = true;
    else throw Error(ErrorKind::kInvalidArgument, "unknown argument " + a);
  }
  if (dtype != "f16" && dtype != "bf16") throw Error(ErrorKind::kInvalidArgument, "--dtype: f16 or bf16, not " + dtype);
  const DType act = dtype == "f16" ? DType::kF16 : DType::kBF16;
  std::vector<std::unique_ptr<backend::Backend>> b;
  for (const Kernel& k : kKernels) b.push_back(backend::make_backend(device, {.activations = act, .attention = k.kind}));
  std::printf("# %s, %s, prefill attention at positions %lld.., window %lld; time per call (us), TFLOP/s, %% of %.0f "
              "TFLOP/s, speed-up over simt\n",
              b[0]->name().c_str(), dtype.c_str(), (long long)start, (long long)window, peak);
  if (!json) std::printf("%-4s %6s %-7s %10s %8s %6s %7s %9s\n", "mdl", "T", "kernel", "us", "TFLOP/s", "%peak", "x_simt", "diff");
  std::mt19937 rng(1);
  for (const Shape& s : kShapes) {
    if (shapes != "all" && shapes != s.model) continue;
    for (const std::string& tstr : split(ts)) {
      const int64_t T = std::stoll(tstr), cap = start + T, qd = s.heads * s.d, kvd = s.kv_heads * s.d;
      auto random = [&](int64_t n, float lim) {
        std::uniform_real_distribution<float> u(-lim, lim);
        std::vector<float> v(static_cast<std::size_t>(n));
        for (auto& x : v) x = u(rng);
        return v;
      };
      const std::vector<float> qh = random(T * qd, 2.0f), kh = random(cap * kvd, 1.0f), vh = random(cap * kvd, 1.0f);
      std::vector<int32_t> pos(static_cast<std::size_t>(T));
      double pairs = 0.0;
      for (int64_t t = 0; t < T; ++t) {
        pos[std::size_t(t)] = int32_t(start + t);
        pairs += double(window > 0 ? std::min(start + t + 1, window) : start + t + 1);
      }
      const double flops = 4.0 * pairs * double(s.d) * double(s.heads);
      const backend::AttentionShape shape{.heads = s.heads, .kv_heads = s.kv_heads, .head_dim = s.d,
                                          .sliding_window = window};
      std::vector<std::vector<float>> outs;
      double t_simt = 0.0;
      for (std::size_t i = 0; i < b.size(); ++i) {
        backend::Backend& be = *b[i];
        auto q = be.alloc(T, qd), kc = be.alloc(cap, kvd), vc = be.alloc(cap, kvd), out = be.alloc(T, qd);
        auto p = be.alloc(1, T, DType::kI32);
        be.upload(qh, q.view());
        be.upload(kh, kc.view());
        be.upload(vh, vc.view());
        be.upload(pos, p.view());
        const backend::KvView cache{kc.view(), vc.view()};
        const double t = time_call(
            be, [&] { be.attention(q.view(), cache, p.view(), shape, out.view()); }, reps);
        outs.emplace_back(static_cast<std::size_t>(T * qd));
        be.download(out.view(), outs.back());
        if (i == 0) t_simt = t;
        double num = 0.0, den = 0.0;
        for (std::size_t e = 0; e < outs.back().size(); ++e) {
          const double r = outs[0][e], x = outs.back()[e];
          num += (x - r) * (x - r), den += r * r;
        }
        const double diff = std::sqrt(num / std::max(den, 1e-300)), tflops = flops / t / 1e12;
        if (json) {
          std::printf("%s\n", nlohmann::json{{"model", s.model}, {"heads", s.heads}, {"kv_heads", s.kv_heads},
                                             {"head_dim", s.d}, {"T", T}, {"start", start}, {"window", window},
                                             {"dtype", dtype}, {"kernel", kKernels[i].name}, {"us", t * 1e6},
                                             {"tflop_s", tflops}, {"fraction_of_peak", tflops / peak},
                                             {"speedup_vs_simt", t_simt / t}, {"diff_vs_simt", diff}}
                                  .dump()
                                  .c_str());
        } else {
          std::printf("%-4s %6lld %-7s %10.1f %8.1f %5.1f%% %7.2f %9.2e\n", s.model, (long long)T, kKernels[i].name,
                      t * 1e6, tflops, 100.0 * tflops / peak, t_simt / t, diff);
        }
        std::fflush(stdout);
      }
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_attention: %s\n", e.what());
  return 1;
}
