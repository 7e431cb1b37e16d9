// --load-in-4bit, --double-quant, --blocksize, --load-in-8bit, --llm-int8-threshold:
// load-time quantization as bitsandbytes does it, shared by every command that loads a
// model: declared once here.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "format/bnb_config.h"
#include "model/model.h"

namespace gptq::cli {

struct LoadArgs {
  std::string load_in_4bit;  // "", "nf4" or "fp4"
  bool double_quant = false;
  bool load_in_8bit = false;
  quant::bnb::BnbConfig bnb;  // blocksize and threshold bound directly; type and absmax from the flags
};

void add_load_flags(CLI::App& app, LoadArgs& a);

// The configuration the flags ask for (type kNone without them). Throws
// kInvalidArgument for --double-quant or --blocksize without --load-in-4bit.
quant::bnb::BnbConfig bnb_config(const LoadArgs& a);

// The model under `dir` on `b`, its linears quantized at load when the flags ask. Says
// on stderr what was quantized and the memory saved; the same under
// "load_quantization" in `json` when given.
model::Model load_model(const std::string& dir, backend::Backend& b, const LoadArgs& a,
                        nlohmann::json* json = nullptr);

}  // namespace gptq::cli
