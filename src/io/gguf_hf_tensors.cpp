// GGUF tensors under Hugging Face names. llama.cpp's Llama converter reorders the rows of
// q_proj and k_proj within each head from rotate-half order (first half of the head dims,
// then the second) to interleaved pairs (its RoPE rotates adjacent values): HF row
// h·D + s·D/2 + i becomes GGUF row h·D + 2i + s (head h, half s, i < D/2, D = head_dim;
// heads = num_key_value_heads for k). transformers undoes it when reading; so do we.
#include <cstring>
#include <regex>

#include "core/error.h"
#include "io/gguf_dequant.h"
#include "io/gguf_hf.h"

namespace gptq::io {

namespace {

struct Rename {
  const char* gguf;
  const char* hf;
};

constexpr Rename kLayerTensors[] = {
    {"attn_norm", "input_layernorm"},     {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},       {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},       {"attn_output", "self_attn.o_proj"},
    {"ffn_gate", "mlp.gate_proj"},        {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

// Rows of a [heads·head_dim, ...] tensor from interleaved pairs back to rotate-half.
std::vector<std::byte> unpermute_rows(const std::vector<std::byte>& in, int64_t rows, int64_t heads,
                                      std::size_t row_bytes, const std::string& name, const GgufFile& f) {
  if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0) {
    throw Error(ErrorKind::kFormat, f.path().string() + ": tensor \"" + name + "\" has " + std::to_string(rows) +
                                        " rows, not " + std::to_string(heads) + " heads of an even head_dim");
  }
  const int64_t d = rows / heads, half = d / 2;
  std::vector<std::byte> out(in.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t s = 0; s < 2; ++s) {
      for (int64_t i = 0; i < half; ++i) {
        const int64_t hf_row = h * d + s * half + i, gguf_row = h * d + 2 * i + s;
        std::memcpy(out.data() + std::size_t(hf_row) * row_bytes, in.data() + std::size_t(gguf_row) * row_bytes,
                    row_bytes);
      }
    }
  }
  return out;
}

}  // namespace

std::string gguf_hf_tensor_name(const GgufFile& f, const std::string& name) {
  if (name == "token_embd.weight") return "model.embed_tokens.weight";
  if (name == "output_norm.weight") return "model.norm.weight";
  if (name == "output.weight") return "lm_head.weight";
  static const std::regex layer(R"(blk\.(\d+)\.([a-z_]+)\.(weight|bias))");
  std::smatch m;
  if (std::regex_match(name, m, layer)) {
    for (const auto& r : kLayerTensors) {
      if (m[2] == r.gguf) return "model.layers." + m[1].str() + "." + r.hf + "." + m[3].str();
    }
  }
  throw Error(ErrorKind::kUnsupported, f.path().string() + ": tensor \"" + name + "\" has no Hugging Face Llama counterpart");
}

HfTensor gguf_hf_tensor(const GgufFile& f, const GgufTensorInfo& t, DType dtype) {
  HfTensor out{.name = gguf_hf_tensor_name(f, t.name), .dtype = dtype, .shape = t.shape()};
  out.data = dequantize_tensor(t, dtype);
  const bool q = t.name.find(".attn_q.") != std::string::npos, k = t.name.find(".attn_k.") != std::string::npos;
  if (q || k) {
    const std::string a = f.require_string("general.architecture") + ".";
    const uint64_t heads = f.require_uint(a + "attention.head_count");
    const uint64_t groups = q ? heads : f.get_uint(a + "attention.head_count_kv").value_or(heads);
    const int64_t rows = out.shape[0];
    const std::size_t row_bytes = out.data.size() / std::size_t(rows);
    out.data = unpermute_rows(out.data, rows, int64_t(groups), row_bytes, t.name, f);
  }
  return out;
}

}  // namespace gptq::io
