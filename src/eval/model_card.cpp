#include "eval/model_card.h"

#include <cstdio>

namespace gptq::eval {

std::string model_card(const ModelCardInfo& c) {
  char buf[512];
  std::string s = "---\nbase_model: " + c.base_model +
                  "\nlibrary_name: transformers\ntags:\n- gptq\n- " + std::to_string(c.bits) +
                  "-bit\n- gptq.cpp\n---\n\n";
  s += "# " + c.base_model + " — GPTQ " + std::to_string(c.bits) + "-bit, group size " +
       std::to_string(c.group_size) + "\n\n";
  std::snprintf(buf, sizeof buf,
                "Quantized from `%s` with gptq.cpp %s in %.1f s. Checkpoint: %.2f MB of "
                "tensors; %.3f bits per quantized weight (codes, scales, zeros, g_idx), %.3f bits per parameter "
                "overall.\n\n",
                c.base_model.c_str(), c.version.c_str(), c.seconds, double(c.tensor_bytes) / 1e6, c.bpw_quantized,
                c.bpw_total);
  s += buf;
  s += "## Quantization\n\n- Settings: " + c.settings + "\n- Calibration: " + c.calibration +
       "\n- Format: the GPTQ checkpoint layout read by transformers (GPTQModel / optimum), vLLM and gptq.cpp "
       "(`quantize_config.json` and `config.json` `quantization_config`).\n\n";
  if (c.eval) {
    s += "## Base vs quantized\n\nMeasured by gptq.cpp on the CPU (perplexity and KL divergence on the same "
         "windows; task accuracy with lm-eval's acc / acc_norm definitions):\n\n" +
         compare_markdown(*c.eval) + "\n";
  }
  s += "## Use\n\ntransformers (with `gptqmodel` or `optimum` installed):\n\n```python\n"
       "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
       "model = AutoModelForCausalLM.from_pretrained(\"PATH\", device_map=\"auto\")\n"
       "tokenizer = AutoTokenizer.from_pretrained(\"PATH\")\n```\n\n"
       "vLLM:\n\n```bash\nvllm serve PATH\n```\n\n"
       "gptq.cpp:\n\n```bash\ngptq generate PATH --prompt \"Once upon a time\"\n```\n\n"
       "Upload: `huggingface-cli upload USER/NAME PATH`.\n";
  return s;
}

}  // namespace gptq::eval
