#include "tokenizer/gguf_tokenizer.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/sentencepiece_merges.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

using OrderedJson = nlohmann::ordered_json;

namespace {

// llama.cpp's token types (tokenizer.ggml.token_type): 0 undefined, 1 normal, 2 unknown,
// 3 control, 4 user-defined, 5 unused, 6 byte.
constexpr int64_t kControl = 3;
constexpr int64_t kUserDefined = 4;
constexpr int64_t kMaxTokenType = 6;

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

enum class Model { kByteLevel, kSentencePiece };  // tokenizer.ggml.model "gpt2", "llama"

struct Vocab {
  Model model = Model::kByteLevel;
  std::vector<std::string> tokens;
  std::vector<int64_t> types;   // empty when the file has none
  std::vector<double> scores;   // empty when the file has none
};

template <class T>
void require_one_per_token(const io::GgufFile& f, const char* key, const std::vector<T>& values, std::size_t tokens) {
  if (values.size() != tokens) {
    fail(f, ErrorKind::kFormat, std::string(key) + " has " + std::to_string(values.size()) + " entries for " +
                                    std::to_string(tokens) + " tokens");
  }
}

Vocab read_vocab(const io::GgufFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model").value_or("");
  Vocab v;
  if (model == "gpt2") {
    v.model = Model::kByteLevel;
  } else if (model == "llama") {
    v.model = Model::kSentencePiece;
  } else {
    fail(f, ErrorKind::kUnsupported,
         "tokenizer.ggml.model \"" + model + "\" is not supported (gpt2, the byte-level BPE; llama, SentencePiece)");
  }
  auto tokens = f.get_strings("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) fail(f, ErrorKind::kFormat, "no tokenizer.ggml.tokens");
  v.tokens = std::move(*tokens);
  if (auto types = f.get_ints("tokenizer.ggml.token_type")) {
    require_one_per_token(f, "tokenizer.ggml.token_type", *types, v.tokens.size());
    for (std::size_t i = 0; i < types->size(); ++i) {
      if ((*types)[i] < 0 || (*types)[i] > kMaxTokenType) {
        fail(f, ErrorKind::kFormat, "tokenizer.ggml.token_type[" + std::to_string(i) + "] = " +
                                        std::to_string((*types)[i]) + " is not a llama.cpp token type (0..6)");
      }
    }
    v.types = std::move(*types);
  }
  if (auto scores = f.get_floats("tokenizer.ggml.scores")) {
    require_one_per_token(f, "tokenizer.ggml.scores", *scores, v.tokens.size());
    for (std::size_t i = 0; i < scores->size(); ++i) {
      if (!std::isfinite((*scores)[i])) {
        fail(f, ErrorKind::kFormat, "tokenizer.ggml.scores[" + std::to_string(i) + "] is not finite");
      }
    }
    v.scores = std::move(*scores);
  }
  if (auto vocab_size = f.get_uint(f.require_string("general.architecture") + ".vocab_size");
      vocab_size && *vocab_size != v.tokens.size()) {
    fail(f, ErrorKind::kFormat, "tokenizer.ggml.tokens has " + std::to_string(v.tokens.size()) +
                                    " tokens but the vocab_size is " + std::to_string(*vocab_size));
  }
  return v;
}

// The file's merges, "left right" each.
OrderedJson file_merges(const io::GgufFile& f, const std::vector<std::string>& list) {
  OrderedJson merges = OrderedJson::array();
  for (const std::string& m : list) {
    const std::size_t space = m.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == m.size() || m.find(' ', space + 1) != std::string::npos) {
      fail(f, ErrorKind::kFormat, "tokenizer.ggml.merges entry \"" + m + "\" is not two tokens separated by one space");
    }
    merges.push_back({m.substr(0, space), m.substr(space + 1)});
  }
  return merges;
}

// The parts of tokenizer.json that differ between the two models (both have no normalizer).
struct Pipeline {
  OrderedJson pre_tokenizer, decoder, model;
};

// transformers' LlamaTokenizer over the file's pieces as they are spelled: Metaspace ("▁" for
// a space, prepended to the text's first part unless it starts with one; transformers ignores
// tokenizer.ggml.add_space_prefix), BPE with byte fallback and merges from the file or else
// from the scores, and the decoder that undoes it.
Pipeline sentencepiece_pipeline(const io::GgufFile& f, const Vocab& v) {
  if (const std::string pre = f.get_string("tokenizer.ggml.pre").value_or("default"); pre != "default") {
    fail(f, ErrorKind::kUnsupported,
         "tokenizer.ggml.pre \"" + pre + "\" is not supported with a SentencePiece vocabulary (default)");
  }
  OrderedJson vocab = OrderedJson::object();
  for (std::size_t i = 0; i < v.tokens.size(); ++i) vocab[v.tokens[i]] = i;
  OrderedJson merges = OrderedJson::array();
  if (auto list = f.get_strings("tokenizer.ggml.merges")) {
    merges = file_merges(f, *list);
  } else if (!v.scores.empty()) {
    for (auto& [left, right] : merges_from_scores(v.tokens, v.scores)) merges.push_back({left, right});
  } else {
    fail(f, ErrorKind::kFormat, "a SentencePiece vocabulary needs tokenizer.ggml.merges or tokenizer.ggml.scores");
  }
  return {.pre_tokenizer = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}},
          .decoder = {{"type", "Sequence"},
                      {"decoders",
                       {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                        {{"type", "ByteFallback"}},
                        {{"type", "Fuse"}},
                        {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}},
          .model = {{"type", "BPE"},           {"dropout", nullptr},
                    {"unk_token", nullptr},    {"continuing_subword_prefix", nullptr},
                    {"end_of_word_suffix", nullptr}, {"fuse_unk", true},
                    {"byte_fallback", true},   {"ignore_merges", false},
                    {"vocab", vocab},          {"merges", merges}}};
}

// transformers' GPT2Tokenizer: the vocabulary respelled in the byte alphabet, ByteLevel
// decoding, and the split `tokenizer.ggml.pre` names.
Pipeline byte_level_pipeline(const io::GgufFile& f, const Vocab& v) {
  OrderedJson vocab = OrderedJson::object();
  for (std::size_t i = 0; i < v.tokens.size(); ++i) vocab[byte_level_spelling(v.tokens[i])] = i;
  const auto merges = f.get_strings("tokenizer.ggml.merges").value_or(std::vector<std::string>{});
  return {.pre_tokenizer = pre_tokenizer(f),
          .decoder = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}},
          .model = {{"type", "BPE"},           {"dropout", nullptr},
                    {"unk_token", nullptr},    {"continuing_subword_prefix", ""},
                    {"end_of_word_suffix", ""}, {"fuse_unk", false},
                    {"byte_fallback", false},  {"ignore_merges", false},
                    {"vocab", vocab},          {"merges", file_merges(f, merges)}}};
}

