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
// Cost: the quantized layers are written twice (here and in the output), a few percent
// of the run's I/O.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/checkpoint.h"
#include "io/checkpoint_writer.h"

namespace gptq::quant {

class LayerJournal {
 public:
  // `fingerprint`: everything the output depends on (settings, source, calibration,
  // device). kContinue takes the layers already in `dir` when its fingerprint matches and
  // throws kInvalidArgument naming the difference otherwise; kFresh empties `dir`.
  enum class Mode { kFresh, kContinue };
  LayerJournal(std::filesystem::path dir, const nlohmann::ordered_json& fingerprint, Mode mode);

  int64_t layers_done() const { return done_; }

  // Recording layer `i` (= layers_done()): its tensors in output order, then commit.
  void begin(int64_t layer);
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::span<const std::byte> data);
  void commit(nlohmann::ordered_json meta);

  struct Layer {
    std::unique_ptr<io::Checkpoint> tensors;
    std::vector<std::string> order;  // names, in the order the run added them
    nlohmann::ordered_json meta;
  };
  Layer read(int64_t layer) const;

  // After the output is committed.
  void remove();

 private:
  std::filesystem::path layer_dir(int64_t layer) const;

  std::filesystem::path dir_;
  int64_t done_ = 0;
  std::unique_ptr<io::CheckpointWriter> open_;
  std::vector<std::string> order_;
};

}  // namespace gptq::quant
