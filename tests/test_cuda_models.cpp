// Whole models on the CUDA backend: stories15M, every tiny architecture fixture and the
// GPTQ fixtures, against the CPU backend (f32) and against transformers run on the GPU
// in the same 16-bit dtype (tests/fixtures/cuda_reference, made by
// scripts/make_cuda_references.py on the GPU machine). Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "eval/perplexity.h"
#include "io/json_file.h"
#include "model/model.h"
#include "reference_tolerance.h"
#include "test_paths.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> model_dirs() {
  std::vector<std::string> v = {"stories15M"};
  for (const char* a : {"llama-bias-untied", "llama3-gqa", "mistral", "qwen2-bias", "qwen3"}) {
    v.push_back(std::string("arch/") + a);
  }
  for (const char* g : {"llama3-gqa", "mistral", "mistral-2bit", "qwen3"}) v.push_back(std::string("gptq/") + g);
  return v;
}

fs::path model_path(const std::string& name) {
  return name == "stories15M" ? test::stories15m_dir() : test::fixtures_dir() / name;
}

std::string param_name(const testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s) {
    if (c == '/' || c == '-') c = '_';
  }
  return s;
}

// A fixed prompt inside every fixture's vocabulary: prefill of 12 tokens, then 4 decode
// steps (the decode steps replay the recorded graph on CUDA).
std::vector<int32_t> prompt_for(int64_t vocab) {
  std::vector<int32_t> ids;
  for (int i = 0; i < 16; ++i) ids.push_back(int32_t((1 + 37 * i * i + 11 * i) % vocab));
  return ids;
}

// Logits of the prefill's every position, then of each decode step: [16, vocab].
std::vector<float> run(model::Model& m, const std::vector<int32_t>& ids) {
  auto cache = m.new_cache(int64_t(ids.size()));
  std::vector<float> all, row;
  m.forward(std::span(ids).first(12), cache, model::Logits::kAll, all);
  for (std::size_t t = 12; t < ids.size(); ++t) {
    m.forward(std::span(ids).subspan(t, 1), cache, model::Logits::kLast, row);
    all.insert(all.end(), row.begin(), row.end());
  }
  return all;
}

int64_t widest_k(const model::ModelConfig& c) { return std::max({c.hidden, c.intermediate, c.heads * c.head_dim}); }

class CudaModels : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (backend::cuda_device_count() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  }
};

// f32 on the GPU against f32 on the CPU: each is within logit_tolerance of the exact
// logits (tests/reference_tolerance.h), so they are within twice that of each other.
TEST_P(CudaModels, F32MatchesCpu) {
  auto cpu = backend::make_cpu_backend();
  auto gpu = backend::make_backend("cuda:0", {.activations = DType::kF32});
  auto mc = model::Model::load(model_path(GetParam()), *cpu);
  auto mg = model::Model::load(model_path(GetParam()), *gpu);
  const auto& c = mc.config();
  const auto ids = prompt_for(c.vocab);
  const auto a = run(mc, ids), b = run(mg, ids);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t t = 0; t < ids.size(); ++t) {
    const std::span<const float> ra(&a[t * std::size_t(c.vocab)], std::size_t(c.vocab));
    const double tol = 2.0 * test::logit_tolerance(c.layers, widest_k(c), ra);
    double worst = 0.0;
    for (int64_t v = 0; v < c.vocab; ++v) {
      worst = std::max(worst, std::fabs(double(ra[std::size_t(v)]) - b[t * std::size_t(c.vocab) + std::size_t(v)]));
    }
    EXPECT_LE(worst, tol) << GetParam() << " position " << t;
  }
}

