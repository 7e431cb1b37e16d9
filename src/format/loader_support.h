// Which published loaders take a GPTQ checkpoint, judged from its quantization_config.
// The rules come from each loader's source, versions named beside each rule in
// loader_support.cpp; "measured" marks the ones also seen on the GPU machine
// (../shared/device/README.md: transformers 5.17 + optimum 2.3, GPTQModel 7.6).
#pragma once

#include <string>
#include <vector>

#include "format/quant_config.h"

namespace gptq::quant {

enum class Loader { kGptqCpp, kGptqModel, kTransformers, kVllm };

const char* to_string(Loader loader);  // "gptq.cpp", "GPTQModel", "transformers", "vLLM"

struct LoaderVerdict {
  Loader loader;
  bool loads = true;
  std::string why;  // when !loads: what the loader does with it and which setting causes it
};

// One verdict per loader, in the order of Loader.
std::vector<LoaderVerdict> loader_support(const QuantizeConfig& c);

}  // namespace gptq::quant
