// Our GPTQ loader and quantized forward pass against an independent reading of the same
// checkpoints: tests/fixtures/gptq holds checkpoints written by our quantizer
// (scripts/make_gptq_fixtures.cpp) and, in reference.json, the logits Hugging Face
// transformers computes from weights that scripts/check_gptq_fixtures.py dequantized by
// the published AutoGPTQ / GPTQModel rules with its own numpy code. Both sides hold the
// same dequantized weights, so only fp32 rounding separates them (our kernels form
// q*s - s*z, the reference s*(q - z): both within the summation-order tolerance).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/model.h"
#include "reference_tolerance.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"

namespace gptq {
namespace {

using nlohmann::json;
using test::load_json;
namespace fs = std::filesystem;

int64_t widest_k(const model::ModelConfig& c) {
  return std::max({c.hidden, c.intermediate, c.heads * c.head_dim});
}

// The largest ratio |ours - reference| / tolerance over every logit of every sequence
// in reference.json, for the checkpoint in `dir`.
double worst_ratio(const fs::path& dir, const json& ref, const std::string& label) {
  auto be = backend::make_cpu_backend();
  auto m = model::Model::load(dir, *be);
  const auto& c = m.config();
  double worst = 0.0;
  for (const auto& seq : ref["sequences"]) {
    const auto ids = seq["ids"].get<std::vector<int32_t>>();
    const auto want = seq["logits"].get<std::vector<std::vector<float>>>();
    auto cache = m.new_cache(int64_t(ids.size()));
    std::vector<float> logits;
    m.forward(ids, cache, model::Logits::kAll, logits);
    double max_diff = 0.0;
    for (std::size_t t = 0; t < ids.size(); ++t) {
      EXPECT_EQ(int64_t(want[t].size()), c.vocab);
      const double tol = test::logit_tolerance(c.layers, widest_k(c), want[t]);
      for (int64_t v = 0; v < c.vocab; ++v) {
        const double d = std::fabs(double(logits[t * std::size_t(c.vocab) + std::size_t(v)]) - want[t][std::size_t(v)]);
        max_diff = std::max(max_diff, d);
        worst = std::max(worst, d / tol);
      }
    }
    std::ostringstream diff;
    diff << max_diff;
    ::testing::Test::RecordProperty(label + "_max_abs_diff_len" + std::to_string(ids.size()), diff.str());
  }
  return worst;
}

class GptqReference : public ::testing::TestWithParam<std::string> {};

TEST_P(GptqReference, LogitsMatchIndependentDequantization) {
  const fs::path dir = test::fixtures_dir() / "gptq" / GetParam();
  const json ref = load_json(dir / "reference.json");
  ASSERT_EQ(ref["sequences"].size(), 2u);
  EXPECT_LE(worst_ratio(dir, ref, "ours"), 1.0) << GetParam() << ": some logit is beyond the fp32 tolerance";
}

// The comparison can fail: the same tensors read with the other zero-point convention
// (v1 "gptq" stores zero - 1, v2 "gptq_v2" the zero) shift every weight by one scale step
// and must miss the reference by far more than the tolerance.
TEST_P(GptqReference, SwappedZeroConventionIsCaught) {
  const fs::path dir = test::fixtures_dir() / "gptq" / GetParam();
  const json ref = load_json(dir / "reference.json");
  test::TempDir tmp;
  fs::copy_file(dir / "model.safetensors", tmp.path() / "model.safetensors");
  json config = load_json(dir / "config.json");
  auto& qc = config["quantization_config"];
  const std::string swapped = qc["checkpoint_format"] == "gptq" ? "gptq_v2" : "gptq";
  qc["checkpoint_format"] = swapped;
  qc["format"] = swapped;
  std::ofstream(tmp.path() / "config.json") << config.dump(1);
  EXPECT_GT(worst_ratio(tmp.path(), ref, "swapped"), 100.0) << GetParam() << " read as " << swapped;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GptqReference, ::testing::Values("llama3-gqa", "qwen3", "mistral", "mistral-2bit"),
                         test::FolderParamName());

}  // namespace
}  // namespace gptq
