#include "cli/device_options.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>

#include "backend/registry.h"
#include "core/cpu_threads.h"
#include "core/error.h"
#include "core/memory.h"
#include "model/config.h"

namespace gptq::cli {

namespace {

// "auto" or a whole number >= 1; anything else is refused by the flag's check.
ThreadPolicy parse_threads(const std::string& s) {
  if (s == "auto") return {.mode = ThreadMode::kAuto};
  int n = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), n);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || n < 1) return {.mode = ThreadMode::kFixed, .count = 0};
  return {.mode = ThreadMode::kFixed, .count = n};
}

}  // namespace

void add_device_flags(CLI::App& app, DeviceArgs& a) {
  app.add_option("--device", a.device, "cpu, cuda, cuda:N, or auto (the first GPU when present, else cpu)")
      ->capture_default_str();
  app.add_option("--dtype", a.dtype,
                 "Activation dtype: f16, bf16, f32, or auto (the checkpoint's on CUDA; the CPU computes in f32)")
      ->check(CLI::IsMember({"auto", "f16", "bf16", "f32"}))
      ->capture_default_str();
  app.add_option("--gptq-kernel", a.gptq_kernel,
                 "CUDA kernels for GPTQ layers: gemv (CUDA cores; fastest at batch 1) or tensor-core "
                 "(mma; fastest at batch 8-32 on large layers, slower at batch 1: src/backend/cuda/NOTES.md)")
      ->check(CLI::IsMember({"gemv", "tensor-core"}))
      ->capture_default_str();
  app.add_option("--threads", a.threads,
                 "CPU threads: N, or auto (the cores other processes leave free, refitted about once a second)")
      ->check([](const std::string& s) {
        const ThreadPolicy p = parse_threads(s);
        return p.mode == ThreadMode::kAuto || p.count >= 1 ? std::string() : "expected auto or a whole number >= 1";
      })
      ->capture_default_str();
}

std::unique_ptr<backend::Backend> open_backend(const DeviceArgs& a, const std::string& model) {
  const std::string spec = a.device == "auto" ? backend::default_backend() : a.device;
  DType act = DType::kF32;
  if (a.dtype == "f16") act = DType::kF16;
  if (a.dtype == "bf16") act = DType::kBF16;
  if (a.dtype == "auto") act = model::default_activations(model, spec);
  const backend::GptqKernel kernel =
      a.gptq_kernel == "tensor-core" ? backend::GptqKernel::kTensorCore : backend::GptqKernel::kGemv;
  const ThreadPolicy threads = parse_threads(a.threads);
  set_thread_policy(threads);
  auto b = backend::make_backend(spec, {.activations = act, .gptq_kernel = kernel});
  const std::string cpu = threads.mode == ThreadMode::kAuto
                              ? "auto, up to " + std::to_string(usable_cores())
                              : std::to_string(threads.count);
  const char* wait = std::getenv("OMP_WAIT_POLICY");  // core/omp_policy.h: main() sets it
  std::fprintf(stderr, "device: %s, activations %s, CPU threads %s, OpenMP wait %s\n", b->name().c_str(),
               std::string(dtype_name(act)).c_str(), cpu.c_str(), wait != nullptr ? wait : "default");
  return b;
}

void report_memory(const backend::Backend& b, nlohmann::json* json) {
  const backend::MemoryStats m = b.memory();
  const uint64_t rss = peak_rss_bytes();
  auto mib = [](uint64_t v) { return double(v) / double(1 << 20); };
  if (b.device() == backend::Device::kCpu) {
    std::fprintf(stderr, "memory: peak host RSS %.1f MiB\n", mib(rss));
  } else {
    std::fprintf(stderr, "memory: peak host RSS %.1f MiB; device: peak allocated by gptq.cpp %.1f MiB, in use %.0f / %.0f MiB\n",
                 mib(rss), mib(m.peak_allocated), mib(m.device_used), mib(m.device_total));
  }
  if (json != nullptr) {
    (*json)["memory"] = {{"peak_host_bytes", rss},
                         {"peak_device_bytes", m.peak_allocated},
                         {"device_used_bytes", m.device_used},
                         {"device_total_bytes", m.device_total}};
  }
}

}  // namespace gptq::cli
