// Load-time quantization as bitsandbytes does it (transformers' load_in_4bit /
// load_in_8bit): a dense checkpoint's decoder-layer linears are quantized while being
// read (src/format/bnb_packed.h) and handed to the backend's bnb_linear; the embedding,
// norms and lm_head load as stored.
#pragma once

#include <filesystem>

#include "format/bnb_config.h"
#include "model/model.h"

namespace gptq::model {

struct BnbLoadStats {
  int64_t layers = 0;            // linears quantized
  int64_t weights = 0;           // their weights (out x in, summed)
  uint64_t dense_bytes = 0;      // their size in the checkpoint's dtype
  uint64_t quantized_bytes = 0;  // their resident size quantized (codes, scales, bias)
};

class BnbLoader final : public LinearLoader {
 public:
  BnbLoader(backend::Backend& b, quant::bnb::BnbConfig config);
  std::unique_ptr<backend::Linear> load(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out,
                                        int64_t in, bool has_bias) override;
  const BnbLoadStats& stats() const { return stats_; }

 private:
  backend::Backend& backend_;
  quant::bnb::BnbConfig config_;
  BnbLoadStats stats_;
};

// The model under `dir` with its linears quantized per `config` (config.enabled()).
// A checkpoint that is already quantized (GPTQ) is refused with kInvalidArgument.
Model load_bnb(const std::filesystem::path& dir, backend::Backend& b, const quant::bnb::BnbConfig& config,
               BnbLoadStats* stats = nullptr);

}  // namespace gptq::model