// 16-bit activations against transformers in the same dtype on the GPU. Both round the
// residual stream to the dtype after each of ~8 ops per layer in series, so a logit
// differs by at most about 3·(8L + 1)·u·max|logit| (the fp32 bound's argument with the
// dtype's u instead of the accumulation error, taken linearly: worst case, not √).
TEST_P(CudaModels, HalfMatchesTransformers) {
  const fs::path ref = test::fixtures_dir() / "cuda_reference" / (param_name({GetParam(), 0}) + ".json");
  if (GetParam().rfind("gptq/", 0) == 0) GTEST_SKIP() << "GPTQ fixture: HalfGptqMatchesCpu covers it";
  if (!fs::exists(ref)) GTEST_SKIP() << "no reference " << ref << " (scripts/make_cuda_references.py makes it)";
  const auto j = test::load_json(ref);
  for (const char* dt : {"f16", "bf16"}) {
    if (!j.contains(dt)) continue;
    const DType act = std::string(dt) == "f16" ? DType::kF16 : DType::kBF16;
    auto gpu = backend::make_backend("cuda:0", {.activations = act});
    auto m = model::Model::load(model_path(GetParam()), *gpu);
    const auto& c = m.config();
    const std::vector<int32_t> ids = j["ids"].get<std::vector<int32_t>>();
    const auto ours = run(m, ids);
    const double u = act == DType::kF16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    const auto& rows = j[dt]["rows"];  // per position: the reference's 256 largest logits
    for (std::size_t t = 0; t < rows.size(); ++t) {
      const auto top_ids = rows[t]["ids"].get<std::vector<int64_t>>();
      const auto top = rows[t]["logits"].get<std::vector<double>>();
      const double mx = rows[t]["max_abs"].get<double>();
      double worst = 0.0;
      for (std::size_t i = 0; i < top.size(); ++i) {
        worst = std::max(worst, std::fabs(top[i] - ours[t * std::size_t(c.vocab) + std::size_t(top_ids[i])]));
      }
      EXPECT_LE(worst, 3.0 * double(8 * c.layers + 1) * u * mx) << GetParam() << " " << dt << " position " << t;
    }
  }
}

// transformers cannot run the GPTQ fixtures without GPTQModel's kernels, so their 16-bit
// runs are checked against the CPU in fp32 instead, with the bound above: the CPU's own
// error (fp32, tests/reference_tolerance.h) is three orders of magnitude below it.
TEST_P(CudaModels, HalfGptqMatchesCpu) {
  if (GetParam().rfind("gptq/", 0) != 0) GTEST_SKIP() << "dense model: HalfMatchesTransformers covers it";
  auto cpu = backend::make_cpu_backend();
  auto mc = model::Model::load(model_path(GetParam()), *cpu);
  const auto& c = mc.config();
  const auto ids = prompt_for(c.vocab);
  const auto ref = run(mc, ids);
  for (const DType act : {DType::kF16, DType::kBF16}) {
    auto gpu = backend::make_backend("cuda:0", {.activations = act});
    auto mg = model::Model::load(model_path(GetParam()), *gpu);
    const auto ours = run(mg, ids);
    const double u = act == DType::kF16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    for (std::size_t t = 0; t < ids.size(); ++t) {
      double worst = 0.0, mx = 0.0;
      for (int64_t v = 0; v < c.vocab; ++v) {
        const std::size_t i = t * std::size_t(c.vocab) + std::size_t(v);
        worst = std::max(worst, std::fabs(double(ref[i]) - ours[i]));
        mx = std::max(mx, std::fabs(double(ref[i])));
      }
      EXPECT_LE(worst, 3.0 * double(8 * c.layers + 1) * u * mx) << GetParam() << " " << dtype_name(act)
                                                                 << " position " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, CudaModels, testing::ValuesIn(model_dirs()), param_name);

// Perplexity of stories15M on its own samples, 16-bit on the GPU vs f32 on the CPU,
// within 0.3% (the bound: 16-bit rounding moves ppl by ~0.1% here).
TEST(CudaPerplexity, StoriesWithinPointThreePercentOfCpu) {
  if (backend::cuda_device_count() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  const std::string text = io::read_text_file(test::source_dir() / "data" / "stories15M-samples.txt");
  const auto tk = tok::Tokenizer::load(test::stories15m_dir() / "tokenizer.json");
  const auto tokens = tk.encode(text);
  const eval::PplOptions opts{.ctx = 256, .max_windows = 40};
  auto cpu = backend::make_cpu_backend();
  auto mc = model::Model::load(test::stories15m_dir(), *cpu);
  const double base = eval::perplexity(mc, tokens, opts).ppl;
  for (DType act : {DType::kF16, DType::kBF16, DType::kF32}) {
    auto gpu = backend::make_backend("cuda:0", {.activations = act});
    auto mg = model::Model::load(test::stories15m_dir(), *gpu);
    const double p = eval::perplexity(mg, tokens, opts).ppl;
    EXPECT_NEAR(p / base, 1.0, 0.003) << dtype_name(act) << ": " << p << " vs cpu " << base;
  }
}

TEST(CudaErrors, TokenOutsideVocabulary) {
  if (backend::cuda_device_count() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  auto gpu = backend::make_backend("cuda:0", {.activations = DType::kF16});
  auto m = model::Model::load(test::stories15m_dir(), *gpu);
  auto cache = m.new_cache(4);
  std::vector<float> logits;
  const std::vector<int32_t> ids = {1, 999999};
  test::expect_error([&] { m.forward(ids, cache, model::Logits::kLast, logits); }, "outside the model's vocabulary");
}

}  // namespace
}  // namespace gptq
