// What the CUDA QuantOps (quant_ops.cu) borrows from the backend whose tensors it
// reads: the device, its stream and cuBLAS handle, and its metered device memory.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gptq_gemm.cuh"
#include "backend/cuda/gptq_mma.cuh"

namespace gptq::backend::cuda {

struct DeviceContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  // Device memory counted in the backend's MemoryStats; throws kDevice naming `what` and
  // the bytes when the device is full.
  std::function<std::shared_ptr<void>(uint64_t bytes, const std::string& what)> alloc;
  // The backend itself, and how it takes a GPTQ layer built in its device memory:
  // whether it lays `bits` out in fragment order (MmaDeviceLayout) at all, and the layer
  // made from such tensors, owning `memory` (what gptq_linear makes of the same tensors
  // uploaded from the host).
  Backend* backend = nullptr;
  std::function<bool(int bits)> takes_fragment_layout;
  std::function<std::unique_ptr<Linear>(const MmaDeviceLayout& d, int group_size,
                                        std::vector<std::shared_ptr<void>> memory, uint64_t bytes)>
      fragment_linear;
  // The same for the GEMV layout (GptqDeviceLayout) where the backend does not take the
  // fragment order for those bits.
  std::function<std::unique_ptr<Linear>(const GptqDeviceLayout& d, int group_size,
                                        std::vector<std::shared_ptr<void>> memory, uint64_t bytes)>
      gemv_linear;
};

// The backend must outlive the result.
std::unique_ptr<QuantOps> make_quant_ops(const DeviceContext& ctx, FactorPrecision factor);

}  // namespace gptq::backend::cuda
