// Random-initialised checkpoints at the shapes of real models, for benchmarks (no large
// real model is available offline): a valid Hugging Face directory (config.json, sharded
// safetensors, a byte-fallback tokenizer.json of the right vocabulary size), dense or
// directly GPTQ-packed (random codes, plausible scales), so a 70B-shaped GPTQ
// checkpoint needs no 140 GB fp16 one first.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace gptq::model {

// A published architecture: the numbers of its config.json on the Hugging Face hub.
struct SynthShape {
  std::string name;  // "llama-3.2-1b"
  std::string architecture = "LlamaForCausalLM";
  std::string model_type = "llama";
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  int64_t max_positions = 0;
  double rope_theta = 0.0;
  double rope_llama3_factor = 0.0;  // 0: no llama3 rope scaling
  double rms_eps = 1e-5;
  bool tied = false;
  bool attention_bias = false;
};

const std::vector<SynthShape>& synth_shapes();

struct SynthOptions {
  std::string shape;           // one of synth_shapes()
  int64_t layers = 0;          // 0: the shape's own count
  DType dtype = DType::kBF16;  // dense tensors
  int gptq_bits = 0;           // 0: dense linears; else GPTQ-packed at these bits
  int group_size = 128;
  uint64_t seed = 0;
  uint64_t max_shard_bytes = 4'000'000'000;
  bool overwrite = false;
  std::filesystem::path out;
};

// The tokenizer.json of a synthetic model: byte-fallback BPE, <unk> <s> </s>, the 256
// byte tokens, filler pieces up to `vocab`; loadable by the tokenizers library too.
std::string synthetic_tokenizer_json(int64_t vocab);

// Writes the checkpoint (all or nothing); returns its bytes of tensor data.
uint64_t write_synthetic(const SynthOptions& o);

}  // namespace gptq::model
