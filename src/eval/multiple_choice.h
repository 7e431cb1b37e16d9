// Multiple choice by log-likelihood, with lm-eval's definitions (lm_eval/api/model.py
// loglikelihood/_encode_pair, models/huggingface.py _loglikelihood_tokens,
// api/task.py process_results for multiple_choice, api/metrics.py mean_stderr):
//
//   request    (context, delimiter + choice). Trailing spaces of the context move to the
//              front of the continuation; context and context + continuation are each
//              encoded with the tokenizer's default special tokens (BOS for Llama); the
//              continuation's tokens are the whole encoding's tail after as many tokens
//              as the context's own encoding has. The model sees context tokens +
//              continuation tokens (the last one dropped); an input longer than the
//              model's context keeps its last max_positions + 1 tokens.
//   loglik     Σ log softmax(logits)[token] over the continuation's tokens; greedy when
//              each of them is its row's argmax.
//   acc        argmax of loglik is gold (np.argmax: the first maximum wins ties)
//   acc_norm   argmax of loglik / len(choice), len in Unicode code points (Python's
//              len(str) of the choice without the delimiter)
//   acc_bytes  argmax of loglik / UTF-8 bytes of the choice
//   ± stderr   sample standard deviation of the 0/1 scores / √n
//
// The context's keys and values are computed once per item and shared by its choices:
// each choice runs only its own tokens from a cache truncated back to the context.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eval/mc_task.h"
#include "eval/stats.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace gptq::eval {

struct EncodedPair {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;
};

// lm-eval's request construction; an empty context becomes the tokenizer's template
// prefix (BOS) as lm-eval's prefix_token_id does. Throws kInvalidArgument when the
// continuation encodes to no tokens.
EncodedPair encode_pair(const tok::Tokenizer& tk, std::string_view context, std::string_view continuation);

struct ChoiceScore {
  double loglik = 0.0;
  bool greedy = false;
  int64_t tokens = 0;  // continuation tokens scored
};

struct ItemScore {
  std::vector<ChoiceScore> choices;
  int pred = 0;        // argmax loglik
  int pred_norm = 0;   // argmax loglik / code points
  int pred_bytes = 0;  // argmax loglik / bytes
  int gold = 0;
};

// The predictions from the choices' log-likelihoods (pure; exposed for tests).
ItemScore score_item(std::vector<ChoiceScore> choices, const std::vector<std::string>& texts, int gold);

struct CategoryScore {
  std::string name;
  int64_t items = 0;
  MeanErr acc, acc_norm;
};

struct McResult {
  std::string task;
  int64_t items = 0;
  int64_t requests = 0;  // one per choice, as lm-eval counts them
  MeanErr acc, acc_norm, acc_bytes;
  std::vector<CategoryScore> categories;  // by name; empty when no item has a category
  std::vector<ItemScore> per_item;
  double seconds = 0.0;
};

// Totals from per-item scores (pure; exposed for tests). `items` parallel to `scores`.
McResult summarize(const McTask& task, std::vector<ItemScore> scores);

enum class PerItem { kInclude, kOmit };
// {"task", "items", "requests", "acc", "acc_norm", "acc_bytes", "categories", "seconds"}
// and, with kInclude, "per_item": [{"loglik": [...], "greedy": [...], "pred", "gold"}].
nlohmann::ordered_json to_json(const McResult& r, PerItem per_item);

struct McOptions {
  // Called after each item: (items done, items total, requests done).
  std::function<void(int64_t, int64_t, int64_t)> on_item;
};

McResult evaluate_multiple_choice(model::Model& m, const tok::Tokenizer& tk, const McTask& task,
                                  const McOptions& opts = {});

}  // namespace gptq::eval
