// The CUDA backend's entry points, in plain C++ (no CUDA header): the registry
// (src/backend/registry.cpp) is the only caller.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/quant_ops.h"
#include "backend/registry.h"

namespace gptq::backend::cuda {

// CUDA devices visible to this process; 0 when there is no driver or no device.
int device_count();

// A backend on device `index` computing in options.activations (F16, BF16 or F32).
// Throws kDevice naming the device when it is absent or cannot be initialised.
std::unique_ptr<Backend> make_cuda_backend(int index, const BackendOptions& options);

// GPTQ's compute on `b` (a backend made by make_cuda_backend): its device, stream and
// cuBLAS handle. Throws kInvalidArgument for another backend.
std::unique_ptr<QuantOps> make_cuda_quant_ops(Backend& b, FactorPrecision factor = FactorPrecision::kF64);

// The device of a backend made by make_cuda_backend; -1 for any other backend.
int device_index(const Backend& b);

// registry.h's make_device_comms on CUDA: NCCL communicators when NCCL was compiled in
// and the ranks are CUDA backends on distinct devices (one rank: a communicator of
// one), else empty.
std::vector<std::unique_ptr<DeviceComm>> make_nccl_comms(std::span<Backend* const> ranks);

}  // namespace gptq::backend::cuda
