// The model hyper-parameters, read from a Hugging Face config.json (+ generation_config.json).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace gptq::model {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3 };
const char* to_string(Architecture a);

// rope_scaling / rope_parameters "rope_type".
enum class RopeScaling { kNone, kLlama3 };

struct RopeConfig {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::kNone;
  // llama3 scaling parameters (used when scaling == kLlama3)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string architecture_name;  // as written in config.json, e.g. "LlamaForCausalLM"
  int64_t hidden = 0;             // d_model
  int64_t intermediate = 0;       // MLP width
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;           // < heads: grouped-query attention
  int64_t head_dim = 0;           // may differ from hidden / heads (Qwen3)
  int64_t vocab = 0;
  int64_t max_positions = 0;
  double rms_eps = 1e-6;
  RopeConfig rope;
  bool tie_embeddings = false;
  bool attention_bias = false;    // q/k/v(/o) biases (Qwen2; Llama with attention_bias)
  bool attention_out_bias = false;
  bool mlp_bias = false;
  bool qk_norm = false;           // per-head RMSNorm on q and k before RoPE (Qwen3)
  int64_t sliding_window = 0;     // > 0: a query sees only the last `sliding_window` keys (Mistral)
  std::vector<int32_t> eos_ids;   // generation stops at any of these
  int32_t bos_id = -1;
};

// Which files a command needs from a model: a Hugging Face checkpoint directory, or a
// .gguf file (which holds its configuration and tokenizer itself).
enum class ModelFiles {
  kConfig,              // config.json (info, RTN quantization)
  kTokenizer,           // tokenizer.json (tokenize)
  kConfigAndTokenizer,  // both (generate, ppl, GPTQ quantization)
};

// Checks, before anything in it is read, that `model` exists and is a .gguf file or a
// directory holding the files `need` names; throws kIo saying which of these fails
// ("model directory '/nope' does not exist", "'/x' is not a model directory: it has no
// config.json").
void require_model_dir(const std::filesystem::path& model, ModelFiles need);

// Reads dir/config.json (after require_model_dir(dir, kConfig)) and, if present,
// dir/generation_config.json -- or, for a .gguf file, the configuration its metadata
// describes (io/gguf_hf.h). Anything not
// supported (architecture, activation, rope type, sliding window in use...) throws
// gptq::Error(kUnsupported) naming it.
ModelConfig load_config(const std::filesystem::path& dir);

// The activation dtype for `--dtype auto` (and the Python package's default) when `model`
// runs on backend `spec` ("cpu", "cuda", "cuda:N"; "auto" already resolved): on a GPU the
// checkpoint's embedding dtype (f16 or bf16; f32 for an f32 checkpoint; f16 otherwise), on
// the CPU f32, the only dtype it computes in.
DType default_activations(const std::filesystem::path& model, std::string_view spec);

}  // namespace gptq::model
