// `gptq convert`: a GGUF file written out as the Hugging Face checkpoint it describes
// (config.json, generation_config.json, model.safetensors in `dtype`, tokenizer.json,
// tokenizer_config.json with the chat template), all or nothing (io::CheckpointWriter).
#pragma once

#include <filesystem>

#include "core/dtype.h"
#include "io/checkpoint_writer.h"
#include "io/gguf.h"
#include "io/gguf_hf.h"

namespace gptq::model {

// The files of that checkpoint besides its tensors, from the GGUF metadata. `dtype` is
// the weights' dtype, recorded as config.json's torch_dtype. Throws kUnsupported for an
// architecture or tokenizer the converters do not know, before any tensor work.
struct GgufHfFiles {
  io::OrderedJson config;             // config.json
  io::OrderedJson generation_config;  // generation_config.json
  io::OrderedJson tokenizer;          // tokenizer.json
  io::OrderedJson tokenizer_config;   // tokenizer_config.json (chat template)
};
GgufHfFiles gguf_hf_files(const io::GgufFile& f, DType dtype);

struct GgufConvertOptions {
  DType dtype = DType::kF16;  // F16, BF16 or F32
  io::CheckpointWriterOptions writer;
};

io::CheckpointSummary convert_gguf(const std::filesystem::path& gguf, const std::filesystem::path& out,
                                   const GgufConvertOptions& options = {});

}  // namespace gptq::model
