// SmolLM2-135M-Instruct read straight from its GGUF (fetched by scripts/fetch_smollm2),
// against references made by scripts/make_smollm2_reference.py (tests/fixtures/smollm2):
// token ids from the tokenizer transformers builds from the GGUF, and logits of an
// independent float64 numpy forward pass over gguf-py's dequantization of the same file.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "eval/perplexity.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/gguf_convert.h"
#include "model/model.h"
#include "quant/calibration.h"
#include "quant/pipeline.h"
#include "reference_tolerance.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

#define REQUIRE_SMOLLM2()                                                                        \
  if (!fs::exists(test::smollm2_gguf())) {                                                        \
    GTEST_SKIP() << test::smollm2_gguf() << " is absent: run scripts/fetch_smollm2 (needs PyPI)"; \
  }

TEST(SmolLM2, ConfigFromMetadata) {
  REQUIRE_SMOLLM2();
  const model::ModelConfig c = model::load_config(test::smollm2_gguf());
  EXPECT_EQ(c.layers, 30);
  EXPECT_EQ(c.hidden, 576);
  EXPECT_EQ(c.intermediate, 1536);
  EXPECT_EQ(c.heads, 9);
  EXPECT_EQ(c.kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab, 49152);
  EXPECT_EQ(c.max_positions, 8192);
  EXPECT_DOUBLE_EQ(c.rope.theta, 100000.0);
  EXPECT_NEAR(c.rms_eps, 1e-5, 1e-12);  // stored as float32
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.eos_ids, std::vector<int32_t>{2});
}

TEST(SmolLM2, TokenizerMatchesTransformers) {
  REQUIRE_SMOLLM2();
  const auto tk = tok::Tokenizer::load_for_model(test::smollm2_gguf());
  std::ifstream in(test::smollm2_reference() / "tokenizer_cases.jsonl");
  ASSERT_TRUE(in.good()) << "missing reference: run scripts/make_smollm2_reference.py";
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    const json c = json::parse(line);
    const auto want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tk.encode(c["text"].get<std::string>()), want) << c["text"];
    ++cases;
  }
  EXPECT_GE(cases, 200);
}

struct SmolLM2Model : ::testing::Test {
  static void SetUpTestSuite() {
    if (!fs::exists(test::smollm2_gguf())) return;
    backend = backend::make_cpu_backend();
    model = std::make_unique<model::Model>(model::Model::load(test::smollm2_gguf(), *backend));
  }
  static void TearDownTestSuite() {
    model.reset();
    backend.reset();
  }
  static std::vector<float> logits(model::Model& m, const std::vector<int32_t>& ids) {
    auto cache = m.new_cache(int64_t(ids.size()));
    std::vector<float> out;
    m.forward(ids, cache, model::Logits::kAll, out);
    return out;
  }
  static std::unique_ptr<backend::Backend> backend;
  static std::unique_ptr<model::Model> model;
};
std::unique_ptr<backend::Backend> SmolLM2Model::backend;
std::unique_ptr<model::Model> SmolLM2Model::model;

// Ours is fp32 and the reference float64 over the same fp16 weights, so they differ by
// our rounding only: test::logit_tolerance's bound (30 layers, widest reduction 1536).
TEST_F(SmolLM2Model, LogitsMatchReference) {
  REQUIRE_SMOLLM2();
  const json ref = test::load_json(test::smollm2_reference() / "logits.json");
  const int64_t V = model->config().vocab;
  for (const json& c : ref["cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const std::vector<float> out = logits(*model, ids);
    const std::string where = c["prompt"].get<std::string>();
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const std::span<const float> row(out.data() + t * std::size_t(V), std::size_t(V));
      const double tol = test::logit_tolerance(30, 1536, row);
      EXPECT_NEAR(test::logsumexp(row), c["logsumexp"][t].get<double>(), tol) << where << " position " << t;
      const int32_t argmax = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
      const int32_t want = c["argmax"][t].get<int32_t>();
      if (argmax != want) {
        EXPECT_LE(std::fabs(row[std::size_t(argmax)] - row[std::size_t(want)]), 2 * tol) << where << " position " << t;
      }
    }
    const std::span<const float> last(out.data() + (ids.size() - 1) * std::size_t(V), std::size_t(V));
    const double tol = test::logit_tolerance(30, 1536, last);
    for (std::size_t i = 0; i < c["top64_ids"].size(); ++i) {
      EXPECT_NEAR(last[c["top64_ids"][i].get<std::size_t>()], c["top64_logits"][i].get<double>(), tol) << where;
    }
  }
}

