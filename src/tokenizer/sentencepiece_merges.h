// The BPE merges a SentencePiece vocabulary implies, as transformers derives them when a
// file gives pieces and scores but no merges (tokenization_utils_base.generate_merges with
// the scores): every split of a piece into two pieces that are both in the vocabulary is a
// merge, ranked by the whole piece's score, highest first. Ties go to the longer left part,
// then the longer right part (lengths in code points), then to the order of the pieces in the
// vocabulary and, within one piece, to (left id, right id). A piece listed twice takes its
// last id and last score at its first position.
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

namespace gptq::tok {

// tokens[i] has id i and score scores[i] (same length, finite; checked by the caller).
std::vector<std::pair<std::string, std::string>> merges_from_scores(std::span<const std::string> tokens,
                                                                    std::span<const double> scores);

}  // namespace gptq::tok
