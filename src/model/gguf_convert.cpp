#include "model/gguf_convert.h"

#include "io/gguf.h"
#include "io/gguf_hf.h"
#include "tokenizer/gguf_tokenizer.h"

namespace gptq::model {

io::CheckpointSummary convert_gguf(const std::filesystem::path& gguf, const std::filesystem::path& out,
                                   const GgufConvertOptions& options) {
  const io::GgufFile f(gguf);
  // Metadata first: an unsupported architecture or tokenizer fails before any tensor work.
  io::OrderedJson config = io::gguf_hf_config(f);
  config["torch_dtype"] = options.dtype == DType::kF32 ? "float32" : options.dtype == DType::kBF16 ? "bfloat16" : "float16";
  const io::OrderedJson generation = io::gguf_hf_generation_config(f);
  const io::OrderedJson tokenizer = tok::gguf_tokenizer_json(f);
  const io::OrderedJson tokenizer_config = tok::gguf_tokenizer_config_json(f);

  io::CheckpointWriter w(out, options.writer);
  io::gguf_hf_tensors(f, options.dtype, [&](const io::HfTensor& t) {
    w.add_tensor(t.name, t.dtype, t.shape, t.data);
  });
  w.add_file("config.json", config.dump(2) + "\n");
  w.add_file("generation_config.json", generation.dump(2) + "\n");
  w.add_file("tokenizer.json", tokenizer.dump() + "\n");
  w.add_file("tokenizer_config.json", tokenizer_config.dump(2) + "\n");
  return w.commit();
}

}  // namespace gptq::model
