// GPTQ matrix products on one GPU against cuBLAS fp16 on the same shapes, in one run.
//   bench_cuda_qlinear [--device cuda:N] [--shapes 8b|1b|all] [--m 1,2,4,...]
//                      [--formats LIST] [--reps N] [--bandwidth GB/s] [--json]
//                      [--mma-max-rows N] [--max-splits N] [--tile-mib N] [--tiles] [--gemv]
//                      [--names q/o,down,...]
// Shapes: the linears of Llama-3.1-8B and Llama-3.2-1B (q, k/v, o, gate/up, down,
// lm_head; published configs). Formats: 4b-g128-sym, 4b-g128-act-asym, 8b-g128,
// 3b-g128, 2b-g64 (random codes and scales; the speed does not depend on the values).
// Each time is the median over reps of one CUDA graph replaying the product several
// times, divided by that count (launch gaps included, as a decode step sees them).
// Effective bytes: resident weight bytes (codes, scales, zeros, permutation) + x + y
// in fp16; the bandwidth fraction is against --bandwidth (H200 copy: 4260 GB/s).
// The FORMAT rows run the tensor-core family (GptqKernel::kTensorCore);
// --mma-max-rows sets its crossover (BackendOptions::gptq_mma_max_rows), --max-splits
// caps its split of K (BackendOptions::gptq_max_splits; a sweep shows the planner's cost);
// --tile-mib sets the dequantized tiles' size (BackendOptions::dequant_tile_bytes);
// --tiles also times every format through dequantized tiles + cuBLAS (a second backend
// with the crossover at 0, rows "FORMAT/tiles"), to measure where the crossover lies;
// --gemv also times the CUDA-core GEMV family (GptqKernel::kGemv, rows "FORMAT/gemv").
#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "graph_timer.h"
#include "core/dtype.h"
#include "core/error.h"
#include "format/packing.h"
#include "format/random_layer.h"

using namespace gptq;

namespace {

struct Shape {
  const char* model;
  const char* name;
  int64_t N, K;
};
// Llama-3.1-8B: hidden 4096, 32 heads / 8 KV heads of 128, MLP 14336, vocab 128256.
// Llama-3.2-1B: hidden 2048, 32 heads / 8 KV heads of 64, MLP 8192, vocab 128256.
const Shape kShapes[] = {
    {"8b", "q/o", 4096, 4096},    {"8b", "k/v", 1024, 4096},   {"8b", "gate/up", 14336, 4096},
    {"8b", "down", 4096, 14336},  {"8b", "lm_head", 128256, 4096}, {"1b", "q/o", 2048, 2048},
    {"1b", "k/v", 512, 2048},     {"1b", "gate/up", 8192, 2048},   {"1b", "down", 2048, 8192},
    {"1b", "lm_head", 128256, 2048},
};

struct Format {
  std::string name;
  int bits, group;
  bool act_order, sym;
};
const Format kFormats[] = {{"4b-g128-sym", 4, 128, false, true},
                           {"4b-g128-act-asym", 4, 128, true, false},
                           {"8b-g128", 8, 128, false, true},
                           {"3b-g128", 3, 128, false, true},
                           {"2b-g64", 2, 64, false, true}};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');) out.push_back(t);
  return out;
}

// Seconds per product: a graph of products lasting ~2 ms replayed reps times, median.
double time_product(backend::Backend& b, const backend::Linear& w, backend::Tensor x, backend::Tensor y, int reps) {
  return bench::seconds_per_call(b, [&] { b.linear(w, x, y); }, reps, 2e-3);
}

}  // namespace

