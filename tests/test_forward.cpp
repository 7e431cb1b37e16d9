// The forward pass against Hugging Face transformers' own numbers: stories15M
// (../shared/models/stories15M/reference) and tiny random checkpoints of other
// architectures (tests/fixtures/arch, made by scripts/make_arch_fixtures.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "eval/sampler.h"
#include "model/model.h"
#include "reference_tolerance.h"
#include "test_paths.h"
#include "test_util.h"

namespace gptq {
namespace {

using nlohmann::json;
using test::load_json;
using test::logsumexp;
namespace fs = std::filesystem;

int64_t widest_k(const model::ModelConfig& c) {
  return std::max({c.hidden, c.intermediate, c.heads * c.head_dim});
}

// Top-k ids must match, except where the reference's own neighbouring logits are closer
// than the tolerance (then their order is not determined by fp32 arithmetic).
void expect_topk(std::span<const float> ours, const std::vector<int32_t>& ref_ids, double tol,
                 const std::string& where) {
  for (std::size_t i = 0; i < ref_ids.size(); ++i) {
    std::vector<int32_t> order(ours.size());
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(ref_ids.size()), order.end(),
                      [&](int32_t a, int32_t b) { return ours[std::size_t(a)] > ours[std::size_t(b)]; });
    if (order[i] == ref_ids[i]) continue;
    const double gap = std::fabs(double(ours[std::size_t(order[i])]) - double(ours[std::size_t(ref_ids[i])]));
    EXPECT_LE(gap, 2 * tol) << where << ": rank " << i << " is id " << order[i] << ", reference has "
                            << ref_ids[i];
  }
}

struct Stories : ::testing::Test {
  static void SetUpTestSuite() {
    backend = backend::make_cpu_backend();
    model = std::make_unique<model::Model>(model::Model::load(test::stories15m_dir(), *backend));
  }
  static void TearDownTestSuite() {
    model.reset();
    backend.reset();
  }
  static std::unique_ptr<backend::Backend> backend;
  static std::unique_ptr<model::Model> model;
};
std::unique_ptr<backend::Backend> Stories::backend;
std::unique_ptr<model::Model> Stories::model;

TEST_F(Stories, LogitsMatchTransformers) {
  GPTQ_REQUIRE_SHARED(test::stories15m_reference());
  const json ref = load_json(test::stories15m_reference() / "logits.json");
  const auto& c = model->config();
  ASSERT_EQ(ref.size(), 4u);
  for (const auto& e : ref) {
    const auto ids = e["ids"].get<std::vector<int32_t>>();
    auto cache = model->new_cache(int64_t(ids.size()));
    std::vector<float> logits;
    model->forward(ids, cache, model::Logits::kAll, logits);
    const std::string where = e["prompt"].get<std::string>().substr(0, 30);
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const std::span<const float> row(logits.data() + t * std::size_t(c.vocab), std::size_t(c.vocab));
      const auto top_ids = e["top10_ids"][t].get<std::vector<int32_t>>();
      const auto top_logits = e["top10_logits"][t].get<std::vector<float>>();
      const double tol = test::logit_tolerance(c.layers, widest_k(c), top_logits);
      for (std::size_t i = 0; i < top_ids.size(); ++i) {
        EXPECT_NEAR(row[std::size_t(top_ids[i])], top_logits[i], tol) << where << " position " << t;
      }
      expect_topk(row, top_ids, tol, where + " position " + std::to_string(t));
      EXPECT_NEAR(logsumexp(row), e["logsumexp"][t].get<double>(), tol) << where << " position " << t;
    }
    const auto last = e["last_logits"].get<std::vector<float>>();
    ASSERT_EQ(int64_t(last.size()), c.vocab);
    const double tol = test::logit_tolerance(c.layers, widest_k(c), last);
    const float* row = logits.data() + (ids.size() - 1) * std::size_t(c.vocab);
    double worst = 0.0;
    for (int64_t v = 0; v < c.vocab; ++v) worst = std::max(worst, std::fabs(double(row[v]) - last[std::size_t(v)]));
    EXPECT_LE(worst, tol) << where << ": max |Δ| over the whole last row";
    RecordProperty("max_abs_diff_" + std::to_string(ids.size()), std::to_string(worst));
  }
}

