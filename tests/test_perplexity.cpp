// Perplexity against transformers' numbers: per window, for the first windows of two texts
// (tests/fixtures/eval/ppl_windows_stories15M.json; ppl.json's protocol).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "test_paths.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

using test::read_file;

// The first `n` windows of a file against transformers' per-window NLL sums
// (tests/fixtures/eval/ppl_windows_stories15M.json, made by scripts/make_ppl_reference.py
// with ppl.json's protocol: one BOS, 256-token non-overlapping windows). Required: each
// window's mean NLL within 1e-3 (its perplexity within 0.1%) and the n windows' perplexity
// within 0.1%; fp32 products summed in another order move them by ~1e-6. The whole files
// (800 and 923 windows) took ~500 s each on a 2-core CPU, so only their token counts are
// checked whole.
void check_windows(const std::string& relative, int64_t n) {
  const auto ref = test::load_json(test::fixtures_dir() / "eval" / "ppl_windows_stories15M.json")["files"][relative];
  const std::vector<double> sums = ref["nll_sums"].get<std::vector<double>>();
  ASSERT_GE(int64_t(sums.size()), n);
  auto be = backend::make_cpu_backend();
  auto m = model::Model::load(test::stories15m_dir(), *be);
  const auto tk = tok::Tokenizer::load(test::stories15m_dir() / "tokenizer.json");
  const auto tokens = tk.encode(read_file(test::source_dir() / relative));
  EXPECT_EQ(int64_t(tokens.size()), ref["tokens"].get<int64_t>());
  constexpr int64_t kCtx = 256, kScored = kCtx - 1;
  std::vector<double> running;  // NLL summed over the windows done, from the running perplexity
  const eval::PplResult r = eval::perplexity(m, tokens, {.ctx = kCtx, .max_windows = n,
                                                         .on_window = [&](int64_t done, int64_t, double ppl) {
                                                           running.push_back(std::log(ppl) * double(done * kScored));
                                                         }});
  ASSERT_EQ(int64_t(running.size()), n);
  double want = 0;
  for (int64_t w = 0; w < n; ++w) {
    const double got = (running[size_t(w)] - (w > 0 ? running[size_t(w - 1)] : 0.0)) / double(kScored);
    EXPECT_NEAR(got, sums[size_t(w)] / double(kScored), 1e-3) << relative << " window " << w;
    want += sums[size_t(w)];
  }
  want = std::exp(want / double(n * kScored));
  EXPECT_LE(std::fabs(r.ppl - want) / want, 1e-3) << "ppl " << r.ppl << " vs transformers " << want;
  ::testing::Test::RecordProperty("ppl", std::to_string(r.ppl));
}

TEST(Perplexity, StoriesSamplesMatchTransformers) { check_windows("data/stories15M-samples.txt", 48); }
TEST(Perplexity, EmmaMatchesTransformers) { check_windows("data/emma.txt", 48); }

TEST(Perplexity, WindowArithmetic) {
  auto be = backend::make_cpu_backend();
  auto m = model::Model::load(test::stories15m_dir(), *be);
  std::vector<int32_t> tokens(300, 263);
  tokens[0] = 1;
  const auto r = eval::perplexity(m, tokens, {.ctx = 100, .max_windows = 2});
  EXPECT_EQ(r.windows, 2);
  EXPECT_EQ(r.scored_tokens, 198);
  EXPECT_THROW(eval::perplexity(m, std::span(tokens).first(50), {.ctx = 100}), Error);
  EXPECT_THROW(eval::perplexity(m, tokens, {.ctx = 1000}), Error);  // beyond the 256 context
}

}  // namespace
}  // namespace gptq
