// What the layer-by-layer pipeline allocates on a device, so that a memory cap is met by
// construction (activations kept off the device, a calibration chunk shrunk to fit) or
// refused up front with the numbers, never discovered as an out-of-memory error halfway
// through a model.
//
// Peak ≈ fixed + rows · per_row + tokens · per_token · stores, with rows the calibration
// tokens of one forward chunk, tokens all calibration tokens and stores the activation
// stores kept in device memory (0, 1 or 2; see plan_activations):
//   fixed     = one layer's dense weights in the activation dtype
//             + the Hessians alive at once (fp32 K² per distinct input of the largest
//               true-sequential group; every input's without true-sequential)
//             + GPTQ's work: the fp32 factor U (4 K² for the largest K) and the
//               QuantOps' scratch, kept at its largest over the modules: max(8 K² (the
//               fp64 factorisation; 4 K² in fp32), 10 N K + 512 N (weights, working
//               weights, codes, block errors, scales and zeros))
//             + a reserve of 192 MiB for the backend's workspaces (cuBLAS 32 MiB, the
//               GPTQ GEMM's dequantization tiles, 64 MiB, held twice while the
//               workspace grows, cuSOLVER's few MiB)
//             + the fp32 upload staging of the calibration's embedding, uploaded in
//               slices of kEmbedSliceRows rows: 3 · rows · hidden · 4 (the backend's
//               staging grows by doubling and keeps the block it outgrew)
//   per_row   = dtype · (4 hidden + 2 q_dim + 4 kv_dim + 2 intermediate): a chunk's rows
//               staged from host memory, the LayerRunner's scratch and its KV rows;
//               + dtype · hidden when a store is streamed: a second staging slot, so
//               the next chunk's transfer overlaps this chunk's pass
//   per_token = dtype · hidden: one store of the residual stream, [tokens, hidden]
//             (+ 4 bytes a token once for the positions, resident in any case)
// The stores: the activations entering the layer, and under true-sequential the
// residual after the layer's (quantized) attention block, which the gate/up, down and
// final passes start from instead of recomputing attention. A store that does not fit
// lives in page-locked host memory, in the same dtype, and passes stream it in chunks.
// The quantized modules swapped in replace dense ones (≤ bits/16 of their size). Not
// counted: the CUDA context, which the driver holds outside any allocation.
#pragma once

#include <cstdint>
#include <string>

#include "backend/quant_ops.h"
#include "core/dtype.h"
#include "format/quant_config.h"
#include "model/config.h"

namespace gptq::quant {

// Rows per host-to-device slice when the calibration tokens are embedded.
inline constexpr int64_t kEmbedSliceRows = 2048;

struct DeviceBudget {
  uint64_t weights = 0;
  uint64_t hessians = 0;
  uint64_t gptq_work = 0;
  uint64_t reserve = uint64_t{192} << 20;
  uint64_t staging = 0;
  uint64_t per_row = 0;
  uint64_t per_token = 0;
  uint64_t fixed() const { return weights + hessians + gptq_work + reserve + staging; }
  std::string describe() const;  // "weights 12 MiB + Hessians 4 MiB + GPTQ work 9 MiB + ..."
};

DeviceBudget device_budget(const model::ModelConfig& c, const QuantizeConfig& q, DType activations,
                           backend::FactorPrecision factor = backend::FactorPrecision::kF64);

// Where an activation store lives.
enum class StoreHome { kDevice, kHost, kNone };

struct ActivationPlan {
  StoreHome activations = StoreHome::kDevice;  // the residual stream entering each layer
  StoreHome residual = StoreHome::kNone;       // after attention; kNone: attention recomputed
  int64_t chunk_rows = 0;                      // most rows of one forward chunk
  uint64_t bytes = 0;                          // the peak the budget formula gives
};

struct ActivationNeeds {
  int64_t tokens = 0;          // all calibration tokens
  int64_t longest = 0;         // the longest sample's (a chunk holds whole samples)
  int64_t wanted_rows = 0;     // the chunk the caller asked for
  bool keep_residual = false;  // true-sequential GPTQ, reuse allowed
  bool device_stores = true;   // false: both stores in host memory whatever fits
};

// The first of (both stores on the device; the activations on the device, the residual
// on the host; both on the host) under which a chunk of min(wanted, max(longest, 2048))
// rows fits in `cap` bytes, with the chunk as large as wanted or as fits: residency
// saves a host round trip per pass, larger chunks than 2048 rows save little. Throws
// kDevice naming the bytes when not even one sample fits with both stores on the host.
ActivationPlan plan_activations(const DeviceBudget& need, uint64_t cap, const ActivationNeeds& a);

}  // namespace gptq::quant
