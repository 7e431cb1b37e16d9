// Perplexity against transformers' numbers in stories15M/reference/ppl.json (same
// protocol: one BOS, 256-token non-overlapping windows). Required: within 0.1%.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "test_paths.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

using test::read_file;

void check_ppl(const std::string& shared_relative) {
  GPTQ_REQUIRE_SHARED(test::stories15m_reference());
  const auto ref = nlohmann::json::parse(read_file(test::stories15m_reference() / "ppl.json"))["files"][shared_relative];
  auto be = backend::make_cpu_backend();
  auto m = model::Model::load(test::stories15m_dir(), *be);
  const auto tk = tok::Tokenizer::load(test::stories15m_dir() / "tokenizer.json");
  const auto tokens = tk.encode(read_file(test::shared_dir() / shared_relative));
  EXPECT_EQ(int64_t(tokens.size()), ref["tokens"].get<int64_t>());
  const eval::PplResult r = eval::perplexity(m, tokens, {.ctx = 256});
  EXPECT_EQ(r.windows, ref["windows"].get<int64_t>());
  EXPECT_EQ(r.scored_tokens, ref["scored_tokens"].get<int64_t>());
  const double want = ref["ppl"].get<double>();
  EXPECT_LE(std::fabs(r.ppl - want) / want, 1e-3) << "ppl " << r.ppl << " vs transformers " << want;
  ::testing::Test::RecordProperty("ppl", std::to_string(r.ppl));
}

TEST(Perplexity, StoriesSamplesMatchTransformers) { check_ppl("data/stories15M-samples.txt"); }
TEST(Perplexity, EmmaMatchesTransformers) { check_ppl("data/austen/emma.txt"); }

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
