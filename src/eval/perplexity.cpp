#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace gptq::eval {

void token_nll(std::span<const float> logits, int64_t vocab, std::span<const int32_t> targets,
               std::span<double> out) {
  // exp in fp32 (arguments are <= 0, each term accurate to an ulp), sums in fp64.
#pragma omp parallel for schedule(static)
  for (std::size_t t = 0; t < targets.size(); ++t) {
    const float* row = logits.data() + t * std::size_t(vocab);
    const float mx = *std::max_element(row, row + vocab);
    double s = 0.0;
    for (int64_t v = 0; v < vocab; ++v) s += double(std::exp(row[v] - mx));
    out[t] = double(mx) + std::log(s) - double(row[targets[t]]);
  }
}

PplResult perplexity(model::Model& m, std::span<const int32_t> tokens, const PplOptions& opts) {
  const auto& c = m.config();
  PplResult r;
  r.ctx = opts.ctx > 0 ? opts.ctx : std::min<int64_t>(2048, c.max_positions);
  if (r.ctx < 2) throw Error(ErrorKind::kInvalidArgument, "ppl: window length must be at least 2");
  if (r.ctx > c.max_positions) {
    throw Error(ErrorKind::kInvalidArgument, "ppl: window length " + std::to_string(r.ctx) +
                                                 " exceeds max_position_embeddings " + std::to_string(c.max_positions));
  }
  r.tokens = int64_t(tokens.size());
  int64_t windows = r.tokens / r.ctx;
  if (opts.max_windows > 0) windows = std::min(windows, opts.max_windows);
  if (windows == 0) {
    throw Error(ErrorKind::kInvalidArgument, "ppl: the text has " + std::to_string(r.tokens) +
                                                 " tokens, fewer than one window of " + std::to_string(r.ctx));
  }
  const auto start = std::chrono::steady_clock::now();
  auto cache = m.new_cache(r.ctx);
  // The NLL is computed where the logits are (no [ctx, vocab] copy to the host): per
  // chunk, targets go up and one float per token comes back.
  auto& b = m.backend();
  const backend::Buffer targets = b.alloc(1, m.max_chunk(), DType::kI32);
  const backend::Buffer nll = b.alloc(1, m.max_chunk(), DType::kF32);
  std::vector<float> host_nll;
  double total = 0.0;
  for (int64_t w = 0; w < windows; ++w) {
    const auto window = tokens.subspan(std::size_t(w * r.ctx), std::size_t(r.ctx));
    cache.clear();
    m.forward(window, cache, model::Logits::kAll, [&](int64_t first, backend::Tensor logits) {
      // Row t predicts token t+1; the window's last row predicts nothing inside it.
      const int64_t rows = std::min<int64_t>(logits.rows, r.ctx - 1 - first);
      if (rows <= 0) return;
      b.upload(window.subspan(std::size_t(first + 1), std::size_t(rows)), targets.view().col_slice(0, rows));
      b.token_nll(logits.row_slice(0, rows), targets.view().col_slice(0, rows), nll.view().col_slice(0, rows));
      host_nll.resize(std::size_t(rows));
      b.download(nll.view().col_slice(0, rows), host_nll);
      for (float v : host_nll) total += double(v);
    });
    r.scored_tokens += r.ctx - 1;
    if (opts.on_window) opts.on_window(w + 1, windows, std::exp(total / double(r.scored_tokens)));
  }
  r.windows = windows;
  r.mean_nll = total / double(r.scored_tokens);
  r.ppl = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace gptq::eval
