// Perplexity of each text on its own (a document set such as 100 C4 documents), the
// way Hugging Face `evaluate`'s perplexity metric defines it: each text is encoded
// with the tokenizer's template (BOS for Llama) and truncated to max_length tokens;
// text i's perplexity is exp(mean NLL of its tokens 1..n−1, each predicted from the
// tokens before it in the same text). Padding in batched implementations is masked out
// of the mean, so it does not change these numbers.
//
// Two summaries, which differ when texts differ in length:
//   mean_ppl            the mean of the per-text perplexities (evaluate's
//                       "mean_perplexity"; what a "ppl over N texts" usually reports)
//   token_weighted_ppl  exp(Σ NLL / Σ scored tokens) over all texts
//
// GPTQModel's Perplexity class (gptqmodel/utils/perplexity.py, removed in its March 2026
// cleanup) only has the llama.cpp-style `calculate(n_ctx, n_batch)` over one joined
// text, which `gptq ppl --text` covers; no `calculate_from_texts` exists in any of its
// published versions we could read, so the definition above is the one reproduced.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace gptq::eval {

struct TextPplOptions {
  int64_t max_length = 512;  // tokens per text, BOS included; capped at the model's context
  // Called after each text: (texts done, texts total).
  std::function<void(int64_t, int64_t)> on_text;
};

struct TextPplResult {
  std::vector<double> ppl;         // per scored text, in input order
  std::vector<int64_t> scored;     // tokens scored per text (its length − 1)
  int64_t texts = 0;               // texts given
  int64_t skipped = 0;             // texts of fewer than 2 tokens: nothing to score
  int64_t truncated = 0;           // texts cut to max_length
  int64_t scored_tokens = 0;
  int64_t max_length = 0;          // as applied
  double mean_ppl = 0.0;
  double token_weighted_ppl = 0.0;
  double seconds = 0.0;
};

// Throws kInvalidArgument when max_length < 2 or no text has 2 tokens.
TextPplResult text_perplexity(model::Model& m, const tok::Tokenizer& tk, const std::vector<std::string>& texts,
                              const TextPplOptions& o);

// The texts of a JSONL (optionally gzipped) file: the string field `field` of each
// non-blank line, at most `limit` (0: all). Throws gptq::Error naming file:line (not
// UTF-8, malformed JSON, missing or mistyped field, no texts).
std::vector<std::string> load_texts(const std::filesystem::path& file, const std::string& field, int64_t limit);

}  // namespace gptq::eval
