// Added tokens (special or not): found in the text before the model sees it,
// as the library's AddedVocabulary does. Tokens with normalized=false are
// matched in the raw text; normalized=true ones in each normalized piece.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/json_util.h"

namespace gptq::tok {

class Normalizer;

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;  // only match when not inside a word
  bool lstrip = false;       // swallow whitespace on the left
  bool rstrip = false;       // swallow whitespace on the right
  bool normalized = false;   // match after normalization rather than in raw text
  bool special = false;      // dropped by decode(kSkip)
};

// A run of text, or one matched added token.
struct TextOrToken {
  std::string text;            // the matched span for a token
  std::optional<int32_t> id;   // set for a token
  bool at_start = false;       // starts at offset 0 of the original input
};

class AddedVocabulary {
 public:
  // `normalizer` (may be null) rewrites the patterns of normalized tokens.
  AddedVocabulary(const Json& added_tokens, const Normalizer* normalizer, const std::string& where);

  // Pass one: raw-text tokens. Every span of `text` lands in exactly one result.
  std::vector<TextOrToken> split_raw(std::string_view text) const;
  // Pass two, on one normalized piece: normalized tokens.
  std::vector<TextOrToken> split_normalized(std::string_view text, bool at_start) const;

  const AddedToken* find(int32_t id) const;
  std::optional<int32_t> find(std::string_view content) const;
  int32_t max_id() const { return max_id_; }

 private:
  // A byte trie over token patterns, for leftmost-longest matching.
  struct Trie {
    struct Node {
      std::unordered_map<unsigned char, int32_t> next;
      int32_t token = -1;  // index into tokens_ of the pattern ending here
    };
    std::vector<Node> nodes{1};
    void insert(std::string_view pattern, int32_t token);
    // Longest pattern starting at text[pos]: {token index, length} or {-1, 0}.
    std::pair<int32_t, std::size_t> longest_at(std::string_view text, std::size_t pos) const;
  };
  std::vector<TextOrToken> split(std::string_view text, bool at_start, const Trie& trie) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, std::size_t> by_id_;
  Trie raw_trie_, normalized_trie_;
  int32_t max_id_ = -1;
};

}  // namespace gptq::tok
