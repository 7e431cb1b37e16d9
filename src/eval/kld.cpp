#include "eval/kld.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace gptq::eval {
namespace {

// llama.cpp leaves out base entries at or below this log-probability.
constexpr double kMinBaseLogprob = -16.0;

// exp in fp32 (arguments ≤ 0), sums in fp64: the arithmetic of token_nll.
double row_logsumexp(const float* row, int64_t vocab) {
  const float mx = *std::max_element(row, row + vocab);
  double s = 0.0;
  for (int64_t v = 0; v < vocab; ++v) s += double(std::exp(row[v] - mx));
  return double(mx) + std::log(s);
}

float log_prob(float logit, double lse) { return float(double(logit) - lse); }

}  // namespace

void log_softmax_rows(std::span<float> rows, int64_t vocab) {
  const int64_t n = int64_t(rows.size()) / vocab;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    float* row = rows.data() + r * vocab;
    const double lse = row_logsumexp(row, vocab);
    for (int64_t v = 0; v < vocab; ++v) row[v] = log_prob(row[v], lse);
  }
}

void compare_row(std::span<const float> base, std::span<const float> quant, int32_t target, TokenComparison& out,
                 std::size_t index) {
  const int64_t vocab = int64_t(quant.size());
  const double lse = row_logsumexp(quant.data(), vocab);
  double kld = 0.0;
  int64_t top_base = 0, top_quant = 0;
  float best_quant = log_prob(quant[0], lse);
  for (int64_t i = 0; i < vocab; ++i) {
    const float lq = log_prob(quant[std::size_t(i)], lse);
    const float lb = base[std::size_t(i)];
    if (double(lb) > kMinBaseLogprob) kld += std::exp(double(lb)) * (double(lb) - double(lq));
    if (lb > base[std::size_t(top_base)]) top_base = i;
    if (lq > best_quant) {
      best_quant = lq;
      top_quant = i;
    }
  }
  const float lq_t = log_prob(quant[std::size_t(target)], lse);
  const float lb_t = base[std::size_t(target)];
  out.nll_base[index] = -double(lb_t);
  out.nll_quant[index] = -double(lq_t);
  out.kld[index] = kld;
  out.dp[index] = std::exp(double(lq_t)) - std::exp(double(lb_t));
  out.same_top[index] = top_base == top_quant ? 1 : 0;
}

KldResult summarize_kld(const TokenComparison& t) {
  const std::size_t n = t.kld.size();
  if (n == 0) throw Error(ErrorKind::kInvalidArgument, "kld: no tokens were scored");
  KldResult r;
  r.tokens = int64_t(n);
  r.ln_ppl_quant = mean_stderr(t.nll_quant);
  r.ln_ppl_base = mean_stderr(t.nll_base);
  r.ppl_quant = std::exp(r.ln_ppl_quant.mean);
  r.ppl_quant_err = r.ppl_quant * r.ln_ppl_quant.err;  // d exp(x) = exp(x) dx
  r.ppl_base = std::exp(r.ln_ppl_base.mean);
  r.ppl_base_err = r.ppl_base * r.ln_ppl_base.err;
  const double cov = mean_covariance(t.nll_quant, t.nll_base);
  const double denom = r.ln_ppl_quant.err * r.ln_ppl_base.err;
  r.cor_ln_ppl = denom > 0.0 ? cov / denom : 0.0;
  r.ln_ppl_ratio = r.ln_ppl_quant.mean - r.ln_ppl_base.mean;
  r.ln_ppl_ratio_err = std::sqrt(std::max(
      0.0, r.ln_ppl_quant.err * r.ln_ppl_quant.err + r.ln_ppl_base.err * r.ln_ppl_base.err - 2.0 * cov));
  r.ppl_ratio = std::exp(r.ln_ppl_ratio);
  r.ppl_ratio_err = r.ppl_ratio * r.ln_ppl_ratio_err;
  r.ppl_diff = r.ppl_quant - r.ppl_base;
  r.ppl_diff_err = std::sqrt(std::max(0.0, r.ppl_quant_err * r.ppl_quant_err + r.ppl_base_err * r.ppl_base_err -
                                               2.0 * r.ppl_quant * r.ppl_base * cov));

  r.kld = mean_stderr(t.kld);
  std::vector<double> s(t.kld);
  std::sort(s.begin(), s.end());
  r.kld_min = s.front();
  r.kld_max = s.back();
  r.kld_p999 = percentile(s, 0.999);
  r.kld_p99 = percentile(s, 0.99);
  r.kld_p95 = percentile(s, 0.95);
  r.kld_p90 = percentile(s, 0.90);
  r.kld_median = percentile(s, 0.5);  // = the mean of the middle two for even n
  r.kld_p10 = percentile(s, 0.10);
  r.kld_p5 = percentile(s, 0.05);
  r.kld_p1 = percentile(s, 0.01);
  r.kld_p01 = percentile(s, 0.001);

  r.dp = mean_stderr(t.dp);
  std::vector<double> d(t.dp), d2(n);
  for (std::size_t i = 0; i < n; ++i) d2[i] = t.dp[i] * t.dp[i];
  const MeanErr mse = mean_stderr(d2);
  r.dp_rms = std::sqrt(mse.mean);
  r.dp_rms_err = r.dp_rms > 0.0 ? 0.5 / r.dp_rms * mse.err : 0.0;  // d sqrt(x) = dx / (2 sqrt(x))
  std::sort(d.begin(), d.end());
  r.dp_min = d.front();
  r.dp_max = d.back();
  r.dp_median = percentile(d, 0.5);

  int64_t same = 0;
  for (uint8_t v : t.same_top) same += v;
  r.same_top = double(same) / double(n);
  r.same_top_err = n > 1 ? std::sqrt(r.same_top * (1.0 - r.same_top) / double(n - 1)) : 0.0;
  return r;
}

