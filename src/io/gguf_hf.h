// A GGUF file seen as the Hugging Face checkpoint it was converted from, the way
// transformers reads one (`from_pretrained(..., gguf_file=)`): config.json and
// generation_config.json from the `<arch>.*` metadata, and tensors renamed to Hugging Face
// names, dequantized, with the q/k rows llama.cpp's converter interleaved for its RoPE put
// back in rotate-half order. (The tokenizer: tokenizer/gguf_tokenizer.h.)
//
// Supported: general.architecture "llama". Anything else throws gptq::Error(kUnsupported).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/gguf.h"

namespace gptq::io {

using OrderedJson = nlohmann::ordered_json;

OrderedJson gguf_hf_config(const GgufFile& f);             // config.json
OrderedJson gguf_hf_generation_config(const GgufFile& f);  // generation_config.json

// One tensor under its Hugging Face name, dequantized to `dtype`, row-major.
struct HfTensor {
  std::string name;
  DType dtype = DType::kF16;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;
};

// The Hugging Face name of a GGUF tensor ("blk.3.attn_q.weight" ->
// "model.layers.3.self_attn.q_proj.weight"); throws kUnsupported for names without one.
std::string gguf_hf_tensor_name(const GgufFile& f, const std::string& gguf_name);

// Calls `sink` with every tensor in file order, one at a time (peak memory: one tensor).
template <class Sink>
void gguf_hf_tensors(const GgufFile& f, DType dtype, Sink&& sink);
HfTensor gguf_hf_tensor(const GgufFile& f, const GgufTensorInfo& t, DType dtype);

template <class Sink>
void gguf_hf_tensors(const GgufFile& f, DType dtype, Sink&& sink) {
  for (const GgufTensorInfo& t : f.tensors()) sink(gguf_hf_tensor(f, t, dtype));
}

}  // namespace gptq::io
