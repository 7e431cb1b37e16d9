// Quantizing a whole model, layer by layer, as GPTQ does it:
//
//   embed the calibration set → for each decoder layer:
//     load its weights from the mmap (fp32, this layer only)
//     for each true-sequential group [q,k,v] → [o] → [gate,up] → [down]:
//       run the layer over every sample, accumulating H = 2/n Σ x xᵀ for the group's
//       inputs (one H per distinct input: q/k/v share one, gate/up share one), with the
//       earlier groups already quantized; GPTQ each module; swap it in, quantized
//     run the layer once more to produce the next layer's inputs
//   (lm_head last, on the final-normed activations, when asked)
//
// Between passes the calibration activations are kept in the backend's activation dtype
// in one [tokens, hidden] store, on the device when it fits; under true-sequential a
// second store keeps the residual after the layer's quantized attention block, so the
// MLP passes (gate/up, down, the next layer's inputs) do not recompute attention. A
// pass runs in place on a store's rows where it leaves them unchanged or is meant to
// update them; otherwise on a copy.
//
// Peak memory on the CPU ≈ the stores (2 · n_samples · seq_len · hidden · 4 bytes under
// true-sequential, 1 · without) + one layer's weights in fp32 + the largest group's
// Hessian(s) (K² · 8 bytes each) + GPTQ's per-module work (K² · 4 + N · K · 4 bytes);
// on a device, quant/device_budget.h. The output is streamed to disk, never held whole.
#pragma once

#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "backend/device_comm.h"
#include "io/checkpoint_writer.h"
#include "quant/calibration.h"
#include "quant/layer_journal.h"
#include "format/quant_params.h"
#include "format/quant_config.h"