// `gptq convert` writes the same F16 weights the GGUF path holds, so the converted
// checkpoint gives bit-identical logits, and its tokenizer.json the same ids.
TEST_F(SmolLM2Model, ConvertedCheckpointIsTheSameModel) {
  REQUIRE_SMOLLM2();
  test::TempDir tmp;
  const fs::path out = tmp.path() / "smollm2";
  const io::CheckpointSummary s = model::convert_gguf(test::smollm2_gguf(), out);
  EXPECT_EQ(s.tensor_count, 272u);
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  const json tc = test::load_json(out / "tokenizer_config.json");
  EXPECT_NE(tc["chat_template"].get<std::string>().find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(tc["eos_token"], "<|im_end|>");

  const auto tk_gguf = tok::Tokenizer::load_for_model(test::smollm2_gguf());
  const auto tk_dir = tok::Tokenizer::load_for_model(out);
  std::ifstream cases(test::smollm2_reference() / "tokenizer_cases.jsonl");
  for (std::string line; std::getline(cases, line);) {
    const json c = json::parse(line);
    EXPECT_EQ(tk_dir.encode(c["text"].get<std::string>()), c["ids"].get<std::vector<int32_t>>()) << c["text"];
  }
  const std::string text = "<|im_start|>user\nHow many legs has a spider? 8, I think.<|im_end|>\n";

  auto converted = model::Model::load(out, *backend);
  const std::vector<int32_t> ids = tk_gguf.encode(text);
  EXPECT_EQ(logits(converted, ids), logits(*model, ids));
}

// The same checkpoint seen by transformers (scripts/check_convert_transformers.py, f32 and
// f16): its logits equal ours on the directory within the fp32 bound of
// reference_tolerance.h, and AutoTokenizer on it gives the GGUF tokenizer's ids. Needs a
// Python with torch, transformers, tokenizers and gguf, named by GPTQ_ORACLE_PYTHON.
TEST(SmolLM2, ConvertedCheckpointMatchesTransformers) {
  REQUIRE_SMOLLM2();
  const char* python = std::getenv("GPTQ_ORACLE_PYTHON");
  if (python == nullptr || *python == 0 || !fs::exists(python)) {
    GTEST_SKIP() << "GPTQ_ORACLE_PYTHON does not name a Python: set it to one with torch, transformers, tokenizers "
                    "and gguf (see scripts/check_convert_transformers.py)";
  }
  const auto quoted = [](const fs::path& p) { return std::string(1, '\'') + p.string() + '\''; };
  const std::string cmd = quoted(python) + " " + quoted(test::source_dir() / "scripts" / "check_convert_transformers.py") +
                          " --gptq " + quoted(test::cli_binary()) + " --gguf " + quoted(test::smollm2_gguf()) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr) << cmd;
  std::string out;
  std::array<char, 4096> buf{};
  for (std::size_t n; (n = std::fread(buf.data(), 1, buf.size(), p)) > 0;) out.append(buf.data(), n);
  const int status = ::pclose(p);
  std::printf("%s", out.c_str());  // the table, in the test log
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd << "\n" << out;
}

// `gptq quantize` straight from the GGUF: the output carries the config and tokenizer
// files the GGUF describes (what `convert` writes), loads as a GPTQ model with K = 576
// partial groups at g128, and its perplexity lies between the fp16-dequantized model's
// and RTN's at the same settings (GPTQ must recover part of RTN's loss; measured with
// these 8 Bible samples on 4 windows of Emma: fp 32.92, GPTQ 44.78, RTN 49.06).
TEST_F(SmolLM2Model, QuantizedFromGgufLoadsAndBeatsRtn) {
  REQUIRE_SMOLLM2();
  test::TempDir tmp;
  const auto tk = tok::Tokenizer::load_for_model(test::smollm2_gguf());
  const quant::CalibSet calib = quant::load_calibration(
      tk, {.files = {test::source_dir() / "data" / "web-bible.txt"}, .n_samples = 8, .seq_len = 256, .seed = 1});
  const auto quantize = [&](quant::Method method, const fs::path& out) {
    quant::PipelineOptions o;
    o.config.method = method;
    o.config.defaults = {.bits = 4, .group_size = 128, .sym = true, .desc_act = false};
    o.out_dir = out;
    quant::quantize_model(test::smollm2_gguf(), calib, *backend, o);
  };
  const fs::path gptq = tmp.path() / "gptq", rtn = tmp.path() / "rtn";
  quantize(quant::Method::kGptq, gptq);
  quantize(quant::Method::kRtn, rtn);

  const json config = test::load_json(gptq / "config.json");
  EXPECT_EQ(config["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(config["num_key_value_heads"], 3);
  EXPECT_EQ(config["quantization_config"]["bits"], 4);
  EXPECT_EQ(config["quantization_config"]["group_size"], 128);
  EXPECT_EQ(test::load_json(gptq / "generation_config.json")["eos_token_id"], 2);
  EXPECT_NE(test::load_json(gptq / "tokenizer_config.json")["chat_template"].get<std::string>().find("<|im_start|>"),
            std::string::npos);
  const std::string text = "<|im_start|>user\nName a 3-letter word for a cat.<|im_end|>\n";
  EXPECT_EQ(tok::Tokenizer::load_for_model(gptq).encode(text), tk.encode(text));
  io::Checkpoint ck(gptq);
  EXPECT_EQ(ck.get("model.layers.0.self_attn.q_proj.scales").shape, (std::vector<int64_t>{5, 576}));  // ceil(576/128)
  EXPECT_EQ(ck.get("model.embed_tokens.weight").dtype, DType::kF16);

  const std::vector<int32_t> emma = tk.encode(test::read_file(test::source_dir() / "data" / "emma.txt"));
  const eval::PplOptions ppl{.ctx = 512, .max_windows = 4};
  const double fp = eval::perplexity(*model, emma, ppl).ppl;
  auto quantized = model::Model::load(gptq, *backend);
  EXPECT_EQ(quantized.layers()[0].linear(model::Slot::kQ).describe(), "gptq 4-bit g128");
  const double q = eval::perplexity(quantized, emma, ppl).ppl;
  auto rtn_model = model::Model::load(rtn, *backend);
  const double r = eval::perplexity(rtn_model, emma, ppl).ppl;
  RecordProperty("ppl_fp", std::to_string(fp));
  RecordProperty("ppl_gptq", std::to_string(q));
  RecordProperty("ppl_rtn", std::to_string(r));
  EXPECT_GT(q, fp) << "fp " << fp << ", gptq " << q << ", rtn " << r;
  EXPECT_LT(q, r) << "fp " << fp << ", gptq " << q << ", rtn " << r;
}

}  // namespace
}  // namespace gptq
