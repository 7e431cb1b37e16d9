// bitsandbytes-quantized products on the GPU (the definitions are in
// src/backend/cpu/bnb_linear.h; the layout in src/format/bnb_packed.h). Launchers take
// raw device pointers and a stream.
#pragma once

#include "backend/cuda/common.cuh"
#include "format/bnb_config.h"

namespace gptq::backend::cuda {

// Code books by value in each launch (1 KiB of kernel parameters): one copy of the
// constants, the host's (src/format/bnb_codebook.h).
struct BnbTables {
  float code[16];      // NF4 or FP4
  float dynamic[256];  // double-quant map
};

// The device copy of one layer, K = in_features, N = out_features.
//   4-bit: data  uint8 [ceil(N*K/2)]  packed codes, weight 2j in the high nibble of byte j
//          absmax float [blocks] (null with double quant; then nested_codes uint8 [blocks],
//          nested_scales float [ceil(blocks/256)], nested_offset)
//   int8:  data  int8 [N, K] (CB), absmax float [N] (SCB), threshold
struct BnbDeviceLayout {
  quant::bnb::BnbType type = quant::bnb::BnbType::kNf4;
  int64_t K = 0, N = 0, blocksize = 64;
  const uint8_t* data = nullptr;
  const float* absmax = nullptr;
  const uint8_t* nested_codes = nullptr;
  const float* nested_scales = nullptr;
  float nested_offset = 0.0f;
  float threshold = 6.0f;
  const float* bias = nullptr;  // [N] or null
};

inline constexpr int kBnbGemvMaxRows = 8;

// 4-bit, M <= kBnbGemvMaxRows: codes decoded in registers, one warp per output column,
// fp32 accumulation, the bias (and with kAccumulate the old y) added and y rounded to T once.
template <class T>
void bnb4_gemv(const BnbDeviceLayout& w, const BnbTables& t, const T* x, int64_t ldx, T* y, int64_t ldy, int64_t M,
               Epilogue epi, cudaStream_t s);

// 4-bit: rows [n0, n0 + count) of W as a dense [count, K] matrix in T, for cuBLAS.
template <class T>
void bnb4_dequantize(const BnbDeviceLayout& w, const BnbTables& t, int64_t n0, int64_t count, T* out, cudaStream_t s);

// Bytes of workspace int8_linear needs for M rows (outlier flags, int8 activations,
// row scales).
int64_t int8_workspace_bytes(const BnbDeviceLayout& w, int64_t M);

// LLM.int8 for any M: outlier columns of this x, row-wise int8 activations, exact int32
// products (dp4a), the outlier columns in fp32, bias (and with kAccumulate the old y),
// rounded to T once.
template <class T>
void int8_linear(const BnbDeviceLayout& w, const T* x, int64_t ldx, T* y, int64_t ldy, int64_t M, Epilogue epi,
                 void* workspace, cudaStream_t s);

}  // namespace gptq::backend::cuda
