#include "quant/pipeline.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <map>

#include "core/cpu_threads.h"
#include "core/error.h"
#include "core/memory.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "backend/registry.h"
#include "model/config.h"
#include "model/gptq_loader.h"
#include "model/layer.h"
#include "model/side_files.h"
#include "quant/device_budget.h"
#include "quant/gptq.h"
#include "quant/rank_group.h"
#include "format/packing.h"
#include "quant/rtn.h"

namespace gptq::quant {

namespace fs = std::filesystem;
using model::Slot;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The slot whose observed input feeds `s`: q/k/v read one input, gate/up another.
Slot input_source(Slot s) {
  switch (s) {
    case Slot::kQ: case Slot::kK: case Slot::kV: return Slot::kQ;
    case Slot::kGate: case Slot::kUp: return Slot::kGate;
    default: return s;
  }
}

// True-sequential groups: each later group is calibrated on inputs produced with the
// earlier groups already quantized. Without it, one group sees the original weights.
std::vector<std::vector<Slot>> slot_groups(bool true_sequential) {
  if (!true_sequential) return {{model::kAllSlots.begin(), model::kAllSlots.end()}};
  return {{Slot::kQ, Slot::kK, Slot::kV}, {Slot::kO}, {Slot::kGate, Slot::kUp}, {Slot::kDown}};
}

// Accumulates one Hessian per distinct input among the slots it was built for, where
// the activations are (the backend's QuantOps): nothing is copied to the host.
class HessianObserver final : public model::LinearObserver {
 public:
  // `seconds` gathers the accumulation time (the device synchronised around each).
  HessianObserver(backend::Backend& b, backend::QuantOps& ops, const model::ModelConfig& c,
                  const std::vector<Slot>& slots, double* seconds)
      : b_(b), ops_(ops), seconds_(seconds) {
    for (Slot s : slots) {
      const Slot src = input_source(s);
      if (!hessians_.count(src)) hessians_.emplace(src, ops.hessian(model::slot_shape(c, s).second));
    }
  }
  void observe(int64_t, Slot slot, backend::Tensor x) override {
    const auto it = hessians_.find(slot);
    if (it == hessians_.end()) return;  // a slot that shares its source reports the same x
    b_.synchronize();  // the forward so far is the forward's time
    const auto t0 = Clock::now();
    ops_.accumulate(*it->second, x);
    b_.synchronize();
    *seconds_ += since(t0);
  }
  const backend::Hessian& hessian(Slot s) const { return *hessians_.at(input_source(s)); }
  // Each distinct Hessian once, in slot order (the same order on every rank).
  std::vector<backend::Hessian*> distinct() const {
    std::vector<backend::Hessian*> out;
    for (const auto& [slot, h] : hessians_) out.push_back(h.get());
    return out;
  }

 private:
  backend::Backend& b_;
  backend::QuantOps& ops_;
  double* seconds_;
  std::map<Slot, std::unique_ptr<backend::Hessian>> hessians_;
};

// v1 cannot hold an asymmetric zero of 0 for other readers (see QuantizerConfig::min_zero).
QuantizerConfig quantizer_config(const QuantizeConfig& c, const ModuleSettings& s) {
  return {.bits = s.bits,
          .sym = s.sym,
          .scale_search = c.mse ? ScaleSearch::kMse : ScaleSearch::kMinMax,
          .min_zero = c.format == Format::kV1 && !s.sym ? 1 : 0};
}

GptqOptions gptq_options(const QuantizeConfig& c, const ModuleSettings& s, const std::string& name) {
  GptqOptions o;
  o.quant = quantizer_config(c, s);
  o.group_size = s.group_size;
  // GPTQModel switches GAR off when desc_act is on: the two orders exclude each other.
  o.act_order = s.desc_act ? ActOrder::kDescAct : c.act_group_aware ? ActOrder::kGroupAware : ActOrder::kNone;
  o.static_groups = c.static_groups;
  o.damp_percent = c.damp_percent;
  o.damp_auto_increment = c.damp_auto_increment;
  o.module_name = name;
  return o;
}

std::span<const std::byte> bytes_of(const auto& v) { return std::as_bytes(std::span(v)); }

// A module's line of quant_log.json (and of the layer journal).
nlohmann::ordered_json report_json(const ModuleReport& m) {
  return {{"module", m.name},     {"quantized", m.quantized}, {"bits", m.bits},        {"group_size", m.group_size},
          {"desc_act", m.desc_act}, {"loss", m.loss},           {"damp_percent", m.damp}, {"retries", m.retries},
          {"seconds", m.seconds}};
}

ModuleReport module_report_from_json(const nlohmann::ordered_json& j, const std::string& what) {
  return {.name = io::json_get<std::string>(j, "module", what),
          .layer = io::json_get<int64_t>(j, "layer", what),
          .quantized = io::json_get<bool>(j, "quantized", what),
          .bits = io::json_get<int>(j, "bits", what),
          .group_size = io::json_get<int>(j, "group_size", what),
          .desc_act = io::json_get<bool>(j, "desc_act", what),
          .loss = io::json_get<double>(j, "loss", what),
          .damp = io::json_get<double>(j, "damp_percent", what),
          .retries = io::json_get<int>(j, "retries", what),
          .seconds = io::json_get<double>(j, "seconds", what)};
}

// A quantized module as every rank sees it: its report line and the checkpoint's tensors.
struct QuantizedModule {
  ModuleReport report;
  PackedLinear packed;
};

// Everything one run needs, so the steps below stay short.
class Run {
 public:
  Run(const fs::path& dir, const CalibSet& calib, backend::Backend& b, const PipelineOptions& o, const RankRole& role)
      : dir_(dir), calib_(calib), b_(b), o_(o), role_(role), c_(model::load_config(dir)), ckpt_(dir),
        start_(Clock::now()) {
    if (leader()) writer_.emplace(o.out_dir, o.writer);
  }

  QuantizeResult go();

