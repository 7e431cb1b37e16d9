// Multiple choice by log-likelihood: lm-eval's definitions (request construction,
// acc / acc_norm / stderr), task files and their errors, the shared-context cache, and
// the transformers reference (scripts/make_eval_reference.py) where it has been made.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>

#include "eval/multiple_choice.h"
#include "eval/stats.h"
#include "reference_tolerance.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"

namespace gptq {
namespace {

using eval::ChoiceScore;

TEST(McStats, StderrIsSampleStdOverRootN) {
  // mean 0.75; sample variance ((3 · 0.25²) + 0.75²) / 3 = 0.25; stderr 0.5 / √4 = 0.25.
  const std::vector<double> x = {1, 0, 1, 1};
  const auto m = eval::mean_stderr(x);
  EXPECT_DOUBLE_EQ(m.mean, 0.75);
  EXPECT_DOUBLE_EQ(m.err, 0.25);
  // The seed notebook's lm-eval ARC-Challenge line: 328 of 1172 correct is reported as
  // acc 0.2799 ± 0.0131, i.e. sqrt(p(1 − p)/(n − 1)) for 0/1 scores.
  std::vector<double> arc(1172, 0.0);
  std::fill(arc.begin(), arc.begin() + 328, 1.0);
  const auto a = eval::mean_stderr(arc);
  EXPECT_NEAR(a.mean, 0.2799, 5e-5);
  EXPECT_NEAR(a.err, 0.0131, 5e-5);
  EXPECT_EQ(eval::mean_stderr(std::vector<double>{1.0}).err, 0.0);
}

TEST(McStats, PercentileInterpolatesLikeLlamaCpp) {
  const std::vector<double> s = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(eval::percentile(s, 0.5), 2.5);  // the mean of the middle two
  EXPECT_DOUBLE_EQ(eval::percentile(s, 0.99), 3.97);
  EXPECT_DOUBLE_EQ(eval::percentile(s, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(eval::percentile(s, 1.0), 4.0);
}

TEST(McScore, NormalisesByCodePointsAndBytesAndTakesTheFirstMaximum) {
  // "é" is 1 code point and 2 bytes; "ab" 2 of each. lls −2, −3:
  //   acc: −2 > −3 → 0; acc_norm: −2/1 < −3/2 → 1; acc_bytes: −2/2 > −3/2 → 0.
  const auto s = eval::score_item({{.loglik = -2.0}, {.loglik = -3.0}}, {"é", "ab"}, 1);
  EXPECT_EQ(s.pred, 0);
  EXPECT_EQ(s.pred_norm, 1);
  EXPECT_EQ(s.pred_bytes, 0);
  // Ties: np.argmax returns the first.
  EXPECT_EQ(eval::score_item({{.loglik = -1.0}, {.loglik = -1.0}}, {"x", "y"}, 1).pred, 0);
}

TEST(McScore, SummaryCountsCategories) {
  eval::McTask task{.name = "t"};
  task.items = {{.choices = {"a", "b"}, .gold = 0, .category = "x"},
                {.choices = {"a", "b"}, .gold = 1, .category = "x"},
                {.choices = {"a", "b"}, .gold = 1, .category = "y"}};
  std::vector<eval::ItemScore> scores;
  for (const auto& it : task.items) {
    scores.push_back(eval::score_item({{.loglik = -1.0}, {.loglik = -2.0}}, it.choices, it.gold));  // predicts 0
  }
  const auto r = eval::summarize(task, scores);
  EXPECT_EQ(r.requests, 6);
  EXPECT_DOUBLE_EQ(r.acc.mean, 1.0 / 3.0);
  ASSERT_EQ(r.categories.size(), 2u);
  EXPECT_EQ(r.categories[0].name, "x");
  EXPECT_EQ(r.categories[0].items, 2);
  EXPECT_DOUBLE_EQ(r.categories[0].acc.mean, 0.5);
  EXPECT_DOUBLE_EQ(r.categories[1].acc.mean, 0.0);
}

class McModel : public ::testing::Test {
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
tok::Tokenizer* McModel::tk;
backend::Backend* McModel::be;
model::Model* McModel::m;

TEST_F(McModel, EncodePairMovesTrailingSpacesAndTakesTheTail) {
  // lm-eval: ("a little ", " girl") is scored as ("a little", "  girl").
  const auto a = eval::encode_pair(*tk, "Once upon a time, there was a little ", " girl");
  const auto b = eval::encode_pair(*tk, "Once upon a time, there was a little", "  girl");
  EXPECT_EQ(a.context, b.context);
  EXPECT_EQ(a.continuation, b.continuation);
  EXPECT_EQ(a.context, tk->encode("Once upon a time, there was a little"));
  const auto whole = tk->encode("Once upon a time, there was a little  girl");
  ASSERT_EQ(a.context.size() + a.continuation.size(), whole.size());
  EXPECT_TRUE(std::equal(a.continuation.begin(), a.continuation.end(), whole.end() - a.continuation.size()));
  // The context keeps its BOS; an empty context is BOS alone.
  EXPECT_EQ(a.context.front(), 1);
  const auto e = eval::encode_pair(*tk, "", "Once");
  EXPECT_EQ(e.context, (std::vector<int32_t>{1}));
  EXPECT_EQ(e.continuation, tk->encode("Once", tok::SpecialTokens::kNone));
}

// Each choice scored from a fresh cache over context + continuation[:-1] in one pass:
// what lm-eval runs. The shared-context path (context once, truncate, continuation)
// must give the same numbers up to rounding: each log-probability can differ by twice
// the logit bound (target logit and log-sum-exp).
TEST_F(McModel, SharedContextCacheMatchesOnePassPerChoice) {
  const auto task = eval::load_mc_task(test::source_dir() / "data" / "mc" / "bsdgames-quiz.jsonl", 6);
  const auto r = eval::evaluate_multiple_choice(*m, *tk, task);
  const auto& c = m->config();
  auto cache = m->new_cache(c.max_positions);
  std::vector<float> logits;
  for (std::size_t i = 0; i < task.items.size(); ++i) {
    for (std::size_t j = 0; j < task.items[i].choices.size(); ++j) {
      const auto p = eval::encode_pair(*tk, task.items[i].context, " " + task.items[i].choices[j]);
      std::vector<int32_t> seq = p.context;
      seq.insert(seq.end(), p.continuation.begin(), p.continuation.end());
      cache.clear();
      m->forward(std::span<const int32_t>(seq).first(seq.size() - 1), cache, model::Logits::kAll, logits);
      double ll = 0.0, tol = 0.0;
      const std::size_t k = p.continuation.size();
      for (std::size_t t = 0; t < k; ++t) {
        const std::size_t row = seq.size() - 1 - k + t;
        const std::span<const float> lr(logits.data() + row * std::size_t(c.vocab), std::size_t(c.vocab));
        ll += double(lr[std::size_t(p.continuation[t])]) - test::logsumexp(lr);
        tol += 2.0 * test::logit_tolerance(c.layers, c.intermediate, lr);
      }
      EXPECT_NEAR(r.per_item[i].choices[j].loglik, ll, tol) << "item " << i << " choice " << j;
      EXPECT_EQ(r.per_item[i].choices[j].tokens, int64_t(k));
    }
  }
}

TEST(McTask, ReadsGenericArcAndGzip) {
  const auto g = eval::load_mc_task(test::source_dir() / "data" / "mc" / "bsdgames-quiz.jsonl");
  EXPECT_EQ(g.name, "bsdgames-quiz");
  EXPECT_EQ(g.items.size(), 774u);
  EXPECT_EQ(g.items[1].gold, 1);
  EXPECT_EQ(g.items[1].category, "capital-africa");
  const auto arc = eval::load_mc_task(test::fixtures_dir() / "eval" / "arc-handmade.jsonl");
  EXPECT_EQ(arc.items[0].context, "Question: What does a little girl like to do on a sunny day?\nAnswer:");
  EXPECT_EQ(arc.items[2].gold, 0);  // answerKey "1" is the first label
  EXPECT_EQ(arc.items[2].choices.size(), 3u);

  test::TempDir tmp;
  const auto gz = tmp.path() / "arc.jsonl.gz";
  const std::string text = test::read_file(test::fixtures_dir() / "eval" / "arc-handmade.jsonl");
  gzFile f = gzopen(gz.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, text.data(), unsigned(text.size()));
  gzclose(f);
  const auto z = eval::load_mc_task(gz, 3);
  EXPECT_EQ(z.name, "arc");
  ASSERT_EQ(z.items.size(), 3u);
  EXPECT_EQ(z.items[1].choices, arc.items[1].choices);
}

TEST(McTask, BadInputIsOneClearError) {
  test::TempDir tmp;
  auto load = [&](const std::string& line) {
    return [&tmp, line] { eval::load_mc_task(tmp.write("t.jsonl", "\n" + line + "\n")); };
  };
  test::expect_error(load(R"({"query": "q", "choices": [], "gold": 0})"), "t.jsonl:2: 0 choice(s)", ErrorKind::kFormat);
  test::expect_error(load(R"({"query": "q", "choices": ["a", "b"], "gold": 2})"),
                     "t.jsonl:2: gold index 2 is out of range for 2 choices", ErrorKind::kFormat);
  test::expect_error(load(R"({"query": "q", "choices": ["a", "b"], "gold": -1})"), "gold index -1");
  test::expect_error(load("{\"query\": \"q\xff\", \"choices\": [\"a\", \"b\"], \"gold\": 0}"),
                     "t.jsonl:2: not valid UTF-8", ErrorKind::kFormat);
  test::expect_error(load(R"({"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "C"})"),
                     "answerKey \"C\" is not among the choice labels");
  test::expect_error(load(R"({"query": "q", "choices": ["a", 3], "gold": 0})"), "wrong type");
  test::expect_error(load(R"({"text": "q"})"), "neither a generic item");
  test::expect_error(load(R"({"query": "q", "choices": ["a", "b"], "gold": 0)"), "malformed JSON");
  test::expect_error(load(""), "no items");
  test::expect_error([] { eval::load_mc_task("/nonexistent/t.jsonl"); }, "does not exist", ErrorKind::kIo);
}

// transformers' numbers (scripts/make_eval_reference.py). Each continuation token's
// log-probability may differ by 2 · the logit bound of reference_tolerance.h (target
// logit and log-sum-exp), the bound taken at the row's largest |logit|, recorded per
// choice by the script.
void check_against_reference(model::Model& m, const tok::Tokenizer& tk, const std::filesystem::path& task_file,
                             const std::string& reference) {
  const auto ref_path = test::fixtures_dir() / "eval" / reference;
  if (!std::filesystem::exists(ref_path)) {
    GTEST_SKIP() << ref_path << " is absent: run `python3 scripts/make_eval_reference.py` (torch + transformers) "
                 << "to make it";
  }
  const auto ref = test::load_json(ref_path);
  const auto task = eval::load_mc_task(task_file);
  const auto r = eval::evaluate_multiple_choice(m, tk, task);
  const auto& c = m.config();
  ASSERT_EQ(ref["items"].size(), r.per_item.size());
  int64_t close_calls = 0;
  for (std::size_t i = 0; i < r.per_item.size(); ++i) {
    const auto& ri = ref["items"][i];
    const auto& ours = r.per_item[i];
    for (std::size_t j = 0; j < ours.choices.size(); ++j) {
      EXPECT_EQ(ours.choices[j].tokens, ri["tokens"][j].get<int64_t>()) << "item " << i << " choice " << j;
      const std::vector<float> row = {ri["max_abs_logit"][j].get<float>()};
      const double tol = 2.0 * double(ours.choices[j].tokens) * test::logit_tolerance(c.layers, c.intermediate, row);
      EXPECT_NEAR(ours.choices[j].loglik, ri["loglik"][j].get<double>(), tol) << "item " << i << " choice " << j;
      EXPECT_EQ(ours.choices[j].greedy, ri["greedy"][j].get<bool>()) << "item " << i << " choice " << j;
    }
    // Identical predictions, hence identical acc / acc_norm.
    if (ours.pred != ri["pred"].get<int>() || ours.pred_norm != ri["pred_norm"].get<int>()) ++close_calls;
  }
  EXPECT_EQ(close_calls, 0);
  EXPECT_DOUBLE_EQ(r.acc.mean, ref["acc"]["value"].get<double>());
  EXPECT_DOUBLE_EQ(r.acc_norm.mean, ref["acc_norm"]["value"].get<double>());
  EXPECT_DOUBLE_EQ(r.acc_bytes.mean, ref["acc_bytes"]["value"].get<double>());
  EXPECT_NEAR(r.acc.err, ref["acc"]["stderr"].get<double>(), 1e-12);
}

TEST_F(McModel, BsdgamesQuizMatchesTransformers) {
  check_against_reference(*m, *tk, test::source_dir() / "data" / "mc" / "bsdgames-quiz.jsonl",
                          "mc_bsdgames_stories15M.json");
}

TEST_F(McModel, HandMadeArcMatchesTransformers) {
  check_against_reference(*m, *tk, test::fixtures_dir() / "eval" / "arc-handmade.jsonl", "mc_arc_stories15M.json");
}

TEST_F(McModel, TrailingSpaceAndUnicodeItemsMatchTransformers) {
  check_against_reference(*m, *tk, test::fixtures_dir() / "eval" / "generic-edge.jsonl", "mc_edge_stories15M.json");
}

}  // namespace
}  // namespace gptq
