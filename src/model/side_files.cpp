#include "model/side_files.h"

#include "core/dtype.h"
#include "io/gguf.h"
#include "io/json_file.h"
#include "model/gguf_convert.h"

namespace gptq::model {

namespace fs = std::filesystem;

nlohmann::ordered_json source_config_json(const fs::path& src) {
  if (io::is_gguf_path(src)) return gguf_hf_files(io::GgufFile(src), DType::kF16).config;
  return io::read_ordered_json_file(src / "config.json");
}

void add_side_files(io::CheckpointWriter& w, const fs::path& src) {
  if (io::is_gguf_path(src)) {
    const GgufHfFiles files = gguf_hf_files(io::GgufFile(src), DType::kF16);
    w.add_file("generation_config.json", files.generation_config.dump(2) + "\n");
    w.add_file("tokenizer.json", files.tokenizer.dump() + "\n");
    w.add_file("tokenizer_config.json", files.tokenizer_config.dump(2) + "\n");
    return;
  }
  for (const char* f : {"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                        "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja"}) {
    if (fs::exists(src / f)) w.copy_file(src / f, f);
  }
}

}  // namespace gptq::model
