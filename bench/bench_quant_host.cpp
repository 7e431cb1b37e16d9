// The host-side work quantize_module does per module, on Llama-3.2-1B's MLP shapes, on
// this machine's CPU: the weight's conversion to fp32 (bf16 checkpoint; into a fresh
// vector, whose first touch costs a page fault per 4 KiB, and into a reused one), packing the
// codes into checkpoint tensors (v1 and v2), the v1 → v2 zero conversion that lets the
// swap-in reuse the checkpoint pack, and the repacks into the CUDA kernels' layouts that
// the swap-in's gptq_linear does (the tensor-core fragment order; the older layout, CUDA
// builds). Each time is the median of --reps runs.
//   bench_quant_host [--reps N] [--json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "format/fragment_layout.h"
#include "format/packing.h"
#include "format/random_layer.h"
#include "io/checkpoint.h"
#if GPTQ_HAVE_CUDA
#include "backend/cuda/gptq_repack.h"
#endif

using namespace gptq;

namespace {

template <class F>
double median_seconds(int reps, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 3;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--json")) {
      json = true;
    } else {
      std::fprintf(stderr, "usage: bench_quant_host [--reps N] [--json]\n");
      return 2;
    }
  }
  struct Shape {
    const char* name;
    int64_t n, k;
    bool act_order;
  };
  const Shape shapes[] = {{"gate/up_proj 8192x2048", 8192, 2048, false},
                          {"down_proj 2048x8192", 2048, 8192, false},
                          {"down_proj act-order", 2048, 8192, true}};
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const Shape& s : shapes) {
    const quant::QuantizedLinear q = quant::random_quantized_linear(
        {.bits = 4, .in_features = s.k, .out_features = s.n, .group_size = 128, .act_order = s.act_order}, 1);
    std::vector<uint16_t> bf16(std::size_t(s.n * s.k));
    for (std::size_t i = 0; i < bf16.size(); ++i) bf16[i] = uint16_t(0x3c00 + (i * 2654435761u >> 20) % 512);
    const io::TensorView w{.name = "w", .dtype = DType::kBF16, .shape = {s.n, s.k},
                           .data = std::as_bytes(std::span(bf16))};
    std::vector<float> f32;
    quant::PackedLinear v1, v2;
    nlohmann::ordered_json r = {{"shape", s.name}};
    r["to_f32_fresh"] = median_seconds(reps, [&] { f32 = io::to_f32(w, {s.n, s.k}, "bench"); });
    r["to_f32_reused"] = median_seconds(reps, [&] { io::to_f32(w, f32.data()); });
    r["pack_v1"] = median_seconds(reps, [&] { v1 = quant::pack(q, quant::Format::kV1); });
    r["pack_v2"] = median_seconds(reps, [&] { v2 = quant::pack(q, quant::Format::kV2); });
    r["v1_zeros_to_v2"] = median_seconds(reps, [&] {
      quant::PackedLinear p = v1;
      quant::convert_v1_zeros_to_v2(p);
    });
    r["fragment_layout"] = median_seconds(reps, [&] { (void)quant::make_fragment_layout(v2); });
#if GPTQ_HAVE_CUDA
    r["repack_for_cuda"] = median_seconds(reps, [&] { (void)backend::cuda::repack_for_cuda(v2); });
#endif
    if (!json) {
      std::printf("%-24s", s.name);
      for (const auto& [k, v] : r.items()) {
        if (k != "shape") std::printf("  %s %.1f ms", k.c_str(), v.get<double>() * 1e3);
      }
      std::printf("\n");
    }
    rows.push_back(r);
  }
  if (json) std::printf("%s\n", rows.dump(1).c_str());
  return 0;
}
