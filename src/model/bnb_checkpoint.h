// Checkpoints in transformers' serialized bitsandbytes layout (format/bnb_serialized.h):
// read as the bnb layers they hold (no requantization), and written from a dense model
// (`gptq convert --load-in-4bit` / `--load-in-8bit`) so that transformers loads them.
#pragma once

#include <filesystem>
#include <optional>

#include "format/bnb_config.h"
#include "format/bnb_packed.h"
#include "io/checkpoint_writer.h"
#include "model/bnb_loader.h"
#include "model/layer.h"

namespace gptq::model {

// config.json's quantization_config when it says bitsandbytes; nullopt otherwise (also
// for a directory without config.json or a GGUF file).
std::optional<quant::bnb::BnbConfig> read_bnb_checkpoint_config(const std::filesystem::path& dir);

// Layer `prefix` of a serialized bnb checkpoint, W [out, in], checked: names, dtypes
// and shapes of every tensor, the quant_state JSON against the shape and the config,
// the stored code books against bitsandbytes' (which the kernels hard-wire). Throws
// kFormat naming the file and the tensor.
quant::bnb::BnbPacked read_bnb_linear(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out, int64_t in,
                                      bool has_bias, const quant::bnb::BnbConfig& config);

// Pre-quantized linears as stored; a module whose weight is an ordinary float tensor
// (lm_head, llm_int8_skip_modules) loads dense.
class BnbCheckpointLoader final : public LinearLoader {
 public:
  BnbCheckpointLoader(backend::Backend& b, quant::bnb::BnbConfig config) : backend_(b), config_(config) {}
  std::unique_ptr<backend::Linear> load(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out,
                                        int64_t in, bool has_bias) override;

 private:
  backend::Backend& backend_;
  quant::bnb::BnbConfig config_;
};

// The dense model under `src` (a directory or a GGUF file) written to `out` with its
// decoder-layer linears quantized per `config` (as BnbLoader quantizes them at load);
// embedding, norms, lm_head and biases are copied as stored. Side files (tokenizer,
// generation config) come along; config.json gains quantization_config.
io::CheckpointSummary write_bnb_checkpoint(const std::filesystem::path& src, const std::filesystem::path& out,
                                           const quant::bnb::BnbConfig& config,
                                           const io::CheckpointWriterOptions& writer = {},
                                           BnbLoadStats* stats = nullptr);

}  // namespace gptq::model
