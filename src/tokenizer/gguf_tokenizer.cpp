#include "tokenizer/gguf_tokenizer.h"

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

using OrderedJson = nlohmann::ordered_json;

namespace {

// llama.cpp's token types (tokenizer.ggml.token_type).
constexpr int64_t kControl = 3;
constexpr int64_t kUserDefined = 4;

constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

[[noreturn]] void fail(const io::GgufFile& f, ErrorKind kind, const std::string& what) {
  throw Error(kind, f.path().string() + ": " + what);
}

OrderedJson byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

OrderedJson split_then_bytes(const char* regex) {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
            byte_level(false)}}};
}

OrderedJson pre_tokenizer(const io::GgufFile& f) {
  const std::string pre = f.get_string("tokenizer.ggml.pre").value_or("default");
  if (pre == "default" || pre == "gpt2") return byte_level(true);
  if (pre == "smollm") {
    return {{"type", "Sequence"},
            {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
  }
  for (const char* name : {"llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe"}) {
    if (pre == name) return split_then_bytes(kLlama3Regex);
  }
  if (pre == "qwen2") return split_then_bytes(kQwen2Regex);
  fail(f, ErrorKind::kUnsupported,
       "tokenizer.ggml.pre \"" + pre + "\" is not supported (default, gpt2, smollm, llama3/llama-bpe, qwen2)");
}

// transformers' byte-level vocabulary keeps a token written in the byte alphabet as it is
// and respells any other token byte by byte.
std::string byte_level_spelling(const std::string& token) {
  for (std::size_t pos = 0; pos < token.size();) {
    const utf8::Char c = utf8::decode(token, pos);
    if (c.cp == utf8::kInvalid || !byte_level::byte_of_char(c.cp)) return byte_level::encode(token);
    pos += c.len;
  }
  return token;
}

bool in_byte_alphabet(const std::string& token) { return byte_level_spelling(token) == token; }

std::optional<int64_t> token_id(const io::GgufFile& f, const char* key, std::size_t vocab) {
  const auto id = f.get_uint(key);
  if (id && *id >= vocab) {
    fail(f, ErrorKind::kFormat, std::string(key) + " = " + std::to_string(*id) + " is outside the vocabulary of " +
                                    std::to_string(vocab) + " tokens");
  }
  return id ? std::optional<int64_t>(int64_t(*id)) : std::nullopt;
}

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int64_t> types;  // empty when the file has none
};

Vocab read_vocab(const io::GgufFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model").value_or("");
  if (model != "gpt2") {
    fail(f, ErrorKind::kUnsupported,
         "tokenizer.ggml.model \"" + model + "\" is not supported (gpt2, the byte-level BPE)");
  }
  Vocab v;
  auto tokens = f.get_strings("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) fail(f, ErrorKind::kFormat, "no tokenizer.ggml.tokens");
  v.tokens = std::move(*tokens);
  if (auto types = f.get_ints("tokenizer.ggml.token_type")) {
    if (types->size() != v.tokens.size()) {
      fail(f, ErrorKind::kFormat, "tokenizer.ggml.token_type has " + std::to_string(types->size()) +
                                      " entries for " + std::to_string(v.tokens.size()) + " tokens");
    }
    v.types = std::move(*types);
  }
  if (auto vocab_size = f.get_uint(f.require_string("general.architecture") + ".vocab_size");
      vocab_size && *vocab_size != v.tokens.size()) {
    fail(f, ErrorKind::kFormat, "tokenizer.ggml.tokens has " + std::to_string(v.tokens.size()) +
                                    " tokens but the vocab_size is " + std::to_string(*vocab_size));
  }
  return v;
}

}  // namespace

OrderedJson gguf_tokenizer_json(const io::GgufFile& f) {
  const Vocab v = read_vocab(f);
  const std::size_t n = v.tokens.size();
  OrderedJson vocab = OrderedJson::object();
  for (std::size_t i = 0; i < n; ++i) vocab[byte_level_spelling(v.tokens[i])] = i;

  OrderedJson merges = OrderedJson::array();
  for (const std::string& m : f.get_strings("tokenizer.ggml.merges").value_or(std::vector<std::string>{})) {
    const std::size_t space = m.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == m.size() || m.find(' ', space + 1) != std::string::npos) {
      fail(f, ErrorKind::kFormat, "tokenizer.ggml.merges entry \"" + m + "\" is not two tokens separated by one space");
    }
    merges.push_back({m.substr(0, space), m.substr(space + 1)});
  }

  OrderedJson added = OrderedJson::array();
  for (std::size_t i = 0; i < v.types.size(); ++i) {
    // A control token outside the byte alphabet is a mislabel transformers skips.
    const bool control = v.types[i] == kControl && in_byte_alphabet(v.tokens[i]);
    if (!control && v.types[i] != kUserDefined) continue;
    added.push_back({{"id", i}, {"content", v.tokens[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", control}});
  }

  const auto bos = token_id(f, "tokenizer.ggml.bos_token_id", n);
  const auto eos = token_id(f, "tokenizer.ggml.eos_token_id", n);
  const bool add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(false);
  const bool add_eos = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  // The `tokenizers` library requires both templates; the pair one is [bos] A [eos] [bos] B [eos]
  // with B's type id 1, as transformers writes it.
  OrderedJson single = OrderedJson::array(), second = OrderedJson::array();
  OrderedJson specials = OrderedJson::object();
  auto special = [&](const std::optional<int64_t>& id, const char* what) {
    if (!id) fail(f, ErrorKind::kFormat, std::string("add_") + what + "_token is set but there is no " + what + "_token_id");
    const std::string& tok = v.tokens[std::size_t(*id)];
    single.push_back({{"SpecialToken", {{"id", tok}, {"type_id", 0}}}});
    second.push_back({{"SpecialToken", {{"id", tok}, {"type_id", 1}}}});
    specials[tok] = {{"id", tok}, {"ids", {*id}}, {"tokens", {tok}}};
  };
  if (add_bos) special(bos, "bos");
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  second.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
  if (add_eos) special(eos, "eos");
  OrderedJson pair = single;
  pair.insert(pair.end(), second.begin(), second.end());

  OrderedJson t;
  t["version"] = "1.0";
  t["truncation"] = nullptr;
  t["padding"] = nullptr;
  t["added_tokens"] = added;
  t["normalizer"] = nullptr;
  t["pre_tokenizer"] = pre_tokenizer(f);
  t["post_processor"] = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
  t["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  t["model"] = {{"type", "BPE"},           {"dropout", nullptr},
                {"unk_token", nullptr},    {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""}, {"fuse_unk", false},
                {"byte_fallback", false},  {"ignore_merges", false},
                {"vocab", vocab},          {"merges", merges}};
  return t;
}

OrderedJson gguf_tokenizer_config_json(const io::GgufFile& f) {
  const Vocab v = read_vocab(f);
  const std::size_t n = v.tokens.size();
  OrderedJson c;
  c["tokenizer_class"] = "GPT2Tokenizer";
  c["add_bos_token"] = f.get_bool("tokenizer.ggml.add_bos_token").value_or(false);
  c["add_eos_token"] = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  for (const auto& [name, key] : {std::pair{"bos_token", "tokenizer.ggml.bos_token_id"},
                                  {"eos_token", "tokenizer.ggml.eos_token_id"},
                                  {"unk_token", "tokenizer.ggml.unknown_token_id"},
                                  {"pad_token", "tokenizer.ggml.padding_token_id"}}) {
    if (const auto id = token_id(f, key, n)) c[name] = v.tokens[std::size_t(*id)];
  }
  c["clean_up_tokenization_spaces"] = false;
  if (auto ctx = f.get_uint(f.require_string("general.architecture") + ".context_length")) c["model_max_length"] = *ctx;
  if (auto tmpl = f.get_string("tokenizer.chat_template")) c["chat_template"] = *tmpl;
  return c;
}

}  // namespace gptq::tok
