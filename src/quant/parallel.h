// Data-parallel GPTQ: one rank per backend (device), each on its own thread of this
// process (quant/rank_group.h says why threads).
//
// What each rank does, layer by layer (quant/pipeline.cpp, RankRole):
//   - runs its share of the calibration through the layer, accumulating its partial
//     Hessians where its activations are. A share is a contiguous run of the forward
//     chunks one device would make (batch_tokens / batch_samples): a sample's activations
//     depend on the other samples of its chunk in the last bits (the products' kernels
//     depend on the row count), so every rank computes exactly the chunks one device
//     would. Measured (stories15M, 4-bit g32, 7 samples in chunks of 2): 2 ranks with
//     shares cut mid-chunk (3 + 4 samples) agreed with one rank on 76-96% of each
//     module's codes; chunk-aligned shares on every code;
//   - pools them: every rank's H becomes Σ_r (n_r / n) H_r, summed on the host in rank
//     order in fp64, so every rank holds the same H bit for bit;
//   - quantizes the modules of the true-sequential group it owns (quant::assign_owners:
//     the costliest module first, to the least loaded rank), then every rank swaps in
//     every module of the group: its own from its sweep, the others' from their packed
//     tensors, as a reload of the checkpoint builds them;
//   - rank 0 writes the checkpoint, in the single-device run's order.
//
// Output: one rank is exactly quantize_model. With several, the only difference from one
// device is the Hessian's rounding: one device keeps a running mean over its chunks, the
// ranks pool per-share means (fp64 on the CPU, fp32 partials on CUDA). Codes differ only
// where that moves a rounding decision: the tests bound the share of such codes (99%)
// and the loss change (1%). Measured on the CPU: none moved; model.safetensors was
// byte-identical to one rank's with 2 and 3 ranks, with and without act-order. Where a memory cap shrinks one device's chunks the ranks' (smaller) stores
// may not need it, and the chunks then differ too.
//
// Resume: rank 0 records the finished layers (quant/layer_journal.h); a continued run's
// other ranks replay them from that journal (read only), so the ranks resume together.
// The fingerprint holds the rank count and every rank's device: a run continues only
// with the ranks it started with.
//
// Pooling goes device to device over NCCL when every rank is a CUDA backend on its own
// GPU (backend/registry.h make_device_comms), else through host memory.
#pragma once

#include <filesystem>
#include <span>

#include "quant/pipeline.h"

namespace gptq::quant {

// `backends`: one per rank, rank 0 first. Several may share one device; they then split
// its memory (o.max_device_bytes, or what is free at the start) evenly. Callbacks of
// `o` run on rank 0 only; the result is rank 0's (every module's report, in order).
// Throws the first rank's error after every rank stopped; nothing is written then.
QuantizeResult quantize_model_parallel(const std::filesystem::path& model_dir, const CalibSet& calib,
                                       std::span<backend::Backend* const> backends, const PipelineOptions& o);

// The ranks' calibration shares: the chunks chunk_starts makes with o's batch settings,
// chunk c of C to rank r when c is in [r·C/W, (r+1)·C/W). Throws kInvalidArgument when
// there are fewer chunks than ranks.
std::vector<CalibSet> calibration_shares(const CalibSet& calib, int world, const PipelineOptions& o);

}  // namespace gptq::quant
