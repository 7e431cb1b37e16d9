// The command line as a user runs it: outputs, JSON, and one-line errors with a
// non-zero exit status.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace gptq {
namespace {

struct Result {
  int status = -1;
  std::string out;  // stdout and stderr, as the command is given
};

Result run(const std::string& args, const std::string& stdin_pipe = "") {
  const std::string cmd = stdin_pipe + test::cli_binary().string() + " " + args;
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string model_dir() { return test::stories15m_dir().string(); }

TEST(Cli, InfoJson) {
  const auto r = run("info " + model_dir() + " --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "LlamaForCausalLM");
  EXPECT_EQ(j["layers"], 6);
  // 32000x288 embedding + 6 x (4 x 288² attention + 3 x 288x768 MLP + 2 x 288 norms) + 288
  EXPECT_EQ(j["parameters"], 32000 * 288 + 6 * (4 * 288 * 288 + 3 * 288 * 768 + 2 * 288) + 288);
  EXPECT_EQ(j["tensors"].size(), 1u + 6u * 9u + 1u);
}

TEST(Cli, TokenizeAndDecode) {
  auto r = run("tokenize " + model_dir() + " --text 'Once upon a time' --json");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ids"], (std::vector<int>{1, 9038, 2501, 263, 931}));
  EXPECT_EQ(j["pieces"][1], "▁Once");
  r = run("tokenize " + model_dir() + " --decode '1 9038 2501 263 931'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "<s> Once upon a time\n");
}

TEST(Cli, GreedyGenerateStreamsTheReferenceText) {
  // greedy.json's second prompt; the first 40 tokens of transformers' continuation.
  const auto r = run("generate " + model_dir() + " --prompt 'Once upon a time' --temperature 0 --max-new-tokens 12 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl named Lily. She loved", 0), 0u) << r.out;
}

TEST(Cli, GeneratePromptFromStdinAndReportsSpeed) {
  const auto r = run("generate " + model_dir() + " --prompt - --max-new-tokens 5 --seed 3 2>&1",
                     "printf 'Tom had a red ball.' | ");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("Tom had a red ball."), std::string::npos);
  EXPECT_NE(r.out.find("tok/s"), std::string::npos);
}

TEST(Cli, PplJsonHasTheFields) {
  const auto r = run("ppl " + model_dir() + " --text " + (test::source_dir() / "data/stories15M-samples.txt").string() +
                     " --max-windows 3 --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"ppl", "mean_nll", "windows", "scored_tokens"}) EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["windows"], 3);
  EXPECT_EQ(j["scored_tokens"], 3 * 255);
  EXPECT_GT(j["ppl"].get<double>(), 1.0);
  EXPECT_LT(j["ppl"].get<double>(), 20.0);
}

// Errors: one line on stderr, no stack trace, non-zero status.
void expect_one_line_error(const std::string& args, const std::string& fragment) {
  const auto r = run(args + " 2>&1 >/dev/null");
  EXPECT_NE(r.status, 0) << args;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_EQ(r.out.rfind("gptq: ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find(fragment), std::string::npos) << r.out;
}

TEST(Cli, QuantizeRtnWritesAStandardCheckpoint) {
  const std::string out = (std::filesystem::temp_directory_path() / "gptq-cli-rtn").string();
  const auto r = run("quantize " + model_dir() + " --out " + out +
                     " --method rtn --bits 3 --group-size 32 --asym --format gptq_v2 --overwrite --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["shards"], 1);
  // 3 bits + (fp16 scale + 3-bit zero) / 32 + 32-bit g_idx / N per weight: a little over 3.6.
  EXPECT_GT(j["bpw_quantized"].get<double>(), 3.5);
  EXPECT_LT(j["bpw_quantized"].get<double>(), 3.8);
  for (const char* f : {"config.json", "quantize_config.json", "model.safetensors", "tokenizer.json",
                        "generation_config.json", "quant_log.json"}) {
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(out) / f)) << f;
  }
  const auto info = nlohmann::json::parse(run("info " + out + " --json").out);
  EXPECT_EQ(info["quantization_config"]["bits"], 3);
  EXPECT_EQ(info["quantization_config"]["sym"], false);
  EXPECT_EQ(info["quantization_config"]["checkpoint_format"], "gptq_v2");
  EXPECT_EQ(info["parameters"], 15191712);
  std::filesystem::remove_all(out);
}

TEST(Cli, ErrorsAreOneLine) {
  expect_one_line_error("quantize " + model_dir() + " --out /tmp/never --calib x --group-size 100",
                        "group size 100 does not divide in_features 288");
  expect_one_line_error("quantize " + model_dir() + " --out /tmp/never --group-size 32", "--calib");
  expect_one_line_error("quantize " + model_dir() + " --out /tmp/never --group-size 32 --calib /nonexistent.txt", "/nonexistent.txt");
  expect_one_line_error("info /nonexistent/model", "no config.json");
  expect_one_line_error("ppl " + model_dir() + " --text /nonexistent.txt", "/nonexistent.txt: cannot open");
  expect_one_line_error("generate " + model_dir() + " --prompt hi --top-p 0", "top-p");
  expect_one_line_error("tokenize " + model_dir() + " --decode '1 x'", "not a list of integers");
  expect_one_line_error("generate " + (test::source_dir() / "tests").string() + " --prompt hi", "tokenizer.json");
}

TEST(Cli, EvalJsonAndPerTextPpl) {
  const std::string task = (test::source_dir() / "data" / "mc" / "bsdgames-quiz.jsonl").string();
  auto r = run("eval " + model_dir() + " --tasks " + task + " --limit 8 --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["tasks"].size(), 1u);
  EXPECT_EQ(j["tasks"][0]["items"], 8);
  EXPECT_EQ(j["tasks"][0]["requests"], 32);
  const double acc = j["tasks"][0]["acc"]["value"];
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  const std::string docs = (test::fixtures_dir() / "eval" / "stories-docs.jsonl.gz").string();
  r = run("ppl " + model_dir() + " --texts " + docs + " --limit 5 --max-length 64 --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["scored_texts"], 5);
  EXPECT_EQ(j["per_text_ppl"].size(), 5u);
}

TEST(Cli, EvalAndKldErrorsAreOneLine) {
  const auto dir = std::filesystem::temp_directory_path() / "gptq-cli-eval";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "nochoices.jsonl") << "{\"query\": \"q\", \"choices\": [], \"gold\": 0}\n";
  expect_one_line_error("eval " + model_dir() + " --tasks " + (dir / "nochoices.jsonl").string(), "0 choice(s)");
  std::ofstream(dir / "bad.txt", std::ios::binary) << "ok \xff\xfe text";
  expect_one_line_error("kld " + model_dir() + " " + model_dir() + " --text " + (dir / "bad.txt").string(),
                        "not valid UTF-8");
  expect_one_line_error("kld " + model_dir() + " --text " + (dir / "bad.txt").string(), "--save-base-logits");
  std::ofstream(dir / "not.kld") << "hello";
  expect_one_line_error("kld " + model_dir() + " --base-logits " + (dir / "not.kld").string(), "GPTQKLD1");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gptq
