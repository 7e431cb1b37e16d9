// Makes the GPTQ checkpoints of tests/fixtures/gptq: the tiny random checkpoints of
// tests/fixtures/arch quantized by our pipeline with settings that cover every bit width,
// both zero-point formats, act-order with and without static groups, sym and asym, and a
// quantized lm_head. Beside each checkpoint it writes ours.json, our runtime's logits for
// two fixed token sequences, which scripts/check_gptq_fixtures.py compares with its own
// decoding of the checkpoint (it runs where our binary is not available).
//
//   make_gptq_fixtures ARCH_DIR OUT_DIR     (e.g. tests/fixtures/arch tests/fixtures/gptq)
//
// Calibration is random token ids from a fixed seed (the models are random too, so no
// text would be more meaningful); std::mt19937_64 is fully specified and the draws are
// our own, so the samples are the same on every platform.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/error.h"
#include "model/config.h"
#include "model/model.h"
#include "quant/pipeline.h"

namespace {

namespace fs = std::filesystem;
using namespace gptq;

struct Fixture {
  std::string name;    // folder under OUT_DIR
  std::string source;  // folder under ARCH_DIR
  quant::QuantizeConfig config;
};

quant::QuantizeConfig settings(int bits, int group, bool sym, bool desc_act, quant::Format format) {
  quant::QuantizeConfig c;
  c.method = quant::Method::kGptq;
  c.defaults = {.bits = bits, .group_size = group, .sym = sym, .desc_act = desc_act};
  c.format = format;
  return c;
}

std::vector<Fixture> fixtures() {
  std::vector<Fixture> f;
  f.push_back({"llama3-gqa", "llama3-gqa", settings(4, 32, false, true, quant::Format::kV1)});
  // 3-bit packs whole words only for K % 32 == 0: qwen3's K are 64 and 128. The head
  // (vocab 300) is quantized too, so it must be untied, and its zero stream (300 codes)
  // ends in a partly filled word.
  auto qwen3 = settings(3, 32, true, false, quant::Format::kV2);
  qwen3.lm_head = true;
  f.push_back({"qwen3", "qwen3", qwen3});
  auto mistral = settings(8, 32, true, true, quant::Format::kV1);
  mistral.static_groups = true;
  f.push_back({"mistral", "mistral", mistral});
  f.push_back({"mistral-2bit", "mistral", settings(2, 16, false, false, quant::Format::kV1)});
  return f;
}

std::vector<int32_t> random_ids(std::mt19937_64& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(std::size_t(n), 0);
  for (auto& id : ids) id = int32_t(rng() % uint64_t(vocab));
  return ids;
}

quant::CalibSet calibration(int64_t vocab, uint64_t seed) {
  constexpr int64_t kSamples = 16, kLen = 32;
  std::mt19937_64 rng(seed);
  quant::CalibSet c;
  for (int64_t i = 0; i < kSamples; ++i) c.samples.push_back(random_ids(rng, kLen, vocab));
  c.tokens_available = kSamples * kLen;
  c.seq_len = kLen;
  return c;
}

// Our logits for a prompt of length 1 and one of length 24: the single token takes the
// decode kernel, the 24 tokens the prefill kernel (qlinear_forward switches at 4 rows).
nlohmann::json our_logits(const fs::path& dir, uint64_t seed) {
  auto be = backend::make_cpu_backend();
  auto m = model::Model::load(dir, *be);
  const int64_t V = m.config().vocab;
  std::mt19937_64 rng(seed);
  nlohmann::json seqs = nlohmann::json::array();
  for (int64_t len : {1, 24}) {
    const auto ids = random_ids(rng, len, V);
    auto cache = m.new_cache(len);
    std::vector<float> logits;
    m.forward(ids, cache, model::Logits::kAll, logits);
    nlohmann::json rows = nlohmann::json::array();
    for (int64_t t = 0; t < len; ++t) {
      rows.push_back(std::vector<float>(logits.begin() + t * V, logits.begin() + (t + 1) * V));
    }
    seqs.push_back({{"ids", ids}, {"logits", rows}});
  }
  return {{"sequences", seqs}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ARCH_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path arch = argv[1], out = argv[2];
  try {
    uint64_t seed = 2001;
    for (const auto& f : fixtures()) {
      const fs::path src = arch / f.source, dst = out / f.name;
      const int64_t vocab = model::load_config(src).vocab;
      quant::check_quantizable(src, f.config);
      quant::PipelineOptions o;
      o.config = f.config;
      o.out_dir = dst;
      o.writer = {.max_shard_bytes = 0, .overwrite = true};
      auto be = backend::make_cpu_backend();
      const auto r = quant::quantize_model(src, calibration(vocab, seed), *be, o);
      // The fixture is config + weights + quantize_config: quant_log.json records paths and
      // timings (different on every run) and generation_config.json plays no part here.
      fs::remove(dst / "quant_log.json");
      fs::remove(dst / "generation_config.json");
      std::ofstream(dst / "ours.json") << our_logits(dst, seed + 100).dump() << "\n";
      std::printf("%-13s %zu modules, %.3f bits per quantized weight -> %s\n", f.name.c_str(), r.modules.size(),
                  r.bpw_quantized, dst.c_str());
      ++seed;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
