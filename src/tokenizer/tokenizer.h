// A Hugging Face tokenizer.json, implemented as the `tokenizers` library runs it:
// added/special tokens split out of raw text -> normalizer -> pre-tokenizer ->
// BPE model (with byte_fallback) -> post-processor (TemplateProcessing).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gptq::tok {

// Whether the post-processor's template (e.g. BOS) is applied.
enum class SpecialTokens { kAdd, kNone };
// Whether decode drops special tokens (e.g. "<s>").
enum class DecodeSpecial { kSkip, kKeep };

class Tokenizer {
 public:
  // Throws gptq::Error naming the file and what is wrong or unsupported.
  static Tokenizer load(const std::filesystem::path& tokenizer_json);
  // The tokenizer of a model: MODEL/tokenizer.json, or the one a .gguf file describes.
  static Tokenizer load_for_model(const std::filesystem::path& model);
  // A parsed tokenizer.json; `file` names it in errors.
  static Tokenizer from_json(const nlohmann::json& root, const std::string& file);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> encode(std::string_view text,
                              SpecialTokens special = SpecialTokens::kAdd) const;
  std::string decode(std::span<const int32_t> ids,
                     DecodeSpecial special = DecodeSpecial::kSkip) const;

  // The vocabulary string of one id ("▁Once", "<0x0A>", "<s>"); throws if out of range.
  const std::string& id_to_piece(int32_t id) const;
  std::optional<int32_t> piece_to_id(std::string_view piece) const;
  int32_t vocab_size() const;  // model vocab + added tokens (max id + 1)
  bool is_special(int32_t id) const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gptq::tok
