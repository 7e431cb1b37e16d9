#include "model/config.h"

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/gguf_hf.h"
#include "io/json_file.h"

namespace gptq::model {

using io::Json;
namespace fs = std::filesystem;

const char* to_string(Architecture a) {
  switch (a) {
    case Architecture::kLlama: return "llama";
    case Architecture::kMistral: return "mistral";
    case Architecture::kQwen2: return "qwen2";
    case Architecture::kQwen3: return "qwen3";
  }
  return "?";
}

namespace {

[[noreturn]] void unsupported(const fs::path& file, const std::string& what) {
  throw Error(ErrorKind::kUnsupported, file.string() + ": " + what);
}

Architecture parse_architecture(const Json& j, const fs::path& file, std::string* name) {
  struct Known { const char* cls; const char* model_type; Architecture arch; };
  static constexpr Known kKnown[] = {
      {"LlamaForCausalLM", "llama", Architecture::kLlama},
      {"MistralForCausalLM", "mistral", Architecture::kMistral},
      {"Qwen2ForCausalLM", "qwen2", Architecture::kQwen2},
      {"Qwen3ForCausalLM", "qwen3", Architecture::kQwen3},
  };
  const auto archs = j.find("architectures");
  if (archs != j.end() && archs->is_array() && !archs->empty() && (*archs)[0].is_string()) {
    *name = (*archs)[0].get<std::string>();
    for (const auto& k : kKnown) {
      if (*name == k.cls) return k.arch;
    }
    unsupported(file, "architecture \"" + *name +
                          "\" is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
                          "Qwen2ForCausalLM, Qwen3ForCausalLM)");
  }
  const std::string type = io::json_get_or<std::string>(j, "model_type", "", file.string());
  for (const auto& k : kKnown) {
    if (type == k.model_type) {
      *name = k.cls;
      return k.arch;
    }
  }
  unsupported(file, "no supported \"architectures\" or \"model_type\" (found model_type \"" + type + "\")");
}

// transformers <= 4.x: "rope_theta" + "rope_scaling"; 5.x: "rope_parameters" holding both.
RopeConfig parse_rope(const Json& j, const fs::path& file) {
  const std::string what = file.string();
  RopeConfig rope;
  rope.theta = io::json_get_or<double>(j, "rope_theta", 10000.0, what);
  const Json* scaling = nullptr;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const auto it = j.find(key);
    if (it != j.end() && !it->is_null()) {
      if (!it->is_object()) throw Error(ErrorKind::kFormat, what + ": \"" + key + "\" is not an object");
      scaling = &*it;
      break;
    }
  }
  if (scaling == nullptr) return rope;
  rope.theta = io::json_get_or<double>(*scaling, "rope_theta", rope.theta, what);
  std::string type = io::json_get_or<std::string>(*scaling, "rope_type", "", what);
  if (type.empty()) type = io::json_get_or<std::string>(*scaling, "type", "default", what);
  if (type == "default") return rope;
  if (type != "llama3") unsupported(file, "rope type \"" + type + "\" is not supported (default, llama3)");
  rope.scaling = RopeScaling::kLlama3;
  rope.factor = io::json_get<double>(*scaling, "factor", what);
  rope.low_freq_factor = io::json_get<double>(*scaling, "low_freq_factor", what);
  rope.high_freq_factor = io::json_get<double>(*scaling, "high_freq_factor", what);
  rope.original_max_position = io::json_get<int64_t>(*scaling, "original_max_position_embeddings", what);
  if (rope.factor <= 0 || rope.low_freq_factor <= 0 || rope.high_freq_factor <= rope.low_freq_factor ||
      rope.original_max_position <= 0) {
    throw Error(ErrorKind::kFormat, what + ": invalid llama3 rope scaling parameters");
  }
  return rope;
}

std::vector<int32_t> parse_ids(const Json& v, const std::string& what) {
  std::vector<int32_t> ids;
  if (v.is_number_integer()) {
    ids.push_back(v.get<int32_t>());
  } else if (v.is_array()) {
    for (const auto& e : v) {
      if (!e.is_number_integer()) throw Error(ErrorKind::kFormat, what + ": eos_token_id entries must be integers");
      ids.push_back(e.get<int32_t>());
    }
  } else if (!v.is_null()) {
    throw Error(ErrorKind::kFormat, what + ": eos_token_id must be an integer or a list");
  }
  return ids;
}

// `file` names the source in messages; `gen` is generation_config.json (null if absent).
ModelConfig config_from_json(const Json& j, const Json& gen, const fs::path& file, const std::string& gen_what) {
  if (!j.is_object()) throw Error(ErrorKind::kFormat, file.string() + ": expected a JSON object");
  const std::string what = file.string();

  ModelConfig c;
  c.arch = parse_architecture(j, file, &c.architecture_name);
  c.hidden = io::json_get<int64_t>(j, "hidden_size", what);
  c.intermediate = io::json_get<int64_t>(j, "intermediate_size", what);
  c.layers = io::json_get<int64_t>(j, "num_hidden_layers", what);
  c.heads = io::json_get<int64_t>(j, "num_attention_heads", what);
  c.kv_heads = io::json_get_or<int64_t>(j, "num_key_value_heads", c.heads, what);
  c.vocab = io::json_get<int64_t>(j, "vocab_size", what);
  c.max_positions = io::json_get_or<int64_t>(j, "max_position_embeddings", 2048, what);
  c.rms_eps = io::json_get_or<double>(j, "rms_norm_eps", 1e-6, what);
  c.tie_embeddings = io::json_get_or<bool>(j, "tie_word_embeddings", false, what);
  if (c.hidden <= 0 || c.intermediate <= 0 || c.layers <= 0 || c.heads <= 0 || c.kv_heads <= 0 ||
      c.vocab <= 0 || c.max_positions <= 0) {
    throw Error(ErrorKind::kFormat, what + ": sizes must be positive");
  }
  if (c.heads % c.kv_heads != 0) {
    throw Error(ErrorKind::kFormat, what + ": num_attention_heads (" + std::to_string(c.heads) +
                                        ") is not a multiple of num_key_value_heads (" +
                                        std::to_string(c.kv_heads) + ")");
  }
  c.head_dim = io::json_get_or<int64_t>(j, "head_dim", 0, what);
  if (c.head_dim == 0) {
    if (c.hidden % c.heads != 0) throw Error(ErrorKind::kFormat, what + ": hidden_size not divisible by heads and no head_dim");
    c.head_dim = c.hidden / c.heads;
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) throw Error(ErrorKind::kFormat, what + ": head_dim must be positive and even");
  c.rope = parse_rope(j, file);

  const std::string act = io::json_get_or<std::string>(j, "hidden_act", "silu", what);
  if (act != "silu") unsupported(file, "hidden_act \"" + act + "\" is not supported (silu)");

  switch (c.arch) {
    case Architecture::kLlama:
      c.attention_bias = io::json_get_or<bool>(j, "attention_bias", false, what);
      c.attention_out_bias = c.attention_bias;
      c.mlp_bias = io::json_get_or<bool>(j, "mlp_bias", false, what);
      break;
    case Architecture::kMistral:
      c.sliding_window = io::json_get_or<int64_t>(j, "sliding_window", 0, what);
      break;
    case Architecture::kQwen2:
      c.attention_bias = true;  // Qwen2 always has q/k/v biases, never an o bias
      if (io::json_get_or<bool>(j, "use_sliding_window", false, what)) {
        unsupported(file, "Qwen2 use_sliding_window=true is not supported");
      }
      break;
    case Architecture::kQwen3:
      c.qk_norm = true;
      c.attention_bias = io::json_get_or<bool>(j, "attention_bias", false, what);
      c.attention_out_bias = c.attention_bias;
      if (io::json_get_or<bool>(j, "use_sliding_window", false, what)) {
        unsupported(file, "Qwen3 use_sliding_window=true is not supported");
      }
      break;
  }
  if (c.sliding_window < 0) throw Error(ErrorKind::kFormat, what + ": sliding_window must be >= 0");
  if (c.sliding_window >= c.max_positions) c.sliding_window = 0;  // never binds

  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) c.bos_id = j["bos_token_id"].get<int32_t>();
  if (j.contains("eos_token_id")) c.eos_ids = parse_ids(j["eos_token_id"], what);
  if (gen.is_object()) {
    if (gen.contains("eos_token_id")) {
      auto ids = parse_ids(gen["eos_token_id"], gen_what);
      if (!ids.empty()) c.eos_ids = std::move(ids);
    }
    if (gen.contains("bos_token_id") && gen["bos_token_id"].is_number_integer()) c.bos_id = gen["bos_token_id"].get<int32_t>();
  }
  return c;
}

}  // namespace

