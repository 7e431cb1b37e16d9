#include "model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/splitmix.h"
#include "format/gptq_format.h"
#include "io/checkpoint_writer.h"

namespace gptq::model {

const std::vector<SynthShape>& synth_shapes() {
  // From each model's config.json on the Hugging Face hub (meta-llama/Llama-3.2-1B,
  // meta-llama/Llama-3.1-8B, meta-llama/Llama-3.1-70B, Qwen/Qwen2.5-7B).
  static const std::vector<SynthShape> shapes = {
      {.name = "llama-3.2-1b", .hidden = 2048, .intermediate = 8192, .layers = 16, .heads = 32, .kv_heads = 8,
       .head_dim = 64, .vocab = 128256, .max_positions = 131072, .rope_theta = 500000.0, .rope_llama3_factor = 32.0,
       .tied = true},
      {.name = "llama-3.1-8b", .hidden = 4096, .intermediate = 14336, .layers = 32, .heads = 32, .kv_heads = 8,
       .head_dim = 128, .vocab = 128256, .max_positions = 131072, .rope_theta = 500000.0, .rope_llama3_factor = 8.0},
      {.name = "llama-3.1-70b", .hidden = 8192, .intermediate = 28672, .layers = 80, .heads = 64, .kv_heads = 8,
       .head_dim = 128, .vocab = 128256, .max_positions = 131072, .rope_theta = 500000.0, .rope_llama3_factor = 8.0},
      {.name = "qwen2.5-7b", .architecture = "Qwen2ForCausalLM", .model_type = "qwen2", .hidden = 3584,
       .intermediate = 18944, .layers = 28, .heads = 28, .kv_heads = 4, .head_dim = 128, .vocab = 152064,
       .max_positions = 32768, .rope_theta = 1000000.0, .rms_eps = 1e-6, .attention_bias = true},
  };
  return shapes;
}

namespace {

// Uniform in [-a, a).
float uniform(SplitMix64& r, float a) { return (r.unit() * 2.0f - 1.0f) * a; }

std::span<const std::byte> bytes_of(const auto& v) { return std::as_bytes(std::span(v)); }

nlohmann::ordered_json config_json(const SynthShape& s, int64_t layers, DType dtype) {
  nlohmann::ordered_json c = {{"architectures", {s.architecture}},
                              {"model_type", s.model_type},
                              {"hidden_size", s.hidden},
                              {"intermediate_size", s.intermediate},
                              {"num_hidden_layers", layers},
                              {"num_attention_heads", s.heads},
                              {"num_key_value_heads", s.kv_heads},
                              {"head_dim", s.head_dim},
                              {"vocab_size", s.vocab},
                              {"max_position_embeddings", s.max_positions},
                              {"rms_norm_eps", s.rms_eps},
                              {"rope_theta", s.rope_theta},
                              {"hidden_act", "silu"},
                              {"tie_word_embeddings", s.tied},
                              {"attention_bias", s.attention_bias},
                              {"bos_token_id", 1},
                              {"eos_token_id", 2},
                              {"torch_dtype", dtype == DType::kBF16 ? "bfloat16" : dtype == DType::kF16 ? "float16" : "float32"}};
  if (s.rope_llama3_factor > 0) {
    c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", s.rope_llama3_factor}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  }
  return c;
}

// An added special token with every field the tokenizers library requires (it refuses
// a tokenizer.json whose added token lacks one: "missing field `single_word`").
nlohmann::ordered_json special(int id, const char* content) {
  return {{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", false}, {"special", true}};
}

// Byte-fallback BPE: <unk>, <s>, </s>, the 256 byte tokens, then filler pieces up to
// `vocab`, no merges: any text encodes (as bytes), every id decodes.
}  // namespace

std::string synthetic_tokenizer_json(int64_t vocab) {
  nlohmann::ordered_json v;
  v["<unk>"] = 0;
  v["<s>"] = 1;
  v["</s>"] = 2;
  char buf[16];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    v[buf] = 3 + b;
  }
  for (int64_t i = 259; i < vocab; ++i) v["<synth_" + std::to_string(i) + ">"] = i;
  nlohmann::ordered_json t = {
      {"version", "1.0"},
      {"added_tokens", {special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer", nullptr},
      {"post_processor", nullptr},
      {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}}},
      {"model",
       {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"vocab", v}, {"merges", nlohmann::json::array()}}}};
  return t.dump();
}

namespace {

class Writer {
 public:
  Writer(const SynthOptions& o, io::CheckpointWriter& w) : o_(o), w_(w), rng_{o.seed * 0x1234567ull + 1} {}

