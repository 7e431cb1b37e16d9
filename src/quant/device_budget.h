// What the layer-by-layer pipeline allocates on a device, so that a memory cap is met by
// construction (a calibration chunk shrunk to fit) or refused up front with the numbers,
// never discovered as an out-of-memory error halfway through a model.
//
// Peak ≈ fixed + rows · per_row, with rows the calibration tokens of one forward chunk:
//   fixed   = one layer's dense weights in the activation dtype
//           + the Hessians alive at once (fp32 K² per distinct input of the largest
//             true-sequential group; every input's without true-sequential)
//           + GPTQ's work for the largest module: max(12 K² (the fp64 factorisation and
//             the fp32 factor), 4 K² + 9 N K + 512 N (factor, weights, working weights,
//             codes, block errors))
//   per_row = dtype · (3 hidden + 2 q_dim + 4 kv_dim + 2 intermediate) + 4: the chunk's
//             residual rows, the LayerRunner's scratch, its KV rows and positions.
//           + a reserve of 192 MiB for the backend's workspaces (cuBLAS 32 MiB, the GPTQ
//             GEMM's dequantization tiles, 64 MiB, held twice while the workspace grows,
//             cuSOLVER's few MiB)
// The quantized modules swapped in replace dense ones (≤ bits/16 of their size). Not
// counted: the CUDA context, which the driver holds outside any allocation.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "format/quant_config.h"
#include "model/config.h"

namespace gptq::quant {

struct DeviceBudget {
  uint64_t weights = 0;
  uint64_t hessians = 0;
  uint64_t gptq_work = 0;
  uint64_t reserve = uint64_t{192} << 20;
  uint64_t per_row = 0;
  uint64_t fixed() const { return weights + hessians + gptq_work + reserve; }
  std::string describe() const;  // "weights 12 MiB + Hessians 4 MiB + GPTQ work 9 MiB + ..."
};

DeviceBudget device_budget(const model::ModelConfig& c, const QuantizeConfig& q, DType activations);

}  // namespace gptq::quant