namespace gptq::quant {

struct ModuleReport {
  std::string name;      // "model.layers.0.self_attn.q_proj"
  int64_t layer = -1;    // -1 for lm_head
  bool quantized = true; // false: excluded by a "-:" rule
  int bits = 0;
  int group_size = 0;
  bool desc_act = false;
  double loss = 0.0;     // GPTQ: ½ Σ δ (H + λI) δᵀ = mean over calibration tokens of ‖(W − Q) x‖²
  double damp = 0.0;     // damp_percent that factorised
  int retries = 0;
  double seconds = 0.0;
};

// Where one layer's time went, in seconds of wall clock. Device work is synchronised at
// every phase's end, so each phase is charged for what it enqueued, not for what the
// device still had queued from the phase before. lm_head has layer -1.
struct LayerTimes {
  int64_t layer = -1;
  bool replayed = false;  // from the journal of an interrupted run (one forward pass only)
  int passes = 0;         // calibration forward passes over every chunk
  double seconds = 0.0;   // the whole layer
  double forward = 0.0;   // the passes, less the Hessian accumulation and copies inside them
  double hessian = 0.0;   // H += XᵀX
  double transfer = 0.0;  // activation copies between their store and a forward's rows
  double load = 0.0;      // the layer's dense weights onto the backend
  double convert = 0.0;   // module weights to fp32 for GPTQ
  double factor = 0.0;    // damping and the inverse-Hessian factor, retries included
  double sweep = 0.0;     // the column sweep, with its weight upload and code download
  double quantize = 0.0;  // the rest of GPTQ (checks, diagonal, column order) or RTN
  double pack = 0.0;      // codes, zeros and scales into checkpoint tensors
  double write = 0.0;     // tensors to the writer (and the journal)
  double swap_in = 0.0;   // quantized modules built on the backend for the later passes
  double other() const {
    return seconds - (forward + hessian + transfer + load + convert + factor + sweep + quantize + pack + write + swap_in);
  }
};
// "2.81 s, 5 passes: forward 1.20, hessian 0.30, ..." and its quant_log.json object.
std::string describe(const LayerTimes& t);
nlohmann::ordered_json to_json(const LayerTimes& t);

// Where the time before the first layer went (seconds): checking the calibration and
// planning the stores (with their allocation), embedding the calibration tokens into
// the activation store, making the layer runner and the QuantOps (cuBLAS/cuSOLVER
// handles, workspaces), and handing the embedding table to the writer.
struct StartupTimes {
  double plan = 0.0;
  double embed = 0.0;
  double setup = 0.0;
  double embedding_out = 0.0;
  double total() const { return plan + embed + setup + embedding_out; }
};
std::string describe(const StartupTimes& t);
nlohmann::ordered_json to_json(const StartupTimes& t);

struct QuantizeResult {
  std::vector<ModuleReport> modules;
  StartupTimes startup;
  std::vector<LayerTimes> layers;  // decoder layers in order, then lm_head when quantized
  io::CheckpointSummary checkpoint;
  double seconds = 0.0;
  uint64_t peak_rss = 0;
  int64_t quantized_params = 0;  // weights of quantized modules
  int64_t total_params = 0;
  // Bits per weight of quantized modules (qweight + qzeros + scales + g_idx), and of
  // the whole checkpoint over all parameters.
  double bpw_quantized = 0.0;
  double bpw_total = 0.0;
};

enum class ActivationHome { kAuto, kHost };
enum class AttentionReuse { kAuto, kRecompute };

struct PipelineOptions {
  QuantizeConfig config;
  std::filesystem::path out_dir;
  io::CheckpointWriterOptions writer;
  std::string version = GPTQ_VERSION;  // written as meta.quantizer "gptq.cpp:VERSION"
  // Calibration rows per forward: whole samples are packed into chunks of at most this
  // many tokens (a longer sample gets a chunk of its own), so each linear is one product
  // of that many rows. Bounds the activation scratch: chunk · (3·hidden + 2·(q + kv) +
  // 2·intermediate) activation elements.
  int64_t batch_tokens = 4096;
  // Samples per forward chunk instead (0: batch_tokens decides).
  int64_t batch_samples = 0;
  // Device memory the run may allocate, on a device backend (0: what is free at the
  // start). A chunk larger than what fits is shrunk, with a note; a layer that does not
  // fit at all is refused before any work (quant/device_budget.h has the formula).
  uint64_t max_device_bytes = 0;
  // Where the calibration activations are kept between passes. kAuto: in device memory
  // when the budget allows (quant/device_budget.h), else streamed through page-locked
  // host memory in the activation dtype; kHost: streamed whatever fits (the CPU backend
  // then runs every pass through a chunk copy, the path a small device takes).
  ActivationHome activations = ActivationHome::kAuto;
  // Under true-sequential, whether the gate/up, down and final passes start from the
  // residual after the (quantized) attention block, kept from the first of them
  // (kAuto, memory allowing; the same operations on the same inputs, so the same
  // values), or recompute attention each time (kRecompute).
  AttentionReuse attention_reuse = AttentionReuse::kAuto;
  std::function<void(const std::string&)> on_note;
  // Where finished layers are kept until the output is committed (empty: nowhere), and
  // whether to continue from the layers already there (quant/layer_journal.h). A
  // continued run writes the checkpoint an uninterrupted one would, byte for byte.
  std::filesystem::path journal_dir;
  LayerJournal::Mode journal_mode = LayerJournal::Mode::kFresh;
  std::function<void(const ModuleReport&)> on_module;
  // Each quantized module's result, before packing (tests rebuild the in-memory model).
  std::function<void(const std::string&, const QuantizedLinear&)> on_quantized;
  // (layers done, layers total, seconds so far)
  std::function<void(int64_t, int64_t, double)> on_layer;
  // Each layer's phase times, as it finishes (before on_layer).
  std::function<void(const LayerTimes&)> on_layer_times;
  // The start-up's phase times, before the first layer begins.
  std::function<void(const StartupTimes&)> on_startup;
};

// `model_dir`: a Hugging Face checkpoint directory or a .gguf file (its config and
// tokenizer files are then written from the GGUF metadata, as `gptq convert` writes them).
// `calib` may be empty for Method::kRtn. Throws gptq::Error; on any error the output
// directory is left untouched (nothing half-written).
QuantizeResult quantize_model(const std::filesystem::path& model_dir, const CalibSet& calib, backend::Backend& b,
                              const PipelineOptions& o);

// The forward chunks of whole samples of these lengths: chunk c holds samples
// [starts[c], starts[c + 1]); a chunk is closed before a sample that would take it past
// max_rows tokens or max_samples samples (a longer sample gets a chunk of its own).
std::vector<std::size_t> chunk_starts(std::span<const int64_t> lengths, int64_t max_rows, int64_t max_samples);

class RankGroup;

// One rank of a data-parallel quantization, for quant/parallel.h's driver only: `share`
// holds this rank's calibration samples, `whole` all of them (the journal's fingerprint);
// `comm`, when the ranks have one, pools the Hessians device to device.
// Rank 0 writes the checkpoint and returns the run's result; the others write nothing.
struct RankRole {
  RankGroup* group = nullptr;
  int rank = 0;
  const CalibSet* whole = nullptr;
  backend::DeviceComm* comm = nullptr;  // pools the Hessians device to device when set
};
QuantizeResult quantize_model_rank(const std::filesystem::path& model_dir, const CalibSet& share, backend::Backend& b,
                                   const PipelineOptions& o, const RankRole& role);

// Checks every module's settings against its shape (K fits the packing) before any work
// starts; throws kInvalidArgument naming the module. A group size that does not divide K
// is fine: G = ceil(K / group_size), the last group partial, as GPTQModel stores it.
void check_quantizable(const std::filesystem::path& model_dir, const QuantizeConfig& config);

}  // namespace gptq::quant