  void dense(const std::string& name, int64_t out, int64_t in, float scale) {
    std::vector<uint16_t> h(static_cast<std::size_t>(out * in));
    std::vector<float> f;
    if (o_.dtype == DType::kF32) f.resize(h.size());
    fill(h.size(), [&](SplitMix64& r, std::size_t i) {
      const float v = uniform(r, scale);
      if (o_.dtype == DType::kF32) f[i] = v;
      else h[i] = o_.dtype == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v);
    });
    if (o_.dtype == DType::kF32) {
      w_.add_tensor(name, DType::kF32, {out, in}, bytes_of(f));
    } else {
      w_.add_tensor(name, o_.dtype, {out, in}, bytes_of(h));
    }
  }
  void vector(const std::string& name, int64_t n, float value) {
    std::vector<float> f(static_cast<std::size_t>(n), value);
    w_.add_tensor(name, DType::kF32, {n}, bytes_of(f));
  }
  // GPTQ v1 symmetric: random codes, zero 2^(bits-1) (stored minus one), scales sized
  // so the dequantized weights have the dense init's spread.
  void gptq(const std::string& name, int64_t out, int64_t in, float scale) {
    const int bits = o_.gptq_bits;
    const int64_t G = o_.group_size <= 0 ? 1 : (in + o_.group_size - 1) / o_.group_size;
    std::vector<int32_t> qweight(static_cast<std::size_t>(quant::qweight_rows(in, bits) * out));
    // Random words are random codes at every width (3-bit codes crossing words too).
    fill(qweight.size(), [&](SplitMix64& r, std::size_t i) { qweight[i] = int32_t(uint32_t(r.next())); });
    const int64_t zc = quant::qzeros_cols(out, bits);
    std::vector<int32_t> qzeros(std::size_t(G * zc), 0);
    const uint32_t stored = quant::stored_zero(1 << (bits - 1), bits, quant::Format::kV1);
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t n = 0; n < out; ++n) quant::set_code(qzeros.data() + g * zc, 1, n, bits, stored);
    }
    std::vector<uint16_t> scales(static_cast<std::size_t>(G * out));
    const float step = scale / float(1 << (bits - 1));
    for (auto& s : scales) s = f32_to_f16(step * (0.75f + 0.5f * std::fabs(uniform(rng_, 1.0f))));
    std::vector<int32_t> g_idx(static_cast<std::size_t>(in));
    for (int64_t k = 0; k < in; ++k) g_idx[std::size_t(k)] = int32_t(o_.group_size <= 0 ? 0 : k / o_.group_size);
    w_.add_tensor(name + ".qweight", DType::kI32, {quant::qweight_rows(in, bits), out}, bytes_of(qweight));
    w_.add_tensor(name + ".qzeros", DType::kI32, {G, zc}, bytes_of(qzeros));
    w_.add_tensor(name + ".scales", DType::kF16, {G, out}, bytes_of(scales));
    w_.add_tensor(name + ".g_idx", DType::kI32, {in}, bytes_of(g_idx));
  }

 private:
  // set(rng, i) for i < n, in parallel chunks with their own streams (drawn from the
  // writer's generator once per tensor): the bytes do not depend on the thread count,
  // and an 8B-shaped checkpoint (16 GB) is written at disk speed, not at one core's.
  template <class Set>
  void fill(std::size_t n, Set&& set) {
    constexpr std::size_t kChunk = std::size_t(1) << 20;
    const uint64_t base = rng_.next();
    const int64_t chunks = int64_t((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      SplitMix64 r{base ^ (uint64_t(c + 1) * 0xd1b54a32d192ed03ull)};
      const std::size_t end = std::min(n, std::size_t(c + 1) * kChunk);
      for (std::size_t i = std::size_t(c) * kChunk; i < end; ++i) set(r, i);
    }
  }

  const SynthOptions& o_;
  io::CheckpointWriter& w_;
  SplitMix64 rng_;
};

}  // namespace

