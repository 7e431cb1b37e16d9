#include "tokenizer/sentencepiece_merges.h"

#include <algorithm>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/utf8.h"

namespace gptq::tok {

std::vector<std::pair<std::string, std::string>> merges_from_scores(std::span<const std::string> tokens,
                                                                    std::span<const double> scores) {
  std::unordered_map<std::string_view, std::size_t> id, last;  // last: the index whose score counts
  for (std::size_t i = 0; i < tokens.size(); ++i) id[tokens[i]] = last[tokens[i]] = i;

  struct Merge {
    std::string_view left, right;
    double score;
    std::size_t left_chars, right_chars;
  };
  std::vector<Merge> merges;
  std::unordered_set<std::string_view> seen;
  std::vector<Merge> local;
  std::vector<std::size_t> starts;
  for (const std::string& piece : tokens) {
    if (!seen.insert(piece).second) continue;
    const double score = scores[last[piece]];
    starts.clear();  // byte offset of each character
    for (std::size_t pos = 0; pos < piece.size(); pos += utf8::decode(piece, pos).len) starts.push_back(pos);
    local.clear();
    for (std::size_t k = 1; k < starts.size(); ++k) {
      const std::string_view left(piece.data(), starts[k]), right(piece.data() + starts[k], piece.size() - starts[k]);
      if (id.contains(left) && id.contains(right)) local.push_back({left, right, score, k, starts.size() - k});
    }
    std::sort(local.begin(), local.end(), [&](const Merge& a, const Merge& b) {
      return std::pair(id[a.left], id[a.right]) < std::pair(id[b.left], id[b.right]);
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    return std::tie(a.score, a.left_chars, a.right_chars) > std::tie(b.score, b.left_chars, b.right_chars);
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (const Merge& m : merges) out.emplace_back(m.left, m.right);
  return out;
}

}  // namespace gptq::tok