// llama.cpp adds BOS to a SentencePiece vocabulary whose file does not say otherwise, and
// transformers follows it.
bool adds_bos(const io::GgufFile& f, const Vocab& v) {
  return f.get_bool("tokenizer.ggml.add_bos_token").value_or(v.model == Model::kSentencePiece);
}

constexpr std::pair<const char*, const char*> kSpecialTokenKeys[] = {{"bos_token", "tokenizer.ggml.bos_token_id"},
                                                                     {"eos_token", "tokenizer.ggml.eos_token_id"},
                                                                     {"unk_token", "tokenizer.ggml.unknown_token_id"},
                                                                     {"pad_token", "tokenizer.ggml.padding_token_id"}};

}  // namespace

OrderedJson gguf_tokenizer_json(const io::GgufFile& f) {
  const Vocab v = read_vocab(f);
  const std::size_t n = v.tokens.size();

  // Special added tokens: those typed control (in a byte-level vocabulary, only those spelled
  // in the byte alphabet: one that is not is a mislabel transformers skips) and those the file
  // names bos/eos/unk/pad, which transformers registers as its special tokens. User-defined
  // tokens are added tokens that are not special.
  std::set<std::size_t> special_ids;
  for (const auto& [name, key] : kSpecialTokenKeys) {
    if (const auto id = token_id(f, key, n)) special_ids.insert(std::size_t(*id));
  }
  OrderedJson added = OrderedJson::array();
  for (std::size_t i = 0; i < n; ++i) {
    const int64_t type = v.types.empty() ? 0 : v.types[i];
    const bool control = type == kControl && (v.model == Model::kSentencePiece || in_byte_alphabet(v.tokens[i]));
    const bool special = control || special_ids.contains(i);
    if (!special && type != kUserDefined) continue;
    added.push_back({{"id", i}, {"content", v.tokens[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", special}});
  }
  const auto bos = token_id(f, "tokenizer.ggml.bos_token_id", n);
  const auto eos = token_id(f, "tokenizer.ggml.eos_token_id", n);
  const bool add_bos = adds_bos(f, v);
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

  Pipeline p = v.model == Model::kSentencePiece ? sentencepiece_pipeline(f, v) : byte_level_pipeline(f, v);
  OrderedJson t;
  t["version"] = "1.0";
  t["truncation"] = nullptr;
  t["padding"] = nullptr;
  t["added_tokens"] = added;
  t["normalizer"] = nullptr;
  t["pre_tokenizer"] = std::move(p.pre_tokenizer);
  t["post_processor"] = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
  t["decoder"] = std::move(p.decoder);
  t["model"] = std::move(p.model);
  return t;
}

OrderedJson gguf_tokenizer_config_json(const io::GgufFile& f) {
  const Vocab v = read_vocab(f);
  const std::size_t n = v.tokens.size();
  OrderedJson c;
  c["tokenizer_class"] = v.model == Model::kSentencePiece ? "LlamaTokenizer" : "GPT2Tokenizer";
  c["add_bos_token"] = adds_bos(f, v);
  c["add_eos_token"] = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  for (const auto& [name, key] : kSpecialTokenKeys) {
    if (const auto id = token_id(f, key, n)) c[name] = v.tokens[std::size_t(*id)];
  }
  c["clean_up_tokenization_spaces"] = false;
  if (auto ctx = f.get_uint(f.require_string("general.architecture") + ".context_length")) c["model_max_length"] = *ctx;
  if (auto tmpl = f.get_string("tokenizer.chat_template")) c["chat_template"] = *tmpl;
  return c;
}

}  // namespace gptq::tok
