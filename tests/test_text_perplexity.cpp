// Per-text perplexity: each text alone equals ppl over one window of its length, the two
// summaries, bad input, and the transformers reference where it has been made.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/perplexity.h"
#include "eval/text_perplexity.h"
#include "reference_tolerance.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"

namespace gptq {
namespace {

class TextPpl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tk = new tok::Tokenizer(tok::Tokenizer::load(test::stories15m_dir() / "tokenizer.json"));
    be = backend::make_cpu_backend().release();
    m = new model::Model(model::Model::load(test::stories15m_dir(), *be));
  }
  static void TearDownTestSuite() {
    delete m;
    delete be;
    delete tk;
  }
  static tok::Tokenizer* tk;
  static backend::Backend* be;
  static model::Model* m;
};
tok::Tokenizer* TextPpl::tk;
backend::Backend* TextPpl::be;
model::Model* TextPpl::m;

TEST_F(TextPpl, EachTextIsOneWindowAndSummariesDiffer) {
  const std::vector<std::string> texts = {"Once upon a time, there was a little girl named Lily.",
                                          "Tom liked to play with his red ball in the park every day after school.",
                                          "x"};  // BOS + one token would be scored; "" gives BOS alone
  const auto r = eval::text_perplexity(*m, *tk, texts, {.max_length = 12});
  ASSERT_EQ(r.ppl.size(), 3u);
  EXPECT_EQ(r.truncated, 2);
  EXPECT_EQ(r.max_length, 12);
  for (std::size_t i = 0; i < 2; ++i) {
    auto ids = tk->encode(texts[i]);
    ids.resize(12);
    const auto p = eval::perplexity(*m, ids, {.ctx = 12});
    // ppl's backend op rounds each NLL to fp32 (relative 2⁻²⁴; these NLLs are below 20 nats).
    EXPECT_NEAR(std::log(r.ppl[i]), std::log(p.ppl), std::ldexp(20.0, -24)) << i;
    EXPECT_EQ(r.scored[i], 11);
  }
  double mean = 0.0, nll = 0.0;
  int64_t n = 0;
  for (std::size_t i = 0; i < r.ppl.size(); ++i) {
    mean += r.ppl[i] / double(r.ppl.size());
    nll += std::log(r.ppl[i]) * double(r.scored[i]);
    n += r.scored[i];
  }
  EXPECT_NEAR(r.mean_ppl, mean, 1e-9 * mean);
  EXPECT_NEAR(r.token_weighted_ppl, std::exp(nll / double(n)), 1e-9 * r.token_weighted_ppl);
  EXPECT_NE(r.mean_ppl, r.token_weighted_ppl);
  test::expect_error([&] { eval::text_perplexity(*m, *tk, {""}, {}); }, "no text has 2 or more tokens");
}

TEST(TextPplInput, BadLinesAreOneClearError) {
  test::TempDir tmp;
  test::expect_error([&] { eval::load_texts(tmp.write("a.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"b\xc3\"}\n"), "text", 0); },
                     "a.jsonl:2: not valid UTF-8", ErrorKind::kFormat);
  test::expect_error([&] { eval::load_texts(tmp.write("b.jsonl", "{\"body\": \"x\"}\n"), "text", 0); },
                     "b.jsonl:1: missing field \"text\"", ErrorKind::kFormat);
  EXPECT_EQ(eval::load_texts(test::fixtures_dir() / "eval" / "stories-docs.jsonl.gz", "text", 0).size(), 300u);
  EXPECT_EQ(eval::load_texts(test::fixtures_dir() / "eval" / "stories-docs.jsonl.gz", "text", 7).size(), 7u);
}

// transformers' per-text perplexities (scripts/make_eval_reference.py), max_length 128.
// ln ppl is a mean of per-token NLLs, each within 2 · the logit bound of
// reference_tolerance.h, taken at the text's largest |logit| (recorded by the script).
TEST_F(TextPpl, MatchesTransformers) {
  const auto ref_path = test::fixtures_dir() / "eval" / "text_ppl_stories15M.json";
  if (!std::filesystem::exists(ref_path)) {
    GTEST_SKIP() << ref_path << " is absent: run `python3 scripts/make_eval_reference.py` (torch + transformers)";
  }
  const auto ref = test::load_json(ref_path);
  const auto texts = eval::load_texts(test::fixtures_dir() / "eval" / "stories-docs.jsonl.gz", "text", 0);
  const auto r = eval::text_perplexity(*m, *tk, texts, {.max_length = ref["max_length"].get<int64_t>()});
  ASSERT_EQ(r.ppl.size(), ref["per_text_ppl"].size());
  const auto& c = m->config();
  double worst = 0.0;
  for (std::size_t i = 0; i < r.ppl.size(); ++i) {
    const std::vector<float> row = {ref["max_abs_logit"][i].get<float>()};
    const double tol = 2.0 * test::logit_tolerance(c.layers, c.intermediate, row);
    worst = std::max(worst, tol);
    EXPECT_EQ(r.scored[i], ref["scored"][i].get<int64_t>()) << i;
    EXPECT_NEAR(std::log(r.ppl[i]), std::log(ref["per_text_ppl"][i].get<double>()), tol) << i;
  }
  EXPECT_NEAR(std::log(r.mean_ppl), std::log(ref["mean_ppl"].get<double>()), worst);
  EXPECT_NEAR(std::log(r.token_weighted_ppl), std::log(ref["token_weighted_ppl"].get<double>()), worst);
}

}  // namespace
}  // namespace gptq
