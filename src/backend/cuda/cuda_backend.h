// The CUDA backend's entry points, in plain C++ (no CUDA header): the registry
// (src/backend/registry.cpp) is the only caller.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace gptq::backend::cuda {

// CUDA devices visible to this process; 0 when there is no driver or no device.
int device_count();

// A backend on device `index` computing in `activations` (F16, BF16 or F32). Throws
// kDevice naming the device when it is absent or cannot be initialised.
std::unique_ptr<Backend> make_cuda_backend(int index, DType activations);

}  // namespace gptq::backend::cuda