uint64_t write_synthetic(const SynthOptions& o) {
  const SynthShape* s = nullptr;
  std::string known;
  for (const auto& c : synth_shapes()) {
    if (c.name == o.shape) s = &c;
    known += (known.empty() ? "" : ", ") + c.name;
  }
  if (s == nullptr) throw Error(ErrorKind::kInvalidArgument, "unknown shape \"" + o.shape + "\" (known: " + known + ")");
  if (o.gptq_bits != 0 && !quant::bits_supported(o.gptq_bits)) {
    throw Error(ErrorKind::kInvalidArgument, "--gptq " + std::to_string(o.gptq_bits) + ": bits must be 2, 3, 4 or 8");
  }
  if (o.gptq_bits != 0 && o.group_size != -1 && (o.group_size <= 0 || s->hidden % o.group_size != 0 ||
                                                 s->intermediate % o.group_size != 0)) {
    throw Error(ErrorKind::kInvalidArgument, "--group-size " + std::to_string(o.group_size) +
                                                 " must be -1 or divide the shape's hidden and MLP sizes");
  }
  const int64_t layers = o.layers > 0 ? std::min(o.layers, s->layers) : s->layers;
  io::CheckpointWriter w(o.out, {.max_shard_bytes = o.max_shard_bytes, .overwrite = o.overwrite});
  Writer t(o, w);
  // Weights uniform in ±sqrt(3)·0.02 (std 0.02, HF's initializer_range); norms 1.
  const float a = 0.0346f;
  t.dense("model.embed_tokens.weight", s->vocab, s->hidden, a);
  const int64_t q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.vector(p + "input_layernorm.weight", s->hidden, 1.0f);
    t.vector(p + "post_attention_layernorm.weight", s->hidden, 1.0f);
    const std::pair<const char*, std::pair<int64_t, int64_t>> linears[] = {
        {"self_attn.q_proj", {q, s->hidden}},          {"self_attn.k_proj", {kv, s->hidden}},
        {"self_attn.v_proj", {kv, s->hidden}},         {"self_attn.o_proj", {s->hidden, q}},
        {"mlp.gate_proj", {s->intermediate, s->hidden}}, {"mlp.up_proj", {s->intermediate, s->hidden}},
        {"mlp.down_proj", {s->hidden, s->intermediate}}};
    for (const auto& [name, shape] : linears) {
      if (o.gptq_bits != 0) {
        t.gptq(p + name, shape.first, shape.second, a);
      } else {
        t.dense(p + name + ".weight", shape.first, shape.second, a);
      }
      if (s->attention_bias && std::string(name).find("self_attn.o") == std::string::npos &&
          std::string(name).starts_with("self_attn")) {
        t.vector(p + name + ".bias", shape.first, 0.0f);
      }
    }
  }
  t.vector("model.norm.weight", s->hidden, 1.0f);
  if (!s->tied) t.dense("lm_head.weight", s->vocab, s->hidden, a);
  nlohmann::ordered_json config = config_json(*s, layers, o.dtype);
  if (o.gptq_bits != 0) {
    config["quantization_config"] = {{"quant_method", "gptq"},     {"bits", o.gptq_bits},
                                     {"group_size", o.group_size}, {"desc_act", false},
                                     {"sym", true},                {"checkpoint_format", "gptq"},
                                     {"meta", {{"quantizer", "gptq.cpp synth"}}}};
  }
  w.add_file("config.json", config.dump(2) + "\n");
  w.add_file("generation_config.json", R"({"bos_token_id": 1, "eos_token_id": 2})" "\n");
  w.add_file("tokenizer.json", synthetic_tokenizer_json(s->vocab));
  return w.commit().tensor_bytes;
}

}  // namespace gptq::model