 private:
  int world() const { return role_.group != nullptr ? role_.group->world() : 1; }
  bool leader() const { return role_.rank == 0; }
  const CalibSet& whole() const { return role_.whole != nullptr ? *role_.whole : calib_; }
  // Every rank's Hessians become their pool over all ranks' rows (a no-op for one rank).
  void pool(const std::vector<backend::Hessian*>& hessians);
  // A [tokens, hidden] activation store; `resident`: in memory the backend's ops read
  // (device memory, or any memory on the CPU), so a pass may run on its rows in place.
  struct Store {
    backend::Buffer rows;
    bool resident = false;
    bool empty() const { return rows.empty(); }
    backend::Tensor chunk(int64_t first, int64_t count) const { return rows.view().row_slice(first, count); }
  };

  void measure_calibration();
  void plan_chunks();
  void allocate(StoreHome activations, StoreHome residual);
  void embed_calibration();
  // One pass of L over every chunk: rows from `from`, beginning at `start`, ending once
  // `stop_after`'s input was observed (nullopt: the whole layer); the rows as the pass
  // leaves them go to `into` (null: nowhere, and `from` is left as it was).
  void run_samples(model::DecoderLayer& L, model::LinearObserver* obs, Store& from, Store* into, model::Block start,
                   std::optional<Slot> stop_after);
  void quantize_layer(int64_t i);
  // Quantizes one module. `dense`: the layer's linear the calibration passes ran (null
  // for RTN and the head); then *made receives the quantized linear to swap in for it.
  std::shared_ptr<const QuantizedModule> quantize_module(const std::string& name, int64_t layer,
                                                         const ModuleSettings& s, int64_t out, int64_t in,
                                                         const std::string& weight_name, const backend::Hessian* h,
                                                         backend::Linear* dense, std::unique_ptr<backend::Linear>* made);
  // A quantized module (made on this rank or another) to the output and the report, and
  // into *swap_in when not null: `made` when this rank made it, else built from the
  // packed tensors as a reload of the checkpoint builds it.
  void publish(std::shared_ptr<const QuantizedModule> m, std::unique_ptr<backend::Linear> made,
               std::unique_ptr<backend::Linear>* swap_in);
  // The modules of one group: alone, each quantized and published in turn; with several
  // ranks, each quantized on its owning rank, then all published on every rank in the
  // group's order.
  void quantize_group(int64_t layer, const std::vector<Slot>& todo, const HessianObserver* obs, model::DecoderLayer* L);
  void quantize_lm_head();
  // Every output tensor goes through here: to the output, and to the journal while a
  // layer is being recorded.
  void emit(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::span<const std::byte> data,
            io::CheckpointWriter::Lifetime lifetime = io::CheckpointWriter::Lifetime::kCopied) {
    if (writer_) writer_->add_tensor(name, dtype, shape, data, lifetime);
    if (recording_) journal_->add(name, dtype, shape, data);
  }
  // Bytes that `owner` keeps: written without a copy (a quantized module's tensors).
  void emit(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::span<const std::byte> data,
            const std::shared_ptr<const void>& owner) {
    if (writer_) writer_->add_tensor(name, dtype, shape, data, owner);
    if (recording_) journal_->add(name, dtype, shape, data, owner);
  }
  // A source tensor as it is: written straight from the memory map, which outlives the
  // writer (ckpt_ is declared before writer_), not copied first (the 8B shape's embedding
  // and head: 1 GB each, ~0.9 s of copying).
  void copy_raw(const std::string& name) {
    const auto& t = ckpt_.get(name);
    emit(name, t.dtype, t.shape, t.data, io::CheckpointWriter::Lifetime::kCallerKeeps);
  }
  nlohmann::ordered_json fingerprint() const;
  void replay_layer(int64_t i);
  void write_metadata(QuantizeResult& r);
  void report(ModuleReport m) {
    if (o_.on_module) o_.on_module(m);
    result_.modules.push_back(std::move(m));
  }
  // Runs f as a phase of the current layer: what the device had queued before is waited
  // for first (it belongs to the phase that queued it), f's own work at the end.
  template <class F>
  void timed(double LayerTimes::*phase, F&& f) {
    b_.synchronize();
    const auto t0 = Clock::now();
    f();
    b_.synchronize();
    times_.*phase += since(t0);
  }
  void begin_times(int64_t layer) {
    times_ = {.layer = layer};
    layer_start_ = Clock::now();
  }
  void end_times() {
    b_.synchronize();
    times_.seconds = since(layer_start_);
    if (o_.on_layer_times) o_.on_layer_times(times_);
    result_.layers.push_back(times_);
  }

