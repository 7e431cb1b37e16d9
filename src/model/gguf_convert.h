// `gptq convert`: a GGUF file written out as the Hugging Face checkpoint it describes
// (config.json, generation_config.json, model.safetensors in `dtype`, tokenizer.json,
// tokenizer_config.json with the chat template), all or nothing (io::CheckpointWriter).
#pragma once

#include <filesystem>

#include "core/dtype.h"
#include "io/checkpoint_writer.h"

namespace gptq::model {

struct GgufConvertOptions {
  DType dtype = DType::kF16;  // F16, BF16 or F32
  io::CheckpointWriterOptions writer;
};

io::CheckpointSummary convert_gguf(const std::filesystem::path& gguf, const std::filesystem::path& out,
                                   const GgufConvertOptions& options = {});

}  // namespace gptq::model
