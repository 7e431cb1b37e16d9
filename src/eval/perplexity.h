// Perplexity with the GPTQ-paper protocol (the one in stories15M/reference/ppl.json):
// the whole text tokenized once (one BOS), cut into non-overlapping windows of `ctx`
// tokens from the start (remainder dropped); each window scored on predicting its
// tokens 1..ctx-1 from the prefix inside the window; ppl = exp(mean NLL).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "model/model.h"

namespace gptq::eval {

struct PplOptions {
  int64_t ctx = 0;          // window length; 0: min(2048, max_position_embeddings)
  int64_t max_windows = 0;  // 0: all
  // Called after each window: (windows done, windows total, running ppl).
  std::function<void(int64_t, int64_t, double)> on_window;
};

struct PplResult {
  double ppl = 0.0;
  double mean_nll = 0.0;
  int64_t tokens = 0;         // tokens in the text
  int64_t windows = 0;
  int64_t scored_tokens = 0;
  int64_t ctx = 0;
  double seconds = 0.0;
};

PplResult perplexity(model::Model& m, std::span<const int32_t> tokens, const PplOptions& opts);

// NLL of each target under logits rows: out[t] = logsumexp(row t) - row t[targets[t]].
// Rows: [T, vocab]. Computed in fp64.
void token_nll(std::span<const float> logits, int64_t vocab, std::span<const int32_t> targets,
               std::span<double> out);

}  // namespace gptq::eval