void require_model_dir(const fs::path& model, ModelFiles need) {
  // Appended, not "'" + model.string(): GCC 12 reports a false -Wrestrict inside
  // operator+(const char*, std::string&&) at -O3.
  std::string quoted = "'";
  quoted += model.string();
  quoted += '\'';
  const bool gguf = io::is_gguf_path(model);
  std::error_code ec;
  const fs::file_status st = fs::status(model, ec);
  if (!fs::exists(st)) {
    throw Error(ErrorKind::kIo, (gguf ? "model file " : "model directory ") + quoted + " does not exist");
  }
  if (gguf && fs::is_regular_file(st)) return;  // its metadata holds the config and the tokenizer
  if (!fs::is_directory(st)) {
    throw Error(ErrorKind::kIo, quoted + " is not a directory; a model is a Hugging Face checkpoint directory "
                                         "(config.json, tokenizer.json, *.safetensors) or a .gguf file");
  }
  const bool config = need != ModelFiles::kTokenizer;
  const bool tokenizer = need != ModelFiles::kConfig;
  if (config && !fs::exists(model / "config.json")) {
    throw Error(ErrorKind::kIo, quoted + " is not a model directory: it has no config.json");
  }
  if (tokenizer && !fs::exists(model / "tokenizer.json")) {
    throw Error(ErrorKind::kIo, quoted + " has no tokenizer.json (the Hugging Face fast-tokenizer file this "
                                         "command needs)");
  }
}

ModelConfig load_config(const fs::path& dir) {
  require_model_dir(dir, ModelFiles::kConfig);
  if (io::is_gguf_path(dir)) {
    const io::GgufFile f(dir);
    // The GGUF's metadata, mapped as transformers maps it, then read like a config.json.
    const Json j = Json::parse(io::gguf_hf_config(f).dump());
    const Json g = Json::parse(io::gguf_hf_generation_config(f).dump());
    return config_from_json(j, g, dir, dir.string());
  }
  const fs::path file = dir / "config.json";
  const fs::path gen = dir / "generation_config.json";
  return config_from_json(io::read_json_file(file), fs::exists(gen) ? io::read_json_file(gen) : Json(), file,
                          gen.string());
}

DType default_activations(const std::filesystem::path& model, std::string_view spec) {
  if (spec == "cpu") return DType::kF32;
  const io::Checkpoint ckpt(model);
  const io::TensorView* e = ckpt.find("model.embed_tokens.weight");
  if (e != nullptr && (e->dtype == DType::kF16 || e->dtype == DType::kBF16 || e->dtype == DType::kF32)) return e->dtype;
  return DType::kF16;
}

}  // namespace gptq::model