int main(int argc, char** argv) try {
  std::string device = "cuda", shapes = "all", ms = "1,2,4,8,16,32,64,128,256,1024,4096", formats, names;
  int reps = 5;
  double bandwidth = 4260.0;
  bool json = false, tiles = false, gemv = false;
  int64_t mma_max_rows = backend::BackendOptions{}.gptq_mma_max_rows;
  int64_t max_splits = backend::BackendOptions{}.gptq_max_splits;
  int64_t tile_bytes = backend::BackendOptions{}.dequant_tile_bytes;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    const std::string a = argv[i];
    if (a == "--device") device = next();
    else if (a == "--shapes") shapes = next();
    else if (a == "--m") ms = next();
    else if (a == "--formats") formats = next();
    else if (a == "--reps") reps = std::max(1, std::stoi(next()));
    else if (a == "--bandwidth") bandwidth = std::stod(next());
    else if (a == "--json") json = true;
    else if (a == "--tiles") tiles = true;
    else if (a == "--gemv") gemv = true;
    else if (a == "--names") names = next();
    else if (a == "--mma-max-rows") mma_max_rows = std::stoll(next());
    else if (a == "--max-splits") max_splits = std::stoll(next());
    else if (a == "--tile-mib") tile_bytes = std::stoll(next()) << 20;
    else throw Error(ErrorKind::kInvalidArgument, "unknown argument " + a);
  }
  // The format rows: the tensor-core family (fragment layout; mma up to --mma-max-rows).
  auto b = backend::make_backend(device, {.activations = DType::kF16, .gptq_mma_max_rows = mma_max_rows,
                                          .gptq_kernel = backend::GptqKernel::kTensorCore,
                                          .gptq_max_splits = max_splits, .dequant_tile_bytes = tile_bytes});
  std::unique_ptr<backend::Backend> bt;  // --tiles: every GPTQ product through cuBLAS
  if (tiles) {
    bt = backend::make_backend(device, {.activations = DType::kF16, .gptq_mma_max_rows = 0,
                                        .gptq_kernel = backend::GptqKernel::kTensorCore,
                                        .dequant_tile_bytes = tile_bytes});
  }
  std::unique_ptr<backend::Backend> bg;  // --gemv: the CUDA-core family
  if (gemv) bg = backend::make_backend(device, {.activations = DType::kF16, .gptq_kernel = backend::GptqKernel::kGemv});
  std::vector<int64_t> mlist;
  for (const auto& m : split(ms)) mlist.push_back(std::stoll(m));
  const std::vector<std::string> fsel = formats.empty() ? std::vector<std::string>{} : split(formats);
  std::printf("# %s, fp16 activations; time per product (µs), effective GB/s, %% of %.0f GB/s, speed-up over "
              "cuBLAS fp16\n", b->name().c_str(), bandwidth);
  if (!json) std::printf("%-4s %-8s %5s %-18s %10s %8s %6s %7s\n", "mdl", "shape", "M", "format", "us", "GB/s", "%bw", "x_fp16");
  uint64_t seed = 1;
  for (const Shape& s : kShapes) {
    if (shapes != "all" && shapes != s.model) continue;
    if (!names.empty()) {
      const auto wanted = split(names);
      if (std::find(wanted.begin(), wanted.end(), s.name) == wanted.end()) continue;
    }
    // The fp16 baseline: a dense [N, K] weight of small random values.
    std::vector<std::byte> dense(std::size_t(s.N * s.K) * 2);
    {
      uint64_t r = 88172645463325252ull;
      for (std::size_t i = 0; i < dense.size(); i += 2) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        const uint16_t h = f32_to_f16(float(int64_t(r % 2001) - 1000) * 1e-5f);
        std::memcpy(&dense[i], &h, 2);
      }
    }
    const io::TensorView view{.name = s.name, .dtype = DType::kF16, .shape = {s.N, s.K}, .data = dense};
    auto fp16 = b->dense_linear(view, nullptr);
    std::vector<std::pair<const Format*, std::unique_ptr<backend::Linear>>> layers, tiled, gemved;
    for (const Format& f : kFormats) {
      if (!fsel.empty() && std::find(fsel.begin(), fsel.end(), f.name) == fsel.end()) continue;
      const auto q = quant::random_quantized_linear(
          {.bits = f.bits, .in_features = s.K, .out_features = s.N, .group_size = f.group, .act_order = f.act_order,
           .sym = f.sym},
          seed++);
      layers.emplace_back(&f, b->gptq_linear(quant::pack(q, quant::Format::kV2)));
      if (bt) tiled.emplace_back(&f, bt->gptq_linear(quant::pack(q, quant::Format::kV2)));
      if (bg) gemved.emplace_back(&f, bg->gptq_linear(quant::pack(q, quant::Format::kV2)));
    }
    for (int64_t M : mlist) {
      auto x = b->alloc(M, s.K), y = b->alloc(M, s.N);
      const double act_bytes = double(M) * double(s.K + s.N) * 2.0;
      const double t16 = time_product(*b, *fp16, x.view(), y.view(), reps);
      auto report = [&](const std::string& fmt, double t, double bytes) {
        const double gbs = bytes / t / 1e9;
        if (json) {
          std::printf("%s\n", nlohmann::json{{"model", s.model}, {"shape", s.name}, {"N", s.N}, {"K", s.K}, {"M", M},
                                             {"format", fmt}, {"us", t * 1e6}, {"gb_s", gbs},
                                             {"fraction_of_bandwidth", gbs / bandwidth}, {"speedup_vs_fp16", t16 / t}}
                                  .dump()
                                  .c_str());
        } else {
          std::printf("%-4s %-8s %5lld %-18s %10.2f %8.0f %5.0f%% %7.2f\n", s.model, s.name, (long long)M, fmt.c_str(),
                      t * 1e6, gbs, 100.0 * gbs / bandwidth, t16 / t);
        }
      };
      report("fp16", t16, double(fp16->weight_bytes()) + act_bytes);
      for (auto& [f, l] : layers) report(f->name, time_product(*b, *l, x.view(), y.view(), reps),
                                         double(l->weight_bytes()) + act_bytes);
      if (bt) {
        auto xt = bt->alloc(M, s.K), yt = bt->alloc(M, s.N);
        for (auto& [f, l] : tiled) report(f->name + "/tiles", time_product(*bt, *l, xt.view(), yt.view(), reps),
                                          double(l->weight_bytes()) + act_bytes);
      }
      if (bg) {
        auto xg = bg->alloc(M, s.K), yg = bg->alloc(M, s.N);
        for (auto& [f, l] : gemved) report(f->name + "/gemv", time_product(*bg, *l, xg.view(), yg.view(), reps),
                                           double(l->weight_bytes()) + act_bytes);
      }
      std::fflush(stdout);
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cuda_qlinear: %s\n", e.what());
  return 1;
}