nlohmann::ordered_json to_json(const KldResult& r) {
  auto ve = [](double v, double e) { return nlohmann::ordered_json{{"value", v}, {"stderr", e}}; };
  return {{"ctx", r.ctx},
          {"windows", r.windows},
          {"tokens", r.tokens},
          {"ppl_base", ve(r.ppl_base, r.ppl_base_err)},
          {"ppl_quant", ve(r.ppl_quant, r.ppl_quant_err)},
          {"cor_ln_ppl", r.cor_ln_ppl},
          {"ln_ppl_ratio", ve(r.ln_ppl_ratio, r.ln_ppl_ratio_err)},
          {"ppl_ratio", ve(r.ppl_ratio, r.ppl_ratio_err)},
          {"ppl_diff", ve(r.ppl_diff, r.ppl_diff_err)},
          {"kld", to_json(r.kld)},
          {"kld_percentiles",
           {{"max", r.kld_max}, {"99.9", r.kld_p999}, {"99", r.kld_p99}, {"95", r.kld_p95}, {"90", r.kld_p90},
            {"median", r.kld_median}, {"10", r.kld_p10}, {"5", r.kld_p5}, {"1", r.kld_p1}, {"0.1", r.kld_p01},
            {"min", r.kld_min}}},
          {"dp", to_json(r.dp)},
          {"dp_rms", ve(r.dp_rms, r.dp_rms_err)},
          {"dp_max", r.dp_max},
          {"dp_median", r.dp_median},
          {"dp_min", r.dp_min},
          {"same_top", ve(r.same_top, r.same_top_err)},
          {"seconds", r.seconds}};
}

LiveBase::LiveBase(model::Model& base, int64_t ctx, BaseLogprobsWriter* save)
    : m_(base), cache_(base.new_cache(ctx)), save_(save) {}

void LiveBase::window(int64_t, std::span<const int32_t> tokens, std::vector<float>& logprobs) {
  cache_.clear();
  m_.forward(tokens, cache_, model::Logits::kAll, logprobs);
  const int64_t vocab = m_.config().vocab;
  logprobs.resize((tokens.size() - 1) * std::size_t(vocab));  // the last row predicts nothing in the window
  log_softmax_rows(logprobs, vocab);
  if (save_) save_->add_window(logprobs);
}

int64_t default_ctx(const model::ModelConfig& c) { return std::min<int64_t>(2048, c.max_positions); }

int64_t count_windows(int64_t tokens, int64_t ctx, int64_t max_positions, int64_t max_windows) {
  if (ctx < 2) throw Error(ErrorKind::kInvalidArgument, "kld: window length must be at least 2");
  if (ctx > max_positions) {
    throw Error(ErrorKind::kInvalidArgument, "kld: window length " + std::to_string(ctx) +
                                                 " exceeds max_position_embeddings " + std::to_string(max_positions));
  }
  int64_t windows = tokens / ctx;
  if (max_windows > 0) windows = std::min(windows, max_windows);
  if (windows == 0) {
    throw Error(ErrorKind::kInvalidArgument, "kld: the text has " + std::to_string(tokens) +
                                                 " tokens, fewer than one window of " + std::to_string(ctx));
  }
  return windows;
}

KldResult kl_divergence(model::Model& quant, BaseSource& base, int64_t base_vocab, std::span<const int32_t> tokens,
                        const KldOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t vocab = quant.config().vocab;
  if (base_vocab != vocab) {
    throw Error(ErrorKind::kInvalidArgument, "kld: the base model's vocabulary has " + std::to_string(base_vocab) +
                                                 " entries, the quantized model's " + std::to_string(vocab));
  }
  if (int64_t(tokens.size()) < o.windows * o.ctx) throw Error(ErrorKind::kInvalidArgument, "kld: too few tokens");
  const std::size_t rows = std::size_t(o.ctx - 1);
  const std::size_t n = std::size_t(o.windows) * rows;
  TokenComparison t{.nll_base = std::vector<double>(n), .nll_quant = std::vector<double>(n),
                    .kld = std::vector<double>(n), .dp = std::vector<double>(n), .same_top = std::vector<uint8_t>(n)};
  auto cache = quant.new_cache(o.ctx);
  std::vector<float> logits, base_lp;
  const std::size_t V = std::size_t(vocab);
  for (int64_t w = 0; w < o.windows; ++w) {
    const auto window = tokens.subspan(std::size_t(w * o.ctx), std::size_t(o.ctx));
    base.window(w, window, base_lp);
    cache.clear();
    quant.forward(window, cache, model::Logits::kAll, logits);
#pragma omp parallel for schedule(static)
    for (std::size_t r = 0; r < rows; ++r) {
      compare_row(std::span<const float>(base_lp).subspan(r * V, V), std::span<const float>(logits).subspan(r * V, V),
                  window[r + 1], t, std::size_t(w) * rows + r);
    }
    if (o.on_window) o.on_window(w + 1, o.windows);
  }
  KldResult r = summarize_kld(t);
  r.ctx = o.ctx;
  r.windows = o.windows;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace gptq::eval
