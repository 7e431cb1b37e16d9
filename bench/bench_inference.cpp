// Prefill and decode speed on a model (default: the bundled stories15M).
//   build/bench_inference [MODEL] [--reps N]
// Prefill: 256-token windows through the batched forward pass. Decode: 128 tokens one
// at a time through the KV cache after a 16-token prompt. Prints the median of N reps.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include <omp.h>

#include "core/error.h"
#include "model/model.h"

using namespace gptq;

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  std::string dir = GPTQ_BENCH_MODEL;
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      dir = argv[i];
    }
  }
  try {
    auto be = backend::make_cpu_backend();
    auto m = model::Model::load(dir, *be);
    const auto& c = m.config();
    const int64_t window = std::min<int64_t>(256, c.max_positions);
    std::vector<int32_t> ids(static_cast<std::size_t>(window));
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(1 + (i * 7919) % std::size_t(c.vocab - 1));
    std::vector<float> logits;
    auto cache = m.new_cache(window);
    m.forward(ids, cache, model::Logits::kAll, logits);  // warm-up

    std::vector<double> prefill, decode;
    for (int r = 0; r < reps; ++r) {
      cache.clear();
      const double t0 = now();
      m.forward(ids, cache, model::Logits::kAll, logits);
      prefill.push_back(double(window) / (now() - t0));

      const int64_t prompt = 16, steps = std::min<int64_t>(128, window - prompt);
      cache.clear();
      m.forward(std::span(ids).first(std::size_t(prompt)), cache, model::Logits::kLast, logits);
      const double t1 = now();
      for (int64_t s = 0; s < steps; ++s) {
        const int32_t next = ids[std::size_t(prompt + s)];
        m.forward(std::span(&next, 1), cache, model::Logits::kLast, logits);
      }
      decode.push_back(double(steps) / (now() - t1));
    }
    std::printf("model %s: %s, %lld layers, hidden %lld, weights %.1f MB fp32 resident, %d threads\n", dir.c_str(),
                c.architecture_name.c_str(), (long long)c.layers, (long long)c.hidden, double(m.weight_bytes()) / 1e6,
                omp_get_max_threads());
    std::printf("prefill (%lld-token windows, all logits): median %.0f tok/s  (min %.0f, max %.0f, %d reps)\n",
                (long long)window, median(prefill), *std::min_element(prefill.begin(), prefill.end()),
                *std::max_element(prefill.begin(), prefill.end()), reps);
    std::printf("decode (1 token/step, KV cache): median %.1f tok/s  (min %.1f, max %.1f)\n", median(decode),
                *std::min_element(decode.begin(), decode.end()), *std::max_element(decode.begin(), decode.end()));
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_inference: %s\n", e.what());
    return 1;
  }
  return 0;
}
