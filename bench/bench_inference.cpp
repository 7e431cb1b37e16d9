// Prefill and decode speed of a model on a backend, with the decode roofline.
//   build/bench_inference [MODEL] [--device cpu|cuda:N] [--dtype f16|bf16|f32]
//                         [--prefill N] [--decode N] [--reps N] [--bandwidth GB/s] [--json]
//                         [--gptq-kernel gemv|tensor-core]
// Prefill: one window of N tokens (default min(2048, context)), last logits only.
// Decode: N tokens (default 128) one at a time through the KV cache after a 16-token
// prompt, greedy on the backend (one id comes back per step). Prints medians of the
// reps. The roofline: every step reads all weights once, so decode can reach at most
// bandwidth / weight bytes tokens/s (KV and activations are small at these lengths).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "core/error.h"
#include "eval/sampler.h"
#include "model/model.h"

using namespace gptq;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
DType parse_dtype(const std::string& s) {
  if (s == "f16") return DType::kF16;
  if (s == "bf16") return DType::kBF16;
  return DType::kF32;
}
}  // namespace

int main(int argc, char** argv) {
  std::string dir = GPTQ_BENCH_MODEL, device = "cpu", dtype = "f32", gptq_kernel = "gemv";
  int reps = 5;
  int64_t prefill_len = 0, decode_len = 128;
  double bandwidth = 0.0;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    const std::string a = argv[i];
    if (a == "--reps") reps = std::max(1, std::stoi(next()));
    else if (a == "--device") device = next();
    else if (a == "--dtype") dtype = next();
    else if (a == "--gptq-kernel") gptq_kernel = next();
    else if (a == "--prefill") prefill_len = std::stoll(next());
    else if (a == "--decode") decode_len = std::stoll(next());
    else if (a == "--bandwidth") bandwidth = std::stod(next());
    else if (a == "--json") json = true;
    else dir = a;
  }
  try {
    auto be = backend::make_backend(
        device, {.activations = parse_dtype(dtype),
                 .gptq_kernel = gptq_kernel == "tensor-core" ? backend::GptqKernel::kTensorCore : backend::GptqKernel::kGemv});
    auto m = model::Model::load(dir, *be);
    const auto& c = m.config();
    const int64_t window = prefill_len > 0 ? std::min(prefill_len, c.max_positions) : std::min<int64_t>(2048, c.max_positions);
    const int64_t prompt = 16, steps = std::min<int64_t>(decode_len, c.max_positions - prompt);
    std::vector<int32_t> ids(static_cast<std::size_t>(std::max(window, prompt)));
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(1 + (i * 7919) % std::size_t(c.vocab - 1));
    eval::Sampler greedy({.temperature = 0.0f});
    auto pcache = m.new_cache(window);
    auto dcache = m.new_cache(prompt + steps);
    std::vector<double> prefill, decode;
    for (int r = 0; r <= reps; ++r) {  // rep 0 warms up (and records the decode graph)
      pcache.clear();
      const double t0 = now();
      greedy.next(*be, m.forward_last(std::span(ids).first(std::size_t(window)), pcache));
      const double tp = now() - t0;
      dcache.clear();
      int32_t tok = greedy.next(*be, m.forward_last(std::span(ids).first(std::size_t(prompt)), dcache));
      const double t1 = now();
      for (int64_t s = 0; s < steps; ++s) tok = greedy.next(*be, m.forward_last(std::span(&tok, 1), dcache));
      const double td = now() - t1;
      if (r == 0) continue;
      prefill.push_back(double(window) / tp);
      decode.push_back(double(steps) / td);
    }
    const double wb = double(m.weight_bytes());
    const double roof = bandwidth > 0 ? bandwidth * 1e9 / wb : 0.0;
    const double dec = median(decode), pre = median(prefill);
    const auto mem = be->memory();
    if (json) {
      const nlohmann::json j = {{"model", dir}, {"device", be->name()}, {"dtype", dtype},
                                {"weight_bytes", m.weight_bytes()}, {"prefill_tokens", window},
                                {"prefill_tok_s", pre}, {"decode_tokens", steps}, {"decode_tok_s", dec},
                                {"decode_roofline_tok_s", roof}, {"fraction_of_roofline", roof > 0 ? dec / roof : 0.0},
                                {"peak_device_bytes", mem.peak_allocated}};
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    std::printf("model %s on %s (%s): %lld layers, hidden %lld, weights %.1f MB resident\n", dir.c_str(),
                be->name().c_str(), dtype.c_str(), (long long)c.layers, (long long)c.hidden, wb / 1e6);
    std::printf("prefill %lld tokens: median %.0f tok/s (%d reps)\n", (long long)window, pre, reps);
    std::printf("decode %lld tokens: median %.1f tok/s", (long long)steps, dec);
    if (roof > 0) std::printf("; roofline %.0f tok/s at %.0f GB/s: %.0f%%", roof, bandwidth, 100.0 * dec / roof);
    std::printf("\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_inference: %s\n", e.what());
    return 1;
  }
  return 0;
}
