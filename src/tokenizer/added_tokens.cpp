#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/normalizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

namespace {

// single_word looks at the neighbouring character with the library's \w.
bool is_word_char_at(std::string_view text, std::size_t pos) {
  static const Regex word(R"(\w)", "added token single_word check");
  const std::size_t len = utf8::decode(text, pos).len;
  const auto found = word.find_all(text.substr(pos, len));
  return !found.empty() && found.front().second > found.front().first;
}

// Start of the run of whitespace that ends `text` (text.size() if none).
std::size_t trailing_space_start(std::string_view text) {
  std::size_t start = text.size();
  while (start > 0) {
    const std::size_t prev = utf8::last_char_start(text.substr(0, start));
    if (!utf8::is_whitespace(utf8::decode(text, prev).cp)) break;
    start = prev;
  }
  return start;
}

std::size_t leading_space_length(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const utf8::Char c = utf8::decode(text, pos);
    if (!utf8::is_whitespace(c.cp)) break;
    pos += c.len;
  }
  return pos;
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view pattern, int32_t token) {
  int32_t node = 0;
  for (const char c : pattern) {
    const auto key = static_cast<unsigned char>(c);
    const auto it = nodes[node].next.find(key);
    if (it != nodes[node].next.end()) {
      node = it->second;
    } else {
      nodes.emplace_back();
      const auto child = static_cast<int32_t>(nodes.size() - 1);
      nodes[node].next.emplace(key, child);
      node = child;
    }
  }
  // A later duplicate pattern replaces the earlier one.
  nodes[node].token = token;
}

std::pair<int32_t, std::size_t> AddedVocabulary::Trie::longest_at(std::string_view text, std::size_t pos) const {
  std::pair<int32_t, std::size_t> best{-1, 0};
  int32_t node = 0;
  for (std::size_t i = pos; i < text.size(); ++i) {
    const auto it = nodes[node].next.find(static_cast<unsigned char>(text[i]));
    if (it == nodes[node].next.end()) break;
    node = it->second;
    if (nodes[node].token >= 0) best = {nodes[node].token, i + 1 - pos};
  }
  return best;
}

AddedVocabulary::AddedVocabulary(const Json& added_tokens, const Normalizer* normalizer,
                                 const std::string& where) {
  if (added_tokens.is_null()) return;
  if (!added_tokens.is_array()) fail_format(where, "\"added_tokens\" must be an array");
  for (const Json& item : added_tokens) {
    AddedToken t;
    const int64_t id = get_int(item, "id", where);
    if (id < 0 || id >= (int64_t{1} << 26)) fail_format(where, "added token id " + std::to_string(id) + " out of range");
    t.id = static_cast<int32_t>(id);
    t.content = get_string(item, "content", where);
    t.single_word = get_bool(item, "single_word", false, where);
    t.lstrip = get_bool(item, "lstrip", false, where);
    t.rstrip = get_bool(item, "rstrip", false, where);
    t.special = get_bool(item, "special", false, where);
    // The library's default: special tokens match raw text, others normalized.
    t.normalized = get_bool(item, "normalized", !t.special, where);
    max_id_ = std::max(max_id_, t.id);
    by_id_[t.id] = tokens_.size();
    tokens_.push_back(std::move(t));
  }
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    if (t.content.empty()) continue;
    if (t.normalized) {
      const std::string pattern = normalizer ? normalizer->normalize(t.content) : t.content;
      if (!pattern.empty()) normalized_trie_.insert(pattern, static_cast<int32_t>(i));
    } else {
      raw_trie_.insert(t.content, static_cast<int32_t>(i));
    }
  }
}

std::vector<TextOrToken> AddedVocabulary::split_raw(std::string_view text) const {
  return split(text, true, raw_trie_);
}

std::vector<TextOrToken> AddedVocabulary::split_normalized(std::string_view text, bool at_start) const {
  return split(text, at_start, normalized_trie_);
}

std::vector<TextOrToken> AddedVocabulary::split(std::string_view text, bool at_start, const Trie& trie) const {
  std::vector<TextOrToken> out;
  std::size_t emitted = 0;  // text before this is already in `out`
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto [index, len] = trie.longest_at(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    std::size_t start = pos, stop = pos + len;
    // The search resumes after the raw match even when the token is rejected.
    pos = stop;
    const AddedToken& t = tokens_[index];
    if (t.single_word && ((start > 0 && is_word_char_at(text, utf8::last_char_start(text.substr(0, start)))) ||
                          (stop < text.size() && is_word_char_at(text, stop)))) {
      continue;
    }
    if (t.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), emitted);
    if (t.rstrip) stop += leading_space_length(text.substr(stop));
    if (start > emitted) out.push_back({std::string(text.substr(emitted, start - emitted)), std::nullopt, at_start && emitted == 0});
    out.push_back({std::string(text.substr(start, stop - start)), t.id, at_start && start == 0});
    emitted = stop;
    pos = std::max(pos, stop);
  }
  if (emitted < text.size()) out.push_back({std::string(text.substr(emitted)), std::nullopt, at_start && emitted == 0});
  return out;
}

const AddedToken* AddedVocabulary::find(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocabulary::find(std::string_view content) const {
  for (const AddedToken& t : tokens_) {
    if (t.content == content) return t.id;
  }
  return std::nullopt;
}

}  // namespace gptq::tok
