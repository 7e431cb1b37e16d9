// The finished layers of a quantization run, kept on disk beside the output so that an
// interrupted run (Ctrl-C, kill -9, power loss) can continue (`gptq quantize --resume`)
// and still produce the checkpoint an uninterrupted run writes, byte for byte.
//
// Layout: DIR/run.json (the run's fingerprint) and one directory per finished layer,
// DIR/layer-00005/ = model.safetensors (the tensors the layer added to the output) +
// layer.json (their order and the layer's module reports). Each layer directory is
// written by a CheckpointWriter, so it appears complete or not at all; layers 0..n-1
// present means n layers done.
//
// Writing runs on a background thread (io/write_queue.h), in order: add() copies the
// bytes and returns, commit() queues the layer's completion, so the journal's writes and
// fsyncs overlap the next layer's compute instead of stalling it (8B shape: ~12 s of a
// 64 s run when they ran inline). A layer is done once its layer.json is on disk; a run
// killed before that redoes it. Destroying the journal (an interrupted run unwinding)
// first finishes what was queued, so a graceful stop keeps every layer it recorded.
//
// Cost: the quantized layers are written twice (here and in the output).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/checkpoint.h"
#include "io/checkpoint_writer.h"
#include "io/write_queue.h"

namespace gptq::quant {

class LayerJournal {
 public:
  // `fingerprint`: everything the output depends on (settings, source, calibration,
  // device). kContinue takes the layers already in `dir` when its fingerprint matches and
  // throws kInvalidArgument naming the difference otherwise; kFresh empties `dir`.
  // kRead: the other ranks of a continued data-parallel run (quant/parallel.h) read the
  // layers found and write nothing; rank 0's kContinue journal checks the fingerprint.
  enum class Mode { kFresh, kContinue, kRead };
  // `queue_bytes`: tensor bytes the background writer holds at most (add() waits beyond).
  LayerJournal(std::filesystem::path dir, const nlohmann::ordered_json& fingerprint, Mode mode,
               uint64_t queue_bytes = uint64_t{1} << 30);
  ~LayerJournal();
  LayerJournal(const LayerJournal&) = delete;
  LayerJournal& operator=(const LayerJournal&) = delete;

  // Layers recorded (on disk at the start; committed by this run since, written or queued).
  int64_t layers_done() const { return done_; }

  // Recording layer `i` (= layers_done()): its tensors in output order, then commit.
  void begin(int64_t layer);
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::span<const std::byte> data);
  // The same without a copy: `owner` keeps `data` valid until it is written.
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::span<const std::byte> data,
           std::shared_ptr<const void> owner);
  void commit(nlohmann::ordered_json meta);

  struct Layer {
    std::unique_ptr<io::Checkpoint> tensors;
    std::vector<std::string> order;  // names, in the order the run added them
    nlohmann::ordered_json meta;
  };
  // A layer found on disk at the start (layer < the count found then).
  Layer read(int64_t layer) const;

  // After the output is committed: waits for the queue, then deletes the journal.
  void remove();

 private:
  std::filesystem::path layer_dir(int64_t layer) const;

  std::filesystem::path dir_;
  int64_t done_ = 0;
  int64_t found_ = 0;  // layers on disk when the run began
  bool open_ = false;  // between begin() and commit()
  std::vector<std::string> order_;
  // The layer being written, used only by the queue's thread.
  std::shared_ptr<std::unique_ptr<io::CheckpointWriter>> writer_ =
      std::make_shared<std::unique_ptr<io::CheckpointWriter>>();
  std::unique_ptr<io::WriteQueue> queue_;  // last: stops first
};

}  // namespace gptq::quant
