// Linear layers of a GPTQ checkpoint (ours, GPTQModel's, AutoGPTQ's): for each module,
// prefix.{qweight, qzeros, scales, g_idx[, bias]} become a packed GPTQ layer on the
// backend; modules stored dense (excluded by dynamic rules, or lm_head) load as dense.
#pragma once

#include "model/layer.h"
#include "format/packing.h"
#include "format/quant_config.h"

namespace gptq::model {

class GptqLoader final : public LinearLoader {
 public:
  GptqLoader(backend::Backend& b, quant::QuantizeConfig config) : backend_(b), config_(std::move(config)) {}
  std::unique_ptr<backend::Linear> load(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out,
                                        int64_t in, bool has_bias) override;
  const quant::QuantizeConfig& config() const { return config_; }

 private:
  backend::Backend& backend_;
  quant::QuantizeConfig config_;
};

// Reads and validates one module's packed tensors (zeros converted to v2). Throws
// gptq::Error(kFormat) naming the file and tensor.
quant::PackedLinear read_packed(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out, int64_t in,
                                const quant::ModuleSettings& settings, quant::Format format, bool has_bias);

}  // namespace gptq::model
