#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "io/gguf.h"
#include "io/json_file.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/gguf_tokenizer.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"

namespace gptq::tok {

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Bpe> model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  std::unique_ptr<AddedVocabulary> added;
};

namespace {

Json read_json(const std::filesystem::path& path) {
  const std::string text = io::read_text_file(path);
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw Error(ErrorKind::kFormat, path.string() + ": not valid JSON: " + e.what());
  }
}

const Json& field_or_null(const Json& root, const char* key) {
  static const Json null_json;
  const auto it = root.find(key);
  return it == root.end() ? null_json : *it;
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& tokenizer_json) {
  return from_json(read_json(tokenizer_json), tokenizer_json.string());
}

Tokenizer Tokenizer::load_for_model(const std::filesystem::path& model) {
  if (io::is_gguf_path(model)) {
    const io::GgufFile f(model);
    return from_json(Json::parse(gguf_tokenizer_json(f).dump()), model.string() + " (tokenizer)");
  }
  return load(model / "tokenizer.json");
}

Tokenizer Tokenizer::from_json(const Json& root, const std::string& file) {
  if (!root.is_object()) fail_format(file, "expected a JSON object at the top level");
  if (!field_or_null(root, "truncation").is_null()) {
    fail_unsupported(file, "\"truncation\" is set; truncating encodings is not supported");
  }
  auto impl = std::make_unique<Impl>();
  impl->normalizer = make_normalizer(field_or_null(root, "normalizer"), file + ": normalizer");
  impl->pre_tokenizer = make_pre_tokenizer(field_or_null(root, "pre_tokenizer"), file + ": pre_tokenizer");
  impl->post_processor = make_post_processor(field_or_null(root, "post_processor"), file + ": post_processor");
  impl->decoder = make_decoder(field_or_null(root, "decoder"), file + ": decoder");

  const std::string where_model = file + ": model";
  const Json& model = require(root, "model", file);
  if (!model.is_object()) fail_format(where_model, "expected an object");
  // Files written before the type tag existed are recognised by their merges.
  const std::string type = model.contains("type") ? get_type(model, where_model)
                           : model.contains("merges") ? "BPE"
                                                      : "";
  if (type != "BPE") {
    fail_unsupported(where_model, "unsupported model type \"" + type + "\" (only BPE is supported)");
  }
  impl->model = std::make_unique<Bpe>(model, where_model);
  impl->added = std::make_unique<AddedVocabulary>(field_or_null(root, "added_tokens"), impl->normalizer.get(),
                                                  file + ": added_tokens");
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, SpecialTokens special) const {
  const Impl& m = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<Piece> words;
  for (TextOrToken& raw : m.added->split_raw(text)) {
    if (raw.id) {
      ids.push_back(*raw.id);
      continue;
    }
    const std::string normalized = m.normalizer ? m.normalizer->normalize(std::move(raw.text)) : std::move(raw.text);
    for (TextOrToken& part : m.added->split_normalized(normalized, raw.at_start)) {
      if (part.id) {
        ids.push_back(*part.id);
        continue;
      }
      if (part.text.empty()) continue;
      words.clear();
      words.push_back({std::move(part.text), part.at_start});
      if (m.pre_tokenizer) m.pre_tokenizer->pre_tokenize(words);
      for (const Piece& word : words) m.model->tokenize(word.text, ids);
    }
  }
  if (special == SpecialTokens::kAdd && m.post_processor) ids = m.post_processor->process(std::move(ids));
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, DecodeSpecial special) const {
  const Impl& m = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    // Ids nobody knows are skipped, as the library does.
    if (const AddedToken* added = m.added->find(id)) {
      if (special == DecodeSpecial::kSkip && added->special) continue;
      tokens.push_back(added->content);
    } else if (const std::string* token = m.model->id_to_token(id)) {
      tokens.push_back(*token);
    }
  }
  std::string out;
  if (m.decoder) {
    for (const std::string& piece : m.decoder->decode_chain(std::move(tokens))) out += piece;
    return out;
  }
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ' ';
    out += tokens[i];
  }
  return out;
}

const std::string& Tokenizer::id_to_piece(int32_t id) const {
  if (const AddedToken* added = impl_->added->find(id)) return added->content;
  if (const std::string* token = impl_->model->id_to_token(id)) return *token;
  throw Error(ErrorKind::kInvalidArgument, "token id " + std::to_string(id) + " is not in the vocabulary");
}

std::optional<int32_t> Tokenizer::piece_to_id(std::string_view piece) const {
  if (const auto id = impl_->added->find(piece)) return id;
  return impl_->model->token_to_id(piece);
}

int32_t Tokenizer::vocab_size() const { return std::max(impl_->model->max_id(), impl_->added->max_id()) + 1; }

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* added = impl_->added->find(id);
  return added != nullptr && added->special;
}

}  // namespace gptq::tok