  fs::path dir_;
  const CalibSet& calib_;
  backend::Backend& b_;
  const PipelineOptions& o_;
  RankRole role_;
  model::ModelConfig c_;
  io::Checkpoint ckpt_;
  std::optional<io::CheckpointWriter> writer_;  // rank 0's only
  std::vector<std::string> rank_devices_;       // every rank's backend, with several ranks
  Clock::time_point start_;
  QuantizeResult result_;
  bool gptq_ = true;
  // Calibration activations: sample s occupies rows [offsets_[s], offsets_[s + 1]) of
  // each store. acts_: the residual stream entering the layer; mid_: the current layer's
  // residual after its attention block (empty when not kept), valid once mid_ready_.
  Store acts_, mid_;
  bool mid_ready_ = false;
  std::vector<int64_t> offsets_;
  int64_t max_len_ = 0;
  // Forward chunks: chunk c holds samples [chunks_[c], chunks_[c + 1]).
  std::vector<std::size_t> chunks_;
  int64_t chunk_rows_ = 0;  // rows of the largest chunk
  std::unique_ptr<model::LayerRunner> runner_;
  std::unique_ptr<backend::QuantOps> ops_;  // GPTQ's compute, on b_
  FactorCache factors_;  // the last factor, shared by the modules of a group that read one H
  backend::FactorPrecision factor_ = backend::FactorPrecision::kF64;  // fp32 when the memory cap needs it
  backend::Buffer scratch_;    // [chunk_rows, hidden]: a pass's rows when not in place
  backend::Buffer scratch_next_;  // the same, a second slot for streamed stores (run_samples)
  backend::Buffer positions_;  // I32 [1, total tokens]: each row's position in its sample
  backend::KvLayer kv_;        // [chunk_rows, kv_heads * head_dim]: sample s of a chunk at its rows
  int64_t quantized_bits_ = 0;
  std::optional<LayerJournal> journal_;
  bool recording_ = false;
  LayerTimes times_;  // the layer being quantized
  // The module being quantized, fp32 [out, in] in its first out · in elements, in the
  // backend's host staging memory (page-locked on CUDA: the sweep's upload is one fast
  // transfer). Kept across modules and grown as needed: a fresh buffer of a large
  // module costs a page fault per 4 KiB on first touch.
  backend::Buffer w_;
  Clock::time_point layer_start_;
};

void Run::measure_calibration() {
  offsets_ = {0};
  for (const auto& s : calib_.samples) {
    offsets_.push_back(offsets_.back() + int64_t(s.size()));
    max_len_ = std::max<int64_t>(max_len_, int64_t(s.size()));
    for (int32_t id : s) {
      if (id < 0 || id >= c_.vocab) throw Error(ErrorKind::kInvalidArgument, "calibration token id out of range");
    }
  }
  if (max_len_ > c_.max_positions) {
    throw Error(ErrorKind::kInvalidArgument, "calibration samples of " + std::to_string(max_len_) +
                                                 " tokens exceed the model's context of " + std::to_string(c_.max_positions));
  }
}

void Run::allocate(StoreHome activations, StoreHome residual) {
  const int64_t tokens = offsets_.back();
  auto store = [&](StoreHome home) {
    if (home == StoreHome::kNone) return Store{};
    const bool device = home == StoreHome::kDevice;
    return Store{.rows = device ? b_.alloc(tokens, c_.hidden) : b_.alloc_host(tokens, c_.hidden, b_.activation_dtype()),
                 .resident = device};
  };
  acts_ = store(activations);
  mid_ = store(residual);
  scratch_ = b_.alloc(chunk_rows_, c_.hidden);
  if (activations == StoreHome::kHost || residual == StoreHome::kHost) scratch_next_ = b_.alloc(chunk_rows_, c_.hidden);
  kv_ = {b_.alloc(chunk_rows_, c_.kv_heads * c_.head_dim), b_.alloc(chunk_rows_, c_.kv_heads * c_.head_dim)};
  std::vector<int32_t> pos;
  pos.reserve(std::size_t(tokens));
  for (std::size_t s = 0; s + 1 < offsets_.size(); ++s) {
    for (int64_t t = 0; t < offsets_[s + 1] - offsets_[s]; ++t) pos.push_back(int32_t(t));
  }
  positions_ = b_.alloc(1, tokens, DType::kI32);
  b_.upload(pos, positions_.view());
}

// Slice by slice of at most kEmbedSliceRows rows, so that the host holds one slice of fp32
// rows, not the whole set, and the device's fp32 upload staging stays that size too
// (DeviceBudget::staging; uploading whole forward chunks made it chunk-sized: 550 MiB
// over a 15 GB cap's plan at 70k-token chunks, measured). The rows are widened in
// parallel into page-locked host memory (one fast transfer per slice) and converted to
// the activation dtype on the device.
void Run::embed_calibration() {
  const auto& emb = ckpt_.get("model.embed_tokens.weight");
  if (emb.shape != std::vector<int64_t>{c_.vocab, c_.hidden}) {
    throw Error(ErrorKind::kFormat, dir_.string() + ": model.embed_tokens.weight has shape " + emb.shape_string());
  }
  const std::size_t row_bytes = std::size_t(c_.hidden) * dtype_size(emb.dtype);
  const int64_t tokens = offsets_.back(), slice = std::min(kEmbedSliceRows, chunk_rows_);
  const backend::Buffer host = b_.alloc_host(slice, c_.hidden, DType::kF32);
  std::vector<int32_t> all;
  all.reserve(std::size_t(tokens));
  for (const auto& s : calib_.samples) all.insert(all.end(), s.begin(), s.end());
  for (int64_t first = 0; first < tokens; first += slice) {
    const int64_t rows = std::min(slice, tokens - first);
    const std::span<const int32_t> ids(all.data() + first, std::size_t(rows));
    b_.synchronize();  // the previous slice's transfer has left `host`
    float* out = host.view().as<float>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      io::TensorView row = emb;
      row.shape = {c_.hidden};
      row.data = emb.data.subspan(std::size_t(ids[std::size_t(r)]) * row_bytes, row_bytes);
      io::to_f32(row, out + r * c_.hidden);
    }
    const std::span<const float> chunk(out, std::size_t(rows * c_.hidden));
    const backend::Tensor dst = acts_.chunk(first, rows);
    if (acts_.resident) {
      b_.upload(chunk, dst);
    } else {
      b_.upload(chunk, scratch_.rows(rows));  // converted to the activation dtype there
      b_.copy(scratch_.rows(rows), dst);
    }
  }
  b_.synchronize();  // `host` goes
}

