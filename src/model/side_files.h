// The files a written checkpoint carries besides its tensors, taken from its source: a
// Hugging Face directory's own, or for a GGUF file the ones `gptq convert` derives from
// its metadata (model/gguf_convert.h). Shared by every writer of a derived checkpoint
// (`gptq quantize`, `gptq convert --load-in-4bit`).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/checkpoint_writer.h"

namespace gptq::model {

// The source's config.json (for GGUF, the derived one with torch_dtype float16: the
// dtype io::Checkpoint reads a GGUF's tensors in), to be amended and written by the caller.
nlohmann::ordered_json source_config_json(const std::filesystem::path& src);

// Adds generation_config.json and the tokenizer files the source has (all but config.json).
void add_side_files(io::CheckpointWriter& w, const std::filesystem::path& src);

}  // namespace gptq::model
