// --device, --dtype, --gptq-kernel and --threads, shared by every command that runs a model:
// declared once here.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "backend/backend.h"

namespace gptq::cli {

struct DeviceArgs {
  std::string device = "auto";  // cpu | cuda | cuda:N | auto
  std::string dtype = "auto";   // f16 | bf16 | f32 | auto
  std::string gptq_kernel = "gemv";  // gemv | tensor-core (backend::GptqKernel)
  std::string threads = "auto";      // auto | N (core/cpu_threads.h)
};

void add_device_flags(CLI::App& app, DeviceArgs& a);

// The backend the flags ask for, for the model at `model` (auto dtype: the checkpoint's
// embedding dtype on CUDA, f32 on the CPU), with the CPU thread policy set. Says on
// stderr which device, dtype and threads run.
std::unique_ptr<backend::Backend> open_backend(const DeviceArgs& a, const std::string& model);

// Peak host RSS and, for a device backend, peak bytes gptq.cpp allocated and the
// device's used / total: one line on stderr, and the same under "memory" in `json`.
void report_memory(const backend::Backend& b, nlohmann::json* json);

}  // namespace gptq::cli