void Run::plan_chunks() {
  const bool by_samples = o_.batch_samples > 0;
  int64_t max_rows = by_samples ? std::numeric_limits<int64_t>::max() : o_.batch_tokens;
  const int64_t max_samples = by_samples ? o_.batch_samples : std::numeric_limits<int64_t>::max();
  const bool keep_residual = o_.config.true_sequential && o_.attention_reuse == AttentionReuse::kAuto;
  const bool device_stores = o_.activations == ActivationHome::kAuto;
  StoreHome acts = device_stores ? StoreHome::kDevice : StoreHome::kHost;
  StoreHome residual = keep_residual ? acts : StoreHome::kNone;
  if (b_.device() != backend::Device::kCpu) {
    const backend::MemoryStats m = b_.memory();
    const uint64_t cap = o_.max_device_bytes > 0 ? o_.max_device_bytes : m.device_total - m.device_used;
    // A sample longer than the chunk gets a chunk of its own.
    const int64_t wanted = std::max(max_len_, by_samples ? o_.batch_samples * max_len_ : o_.batch_tokens);
    const ActivationNeeds needs{.tokens = offsets_.back(), .longest = max_len_, .wanted_rows = wanted,
                                .keep_residual = keep_residual, .device_stores = device_stores};
    // The fp64 factor first; where its K² work matrix is what does not fit, the fp32 one
    // (half the bytes; the loss it gives differs by ~5e-4 relative, bench_cuda_factor).
    DeviceBudget need = device_budget(c_, o_.config, b_.activation_dtype());
    ActivationPlan plan;
    std::string why;
    try {
      plan = plan_activations(need, cap, needs);
    } catch (const Error& e) {
      const DeviceBudget f32 = device_budget(c_, o_.config, b_.activation_dtype(), backend::FactorPrecision::kF32);
      try {
        plan = plan_activations(f32, cap, needs);
      } catch (const Error&) {
        throw Error(e.kind(), b_.name() + ": " + e.what());
      }
      need = f32;
      factor_ = backend::FactorPrecision::kF32;
      why = "the inverse-Hessian factor computed in fp32 (the fp64 one's work matrix does not fit)";
    }
    acts = plan.activations;
    residual = plan.residual;
    if (plan.chunk_rows < wanted) {
      why += std::string(why.empty() ? "" : "; ") + "a forward chunk of " +
            (by_samples ? std::to_string(o_.batch_samples) + " samples" : std::to_string(o_.batch_tokens) + " tokens") +
            " does not fit: chunks of at most " + std::to_string(plan.chunk_rows) + " tokens instead";
      max_rows = plan.chunk_rows;
    }
    if (device_stores && (acts == StoreHome::kHost || residual == StoreHome::kHost)) {
      why += std::string(why.empty() ? "" : "; ") + "the calibration activations" +
             (acts == StoreHome::kHost ? "" : "' residual after attention") +
             " streamed from page-locked host memory";
    }
    if (!why.empty() && o_.on_note) {
      o_.on_note(why + " (" + std::to_string(cap >> 20) + " MiB of device memory; " + need.describe() + ")");
    }
  }
  std::vector<int64_t> lengths;
  for (std::size_t s = 0; s + 1 < offsets_.size(); ++s) lengths.push_back(offsets_[s + 1] - offsets_[s]);
  chunks_ = chunk_starts(lengths, max_rows, max_samples);
  for (std::size_t c = 0; c + 1 < chunks_.size(); ++c) {
    chunk_rows_ = std::max(chunk_rows_, offsets_[chunks_[c + 1]] - offsets_[chunks_[c]]);
  }
  allocate(acts, residual);
}

void Run::run_samples(model::DecoderLayer& L, model::LinearObserver* obs, Store& from, Store* into,
                      model::Block start, std::optional<Slot> stop_after) {
  // Whether the pass changes its rows: the o_proj and down_proj products add to them.
  const bool writes = !stop_after || (start == model::Block::kAttention && *stop_after >= Slot::kGate);
  b_.synchronize();
  const auto t0 = Clock::now();
  const double nested = times_.hessian + times_.transfer;
  const std::size_t n = chunks_.size() - 1;
  auto first = [&](std::size_t c) { return offsets_[chunks_[c]]; };
  auto count = [&](std::size_t c) { return offsets_[chunks_[c + 1]] - offsets_[chunks_[c]]; };
  // Chunk c's staging slot: two when a store is streamed, so that chunk c + 1's rows
  // arrive while chunk c's pass runs and chunk c - 1's rows leave.
  auto slot = [&](std::size_t c) { return c % 2 == 1 && !scratch_next_.empty() ? 1 : 0; };
  const bool in_place = from.resident && (!writes || into == &from);
  const bool in_slot = !in_place && !(into != nullptr && into->resident);
  // Where chunk c is computed: in place, in `into`'s device chunk, or in its slot.
  auto home = [&](std::size_t c) {
    if (in_place) return from.chunk(first(c), count(c));
    if (!in_slot) return into->chunk(first(c), count(c));
    return (slot(c) == 0 ? scratch_ : scratch_next_).rows(count(c));
  };
  // Host rows travel beside the ops (backend.h copy_beside). Chunk c + 1's rows are asked
  // for before chunk c's pass is queued, so they wait only for chunk c - 1's pass (the
  // slot's last user) and, earlier in the queue beside, for chunk c - 1's rows leaving.
  std::vector<backend::Backend::CopyTicket> arrived(n), left;
  std::optional<backend::Backend::CopyTicket> slot_left[2];  // each slot's last copy out
  auto fetch = [&](std::size_t c) {
    if (!from.resident) arrived[c] = b_.copy_beside(from.chunk(first(c), count(c)), home(c));
  };
  std::vector<model::Sequence> seqs;
  if (n > 0) fetch(0);
  for (std::size_t c = 0; c < n; ++c) {
    const int64_t base = first(c), rows = count(c);
    const backend::Tensor h = home(c);
    if (c + 1 < n) fetch(c + 1);
    if (!from.resident) {
      b_.join(arrived[c]);
    } else if (!in_place) {
      // The ops fill the slot: chunk c - 2's rows must have left it.
      if (in_slot && slot_left[slot(c)]) b_.join(*slot_left[slot(c)]);
      b_.copy(from.chunk(base, rows), h);  // device to device, in order with the ops
    }
    seqs.clear();
    for (std::size_t s = chunks_[c]; s < chunks_[c + 1]; ++s) {
      const int64_t r = offsets_[s] - base, len = offsets_[s + 1] - offsets_[s];
      seqs.push_back({.first_row = r, .rows = len,
                      .cache = {kv_.k.view().row_slice(r, len), kv_.v.view().row_slice(r, len)}});
    }
    runner_->forward(L, h, positions_.view().col_slice(base, rows), seqs, obs, stop_after, start);
    if (into == nullptr) continue;
    const backend::Tensor dst = into->chunk(base, rows);
    if (dst.data == h.data) continue;
    if (into->resident) {
      b_.copy(h, dst);
    } else {
      left.push_back(b_.copy_beside(h, dst));
      if (in_slot) slot_left[slot(c)] = left.back();
    }
  }
  // The stores are complete before anything reads them again.
  for (backend::Backend::CopyTicket t : left) b_.join(t);
  b_.synchronize();
  times_.forward += since(t0) - (times_.hessian + times_.transfer - nested);
  ++times_.passes;
}

