// The BPE model: splits one pre-tokenized word into vocabulary ids by applying
// merges lowest rank first, like the library's Word::merge_all.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/json_util.h"

namespace gptq::tok {

// Lets unordered_map<std::string, ...> be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using VocabMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class Bpe {
 public:
  // `model` is the tokenizer.json "model" object (type "BPE").
  Bpe(const Json& model, const std::string& where);

  // Appends the ids of `word` to `out`; an empty word yields nothing.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // nullptr for an id the vocabulary does not hold.
  const std::string* id_to_token(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(tokens_.size()) - 1; }

 private:
  struct MergeResult {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void load_merges(const Json& merges, const std::string& where);
  const MergeResult* find_merge(int32_t a, int32_t b) const;
  void merge_all(std::vector<int32_t>& ids) const;

  VocabMap vocab_;
  std::vector<std::string> tokens_;  // by id; ids the vocab skips hold ""
  std::vector<bool> has_token_;
  std::unordered_map<uint64_t, MergeResult> merges_;
  std::array<int32_t, 256> byte_ids_{};  // <0xNN> ids, -1 where absent
  std::optional<int32_t> unk_id_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
};

}  // namespace gptq::tok
