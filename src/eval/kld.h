// KL divergence of a quantized model from its base, token by token, with the statistics
// llama.cpp's `llama-perplexity --kl-divergence` reports (tools/perplexity/perplexity.cpp).
//
// Windows are those of `gptq ppl` (eval/perplexity.h): the text tokenized once, cut into
// non-overlapping windows of ctx tokens; in each window, row r (r = 0..ctx−2) predicts
// token r + 1. (llama.cpp scores only the second half of each window; we score every
// row, as our perplexity does, so that both perplexities below equal `gptq ppl`'s.)
// For each scored token, with P the base's and Q the quantized model's distribution:
//   KLD      Σ_i P_i (ln P_i − ln Q_i), over the entries with ln P_i > −16 (llama.cpp's
//            rule: what its 16-bit storage resolves)
//   NLL      −ln P(token), −ln Q(token)
//   Δp       Q(token) − P(token)
//   same top argmax P = argmax Q (first maximum on ties)
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "eval/base_logprobs.h"
#include "eval/stats.h"
#include "model/model.h"

namespace gptq::eval {

// Per scored token, in window order.
struct TokenComparison {
  std::vector<double> nll_base, nll_quant, kld, dp;
  std::vector<uint8_t> same_top;
};

// One row: base log-probabilities vs the quantized model's logits (both [vocab]).
void compare_row(std::span<const float> base_logprobs, std::span<const float> quant_logits, int32_t target,
                 TokenComparison& out, std::size_t index);

// log-softmax of each row of logits ([rows, vocab]), in place: the exact form compare_row
// uses for the quantized side, so a model compared with itself gives KLD exactly 0.
void log_softmax_rows(std::span<float> rows, int64_t vocab);

struct KldResult {
  int64_t ctx = 0;
  int64_t windows = 0;
  int64_t tokens = 0;  // scored
  MeanErr ln_ppl_base, ln_ppl_quant, kld, dp;
  double ppl_base = 0.0, ppl_base_err = 0.0, ppl_quant = 0.0, ppl_quant_err = 0.0;
  double cor_ln_ppl = 0.0;                   // correlation of the two mean NLLs
  double ln_ppl_ratio = 0.0, ln_ppl_ratio_err = 0.0;  // ln(PPL(Q)/PPL(base))
  double ppl_ratio = 0.0, ppl_ratio_err = 0.0;
  double ppl_diff = 0.0, ppl_diff_err = 0.0;
  // KLD order statistics (llama.cpp's percentile: linear between order statistics).
  double kld_max = 0.0, kld_p999 = 0.0, kld_p99 = 0.0, kld_p95 = 0.0, kld_p90 = 0.0, kld_median = 0.0,
         kld_p10 = 0.0, kld_p5 = 0.0, kld_p1 = 0.0, kld_p01 = 0.0, kld_min = 0.0;
  double dp_rms = 0.0, dp_rms_err = 0.0, dp_max = 0.0, dp_median = 0.0, dp_min = 0.0;
  double same_top = 0.0, same_top_err = 0.0;  // fraction, ± sqrt(p(1−p)/(n−1))
  double seconds = 0.0;
};

nlohmann::ordered_json to_json(const KldResult& r);

// The statistics of per-token comparisons (pure; exposed for tests). Needs ≥ 1 token.
KldResult summarize_kld(const TokenComparison& t);

// Where the base distributions come from: the base model run live, or a saved file.
class BaseSource {
 public:
  virtual ~BaseSource() = default;
  // Window w's tokens (ctx of them) -> log-probabilities [ctx − 1, vocab].
  virtual void window(int64_t w, std::span<const int32_t> tokens, std::vector<float>& logprobs) = 0;
};

class LiveBase : public BaseSource {
 public:
  // When `save` is given, each window's distributions are also written to it.
  LiveBase(model::Model& base, int64_t ctx, BaseLogprobsWriter* save = nullptr);
  void window(int64_t w, std::span<const int32_t> tokens, std::vector<float>& logprobs) override;

 private:
  model::Model& m_;
  model::KvCache cache_;
  BaseLogprobsWriter* save_;
};

class SavedBase : public BaseSource {
 public:
  explicit SavedBase(const BaseLogprobsReader& r) : r_(r) {}
  void window(int64_t w, std::span<const int32_t>, std::vector<float>& logprobs) override { r_.window(w, logprobs); }

 private:
  const BaseLogprobsReader& r_;
};

// The windows of `tokens` that ppl scores: windows of ctx tokens, at most max_windows
// (0: all). Throws kInvalidArgument when ctx < 2, ctx > the model's context, or the text
// is shorter than one window.
int64_t count_windows(int64_t tokens, int64_t ctx, int64_t max_positions, int64_t max_windows);
// ppl's default window: min(2048, max_position_embeddings).
int64_t default_ctx(const model::ModelConfig& c);

struct KldOptions {
  int64_t ctx = 0;  // resolved window length (the caller applies default_ctx)
  int64_t windows = 0;
  std::function<void(int64_t, int64_t)> on_window;  // (done, total)
};

// Compares `quant` with `base` over the windows of `tokens`; the vocabularies must be
// equal (the caller checks the tokenizers). Throws kInvalidArgument on a vocabulary
// mismatch.
KldResult kl_divergence(model::Model& quant, BaseSource& base, int64_t base_vocab, std::span<const int32_t> tokens,
                        const KldOptions& o);

}  // namespace gptq::eval