std::shared_ptr<const QuantizedModule> Run::quantize_module(const std::string& name, int64_t layer,
                                                            const ModuleSettings& s, int64_t out, int64_t in,
                                                            const std::string& weight_name, const backend::Hessian* h,
                                                            backend::Linear* dense,
                                                            std::unique_ptr<backend::Linear>* made) {
  auto done = std::make_shared<QuantizedModule>();
  ModuleReport& m = done->report;
  m = {.name = name, .layer = layer, .bits = s.bits, .group_size = s.group_size, .desc_act = s.desc_act};
  const auto t0 = Clock::now();
  const io::TensorView& t = io::expect_shape(ckpt_.get(weight_name), {out, in}, dir_.string());
  // GPTQ reads the weights where the calibration passes already hold them when the
  // backend keeps them with the checkpoint's values (its dense layer in the same dtype):
  // no conversion on the host and no upload. Otherwise fp32 on the host.
  std::optional<backend::Tensor> resident;
  if (gptq_ && dense != nullptr) {
    resident = b_.dense_weight(*dense);
    if (resident && resident->dtype != t.dtype) resident.reset();
  }
  if (!resident) {
    timed(&LayerTimes::convert, [&] {
      if (w_.empty() || w_.view().cols < out * in) w_ = b_.alloc_host(1, out * in, DType::kF32);
      io::to_f32(t, w_.view().as<float>());
    });
  }
  const float* W = resident ? nullptr : w_.view().as<float>();
  // GPTQ's result stays where the sweep made it and is packed there (on CUDA only the
  // packed tensors come back); the unpacked form reaches the host only for on_quantized.
  PackedLinear& saved = done->packed;
  std::unique_ptr<backend::SweepResult> r;
  if (gptq_) {
    GptqStats st;
    const auto tq = Clock::now();
    const backend::SweepWeights sw = resident ? backend::SweepWeights{.resident = *resident} : backend::SweepWeights{.host = W};
    r = gptq_quantize_resident(*ops_, sw, out, in, *h, gptq_options(o_.config, s, name), &st, &factors_);
    m.loss = st.loss;
    m.damp = st.damp_percent;
    m.retries = st.retries;
    times_.factor += st.factor_seconds;
    times_.sweep += st.sweep_seconds;
    times_.quantize += since(tq) - st.factor_seconds - st.sweep_seconds;
    if (o_.on_quantized) {
      QuantizedLinear q;
      timed(&LayerTimes::quantize, [&] { ops_->download(*r, q); });
      o_.on_quantized(name, q);
    }
    timed(&LayerTimes::pack, [&] { saved = ops_->pack(*r, o_.config.format); });
  } else {
    QuantizedLinear q;
    timed(&LayerTimes::quantize, [&] {
      q = rtn_quantize(W, out, in, {.quant = quantizer_config(o_.config, s), .group_size = s.group_size});
    });
    if (o_.on_quantized) o_.on_quantized(name, q);
    timed(&LayerTimes::pack, [&] { saved = pack(q, o_.config.format); });
  }
  if (made != nullptr) {
    // The in-memory model runs exactly what a reload of the checkpoint runs: the tensors
    // just written, with v2 zeros as the loader converts v1 ones, bias included (GPTQ
    // quantizes the weight only). Built from the sweep's result where it is (on CUDA,
    // without a host round trip).
    std::vector<float> bias;
    if (ckpt_.find(name + ".bias") != nullptr) bias = model::load_vector(ckpt_, name + ".bias", out);
    timed(&LayerTimes::swap_in, [&] { *made = ops_->swap_in(b_, *r, std::move(bias)); });
  }
  m.seconds = since(t0);
  return done;
}

void Run::publish(std::shared_ptr<const QuantizedModule> module, std::unique_ptr<backend::Linear> made,
                  std::unique_ptr<backend::Linear>* swap_in) {
  const auto t0 = Clock::now();
  const QuantizedModule& q = *module;
  const std::string& name = q.report.name;
  const PackedLinear& saved = q.packed;
  timed(&LayerTimes::write, [&] {
    // The packed tensors go to the writers as they are: the module stays alive until written.
    const std::shared_ptr<const void> owner = module;
    emit(name + ".qweight", DType::kI32, {saved.qweight_shape[0], saved.qweight_shape[1]}, bytes_of(saved.qweight),
         owner);
    emit(name + ".qzeros", DType::kI32, {saved.qzeros_shape[0], saved.qzeros_shape[1]}, bytes_of(saved.qzeros), owner);
    emit(name + ".scales", DType::kF16, {saved.scales_shape[0], saved.scales_shape[1]}, bytes_of(saved.scales), owner);
    emit(name + ".g_idx", DType::kI32, {saved.in_features}, bytes_of(saved.g_idx), owner);
    if (ckpt_.find(name + ".bias") != nullptr) copy_raw(name + ".bias");
  });
  quantized_bits_ += int64_t(saved.qweight.size() * 32 + saved.qzeros.size() * 32 + saved.scales.size() * 16 +
                             saved.g_idx.size() * 32);
  result_.quantized_params += saved.out_features * saved.in_features;
  if (swap_in != nullptr) {
    if (made) {
      *swap_in = std::move(made);
    } else {
      // Another rank's module, as model::read_packed gives it from the checkpoint.
      timed(&LayerTimes::swap_in, [&] {
        PackedLinear p = saved;
        if (ckpt_.find(name + ".bias") != nullptr) p.bias = model::load_vector(ckpt_, name + ".bias", p.out_features);
        if (o_.config.format == Format::kV1) convert_v1_zeros_to_v2(p);
        *swap_in = b_.gptq_linear(std::move(p));
      });
    }
  }
  ModuleReport r = q.report;
  r.seconds += since(t0);
  report(std::move(r));
}

