#include "model/gguf_convert.h"

#include "tokenizer/gguf_tokenizer.h"

namespace gptq::model {

GgufHfFiles gguf_hf_files(const io::GgufFile& f, DType dtype) {
  GgufHfFiles files{.config = io::gguf_hf_config(f),
                    .generation_config = io::gguf_hf_generation_config(f),
                    .tokenizer = tok::gguf_tokenizer_json(f),
                    .tokenizer_config = tok::gguf_tokenizer_config_json(f)};
  files.config["torch_dtype"] = dtype == DType::kF32 ? "float32" : dtype == DType::kBF16 ? "bfloat16" : "float16";
  return files;
}

io::CheckpointSummary convert_gguf(const std::filesystem::path& gguf, const std::filesystem::path& out,
                                   const GgufConvertOptions& options) {
  const io::GgufFile f(gguf);
  // Metadata first: an unsupported architecture or tokenizer fails before any tensor work.
  const GgufHfFiles files = gguf_hf_files(f, options.dtype);
  io::CheckpointWriter w(out, options.writer);
  io::gguf_hf_tensors(f, options.dtype, [&](const io::HfTensor& t) {
    w.add_tensor(t.name, t.dtype, t.shape, t.data);
  });
  w.add_file("config.json", files.config.dump(2) + "\n");
  w.add_file("generation_config.json", files.generation_config.dump(2) + "\n");
  w.add_file("tokenizer.json", files.tokenizer.dump() + "\n");
  w.add_file("tokenizer_config.json", files.tokenizer_config.dump(2) + "\n");
  return w.commit();
}

}  // namespace gptq::model