// Greedy decoding through the KV cache, one token at a time after the prompt.
std::vector<int32_t> greedy(model::Model& m, const std::vector<int32_t>& prompt, int64_t n, bool stop_at_eos) {
  auto cache = m.new_cache(int64_t(prompt.size()) + n);
  std::vector<float> logits;
  m.forward(prompt, cache, model::Logits::kLast, logits);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t next = eval::argmax(logits);
    out.push_back(next);
    const auto& eos = m.config().eos_ids;
    if (stop_at_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    if (i + 1 < n) m.forward(std::span(&next, 1), cache, model::Logits::kLast, logits);
  }
  return out;
}

TEST_F(Stories, GreedyMatchesTransformers) {
  GPTQ_REQUIRE_SHARED(test::stories15m_reference());
  const json ref = load_json(test::stories15m_reference() / "greedy.json");
  ASSERT_EQ(ref.size(), 4u);
  for (const auto& e : ref) {
    const auto prompt = e["prompt_ids"].get<std::vector<int32_t>>();
    const auto expected = e["output_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(greedy(*model, prompt, 120, true), expected) << e["prompt"];
  }
}

TEST_F(Stories, IncrementalDecodeEqualsBatchedPrefill) {
  const std::vector<int32_t> ids = {1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217};
  const int64_t V = model->config().vocab;
  auto batch_cache = model->new_cache(16);
  std::vector<float> batch;
  model->forward(ids, batch_cache, model::Logits::kAll, batch);
  auto step_cache = model->new_cache(16);
  std::vector<float> step;
  for (std::size_t t = 0; t < ids.size(); ++t) {
    model->forward(std::span(&ids[t], 1), step_cache, model::Logits::kLast, step);
    // Same arithmetic except sgemm vs sgemv blocking: rounding-level differences only.
    const double tol = test::logit_tolerance(6, 768, std::span(batch.data() + t * V, V));
    for (int64_t v = 0; v < V; ++v) ASSERT_NEAR(step[v], batch[t * V + v], tol) << "position " << t;
  }
}

// ---- other architectures: tiny random checkpoints with transformers' logits ----

class Arch : public ::testing::TestWithParam<std::string> {};

TEST_P(Arch, LogitsMatchTransformers) {
  const fs::path dir = test::fixtures_dir() / "arch" / GetParam();
  auto be = backend::make_cpu_backend();
  auto m = model::Model::load(dir, *be);
  const auto& c = m.config();
  const json ref = load_json(dir / "reference.json");
  for (const auto& seq : ref["sequences"]) {
    const auto ids = seq["ids"].get<std::vector<int32_t>>();
    const auto want = seq["logits"].get<std::vector<std::vector<float>>>();
    auto cache = m.new_cache(int64_t(ids.size()));
    std::vector<float> logits;
    m.forward(ids, cache, model::Logits::kAll, logits);
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const double tol = test::logit_tolerance(c.layers, widest_k(c), want[t]);
      double worst = 0.0;
      for (int64_t v = 0; v < c.vocab; ++v) {
        worst = std::max(worst, std::fabs(double(logits[t * std::size_t(c.vocab) + std::size_t(v)]) - want[t][std::size_t(v)]));
      }
      EXPECT_LE(worst, tol) << GetParam() << " length " << ids.size() << " position " << t;
      EXPECT_NEAR(logsumexp(std::span(logits.data() + t * std::size_t(c.vocab), std::size_t(c.vocab))),
                  seq["logsumexp"][t].get<double>(), tol);
    }
  }
  const auto& g = ref["greedy"];
  const auto prompt = g["prompt_ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(greedy(m, prompt, int64_t(g["output_ids"].size()), false), g["output_ids"].get<std::vector<int32_t>>());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Arch,
                         ::testing::Values("llama3-gqa", "qwen2-bias", "mistral", "qwen3", "llama-bias-untied"),
                         test::FolderParamName());

}  // namespace
}  // namespace gptq