void Run::quantize_group(int64_t layer, const std::vector<Slot>& todo, const HessianObserver* obs,
                         model::DecoderLayer* L) {
  std::vector<int64_t> cost;
  for (Slot s : todo) {
    const auto [out, in] = model::slot_shape(c_, s);
    cost.push_back(out * in);
  }
  const std::vector<int> owner = assign_owners(cost, world());
  std::vector<std::shared_ptr<const QuantizedModule>> mine(todo.size());
  std::vector<std::unique_ptr<backend::Linear>> made(todo.size());
  for (std::size_t k = 0; k < todo.size(); ++k) {
    if (owner[k] != role_.rank) continue;
    const Slot s = todo[k];
    const std::string name = model::module_name(layer, s);
    const auto [out, in] = model::slot_shape(c_, s);
    backend::Linear* dense = L != nullptr ? L->linears[std::size_t(s)].get() : nullptr;
    mine[k] = quantize_module(name, layer, *o_.config.resolve(name), out, in, name + ".weight",
                              obs != nullptr ? &obs->hessian(s) : nullptr, dense, L != nullptr ? &made[k] : nullptr);
    // Alone, each module goes out (and its dense layer is freed) before the next is made.
    if (world() == 1) publish(mine[k], std::move(made[k]), L != nullptr ? &L->linears[std::size_t(s)] : nullptr);
  }
  if (world() == 1) return;
  // Every rank's list, then module k from its owner's.
  using List = std::vector<std::shared_ptr<const QuantizedModule>>;
  const auto lists = role_.group->gather<List>(role_.rank, std::make_shared<const List>(mine));
  std::vector<std::shared_ptr<const QuantizedModule>> all(todo.size());
  for (std::size_t k = 0; k < todo.size(); ++k) all[k] = (*lists[std::size_t(owner[k])])[k];
  for (std::size_t k = 0; k < todo.size(); ++k) {
    publish(all[k], std::move(made[k]), L != nullptr ? &L->linears[std::size_t(todo[k])] : nullptr);
  }
}

void Run::quantize_layer(int64_t i) {
  begin_times(i);
  if (journal_ && i < journal_->layers_done()) {
    replay_layer(i);
    times_.replayed = true;
    return end_times();
  }
  const std::size_t first_report = result_.modules.size();
  const int64_t bits_before = quantized_bits_, params_before = result_.quantized_params;
  if (journal_ && leader()) {
    journal_->begin(i);
    recording_ = true;
  }
  const std::string p = "model.layers." + std::to_string(i) + ".";
  timed(&LayerTimes::write, [&] {
    for (const char* norm : {"input_layernorm.weight", "post_attention_layernorm.weight"}) copy_raw(p + norm);
    if (c_.qk_norm) {
      copy_raw(p + "self_attn.q_norm.weight");
      copy_raw(p + "self_attn.k_norm.weight");
    }
  });
  std::optional<model::DecoderLayer> L;
  if (gptq_) {
    timed(&LayerTimes::load, [&] {
      model::DenseLoader dense(b_);
      L = model::load_layer(ckpt_, c_, i, dense, b_);
    });
  }
  mid_ready_ = false;
  for (const auto& group : slot_groups(o_.config.true_sequential)) {
    std::vector<Slot> todo;
    for (Slot s : group) {
      const std::string name = model::module_name(i, s);
      if (o_.config.resolve(name)) {
        todo.push_back(s);
      } else {
        timed(&LayerTimes::write, [&] {
          copy_raw(name + ".weight");
          if (ckpt_.find(name + ".bias") != nullptr) copy_raw(name + ".bias");
        });
        report({.name = name, .layer = i, .quantized = false});
      }
    }
    if (todo.empty()) continue;
    std::optional<HessianObserver> obs;
    if (gptq_) {
      timed(&LayerTimes::hessian, [&] { obs.emplace(b_, *ops_, c_, todo, &times_.hessian); });  // zeroed K²
      // Nothing after the group's last input is needed: the pass stops there. The first
      // pass into the MLP block of a true-sequential layer (its attention quantized by
      // now) keeps the residual after attention for the MLP passes after it.
      const bool mlp = group.front() >= Slot::kGate;
      if (mlp && mid_ready_) {
        run_samples(*L, &*obs, mid_, nullptr, model::Block::kMlp, todo.back());
      } else if (mlp && !mid_.empty()) {
        run_samples(*L, &*obs, acts_, &mid_, model::Block::kAttention, todo.back());
        mid_ready_ = true;
      } else {
        run_samples(*L, &*obs, acts_, nullptr, model::Block::kAttention, todo.back());
      }
    }
    if (obs) timed(&LayerTimes::hessian, [&] { pool(obs->distinct()); });
    quantize_group(i, todo, obs ? &*obs : nullptr, L ? &*L : nullptr);
    factors_.clear();  // keyed by this group's Hessians, which go now; and its memory with them
  }
  if (gptq_) {  // the next layer's inputs
    if (mid_ready_) {
      run_samples(*L, nullptr, mid_, &acts_, model::Block::kMlp, std::nullopt);
    } else {
      run_samples(*L, nullptr, acts_, &acts_, model::Block::kAttention, std::nullopt);
    }
  }
  if (recording_) {
    nlohmann::ordered_json modules = nlohmann::ordered_json::array();
    for (std::size_t m = first_report; m < result_.modules.size(); ++m) {
      nlohmann::ordered_json j = report_json(result_.modules[m]);
      j["layer"] = result_.modules[m].layer;
      modules.push_back(std::move(j));
    }
    recording_ = false;
    timed(&LayerTimes::write, [&] {
      journal_->commit({{"modules", modules},
                        {"quantized_bits", quantized_bits_ - bits_before},
                        {"quantized_params", result_.quantized_params - params_before}});
    });
  }
  end_times();
}

