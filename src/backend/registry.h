// Backends by name: "cpu", "cuda", "cuda:N", or "auto" (the first GPU when one is
// present, else the CPU). The only place that knows which backends were compiled in.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "backend/device_comm.h"
#include "backend/quant_ops.h"

namespace gptq::backend {

struct BackendOptions {
  // Activation (and KV cache) dtype. The CPU backend computes in fp32 only and refuses
  // anything else; CUDA takes f16, bf16 or f32.
  DType activations = DType::kF32;
  // With GptqKernel::kTensorCore, CUDA GPTQ products of up to this many rows run on the kernels that
  // dequantize in registers (src/backend/cuda/gptq_mma.cu: batch 1-8, 9-256, general);
  // larger ones dequantize tiles of W for cuBLAS. The default is the crossover measured
  // on an H200 (src/backend/cuda/NOTES.md, version 10: at 128 rows the batch kernel beats the
  // tiles on the 8B gate/up, down and lm_head shapes, 62 vs 83 µs on gate/up; at 256 the
  // tiles win on every shape, 94 vs 122); bench_cuda_qlinear --mma-max-rows --tiles measures it.
  int64_t gptq_mma_max_rows = 128;
  // The CUDA-core GEMV family by default: at batch 1 (single-stream decode) it is 10-60%
  // faster than the tensor-core kernel on the Llama shapes (NOTES.md, version 3).
  GptqKernel gptq_kernel = GptqKernel::kGemv;
  // Splits of K at most in the tensor-core kernels (0: each kernel's planner chooses, from
  // the SM count, residency and L2 size); bench_cuda_qlinear --max-splits sweeps it.
  int64_t gptq_max_splits = 0;
  // Products through dequantized weights (GPTQ above gptq_mma_max_rows, bnb 4-bit past
  // its GEMV) take W in tiles of at most this many bytes of 16-bit rows, each written
  // and then multiplied by cuBLAS: the scratch they need, and, below the L2 size, whether
  // cuBLAS reads a tile back from L2. bench_cuda_qlinear --tile-mib sweeps it.
  int64_t dequant_tile_bytes = int64_t(64) << 20;
  // The attention kernel (CUDA only; benches and tests force one to compare them).
  AttentionKernel attention = AttentionKernel::kAuto;
};

// Throws kInvalidArgument for an unknown name, kDevice when the device is absent.
std::unique_ptr<Backend> make_backend(std::string_view spec, const BackendOptions& options);

// The GPTQ compute of backend `b`, working in b's memory (and, on CUDA, on its stream).
// `b` must outlive the result. `factor`: a device's factor arithmetic (the CPU's is fp64).
std::unique_ptr<QuantOps> make_quant_ops(Backend& b, FactorPrecision factor = FactorPrecision::kF64);

// What "auto" resolves to on this machine ("cuda:0" or "cpu").
std::string default_backend();

// CUDA devices visible to this process (0 when CUDA was not compiled in).
int cuda_device_count();

// One communicator per rank (rank order) among these backends' devices, made together:
// NCCL, when it was compiled in, every backend is CUDA and no two share a device (NCCL
// refuses two ranks on one GPU); one rank gets a communicator of one (the tests'). Otherwise empty: the ranks
// then pool through host memory. NVLink multicast (NVLS) is off unless NCCL_NVLS_ENABLE
// says otherwise: gptq.cpp never asks for it.
std::vector<std::unique_ptr<DeviceComm>> make_device_comms(std::span<Backend* const> ranks);

}  // namespace gptq::backend
