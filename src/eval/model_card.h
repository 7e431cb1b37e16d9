// The README.md that `gptq quantize` writes beside the checkpoint: a Hugging Face model
// card (YAML front matter + Markdown) saying what was quantized, how, with what data, at
// what size, how well (when base-vs-quantized numbers were measured), and how to load it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "eval/compare.h"

namespace gptq::eval {

struct ModelCardInfo {
  std::string base_model;   // the source model's name (its directory name)
  std::string settings;     // every quantization setting, one line
  std::string calibration;  // what the calibration set was, one line
  int bits = 4;
  int group_size = 128;
  double bpw_quantized = 0.0;
  double bpw_total = 0.0;
  uint64_t tensor_bytes = 0;
  double seconds = 0.0;
  std::string version;                 // gptq.cpp's
  std::optional<CompareResult> eval;   // base vs quantized, when measured
};

std::string model_card(const ModelCardInfo& info);

}  // namespace gptq::eval