// Layer i as recorded: its tensors to the output in their order, its reports, and (for
// GPTQ) the next layer's inputs from the layer as the recording run had it in memory:
// the original weights with each quantized module swapped for its packed form (as
// quantize_module swaps it in: v2 zeros, with its bias).
void Run::replay_layer(int64_t i) {
  const LayerJournal::Layer l = journal_->read(i);
  for (const std::string& name : l.order) {
    const io::TensorView& t = l.tensors->get(name);
    if (writer_) writer_->add_tensor(name, t.dtype, t.shape, t.data);
  }
  const std::string what = "journal of layer " + std::to_string(i);
  for (const auto& m : l.meta.at("modules")) report(module_report_from_json(m, what));
  quantized_bits_ += io::json_get<int64_t>(l.meta, "quantized_bits", what);
  result_.quantized_params += io::json_get<int64_t>(l.meta, "quantized_params", what);
  if (!gptq_) return;
  std::optional<model::DecoderLayer> L;
  timed(&LayerTimes::load, [&] {
    model::DenseLoader dense(b_);
    L = model::load_layer(ckpt_, c_, i, dense, b_);
  });
  for (Slot s : model::kAllSlots) {
    const std::string name = model::module_name(i, s);
    const auto settings = o_.config.resolve(name);
    if (!settings) continue;
    const auto [out, in] = model::slot_shape(c_, s);
    timed(&LayerTimes::swap_in, [&] {
      L->linears[std::size_t(s)] =
          b_.gptq_linear(model::read_packed(*l.tensors, name, out, in, *settings, o_.config.format,
                                            l.tensors->find(name + ".bias") != nullptr));
    });
  }
  run_samples(*L, nullptr, acts_, &acts_, model::Block::kAttention, std::nullopt);
}

// Device to device through the ranks' communicator where there is one (every rank's
// QuantOps then takes it, or none does), else through the host in rank order.
void Run::pool(const std::vector<backend::Hessian*>& hessians) {
  if (world() == 1) return;
  for (backend::Hessian* h : hessians) {
    if (role_.comm != nullptr) {
      int64_t n = 0;
      for (const auto& rows : role_.group->gather<int64_t>(role_.rank, std::make_shared<const int64_t>(h->samples()))) {
        n += *rows;
      }
      if (n > 0 && ops_->pool(*h, double(h->samples()) / double(n), n, *role_.comm)) continue;
    }
    const auto [mean, rows] = role_.group->pooled_mean(role_.rank, ops_->download(*h), h->samples());
    ops_->assign(*h, mean, rows);
  }
}

nlohmann::ordered_json Run::fingerprint() const {
  // FNV-1a over the calibration token ids: the windows, not just their description.
  uint64_t h = 1469598103934665603ull;
  for (const auto& sample : whole().samples) {
    for (int32_t id : sample) h = (h ^ uint64_t(uint32_t(id))) * 1099511628211ull;
    h = (h ^ 0xffffffffull) * 1099511628211ull;
  }
  nlohmann::ordered_json f = {{"quantizer", "gptq.cpp:" + o_.version},
                               {"source", fs::absolute(dir_).string()},
                               {"quantization_config", o_.config.to_json(o_.version)},
                               {"calibration", whole().describe()},
                               {"calibration_tokens_fnv1a", h},
                               {"device", b_.name()},
                               {"activations", std::string(dtype_name(b_.activation_dtype()))}};
  // Several ranks pool their shares' Hessians, which rounds differently (quant/parallel.h).
  if (world() > 1) {
    f["ranks"] = world();
    f["rank_devices"] = rank_devices_;
  }
  f["forward_chunks"] = chunks_;
  if (b_.device() != backend::Device::kCpu) f["factor"] = factor_ == backend::FactorPrecision::kF64 ? "fp64" : "fp32";
  return f;
}

void Run::quantize_lm_head() {
  const std::string weight = c_.tie_embeddings && ckpt_.find("lm_head.weight") == nullptr ? "model.embed_tokens.weight"
                                                                                          : "lm_head.weight";
  const auto s = o_.config.resolve("lm_head");
  if (!o_.config.lm_head || !s) {
    if (!c_.tie_embeddings) copy_raw("lm_head.weight");
    if (o_.config.lm_head) report({.name = "lm_head", .quantized = false});
    return;
  }
  begin_times(-1);
  std::unique_ptr<backend::Hessian> h;
  if (gptq_) {
    // The head reads the final-normed residual stream.
    h = ops_->hessian(c_.hidden);
    const backend::Buffer norm = b_.vector(model::load_vector(ckpt_, "model.norm.weight", c_.hidden));
    for (std::size_t c = 0; c + 1 < chunks_.size(); ++c) {
      const int64_t base = offsets_[chunks_[c]], rows = offsets_[chunks_[c + 1]] - base;
      const backend::Tensor x = scratch_.rows(rows);
      backend::Tensor src = acts_.chunk(base, rows);
      if (!acts_.resident) {
        timed(&LayerTimes::transfer, [&] { b_.copy(src, x); });
        src = x;
      }
      timed(&LayerTimes::forward, [&] { b_.rms_norm(src, norm, float(c_.rms_eps), x); });
      timed(&LayerTimes::hessian, [&] { ops_->accumulate(*h, x); });
    }
    ++times_.passes;
  }
  if (h) timed(&LayerTimes::hessian, [&] { pool({h.get()}); });
  if (leader()) publish(quantize_module("lm_head", -1, *s, c_.vocab, c_.hidden, weight, h.get(), nullptr, nullptr), nullptr, nullptr);
  factors_.clear();
  end_times();
}

void Run::write_metadata(QuantizeResult& r) {
  using ojson = nlohmann::ordered_json;
  const ojson qc = o_.config.to_json(o_.version);
  ojson config = model::source_config_json(dir_);
  config["quantization_config"] = qc;
  // A quantized head cannot stay tied to the (unquantized) embedding.
  if (o_.config.lm_head && c_.tie_embeddings && o_.config.resolve("lm_head")) config["tie_word_embeddings"] = false;
  writer_->add_file("config.json", config.dump(2) + "\n");
  writer_->add_file("quantize_config.json", qc.dump(2) + "\n");
  model::add_side_files(*writer_, dir_);
  ojson modules = ojson::array();
  for (const auto& m : r.modules) modules.push_back(report_json(m));
  ojson layers = ojson::array();
  for (const auto& t : r.layers) layers.push_back(to_json(t));
  const ojson log = {{"quantizer", "gptq.cpp:" + o_.version},
                     {"source", dir_.string()},
                     {"calibration", whole().describe()},
                     {"quantization_config", qc},
                     {"seconds", since(start_)},
                     {"peak_rss_bytes", peak_rss_bytes()},
                     {"startup", to_json(r.startup)},
                     {"modules", modules},
                     {"layers", layers}};
  writer_->add_file("quant_log.json", log.dump(2) + "\n");
}

