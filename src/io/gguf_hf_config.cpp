// GGUF `llama.*` metadata -> config.json, as transformers maps the keys
// (context_length -> max_position_embeddings, block_count -> num_hidden_layers, ...).
#include "core/error.h"
#include "io/gguf_hf.h"

namespace gptq::io {

namespace {

[[noreturn]] void unsupported(const GgufFile& f, const std::string& what) {
  throw Error(ErrorKind::kUnsupported, f.path().string() + ": " + what);
}

std::string architecture(const GgufFile& f) {
  const std::string arch = f.require_string("general.architecture");
  if (arch != "llama") unsupported(f, "general.architecture \"" + arch + "\" is not supported (llama)");
  return arch;
}

}  // namespace

OrderedJson gguf_hf_config(const GgufFile& f) {
  const std::string a = architecture(f) + ".";
  if (auto scaling = f.get_string(a + "rope.scaling.type"); scaling && *scaling != "none") {
    unsupported(f, a + "rope.scaling.type \"" + *scaling + "\" is not supported");
  }
  // Llama 3.1-style frequency scaling is stored as a tensor of per-frequency factors.
  if (f.find_tensor("rope_freqs.weight") != nullptr) unsupported(f, "rope_freqs.weight (scaled RoPE) is not supported");

  const uint64_t hidden = f.require_uint(a + "embedding_length");
  const uint64_t heads = f.require_uint(a + "attention.head_count");
  const uint64_t kv_heads = f.get_uint(a + "attention.head_count_kv").value_or(heads);
  uint64_t vocab = f.get_uint(a + "vocab_size").value_or(0);
  if (vocab == 0) {
    const auto tokens = f.find("tokenizer.ggml.tokens");
    if (tokens == nullptr || tokens->type != GgufValueType::kArray) {
      throw Error(ErrorKind::kFormat, f.path().string() + ": neither " + a + "vocab_size nor tokenizer.ggml.tokens");
    }
    vocab = std::get<std::vector<GgufValue>>(tokens->value).size();
  }
  OrderedJson c;
  c["architectures"] = {"LlamaForCausalLM"};
  c["model_type"] = "llama";
  c["hidden_size"] = hidden;
  c["intermediate_size"] = f.require_uint(a + "feed_forward_length");
  c["num_hidden_layers"] = f.require_uint(a + "block_count");
  c["num_attention_heads"] = heads;
  c["num_key_value_heads"] = kv_heads;
  // rope.dimension_count is the rotary width, equal to head_dim for Llama (transformers
  // maps it so); attention.key_length, when present, is head_dim itself.
  if (auto kl = f.get_uint(a + "attention.key_length")) {
    c["head_dim"] = *kl;
  } else if (auto rd = f.get_uint(a + "rope.dimension_count")) {
    c["head_dim"] = *rd;
  }
  c["max_position_embeddings"] = f.get_uint(a + "context_length").value_or(2048);
  c["rms_norm_eps"] = f.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-6);
  c["rope_theta"] = f.get_float(a + "rope.freq_base").value_or(10000.0);
  c["vocab_size"] = vocab;
  c["hidden_act"] = "silu";
  c["attention_bias"] = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c["mlp_bias"] = false;
  // transformers: tied exactly when the file has no separate output matrix.
  c["tie_word_embeddings"] = f.find_tensor("output.weight") == nullptr;
  if (auto bos = f.get_uint("tokenizer.ggml.bos_token_id")) c["bos_token_id"] = *bos;
  if (auto eos = f.get_uint("tokenizer.ggml.eos_token_id")) c["eos_token_id"] = *eos;
  if (auto pad = f.get_uint("tokenizer.ggml.padding_token_id")) c["pad_token_id"] = *pad;
  c["torch_dtype"] = "float16";
  return c;
}

OrderedJson gguf_hf_generation_config(const GgufFile& f) {
  OrderedJson g;
  if (auto bos = f.get_uint("tokenizer.ggml.bos_token_id")) g["bos_token_id"] = *bos;
  if (auto eos = f.get_uint("tokenizer.ggml.eos_token_id")) g["eos_token_id"] = *eos;
  if (auto pad = f.get_uint("tokenizer.ggml.padding_token_id")) g["pad_token_id"] = *pad;
  return g;
}

}  // namespace gptq::io