QuantizeResult Run::go() {
  gptq_ = o_.config.method == Method::kGptq;
  StartupTimes& st = result_.startup;
  auto phase = [&](double& into, auto&& f) {
    b_.synchronize();
    const auto t0 = Clock::now();
    f();
    b_.synchronize();
    into += since(t0);
  };
  if (gptq_) {
    if (calib_.samples.empty()) throw Error(ErrorKind::kInvalidArgument, "GPTQ needs calibration samples");
    phase(st.plan, [&] {
      measure_calibration();
      plan_chunks();
    });
    phase(st.embed, [&] { embed_calibration(); });
    phase(st.setup, [&] {
      runner_ = std::make_unique<model::LayerRunner>(b_, c_, chunk_rows_);
      ops_ = backend::make_quant_ops(b_, factor_);
    });
  }
  if (world() > 1) {
    for (const auto& name : role_.group->gather<std::string>(role_.rank, std::make_shared<const std::string>(b_.name()))) {
      rank_devices_.push_back(*name);
    }
  }
  if (!o_.journal_dir.empty()) {
    journal_.emplace(o_.journal_dir, fingerprint(), o_.journal_mode, o_.writer.background_bytes);
  }
  phase(st.embedding_out, [&] { copy_raw("model.embed_tokens.weight"); });
  if (o_.on_startup) o_.on_startup(st);
  for (int64_t i = 0; i < c_.layers; ++i) {
    // The host work of this layer (loading, packing, writing) on the free cores; results
    // do not depend on the count (backend/cpu/fixed_blas.h).
    fit_threads_to_load();
    quantize_layer(i);
    if (o_.on_layer) o_.on_layer(i + 1, c_.layers, since(start_));
  }
  copy_raw("model.norm.weight");
  quantize_lm_head();

  for (const auto& name : ckpt_.names()) result_.total_params += ckpt_.get(name).numel();
  result_.peak_rss = peak_rss_bytes();
  if (!writer_) return result_;  // another rank's share: rank 0 writes
  write_metadata(result_);
  result_.checkpoint = writer_->commit();
  if (journal_) journal_->remove();
  result_.seconds = since(start_);
  result_.bpw_quantized = result_.quantized_params > 0 ? double(quantized_bits_) / double(result_.quantized_params) : 0.0;
  result_.bpw_total = double(result_.checkpoint.tensor_bytes) * 8.0 / double(result_.total_params);
  return result_;
}

}  // namespace

std::string describe(const LayerTimes& t) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%.2f s, %d pass%s%s: forward %.2f, hessian %.2f, transfer %.2f, load %.2f, convert %.2f, factor %.2f, "
                "sweep %.2f, quantize %.2f, pack %.2f, write %.2f, swap-in %.2f, other %.2f",
                t.seconds, t.passes, t.passes == 1 ? "" : "es", t.replayed ? " (replayed)" : "", t.forward, t.hessian,
                t.transfer, t.load, t.convert, t.factor, t.sweep, t.quantize, t.pack, t.write, t.swap_in, t.other());
  return buf;
}

std::string describe(const StartupTimes& t) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%.2f s: plan %.2f, embed %.2f, setup %.2f, embedding out %.2f", t.total(), t.plan,
                t.embed, t.setup, t.embedding_out);
  return buf;
}

nlohmann::ordered_json to_json(const StartupTimes& t) {
  return {{"seconds", t.total()}, {"plan", t.plan}, {"embed", t.embed}, {"setup", t.setup},
          {"embedding_out", t.embedding_out}};
}

nlohmann::ordered_json to_json(const LayerTimes& t) {
  return {{"layer", t.layer},       {"replayed", t.replayed}, {"passes", t.passes},   {"seconds", t.seconds},
          {"forward", t.forward},   {"hessian", t.hessian},   {"transfer", t.transfer}, {"load", t.load},
          {"convert", t.convert},   {"factor", t.factor},     {"sweep", t.sweep},     {"quantize", t.quantize},
          {"pack", t.pack},         {"write", t.write},       {"swap_in", t.swap_in}, {"other", t.other()}};
}

void check_quantizable(const fs::path& dir, const QuantizeConfig& config) {
  config.validate();
  const model::ModelConfig c = model::load_config(dir);
  auto check = [&](const std::string& name, int64_t in) {
    const auto s = config.resolve(name);
    if (!s) return;
    if (in % block_values(s->bits) != 0) {
      throw Error(ErrorKind::kInvalidArgument, name + ": in_features " + std::to_string(in) + " is not a multiple of " +
                                                   std::to_string(block_values(s->bits)) + ", which " +
                                                   std::to_string(s->bits) + "-bit packing needs");
    }
  };
  for (int64_t i = 0; i < c.layers; ++i) {
    for (Slot s : model::kAllSlots) check(model::module_name(i, s), model::slot_shape(c, s).second);
  }
  if (config.lm_head) check("lm_head", c.hidden);
}

std::vector<std::size_t> chunk_starts(std::span<const int64_t> lengths, int64_t max_rows, int64_t max_samples) {
  std::vector<std::size_t> starts = {0};
  int64_t rows = 0, samples = 0;
  for (std::size_t s = 0; s < lengths.size(); ++s) {
    if (rows > 0 && (rows + lengths[s] > max_rows || samples == max_samples)) {
      starts.push_back(s);
      rows = 0;
      samples = 0;
    }
    rows += lengths[s];
    ++samples;
  }
  starts.push_back(lengths.size());
  return starts;
}

QuantizeResult quantize_model(const fs::path& model_dir, const CalibSet& calib, backend::Backend& b,
                              const PipelineOptions& o) {
  check_quantizable(model_dir, o.config);
  Run run(model_dir, calib, b, o, RankRole{});
  return run.go();
}

QuantizeResult quantize_model_rank(const fs::path& model_dir, const CalibSet& share, backend::Backend& b,
                                   const PipelineOptions& o, const RankRole& role) {
  Run run(model_dir, share, b, o, role);
  return run.go();
}

}  // namespace gptq::quant
